"""The detect–track–correct loop: detections and a promptable segmenter into tracks with continuous ids.

The loop walks the tracking frames in order with one segmenter session. On every frame it has
detections for (a *detection round*; :class:`LoopConfig.look_gap` may skip some):

1. **Match.** Each detection is masked on its frame alone (:meth:`Segmenter.segment`) and matched
   to the live objects by mask IoU (Hungarian, pairs at or above ``match_iou``).
2. **Correct.** A matched object is prompted again with the fresh detection box, so a mask that
   drifted is pulled back onto the object the detector sees.
3. **Start.** A detection whose IoU with every live object (and every detection started before
   it in this round, best score first) is below ``match_iou`` starts a new object on this frame;
   a second session runs from it backwards to the clip start (stopping once the object has been
   absent ``backward_patience`` frames), so an object is covered from where it came into view,
   not only from the round that first saw it.
4. **End.** A live object whose mask is present but that no detection matched on ``end_after``
   rounds in a row ends; its masks from the first of those rounds on are dropped (nothing
   confirmed them). An object with an empty mask is hidden, not lost: it is not counted. An
   object that ends having been detected fewer than ``min_hits`` times (its start included) is
   dropped whole: a detection nothing ever confirmed is a false alarm.

After the walk, **near-duplicates merge**: two objects whose masks overlap with mean IoU at or
above ``merge_iou`` on at least ``merge_min_frames`` frames where both are present become one
(the older id; its masks win where both have one). This is what joins a track SAM2 lost and the
track a later detection restarted for the same object, once the backward pass has run the new one
over the old one's frames.

Thresholds, and why: ``match_iou = 0.5`` is the usual "same object" overlap. Grounded-SAM-2's
continuous-id demo uses 0.8 between the detection's mask and the propagated mask; there a
mask that drifted to 0.6 starts a duplicate object, here it is re-prompted and corrected (0.8
stays an option). Two distinct objects reach 0.5 mask IoU only under heavy occlusion.
``end_after = 3`` rounds: a detector missing an object once or twice (a score dipping under the
box threshold) does not end it.

:meth:`LoopConfig.previous` is the loop this toolkit ran before (box IoU 0.3 against mask boxes,
new objects looked for every 5 frames, no correction, no backward pass, no ending, no merge),
kept so the tracking benchmark measures both on the same inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from zsgrounding.boxes import box_iou_matrix
from zsgrounding.proposals.detections import FrameDetections
from zsgrounding.proposals.segmenter import ClipSegmenter, Segmenter, SegmenterSession
from zsgrounding.proposals.tracker import assign
from zsgrounding.types import Track

__all__ = ["LoopConfig", "mask_box", "mask_iou_matrix", "run_loop"]


@dataclass(frozen=True)
class LoopConfig:
    """Settings of :func:`run_loop` (see the module docstring for the argued defaults).

    Attributes:
        match: ``"mask"`` (a detection's own mask against each object's) or ``"box"`` (the
            detection box against each object's mask box, the previous loop).
        match_iou: IoU at or above which a detection is the object's (below: a new object).
        reprompt: prompt matched objects again with the detection box.
        backward: run each new object backwards to the clip start.
        backward_patience: stop the backward run once every new object of the round has been
            absent this many frames in a row (``None``: run to the start).
        end_after: end an object after this many rounds in a row, visible but unmatched
            (``None``: never).
        min_hits: an object that ends with fewer detections than this (its start included) is
            dropped.
        merge_iou: merge two objects whose mean mask IoU on common frames reaches this
            (``None``: never).
        merge_min_frames: frames two objects must share before they may merge.
        look_gap: at least this many frames between two detection rounds (``0``: every frame
            with detections is a round).
        max_objects: at most this many objects per clip.
    """

    match: Literal["mask", "box"] = "mask"
    match_iou: float = 0.5
    reprompt: bool = True
    backward: bool = True
    backward_patience: int | None = 10
    end_after: int | None = 3
    min_hits: int = 2
    merge_iou: float | None = 0.5
    merge_min_frames: int = 2
    look_gap: int = 0
    max_objects: int = 20

    def __post_init__(self) -> None:
        problems = []
        if self.match not in ("mask", "box"):
            problems.append(f"match must be 'mask' or 'box', got {self.match!r}")
        if not 0 < self.match_iou <= 1:
            problems.append(f"match_iou {self.match_iou} must be in (0, 1]")
        if self.merge_iou is not None and not 0 < self.merge_iou <= 1:
            problems.append(f"merge_iou {self.merge_iou} must be in (0, 1]")
        for name in ("backward_patience", "end_after"):
            value = getattr(self, name)
            if value is not None and value < 1:
                problems.append(f"{name} must be at least 1 (or None), got {value}")
        if self.look_gap < 0 or min(self.merge_min_frames, self.max_objects, self.min_hits) < 1:
            problems.append("look_gap must be >= 0; merge_min_frames, max_objects, min_hits >= 1")
        if problems:
            raise ValueError("invalid LoopConfig: " + "; ".join(problems))

    @classmethod
    def previous(cls) -> LoopConfig:
        """The loop before the detect–track–correct rework (see the module docstring)."""
        return cls(
            match="box",
            match_iou=0.3,
            reprompt=False,
            backward=False,
            end_after=None,
            min_hits=1,
            merge_iou=None,
            look_gap=5,
        )


def mask_box(mask: np.ndarray) -> np.ndarray | None:
    """The pixel ``xyxy`` box around a ``(H, W)`` bool mask (pixel ``j`` spans ``[j, j + 1)``), or ``None``."""
    cols = np.flatnonzero(mask.any(axis=0))
    if cols.size == 0:
        return None
    rows = np.flatnonzero(mask.any(axis=1))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float64)


def mask_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of bool masks: ``(N, H, W)`` x ``(M, H, W)`` -> ``(N, M)`` (0 where both are empty)."""
    fa = a.reshape(a.shape[0], -1).astype(np.float32)
    fb = b.reshape(b.shape[0], -1).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0).astype(np.float64)


