"""Training data of the toy MLLM: a pre-rendered clip bank and the text of each stage.

- :class:`ClipBank`: toy-world clips rendered once, ``bank_frames`` uniformly sampled frames per
  clip resized to the tower's input (PIL bicubic, as the adapter does), kept as one uint8 tensor.
- :func:`seen_objects`: what a set of sampled frames shows of each object: its attributes, the
  actions those frames show it doing, and the actions it does that they may not show (never asked).
- Text per stage: descriptions of whole frames and of zoomed views around an object, with hard
  negatives (stage 1; for a tower over frame pairs, descriptions of the pair that say what each
  object does between its two frames, with motion-swapped negatives); clip captions (stage 2);
  yes/no questions with hard negatives and a curriculum (stage 3).
- :class:`Sampler`: seeded batches of token ids with labels on the answers only.

Supervision is text only: boxes and spans are read to decide what is true of the sampled frames
(and where a zoomed view may be cut), never given to the model.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm
from transformers import PreTrainedTokenizerFast

from zsgrounding.mllm.preprocess import resize_frames
from zsgrounding.toy.mllm.config import QUESTION_KINDS, CurriculumPhase, ToyMLLMConfig
from zsgrounding.toy.mllm.tokenizer import encode_conversation
from zsgrounding.toy.world import (
    ACTIONS,
    COLOURS,
    SHAPES,
    SIZES,
    ToyObject,
    ToyVideo,
    ToyWorldConfig,
    generate_one,
)
from zsgrounding.video import uniform_ids

BASE_VERBS: dict[str, str] = {
    "move_left": "move left",
    "move_right": "move right",
    "move_up": "move up",
    "move_down": "move down",
    "grow": "grow",
    "shrink": "shrink",
    "stay_still": "stay still",
    "appear": "appear",
    "leave": "leave",
}
"""Action id -> the verb after ``does the ...``."""
MIN_SEEN_MOTION = 0.6  # share of a motion's steps the sampled frames must span to call it shown
ATTRIBUTES = ("size", "colour", "shape")


# ---------------------------------------------------------------------------------------- facts


Place = tuple[int, int]
"""``(row, column)`` of the 3 x 3 grid over a view that holds an object's centre (0: top / left)."""
_ROW_WORDS = ("top", "", "bottom")
_COLUMN_WORDS = ("left", "", "right")


def place_of(cx: float, cy: float) -> Place:
    """The grid cell of a centre at ``cx, cy`` (fractions of the view; outside it: the nearest cell)."""
    return min(2, max(0, int(cy * 3))), min(2, max(0, int(cx * 3)))


def box_place(
    box: np.ndarray, frame_size: tuple[int, int], window: tuple[float, float] | None = None
) -> Place:
    """The :data:`Place` of a pixel ``x1, y1, x2, y2`` box's centre on a ``(width, height)`` frame,
    or in the half-size ``window`` at that corner (fractions of the frame)."""
    x0, y0, side = (0.0, 0.0, 1.0) if window is None else (*window, 0.5)
    cx = ((box[0] + box[2]) / 2 / frame_size[0] - x0) / side
    cy = ((box[1] + box[3]) / 2 / frame_size[1] - y0) / side
    return place_of(cx, cy)


def place_phrase(place: Place) -> str:
    """``"at the top left"``, ``"at the right"``, ``"at the bottom"``, ``"in the middle"``."""
    words = " ".join(w for w in (_ROW_WORDS[place[0]], _COLUMN_WORDS[place[1]]) if w)
    return f"at the {words}" if words else "in the middle"


def nearby_place(rng: np.random.Generator, place: Place) -> Place:
    """Another cell next to ``place`` (sharing a side or a corner): a stage-1 hard negative."""
    row, col = place
    cells = [
        (r, c)
        for r in range(max(0, row - 1), min(3, row + 2))
        for c in range(max(0, col - 1), min(3, col + 2))
        if (r, c) != place
    ]
    return cells[int(rng.integers(len(cells)))]


@dataclass(frozen=True)
class SeenObject:
    """One object as a set of sampled frames shows it.

    Attributes:
        colour, shape, size: its attributes.
        visible: drawn on at least one sampled frame.
        actions: actions the sampled frames show it doing.
        unsure: actions it does that the sampled frames may not show; questions about them are
            never asked.
        start: native frame of its first visible sampled frame (orders its actions in captions).
        order: ``(action, native start frame)`` of each shown action, for captions.
        places: its :data:`Place` on each sampled frame it is drawn on (empty when the frame size
            was not given).
    """

    colour: str
    shape: str
    size: str
    visible: bool
    actions: frozenset[str]
    unsure: frozenset[str]
    order: tuple[tuple[str, int], ...] = ()
    places: tuple[Place, ...] = ()

    def attribute(self, name: str) -> str:
        return {"colour": self.colour, "shape": self.shape, "size": self.size}[name]


def seen_objects(
    objects: Sequence[ToyObject],
    num_frames: int,
    frame_ids: np.ndarray,
    frame_size: tuple[int, int] | None = None,
) -> list[SeenObject]:
    """What the sampled native frames ``frame_ids`` (ascending) show of each object; given the native
    ``frame_size`` (width, height), where it is on each of them too."""
    ids = np.asarray(frame_ids)
    out = []
    for obj in objects:
        v0, v1 = obj.visible
        inside = ids[(ids >= v0) & (ids < v1)]
        shown: list[tuple[str, int]] = []
        unsure: set[str] = set()
        if inside.size == 0:
            out.append(SeenObject(obj.colour, obj.shape, obj.size, False, frozenset(), frozenset(ACTIONS)))
            continue
        first, last = int(inside[0]), int(inside[-1])
        if v0 > 0:
            (shown.append(("appear", v0)) if ids[0] < v0 else unsure.add("appear"))
        if v1 < num_frames:
            (shown.append(("leave", v1)) if ids[-1] >= v1 else unsure.add("leave"))
        for seg in obj.motions:
            # Position changes on frames s..e-1; the samples see the steps in (first, last].
            steps = max(0, min(seg.end - 1, last) - max(seg.start, first + 1) + 1)
            if steps >= MIN_SEEN_MOTION * (seg.end - seg.start):
                shown.append((seg.action, seg.start))
            else:
                unsure.add(seg.action)
        if not obj.motions and (v0, v1) == (0, num_frames):
            shown.append(("stay_still", 0))
        elif not shown:
            unsure.add("stay_still")  # it does something, but not where these frames look
        shown.sort(key=lambda item: item[1])
        actions = frozenset(a for a, _ in shown)
        places = (
            [] if frame_size is None else [box_place(obj.boxes[f - v0], frame_size) for f in inside.tolist()]
        )
        out.append(
            SeenObject(
                obj.colour,
                obj.shape,
                obj.size,
                True,
                actions,
                frozenset(unsure - actions),
                tuple(shown),
                tuple(places),
            )
        )
    return out


