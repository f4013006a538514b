"""Dataset runs that survive being killed: resumable JSONL results, sharded over ranks.

Files in ``out_dir``:

* ``results.rank{r}.jsonl``: what rank ``r`` grounded, one JSON object per line, appended,
  flushed and fsync'ed after every sample. A success line is ``{"id", "tube", "chosen_track",
  "track_scores", "frame_scores", "sampled_frame_ids", "extras", "seconds"}`` (``tube`` as
  :meth:`Tube.to_json`, arrays as lists, extras reduced to what JSON can hold); an error line is
  ``{"id", "error", "seconds"}`` with a one-line message.
* ``results.jsonl``: rank 0's merge of every rank file, in dataset order, one line per id.
* ``predictions.json``: the tubes, in the format of :mod:`zsgrounding.predictions`.
* ``metrics.json`` / ``metrics.md``: :func:`metrics.evaluate` against the samples' ground truth
  (a sample that failed or has no line scores 0 and counts as ``missing``).

Resume (the default): the ids already in any rank file are done and skipped, so a run may be
resumed with a different number of ranks. A partial last line of this rank's file (a kill in
the middle of a write) is cut off first, so its sample is grounded again: nothing is lost or
repeated. Error lines are grounded again on resume (``retry_errors``, the default; a fixed
video then scores), a retried sample's new line supersedes the old one, and a success line
always wins over an error line for the same id.

Guards: ``run.json`` records the grounder's settings and the samples' fingerprints, and a resume
with other settings or changed samples is refused unless ``force_resume``, also when nothing is
left to ground (the finished results would stand for settings they were not made with)
(:mod:`zsgrounding.runfolder`); a second process of the same rank into the same folder is refused
while the first runs.

Sharding: under ``torch.distributed`` (an initialised process group, or ``RANK`` / ``WORLD_SIZE``
set by torchrun, in which case a gloo group is created here and destroyed at the end), rank
``r`` of ``w`` grounds samples ``r::w`` of the dataset order, writes its own file and waits at a
barrier; rank 0 then merges and scores, the other ranks return. If one rank raises, the others
wait at the barrier until torchrun stops them (or the group's timeout). An explicit
``RunConfig.shard=(r, w)`` is for independent jobs with no process group: the run writes its
rank file only, and a later call of :func:`merge_results` (or an unsharded resume, which finds
everything done) merges.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

from tqdm import tqdm

from zsgrounding.atomic import write_text_atomic
from zsgrounding.errors import STVGError
from zsgrounding.metrics import FrameSet, evaluate
from zsgrounding.metrics import Protocol as EvalProtocol
from zsgrounding.predictions import save_predictions, tube_from_json
from zsgrounding.redact import redact
from zsgrounding.report import markdown_table, stvg_rows
from zsgrounding.runfolder import RunLock, check_run, run_record
from zsgrounding.types import GroundingResult, Sample, Tube

logger = logging.getLogger(__name__)

RANK_FILE = "results.rank{rank}.jsonl"
RANK_GLOB = "results.rank*.jsonl"
MERGED_FILE = "results.jsonl"
PREDICTIONS_FILE = "predictions.json"
METRICS_JSON = "metrics.json"
METRICS_MD = "metrics.md"


@runtime_checkable
class Grounder(Protocol):
    """Anything that grounds one sample. An optional ``name`` attribute labels the metrics row."""

    def ground_sample(self, sample: Sample) -> GroundingResult: ...


@dataclass
class RunConfig:
    """How to run a grounder over a dataset.

    Attributes:
        out_dir: folder of the result files (created if needed).
        resume: skip the samples already in the rank files; ``False`` starts afresh (this
            rank's file is emptied, rank 0 also removes files of ranks beyond the world size).
        progress: show a tqdm bar (done / total and the current sample id).
        shard: ``(rank, world_size)`` for independent jobs without a process group; the run
            then only writes its rank file (no barrier, no merge). ``None``: take the rank from
            ``torch.distributed``, or run alone.
        fail_fast: re-raise the first grounder exception (after writing its error line).
        retry_errors: on resume, ground again the samples whose line is an error (default);
            ``False`` keeps their error lines.
        force_resume: resume even though ``run.json`` says the folder was written with other
            settings or samples (the results then mix them; a warning says which keys differ).
        frames: evaluated frame set passed to :func:`metrics.evaluate`.
        protocol: evaluation protocol passed to :func:`metrics.evaluate`.
        dist_timeout_minutes: timeout of the gloo group created here from torchrun's env; it
            bounds the wait at the barrier, so it must exceed the slowest rank's run.
    """

    out_dir: Path | str
    resume: bool = True
    progress: bool = True
    shard: tuple[int, int] | None = None
    fail_fast: bool = False
    retry_errors: bool = True
    force_resume: bool = False
    frames: FrameSet = "tubedetr"
    protocol: EvalProtocol = "tubedetr"
    dist_timeout_minutes: float = 24 * 60.0


@dataclass
class RunSummary:
    """What one call of :func:`run_dataset` did on this rank.

    Attributes:
        done: samples grounded successfully by this call.
        skipped: samples of this rank's shard already done by an earlier run.
        failed: samples whose grounder raised in this call.
        retried: samples of this call that had an error line from an earlier run.
        seconds: wall-clock time of the call.
        metrics: ``STVGResult.report()`` of the merged predictions (rank 0, when the samples
            have ground truth), else ``None``.
        paths: ``results`` (this rank's file), and on the merging rank ``merged``,
            ``predictions``, and ``metrics_json`` / ``metrics_md`` when scored.
        rank: this process's rank.
        world_size: number of ranks.
    """

    done: int
    skipped: int
    failed: int
    seconds: float
    metrics: dict[str, Any] | None
    paths: dict[str, Path] = field(default_factory=dict)
    rank: int = 0
    world_size: int = 1
    retried: int = 0


@dataclass
class MergeResult:
    """What :func:`merge_results` wrote.

    Attributes:
        records: the merged result lines, in dataset order.
        failed: ids whose line is an error.
        missing: ids with no line at all.
        metrics: ``STVGResult.report()``, or ``None`` when no sample has ground truth.
        paths: ``merged``, ``predictions``, and ``metrics_json`` / ``metrics_md`` when scored.
    """

    records: list[dict[str, Any]]
    failed: list[str]
    missing: list[str]
    metrics: dict[str, Any] | None
    paths: dict[str, Path]


# ------------------------------------------------------------------------------- records

_DROP = object()  # marks a value JSON cannot hold


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON types, or ``_DROP``. Non-finite floats become ``None`` (strict JSON)."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):  # numpy float64 included
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            converted = _jsonable(item)
            if converted is not _DROP and isinstance(key, str | int):
                out[str(key)] = converted
        return out
    if isinstance(value, list | tuple):
        items = [_jsonable(v) for v in value]
        # A list with holes would misalign its positions: drop it whole.
        return _DROP if any(v is _DROP for v in items) else items
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars, torch tensors
    if callable(tolist):
        return _jsonable(tolist())
    return _DROP


def result_record(sample_id: str, result: GroundingResult, seconds: float) -> dict[str, Any]:
    """The success line of one sample; raises ``PredictionError`` if the tube cannot be saved."""
    tube = result.tube.to_json()
    tube_from_json(sample_id, tube)  # refuse now what the merge could not read back
    extras = _jsonable(result.extras)
    return {
        "id": sample_id,
        "tube": tube,
        "chosen_track": None if result.chosen_track is None else int(result.chosen_track),
        "track_scores": _optional_list(result.track_scores),
        "frame_scores": _optional_list(result.frame_scores),
        "sampled_frame_ids": _optional_list(result.sampled_frame_ids),
        "extras": extras if isinstance(extras, dict) else {},
        "seconds": round(seconds, 4),
    }


def _optional_list(value: Any) -> Any:
    converted = _jsonable(value)
    return None if converted is _DROP else converted


def error_record(sample_id: str, err: BaseException, seconds: float) -> dict[str, Any]:
    """The error line of one sample: the exception type and message on one line."""
    message = redact(" ".join(f"{type(err).__name__}: {err}".split()))
    return {"id": sample_id, "error": message, "seconds": round(seconds, 4)}


def is_error(record: Mapping[str, Any]) -> bool:
    """Whether a result line records a failure."""
    return "error" in record


# ------------------------------------------------------------------------------- files


def _read_jsonl(path: Path) -> tuple[list[dict[str, Any]], int, bool]:
    """``(records, bytes of complete lines, whether a partial last line follows)``."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    records = []
    for lineno, line in enumerate(data[:end].split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise STVGError(f"{path}, line {lineno}: not JSON; the results file is damaged") from None
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            raise STVGError(f"{path}, line {lineno}: not a result line (an object with a string id)")
        records.append(record)
    return records, end, end < len(data)


def _rank_files(out_dir: Path) -> list[tuple[int, Path]]:
    """The rank files of ``out_dir``, by rank."""
    found = []
    for path in out_dir.glob(RANK_GLOB):
        rank = path.name[len("results.rank") : -len(".jsonl")]
        if rank.isdigit():
            found.append((int(rank), path))
    return sorted(found)


def _keep(records: dict[str, dict[str, Any]], record: dict[str, Any]) -> None:
    """Later lines supersede earlier ones, except that an error never replaces a success."""
    old = records.get(record["id"])
    if old is None or is_error(old) or not is_error(record):
        records[record["id"]] = record


def load_results(out_dir: Path | str) -> dict[str, dict[str, Any]]:
    """Every result line of ``out_dir`` by sample id, read from the rank files in rank order.

    Partial last lines are ignored. Without rank files (a copied run) ``results.jsonl`` is read.
    """
    out = Path(out_dir)
    paths = [p for _, p in _rank_files(out)]
    if not paths and (out / MERGED_FILE).exists():
        paths = [out / MERGED_FILE]
    records: dict[str, dict[str, Any]] = {}
    for path in paths:
        for record in _read_jsonl(path)[0]:
            _keep(records, record)
    return records


def _cut_partial_line(path: Path) -> None:
    """Truncate a partial last line left by a kill mid-write."""
    if not path.exists():
        return
    _, end, torn = _read_jsonl(path)
    if torn:
        logger.warning("%s: dropping a partial last line (an interrupted write)", path)
        with path.open("r+b") as fh:
            fh.truncate(end)
            os.fsync(fh.fileno())


def _append(fh: IO[bytes], record: dict[str, Any]) -> None:
    """One line, durable before the next sample starts."""
    fh.write(json.dumps(record).encode() + b"\n")
    fh.flush()
    os.fsync(fh.fileno())


# ------------------------------------------------------------------------------- merge


def merge_results(
    out_dir: Path | str,
    samples: Iterable[Sample],
    *,
    name: str = "all",
    frames: FrameSet = "tubedetr",
    protocol: EvalProtocol = "tubedetr",
    settings: dict[str, Any] | None = None,
) -> MergeResult:
    """Merge the rank files into ``results.jsonl``, ``predictions.json`` and the metrics files.

    Lines of ids not among ``samples`` are left out. Metrics are written when some sample has
    ground truth; failed and missing samples score 0 there. ``name`` labels the metrics row;
    ``settings`` (the grounder's resolved settings) is stored in ``metrics.json`` under
    ``"settings"``.
    """
    out = Path(out_dir)
    samples = list(samples)
    records = load_results(out)
    merged = [records[s.id] for s in samples if s.id in records]
    failed = [r["id"] for r in merged if is_error(r)]
    missing = [s.id for s in samples if s.id not in records]
    if missing:
        logger.warning("%d of %d samples have no result line yet", len(missing), len(samples))
    paths = {"merged": out / MERGED_FILE, "predictions": out / PREDICTIONS_FILE}
    write_text_atomic(paths["merged"], "".join(json.dumps(r) + "\n" for r in merged))
    predictions: dict[str, Tube] = {
        r["id"]: tube_from_json(r["id"], r["tube"]) for r in merged if not is_error(r)
    }
    save_predictions(predictions, paths["predictions"])

    gts = {s.id: s.gt for s in samples if s.gt is not None}
    metrics_paths = {"metrics_json": out / METRICS_JSON, "metrics_md": out / METRICS_MD}
    if not gts:
        for path in metrics_paths.values():  # stale scores of an earlier run would mislead
            path.unlink(missing_ok=True)
        return MergeResult(merged, failed, missing, None, paths)
    report = evaluate(predictions, gts, frames=frames, protocol=protocol).report()
    stored = report if settings is None else {**report, "settings": settings}
    write_text_atomic(metrics_paths["metrics_json"], json.dumps(stored, indent=2, default=str) + "\n")
    header = (
        f"{len(gts)} samples with ground truth, {len(failed)} failed, {len(missing)} without a result; "
        f"protocol {protocol}, frames {frames}; percent.\n\n"
    )
    write_text_atomic(metrics_paths["metrics_md"], header + markdown_table(stvg_rows(report, name)) + "\n")
    return MergeResult(merged, failed, missing, report, {**paths, **metrics_paths})


# ------------------------------------------------------------------------------- ranks


@dataclass
class _Ranks:
    """This process's place in the run and how to synchronise with the others."""

    rank: int
    world: int
    dist: Any = None  # torch.distributed when a process group is in use
    owned: bool = False  # the group was created here, so it is destroyed here

    def barrier(self) -> None:
        if self.dist is not None and self.world > 1:
            self.dist.barrier()

    def close(self) -> None:
        if self.owned:
            self.dist.destroy_process_group()


def _join_ranks(config: RunConfig) -> _Ranks:
    if config.shard is not None:
        rank, world = config.shard
        if not 0 <= rank < world:
            raise ValueError(f"shard {config.shard}: need 0 <= rank < world_size")
        return _Ranks(rank, world)
    env_world = int(os.environ.get("WORLD_SIZE", "1"))
    from_env = "RANK" in os.environ and env_world > 1
    # No process group can exist before torch is imported: skip the slow import then.
    if "torch.distributed" not in sys.modules and not from_env:
        return _Ranks(0, 1)
    import torch.distributed as dist

    if not dist.is_available():
        if from_env:  # every rank would write rank 0's file: refuse rather than corrupt it
            raise RuntimeError(f"WORLD_SIZE={env_world} but this torch build has no torch.distributed")
        return _Ranks(0, 1)
    if dist.is_initialized():
        return _Ranks(dist.get_rank(), dist.get_world_size(), dist)
    if from_env:
        dist.init_process_group("gloo", timeout=timedelta(minutes=config.dist_timeout_minutes))
        return _Ranks(dist.get_rank(), dist.get_world_size(), dist, owned=True)
    return _Ranks(0, 1)


def _prepare(out: Path, ranks: _Ranks, config: RunConfig) -> Path:
    """Create ``out_dir`` and this rank's file, truncated or with its partial line cut."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / RANK_FILE.format(rank=ranks.rank)
    if config.resume:
        _cut_partial_line(path)
        return path
    path.write_bytes(b"")
    if ranks.rank == 0 and config.shard is None:
        # Nobody in this world writes these, so removing them races with no one.
        for rank, stale in _rank_files(out):
            if rank >= ranks.world:
                stale.unlink()
    return path


# ------------------------------------------------------------------------------- run


def _ground_all(
    todo: Sequence[Sample],
    grounder: Grounder,
    path: Path,
    summary: RunSummary,
    config: RunConfig,
    total: int,
) -> None:
    """Ground ``todo`` in order, appending one line per sample to ``path``."""
    bar = tqdm(
        total=total,
        initial=summary.skipped,
        desc="grounding" if summary.world_size == 1 else f"rank {summary.rank}",
        position=summary.rank,
        unit="sample",
        disable=not config.progress,
    )
    with path.open("ab") as fh, bar:
        for sample in todo:
            bar.set_postfix_str(sample.id)  # refreshed now: a sample may take long
            t0 = time.perf_counter()
            try:
                record = result_record(sample.id, grounder.ground_sample(sample), time.perf_counter() - t0)
            except Exception as err:  # one bad sample must not end a long run
                failure = error_record(sample.id, err, time.perf_counter() - t0)
                _append(fh, failure)
                summary.failed += 1
                bar.update()
                if config.fail_fast:
                    raise
                logger.warning("sample %s failed: %s", sample.id, failure["error"])
                continue
            _append(fh, record)
            summary.done += 1
            bar.update()


def grounder_settings(grounder: Any) -> dict[str, Any] | None:
    """The resolved settings of a grounder with a ``config.to_json()`` (its preset included)."""
    to_json = getattr(getattr(grounder, "config", None), "to_json", None)
    return to_json() if callable(to_json) else None


def run_dataset(samples: Iterable[Sample], grounder: Grounder, config: RunConfig) -> RunSummary:
    """Ground every sample, one durable result line each, then merge and score on rank 0.

    See the module docstring for the files and the resume, error and sharding rules.

    Raises:
        ValueError: two samples share an id, or the shard is invalid.
        Exception: with ``fail_fast``, the grounder's first exception (its error line written).
    """
    started = time.perf_counter()
    samples = list(samples)
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        raise ValueError("sample ids must be unique: results are keyed by id")
    out = Path(config.out_dir)
    name = str(getattr(grounder, "name", type(grounder).__name__))
    ranks = _join_ranks(config)
    try:
        with RunLock(out, ranks.rank):
            rank_path = _prepare(out, ranks, config)
            shard = samples[ranks.rank :: ranks.world]
            done = load_results(out) if config.resume else {}
            todo = [s for s in shard if s.id not in done or (config.retry_errors and is_error(done[s.id]))]
            check_run(out, run_record(grounder, samples), config.resume, config.force_resume, ranks.rank == 0)
            summary = RunSummary(
                done=0,
                skipped=len(shard) - len(todo),
                failed=0,
                seconds=0.0,
                metrics=None,
                paths={"results": rank_path},
                rank=ranks.rank,
                world_size=ranks.world,
                retried=sum(s.id in done for s in todo),
            )
            _ground_all(todo, grounder, rank_path, summary, config, total=len(shard))
        ranks.barrier()
        if ranks.rank == 0 and config.shard is None:
            merged = merge_results(
                out,
                samples,
                name=name,
                frames=config.frames,
                protocol=config.protocol,
                settings=grounder_settings(grounder),
            )
            summary.metrics = merged.metrics
            summary.paths.update(merged.paths)
    finally:
        ranks.close()
    summary.seconds = time.perf_counter() - started
    return summary
