"""The toy world: seeded videos of coloured shapes with captions and ground-truth tubes.

No real dataset or weight can be downloaded, so the project carries this world of its own. Each
video shows 2-4 shapes; one is the target of a caption made of two separable phrases::

    "the big red circle"  +  "that moves left"  ->  "the big red circle that moves left"
     attribute phrase          action phrase

Grammar (exact, see :class:`CaptionParts`): ``the [size] <colour> <shape> that <verb>``, where the
size word is optional and every word comes from :data:`COLOURS`, :data:`SHAPES`, :data:`SIZES`
and the verbs of :data:`ACTIONS`.

Semantics of an object's actions (:meth:`ToyObject.action_spans`), half-open native frames:

- ``move_left/right/up/down``, ``grow``, ``shrink``: a motion segment ``[s, e)``; outside its
  motion segments a visible object stays where it is. An object does each motion at most once.
- ``appear``: the object pops in at frame ``v0 > 0`` and stays to the end: span ``[v0, T)``.
- ``leave``: the object is there from the start and pops out at ``v1 < T``: span ``[0, v1)``.
- ``stay_still``: visible the whole video and never moves: span ``[0, T)``.

The GT tube is the target's span for the captioned action. Every other object is a distractor
that shares either the attribute phrase (it matches it, but never does the action) or the action
(it does it, but does not match the attribute phrase), never both: only the target fits the
whole caption, so both cues are needed.

Sizes: a ``small`` object's box side stays within ``[small/f, small*f]`` and a ``big`` one within
``[big/f, big*f]`` for the grow/shrink factor ``f``; the config keeps the two ranges apart.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from zsgrounding.datasets.toy import load_sidecar, sidecar_meta, sidecar_tracks
from zsgrounding.types import GroundTruth, Sample, Track, Tube
from zsgrounding.video import write_video

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 190, 70),
    "blue": (50, 90, 235),
    "yellow": (240, 220, 50),
    "purple": (150, 70, 205),
    "orange": (250, 140, 30),
    "white": (245, 245, 245),
    "cyan": (40, 210, 220),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross")
SIZES: tuple[str, ...] = ("small", "big")
ACTIONS: dict[str, str] = {
    "move_left": "moves left",
    "move_right": "moves right",
    "move_up": "moves up",
    "move_down": "moves down",
    "grow": "grows",
    "shrink": "shrinks",
    "stay_still": "stays still",
    "appear": "appears",
    "leave": "leaves",
}
"""Action id -> the verb phrase that follows ``that`` in a caption."""
MOTIONS: tuple[str, ...] = ("move_left", "move_right", "move_up", "move_down", "grow", "shrink")
_DIRECTIONS = {"move_left": (-1, 0), "move_right": (1, 0), "move_up": (0, -1), "move_down": (0, 1)}
_GAP_PX = 2  # minimum distance between two objects' boxes, so no shape ever hides another


@dataclass(frozen=True)
class ToyWorldConfig:
    """Everything that shapes a toy world; with ``seed`` it fixes every video exactly.

    Video ``i`` is drawn from its own generator seeded by ``(seed, i)``, so the first videos of a
    bigger dataset are the videos of a smaller one.
    """

    seed: int = 0
    width: int = 128
    height: int = 96
    fps: float = 10.0
    min_seconds: float = 2.0
    max_seconds: float = 6.0
    min_objects: int = 2
    max_objects: int = 4
    colours: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange", "white")
    shapes: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
    actions: tuple[str, ...] = tuple(ACTIONS)  # actions a caption may ask about
    small_px: int = 12  # box side of a small object
    big_px: int = 24  # box side of a big object
    scale_factor: float = 1.35  # grow / shrink multiply the side by this over their segment
    speed: float = 24.0  # pixels per second while moving
    min_action_seconds: float = 0.8
    max_action_seconds: float = 2.0
    max_motions: int = 2  # motion segments per object
    p_mention_size: float = 0.5  # probability the caption names the size
    p_appear_leave: float = 0.2  # probability a distractor appears or leaves (when allowed)
    texture: bool = True  # lightly textured background instead of a plain one
    prefix: str = "toy"

    def __post_init__(self) -> None:
        object.__setattr__(self, "colours", tuple(self.colours))
        object.__setattr__(self, "shapes", tuple(self.shapes))
        object.__setattr__(self, "actions", tuple(self.actions))
        problems = [
            f"unknown {kind} {bad}"
            for kind, given, known in (
                ("colours", self.colours, COLOURS),
                ("shapes", self.shapes, SHAPES),
                ("actions", self.actions, ACTIONS),
            )
            if (bad := sorted(set(given) - set(known)))
        ]
        if len(self.colours) < 2 or len(self.shapes) < 2 or not self.actions:
            problems.append("need at least 2 colours, 2 shapes and 1 action")
        if self.width % 2 or self.height % 2:
            problems.append(f"frame size {self.width}x{self.height} must be even (yuv420p)")
        if not 1 <= self.min_objects <= self.max_objects:
            problems.append(f"objects must satisfy 1 <= {self.min_objects} <= {self.max_objects}")
        if not 0 < self.min_seconds <= self.max_seconds or self.fps <= 0:
            problems.append("need 0 < min_seconds <= max_seconds and fps > 0")
        if not 0 < self.min_action_seconds <= self.max_action_seconds:
            problems.append("need 0 < min_action_seconds <= max_action_seconds")
        if not (self.scale_factor >= 1 and self.scale_factor**2 < self.big_px / self.small_px):
            problems.append("scale_factor**2 must stay below big_px / small_px so sizes never overlap")
        if problems:
            raise ValueError("invalid ToyWorldConfig: " + "; ".join(problems))

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


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


# ---------------------------------------------------------------------------------------- timelines


def _frames(seconds: float, fps: float) -> int:
    return max(2, round(seconds * fps))


def _timeline(
    rng: np.random.Generator, num_frames: int, cfg: ToyWorldConfig, must: str | None, must_not: str | None
) -> tuple[tuple[int, int], list[Segment]] | None:
    """Sample when an object is visible and how it moves; ``None`` when the draw does not fit.

    ``must``: an action the object has to do exactly once; ``must_not``: one it may never do.
    """
    if must == "stay_still":
        return (0, num_frames), []
    if must in ("appear", "leave"):
        kind = must
    else:
        allowed = [k for k in ("appear", "leave") if k != must_not]
        kind = str(rng.choice(allowed)) if allowed and rng.random() < cfg.p_appear_leave else "full"
    v0, v1 = 0, num_frames
    if kind == "appear":
        v0 = int(rng.integers(max(1, round(0.15 * num_frames)), round(0.6 * num_frames) + 1))
    elif kind == "leave":
        v1 = int(rng.integers(round(0.4 * num_frames), min(num_frames - 1, round(0.85 * num_frames)) + 1))
    shortest, longest = _frames(cfg.min_action_seconds, cfg.fps), _frames(cfg.max_action_seconds, cfg.fps)
    if v1 - v0 < shortest:
        return None
    # Not staying still for the whole video needs a motion, unless the object appears or leaves.
    needs_motion = must in MOTIONS or (must_not == "stay_still" and kind == "full")
    pool = [m for m in MOTIONS if m not in (must, must_not)]
    actions = [must] if must in MOTIONS else []
    count = int(rng.integers(int(needs_motion), max(int(needs_motion), cfg.max_motions) + 1))
    count = min(count, len(pool) + len(actions))
    actions += [str(a) for a in rng.choice(pool, size=count - len(actions), replace=False)]
    rng.shuffle(actions)
    lengths = rng.integers(shortest, max(shortest, longest) + 1, size=len(actions))
    free = (v1 - v0) - int(lengths.sum())
    if free < 0:
        return None
    cuts = np.sort(rng.integers(0, free + 1, size=len(actions)))
    gaps = np.diff(np.concatenate([[0], cuts]))
    motions, pos = [], v0
    for action, gap, length in zip(actions, gaps, lengths, strict=True):
        pos += int(gap)
        motions.append(Segment(action, pos, pos + int(length)))
        pos += int(length)
    return (v0, v1), motions


def _relative_path(
    visible: tuple[int, int], motions: list[Segment], side_px: int, cfg: ToyWorldConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per visible frame: ``(dx (K,), dy (K,), side (K,) int)`` relative to the first visible frame."""
    count = visible[1] - visible[0]
    vx, vy, log_scale = np.zeros(count), np.zeros(count), np.zeros(count)
    step = cfg.speed / cfg.fps
    for seg in motions:
        span = slice(seg.start - visible[0], seg.end - visible[0])
        if seg.action in _DIRECTIONS:
            ux, uy = _DIRECTIONS[seg.action]
            vx[span], vy[span] = ux * step, uy * step
        else:
            sign = 1.0 if seg.action == "grow" else -1.0
            log_scale[span] = sign * math.log(cfg.scale_factor) / (seg.end - seg.start)
    side = np.maximum(4, np.rint(side_px * np.exp(np.cumsum(log_scale)))).astype(np.int64)
    return np.cumsum(vx), np.cumsum(vy), side


