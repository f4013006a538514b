"""The toolkit's shared value types.

Conventions (docs/design.md): frames are named by their native index in the video (0-based int);
spans are half-open ``[start, end)`` in native frame indices; boxes are pixel ``xyxy`` floats in
the frame's native resolution, with no +1 convention. Seconds only appear at the edges.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# No video has this many frames (four days at 30 fps): files that name larger frame ids or counts
# are malformed, refused before anything allocates arrays that long.
MAX_FRAME = 10_000_000


def _as_frame_ids(frame_ids: Iterable[int] | np.ndarray) -> np.ndarray:
    return np.asarray(
        list(frame_ids) if not isinstance(frame_ids, np.ndarray) else frame_ids, dtype=np.int64
    ).reshape(-1)


def _as_boxes(boxes: Any, n: int) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((n, 4), dtype=np.float64)
    return arr.reshape(-1, 4)


def _sorted_boxes(frame_ids: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if frame_ids.shape[0] != boxes.shape[0]:
        raise ValueError(f"{frame_ids.shape[0]} frame ids but {boxes.shape[0]} boxes")
    order = np.argsort(frame_ids, kind="stable")
    frame_ids, boxes = frame_ids[order], boxes[order]
    if frame_ids.size > 1 and np.any(frame_ids[1:] == frame_ids[:-1]):
        raise ValueError("a frame id appears twice")
    return frame_ids, boxes


def _lookup(frame_ids: np.ndarray, boxes: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Boxes at ``query`` frames, NaN where there is none. ``(len(query), 4)``."""
    out = np.full((query.shape[0], 4), np.nan)
    if frame_ids.size == 0 or query.size == 0:
        return out
    pos = np.clip(np.searchsorted(frame_ids, query), 0, frame_ids.size - 1)
    hit = frame_ids[pos] == query
    out[hit] = boxes[pos[hit]]
    return out


@dataclass
class Tube:
    """A spatio-temporal tube: a half-open span of native frames and boxes inside it.

    Attributes:
        start: first native frame of the span.
        end: one past the last native frame of the span (exclusive).
        frame_ids: ``(K,)`` int64, ascending native frame ids that carry a box. A tube need not
            have a box on every frame of its span (predictions may be given on sampled frames
            only; ground truth may be sparse).
        boxes: ``(K, 4)`` float64 pixel ``xyxy`` boxes, row ``i`` belongs to ``frame_ids[i]``.
    """

    start: int
    end: int
    frame_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))

    def __post_init__(self) -> None:
        self.start, self.end = int(self.start), int(self.end)
        if self.end < self.start:
            raise ValueError(f"tube end {self.end} is before its start {self.start}")
        fids = _as_frame_ids(self.frame_ids)
        self.frame_ids, self.boxes = _sorted_boxes(fids, _as_boxes(self.boxes, fids.shape[0]))

    @classmethod
    def from_dict(cls, start: int, end: int, boxes: Mapping[int | str, Any]) -> Tube:
        """Build from ``{frame_id: [x1, y1, x2, y2]}`` (keys may be strings, as in JSON)."""
        fids = np.fromiter((int(k) for k in boxes), dtype=np.int64, count=len(boxes))
        arr = np.asarray(list(boxes.values()), dtype=np.float64).reshape(-1, 4)
        return cls(start, end, fids, arr)

    def box_dict(self) -> dict[int, list[float]]:
        """``{frame_id: [x1, y1, x2, y2]}``: the design's mapping view of the boxes."""
        return {int(f): [float(v) for v in b] for f, b in zip(self.frame_ids, self.boxes, strict=True)}

    def to_json(self) -> dict[str, Any]:
        """The prediction-file form: ``{"start", "end", "boxes": {"<frame>": xyxy}}``."""
        return {
            "start": self.start,
            "end": self.end,
            "boxes": {str(k): v for k, v in self.box_dict().items()},
        }

    def boxes_at(self, frame_ids: Iterable[int] | np.ndarray) -> np.ndarray:
        """Boxes at the given frames, NaN rows where the tube has none. ``(T, 4)``."""
        return _lookup(self.frame_ids, self.boxes, _as_frame_ids(frame_ids))

    def __len__(self) -> int:
        return self.end - self.start


@dataclass
class GroundTruth:
    """Everything the STVG evaluator needs to know about one annotated sentence.

    Attributes:
        tube: the annotated tube (boxes on the frames that have one).
        fps: native frame rate, used for the 5 fps evaluation sampling.
        segment: ``(start, end)`` native frames the evaluated frames are drawn from, half-open
            (HC-STVG: ``(0, frame_count - 1)`` as TubeDETR; VidSTG: ``used_segment``).
        qtype: sentence type used to split results (VidSTG: ``declarative`` or
            ``interrogative``), or ``None``.
        cgstvg_end_inclusive: how CG-STVG's data pipeline reads this GT's end. ``True``
            (default; HC-STVG and its format, the toy world): it stores the end inclusive and
            its evaluator scores it exclusive, so ``protocol="cgstvg"`` scores the GT one frame
            short. ``False`` (set by the VidSTG loader): the span is scored in full.
    """

    tube: Tube
    fps: float
    segment: tuple[int, int]
    qtype: str | None = None
    cgstvg_end_inclusive: bool = True