@dataclass(frozen=True)
class Description:
    """What a question asks about: ``None`` fields are not named."""

    colour: str | None = None
    shape: str | None = None
    size: str | None = None
    action: str | None = None

    def matches(self, obj: SeenObject) -> bool:
        return all(getattr(self, name) in (None, obj.attribute(name)) for name in ATTRIBUTES)

    @property
    def named(self) -> tuple[str, ...]:
        return tuple(name for name in ATTRIBUTES if getattr(self, name) is not None)

    def noun_phrase(self) -> str:
        """``"big red circle that moves left"`` (no article; ``thing`` when the shape is not named)."""
        words = [w for w in (self.size, self.colour) if w]
        words.append(self.shape or "thing")
        text = " ".join(words)
        return f"{text} that {ACTIONS[self.action]}" if self.action else text


def answer(objects: Sequence[SeenObject], desc: Description) -> bool | None:
    """Whether the sampled frames show an object fitting ``desc``; ``None``: they cannot tell."""
    matching = [obj for obj in objects if desc.matches(obj)]
    if desc.action is None:
        if any(obj.visible for obj in matching):
            return True
        return None if matching else False
    if any(obj.visible and desc.action in obj.actions for obj in matching):
        return True
    if any(not obj.visible or desc.action in obj.unsure for obj in matching):
        return None
    return False


# ---------------------------------------------------------------------------------------- text


def _article(words: str) -> str:
    return f"an {words}" if words[0] in "aeiou" else f"a {words}"


def question_text(desc: Description, style: int) -> str:
    """The question of ``desc`` in one of four phrasings (0 is the grounder's own)."""
    if style == 3 and desc.action is not None:
        base = Description(desc.colour, desc.shape, desc.size).noun_phrase()
        return f"does the {base} {BASE_VERBS[desc.action]}?"
    if style == 1:
        return f"is there {_article(desc.noun_phrase())} in this video?"
    if style == 2:
        return f"is there {_article(desc.noun_phrase())}?"
    return f"Is there the {desc.noun_phrase()} in this video?"


def _ranked(objects: Sequence[SeenObject]) -> list[SeenObject]:
    """Visible objects in the fixed description order: colour, shape, size (the tables' order)."""
    colour_rank = {c: i for i, c in enumerate(COLOURS)}
    shape_rank = {s: i for i, s in enumerate(SHAPES)}
    return sorted(
        (o for o in objects if o.visible),
        key=lambda o: (colour_rank[o.colour], shape_rank[o.shape], SIZES.index(o.size)),
    )


def caption(objects: Sequence[SeenObject], world: ToyWorldConfig | None = None) -> str:
    """Every visible object in a fixed order (colour, shape, size), each with its shown actions."""
    parts = []
    for obj in _ranked(objects):
        text = _article(f"{obj.size} {obj.colour} {obj.shape}")
        if obj.order:
            text += " that " + " and ".join(ACTIONS[a] for a, _ in obj.order)
        parts.append(text)
    return " , ".join(parts) + " ."


def colour_checklist(objects: Sequence[SeenObject], world: ToyWorldConfig) -> str:
    """Every colour of the world in turn with what has it: ``"red big circle , green none , ..."``.

    A checklist puts the looked-up word right before what the model must find for it, which is
    what teaches the language model to look for a word among the visual tokens.
    """
    ranked = _ranked(objects)
    entries = []
    for colour in world.colours:
        found = dict.fromkeys(f"{o.size} {o.shape}" for o in ranked if o.colour == colour)
        entries.append(f"{colour} {' '.join(found) or 'none'}")
    return " , ".join(entries) + " ."


def shape_checklist(objects: Sequence[SeenObject], world: ToyWorldConfig) -> str:
    """Every shape of the world in turn with what has it: ``"circle big red , square none , ..."``."""
    ranked = _ranked(objects)
    entries = []
    for shape in world.shapes:
        found = dict.fromkeys(f"{o.size} {o.colour}" for o in ranked if o.shape == shape)
        entries.append(f"{shape} {' '.join(found) or 'none'}")
    return " , ".join(entries) + " ."


def action_checklist(objects: Sequence[SeenObject], world: ToyWorldConfig) -> str:
    """Every action of the world in turn with who does it: ``"moves left big red circle , grows none ,
    ..."``; actions the sampled frames cannot settle for some object are left out."""
    ranked = _ranked(objects)
    entries = []
    for action in world.actions:
        if any(action in o.unsure for o in ranked):
            continue
        found = dict.fromkeys(f"{o.size} {o.colour} {o.shape}" for o in ranked if action in o.actions)
        entries.append(f"{ACTIONS[action]} {' '.join(found) or 'none'}")
    return " , ".join(entries) + " ."


def place_list(objects: Sequence[SeenObject], world: ToyWorldConfig | None = None) -> str:
    """Every visible object with where it is on its first sampled frame and, if that differs, on its
    last: ``"big red circle at the left then in the middle , small blue square at the top ."``."""
    parts = []
    for obj in _ranked(objects):
        if not obj.places:
            continue
        first, last = obj.places[0], obj.places[-1]
        text = f"{obj.size} {obj.colour} {obj.shape} {place_phrase(first)}"
        parts.append(text if last == first else f"{text} then {place_phrase(last)}")
    return " , ".join(parts) + " ."


