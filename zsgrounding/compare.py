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

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from zsgrounding.comparison import (
    METRIC_COLUMNS,
    Comparison,
    GrounderRun,
    load_comparison,
    number_or_nan,
    tube_agreement,
)
from zsgrounding.measure import EXTRAS_KEY, MeasuredGrounder
from zsgrounding.metrics import FrameSet, evaluate
from zsgrounding.metrics import Protocol as EvalProtocol
from zsgrounding.predictions import tube_from_json
from zsgrounding.runner import Grounder, RunConfig, is_error, load_results, run_dataset
from zsgrounding.types import Sample, Track, Tube

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
            seconds[i] = number_or_nan(cost.get("seconds", record.get("seconds")))
            peak[i] = number_or_nan(cost.get("peak_mb"))
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