@dataclass
class _Object:
    """One object while the loop runs."""

    obj_id: int
    label: str
    scores: list[float]
    masks: dict[int, np.ndarray] = field(default_factory=dict)  # tracking frame index -> (H, W) bool
    alive: bool = True
    hits: int = 1  # detections matched to it, its start included
    missed: int = 0  # rounds in a row visible but unmatched
    streak_start: int = 0  # the first of those rounds

    def visible(self, index: int) -> bool:
        mask = self.masks.get(index)
        return mask is not None and bool(mask.any())


def _similarity(
    det: FrameDetections,
    det_masks: np.ndarray | None,
    objects: list[_Object],
    index: int,
    size: tuple[int, int],
) -> np.ndarray:
    """``(D, L)`` IoU of each detection with each object on frame ``index`` (0 where hidden)."""
    if not objects:
        return np.zeros((len(det), 0))
    if det_masks is not None:
        empty = np.zeros(size, dtype=bool)
        held = np.stack([o.masks.get(index, empty) for o in objects])
        return mask_iou_matrix(det_masks, held)
    boxes = [mask_box(o.masks[index]) if o.visible(index) else None for o in objects]
    stacked = np.stack([b if b is not None else np.zeros(4) for b in boxes])
    iou = box_iou_matrix(det.boxes, stacked)
    iou[:, [b is None for b in boxes]] = 0.0
    return iou


