"""Does the evidence depend on the question? Small diagnostics of a grounder's maps and choices.

Three checks, all pure functions of arrays (no model, no files):

- **Track selection** (:func:`track_selection`, :func:`track_selection_summary`): how often the
  chosen track is the target, beside chance, the mean of ``1 / num_tracks`` over the same
  samples (what a uniformly random pick scores on average).
- **Pointing** (:func:`pointing_counts`, :func:`pointing_summary`): on every sampled frame with
  a ground-truth box, does the argmax cell of the evidence map fall inside the target's box,
  and, beside it, inside any object's box on that frame. A map that lights up objects but not
  the asked one scores a high any-object rate and a low target rate. Cells map to pixels as in
  :mod:`zsgrounding.tubes`: cell ``(i, j)`` of an ``h x w`` grid covers
  ``[j W/w, (j+1) W/w) x [i H/h, (i+1) H/h)`` of the native frame. Two rules say when a cell
  is inside a box: ``"centre"``, the cell's centre lies in the half-open box; ``"overlap"``,
  the box covers part of the cell (:func:`zsgrounding.tubes.box_coverage` > 0), i.e. the
  cell is one the tube scorer lets the box's track see.
- **Question swap** (:func:`swap_outcome`, :func:`question_swap_summary`): one clip, two objects
  A and B with different descriptions, the map asked about A and asked about B. Does the chosen
  track follow the asked object both times, and does the choice (or the attention peak) move at
  all? A map blind to the question never moves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from zsgrounding.tubes import box_coverage

__all__ = [
    "InsideRule",
    "PointingCounts",
    "PointingSummary",
    "SwapOutcome",
    "SwapSummary",
    "TrackSelection",
    "cell_centres",
    "evidence_peaks",
    "pointing_counts",
    "pointing_summary",
    "question_swap_summary",
    "selected_track",
    "swap_outcome",
    "track_selection",
    "track_selection_summary",
]

InsideRule = Literal["centre", "overlap"]


# --------------------------------------------------------------------------- track selection


def selected_track(track_scores: np.ndarray | Sequence[float]) -> int:
    """The track a score vector ``(P,)`` picks: its argmax, the first of ties (as the tube scorer)."""
    scores = np.asarray(track_scores, dtype=np.float64).reshape(-1)
    if scores.size == 0:
        raise ValueError("no track scores to select from")
    return int(np.argmax(scores))


def track_selection(track_scores: np.ndarray | Sequence[float], target_index: int) -> bool:
    """Whether the scores ``(P,)`` pick the target track ``target_index``."""
    return selected_track(track_scores) == int(target_index)


@dataclass(frozen=True)
class TrackSelection:
    """Track-selection accuracy over ``n`` samples, with its chance level.

    Attributes:
        n: samples counted.
        correct: samples whose chosen track is the target.
        chance: mean of ``1 / num_tracks`` over the same samples, in [0, 1].
    """

    n: int
    correct: int
    chance: float

    @property
    def accuracy(self) -> float:
        """``correct / n`` in [0, 1] (``nan`` with no sample)."""
        return self.correct / self.n if self.n else float("nan")


def track_selection_summary(
    chosen: Sequence[int | None], targets: Sequence[int], num_tracks: Sequence[int]
) -> TrackSelection:
    """Accuracy of the chosen tracks against the targets, and chance, over the same samples.

    Args:
        chosen: ``n`` chosen track indices; ``None`` (no choice, e.g. a failed sample) is wrong.
        targets: ``n`` target track indices.
        num_tracks: ``n`` numbers of tracks each sample chose among (each >= 1).
    """
    if not len(chosen) == len(targets) == len(num_tracks):
        raise ValueError(f"{len(chosen)} choices, {len(targets)} targets, {len(num_tracks)} track counts")
    counts = np.asarray(num_tracks, dtype=np.float64)
    if (counts < 1).any():
        raise ValueError("every sample needs at least one track")
    correct = sum(c is not None and int(c) == int(t) for c, t in zip(chosen, targets, strict=True))
    chance = float((1.0 / counts).mean()) if counts.size else float("nan")
    return TrackSelection(n=len(chosen), correct=int(correct), chance=chance)


# --------------------------------------------------------------------------- pointing


def cell_centres(grid: tuple[int, int], width: float, height: float) -> np.ndarray:
    """Pixel ``(x, y)`` centres of the cells of an ``(h, w)`` grid over a frame: ``(h, w, 2)``."""
    h, w = grid
    xs = (np.arange(w, dtype=np.float64) + 0.5) * (float(width) / w)
    ys = (np.arange(h, dtype=np.float64) + 0.5) * (float(height) / h)
    return np.stack(np.meshgrid(xs, ys, indexing="xy"), axis=-1)


def evidence_peaks(evidence: np.ndarray) -> np.ndarray:
    """Per frame, the ``(row, col)`` of the map's maximum: ``(T, h, w)`` -> ``(T, 2)`` int64.

    Ties go to the first cell in row-major order (``np.argmax``).
    """
    ev = np.asarray(evidence, dtype=np.float64)
    if ev.ndim != 3:
        raise ValueError(f"evidence must be (T, h, w), got shape {ev.shape}")
    t, h, w = ev.shape
    flat = ev.reshape(t, h * w).argmax(axis=1)
    return np.stack([flat // w, flat % w], axis=1).astype(np.int64)


def _inside(
    peaks: np.ndarray, boxes: np.ndarray, grid: tuple[int, int], width: float, height: float, rule: InsideRule
) -> np.ndarray:
    """Whether each frame's peak cell is inside that frame's box: peaks ``(T, 2)``, boxes ``(..., T, 4)``
    (NaN rows: no box) -> ``(..., T)`` bool."""
    rows, cols = peaks[:, 0], peaks[:, 1]
    frames = np.arange(peaks.shape[0])
    absent = np.isnan(boxes).any(axis=-1)
    if rule == "overlap":
        cover = box_coverage(boxes, int(width), int(height), grid)  # (..., T, h, w)
        return (cover[..., frames, rows, cols] > 0) & ~absent
    if rule != "centre":
        raise ValueError(f"unknown rule {rule!r}: use 'centre' or 'overlap'")
    centre = cell_centres(grid, width, height)[rows, cols]  # (T, 2)
    x, y = centre[:, 0], centre[:, 1]
    with np.errstate(invalid="ignore"):  # NaN boxes compare False
        hit = (x >= boxes[..., 0]) & (x < boxes[..., 2]) & (y >= boxes[..., 1]) & (y < boxes[..., 3])
    return hit & ~absent


def _cell_share(
    boxes: np.ndarray, grid: tuple[int, int], width: float, height: float, rule: InsideRule
) -> np.ndarray:
    """Share of the grid's cells inside any of the boxes ``(P, T, 4)`` per frame: ``(T,)``."""
    h, w = grid
    if rule == "overlap":
        inside = (box_coverage(boxes, int(width), int(height), grid) > 0).any(axis=0)  # (T, h, w)
    else:
        c = cell_centres(grid, width, height).reshape(1, 1, h * w, 2)
        b = boxes[:, :, None, :]
        with np.errstate(invalid="ignore"):
            inside = (
                (c[..., 0] >= b[..., 0])
                & (c[..., 0] < b[..., 2])
                & (c[..., 1] >= b[..., 1])
                & (c[..., 1] < b[..., 3])
            ).any(axis=0)  # (T, h*w)
    return inside.reshape(inside.shape[0], -1).mean(axis=1)