def _place(
    rng: np.random.Generator,
    path: tuple[np.ndarray, np.ndarray, np.ndarray],
    visible: tuple[int, int],
    placed: list[tuple[tuple[int, int], np.ndarray]],
    cfg: ToyWorldConfig,
    tries: int = 30,
) -> np.ndarray | None:
    """Pick a start point so the whole path stays in frame and clear of ``placed``: ``(K, 4)`` or None."""
    dx, dy, side = path
    half = side / 2.0
    lo_x, hi_x = np.max(1 + half - dx) + 0.5, np.min(cfg.width - 1 - half - dx) - 0.5
    lo_y, hi_y = np.max(1 + half - dy) + 0.5, np.min(cfg.height - 1 - half - dy) - 0.5
    if lo_x > hi_x or lo_y > hi_y:
        return None
    for _ in range(tries):
        cx, cy = rng.uniform(lo_x, hi_x) + dx, rng.uniform(lo_y, hi_y) + dy
        x1, y1 = np.rint(cx - half), np.rint(cy - half)
        boxes = np.stack([x1, y1, x1 + side, y1 + side], axis=1).astype(np.float64)
        if all(not _collide(visible, boxes, other_vis, other) for other_vis, other in placed):
            return boxes
    return None


def _collide(vis_a: tuple[int, int], a: np.ndarray, vis_b: tuple[int, int], b: np.ndarray) -> bool:
    lo, hi = max(vis_a[0], vis_b[0]), min(vis_a[1], vis_b[1])
    if lo >= hi:
        return False
    a, b = a[lo - vis_a[0] : hi - vis_a[0]], b[lo - vis_b[0] : hi - vis_b[0]]
    apart = (
        (a[:, 2] + _GAP_PX <= b[:, 0])
        | (b[:, 2] + _GAP_PX <= a[:, 0])
        | (a[:, 3] + _GAP_PX <= b[:, 1])
        | (b[:, 3] + _GAP_PX <= a[:, 1])
    )
    return not bool(np.all(apart))


