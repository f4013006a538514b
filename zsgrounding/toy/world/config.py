"""The toy world's vocabulary (colours, shapes, sizes, actions) and :class:`ToyWorldConfig`,
which with its seed fixes every video exactly."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

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


__all__ = [
    "ACTIONS",
    "COLOURS",
    "MOTIONS",
    "SHAPES",
    "SIZES",
    "ToyWorldConfig",
]
