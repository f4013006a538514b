"""Scripted stand-ins for a detector and SAM2, to test and measure the tracking loop without weights.

A :class:`Script` holds the true box of every object on every tracking frame where it is visible,
and what the stand-ins get wrong on purpose: frames where the segmenter loses a visible object,
frames where the detector misses one, a mask that slides away from its object after each prompt
(drift), and detections of nothing (false alarms). :class:`ScriptedSegmenter` follows the script
as SAM2 would at best (box-shaped masks of the object a prompt landed on); :func:`scripted_detections`
gives the detector's view. :func:`scenarios` are the named cases the tracking benchmark and the
loop's tests share.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from zsgrounding.boxes import box_iou_matrix
from zsgrounding.proposals.detections import FrameDetections

__all__ = ["Script", "ScriptedSegmenter", "scenarios", "scripted_detections"]


@dataclass
class Script:
    """A scripted clip.

    Attributes:
        num_frames: tracking frames ``T``.
        size: ``(H, W)`` of boxes and masks.
        boxes: per object, tracking frame index -> its true ``xyxy`` box where it is visible.
        labels: per object, what the detector calls it.
        lost: per object, frames where the segmenter returns an empty mask although it is visible.
        missed: per object, frames where the detector does not see it.
        drift: pixels per frame the segmenter's mask slides right of its object since its last prompt.
        reacquire: after losing an object, the segmenter finds it again when it is back (as SAM2's
            memory usually does); ``False``: only a new prompt brings it back.
        false_alarms: frame -> boxes the detector reports where nothing is.
        detect_every: the detector runs on frames ``0, k, 2k, ...``.
    """

    num_frames: int
    size: tuple[int, int]
    boxes: list[dict[int, np.ndarray]]
    labels: list[str]
    lost: dict[int, set[int]] = field(default_factory=dict)
    missed: dict[int, set[int]] = field(default_factory=dict)
    drift: float = 0.0
    reacquire: bool = True
    false_alarms: dict[int, list[list[float]]] = field(default_factory=dict)
    detect_every: int = 4

    def frames(self) -> np.ndarray:
        """Blank ``(T, H, W, 3)`` frames (the stand-ins read the script, not pixels)."""
        return np.zeros((self.num_frames, *self.size, 3), dtype=np.uint8)

    def gt_ids(self, index: int) -> list[int]:
        """Objects visible on frame ``index``."""
        return [g for g, boxes in enumerate(self.boxes) if index in boxes]


def _box_mask(box: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    mask = np.zeros(size, dtype=bool)
    x1, y1, x2, y2 = (round(v) for v in box)
    mask[max(0, y1) : min(height, y2), max(0, x1) : min(width, x2)] = True
    return mask


def _object_at(script: Script, index: int, box: np.ndarray, threshold: float = 0.3) -> int | None:
    """The visible object a box prompt lands on (best IoU at or above ``threshold``), or ``None``."""
    visible = script.gt_ids(index)
    if not visible:
        return None
    iou = box_iou_matrix(np.asarray(box)[None], np.stack([script.boxes[g][index] for g in visible]))[0]
    best = int(np.argmax(iou))
    return visible[best] if iou[best] >= threshold else None


def _lost(lost: set[int], index: int, prompted: int) -> bool:
    """Whether a lost stretch hides the object on ``index``: not when a prompt came within the stretch.

    A prompt's own frame is always masked (the box says where the object is), and a prompt inside
    a stretch ends it, as a fresh box brings SAM2 back onto its object.
    """
    if index not in lost:
        return False
    start = index
    while start - 1 in lost:
        start -= 1
    end = index
    while end + 1 in lost:
        end += 1
    return not start <= prompted <= end


@dataclass
class _Prompt:
    gt: int | None  # the object followed, None: a prompt on nothing (the box itself is followed)
    index: int  # tracking frame of the last prompt
    box: np.ndarray
    gone: bool = False  # lost and not reacquired


class _Session:
    def __init__(self, script: Script, order: np.ndarray) -> None:
        self.script = script
        self.order = [int(i) for i in order]
        self.prompts: dict[int, _Prompt] = {}

    def add_box(self, position: int, obj_id: int, box: np.ndarray) -> None:
        index = self.order[position]
        self.prompts[obj_id] = _Prompt(_object_at(self.script, index, box), index, np.asarray(box, float))

    def propagate(self, position: int) -> dict[int, np.ndarray]:
        index = self.order[position]
        script = self.script
        out = {}
        for obj_id, prompt in self.prompts.items():
            if prompt.gt is None:
                out[obj_id] = _box_mask(prompt.box, script.size)  # a prompt on nothing stays put
                continue
            box = script.boxes[prompt.gt].get(index)
            lost = _lost(script.lost.get(prompt.gt, set()), index, prompt.index)
            hidden = box is None or lost
            if hidden and not script.reacquire and index != prompt.index:
                prompt.gone = True
            if hidden or prompt.gone:
                out[obj_id] = np.zeros(script.size, dtype=bool)
                continue
            shift = script.drift * abs(index - prompt.index)
            out[obj_id] = _box_mask(box + np.array([shift, 0.0, shift, 0.0]), script.size)
        return out


class _Bound:
    def __init__(self, script: Script) -> None:
        self.script = script

    def open(self, order: np.ndarray) -> _Session:
        return _Session(self.script, order)

    def segment(self, index: int, boxes: np.ndarray) -> np.ndarray:
        masks = []
        for box in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
            gt = _object_at(self.script, index, box)
            target = box if gt is None else self.script.boxes[gt][index]
            masks.append(_box_mask(target, self.script.size))
        return np.stack(masks) if masks else np.zeros((0, *self.script.size), dtype=bool)


class ScriptedSegmenter:
    """A :class:`~zsgrounding.proposals.segmenter.Segmenter` that follows a :class:`Script`."""

    def __init__(self, script: Script) -> None:
        self.script = script

    def bind(self, frames: np.ndarray, size: tuple[int, int]) -> _Bound:
        if len(frames) != self.script.num_frames or tuple(size) != tuple(self.script.size):
            raise ValueError("the frames and size must be the script's")
        return _Bound(self.script)


def scripted_detections(script: Script, score: float = 0.8) -> dict[int, FrameDetections]:
    """The detector's view: every ``detect_every``-th frame, visible objects not missed, false alarms."""
    out: dict[int, FrameDetections] = {}
    for index in range(0, script.num_frames, script.detect_every):
        seen = [g for g in script.gt_ids(index) if index not in script.missed.get(g, set())]
        boxes = [script.boxes[g][index] for g in seen] + [
            np.asarray(b, float) for b in script.false_alarms.get(index, [])
        ]
        labels = [script.labels[g] for g in seen] + ["nothing"] * len(script.false_alarms.get(index, []))
        out[index] = FrameDetections(index, np.reshape(boxes, (-1, 4)), np.full(len(boxes), score), labels)
    return out


