"""What a toy video is made of: caption parts, objects with their timelines, and the video with
its ground-truth tube, its HC-STVG annotation entry and its ``toyworld.json`` sidecar entry."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from zsgrounding.datasets.toy import sidecar_meta
from zsgrounding.toy.world.config import ACTIONS, COLOURS, SHAPES, SIZES
from zsgrounding.types import GroundTruth, Sample, Tube


class Segment(NamedTuple):
    """One piece of an object's timeline: ``action`` over native frames ``[start, end)``."""

    action: str
    start: int
    end: int


@dataclass(frozen=True)
class CaptionParts:
    """A caption as its parts. ``size`` is ``None`` when the caption does not name it."""

    colour: str
    shape: str
    size: str | None
    action: str

    @property
    def attribute_phrase(self) -> str:
        words = ["the", *([self.size] if self.size else []), self.colour, self.shape]
        return " ".join(words)

    @property
    def action_phrase(self) -> str:
        return f"that {ACTIONS[self.action]}"

    @property
    def text(self) -> str:
        """The caption: ``f"{attribute_phrase} {action_phrase}"``."""
        return f"{self.attribute_phrase} {self.action_phrase}"

    def matches(self, obj: ToyObject) -> bool:
        """Whether ``obj`` fits the attribute phrase (the action is not looked at)."""
        return obj.colour == self.colour and obj.shape == self.shape and self.size in (None, obj.size)

    def to_json(self) -> dict[str, Any]:
        return {
            "attribute_phrase": self.attribute_phrase,
            "action_phrase": self.action_phrase,
            "colour": self.colour,
            "shape": self.shape,
            "size": self.size,
            "action": self.action,
            "verb": ACTIONS[self.action],
        }

    @classmethod
    def parse(cls, caption: str) -> CaptionParts:
        """Invert :attr:`text`; raises ``ValueError`` for a caption outside the grammar."""
        words = caption.split()
        verbs = {verb: action for action, verb in ACTIONS.items()}
        if "that" not in words or words[0] != "the":
            raise ValueError(f"not a toy-world caption: {caption!r}")
        cut = words.index("that")
        attrs, verb = words[1:cut], " ".join(words[cut + 1 :])
        if len(attrs) not in (2, 3) or verb not in verbs:
            raise ValueError(f"not a toy-world caption: {caption!r}")
        size = attrs[0] if len(attrs) == 3 else None
        colour, shape = attrs[-2:]
        if colour not in COLOURS or shape not in SHAPES or size not in (None, *SIZES):
            raise ValueError(f"not a toy-world caption: {caption!r}")
        return cls(colour, shape, size, verbs[verb])


@dataclass
class ToyObject:
    """One shape of a toy video.

    Attributes:
        id: index in :attr:`ToyVideo.objects`.
        colour, shape, size: the attributes (names from :data:`COLOURS`, :data:`SHAPES`, :data:`SIZES`).
        role: ``"target"``, ``"attribute"`` (distractor sharing the attribute phrase) or
            ``"action"`` (distractor sharing the action).
        visible: ``(v0, v1)`` half-open native frames on which the object is drawn.
        motions: its motion segments, sorted, inside ``visible``.
        frame_ids: ``(K,)`` int64, ``K = v1 - v0`` consecutive visible frames.
        boxes: ``(K, 4)`` float64 pixel ``xyxy`` with integer values.
    """

    id: int
    colour: str
    shape: str
    size: str
    role: str
    visible: tuple[int, int]
    motions: list[Segment]
    frame_ids: np.ndarray
    boxes: np.ndarray

    @property
    def label(self) -> str:
        """``"<size> <colour> <shape>"``, e.g. ``"big red circle"``."""
        return f"{self.size} {self.colour} {self.shape}"

    def action_spans(self, num_frames: int) -> dict[str, list[tuple[int, int]]]:
        """Every captionable action the object does, with its spans (see the module docstring)."""
        v0, v1 = self.visible
        spans: dict[str, list[tuple[int, int]]] = {}
        for seg in self.motions:
            spans.setdefault(seg.action, []).append((seg.start, seg.end))
        if v0 > 0:
            spans["appear"] = [(v0, v1)]
        if v1 < num_frames:
            spans["leave"] = [(v0, v1)]
        if not self.motions and (v0, v1) == (0, num_frames):
            spans["stay_still"] = [(0, num_frames)]
        return spans

    def timeline(self) -> list[Segment]:
        """The visible frames tiled by the motion segments and ``"still"`` segments between them."""
        out, pos = [], self.visible[0]
        for seg in self.motions:
            if seg.start > pos:
                out.append(Segment("still", pos, seg.start))
            out.append(seg)
            pos = seg.end
        if pos < self.visible[1]:
            out.append(Segment("still", pos, self.visible[1]))
        return out

    def to_json(self, num_frames: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "colour": self.colour,
            "shape": self.shape,
            "size": self.size,
            "label": self.label,
            "role": self.role,
            "visible": list(self.visible),
            "segments": [seg._asdict() for seg in self.timeline()],
            "actions": {a: [list(s) for s in spans] for a, spans in self.action_spans(num_frames).items()},
            "boxes": {
                str(int(f)): [int(v) for v in b] for f, b in zip(self.frame_ids, self.boxes, strict=True)
            },
        }


