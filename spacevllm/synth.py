"""Uni-STG synthesis: STVG records from (video, caption) pairs (*SpaceVLLM*, arXiv 2503.13983, section 3.2.1).

Four stages per pair, each free to drop it (the :class:`SynthReport` counts who dropped what):

1. analyzer: the objects of the caption a detector can box, the caption's subject first
   (:class:`LLMAnalyzer` through an OpenAI-compatible endpoint, else :class:`RuleAnalyzer`, the
   offline head noun). Drops: ``no_object``.
2. annotator: the detector (Grounding DINO, or anything with the same ``detect``) runs on the
   frames of the pair's time window with each object as the prompt, in order, until one is found;
   boxes below ``box_threshold`` (0.3) are discarded. Drops: ``video_error``, ``empty_span``,
   ``not_found``.
3. refiner: the span is snapped to the native frames where the object was found, from the first
   to the last (half-open); spans under ``min_seconds`` (2 s) or over ``max_seconds`` (120 s) go.
   Drops: ``too_short``, ``too_long``.
4. filter: frames with more than ``max_boxes`` (3) confident boxes are complex scenes and lose
   their boxes; every other frame keeps its most confident box; a pair whose box area changes by
   more than ``max_area_ratio`` (2x, either way) between adjacent kept frames is dropped.
   Drops: ``complex_scene`` (no frame left), ``area_jump``.

The survivors become ``stvg`` :class:`~spacevllm.data.Record` s: query = the caption, boxes on
the kept frames, span = the refined one; ``meta`` says which object was boxed.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from spacevllm.analyzer import (
    EXAMPLES,
    INSTRUCTION,
    Analysis,
    Analyzer,
    AnalyzerError,
    LLMAnalyzer,
    RuleAnalyzer,
    SynthWarning,
    build_messages,
    default_analyzer,
    parse_objects,
    unique_objects,
)
from spacevllm.data import Record, span_frames, write_records
from zsgrounding.errors import VideoError
from zsgrounding.proposals.detections import FrameDetections
from zsgrounding.types import Sample
from zsgrounding.video import VideoInfo, fps_ids, probe, read_frames, uniform_ids

STAGES: tuple[str, ...] = ("analyzer", "annotator", "refiner", "filter")
REASONS: dict[str, tuple[str, ...]] = {
    "analyzer": ("no_object",),
    "annotator": ("video_error", "empty_span", "not_found"),
    "refiner": ("too_short", "too_long"),
    "filter": ("complex_scene", "area_jump"),
}


# ---------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class SynthConfig:
    """Thresholds and frame sampling of :func:`synthesize`.

    Attributes:
        box_threshold: detections with confidence ``>=`` this are kept (the paper's 0.3).
        min_seconds, max_seconds: refined spans shorter / longer than these are dropped.
        max_boxes: a frame with more confident boxes than this is a complex scene.
        max_area_ratio: adjacent kept boxes whose areas differ by more than this factor drop the pair.
        max_objects: analyzer objects tried per pair, subject first.
        sample_fps: frames per second sent to the detector; ``None``: every native frame (the paper).
        max_frames: at most this many frames per pair (taken uniformly over the window), to bound
            memory on long spans; ``None``: no bound.
        frame_size: short side the frames are resized to before detection (boxes stay in native
            pixels); ``None``: native size.
        search_margin: seconds added on both sides of the pair's span before annotating, so the
            refiner can also widen a span that is too tight.
    """

    box_threshold: float = 0.3
    min_seconds: float = 2.0
    max_seconds: float = 120.0
    max_boxes: int = 3
    max_area_ratio: float = 2.0
    max_objects: int = 3
    sample_fps: float | None = None
    max_frames: int | None = 256
    frame_size: int | None = None
    search_margin: float = 0.0

    def __post_init__(self) -> None:
        problems = []
        if not 0 <= self.box_threshold <= 1:
            problems.append(f"box_threshold {self.box_threshold} is not in [0, 1]")
        if not 0 <= self.min_seconds <= self.max_seconds:
            problems.append("need 0 <= min_seconds <= max_seconds")
        if self.max_boxes < 1 or self.max_objects < 1:
            problems.append("max_boxes and max_objects must be >= 1")
        if self.max_area_ratio < 1:
            problems.append(f"max_area_ratio must be >= 1, got {self.max_area_ratio}")
        if self.sample_fps is not None and self.sample_fps <= 0:
            problems.append(f"sample_fps must be > 0, got {self.sample_fps}")
        if self.max_frames is not None and self.max_frames < 1:
            problems.append(f"max_frames must be >= 1, got {self.max_frames}")
        if self.search_margin < 0:
            problems.append(f"search_margin must be >= 0, got {self.search_margin}")
        if problems:
            raise ValueError("invalid SynthConfig: " + "; ".join(problems))


@dataclass
class SynthItem:
    """One (video, caption) pair to synthesize from.

    Attributes:
        id: becomes the record id.
        video: the video file.
        caption: the sentence; it becomes the record's query.
        span: the source's ``(start, end)`` seconds (e.g. Charades-STA, DiDeMo), or ``None`` for the
            whole video. Only frames inside it (plus ``search_margin``) are annotated.
        meta: carried into the record's ``meta``.
    """

    id: str
    video: Path
    caption: str
    span: tuple[float, float] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def items_from_samples(samples: Iterable[Sample]) -> list[SynthItem]:
    """Pairs from loader samples (e.g. Charades-STA): id, video, sentence, ``span_seconds``."""
    return [SynthItem(s.id, Path(s.video), s.sentence, s.span_seconds, dict(s.meta)) for s in samples]


def items_from_records(records: Iterable[Record]) -> list[SynthItem]:
    """Pairs from video records (vtg or stvg): id, media, query, span."""
    return [SynthItem(r.id, r.media, r.query, r.span, dict(r.meta)) for r in records if r.task != "rec"]


class Detector(Protocol):
    """What the annotator needs: :meth:`GroundingDinoDetector.detect`'s signature."""

    def detect(
        self,
        frames: np.ndarray,
        frame_ids: Sequence[int] | np.ndarray,
        text: str,
        size: tuple[int, int] | None = None,
    ) -> list[FrameDetections]: ...


# ---------------------------------------------------------------------------------------- report


@dataclass(frozen=True)
class Dropped:
    """One pair a stage removed: its id, the stage, the reason and a detail for humans."""

    id: str
    stage: str
    reason: str
    detail: str = ""


@dataclass
class SynthReport:
    """What :func:`synthesize` did.

    Attributes:
        total: pairs in.
        kept: records out.
        removed: ``{stage: {reason: count}}`` for every stage and reason of :data:`REASONS`.
        dropped: every removed pair, in input order.
        frames_annotated: frames sent to the detector (once per pair, whatever the objects tried).
        boxes_below_threshold: detector boxes discarded by ``box_threshold`` (all calls).
        frames_complex: frames that lost their boxes as complex scenes (pairs reaching the filter).
        analyzer_fallbacks: pairs whose LLM analysis failed and used the rules.
    """

    total: int = 0
    kept: int = 0
    removed: dict[str, dict[str, int]] = field(
        default_factory=lambda: {stage: dict.fromkeys(REASONS[stage], 0) for stage in STAGES}
    )
    dropped: list[Dropped] = field(default_factory=list)
    frames_annotated: int = 0
    boxes_below_threshold: int = 0
    frames_complex: int = 0
    analyzer_fallbacks: int = 0

    def drop(self, item_id: str, stage: str, reason: str, detail: str = "") -> None:
        self.removed[stage][reason] += 1
        self.dropped.append(Dropped(item_id, stage, reason, detail))

    def removed_by(self, stage: str) -> int:
        """Pairs ``stage`` removed, all reasons together."""
        return sum(self.removed[stage].values())

    def summary(self) -> str:
        """A few lines for logs: kept of total, then each stage's removals by reason."""
        lines = [f"kept {self.kept} of {self.total}"]
        for stage in STAGES:
            reasons = ", ".join(f"{r} {n}" for r, n in self.removed[stage].items() if n)
            lines.append(f"{stage}: removed {self.removed_by(stage)}" + (f" ({reasons})" if reasons else ""))
        lines.append(
            f"frames annotated {self.frames_annotated}, complex frames {self.frames_complex}, "
            f"boxes below threshold {self.boxes_below_threshold}, analyzer fallbacks {self.analyzer_fallbacks}"
        )
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------- stages


def _window(span: tuple[float, float] | None, info: VideoInfo, margin: float) -> tuple[int, int]:
    """Native frames ``[lo, hi)`` to annotate: the span plus the margin, inside the video."""
    if span is None:
        return 0, info.num_frames
    lo, hi = span_frames((max(0.0, span[0] - margin), span[1] + margin), info.fps)
    return max(0, lo), min(info.num_frames, hi)


def _sample_ids(lo: int, hi: int, fps: float, cfg: SynthConfig) -> np.ndarray:
    ids = np.arange(lo, hi, dtype=np.int64)
    if cfg.sample_fps is not None and cfg.sample_fps < fps:
        ids = lo + fps_ids(hi - lo, fps, cfg.sample_fps)
    if cfg.max_frames is not None and ids.size > cfg.max_frames:
        ids = ids[uniform_ids(ids.size, cfg.max_frames)]
    return ids


@dataclass
class _Found:
    """The annotator's result: the object and its confident ``(boxes, scores)`` per frame found."""

    object: str
    rank: int
    frames: dict[int, tuple[np.ndarray, np.ndarray]]


def _confident(
    detections: list[FrameDetections], frame_ids: np.ndarray, threshold: float, report: SynthReport
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    if [d.frame_id for d in detections] != frame_ids.tolist():
        raise ValueError("the detector must return one FrameDetections per frame, in frame order")
    out = {}
    for det in detections:
        keep = det.scores >= threshold
        report.boxes_below_threshold += int((~keep).sum())
        if keep.any():
            out[det.frame_id] = (det.boxes[keep], det.scores[keep])
    return out


def _annotate(
    frames: np.ndarray,
    frame_ids: np.ndarray,
    info: VideoInfo,
    objects: tuple[str, ...],
    detector: Detector,
    cfg: SynthConfig,
    report: SynthReport,
) -> _Found | None:
    """Try the objects in order (the subject first); the first one found on any frame wins."""
    for rank, obj in enumerate(objects):
        detections = detector.detect(frames, frame_ids, obj, (info.height, info.width))
        found = _confident(detections, frame_ids, cfg.box_threshold, report)
        if found:
            return _Found(obj, rank, found)
    return None


def _area(box: np.ndarray) -> float:
    return float(max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1]))