class _Walk:
    """State of one :func:`run_loop` call."""

    def __init__(
        self, num_frames: int, segmenter: ClipSegmenter, config: LoopConfig, size: tuple[int, int]
    ) -> None:
        self.num_frames = num_frames
        self.segmenter = segmenter
        self.config = config
        self.size = size
        self.session: SegmenterSession | None = None
        self.objects: list[_Object] = []

    def live(self) -> list[_Object]:
        return [o for o in self.objects if o.alive]

    def record(self, index: int) -> None:
        """Propagate to ``index`` and keep the masks of the live objects."""
        if self.session is None or not self.objects:
            return
        masks = self.session.propagate(index)
        for obj in self.live():
            if obj.obj_id in masks:
                obj.masks[index] = np.asarray(masks[obj.obj_id], dtype=bool)

    def round(self, index: int, det: FrameDetections) -> None:
        """One detection round on frame ``index``: match, correct, end, start."""
        cfg = self.config
        live = self.live()
        det_masks = self.segmenter.segment(index, det.boxes) if cfg.match == "mask" else None
        sim = _similarity(det, det_masks, live, index, self.size)
        prompted = False
        matched: set[int] = set()
        for d, o in assign(sim, cfg.match_iou):
            obj = live[o]
            matched.add(o)
            obj.missed = 0
            obj.hits += 1
            if cfg.reprompt:
                obj.scores.append(float(det.scores[d]))
                assert self.session is not None  # live objects exist, so a session does
                self.session.add_box(index, obj.obj_id, det.boxes[d])
                prompted = True
        self._end_unmatched(live, matched, index)
        started = self._start(index, det, det_masks, sim)
        if started or prompted:
            self.record(index)  # re-run the frame with the new prompts
        if started and cfg.backward and index > 0:
            self._backward(index, started)

    def _end_unmatched(self, live: list[_Object], matched: set[int], index: int) -> None:
        end_after = self.config.end_after
        for o, obj in enumerate(live):
            if o in matched or not obj.visible(index):
                continue  # matched, or hidden: neither confirms nor counts against it
            if obj.missed == 0:
                obj.streak_start = index
            obj.missed += 1
            if end_after is not None and obj.missed >= end_after:
                obj.alive = False
                obj.masks = {k: m for k, m in obj.masks.items() if k < obj.streak_start}

    def _start(
        self, index: int, det: FrameDetections, det_masks: np.ndarray | None, sim: np.ndarray
    ) -> list[tuple[_Object, np.ndarray]]:
        """New objects from the detections that overlap nothing tracked, best score first."""
        cfg = self.config
        room = cfg.max_objects - len(self.objects)
        started: list[tuple[_Object, np.ndarray]] = []
        accepted: list[int] = []
        for d in np.argsort(-det.scores, kind="stable").tolist():
            if len(started) >= room:
                break
            if sim.shape[1] and sim[d].max() >= cfg.match_iou:
                continue
            if accepted:
                if det_masks is not None:
                    overlap = mask_iou_matrix(det_masks[d : d + 1], det_masks[accepted]).max()
                else:
                    overlap = box_iou_matrix(det.boxes[d : d + 1], det.boxes[accepted]).max()
                if overlap >= cfg.match_iou:
                    continue
            accepted.append(d)
            obj = _Object(len(self.objects), det.labels[d], [float(det.scores[d])])
            self.objects.append(obj)
            started.append((obj, det.boxes[d]))
        if started:
            if self.session is None:
                self.session = self.segmenter.open(np.arange(self.num_frames))
            for obj, box in started:
                self.session.add_box(index, obj.obj_id, box)
        return started

    def _backward(self, index: int, started: list[tuple[_Object, np.ndarray]]) -> None:
        """Run the objects started on ``index`` back to frame 0 in a session of their own."""
        patience = self.config.backward_patience
        back = self.segmenter.open(np.arange(index, -1, -1))
        for obj, box in started:
            back.add_box(0, obj.obj_id, box)
        back.propagate(0)
        absent = 0
        for k in range(1, index + 1):
            masks = back.propagate(k)
            seen = False
            for obj, _ in started:
                mask = np.asarray(masks.get(obj.obj_id, np.zeros(self.size, dtype=bool)), dtype=bool)
                if mask.any():
                    obj.masks[index - k] = mask
                    seen = True
            absent = 0 if seen else absent + 1
            if patience is not None and absent >= patience:
                break

    def merge(self) -> list[_Object]:
        """The objects after near-duplicates merged (older id kept)."""
        cfg = self.config
        min_hits = cfg.min_hits
        kept = [
            o
            for o in self.objects
            if any(m.any() for m in o.masks.values()) and (o.alive or o.hits >= min_hits)
        ]
        if cfg.merge_iou is None:
            return kept
        merged = True
        while merged:
            merged = False
            for i, a in enumerate(kept):
                for b in kept[i + 1 :]:
                    common = [k for k in a.masks if a.visible(k) and b.visible(k)]
                    if len(common) < cfg.merge_min_frames:
                        continue
                    ious = [mask_iou_matrix(a.masks[k][None], b.masks[k][None])[0, 0] for k in common]
                    if float(np.mean(ious)) < cfg.merge_iou:
                        continue
                    for k, mask in b.masks.items():
                        if not a.visible(k):
                            a.masks[k] = mask
                    a.scores.extend(b.scores)
                    kept.remove(b)
                    merged = True
                    break
                if merged:
                    break
        return kept


def run_loop(
    frames: np.ndarray,
    frame_ids: np.ndarray,
    detections: Mapping[int, FrameDetections],
    segmenter: Segmenter,
    config: LoopConfig | None = None,
    size: tuple[int, int] | None = None,
) -> list[Track]:
    """Track the detected objects through ``frames`` (see the module docstring).

    Args:
        frames: ``(T, h, w, 3)`` uint8 RGB tracking frames.
        frame_ids: ``(T,)`` their native frame ids, ascending.
        detections: tracking frame index -> its detections (boxes in pixels of ``size``).
        segmenter: e.g. :class:`~zsgrounding.proposals.sam2.Sam2Segmenter`.
        config: the loop's settings (default :class:`LoopConfig`).
        size: ``(H, W)`` of boxes and masks (normally the native size); ``None``: the frames'.

    Returns:
        one :class:`Track` per object in id order, on the tracking frames where its mask is not
        empty: ``boxes`` are the masks' bounding boxes, ``masks (K, H, W)``, ``label`` the
        detection that started it, ``score`` the mean score of the detections that started and
        corrected it (re-prompted it).
    """
    cfg = config or LoopConfig()
    ids = np.asarray(frame_ids, dtype=np.int64).reshape(-1)
    height, width = size if size is not None else frames.shape[1:3]
    rounds = {i: d for i, d in detections.items() if len(d)}
    if not rounds:
        return []
    shape = (int(height), int(width))
    walk = _Walk(len(ids), segmenter.bind(frames, shape), cfg, shape)
    last_round = None
    for index in range(min(rounds), len(ids)):
        walk.record(index)
        det = rounds.get(index)
        if det is None or (last_round is not None and index - last_round < cfg.look_gap):
            continue
        if not walk.live() and len(walk.objects) >= cfg.max_objects:
            continue
        last_round = index
        walk.round(index, det)
    tracks = []
    for obj in walk.merge():
        kept = sorted(k for k in obj.masks if obj.visible(k))
        tracks.append(
            Track(
                ids[kept],
                np.stack([mask_box(obj.masks[k]) for k in kept]),
                label=obj.label,
                score=float(np.mean(obj.scores)),
                track_id=obj.obj_id,
                masks=np.stack([obj.masks[k] for k in kept]),
            )
        )
    return tracks
