"""Stage-3 yes/no questions: balanced answers, hard negatives, question kinds.

:func:`make_question` draws a question of a kind (:data:`~zsgrounding.toy.mllm.config.QUESTION_KINDS`)
whose answer on the sampled frames is the one wanted; a "no" is hard when it shares all but one
attribute, or the action, with an object of the clip (:func:`shares_with_clip`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from zsgrounding.toy.mllm.config import QUESTION_KINDS
from zsgrounding.toy.mllm.data.facts import ATTRIBUTES, Description, SeenObject, answer
from zsgrounding.toy.mllm.data.text import question_text
from zsgrounding.toy.world import SIZES, ToyWorldConfig


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


__all__ = [
    "REVERSE_ACTIONS",
    "Question",
    "make_question",
    "shares_with_clip",
]