CAPTION_TASKS: dict[str, tuple[tuple[str, ...], Callable[..., str]]] = {
    "objects": (("describe this video.", "what is in this video?", "describe the video."), caption),
    "colours": (("list the colours.", "describe the colours in this video."), colour_checklist),
    "shapes": (("list the shapes.", "describe the shapes in this video."), shape_checklist),
    "actions": (("list the actions.", "what does each thing do?"), action_checklist),
    "places": (("where is each thing?", "list the places."), place_list),
}
"""Stage-2 caption tasks: prompts and the description of the sampled frames they ask for."""


def frame_description(
    rng: np.random.Generator,
    objects: Sequence[tuple[str, str, str]],
    sizes: bool = True,
    places: Sequence[Place] | None = None,
) -> str:
    """``"a small red circle and a blue square"``: the objects of one frame in random order, each with
    its size half of the time (never with ``sizes=False``) and, given ``places`` (one per object),
    where it is (``"a red circle at the top left"``)."""
    order = rng.permutation(len(objects))
    phrases = []
    for i in order:
        size, colour, shape = objects[i]
        words = f"{size} {colour} {shape}" if sizes and rng.random() < 0.5 else f"{colour} {shape}"
        phrase = _article(words)
        phrases.append(phrase if places is None else f"{phrase} {place_phrase(places[i])}")
    return " and ".join(phrases) if phrases else "nothing"


def perturbed(
    rng: np.random.Generator,
    objects: Sequence[tuple[str, str, str]],
    world: ToyWorldConfig,
    attribute: str | None = None,
    sizes: bool = True,
) -> list[tuple[str, str, str]]:
    """The objects of a frame with ``attribute`` (default: a random one, never the size with
    ``sizes=False``, for descriptions that do not say it) of one object changed: a stage-1 hard
    negative."""
    out = list(objects)
    if not out:
        return [(str(rng.choice(SIZES)), str(rng.choice(world.colours)), str(rng.choice(world.shapes)))]
    i = int(rng.integers(len(out)))
    size, colour, shape = out[i]
    names = ATTRIBUTES if sizes else tuple(a for a in ATTRIBUTES if a != "size")
    which = attribute or names[int(rng.integers(len(names)))]
    if which == "colour":
        colour = str(rng.choice([c for c in world.colours if c != colour]))
    elif which == "shape":
        shape = str(rng.choice([s for s in world.shapes if s != shape]))
    else:
        size = next(s for s in SIZES if s != size)
    out[i] = (size, colour, shape)
    return out


PAIR_MOTIONS = ("moving left", "moving right", "moving up", "moving down", "growing", "shrinking")
"""What a stage-1 frame-pair description may say an object does between the two frames."""
_PAIR_MOVE_PX = 2.0  # centre shift (native pixels) that counts as moving; one step is 2.4 px
_PAIR_SCALE_PX = 1.0  # box side change that counts as growing / shrinking (sides are whole pixels)

PairObject = tuple[str, str, str, str]
"""``(size, colour, shape, motion)`` of an object in a frame pair; ``motion`` is ``""`` (still), one
of :data:`PAIR_MOTIONS`, ``"appearing"`` or ``"leaving"``."""


def pair_motion(obj: ToyObject, first: int, second: int) -> str | None:
    """What ``obj`` does between native frames ``first < second``; ``None`` if drawn on neither."""
    v0, v1 = obj.visible
    on_first, on_second = v0 <= first < v1, v0 <= second < v1
    if not (on_first or on_second):
        return None
    if not on_first:
        return "appearing"
    if not on_second:
        return "leaving"
    a, b = obj.boxes[first - v0], obj.boxes[second - v0]
    dx = (b[0] + b[2] - a[0] - a[2]) / 2
    dy = (b[1] + b[3] - a[1] - a[3]) / 2
    if max(abs(dx), abs(dy)) >= _PAIR_MOVE_PX:
        if abs(dx) >= abs(dy):
            return "moving right" if dx > 0 else "moving left"
        return "moving down" if dy > 0 else "moving up"
    grown = (b[2] - b[0]) - (a[2] - a[0])
    if abs(grown) >= _PAIR_SCALE_PX:
        return "growing" if grown > 0 else "shrinking"
    return ""


def pair_description(rng: np.random.Generator, objects: Sequence[PairObject], sizes: bool = True) -> str:
    """``"a small red circle moving left and a blue square"``: the objects of a frame pair in random
    order, each with what it does between the two frames and its size half of the time."""
    order = rng.permutation(len(objects))
    phrases = []
    for i in order:
        size, colour, shape, motion = objects[i]
        words = f"{size} {colour} {shape}" if sizes and rng.random() < 0.5 else f"{colour} {shape}"
        phrases.append(_article(words) + (f" {motion}" if motion else ""))
    return " and ".join(phrases) if phrases else "nothing"


def motion_perturbed(rng: np.random.Generator, objects: Sequence[PairObject]) -> list[PairObject]:
    """A stage-1 binding negative: two objects' motions swapped (when two differ, half of the time),
    else one object's motion replaced by another (or by none)."""
    out = list(objects)
    if not out:
        return [(str(rng.choice(SIZES)), "red", "circle", str(rng.choice(PAIR_MOTIONS)))]
    pairs = [(i, j) for i in range(len(out)) for j in range(i + 1, len(out)) if out[i][3] != out[j][3]]
    if pairs and rng.random() < 0.5:
        i, j = pairs[int(rng.integers(len(pairs)))]
        out[i], out[j] = (*out[i][:3], out[j][3]), (*out[j][:3], out[i][3])
        return out
    i = int(rng.integers(len(out)))
    other = [m for m in ("", *PAIR_MOTIONS) if m != out[i][3]]
    out[i] = (*out[i][:3], str(rng.choice(other)))
    return out


# ---------------------------------------------------------------------------------------- questions


