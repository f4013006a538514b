"""Drawing on one frame: a heat map blended over it, labelled boxes whose tags avoid each other."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from zsgrounding.viz.common import (
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


def _normalise(heat: np.ndarray, vmin: float | None, vmax: float | None) -> np.ndarray:
    h = np.nan_to_num(heat, nan=0.0, posinf=0.0, neginf=0.0)
    lo = float(h.min()) if vmin is None else float(vmin)
    hi = float(h.max()) if vmax is None else float(vmax)
    if not hi > lo:  # a flat map carries no "where": leave the frame untouched
        return np.zeros_like(h)
    return np.clip((h - lo) / (hi - lo), 0.0, 1.0)


def overlay_heatmap(
    frame: np.ndarray,
    heat: Any,
    alpha: float = 0.45,
    cmap: str = "jet",
    *,
    vmin: float | None = None,
    vmax: float | None = None,
    weighted: bool = True,
) -> np.ndarray:
    """Blend a coloured heat map over a frame.

    Args:
        frame: ``(H, W, 3)`` uint8 RGB.
        heat: ``(h, w)`` map (numpy or torch), e.g. one frame of evidence on the token grid.
        alpha: opacity of the colour where the map peaks.
        cmap: matplotlib colormap name.
        vmin, vmax: the range mapped to the colormap; default: this map's min and max.
        weighted: scale the opacity by the normalised value, so weak regions stay visible and the
            change concentrates where the map is high; ``False`` blends uniformly with ``alpha``.

    Returns:
        ``(H, W, 3)`` uint8.
    """
    img = np.asarray(frame)
    if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
        raise ValueError(f"frame must be (H, W, 3) uint8, got {img.shape} {img.dtype}")
    h = _as_numpy(heat)
    if h.ndim != 2:
        raise ValueError(f"heat must be (h, w), got {h.shape}")
    value = _normalise(h, vmin, vmax).astype(np.float32)
    H, W = img.shape[:2]
    up = np.asarray(Image.fromarray(value).resize((W, H), Image.Resampling.BILINEAR), dtype=np.float64)
    up = np.clip(up, 0.0, 1.0)
    colour = _colour_table(cmap)[np.rint(up * 255).astype(np.intp)]
    a = (alpha * up if weighted else np.full_like(up, alpha))[..., None]
    return np.clip(np.rint(img * (1.0 - a) + colour * a), 0, 255).astype(np.uint8)


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


def _paint_box(
    draw: ImageDraw.ImageDraw,
    size: tuple[int, int],
    box: tuple[int, ...],
    colour: RGB,
    label: str | None,
    width: int,
    font: Font,
    taken: list[tuple[int, int, int, int]],
) -> None:
    """Outline ``box`` and put its label in a tag that avoids tags already placed (``taken``)."""
    x1, y1, x2, y2 = box
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


def draw_boxes(
    frame: np.ndarray,
    boxes: Sequence[tuple[Sequence[float] | np.ndarray, Colour, str | None]],
    *,
    width: int = 2,
    font_size: int = 12,
) -> np.ndarray:
    """Draw labelled boxes on a copy of ``frame``.

    Args:
        frame: ``(H, W, 3)`` uint8 RGB.
        boxes: ``(xyxy, colour, label)`` per box, ``xyxy`` in this frame's pixels (exclusive
            right/bottom, rounded to the nearest pixel); NaN boxes are skipped; ``label`` may be
            ``None``. The outline covers exactly the box's outermost ``width`` pixel rings.
        width: outline width in pixels.
        font_size: label size; labels sit in a filled tag of the box's colour, above the box when
            there is room and moved to avoid earlier tags.

    Returns:
        the drawn ``(H, W, 3)`` uint8 frame (the input is not modified).
    """
    img = np.asarray(frame)
    if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
        raise ValueError(f"frame must be (H, W, 3) uint8, got {img.shape} {img.dtype}")
    image = Image.fromarray(img.copy())
    draw = ImageDraw.Draw(image)
    font = _font(font_size)
    taken: list[tuple[int, int, int, int]] = []
    for xyxy, colour, label in boxes:
        box = _pixel_box(xyxy)
        if box is not None:
            _paint_box(draw, image.size, box, _rgb(colour), label, width, font, taken)
    return np.array(image)


__all__ = ["draw_boxes", "overlay_heatmap"]