# ---------------------------------------------------------------------------------------- scenes


def _attributes(
    rng: np.random.Generator, cfg: ToyWorldConfig, parts: CaptionParts, role: str
) -> tuple[str, str, str]:
    """``(colour, shape, size)`` of a distractor of ``role`` for the caption ``parts``."""
    if role == "attribute":  # fits the attribute phrase; the size is free when the caption omits it
        return parts.colour, parts.shape, parts.size or str(rng.choice(SIZES))
    colour, shape, size = parts.colour, parts.shape, parts.size or str(rng.choice(SIZES))
    # Change one named attribute: a near miss that only the attribute phrase tells apart.
    changeable = ["colour", "shape", *(["size"] if parts.size else [])]
    which = str(rng.choice(changeable))
    if which == "colour":
        colour = str(rng.choice([c for c in cfg.colours if c != parts.colour]))
    elif which == "shape":
        shape = str(rng.choice([s for s in cfg.shapes if s != parts.shape]))
    else:
        size = next(s for s in SIZES if s != parts.size)
    return colour, shape, size


def _roles(rng: np.random.Generator, num_distractors: int) -> list[str]:
    """Distractor roles: at least one of each kind when there are two or more."""
    kinds = ["attribute", "action"]
    roles = kinds[:] if num_distractors >= 2 else []
    roles += [str(r) for r in rng.choice(kinds, size=num_distractors - len(roles))]
    return roles


