"""Attention sheets: sampled frames with their evidence maps overlaid, tiled into one PNG."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from zsgrounding.viz.common import (
    DIM,
    HEAT_CMAP,
    PANEL_COLOUR,
    TEXT_COLOUR,
    Norm,
    _as_numpy,
    _check_frames,
    _clamp,
    _colour_bar,
    _font,
    _line_height,
    _text_width,
    _wrap,
)
from zsgrounding.viz.draw import overlay_heatmap

SHEET_GAP = 4  # pixels between and around the tiles of an attention sheet


def attention_grid_image(
    path: Path | str,
    frames: np.ndarray,
    evidence: Any,
    frame_ids: Sequence[int] | np.ndarray,
    cols: int = 5,
    *,
    tile_width: int | None = None,
    alpha: float = 0.6,
    cmap: str = HEAT_CMAP,
    dim: float = DIM,
    evidence_norm: Norm = "global",
    title: str | None = None,
) -> Path:
    """A contact sheet of sampled frames with their attention overlays, saved as PNG.

    Args:
        path: the PNG to write.
        frames: ``(T, H, W, 3)`` uint8, the sampled frames the maps belong to.
        evidence: ``(T, h, w)`` maps.
        frame_ids: ``(T,)`` native ids, printed over each tile with the map's peak value.
        cols: tiles per row (at most ``T``).
        tile_width: tile width in pixels; default the frame width clamped to ``[160, 320]``.
        alpha, cmap, dim: the overlay (see :func:`zsgrounding.viz.overlay_heatmap`): each tile is
            dimmed where its map is low and coloured where it is high.
        evidence_norm: one colour range for all maps (``"global"``) or one per map (``"frame"``).
        title: optional line above the tiles.

    Returns:
        ``path``. The sheet is ``min(cols, T) * tile_width + (min(cols, T) + 1) * SHEET_GAP``
        pixels wide, with a colour bar under the tiles: ``cmap`` from its low (left) to its high
        end, labelled with the maps' min and max (``"global"``) or ``low``/``high`` (``"frame"``).
    """
    path = Path(path)
    imgs = _check_frames(frames)
    maps = _as_numpy(evidence)
    fids = np.asarray(frame_ids, dtype=np.int64).reshape(-1)
    T, H, W = imgs.shape[:3]
    if maps.ndim != 3 or maps.shape[0] != T or fids.size != T or T == 0:
        raise ValueError(
            f"need T >= 1 frames, (T, h, w) evidence and T ids; got {T}, {maps.shape}, {fids.size}"
        )
    if cols < 1:
        raise ValueError(f"cols must be >= 1, got {cols}")
    if evidence_norm not in ("global", "frame"):
        raise ValueError(f"unknown evidence_norm {evidence_norm!r}: use 'global' or 'frame'")
    tw = int(tile_width) if tile_width else _clamp(W, 160, 320)
    th = max(1, round(H * tw / W))
    font = _font(_clamp(tw / 14, 10, 16))
    line_h = _line_height(font)
    ncols = min(cols, T)
    nrows = math.ceil(T / ncols)
    title_lines = _wrap(title, font, ncols * tw + (ncols - 1) * SHEET_GAP) if title else []
    title_h = len(title_lines) * line_h + (SHEET_GAP if title_lines else 0)
    cell_h = line_h + th + SHEET_GAP
    bar_top = SHEET_GAP + title_h + nrows * cell_h
    width = ncols * tw + (ncols + 1) * SHEET_GAP
    height = bar_top + 8 + line_h + SHEET_GAP
    sheet = Image.new("RGB", (width, height), PANEL_COLOUR)
    draw = ImageDraw.Draw(sheet)
    for i, line in enumerate(title_lines):
        draw.text((SHEET_GAP, SHEET_GAP + i * line_h), line, fill=TEXT_COLOUR, font=font)
    finite = maps[np.isfinite(maps)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    vmin, vmax = (lo, hi) if evidence_norm == "global" else (None, None)
    for i in range(T):
        row, col = divmod(i, ncols)
        x = SHEET_GAP + col * (tw + SHEET_GAP)
        y = SHEET_GAP + title_h + row * cell_h
        tile = np.array(Image.fromarray(imgs[i]).resize((tw, th), Image.Resampling.BILINEAR))
        tile = overlay_heatmap(tile, maps[i], alpha, cmap, vmin=vmin, vmax=vmax, dim=dim)
        sheet.paste(Image.fromarray(tile), (x, y + line_h))
        peak = float(np.nanmax(maps[i])) if np.isfinite(maps[i]).any() else float("nan")
        draw.text((x, y), f"frame {int(fids[i])}  peak {peak:.3g}", fill=TEXT_COLOUR, font=font)
    bar_w = width - 2 * SHEET_GAP
    sheet.paste(_colour_bar(bar_w, 8, cmap), (SHEET_GAP, bar_top))
    low, high = (f"{lo:.3g}", f"{hi:.3g}") if evidence_norm == "global" else ("low", "high")
    draw.text((SHEET_GAP, bar_top + 8), low, fill=TEXT_COLOUR, font=font)
    draw.text((width - SHEET_GAP - _text_width(font, high), bar_top + 8), high, fill=TEXT_COLOUR, font=font)
    sheet.save(path, format="PNG")
    return path


__all__ = ["SHEET_GAP", "attention_grid_image"]
