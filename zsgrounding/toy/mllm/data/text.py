"""The text of each stage, made from the facts of the sampled frames.

Stage 1: descriptions of whole frames and of zoomed views around an object, with hard negatives
(one attribute changed, or an object moved to a nearby place); for a tower over frame pairs,
descriptions of the pair that say what each object does between its two frames, with
motion-swapped negatives. Stage 2: clip captions (:data:`CAPTION_TASKS`: objects, colour, shape
and action checklists, places). Stage 3: the phrasings of a question (:func:`question_text`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from zsgrounding.toy.mllm.data.facts import ATTRIBUTES, Description, Place, SeenObject, place_phrase
from zsgrounding.toy.world import ACTIONS, COLOURS, SHAPES, SIZES, ToyObject, ToyWorldConfig

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


__all__ = [
    "BASE_VERBS",
    "CAPTION_TASKS",
    "PAIR_MOTIONS",
    "PairObject",
    "action_checklist",
    "caption",
    "colour_checklist",
    "frame_description",
    "motion_perturbed",
    "pair_description",
    "pair_motion",
    "perturbed",
    "place_list",
    "question_text",
    "shape_checklist",
]