def _moving(
    start: tuple[float, float], step: tuple[float, float], frames: range, side: float = 16.0
) -> dict[int, np.ndarray]:
    x0, y0 = start
    dx, dy = step
    return {i: np.array([x0 + dx * i, y0 + dy * i, x0 + dx * i + side, y0 + dy * i + side]) for i in frames}


def scenarios(num_frames: int = 40) -> Mapping[str, Script]:
    """The named cases: each breaks one thing the previous loop got wrong (see docs/tracking.md)."""
    size = (96, 160)
    everywhere = range(num_frames)
    a = _moving((4.0, 10.0), (2.0, 0.0), everywhere)  # walks right along the top
    b = _moving((130.0, 60.0), (-2.0, 0.0), everywhere)  # walks left along the bottom
    return {
        # the segmenter drops object 0 for 6 frames while the detector still sees it
        "lost-for-a-while": Script(num_frames, size, [a, b], ["man", "dog"], lost={0: set(range(12, 18))}),
        # object 1 walks in on frame 9, between two detection rounds
        "appears-late": Script(
            num_frames, size, [a, _moving((130.0, 60.0), (-2.0, 0.0), range(9, num_frames))], ["man", "dog"]
        ),
        # object 0 is out of view on frames 15-24 and comes back
        "leaves-and-returns": Script(
            num_frames,
            size,
            [{i: box for i, box in a.items() if not 15 <= i < 25}, b],
            ["man", "dog"],
        ),
        # the segmenter's mask slides 1 px per frame off its object until prompted again
        "drifts": Script(num_frames, size, [a, b], ["man", "dog"], drift=1.0),
        # as above, but the segmenter does not find object 0 again without a new prompt
        "returns-unseen": Script(
            num_frames,
            size,
            [{i: box for i, box in a.items() if not 15 <= i < 25}, b],
            ["man", "dog"],
            reacquire=False,
        ),
        # one detection of nothing on frame 8, never seen again
        "false-alarm": Script(
            num_frames, size, [a, b], ["man", "dog"], false_alarms={8: [[70.0, 30.0, 90.0, 50.0]]}
        ),
    }
