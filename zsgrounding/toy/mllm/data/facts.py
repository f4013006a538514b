"""What sampled frames show of each object: the facts every text of the toy MLLM's data states.

- :func:`seen_objects`: each object's attributes, the actions the sampled frames show it doing,
  the actions it does that they may not show (never asked) and where it is on each frame.
- :data:`Place` and its phrases: the 3 x 3 grid cell of a view that holds an object's centre.
- :class:`Description` and :func:`answer`: what a question names, and whether the frames say yes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from zsgrounding.toy.world import ACTIONS, ToyObject

MIN_SEEN_MOTION = 0.6  # share of a motion's steps the sampled frames must span to call it shown
ATTRIBUTES = ("size", "colour", "shape")


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


__all__ = [
    "ATTRIBUTES",
    "MIN_SEEN_MOTION",
    "Description",
    "Place",
    "SeenObject",
    "answer",
    "box_place",
    "nearby_place",
    "place_of",
    "place_phrase",
    "seen_objects",
]