@dataclass(frozen=True)
class PointingCounts:
    """Pointing hits of one sample (or a pool of samples), counted over ground-truth frames.

    Attributes:
        frames: sampled frames with a ground-truth box.
        target_hits: frames whose peak cell is inside the target's box.
        any_hits: frames whose peak cell is inside some object's box (the target included).
        target_chance: sum over the frames of the share of cells inside the target's box (what a
            uniformly random cell scores).
        any_chance: the same for the union of all objects' boxes.
    """

    frames: int = 0
    target_hits: int = 0
    any_hits: int = 0
    target_chance: float = 0.0
    any_chance: float = 0.0

    def __add__(self, other: PointingCounts) -> PointingCounts:
        return PointingCounts(
            self.frames + other.frames,
            self.target_hits + other.target_hits,
            self.any_hits + other.any_hits,
            self.target_chance + other.target_chance,
            self.any_chance + other.any_chance,
        )


def pointing_counts(
    peaks: np.ndarray,
    gt_boxes: np.ndarray,
    object_boxes: np.ndarray,
    grid: tuple[int, int],
    width: float,
    height: float,
    rule: InsideRule = "centre",
) -> PointingCounts:
    """Pointing hits of one sample.

    Args:
        peaks: ``(T, 2)`` ``(row, col)`` peak cell per sampled frame (:func:`evidence_peaks`).
        gt_boxes: ``(T, 4)`` pixel xyxy target box per sampled frame, NaN rows where the
            ground truth has none (those frames are not counted).
        object_boxes: ``(P, T, 4)`` every object's boxes on the sampled frames (NaN: absent);
            should include the target's track.
        grid: ``(h, w)`` of the evidence grid, which covers the whole ``width`` x ``height`` frame.
        rule: ``"centre"`` or ``"overlap"`` (see the module docstring).
    """
    p = np.asarray(peaks, dtype=np.int64).reshape(-1, 2)
    gt = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    objects = np.asarray(object_boxes, dtype=np.float64).reshape(-1, gt.shape[0], 4)
    if p.shape[0] != gt.shape[0]:
        raise ValueError(f"{p.shape[0]} peaks for {gt.shape[0]} frames")
    keep = ~np.isnan(gt).any(axis=1)
    if not keep.any():
        return PointingCounts()
    p, gt, objects = p[keep], gt[keep], objects[:, keep]
    target = _inside(p, gt, grid, width, height, rule)
    # The target counts as an object even when its track is missing from object_boxes.
    anything = target | _inside(p, objects, grid, width, height, rule).any(axis=0)
    union = np.concatenate([gt[None], objects], axis=0)
    return PointingCounts(
        frames=int(keep.sum()),
        target_hits=int(target.sum()),
        any_hits=int(anything.sum()),
        target_chance=float(_cell_share(gt[None], grid, width, height, rule).sum()),
        any_chance=float(_cell_share(union, grid, width, height, rule).sum()),
    )