def _area_jump(boxes: dict[int, np.ndarray], ratio: float) -> tuple[int, int] | None:
    """The first pair of adjacent kept frames whose box areas differ by more than ``ratio``."""
    frames = sorted(boxes)
    for prev, cur in itertools.pairwise(frames):
        a, b = _area(boxes[prev]), _area(boxes[cur])
        if a > ratio * b or b > ratio * a:  # no division: a zero-area box is a jump too
            return prev, cur
    return None


def _synth_one(
    item: SynthItem, detector: Detector, analyzer: Analyzer, cfg: SynthConfig, report: SynthReport
) -> Record | None:
    # analyzer
    analysis = analyzer.analyze(item.caption)
    if analysis.source == "fallback":
        report.analyzer_fallbacks += 1
    objects = unique_objects(analysis.objects, cfg.max_objects)
    if not objects:
        report.drop(item.id, "analyzer", "no_object", f"no object to localise in {item.caption!r}")
        return None

    # annotator
    try:
        info = probe(item.video)
        lo, hi = _window(item.span, info, cfg.search_margin)
        if lo >= hi:
            report.drop(item.id, "annotator", "empty_span", f"span {item.span} has no frame of the video")
            return None
        ids = _sample_ids(lo, hi, info.fps, cfg)
        clip = read_frames(item.video, ids, cfg.frame_size, info)
    except VideoError as exc:
        report.drop(item.id, "annotator", "video_error", str(exc))
        return None
    report.frames_annotated += int(ids.size)
    found = _annotate(clip.frames, ids, info, objects, detector, cfg, report)
    if found is None:
        report.drop(item.id, "annotator", "not_found", f"none of {list(objects)} found")
        return None

    # refiner
    hits = sorted(found.frames)
    start, end = hits[0], hits[-1] + 1
    seconds = (end - start) / info.fps
    if seconds < cfg.min_seconds or seconds > cfg.max_seconds:
        reason = "too_short" if seconds < cfg.min_seconds else "too_long"
        report.drop(item.id, "refiner", reason, f"refined span {seconds:.2f} s")
        return None

    # filter
    simple = {f: v for f, v in found.frames.items() if len(v[1]) <= cfg.max_boxes}
    report.frames_complex += len(found.frames) - len(simple)
    if not simple:
        report.drop(item.id, "filter", "complex_scene", f"every frame has more than {cfg.max_boxes} boxes")
        return None
    best = {f: int(np.argmax(scores)) for f, (_, scores) in simple.items()}  # ties: the first
    boxes = {f: simple[f][0][best[f]] for f in sorted(simple)}
    jump = _area_jump(boxes, cfg.max_area_ratio)
    if jump is not None:
        report.drop(item.id, "filter", "area_jump", f"box area jumps between frames {jump[0]} and {jump[1]}")
        return None

    meta = {
        **item.meta,
        "object": found.object,
        "object_rank": found.rank,
        "objects": list(objects),
        "analyzer": analysis.source,
        "span_frames": [start, end],
        "source_span": list(item.span) if item.span is not None else None,
        "box_scores": [float(simple[f][1][best[f]]) for f in boxes],
    }
    return Record(
        "stvg",
        item.id,
        item.video,
        item.caption,
        info.width,
        info.height,
        info.fps,
        info.num_frames,
        (start / info.fps, end / info.fps),
        {f: [float(v) for v in b] for f, b in boxes.items()},
        meta,
    )