@dataclass(frozen=True)
class Question:
    """One yes/no question: its text, answer, kind (:data:`QUESTION_KINDS`) and whether it is a
    hard negative (a "no" sharing an attribute or the action with an object of the clip)."""

    text: str
    answer: bool
    kind: str
    hard: bool
    desc: Description


def _kind_attributes(rng: np.random.Generator, kind: str) -> tuple[str, ...]:
    if kind in ("colour", "shape", "size"):
        return (kind,)
    if kind == "attr2":
        return ("colour", "shape")
    if kind == "attr3":
        return ATTRIBUTES
    if kind == "action":  # the grounder's action sub-query: mostly "the circle that moves left"
        return (("shape",), ("colour",), ("size",), (), ("shape",))[int(rng.integers(5))]
    if kind == "full":
        return ATTRIBUTES if rng.random() < 0.5 else ("colour", "shape")
    raise ValueError(f"unknown question kind {kind!r}")


def _values(world: ToyWorldConfig, name: str) -> tuple[str, ...]:
    return {"colour": world.colours, "shape": world.shapes, "size": SIZES}[name]


def _describe(obj: SeenObject, names: Sequence[str], action: str | None) -> Description:
    values = {name: obj.attribute(name) for name in names}
    return Description(values.get("colour"), values.get("shape"), values.get("size"), action)


def _replace(desc: Description, **changes: str | None) -> Description:
    fields = {"colour": desc.colour, "shape": desc.shape, "size": desc.size, "action": desc.action}
    fields.update(changes)
    return Description(**fields)


def _positive(rng: np.random.Generator, objects: Sequence[SeenObject], kind: str) -> Description | None:
    visible = [o for o in objects if o.visible]
    obj = visible[int(rng.integers(len(visible)))]
    action = None
    if kind in ("action", "full"):
        if not obj.actions:
            return None
        action = sorted(obj.actions)[int(rng.integers(len(obj.actions)))]
    return _describe(obj, _kind_attributes(rng, kind), action)


REVERSE_ACTIONS: dict[str, str] = {
    "move_left": "move_right",
    "move_right": "move_left",
    "move_up": "move_down",
    "move_down": "move_up",
    "grow": "shrink",
    "shrink": "grow",
    "appear": "leave",
    "leave": "appear",
}
"""Each action whose frames, played backwards, show another one."""


def _hard_negative(
    rng: np.random.Generator,
    objects: Sequence[SeenObject],
    kind: str,
    world: ToyWorldConfig,
    reverse_actions: float = 0.0,
) -> Description | None:
    """A "no" that shares all but one attribute, or the action, with an object of the clip.

    With probability ``reverse_actions`` an action question asks for the reverse of what the
    object does (it grows: "does it shrink?"), which only the order of the frames tells apart.
    """
    visible = [o for o in objects if o.visible]
    obj = visible[int(rng.integers(len(visible)))]
    names = _kind_attributes(rng, kind)
    if kind not in ("action", "full"):
        desc = _describe(obj, names, None)
        name = names[int(rng.integers(len(names)))]
        other = [v for v in _values(world, name) if v != obj.attribute(name)]
        return _replace(desc, **{name: str(rng.choice(other))})
    if reverse_actions and rng.random() < reverse_actions:
        reverse = sorted({REVERSE_ACTIONS[a] for a in obj.actions if a in REVERSE_ACTIONS} - obj.actions)
        if reverse:
            return _describe(obj, names, str(rng.choice(reverse)))
    done = sorted({a for o in visible for a in o.actions})
    if rng.random() < 0.5 or not done:
        # The object is there, the action is not its own (ideally another object's).
        pool = [a for a in done if a not in obj.actions] or [a for a in world.actions if a not in obj.actions]
        return _describe(obj, names, str(rng.choice(pool))) if pool else None
    # The action is done, by something the attributes do not fit.
    action = str(rng.choice(done))
    if not names:
        return None
    desc = _describe(obj, names, action)
    name = names[int(rng.integers(len(names)))]
    other = [v for v in _values(world, name) if v != obj.attribute(name)]
    return _replace(desc, **{name: str(rng.choice(other))})


def shares_with_clip(objects: Sequence[SeenObject], desc: Description) -> bool:
    """Whether a "no" about ``desc`` is a hard negative for these objects.

    It is when a visible object does its action, or fits its attributes (but not the action), or
    has all but one of two or more named attributes. A one-attribute question without an action
    has no hard negative.
    """
    visible = [o for o in objects if o.visible]
    if desc.action is not None and any(desc.action in o.actions or desc.matches(o) for o in visible):
        return True
    names = desc.named
    return len(names) >= 2 and any(
        sum(getattr(desc, n) == o.attribute(n) for n in names) >= len(names) - 1 for o in visible
    )


def _easy_negative(rng: np.random.Generator, kind: str, world: ToyWorldConfig) -> Description:
    names = _kind_attributes(rng, kind)
    values = {name: str(rng.choice(_values(world, name))) for name in names}
    action = str(rng.choice(world.actions)) if kind in ("action", "full") else None
    return Description(values.get("colour"), values.get("shape"), values.get("size"), action)


def make_question(
    rng: np.random.Generator,
    objects: Sequence[SeenObject],
    kind: str,
    want: bool,
    world: ToyWorldConfig,
    hard_negatives: float = 0.8,
    style: int | None = None,
    tries: int = 12,
    reverse_actions: float = 0.0,
) -> Question | None:
    """A question of ``kind`` whose answer on these objects is ``want``; ``None`` if none is found.

    ``reverse_actions``: the share of hard action negatives that ask for the reverse of the
    object's own action (see :func:`_hard_negative`).
    """
    if kind not in QUESTION_KINDS:
        raise ValueError(f"unknown question kind {kind!r}")
    if not any(o.visible for o in objects):
        return None
    for _ in range(tries):
        hard = not want and rng.random() < hard_negatives
        if want:
            desc = _positive(rng, objects, kind)
        elif hard:
            desc = _hard_negative(rng, objects, kind, world, reverse_actions)
        else:
            desc = _easy_negative(rng, kind, world)
        if desc is None or answer(objects, desc) is not want:
            continue
        hard = not want and shares_with_clip(objects, desc)
        chosen = style if style is not None else int(rng.choice(4, p=(0.5, 0.2, 0.15, 0.15)))
        if chosen == 3 and desc.action is None:
            chosen = 0
        return Question(question_text(desc, chosen), want, kind, hard, desc)
    return None


