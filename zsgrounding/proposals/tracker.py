"""A tracker without SAM2: per-frame detections linked by box IoU and Hungarian assignment.

ByteTrack-style association on each detection frame (frames may be sparse, e.g. every K native
frames):

1. detections scoring at least ``high_score`` are matched to every live track;
2. detections scoring in ``[low_score, high_score)`` are matched to the tracks still unmatched,
   which keeps a track alive through frames where its detector score dips;
3. unmatched high-score detections start new tracks; unmatched low-score ones are dropped;
4. a track unmatched on more than ``max_lost`` consecutive detection frames ends.

A detection is compared with a track's last box and with its box predicted at constant velocity
(a line fitted to its last few observations, ``motion=True``), and the larger IoU counts: boxes
that move several pixels between sparse detection frames still overlap the prediction, and an
object that stops still overlaps its last box. Tracks with fewer than ``min_hits`` observations are
dropped; holes of at most ``max_gap`` detection frames between two observations are filled by
linear interpolation.

The start threshold ``high_score`` follows the detector's box threshold when the proposal config
builds the tracker (Grounding DINO tiny scores correct boxes around 0.45, so a fixed 0.5 started no
track for them). :meth:`IoUTrackerConfig.previous` keeps the earlier settings (start at 0.5, gaps
counted in native frames up to 30), which on a long video with sparse frames left long holes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.optimize import linear_sum_assignment

from zsgrounding.boxes import box_iou_matrix
from zsgrounding.proposals.detections import FrameDetections
from zsgrounding.types import Track

_NO_MATCH = 1e6  # cost of a pair below the IoU threshold: Hungarian then maximises valid matches first


@dataclass(frozen=True)
class IoUTrackerConfig:
    """Settings of :class:`IoUTracker`.

    Attributes:
        iou_threshold: smallest IoU (inclusive, > 0) between a track's last or predicted box and a
            detection for them to be matched.
        high_score: detections scoring at least this start tracks and are matched first (the
            proposal config sets it to the detector's box threshold).
        low_score: detections scoring below this are ignored; those in ``[low_score, high_score)``
            may only extend existing tracks.
        max_lost: a track ends once it has gone unmatched on more than this many consecutive
            detection frames.
        min_hits: tracks with fewer matched detections are dropped.
        max_gap: largest hole between two observations of a track that is filled by
            interpolation, in ``gap_unit`` (0 disables filling).
        gap_unit: ``"detection"``: the detection (tracking) frames strictly between the two
            observations; ``"native"``: the native frames between them (the previous setting).
        fill_native: fill every native frame inside such a gap; otherwise only the detection
            frames on which the track went unmatched.
        motion: also match against a track's box predicted at constant velocity.
        motion_window: the velocity is the least-squares slope over at most this many of the
            track's last observations (more than 2 averages out detector jitter).
    """

    iou_threshold: float = 0.3
    high_score: float = 0.25
    low_score: float = 0.1
    max_lost: int = 5
    min_hits: int = 2
    max_gap: int = 5
    gap_unit: Literal["detection", "native"] = "detection"
    fill_native: bool = False
    motion: bool = True
    motion_window: int = 4

    def __post_init__(self) -> None:
        problems = []
        if not 0 < self.iou_threshold <= 1:
            problems.append(f"iou_threshold {self.iou_threshold} must be in (0, 1]")
        if not 0 <= self.low_score <= self.high_score:
            problems.append(f"need 0 <= low_score ({self.low_score}) <= high_score ({self.high_score})")
        if self.max_lost < 0 or self.max_gap < 0:
            problems.append("max_lost and max_gap must not be negative")
        if self.motion_window < 2:
            problems.append(f"motion_window {self.motion_window} must be at least 2")
        if self.min_hits < 1:
            problems.append(f"min_hits {self.min_hits} must be at least 1")
        if self.gap_unit not in ("detection", "native"):
            problems.append(f"gap_unit must be 'detection' or 'native', got {self.gap_unit!r}")
        if problems:
            raise ValueError("invalid IoUTrackerConfig: " + "; ".join(problems))

    @classmethod
    def following(cls, box_threshold: float, **overrides: object) -> IoUTrackerConfig:
        """Tracks start at the detector's ``box_threshold``; ``low_score`` is lowered to it if above."""
        settings: dict = {"high_score": box_threshold, "low_score": min(cls.low_score, box_threshold)}
        settings.update(overrides)
        return cls(**settings)

    @classmethod
    def previous(cls) -> IoUTrackerConfig:
        """The settings before the tracking rework: start at 0.5, holes up to 30 native frames."""
        return cls(high_score=0.5, max_gap=30, gap_unit="native")


def assign(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Hungarian assignment on ``1 - IoU``; pairs below ``threshold`` are never returned."""
    if iou.size == 0:
        return []
    valid = iou >= threshold
    cost = np.where(valid, 1.0 - iou, _NO_MATCH)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if valid[r, c]]


@dataclass
class _Live:
    """A track being built: its observations in frame order."""

    order: int  # creation order, the final id before short tracks are dropped
    frames: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    lost: int = 0

    def add(self, frame: int, box: np.ndarray, score: float, label: str) -> None:
        self.frames.append(frame)
        self.boxes.append(box)
        self.scores.append(score)
        self.labels.append(label)
        self.lost = 0

    def predict(self, frame: int, window: int) -> np.ndarray:
        """The box at ``frame`` on a line fitted to the last ``window`` observations. ``(4,)``."""
        if len(self.frames) < 2:
            return self.boxes[-1]
        x = np.asarray(self.frames[-window:], dtype=np.float64)
        y = np.stack(self.boxes[-window:])
        dx = x - x.mean()
        slope = (dx[:, None] * (y - y.mean(0))).sum(0) / (dx**2).sum()
        return y.mean(0) + slope * (frame - x.mean())


class IoUTracker:
    """Links :class:`FrameDetections` into :class:`Track` s (see the module docstring)."""

    def __init__(self, config: IoUTrackerConfig | None = None) -> None:
        self.config = config or IoUTrackerConfig()

    def track(self, detections: Sequence[FrameDetections]) -> list[Track]:
        """Tracks of the objects in ``detections``, in order of creation, ids ``0, 1, ...``.

        A track's label is its most frequent detection label (ties: the one seen first), its
        score the mean score of its matched detections (interpolated boxes do not count).
        """
        cfg = self.config
        frames = sorted(detections, key=lambda d: d.frame_id)
        ids = [d.frame_id for d in frames]
        if len(set(ids)) != len(ids):
            raise ValueError("detections: a frame id appears twice")
        live: list[_Live] = []
        done: list[_Live] = []
        for det in frames:
            live, ended = self._step(live, det, len(live) + len(done))
            done.extend(ended)
        done.extend(live)
        done.sort(key=lambda t: t.order)
        det_frames = np.asarray(ids, dtype=np.int64)
        kept = [t for t in done if len(t.frames) >= cfg.min_hits]
        return [self._finish(t, new_id, det_frames) for new_id, t in enumerate(kept)]

    def _step(self, live: list[_Live], det: FrameDetections, created: int) -> tuple[list[_Live], list[_Live]]:
        """Match one frame's detections to ``live``; returns ``(still live, ended)``."""
        cfg = self.config
        keep = det.scores >= cfg.low_score
        high = np.flatnonzero(keep & (det.scores >= cfg.high_score))
        low = np.flatnonzero(keep & (det.scores < cfg.high_score))
        last = np.stack([t.boxes[-1] for t in live]) if live else np.zeros((0, 4))
        predicted = (
            np.stack([t.predict(det.frame_id, cfg.motion_window) for t in live])
            if cfg.motion and live
            else None
        )
        matched: set[int] = set()
        used_high: set[int] = set()
        for pool, used in ((high, used_high), (low, set())):
            free = [i for i in range(len(live)) if i not in matched]
            if not free or pool.size == 0:
                continue
            iou = box_iou_matrix(last[free], det.boxes[pool])
            if predicted is not None:
                iou = np.maximum(iou, box_iou_matrix(predicted[free], det.boxes[pool]))
            for r, c in assign(iou, cfg.iou_threshold):
                k = int(pool[c])
                live[free[r]].add(det.frame_id, det.boxes[k], float(det.scores[k]), det.labels[k])
                matched.add(free[r])
                used.add(k)
        still, ended = [], []
        for i, t in enumerate(live):
            if i not in matched:
                t.lost += 1
            (ended if t.lost > cfg.max_lost else still).append(t)
        for k in high:
            if int(k) not in used_high:
                new = _Live(order=created)
                created += 1
                new.add(det.frame_id, det.boxes[k], float(det.scores[k]), det.labels[k])
                still.append(new)
        return still, ended

    def _finish(self, t: _Live, track_id: int, det_frames: np.ndarray) -> Track:
        """The output :class:`Track`: observations plus the interpolated gaps."""
        cfg = self.config
        frames = np.asarray(t.frames, dtype=np.int64)
        boxes = np.stack(t.boxes).astype(np.float64)
        out_f, out_b = [frames[:1]], [boxes[:1]]
        for i in range(1, frames.size):
            f0, f1 = int(frames[i - 1]), int(frames[i])
            between = det_frames[(det_frames > f0) & (det_frames < f1)]
            hole = f1 - f0 - 1 if cfg.gap_unit == "native" else between.size
            if f1 - f0 > 1 and cfg.max_gap > 0 and hole <= cfg.max_gap:
                fill = np.arange(f0 + 1, f1, dtype=np.int64) if cfg.fill_native else between
                w = ((fill - f0) / (f1 - f0))[:, None]
                out_f.append(fill)
                out_b.append((1.0 - w) * boxes[i - 1] + w * boxes[i])
            out_f.append(frames[i : i + 1])
            out_b.append(boxes[i : i + 1])
        counts = Counter(t.labels)
        label = max(counts, key=counts.__getitem__)  # max keeps the first seen among ties
        return Track(
            np.concatenate(out_f),
            np.concatenate(out_b),
            label=label,
            score=float(np.mean(t.scores)),
            track_id=track_id,
        )


__all__ = ["IoUTracker", "IoUTrackerConfig", "assign"]