def _scene(rng: np.random.Generator, cfg: ToyWorldConfig) -> tuple[int, CaptionParts, list[ToyObject]] | None:
    """One attempt at a scene: ``(num_frames, caption parts, objects with the target first)``."""
    lo, hi = max(2, math.ceil(cfg.min_seconds * cfg.fps)), max(2, math.floor(cfg.max_seconds * cfg.fps))
    num_frames = int(rng.integers(lo, max(lo, hi) + 1))
    action = str(rng.choice(cfg.actions))
    colour, shape, size = str(rng.choice(cfg.colours)), str(rng.choice(cfg.shapes)), str(rng.choice(SIZES))
    parts = CaptionParts(colour, shape, size if rng.random() < cfg.p_mention_size else None, action)
    count = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    objects: list[ToyObject] = []
    placed: list[tuple[tuple[int, int], np.ndarray]] = []
    for role in ["target", *_roles(rng, count - 1)]:
        for _ in range(20):
            attrs = (colour, shape, size) if role == "target" else _attributes(rng, cfg, parts, role)
            must = action if role in ("target", "action") else None
            timeline = _timeline(rng, num_frames, cfg, must, action if role == "attribute" else None)
            if timeline is None:
                continue
            visible, motions = timeline
            side = cfg.big_px if attrs[2] == "big" else cfg.small_px
            boxes = _place(rng, _relative_path(visible, motions, side, cfg), visible, placed, cfg)
            if boxes is None:
                continue
            fids = np.arange(*visible, dtype=np.int64)
            objects.append(ToyObject(len(objects), *attrs, role, visible, motions, fids, boxes))
            placed.append((visible, boxes))
            break
        else:
            return None
    return num_frames, parts, objects