@dataclass
class ToyVideo:
    """One generated video with its caption and ground truth.

    Attributes:
        name: ``"<prefix>_<index + 1 as 5 digits>"``, e.g. ``"toy_00001"``.
        index: 0-based position in the dataset (its generator is seeded by ``(seed, index)``).
        seed: the config seed.
        frames: ``(T, H, W, 3)`` uint8 RGB.
        fps: frame rate.
        objects: every object; ``objects[target]`` is the target.
        target: index of the target in ``objects``.
        parts: the caption's parts.
        tube: the GT tube: the target's span for the action, a box on every frame of it.
    """

    name: str
    index: int
    seed: int
    frames: np.ndarray
    fps: float
    objects: list[ToyObject]
    target: int
    parts: CaptionParts
    tube: Tube

    @property
    def key(self) -> str:
        """The video file name, the key of its annotation entry: ``"toy_00001.mp4"``."""
        return f"{self.name}.mp4"

    @property
    def caption(self) -> str:
        return self.parts.text

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    def annotation(self) -> dict[str, Any]:
        """The HC-STVG v1 entry (plus ``fps``): boxes ``[x, y, w, h]`` from 1-based ``st_frame``."""
        boxes = self.tube.boxes.astype(int)
        return {
            "bbox": [[int(x1), int(y1), int(x2 - x1), int(y2 - y1)] for x1, y1, x2, y2 in boxes],
            "st_time": self.tube.start / self.fps,
            "ed_time": self.tube.end / self.fps,
            "img_num": self.num_frames,
            "st_frame": self.tube.start + 1,
            "width": self.width,
            "height": self.height,
            "caption": self.caption,
            "fps": self.fps,
        }

    def sidecar(self) -> dict[str, Any]:
        """The ``toyworld.json`` entry: every object, the target and the caption parts."""
        return {
            "index": self.index,
            "seed": [self.seed, self.index],
            "fps": self.fps,
            "num_frames": self.num_frames,
            "width": self.width,
            "height": self.height,
            "target": self.target,
            "caption": self.caption,
            "caption_parts": self.parts.to_json(),
            "tube": {"start": self.tube.start, "end": self.tube.end},
            "objects": [obj.to_json(self.num_frames) for obj in self.objects],
        }

    def to_sample(self, video: Path | None = None) -> Sample:
        """The common sample type; ``video`` is the file if written (default: ``Path(self.key)``).

        The GT segment is ``(0, T - 1)``, as the HC-STVG loader sets it, so a toy video evaluates
        the same in memory and from disk.
        """
        gt = GroundTruth(self.tube, self.fps, (0, self.num_frames - 1))
        return Sample(
            id=self.key,
            video=video if video is not None else Path(self.key),
            sentence=self.caption,
            gt=gt,
            width=self.width,
            height=self.height,
            fps=self.fps,
            span_seconds=(self.tube.start / self.fps, self.tube.end / self.fps),
            meta=sidecar_meta(
                {"target": self.target, "caption_parts": self.parts.to_json(), "objects": self.objects}
            ),
        )


__all__ = [
    "CaptionParts",
    "Segment",
    "ToyObject",
    "ToyVideo",
]
