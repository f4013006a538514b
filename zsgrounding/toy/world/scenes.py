"""Scene generation: video ``i`` of a toy world drawn from its own generator seeded by
``(seed, i)``: the caption, the target and its distractors, when each object is visible and how
it moves, where it starts so that no two objects ever touch; then the frames
(:mod:`.render`) and the ground truth (:func:`generate_one`, :func:`object_tracks`)."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from zsgrounding.toy.world.config import MOTIONS, SIZES, ToyWorldConfig
from zsgrounding.toy.world.render import draw_shape, render_background, render_frames
from zsgrounding.toy.world.videos import CaptionParts, Segment, ToyObject, ToyVideo
from zsgrounding.types import Track, Tube

_DIRECTIONS = {"move_left": (-1, 0), "move_right": (1, 0), "move_up": (0, -1), "move_down": (0, 1)}
_GAP_PX = 2  # minimum distance between two objects' boxes, so no shape ever hides another
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
    frames = render_frames(render_background(rng, cfg), objects, num_frames)
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
                draw_shape(ImageDraw.Draw(canvas), obj.shape, box, 255)
                mask[k] = np.asarray(canvas) > 0
        tracks.append(Track(obj.frame_ids, obj.boxes, obj.label, 1.0, obj.id, mask))
    return tracks


__all__ = [
    "generate",
    "generate_one",
    "object_tracks",
]