def _background(rng: np.random.Generator, cfg: ToyWorldConfig) -> np.ndarray:
    """``(H, W, 3)`` uint8: dark grey (white and yellow shapes must stand out), maybe textured."""
    base = rng.uniform(30, 70) + rng.uniform(-6, 6, size=3)
    field_ = np.zeros((cfg.height, cfg.width), dtype=np.float32)
    if cfg.texture:
        coarse = rng.normal(0.0, 1.0, size=(cfg.height // 12 + 2, cfg.width // 12 + 2)).astype(np.float32)
        smooth = Image.fromarray(coarse).resize((cfg.width, cfg.height), Image.Resampling.BILINEAR)
        field_ = 8.0 * np.asarray(smooth)
    return np.clip(base[None, None, :] + field_[:, :, None], 0, 255).astype(np.uint8)


def _draw(draw: ImageDraw.ImageDraw, shape: str, box: np.ndarray, fill: Any) -> None:
    """Draw ``shape`` filling the pixels of ``box`` (xyxy, exclusive right/bottom)."""
    x1, y1, x2, y2 = (int(v) for v in box)
    r, b = x2 - 1, y2 - 1  # PIL coordinates are inclusive
    cx, cy = (x1 + r) / 2, (y1 + b) / 2
    if shape == "circle":
        draw.ellipse([x1, y1, r, b], fill=fill)
    elif shape == "square":
        draw.rectangle([x1, y1, r, b], fill=fill)
    elif shape == "triangle":
        draw.polygon([(x1, b), (r, b), (cx, y1)], fill=fill)
    elif shape == "diamond":
        draw.polygon([(cx, y1), (r, cy), (cx, b), (x1, cy)], fill=fill)
    elif shape == "cross":
        arm = max(1.0, (x2 - x1) / 6)
        draw.rectangle([x1, cy - arm, r, cy + arm], fill=fill)
        draw.rectangle([cx - arm, y1, cx + arm, b], fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def _render(background: np.ndarray, objects: list[ToyObject], num_frames: int) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 frames: the background with every visible object drawn on it."""
    frames = np.empty((num_frames, *background.shape), dtype=np.uint8)
    for t in range(num_frames):
        image = Image.fromarray(background.copy())
        draw = ImageDraw.Draw(image)
        for obj in objects:
            if obj.visible[0] <= t < obj.visible[1]:
                _draw(draw, obj.shape, obj.boxes[t - obj.visible[0]], COLOURS[obj.colour])
        frames[t] = np.asarray(image)
    return frames


def generate_one(index: int, config: ToyWorldConfig | None = None) -> ToyVideo:
    """Video ``index`` of the toy world of ``config`` (deterministic in ``(config.seed, index)``)."""
    cfg = config or ToyWorldConfig()
    rng = np.random.default_rng([cfg.seed, index])
    for _ in range(200):
        scene = _scene(rng, cfg)
        if scene is not None:
            break
    else:
        raise ValueError(f"toy world video {index}: no scene fits a {cfg.width}x{cfg.height} frame")
    num_frames, parts, objects = scene
    # Shuffle so the target's position among the objects (and oracle tracks) carries no hint.
    order = rng.permutation(len(objects))
    objects = [objects[i] for i in order]
    for new_id, obj in enumerate(objects):
        obj.id = new_id
    target = next(i for i, obj in enumerate(objects) if obj.role == "target")
    start, end = objects[target].action_spans(num_frames)[parts.action][0]
    tobj = objects[target]
    inside = slice(start - tobj.visible[0], end - tobj.visible[0])
    tube = Tube(start, end, tobj.frame_ids[inside], tobj.boxes[inside])
    frames = _render(_background(rng, cfg), objects, num_frames)
    name = f"{cfg.prefix}_{index + 1:05d}"
    return ToyVideo(name, index, cfg.seed, frames, cfg.fps, objects, target, parts, tube)


def generate(n: int, config: ToyWorldConfig | None = None, start: int = 0) -> list[ToyVideo]:
    """Videos ``start .. start + n - 1`` of the toy world, in memory (``(T, H, W, 3)`` frames each)."""
    return [generate_one(i, config) for i in range(start, start + n)]


def object_tracks(video: ToyVideo, masks: bool = False) -> list[Track]:
    """Every object's ground-truth track (oracle proposals), in ``video.objects`` order.

    ``masks=True`` adds ``(K, H, W)`` bool masks of the drawn shapes.
    """
    tracks = []
    for obj in video.objects:
        mask = None
        if masks:
            mask = np.zeros((len(obj.frame_ids), video.height, video.width), dtype=bool)
            for k, box in enumerate(obj.boxes):
                canvas = Image.new("L", (video.width, video.height), 0)
                _draw(ImageDraw.Draw(canvas), obj.shape, box, 255)
                mask[k] = np.asarray(canvas) > 0
        tracks.append(Track(obj.frame_ids, obj.boxes, obj.label, 1.0, obj.id, mask))
    return tracks


# ---------------------------------------------------------------------------------------- files


def _dump(data: Any, path: Path) -> None:
    # Compact and in insertion order: the same seed gives byte-identical files.
    path.write_text(json.dumps(data, separators=(",", ":"), ensure_ascii=True) + "\n", encoding="utf-8")


def make_dataset(
    out_dir: Path | str, n: int, config: ToyWorldConfig | None = None, *, progress: bool = True
) -> Path:
    """Write ``n`` toy videos and their annotations; return the path of ``annotations.json``.

    Layout: ``out_dir/videos/<name>.mp4``; ``out_dir/annotations.json`` in the HC-STVG v1 format
    (keyed by video file name; ``bbox`` ``[x, y, w, h]`` ints on consecutive frames from the
    1-based ``st_frame``; ``st_time``/``ed_time`` the half-open tube span in seconds; ``img_num``,
    ``width``, ``height``, ``caption``; plus ``fps``, which real HC-STVG lacks);
    ``out_dir/toyworld.json``: the config, the seed and per video every object, the target and the
    caption parts (see :meth:`ToyVideo.sidecar`).
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    cfg = config or ToyWorldConfig()
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    annotations: dict[str, Any] = {}
    sidecar: dict[str, Any] = {
        "format": "toyworld-v1",
        "seed": cfg.seed,
        "config": cfg.to_json(),
        "videos": {},
    }
    for index in tqdm(range(n), desc="toy world", unit="video", disable=not progress):
        video = generate_one(index, cfg)
        write_video(out / "videos" / video.key, video.frames, video.fps)
        annotations[video.key] = video.annotation()
        sidecar["videos"][video.key] = video.sidecar()
    _dump(sidecar, out / "toyworld.json")
    _dump(annotations, out / "annotations.json")
    return out / "annotations.json"


__all__ = [
    "ACTIONS",
    "COLOURS",
    "MOTIONS",
    "SHAPES",
    "SIZES",
    "CaptionParts",
    "Segment",
    "ToyObject",
    "ToyVideo",
    "ToyWorldConfig",
    "generate",
    "generate_one",
    "load_sidecar",
    "make_dataset",
    "object_tracks",
    "sidecar_meta",
    "sidecar_tracks",
]
