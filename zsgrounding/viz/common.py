"""Shared drawing helpers of the pictures: the colour scheme, fonts and text, array checks.

Frames are drawn on with Pillow as ``(H, W, 3)`` uint8 RGB arrays; the other modules of
:mod:`zsgrounding.viz` build on these helpers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import matplotlib
import numpy as np
from PIL import Image, ImageColor, ImageFont

RGB = tuple[int, int, int]
Colour = RGB | str
"""An RGB triple or any colour name Pillow knows (``"red"``, ``"#00ff00"``)."""
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
Norm = Literal["global", "frame"]

DEFAULT_COLOURS: dict[str, RGB] = {
    "gt": (0, 230, 64),
    "ground truth": (0, 230, 64),
    "pred": (255, 48, 48),
    "prediction": (255, 48, 48),
    "spacevllm": (48, 128, 255),
}
"""Colours of the usual tube names (matched case-insensitively)."""
EXTRA_COLOURS: tuple[RGB, ...] = (
    (255, 170, 0),
    (230, 0, 230),
    (0, 220, 230),
    (255, 255, 0),
    (160, 100, 255),
    (255, 255, 255),
)
"""Colours handed out, in order, to names without a default colour."""
TRACK_COLOUR: RGB = (150, 150, 150)
PANEL_COLOUR: RGB = (24, 24, 24)
TEXT_COLOUR: RGB = (240, 240, 240)
HEAT_CMAP = "inferno"
"""Default colormap of the attention overlays: perceptually uniform, dark when low and pale yellow
when hot, so hot cells read as bright on the dimmed frame and stay apart from the tube colours."""
DIM = 0.55
"""Default dimming of the frame where an attention map is at its low end (0: none, 1: black-grey)."""
GROUND_TRUTH_NAMES = frozenset({"gt", "ground truth"})
"""Tube names (case-insensitive) drawn in the ground truth's style: dashed, on top of the others."""


def _rgb(colour: Colour) -> RGB:
    if isinstance(colour, str):
        return tuple(ImageColor.getrgb(colour)[:3])  # type: ignore[return-value]
    r, g, b = (int(c) for c in tuple(colour)[:3])
    return r, g, b


def _ink_on(background: RGB) -> RGB:
    """Black or white, whichever reads better on ``background``."""
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def _as_numpy(array: Any) -> np.ndarray:
    """float64 numpy array from numpy or a torch tensor (torch is not imported here)."""
    if hasattr(array, "detach"):
        array = array.detach().float().cpu().numpy()
    return np.asarray(array, dtype=np.float64)


def _check_frames(frames: Any, what: str = "frames") -> np.ndarray:
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"{what} must be (T, H, W, 3) uint8, got {arr.shape} {arr.dtype}")
    return arr


def _font(size: int) -> Font:
    return ImageFont.load_default(size=size)


def _text_width(font: Font, text: str) -> int:
    return math.ceil(font.getlength(text))


def _line_height(font: Font) -> int:
    return int(font.getbbox("Ag|")[3]) + 2


def _clamp(value: float, lo: int, hi: int) -> int:
    return int(min(max(round(value), lo), hi))


def resolve_colours(names: Sequence[str], colours: Mapping[str, Colour] | None = None) -> dict[str, RGB]:
    """Colour of every name: ``colours`` first, then :data:`DEFAULT_COLOURS`, then unused extras."""
    given = {k: _rgb(v) for k, v in (colours or {}).items()}
    out: dict[str, RGB] = {}
    for name in names:
        if name in given:
            out[name] = given[name]
        elif name.lower() in DEFAULT_COLOURS:
            out[name] = DEFAULT_COLOURS[name.lower()]
    used = set(out.values())
    spare = [c for c in EXTRA_COLOURS if c not in used] or list(EXTRA_COLOURS)
    extra = 0
    for name in names:
        if name not in out:
            out[name] = spare[extra % len(spare)]
            extra += 1
    return out


def _wrap(text: str, font: Font, width: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels; a word longer than a line is cut."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}" if line else word
            if _text_width(font, candidate) <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            while len(word) > 1 and _text_width(font, word) > width:
                cut = 1
                while cut < len(word) and _text_width(font, word[: cut + 1]) <= width:
                    cut += 1
                lines.append(word[:cut])
                word = word[cut:]
            line = word
        lines.append(line)
    return lines


def is_ground_truth(name: str) -> bool:
    """Whether a tube called ``name`` is drawn as the ground truth (see :data:`GROUND_TRUTH_NAMES`)."""
    return name.lower() in GROUND_TRUTH_NAMES


def _colour_table(cmap: str) -> np.ndarray:
    """``(256, 3)`` float RGB in [0, 255] of a matplotlib colormap."""
    try:
        table = matplotlib.colormaps[cmap]
    except KeyError as exc:
        raise ValueError(f"unknown colormap {cmap!r}") from exc
    return table(np.linspace(0.0, 1.0, 256))[:, :3] * 255.0


def _colour_bar(width: int, height: int, cmap: str) -> Image.Image:
    """A ``(height, width)`` strip running through ``cmap`` from its low (left) to its high end."""
    ramp = _colour_table(cmap)[np.rint(np.linspace(0, 255, max(width, 1))).astype(np.intp)]
    return Image.fromarray(np.repeat(np.rint(ramp)[None].astype(np.uint8), max(height, 1), axis=0))


__all__ = [
    "DEFAULT_COLOURS",
    "DIM",
    "EXTRA_COLOURS",
    "GROUND_TRUTH_NAMES",
    "HEAT_CMAP",
    "PANEL_COLOUR",
    "TEXT_COLOUR",
    "TRACK_COLOUR",
    "Colour",
    "Font",
    "Norm",
    "is_ground_truth",
    "resolve_colours",
]
