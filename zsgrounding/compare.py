"""Compare grounding paradigms side by side: same samples, same proposals, same evaluator.

``compare_paradigms(samples, {"zero-shot": zs, "spacevllm": svl, "colour": baseline}, out_dir,
tracks_for=...)``:

* every grounder receives, for a sample, the SAME proposal tracks: ``tracks_for(sample)`` is
  called once per sample, kept in memory until the last grounder that still needs the sample has
  had it, and passed as ``tracks=`` to each grounder's ``ground_sample`` (a shallow copy of the
  list: the same :class:`Track` objects, so a grounder cannot reorder another's);
* every grounder runs through :func:`zsgrounding.runner.run_dataset` in ``out_dir/<name>/``:
  streamed JSONL, resumable, ``predictions.json`` and ``metrics.json`` per grounder;
* per sample the wall time and the peak memory growth of the grounder's call are recorded in
  the result line's ``extras["compare"]`` (so a resumed comparison still knows them); how they
  are measured is in :mod:`zsgrounding.measure`. The proposals are shared, so their cost is
  charged to no grounder;
* the tubes are scored by the one evaluator, :func:`zsgrounding.metrics.evaluate`, against the
  samples' ground truth, and against each other (the agreement matrix);
* the :class:`Comparison` is saved as ``comparison.md``, ``comparison.json``,
  ``metric_bars.png`` and ``scatter_<a>_vs_<b>.png`` (drawn by :mod:`zsgrounding.viz.plots`).

One process only: under ``torch.distributed`` use ``stvg eval`` per grounder instead.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from zsgrounding.atomic import write_text_atomic
from zsgrounding.measure import EXTRAS_KEY, MeasuredGrounder
from zsgrounding.metrics import TUBEDETR_FPS, FrameSet, evaluate
from zsgrounding.metrics import Protocol as EvalProtocol
from zsgrounding.predictions import load_predictions, tube_from_json
from zsgrounding.report import markdown_table
from zsgrounding.runner import Grounder, RunConfig, is_error, load_results, run_dataset
from zsgrounding.types import GroundTruth, Sample, Track, Tube

__all__ = [
    "METRIC_COLUMNS",
    "Comparison",
    "GrounderRun",
    "compare_paradigms",
    "load_comparison",
    "proposal_tracks",
    "tube_agreement",
]


TracksFor = Callable[[Sample], list[Track] | None]

METRIC_COLUMNS = ("m_tIoU", "m_vIoU", "vIoU@0.3", "vIoU@0.5")
COST_COLUMNS = ("s/video", "peak MB")
MARKDOWN_FILE = "comparison.md"
JSON_FILE = "comparison.json"
BARS_FILE = "metric_bars.png"
MAX_ALL_PAIRS = 4  # up to this many grounders every pair gets a scatter plot, else first vs rest


# ------------------------------------------------------------------------------- shared tracks


class _SharedTracks:
    """``tracks_for`` called once per sample; each sample's tracks are dropped after their last use.

    ``pending[id]`` counts the grounders that will still ground the sample; an exception of
    ``tracks_for`` is kept too, so every grounder records the same failure without a second call.
    """

    def __init__(self, tracks_for: TracksFor, pending: Mapping[str, int]) -> None:
        self.tracks_for = tracks_for
        self.pending = dict(pending)
        self.cache: dict[str, list[Track] | Exception | None] = {}
        self.calls = 0

    def get(self, sample: Sample) -> list[Track] | None:
        if sample.id not in self.cache:
            self.calls += 1
            try:
                got = self.tracks_for(sample)
                self.cache[sample.id] = None if got is None else list(got)
            except Exception as err:  # the same error for every grounder, as one result line each
                self.cache[sample.id] = err
        value = self.cache[sample.id]
        self.pending[sample.id] = self.pending.get(sample.id, 1) - 1
        if self.pending[sample.id] <= 0:
            del self.cache[sample.id]
        if isinstance(value, Exception):
            raise value
        return None if value is None else list(value)


def proposal_tracks(
    proposer: Callable[..., list[Track]], num_frames: int, sampling: str = "centres"
) -> TracksFor:
    """A ``tracks_for`` from a proposer ``(clip, noun_phrase, video_key) -> tracks``.

    The clip is sampled with ``num_frames`` frames spread by ``sampling``, and the noun phrase and
    video key are those :class:`~zsgrounding.zeroshot.pipeline.ZeroShotGrounder` uses, so a track store
    filled by ``stvg eval`` with the same frames serves the comparison too.
    """
    from zsgrounding.english import noun_phrase
    from zsgrounding.video import sample_uniform

    def tracks_for(sample: Sample) -> list[Track]:
        clip = sample_uniform(sample.video, num_frames, sampling=sampling)
        return list(proposer(clip, noun_phrase(sample.sentence), Path(sample.video).name))

    return tracks_for


# ------------------------------------------------------------------------------- agreement


def tube_agreement(
    tubes_a: Mapping[str, Tube],
    tubes_b: Mapping[str, Tube],
    samples: Sequence[Sample],
    frames: FrameSet = "tubedetr",
) -> np.ndarray:
    """Per sample, the vIoU of ``a``'s tube scored with ``b``'s tube as the ground truth.

    The evaluator is :func:`zsgrounding.metrics.evaluate` under the TubeDETR protocol on the
    sample's evaluated frames (its ground truth's segment and fps; without ground truth, every
    frame of the two tubes' hull at the sample's fps). Under that protocol the value is
    symmetric: a frame counts only where both tubes have a box, and the union and intersection
    of the spans do not depend on which tube is the "truth".

    Returns:
        ``(n,)`` in [0, 1], in ``samples`` order; NaN where either tube is missing.
    """
    gts: dict[str, GroundTruth] = {}
    for s in samples:
        a, b = tubes_a.get(s.id), tubes_b.get(s.id)
        if a is None or b is None:
            continue
        if s.gt is not None:
            fps, segment = s.gt.fps, s.gt.segment
        else:
            fps, segment = s.fps or TUBEDETR_FPS, (min(a.start, b.start), max(a.end, b.end))
        gts[s.id] = GroundTruth(tube=b, fps=fps, segment=segment)
    out = np.full(len(samples), np.nan)
    if not gts:
        return out
    result = evaluate(tubes_a, gts, frames=frames, protocol="tubedetr")
    viou = dict(zip(result.ids, result.viou.tolist(), strict=True))
    for i, s in enumerate(samples):
        if s.id in viou:
            out[i] = viou[s.id]
    return out


# ------------------------------------------------------------------------------- results


@dataclass
class GrounderRun:
    """One grounder's side of a comparison; arrays are aligned with :attr:`Comparison.ids`.

    Attributes:
        name: the row label.
        dir: the folder of its run files (``results.jsonl``, ``predictions.json``, ...).
        tubes: sample id -> predicted tube (a failed sample has none).
        tiou: ``(n,)`` temporal IoU per sample in [0, 1]; NaN where the sample has no ground truth.
        viou: ``(n,)`` vIoU per sample in [0, 1]; NaN where the sample has no ground truth.
        metrics: ``STVGResult.report()`` in percent (``m_tIoU``, ``m_vIoU``, ``vIoU@0.3``,
            ``vIoU@0.5``, ``n``, ``missing``, per-type splits); empty without ground truth.
        seconds: ``(n,)`` wall seconds of each grounder call; NaN where not measured.
        peak_mb: ``(n,)`` peak memory growth of each call in MiB; NaN where not measured.
        memory: how ``peak_mb`` was measured: ``"cuda"``, ``"rss"`` (approximate), or ``None``.
        errors: sample id -> the one-line error of a failed sample.
    """

    name: str
    dir: Path
    tubes: dict[str, Tube]
    tiou: np.ndarray
    viou: np.ndarray
    metrics: dict[str, Any]
    seconds: np.ndarray
    peak_mb: np.ndarray
    memory: str | None = None
    errors: dict[str, str] = field(default_factory=dict)

    def cost(self) -> dict[str, float | None]:
        """``seconds_mean``, ``seconds_max`` (s per video), ``peak_mb_mean``, ``peak_mb_max`` (MiB)."""
        return {
            "seconds_mean": _nan_stat(np.nanmean, self.seconds),
            "seconds_max": _nan_stat(np.nanmax, self.seconds),
            "peak_mb_mean": _nan_stat(np.nanmean, self.peak_mb),
            "peak_mb_max": _nan_stat(np.nanmax, self.peak_mb),
        }


@dataclass
class Comparison:
    """Grounders compared on the same samples, proposals and evaluator.

    Attributes:
        ids: the ``n`` sample ids, in dataset order.
        runs: grounder name -> its :class:`GrounderRun`, in the order given.
        agreement: ``(G, G)`` percent: entry ``[i, j]`` is the mean over samples of the vIoU of
            grounder ``i``'s tube scored with grounder ``j``'s tube as ground truth
            (:func:`tube_agreement`); samples where either failed are left out (NaN if none is
            left). Symmetric, with 100 on the diagonal for tubes with a box on every frame.
        agreement_per_sample: ``(G, G, n)`` the per-sample values in [0, 1], NaN where missing.
        frames: the evaluated frame set.
        protocol: the evaluation protocol of the metrics against the ground truth.
    """

    ids: list[str]
    runs: dict[str, GrounderRun]
    agreement: np.ndarray
    agreement_per_sample: np.ndarray
    frames: FrameSet = "tubedetr"
    protocol: EvalProtocol = "tubedetr"

    @property
    def names(self) -> list[str]:
        """The grounder names, in table order."""
        return list(self.runs)

    def rows(self) -> dict[str, dict[str, Any]]:
        """Per grounder the four metrics (percent), ``s/video`` (mean seconds per call), ``peak MB``
        (the largest growth of a call, MiB) and ``failed`` (samples); ``None`` where unknown."""
        rows: dict[str, dict[str, Any]] = {}
        for name, run in self.runs.items():
            cost = run.cost()
            row: dict[str, Any] = {c: run.metrics.get(c) for c in METRIC_COLUMNS}
            row.update({"s/video": cost["seconds_mean"], "peak MB": cost["peak_mb_max"]})
            row["failed"] = len(run.errors)
            rows[name] = row
        return rows

    def to_markdown(self) -> str:
        """The side-by-side table, then the agreement matrix."""
        with_gt = max((int(r.metrics.get("n", 0)) for r in self.runs.values()), default=0)
        how = {"cuda": "CUDA allocated", "rss": "resident set, sampled, approximate"}
        memory = sorted({how.get(m, m) for r in self.runs.values() if r.memory for m in r.memory.split("+")})
        lines = [
            f"{len(self.ids)} samples ({with_gt} with ground truth); protocol {self.protocol}, "
            f"frames {self.frames}; metrics in percent; s/video: mean wall seconds per call; "
            f"peak MB: largest memory growth of a call ({'; '.join(memory) or 'not measured'}).",
            "",
            markdown_table(
                {name: _cells(row) for name, row in self.rows().items()},
                (*METRIC_COLUMNS, *COST_COLUMNS, "failed"),
            ),
            "",
            "Agreement: mean vIoU (percent) of the row's tube scored against the column's tube as "
            "ground truth (TubeDETR protocol; symmetric; samples where either failed left out).",
            "",
        ]
        matrix = {
            a: {b: _fmt(float(self.agreement[i, j]), 2) for j, b in enumerate(self.names)}
            for i, a in enumerate(self.names)
        }
        lines.append(markdown_table(matrix, self.names))
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, Any]:
        """Everything but the tubes (they stay in each run's ``predictions.json``); NaN -> null."""
        return {
            "format": "stvg-comparison-v1",
            "ids": self.ids,
            "frames": self.frames,
            "protocol": self.protocol,
            "grounders": {
                name: {
                    "dir": run.dir.name,
                    "metrics": run.metrics,
                    "cost": run.cost(),
                    "memory": run.memory,
                    "tiou": _json_floats(run.tiou),
                    "viou": _json_floats(run.viou),
                    "seconds": _json_floats(run.seconds),
                    "peak_mb": _json_floats(run.peak_mb),
                    "errors": run.errors,
                }
                for name, run in self.runs.items()
            },
            "agreement": {
                "names": self.names,
                "matrix": [_json_floats(row) for row in self.agreement],
                "per_sample": [[_json_floats(v) for v in row] for row in self.agreement_per_sample],
            },
        }

    def scatter_pairs(self) -> list[tuple[str, str]]:
        """The pairs plotted: every pair up to :data:`MAX_ALL_PAIRS` grounders, else first vs rest."""
        names = self.names
        if len(names) <= MAX_ALL_PAIRS:
            return [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
        return [(names[0], b) for b in names[1:]]

    def save(self, out_dir: Path | str) -> dict[str, Path]:
        """Write ``comparison.md``, ``comparison.json``, ``metric_bars.png`` and the scatter plots.

        Returns:
            ``{"markdown", "json", "bars", "scatter:<a>:<b>" ...: path}``.
        """
        paths = self.file_paths(out_dir)
        paths["markdown"].parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(paths["markdown"], self.to_markdown())
        write_text_atomic(paths["json"], json.dumps(self.to_json(), indent=1) + "\n")
        # Imported here: matplotlib and Pillow load only when a comparison is saved.
        from zsgrounding.viz.plots import plot_metric_bars, plot_viou_scatter

        title = f"{len(self.ids)} samples, protocol {self.protocol}"
        plot_metric_bars(
            paths["bars"], {name: run.metrics for name, run in self.runs.items()}, METRIC_COLUMNS, title
        )
        for a, b in self.scatter_pairs():
            plot_viou_scatter(paths[f"scatter:{a}:{b}"], a, self.runs[a].viou, b, self.runs[b].viou)
        return paths

    def file_paths(self, out_dir: Path | str) -> dict[str, Path]:
        """Where :meth:`save` writes each file (same keys as its return value)."""
        out = Path(out_dir)
        paths = {"markdown": out / MARKDOWN_FILE, "json": out / JSON_FILE, "bars": out / BARS_FILE}
        slugs = {name: run.dir.name for name, run in self.runs.items()}
        for a, b in self.scatter_pairs():
            paths[f"scatter:{a}:{b}"] = out / f"scatter_{slugs[a]}_vs_{slugs[b]}.png"
        return paths


# ------------------------------------------------------------------------------- run


def _slug(name: str) -> str:
    """A folder / file name for a grounder name (``zero-shot:tas=false`` -> ``zero-shot-tas-false``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "grounder"


def _slugs(names: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        base = slug = _slug(name)
        k = 2
        while slug in used:  # two names that differ only in punctuation
            slug = f"{base}-{k}"
            k += 1
        used.add(slug)
        out[name] = slug
    return out


def compare_paradigms(
    samples: Iterable[Sample],
    grounders: Mapping[str, Grounder],
    out_dir: Path | str,
    tracks_for: TracksFor | None = None,
    *,
    resume: bool = True,
    progress: bool = True,
    frames: FrameSet = "tubedetr",
    protocol: EvalProtocol = "tubedetr",
) -> Comparison:
    """Run every grounder on ``samples`` with shared proposals, score them alike, save the comparison.

    Args:
        samples: the dataset (unique ids).
        grounders: name -> grounder, in table order. With ``tracks_for`` each must accept
            ``ground_sample(sample, tracks=...)`` (the zero-shot, SpaceVLLM and baseline grounders do).
        out_dir: the comparison folder; each grounder runs in ``out_dir/<name as a file name>/``.
        tracks_for: ``sample -> tracks`` (or ``None``: the grounder's own proposals), called at
            most once per sample; ``None``: grounders are called as ``ground_sample(sample)``.
        resume: keep what earlier runs in ``out_dir`` grounded (see :mod:`zsgrounding.runner`);
            a finished comparison is re-scored without calling any grounder or ``tracks_for``.
        progress: show a progress bar per grounder.
        frames, protocol: passed to :func:`zsgrounding.metrics.evaluate` (as in :class:`RunConfig`).

    Returns:
        The :class:`Comparison`, also saved into ``out_dir`` (:meth:`Comparison.save`).

    Raises:
        ValueError: no grounders, or two samples share an id.
    """
    samples = list(samples)
    if not grounders:
        raise ValueError("compare_paradigms needs at least one grounder")
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        raise ValueError("sample ids must be unique: results are keyed by id")
    out = Path(out_dir)
    slugs = _slugs(grounders)
    dirs = {name: out / slug for name, slug in slugs.items()}

    shared = None
    if tracks_for is not None:
        # Which grounders will still ask for a sample, as run_dataset will decide on resume.
        pending = dict.fromkeys(ids, 0)
        for name in grounders:
            done = load_results(dirs[name]) if resume and dirs[name].is_dir() else {}
            for sample_id in ids:
                if sample_id not in done:
                    pending[sample_id] += 1
        shared = _SharedTracks(tracks_for, pending)

    for name, grounder in grounders.items():
        if progress:
            tqdm.write(f"{name}: {dirs[name]}")
        config = RunConfig(
            out_dir=dirs[name], resume=resume, progress=progress, frames=frames, protocol=protocol
        )
        tracks = None if shared is None else shared.get
        run_dataset(samples, MeasuredGrounder(name, grounder, tracks), config)

    comparison = _collect(samples, {name: dirs[name] for name in grounders}, frames, protocol)
    comparison.save(out)
    return comparison


def _collect(
    samples: Sequence[Sample], dirs: Mapping[str, Path], frames: FrameSet, protocol: EvalProtocol
) -> Comparison:
    """Score the runs in ``dirs`` (their result lines) and build the comparison."""
    ids = [s.id for s in samples]
    index = {sample_id: i for i, sample_id in enumerate(ids)}
    gts = {s.id: s.gt for s in samples if s.gt is not None}
    n = len(ids)
    runs: dict[str, GrounderRun] = {}
    for name, folder in dirs.items():
        records = load_results(folder)
        tubes: dict[str, Tube] = {}
        errors: dict[str, str] = {}
        seconds, peak = np.full(n, np.nan), np.full(n, np.nan)
        memory: set[str] = set()
        for sample_id in ids:
            record = records.get(sample_id)
            if record is None:
                continue
            i = index[sample_id]
            cost = record.get("extras", {}).get(EXTRAS_KEY, {}) if not is_error(record) else {}
            seconds[i] = _float(cost.get("seconds", record.get("seconds")))
            peak[i] = _float(cost.get("peak_mb"))
            if cost.get("memory"):
                memory.add(str(cost["memory"]))
            if is_error(record):
                errors[sample_id] = str(record["error"])
            else:
                tubes[sample_id] = tube_from_json(sample_id, record["tube"])
        tiou, viou, metrics = np.full(n, np.nan), np.full(n, np.nan), {}
        if gts:
            result = evaluate(tubes, gts, frames=frames, protocol=protocol)
            for k, sample_id in enumerate(result.ids):
                tiou[index[sample_id]] = result.tiou[k]
                viou[index[sample_id]] = result.viou[k]
            metrics = result.report()
        runs[name] = GrounderRun(
            name=name,
            dir=folder,
            tubes=tubes,
            tiou=tiou,
            viou=viou,
            metrics=metrics,
            seconds=seconds,
            peak_mb=peak,
            memory="+".join(sorted(memory)) or None,
            errors=errors,
        )
    per_sample, matrix = _agreement(samples, runs, frames)
    return Comparison(ids, runs, matrix, per_sample, frames, protocol)


def _agreement(
    samples: Sequence[Sample], runs: Mapping[str, GrounderRun], frames: FrameSet
) -> tuple[np.ndarray, np.ndarray]:
    names = list(runs)
    g = len(names)
    per_sample = np.full((g, g, len(samples)), np.nan)
    for i, a in enumerate(names):
        for j in range(i, g):
            # Symmetric under the TubeDETR protocol (see tube_agreement): score one half.
            values = tube_agreement(runs[a].tubes, runs[names[j]].tubes, samples, frames)
            per_sample[i, j] = per_sample[j, i] = values
    matrix = np.full((g, g), np.nan)
    for i in range(g):
        for j in range(g):
            row = per_sample[i, j]
            if np.isfinite(row).any():
                matrix[i, j] = 100.0 * float(np.nanmean(row))
    return per_sample, matrix


def load_comparison(out_dir: Path | str) -> Comparison:
    """Read a saved comparison back (tubes from each grounder's ``predictions.json``)."""
    out = Path(out_dir)
    data = json.loads((out / JSON_FILE).read_text())
    runs = {}
    for name, entry in data["grounders"].items():
        folder = out / entry["dir"]
        predictions = folder / "predictions.json"
        runs[name] = GrounderRun(
            name=name,
            dir=folder,
            tubes=load_predictions(predictions) if predictions.exists() else {},
            tiou=_array(entry["tiou"]),
            viou=_array(entry["viou"]),
            metrics=entry["metrics"],
            seconds=_array(entry["seconds"]),
            peak_mb=_array(entry["peak_mb"]),
            memory=entry["memory"],
            errors=dict(entry["errors"]),
        )
    agreement = data["agreement"]
    return Comparison(
        ids=list(data["ids"]),
        runs=runs,
        agreement=np.array([_array(row) for row in agreement["matrix"]]).reshape(len(runs), len(runs)),
        agreement_per_sample=np.array(
            [[_array(v) for v in row] for row in agreement["per_sample"]], dtype=np.float64
        ).reshape(len(runs), len(runs), len(data["ids"])),
        frames=data["frames"],
        protocol=data["protocol"],
    )


# ------------------------------------------------------------------------------- helpers


def _nan_stat(fn: Callable[[np.ndarray], Any], values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(fn(finite)) if finite.size else None


def _fmt(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _cells(row: Mapping[str, Any]) -> dict[str, str]:
    # Seconds get three decimals: a baseline's call takes milliseconds.
    digits = {"s/video": 3, "peak MB": 1}
    return {key: _fmt(value, digits.get(key, 2)) for key, value in row.items()}


def _float(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan


def _json_floats(values: np.ndarray) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in np.asarray(values, dtype=np.float64).tolist()]


def _array(values: Sequence[float | None]) -> np.ndarray:
    return np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)
