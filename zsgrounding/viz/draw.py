"""Drawing on one frame: a heat map over the dimmed frame, labelled boxes whose tags avoid each other."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw

from zsgrounding.viz.common import (
    DIM,
    HEAT_CMAP,
    PANEL_COLOUR,
    RGB,
    Colour,
    Font,
    _as_numpy,
    _colour_table,
    _font,
    _ink_on,
    _line_height,
    _rgb,
    _text_width,
)


def _normalise(heat: np.ndarray, vmin: float | None, vmax: float | None) -> np.ndarray | None:
    """``heat`` mapped onto [0, 1] by ``[vmin, vmax]``; ``None`` for a flat map (no "where" to show)."""
    h = np.nan_to_num(heat, nan=0.0, posinf=0.0, neginf=0.0)
    lo = float(h.min()) if vmin is None else float(vmin)
    hi = float(h.max()) if vmax is None else float(vmax)
    if not hi > lo:
        return None
    return np.clip((h - lo) / (hi - lo), 0.0, 1.0)


def overlay_heatmap(
    frame: np.ndarray,
    heat: Any,
    alpha: float = 0.6,
    cmap: str = HEAT_CMAP,
    *,
    vmin: float | None = None,
    vmax: float | None = None,
    weighted: bool = True,
    dim: float = DIM,
) -> np.ndarray:
    """Show a heat map on a frame: the frame dimmed where the map is low, the colormap where it is high.

    Per pixel, with ``v`` in [0, 1] the normalised map upsampled bilinearly onto the frame:

    * the frame is first pulled towards the panel's dark grey by ``dim * (1 - v)``, so cold regions
      go dark but keep their own (darker) colours, and hot regions keep the frame's full brightness;
    * then the colormap's colour at ``v`` is blended over with opacity ``alpha * v**1.5``
      (``weighted``) or ``alpha`` everywhere: the colour concentrates on the hot cells and low,
      non-zero values leave the frame's hue alone (a white object under a weak map stays grey).

    Args:
        frame: ``(H, W, 3)`` uint8 RGB.
        heat: ``(h, w)`` map (numpy or torch), e.g. one frame of evidence on the token grid.
        alpha: opacity of the colour where the map peaks.
        cmap: matplotlib colormap name; default :data:`HEAT_CMAP` (perceptually uniform).
        vmin, vmax: the range mapped to the colormap; default: this map's min and max.
        weighted: scale the opacity by ``v**1.5``; ``False`` blends the colour
            uniformly with ``alpha``.
        dim: how far the frame is pulled towards dark grey where the map is at its low end (0: not
            at all, the frame's own pixels; 1: all the way). A flat map (nothing to show) leaves the
            frame untouched.

    Returns:
        ``(H, W, 3)`` uint8.
    """
    img = np.asarray(frame)
    if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
        raise ValueError(f"frame must be (H, W, 3) uint8, got {img.shape} {img.dtype}")
    h = _as_numpy(heat)
    if h.ndim != 2:
        raise ValueError(f"heat must be (h, w), got {h.shape}")
    if not 0.0 <= dim <= 1.0:
        raise ValueError(f"dim must be in [0, 1], got {dim}")
    value = _normalise(h, vmin, vmax)
    if value is None:
        return img.copy()
    H, W = img.shape[:2]
    up = Image.fromarray(value.astype(np.float32)).resize((W, H), Image.Resampling.BILINEAR)
    v = np.clip(np.asarray(up, dtype=np.float64), 0.0, 1.0)[..., None]  # (H, W, 1)
    colour = _colour_table(cmap)[np.rint(v[..., 0] * 255).astype(np.intp)]  # (H, W, 3)
    d = dim * (1.0 - v)
    base = img * (1.0 - d) + np.asarray(PANEL_COLOUR, dtype=np.float64) * d
    a = alpha * v**1.5 if weighted else np.full_like(v, alpha)
    return np.clip(np.rint(base * (1.0 - a) + colour * a), 0, 255).astype(np.uint8)


def _pixel_box(
    xyxy: Sequence[float] | np.ndarray, sx: float = 1.0, sy: float = 1.0
) -> tuple[int, ...] | None:
    """Integer ``(x1, y1, x2, y2)`` (exclusive right/bottom) of a box, ``None`` for a NaN box."""
    b = np.asarray(xyxy, dtype=np.float64).reshape(4)
    if not np.isfinite(b).all():
        return None
    x1, x2 = round(b[0] * sx), round(b[2] * sx)
    y1, y2 = round(b[1] * sy), round(b[3] * sy)
    return x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _dash_runs(length: int, dash: int, gap: int) -> list[tuple[int, int]]:
    """Half-open ``(start, end)`` dashes along ``length`` pixels, one flush with each end.

    The gaps are stretched evenly (never below ``gap``) so both corners of a side are drawn; a
    side too short for two dashes and a gap is one solid run.
    """
    if length < 2 * dash + gap:
        return [(0, length)]
    n = (length + gap) // (dash + gap)
    starts = np.rint(np.linspace(0, length - dash, n)).astype(int)
    return [(int(a), int(a) + dash) for a in starts]


def _dashed_outline(
    draw: ImageDraw.ImageDraw, box: tuple[int, ...], colour: RGB, width: int, dash: int, gap: int
) -> None:
    """Dash the outermost ``width`` pixel rings of ``box`` (exclusive right/bottom); gaps untouched."""
    x1, y1, x2, y2 = box
    for a, b in _dash_runs(x2 - x1, dash, gap):  # top and bottom bands
        draw.rectangle([x1 + a, y1, x1 + b - 1, min(y1 + width, y2) - 1], fill=colour)
        draw.rectangle([x1 + a, max(y2 - width, y1), x1 + b - 1, y2 - 1], fill=colour)
    for a, b in _dash_runs(y2 - y1, dash, gap):  # left and right bands
        draw.rectangle([x1, y1 + a, min(x1 + width, x2) - 1, y1 + b - 1], fill=colour)
        draw.rectangle([max(x2 - width, x1), y1 + a, x2 - 1, y1 + b - 1], fill=colour)


def _dash_pattern(width: int) -> tuple[int, int]:
    """``(dash, gap)`` lengths in pixels of a dashed outline ``width`` pixels wide."""
    return max(6, 4 * width), max(4, 2 * width)


def _paint_box(
    draw: ImageDraw.ImageDraw,
    size: tuple[int, int],
    box: tuple[int, ...],
    colour: RGB,
    label: str | None,
    width: int,
    font: Font,
    taken: list[tuple[int, int, int, int]],
    *,
    dashed: bool = False,
) -> None:
    """Outline ``box`` (solid, or dashed so a box under it shows in the gaps) and put its label in a
    tag that avoids tags already placed (``taken``)."""
    x1, y1, x2, y2 = box
    if dashed:
        _dashed_outline(draw, box, colour, width, *_dash_pattern(width))
    else:
        draw.rectangle([x1, y1, x2 - 1, y2 - 1], outline=colour, width=width)
    if not label:
        return
    tw, th = _text_width(font, label) + 4, _line_height(font) + 1
    W, H = size
    candidates = [
        (x1, y1 - th),  # above, left
        (x1, y2),  # below, left
        (x2 - tw, y1 - th),  # above, right
        (x2 - tw, y2),  # below, right
        (x1 + width, y1 + width),  # inside, top left
    ]
    rects = [(x, y, x + tw, y + th) for x, y in candidates]
    inside = [r for r in rects if r[0] >= 0 and r[1] >= 0 and r[2] <= W and r[3] <= H]
    free = [r for r in inside if not any(_overlaps(r, t) for t in taken)]
    if free:
        rect = free[0]
    else:  # nowhere clean: clamp the first choice into the frame
        x = min(max(rects[0][0], 0), max(W - tw, 0))
        y = min(max(rects[0][1], 0), max(H - th, 0))
        rect = (x, y, x + tw, y + th)
    taken.append(rect)
    draw.rectangle([rect[0], rect[1], rect[2] - 1, rect[3] - 1], fill=colour)
    draw.text((rect[0] + 2, rect[1]), label, fill=_ink_on(colour), font=font)


BoxSpec = (
    tuple[Sequence[float] | np.ndarray, Colour, str | None]
    | tuple[Sequence[float] | np.ndarray, Colour, str | None, Literal["solid", "dashed"]]
)
"""``(xyxy, colour, label)`` or ``(xyxy, colour, label, style)`` of one box to draw."""


def draw_boxes(
    frame: np.ndarray,
    boxes: Sequence[BoxSpec],
    *,
    width: int = 2,
    font_size: int = 12,
) -> np.ndarray:
    """Draw labelled boxes on a copy of ``frame``.

    Args:
        frame: ``(H, W, 3)`` uint8 RGB.
        boxes: ``(xyxy, colour, label[, style])`` per box, ``xyxy`` in this frame's pixels
            (exclusive right/bottom, rounded to the nearest pixel); NaN boxes are skipped; ``label``
            may be ``None``; ``style`` is ``"solid"`` (default) or ``"dashed"``. The outline covers
            exactly the box's outermost ``width`` pixel rings (a dashed one, dashes of them).
            Solid boxes are drawn first, in order, then the dashed ones on top: a dashed box (the
            ground truth's style) stays visible over a solid box on the same pixels, which shows
            in its gaps.
        width: outline width in pixels.
        font_size: label size; labels sit in a filled tag of the box's colour, above the box when
            there is room and moved to avoid earlier tags.

    Returns:
        the drawn ``(H, W, 3)`` uint8 frame (the input is not modified).
    """
    img = np.asarray(frame)
    if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
        raise ValueError(f"frame must be (H, W, 3) uint8, got {img.shape} {img.dtype}")
    specs = [(spec[0], spec[1], spec[2], spec[3] if len(spec) > 3 else "solid") for spec in boxes]
    if any(style not in ("solid", "dashed") for *_, style in specs):
        raise ValueError("a box's style must be 'solid' or 'dashed'")
    image = Image.fromarray(img.copy())
    draw = ImageDraw.Draw(image)
    font = _font(font_size)
    taken: list[tuple[int, int, int, int]] = []
    for xyxy, colour, label, style in sorted(specs, key=lambda spec: spec[3] == "dashed"):
        box = _pixel_box(xyxy)
        if box is not None:
            _paint_box(
                draw, image.size, box, _rgb(colour), label, width, font, taken, dashed=style == "dashed"
            )
    return np.array(image)


__all__ = ["BoxSpec", "draw_boxes", "overlay_heatmap"]