@dataclass
class Sample:
    """One sentence to ground in one video: the common output of every dataset loader.

    Attributes:
        id: the sample id predictions are keyed by (HC-STVG: the video file key).
        video: path of the video file.
        sentence: the query.
        gt: the ground truth for STVG, or ``None`` when the dataset has no boxes or the frame
            rate is only known from the video (Charades-STA).
        width, height: native frame size in pixels, when the annotation gives it.
        fps: native frame rate, when the annotation gives it.
        span_seconds: the GT span in seconds ``(start, end)``, when known.
        meta: anything else a dataset carries (target id, VidSTG question type, ...).
    """

    id: str
    video: Path
    sentence: str
    gt: GroundTruth | None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    span_seconds: tuple[float, float] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Clip:
    """Frames sampled from a video.

    Attributes:
        frames: ``(T, H, W, 3)`` uint8 RGB, possibly resized from the native size.
        frame_ids: ``(T,)`` int64 native frame index of each sampled frame, ascending.
        times: ``(T,)`` float64 presentation time of each sampled frame in seconds.
        fps: native frame rate.
        num_frames: number of frames in the whole video.
        width, height: native frame size in pixels (boxes are expressed in it).
        path: the video file, when the clip came from one.
    """

    frames: np.ndarray
    frame_ids: np.ndarray
    times: np.ndarray
    fps: float
    num_frames: int
    width: int
    height: int
    path: Path | None = None

    def __len__(self) -> int:
        return int(self.frame_ids.shape[0])

    @property
    def duration(self) -> float:
        """Length of the whole video in seconds."""
        return self.num_frames / self.fps if self.fps > 0 else 0.0


@dataclass
class Track:
    """An object proposal: one object followed through the video.

    Attributes:
        frame_ids: ``(K,)`` int64 ascending native frame ids on which the object has a box.
        boxes: ``(K, 4)`` float64 pixel ``xyxy`` boxes.
        label: detector class name or phrase.
        score: detector confidence of the track.
        track_id: id unique within the video.
        masks: optional ``(K, H, W)`` bool masks at native resolution, aligned with ``boxes``.
    """

    frame_ids: np.ndarray
    boxes: np.ndarray
    label: str = ""
    score: float = 1.0
    track_id: int = 0
    masks: np.ndarray | None = None

    def __post_init__(self) -> None:
        fids = _as_frame_ids(self.frame_ids)
        boxes = _as_boxes(self.boxes, fids.shape[0])
        order = np.argsort(fids, kind="stable")
        self.frame_ids, self.boxes = _sorted_boxes(fids, boxes)
        if self.masks is not None:
            masks = np.asarray(self.masks, dtype=bool)
            if masks.ndim != 3 or masks.shape[0] != fids.shape[0]:
                raise ValueError(f"masks must be (K, H, W) with K={fids.shape[0]}, got {masks.shape}")
            self.masks = masks[order]

    def boxes_at(self, frame_ids: Iterable[int] | np.ndarray) -> np.ndarray:
        """Boxes at the given frames, NaN rows where the track has none. ``(T, 4)``."""
        return _lookup(self.frame_ids, self.boxes, _as_frame_ids(frame_ids))

    def masks_at(self, frame_ids: Iterable[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """``(masks (T, H, W) bool, present (T,) bool)`` at the given frames, or ``None``."""
        if self.masks is None:
            return None
        query = _as_frame_ids(frame_ids)
        out = np.zeros((query.shape[0], *self.masks.shape[1:]), dtype=bool)
        present = np.zeros(query.shape[0], dtype=bool)
        if self.frame_ids.size:
            pos = np.clip(np.searchsorted(self.frame_ids, query), 0, self.frame_ids.size - 1)
            present = self.frame_ids[pos] == query
            out[present] = self.masks[pos[present]]
        return out, present


@dataclass
class GroundingResult:
    """What a grounder returns for one (video, sentence).

    Attributes:
        tube: the predicted tube.
        track_scores: ``(P,)`` score of each proposal track, or ``None`` when there were none.
        chosen_track: index of the track the tube follows, or ``None``.
        frame_scores: ``(T,)`` per sampled frame score of the chosen track used for the span.
        evidence: ``(T, h, w)`` evidence maps on the model's visual grid, or ``None``.
        sampled_frame_ids: ``(T,)`` native ids of the frames the evidence refers to.
        extras: method-specific outputs (grounding token, sub-queries, timings, ...).
    """

    tube: Tube
    track_scores: np.ndarray | None = None
    chosen_track: int | None = None
    frame_scores: np.ndarray | None = None
    evidence: np.ndarray | None = None
    sampled_frame_ids: np.ndarray | None = None
    extras: dict[str, Any] = field(default_factory=dict)