@dataclass(frozen=True)
class PointingSummary:
    """Pooled pointing rates over all ground-truth frames of a set of samples, in [0, 1].

    Attributes:
        frames: ground-truth frames pooled.
        target: pointing accuracy (peak inside the target's box).
        any_object: peak inside any object's box.
        target_chance, any_chance: the same rates for a uniformly random cell.
    """

    frames: int
    target: float
    any_object: float
    target_chance: float
    any_chance: float


def pointing_summary(counts: Sequence[PointingCounts]) -> PointingSummary:
    """Pool per-sample counts: every ground-truth frame weighs the same (``nan`` with none)."""
    total = sum(counts, PointingCounts())
    n = total.frames
    if n == 0:
        nan = float("nan")
        return PointingSummary(0, nan, nan, nan, nan)
    return PointingSummary(
        frames=n,
        target=total.target_hits / n,
        any_object=total.any_hits / n,
        target_chance=total.target_chance / n,
        any_chance=total.any_chance / n,
    )


# --------------------------------------------------------------------------- question swap


@dataclass(frozen=True)
class SwapOutcome:
    """One A/B pair of the question-swap test.

    Attributes:
        follows: the track chosen when asked about A is A's, and when asked about B is B's.
        track_moves: the two questions choose different tracks.
        peak_moves: the evidence's peak (argmax over the whole ``(T, h, w)`` map) differs.
        num_tracks: tracks chosen among.
    """

    follows: bool
    track_moves: bool
    peak_moves: bool
    num_tracks: int


def swap_outcome(
    scores_a: np.ndarray | Sequence[float],
    scores_b: np.ndarray | Sequence[float],
    index_a: int,
    index_b: int,
    evidence_a: np.ndarray,
    evidence_b: np.ndarray,
) -> SwapOutcome:
    """The outcome of one pair.

    Args:
        scores_a, scores_b: ``(P,)`` track scores of the map asked about A and about B.
        index_a, index_b: the tracks of A and B (different).
        evidence_a, evidence_b: the two maps, same shape (e.g. ``(T, h, w)``).
    """
    a = np.asarray(scores_a, dtype=np.float64).reshape(-1)
    b = np.asarray(scores_b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"track scores differ in shape: {a.shape} vs {b.shape}")
    if index_a == index_b:
        raise ValueError("A and B must be different tracks")
    ea, eb = np.asarray(evidence_a), np.asarray(evidence_b)
    if ea.shape != eb.shape:
        raise ValueError(f"maps differ in shape: {ea.shape} vs {eb.shape}")
    pick_a, pick_b = selected_track(a), selected_track(b)
    return SwapOutcome(
        follows=pick_a == int(index_a) and pick_b == int(index_b),
        track_moves=pick_a != pick_b,
        peak_moves=int(np.argmax(ea)) != int(np.argmax(eb)),
        num_tracks=int(a.size),
    )


@dataclass(frozen=True)
class SwapSummary:
    """The question-swap test over ``n`` pairs; rates in [0, 1].

    Attributes:
        n: pairs.
        follows: share of pairs where the chosen track follows the asked object both times.
        track_moves: share where the chosen track changes between the two questions.
        peak_moves: share where the evidence's peak changes.
        chance_follows: mean of ``1 / P**2``: a pick uniform over the ``P`` tracks, drawn
            independently for each question, follows both with that probability.
        chance_moves: mean of ``1 - 1 / P``: how often such independent picks differ.
    """

    n: int
    follows: float
    track_moves: float
    peak_moves: float
    chance_follows: float
    chance_moves: float


def question_swap_summary(outcomes: Sequence[SwapOutcome]) -> SwapSummary:
    """Aggregate pair outcomes (all rates ``nan`` with no pair)."""
    if not outcomes:
        nan = float("nan")
        return SwapSummary(0, nan, nan, nan, nan, nan)
    p = np.array([o.num_tracks for o in outcomes], dtype=np.float64)
    return SwapSummary(
        n=len(outcomes),
        follows=float(np.mean([o.follows for o in outcomes])),
        track_moves=float(np.mean([o.track_moves for o in outcomes])),
        peak_moves=float(np.mean([o.peak_moves for o in outcomes])),
        chance_follows=float((1.0 / p**2).mean()),
        chance_moves=float((1.0 - 1.0 / p).mean()),
    )