# ---------------------------------------------------------------------------------------- bank


def chroma_subsample(frame: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 with its chroma halved in both directions, as yuv420p video stores it."""
    y, cb, cr = Image.fromarray(frame).convert("YCbCr").split()
    half = (max(1, frame.shape[1] // 2), max(1, frame.shape[0] // 2))
    cb, cr = (
        c.resize(half, Image.Resampling.BOX).resize(y.size, Image.Resampling.BILINEAR) for c in (cb, cr)
    )
    return np.asarray(Image.merge("YCbCr", (y, cb, cr)).convert("RGB"))


@dataclass
class ClipBank:
    """Clips rendered once.

    Attributes:
        frames: ``(N, K, H, W, 3)`` uint8: ``K`` frames per clip at native ids ``frame_ids``,
            resized to the model's input (``S x S`` for LLaVA-OneVision).
        frame_ids: ``(N, K)`` int64 native ids (``uniform_ids(T, K)``).
        num_frames: ``(N,)`` native length ``T`` of each clip.
        objects: each clip's objects (boxes, visibility, motions).
        indices: world index of each clip.
        native_size: the world's ``(width, height)``, which the objects' boxes are in.
    """

    frames: torch.Tensor
    frame_ids: np.ndarray
    num_frames: np.ndarray
    objects: list[list[ToyObject]]
    indices: list[int]
    native_size: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.objects)

    def seen(self, clip: int, picks: np.ndarray) -> list[SeenObject]:
        """What bank frames ``picks`` (ascending) of clip ``clip`` show."""
        return seen_objects(
            self.objects[clip], int(self.num_frames[clip]), self.frame_ids[clip, picks], self.native_size
        )

    def frame_objects(self, clip: int, pick: int) -> list[tuple[str, str, str]]:
        """``(size, colour, shape)`` of the objects drawn on bank frame ``pick`` of clip ``clip``."""
        fid = int(self.frame_ids[clip, pick])
        return [(o.size, o.colour, o.shape) for o in self.objects[clip] if o.visible[0] <= fid < o.visible[1]]

    def frame_places(
        self,
        clip: int,
        pick: int,
        among: Sequence[ToyObject] | None = None,
        window: tuple[float, float] | None = None,
    ) -> list[Place]:
        """The :data:`Place` of each object drawn on bank frame ``pick`` (those of ``among`` when
        given, in its order; else :meth:`frame_objects`' order), in the half-size ``window`` at that
        corner (fractions of the frame) when given, else in the whole frame."""
        if self.native_size is None:
            raise ValueError("this clip bank was built without the world's frame size")
        fid = int(self.frame_ids[clip, pick])
        return [
            box_place(o.boxes[fid - o.visible[0]], self.native_size, window)
            for o in (self.objects[clip] if among is None else among)
            if o.visible[0] <= fid < o.visible[1]
        ]

    def pair_objects(
        self, clip: int, first: int, second: int, among: Sequence[ToyObject] | None = None
    ) -> list[PairObject]:
        """``(size, colour, shape, motion)`` of the objects drawn on bank frames ``first < second``
        (only those of ``among``, e.g. inside a zoomed window, when given)."""
        ids = self.frame_ids[clip]
        out = []
        for o in self.objects[clip] if among is None else among:
            motion = pair_motion(o, int(ids[first]), int(ids[second]))
            if motion is not None:
                out.append((o.size, o.colour, o.shape, motion))
        return out


def build_bank(
    world: ToyWorldConfig,
    start: int,
    count: int,
    bank_frames: int,
    size: int | tuple[int, int],
    chroma_augment: float = 0.0,
    seed: int = 0,
    progress: bool = True,
    desc: str = "clip bank",
) -> ClipBank:
    """Render world videos ``[start, start + count)`` into a :class:`ClipBank` of frames resized to
    ``size`` (a side, or ``(H, W)``)."""
    rng = np.random.default_rng([seed, start, count])
    height, width = (size, size) if isinstance(size, int) else size
    frames = torch.empty((count, bank_frames, height, width, 3), dtype=torch.uint8)
    frame_ids = np.empty((count, bank_frames), dtype=np.int64)
    lengths = np.empty(count, dtype=np.int64)
    objects = []
    for row, index in enumerate(
        tqdm(range(start, start + count), desc=desc, unit="clip", disable=not progress)
    ):
        video: ToyVideo = generate_one(index, world)
        ids = uniform_ids(video.num_frames, bank_frames)
        picked = video.frames[ids]
        if rng.random() < chroma_augment:
            picked = np.stack([chroma_subsample(f) for f in picked])
        frames[row] = torch.from_numpy(resize_frames(picked, height, width, int(Image.Resampling.BICUBIC)))
        frame_ids[row], lengths[row] = ids, video.num_frames
        objects.append(video.objects)
    return ClipBank(
        frames, frame_ids, lengths, objects, list(range(start, start + count)), (world.width, world.height)
    )


def pick_frames(rng: np.random.Generator, bank_frames: int, count: int) -> np.ndarray:
    """``count`` ascending bank frames spread over the clip: one per equal stratum, jittered."""
    edges = np.linspace(0, bank_frames, count + 1)
    picks = np.floor(edges[:-1] + rng.random(count) * (edges[1:] - edges[:-1])).astype(np.int64)
    return np.clip(picks, 0, bank_frames - 1)


PAIR_GAPS = (1, 2)
"""Bank-frame gaps inside a training frame pair (the tower cache holds these pairs)."""


def pick_pairs(rng: np.random.Generator, bank_frames: int, count: int) -> np.ndarray:
    """``count`` (even) ascending bank frames as ``count / 2`` pairs ``(a, a + g)``, ``g`` in
    :data:`PAIR_GAPS`, one pair per equal stratum of the clip (frames for a temporal-patch-2 tower)."""
    if count % 2:
        raise ValueError(f"frame pairs need an even frame count, got {count}")
    edges = np.linspace(0, bank_frames, count // 2 + 1)
    picks = []
    for lo, hi in itertools.pairwise(edges):
        first, last = int(np.ceil(lo)), int(np.ceil(hi)) - 1  # bank frames inside the stratum
        gaps = [g for g in PAIR_GAPS if last - first >= g] or [1]
        gap = int(gaps[int(rng.integers(len(gaps)))])
        a = int(rng.integers(first, max(first, last - gap) + 1))
        picks.extend((a, min(a + gap, bank_frames - 1)))
    return np.asarray(picks, dtype=np.int64)


def even_frames(bank_frames: int, count: int) -> np.ndarray:
    """``count`` bank frames at the strata centres (deterministic, for evaluation)."""
    return uniform_ids(bank_frames, count)


# ---------------------------------------------------------------------------------------- batches


@dataclass
class TextBatch:
    """A padded batch of conversations about clips of a bank.

    Attributes:
        clips: ``(B,)`` bank rows.
        picks: ``(B, F)`` bank frames of each clip, ascending.
        input_ids: ``(B, N)`` long, right-padded with the pad id; visual slots hold ``<video>``.
        attention_mask: ``(B, N)`` long.
        labels: ``(B, N)`` long next-token targets, ``-100`` where there is no loss.
        answer_positions: per example, the positions predicting each turn's first answer token.
        questions: per example, the :class:`Question` of each turn (empty for captions).
    """

    clips: torch.Tensor
    picks: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    answer_positions: list[list[int]]
    questions: list[list[Question]]


def collate(
    tokenizer: PreTrainedTokenizerFast,
    clips: Sequence[int],
    picks: Sequence[np.ndarray],
    conversations: Sequence[Sequence[tuple[str, str]]],
    num_visual: int,
    questions: Sequence[Sequence[Question]] | None = None,
) -> TextBatch:
    """Encode and right-pad conversations (one per clip) into a :class:`TextBatch`."""
    encoded = [encode_conversation(tokenizer, turns, num_visual) for turns in conversations]
    length = max(len(e.input_ids) for e in encoded)
    pad = int(tokenizer.pad_token_id)
    ids = torch.full((len(encoded), length), pad, dtype=torch.long)
    mask = torch.zeros((len(encoded), length), dtype=torch.long)
    labels = torch.full((len(encoded), length), -100, dtype=torch.long)
    for row, enc in enumerate(encoded):
        n = len(enc.input_ids)
        ids[row, :n] = torch.tensor(enc.input_ids)
        mask[row, :n] = 1
        labels[row, :n] = torch.tensor(enc.labels)
    return TextBatch(
        clips=torch.tensor(list(clips), dtype=torch.long),
        picks=torch.from_numpy(np.stack(picks)).long(),
        input_ids=ids,
        attention_mask=mask,
        labels=labels,
        answer_positions=[e.answer_positions for e in encoded],
        questions=[list(q) for q in questions] if questions is not None else [[] for _ in encoded],
    )


def _zoomed(frames: torch.Tensor, corners: torch.Tensor) -> torch.Tensor:
    """``frames (B, K, H, W, 3)`` uint8 with the half-size window at ``corners (B, 2)`` (fractions of
    the frame, ``x0, y0``; negative: the whole frame) bilinearly scaled up to ``(H, W)`` on every frame."""
    height, width = frames.shape[2:4]
    out = frames.clone()
    for i in torch.nonzero(corners[:, 0] >= 0).flatten().tolist():
        x0, y0 = round(float(corners[i, 0]) * width), round(float(corners[i, 1]) * height)
        crop = frames[i, :, y0 : y0 + height // 2, x0 : x0 + width // 2].movedim(-1, 1).float()
        big = torch.nn.functional.interpolate(
            crop, size=(height, width), mode="bilinear", align_corners=False
        )
        out[i] = big.movedim(1, -1).round().clamp(0, 255).to(torch.uint8)
    return out


class Sampler:
    """Seeded batches of every stage from one clip bank.

    Args:
        bank: the clips.
        tokenizer: the toy tokenizer.
        world: the toy world (its colours, shapes and actions are what questions may name).
        model_config: the model sizes (how many tokens a video expands to).
        seed: seeds the numpy generator of every draw.
    """

    def __init__(
        self,
        bank: ClipBank,
        tokenizer: PreTrainedTokenizerFast,
        world: ToyWorldConfig,
        model_config: ToyMLLMConfig,
        seed: int | Sequence[int],
    ) -> None:
        self.bank = bank
        self.tokenizer = tokenizer
        self.world = world
        self.model_config = model_config
        self.rng = np.random.default_rng(seed)
        self._counts = np.array([len(objs) for objs in bank.objects])

    def _clip(self, max_objects: int = 99) -> int:
        allowed = np.flatnonzero(self._counts <= max_objects)
        pool = allowed if allowed.size else np.arange(len(self.bank))
        return int(pool[self.rng.integers(pool.size)])

    def _zoom_view(
        self, clip: int, picks: Sequence[int]
    ) -> tuple[tuple[float, float], list[ToyObject]] | None:
        """A half-size window around a random object of bank frame ``picks[0]`` that cuts no object on
        any of the frames ``picks``: its top-left corner (fractions of the frame) and the objects
        inside it (on every frame they are drawn on); ``None`` if five draws find none."""
        fids = [int(self.bank.frame_ids[clip, p]) for p in picks]
        scale = np.array([self.world.width, self.world.height] * 2, dtype=np.float64)
        objects = self.bank.objects[clip]
        # Per object, its normalised box on each frame it is drawn on.
        boxes = [
            [o.boxes[f - o.visible[0]] / scale for f in fids if o.visible[0] <= f < o.visible[1]]
            for o in objects
        ]
        anchors = [o for o in objects if o.visible[0] <= fids[0] < o.visible[1]]
        if not anchors:
            return None
        height, width = self.bank.frames.shape[2:4]
        for _ in range(5):
            anchor = anchors[int(self.rng.integers(len(anchors)))]
            x1, y1, x2, y2 = anchor.boxes[fids[0] - anchor.visible[0]] / scale
            lo_x, hi_x = max(0.0, x2 - 0.5), min(x1, 0.5)
            lo_y, hi_y = max(0.0, y2 - 0.5), min(y1, 0.5)
            if lo_x > hi_x or lo_y > hi_y:
                continue
            # Whole pixels of the bank frame, so the crop is a plain slice.
            wx = round(self.rng.uniform(lo_x, hi_x) * width) / width
            wy = round(self.rng.uniform(lo_y, hi_y) * height) / height
            inside, fits = [], True
            for obj, seen in zip(objects, boxes, strict=True):
                if not seen:
                    continue
                ins = {
                    bool(b[0] >= wx and b[2] <= wx + 0.5 and b[1] >= wy and b[3] <= wy + 0.5) for b in seen
                }
                out = {bool(b[2] <= wx or b[0] >= wx + 0.5 or b[3] <= wy or b[1] >= wy + 0.5) for b in seen}
                if ins == {True}:
                    inside.append(obj)
                elif out != {True}:
                    fits = False  # cut by the window, or inside on one frame and outside on another
                    break
            if fits and inside:
                return (wx, wy), inside
        return None

    def frame_batch(
        self, batch: int, negatives: int = 1, p_zoom: float = 0.0, p_places: float = 0.0
    ) -> tuple[torch.Tensor, list[str], list[str]]:
        """Stage 1: ``(rows, texts, hard)``.

        ``rows (B, 4)`` float ``(clip, bank frame, x0, y0)``: ``x0, y0 >= 0`` (fractions of the
        frame) mark a zoomed view, the half-size window at that corner scaled up to the whole
        input (with probability ``p_zoom``, around an object and cutting none; its description says
        no sizes, which zooming makes meaningless); ``-1`` the whole frame. ``texts``: the views'
        descriptions. ``hard``: ``negatives * B`` descriptions with one attribute of one object
        changed (round ``r`` holds ``hard[r * B : (r + 1) * B]``; round 0 changes a shape, the
        subtlest cue, later rounds a random attribute).

        With probability ``p_places`` a view's description says where in the view each object is
        (:func:`place_phrase`), so the tower's patches must keep their place; the last of two or
        more rounds then moves one object to a nearby place instead."""
        rows, texts, hard = [], [], [[] for _ in range(negatives)]
        for _ in range(batch):
            clip = self._clip()
            pick = int(self.rng.integers(self.bank.frames.shape[1]))
            view = self._zoom_view(clip, [pick]) if p_zoom > 0 and self.rng.random() < p_zoom else None
            named = p_places > 0 and self.rng.random() < p_places
            if view is None:
                objs, sizes = self.bank.frame_objects(clip, pick), True
                places = self.bank.frame_places(clip, pick) if named else None
                rows.append((clip, pick, -1.0, -1.0))
            else:
                (wx, wy), inside = view
                objs, sizes = [(o.size, o.colour, o.shape) for o in inside], False
                places = self.bank.frame_places(clip, pick, inside, (wx, wy)) if named else None
                rows.append((clip, pick, wx, wy))
            texts.append(frame_description(self.rng, objs, sizes, places))
            for r in range(negatives):
                if places and r == negatives - 1 and r > 0:
                    moved = list(places)
                    i = int(self.rng.integers(len(moved)))
                    moved[i] = nearby_place(self.rng, moved[i])
                    hard[r].append(frame_description(self.rng, objs, sizes, moved))
                    continue
                changed = perturbed(self.rng, objs, self.world, "shape" if r == 0 else None, sizes)
                same = places if places is not None and len(changed) == len(places) else None  # "nothing"
                hard[r].append(frame_description(self.rng, changed, sizes, same))
        return torch.tensor(rows, dtype=torch.float64), texts, [t for round_ in hard for t in round_]

    def pair_batch(
        self, batch: int, negatives: int = 1, p_zoom: float = 0.0
    ) -> tuple[torch.Tensor, list[str], list[str]]:
        """Stage 1 of a temporal-patch-2 tower: ``(rows, texts, hard)`` over frame pairs.

        ``rows (B, 5)`` float ``(clip, first, second, x0, y0)``: bank frames, ``second - first`` in
        :data:`PAIR_GAPS` (the pairs training clips are cut into), and a zoomed window as in
        :meth:`frame_batch` (the same on both frames, cutting no object on either; probability
        ``p_zoom``) or ``-1``. ``texts``: what each pair shows, motions between its two frames
        included (:func:`pair_description`; no sizes in a zoomed view). ``hard``:
        ``negatives * B`` descriptions, round 0 with a motion swapped or changed
        (:func:`motion_perturbed`: the tower must bind each motion to its object), round 1 with a
        shape changed, later rounds a random attribute."""
        rows, texts, hard = [], [], [[] for _ in range(negatives)]
        bank_frames = self.bank.frames.shape[1]
        for _ in range(batch):
            clip = self._clip()
            gap = int(PAIR_GAPS[int(self.rng.integers(len(PAIR_GAPS)))])
            first = int(self.rng.integers(bank_frames - gap))
            view = None
            if p_zoom > 0 and self.rng.random() < p_zoom:
                view = self._zoom_view(clip, [first, first + gap])
            if view is None:
                objs = self.bank.pair_objects(clip, first, first + gap)
                rows.append((clip, first, first + gap, -1.0, -1.0))
                sizes = True
            else:
                (wx, wy), inside = view
                objs = self.bank.pair_objects(clip, first, first + gap, inside)
                rows.append((clip, first, first + gap, wx, wy))
                sizes = False
            texts.append(pair_description(self.rng, objs, sizes))
            for r in range(negatives):
                if r == 0:
                    changed = motion_perturbed(self.rng, objs)
                else:
                    which = "shape" if r == 1 else None  # the subtlest attribute, as for frames
                    attributes = perturbed(self.rng, [o[:3] for o in objs], self.world, which, sizes)
                    motions = [o[3] for o in objs] or [""]
                    changed = [(*a, m) for a, m in zip(attributes, motions, strict=True)]
                hard[r].append(pair_description(self.rng, changed, sizes))
        return torch.tensor(rows, dtype=torch.float64), texts, [t for round_ in hard for t in round_]

    def pair_pixels(self, rows: torch.Tensor) -> torch.Tensor:
        """``(B, 2, H, W, 3)`` uint8 frame pairs of :meth:`pair_batch` rows (zoomed ones scaled up)."""
        frames = self.bank.frames[rows[:, :1].long(), rows[:, 1:3].long()]
        return _zoomed(frames, rows[:, 3:5])

    def frame_pixels(self, rows: torch.Tensor) -> torch.Tensor:
        """``(B, S, S, 3)`` uint8 views of :meth:`frame_batch` rows (zoomed ones bilinearly scaled up)."""
        frames = self.bank.frames[rows[:, 0].long(), rows[:, 1].long()]
        return _zoomed(frames[:, None], rows[:, 2:4])[:, 0]

    def _captions(
        self, seen: list[SeenObject], weights: dict[str, float], turns: int
    ) -> list[tuple[str, str]]:
        """Up to ``turns`` different caption tasks drawn by ``weights``: ``(prompt, caption)``."""
        tasks = sorted(weights)
        p = np.array([weights[t] for t in tasks], dtype=np.float64)
        chosen = self.rng.choice(tasks, size=min(turns, len(tasks)), replace=False, p=p / p.sum())
        out = []
        for task in chosen:
            prompts, describe = CAPTION_TASKS[str(task)]
            out.append((prompts[int(self.rng.integers(len(prompts)))], describe(seen, self.world)))
        return out

    def caption_batch(self, batch: int, frames: int, weights: dict[str, float], turns: int = 1) -> TextBatch:
        """Stage 2: conversations of ``turns`` caption tasks (:data:`CAPTION_TASKS`) about a clip."""
        clips, picks, convs = [], [], []
        for _ in range(batch):
            clip = self._clip()
            pick = self._picks(frames)
            clips.append(clip)
            picks.append(pick)
            convs.append(self._captions(self.bank.seen(clip, pick), weights, turns))
        return collate(self.tokenizer, clips, picks, convs, self._num_visual(frames))

    def qa_batch(
        self,
        batch: int,
        frames: int,
        phase: CurriculumPhase,
        turns: int,
        captions: float,
        caption_weights: dict[str, float],
    ) -> TextBatch:
        """Stage 3: conversations of up to ``turns`` balanced yes/no questions; a share ``captions``
        of them are caption conversations instead (stage 2 kept alive)."""
        kinds = sorted(phase.weights)
        weights = np.array([phase.weights[k] for k in kinds], dtype=np.float64)
        weights /= weights.sum()
        clips, picks, convs, questions = [], [], [], []
        while len(clips) < batch:
            clip = self._clip(phase.max_objects)
            pick = self._picks(frames)
            seen = self.bank.seen(clip, pick)
            if self.rng.random() < captions:
                clips.append(clip)
                picks.append(pick)
                convs.append(self._captions(seen, caption_weights, 2))
                questions.append([])
                continue
            asked: list[Question] = []
            for _ in range(turns * 3):
                if len(asked) == turns:
                    break
                kind = str(self.rng.choice(kinds, p=weights))
                want = bool(self.rng.random() < 0.5)
                q = make_question(self.rng, seen, kind, want, self.world, phase.hard_negatives,
                                  reverse_actions=phase.reverse_actions)  # fmt: skip
                if q is not None and all(q.text != a.text for a in asked):
                    asked.append(q)
            if asked:
                clips.append(clip)
                picks.append(pick)
                convs.append([(q.text, "yes" if q.answer else "no") for q in asked])
                questions.append(asked)
        return collate(self.tokenizer, clips, picks, convs, self._num_visual(frames), questions)

    def _picks(self, frames: int) -> np.ndarray:
        """Bank frames of a training clip: frame pairs for a temporal-patch-2 tower."""
        if self.model_config.temporal_patch == 2:
            return pick_pairs(self.rng, self.bank.frames.shape[1], frames)
        return pick_frames(self.rng, self.bank.frames.shape[1], frames)

    def _num_visual(self, frames: int) -> int:
        return self.model_config.num_visual(frames)


def held_out_questions(
    bank: ClipBank,
    world: ToyWorldConfig,
    frames: int,
    per_kind: int,
    seed: int,
    kinds: Sequence[str] = QUESTION_KINDS,
    style: int | None = 0,
) -> list[tuple[int, np.ndarray, Question]]:
    """Fixed held-out ``(clip, picks, question)``: ``per_kind`` balanced questions of each kind,
    negatives hard whenever a hard one exists, in the grounder's phrasing by default."""
    rng = np.random.default_rng([seed, 7])
    picks = even_frames(bank.frames.shape[1], frames)
    out: list[tuple[int, np.ndarray, Question]] = []
    for kind in kinds:
        made, attempts = 0, 0
        while made < per_kind and attempts < per_kind * 50:
            attempts += 1
            clip = int(rng.integers(len(bank)))
            q = make_question(rng, bank.seen(clip, picks), kind, made % 2 == 0, world, 1.0, style)
            if q is not None:
                out.append((clip, picks, q))
                made += 1
    return out


__all__ = [
    "BASE_VERBS",
    "CAPTION_TASKS",
    "PAIR_GAPS",
    "PAIR_MOTIONS",
    "REVERSE_ACTIONS",
    "ClipBank",
    "Description",
    "Question",
    "Sampler",
    "SeenObject",
    "TextBatch",
    "action_checklist",
    "answer",
    "build_bank",
    "caption",
    "chroma_subsample",
    "collate",
    "colour_checklist",
    "even_frames",
    "frame_description",
    "held_out_questions",
    "make_question",
    "motion_perturbed",
    "pair_description",
    "pair_motion",
    "perturbed",
    "pick_frames",
    "pick_pairs",
    "question_text",
    "seen_objects",
    "shape_checklist",
    "shares_with_clip",
]