def synthesize(
    items: Iterable[SynthItem],
    detector: Detector,
    analyzer: Analyzer | None = None,
    config: SynthConfig | None = None,
    *,
    out: Path | str | None = None,
    progress: bool = False,
) -> tuple[list[Record], SynthReport]:
    """Run the four stages on every pair (see the module docstring).

    Args:
        items: the (video, caption) pairs.
        detector: anything with ``detect(frames, frame_ids, text, size)`` returning one
            :class:`FrameDetections` per frame in native pixels (e.g. :class:`GroundingDinoDetector`).
        analyzer: ``None``: :func:`default_analyzer` (LLM when configured, else rules).
        config: thresholds; ``None``: :class:`SynthConfig` defaults (the paper's).
        out: write the records there as JSONL (:func:`spacevllm.data.write_records`).
        progress: show a progress bar.

    Returns:
        ``(records, report)``; records in input order.
    """
    cfg = config or SynthConfig()
    analyzer = analyzer if analyzer is not None else default_analyzer(cfg.max_objects)
    report = SynthReport()
    records: list[Record] = []
    for item in tqdm(list(items), desc="synthesize", unit="pair", disable=not progress):
        report.total += 1
        record = _synth_one(item, detector, analyzer, cfg, report)
        if record is not None:
            records.append(record)
    report.kept = len(records)
    if out is not None:
        write_records(out, records)
    return records, report


__all__ = [
    "EXAMPLES",
    "INSTRUCTION",
    "REASONS",
    "STAGES",
    "Analysis",
    "Analyzer",
    "AnalyzerError",
    "Detector",
    "Dropped",
    "LLMAnalyzer",
    "RuleAnalyzer",
    "SynthConfig",
    "SynthItem",
    "SynthReport",
    "SynthWarning",
    "build_messages",
    "default_analyzer",
    "items_from_records",
    "items_from_samples",
    "parse_objects",
    "synthesize",
]
