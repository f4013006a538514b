"""Rendering: the background of a toy video and its shapes drawn on every frame."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from zsgrounding.toy.world.config import COLOURS, ToyWorldConfig
from zsgrounding.toy.world.videos import ToyObject


def render_background(rng: np.random.Generator, cfg: ToyWorldConfig) -> np.ndarray:
    """``(H, W, 3)`` uint8: dark grey (white and yellow shapes must stand out), maybe textured."""
    base = rng.uniform(30, 70) + rng.uniform(-6, 6, size=3)
    field_ = np.zeros((cfg.height, cfg.width), dtype=np.float32)
    if cfg.texture:
        coarse = rng.normal(0.0, 1.0, size=(cfg.height // 12 + 2, cfg.width // 12 + 2)).astype(np.float32)
        smooth = Image.fromarray(coarse).resize((cfg.width, cfg.height), Image.Resampling.BILINEAR)
        field_ = 8.0 * np.asarray(smooth)
    return np.clip(base[None, None, :] + field_[:, :, None], 0, 255).astype(np.uint8)


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: np.ndarray, fill: Any) -> None:
    """Draw ``shape`` filling the pixels of ``box`` (xyxy, exclusive right/bottom)."""
    x1, y1, x2, y2 = (int(v) for v in box)
    r, b = x2 - 1, y2 - 1  # PIL coordinates are inclusive
    cx, cy = (x1 + r) / 2, (y1 + b) / 2
    if shape == "circle":
        draw.ellipse([x1, y1, r, b], fill=fill)
    elif shape == "square":
        draw.rectangle([x1, y1, r, b], fill=fill)
    elif shape == "triangle":
        draw.polygon([(x1, b), (r, b), (cx, y1)], fill=fill)
    elif shape == "diamond":
        draw.polygon([(cx, y1), (r, cy), (cx, b), (x1, cy)], fill=fill)
    elif shape == "cross":
        arm = max(1.0, (x2 - x1) / 6)
        draw.rectangle([x1, cy - arm, r, cy + arm], fill=fill)
        draw.rectangle([cx - arm, y1, cx + arm, b], fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def render_frames(background: np.ndarray, objects: list[ToyObject], num_frames: int) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 frames: the background with every visible object drawn on it."""
    frames = np.empty((num_frames, *background.shape), dtype=np.uint8)
    for t in range(num_frames):
        image = Image.fromarray(background.copy())
        draw = ImageDraw.Draw(image)
        for obj in objects:
            if obj.visible[0] <= t < obj.visible[1]:
                draw_shape(draw, obj.shape, obj.boxes[t - obj.visible[0]], COLOURS[obj.colour])
        frames[t] = np.asarray(image)
    return frames


__all__ = [
    "draw_shape",
    "render_background",
    "render_frames",
]
