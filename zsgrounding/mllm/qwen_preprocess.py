"""Qwen2-VL / Qwen2.5-VL video preprocessing: frame sizes on the 28-pixel grid (``smart_resize``),
the pairing of frames and the patch rows of ``pixel_values_videos`` (:mod:`zsgrounding.mllm.qwen2_vl`
documents the layout).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from zsgrounding.mllm.errors import ModelError
from zsgrounding.mllm.preprocess import (
    CLIP_MEAN,
    CLIP_STD,
    FramePreprocessing,
    preprocessor_settings,
)

# The Qwen2-VL video processor's default pixel bounds per frame (``size`` shortest / longest edge).
DEFAULT_MIN_PIXELS = 128 * 28 * 28
DEFAULT_MAX_PIXELS = 768 * 28 * 28


def smart_resize(
    height: int, width: int, factor: int, min_pixels: int, max_pixels: int, max_ratio: float = 200.0
) -> tuple[int, int]:
    """``(H, W)`` multiples of ``factor`` close to ``(height, width)`` with ``H * W`` in the pixel bounds.

    Each side is rounded to the nearest multiple of ``factor``; when the area leaves
    ``[min_pixels, max_pixels]`` both sides are scaled by one factor (keeping the aspect ratio)
    and rounded down (too large) or up (too small) to multiples of ``factor``. These are the
    semantics of the Qwen2-VL processors' resize; an aspect ratio above ``max_ratio`` is refused.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"frame size must be positive, got {height} x {width}")
    if max(height, width) / min(height, width) > max_ratio:
        raise ValueError(f"aspect ratio of a {height} x {width} frame is above {max_ratio}")
    out_h = round(height / factor) * factor
    out_w = round(width / factor) * factor
    if out_h * out_w > max_pixels:
        shrink = math.sqrt(height * width / max_pixels)
        out_h = max(factor, math.floor(height / shrink / factor) * factor)
        out_w = max(factor, math.floor(width / shrink / factor) * factor)
    elif out_h * out_w < min_pixels:
        grow = math.sqrt(min_pixels / (height * width))
        out_h = math.ceil(height * grow / factor) * factor
        out_w = math.ceil(width * grow / factor) * factor
    return out_h, out_w


def patchify_video(
    pixels: torch.Tensor, patch_size: int, temporal_patch_size: int, merge_size: int
) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Pixels ``(T, C, H, W)`` -> ``pixel_values_videos`` ``(t * gh * gw, C * tp * p * p)`` and ``(t, gh, gw)``.

    ``T`` is padded to a multiple of ``tp = temporal_patch_size`` by repeating the last frame;
    ``t = T / tp``, ``gh = H / p``, ``gw = W / p`` with ``p = patch_size``. Rows are ordered by
    frame group, then merge block (row, column) of the ``gh / m x gw / m`` merged grid, then patch
    inside the block (row, column); a row holds ``(C, tp, p, p)`` values. This is the layout of
    transformers' Qwen2-VL video processor, which the vision tower's patch merger relies on.
    """
    if pixels.ndim != 4:
        raise ValueError(f"pixels must be (T, C, H, W), got {tuple(pixels.shape)}")
    num_frames, channels, height, width = pixels.shape
    factor = patch_size * merge_size
    if height % factor or width % factor:
        raise ValueError(f"frame size {height} x {width} is not a multiple of {factor}")
    if pad := -num_frames % temporal_patch_size:
        pixels = torch.cat([pixels, pixels[-1:].expand(pad, -1, -1, -1)])
    t = pixels.shape[0] // temporal_patch_size
    gh, gw = height // patch_size, width // patch_size
    m, p = merge_size, patch_size
    blocks = pixels.reshape(t, temporal_patch_size, channels, gh // m, m, p, gw // m, m, p)
    # (t, tp, C, bh, mh, ph, bw, mw, pw) -> (t, bh, bw, mh, mw, C, tp, ph, pw)
    blocks = blocks.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return blocks.reshape(t * gh * gw, channels * temporal_patch_size * p * p).contiguous(), (t, gh, gw)


@dataclass(frozen=True)
class QwenVideoPreprocessing:
    """How frames become ``pixel_values_videos`` for a Qwen2-VL-style vision tower.

    Attributes:
        normalisation: rescaling, normalisation and resampling filter of the frames; its
            ``size`` is the side of the square one grid cell covers (``patch_size * merge_size``),
            not a resize target.
        min_pixels, max_pixels: bounds of ``H * W`` for :func:`smart_resize`.
        patch_size, temporal_patch_size, merge_size: the vision tower's (from the model config).
        frame_size: fixed ``(H, W)`` to resize every clip to (multiples of
            ``patch_size * merge_size``), instead of ``smart_resize`` of the native size.
        source: the file the settings were read from (``None``: defaults).
    """

    normalisation: FramePreprocessing
    min_pixels: int = DEFAULT_MIN_PIXELS
    max_pixels: int = DEFAULT_MAX_PIXELS
    patch_size: int = 14
    temporal_patch_size: int = 2
    merge_size: int = 2
    frame_size: tuple[int, int] | None = None
    source: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.min_pixels > self.max_pixels:
            raise ModelError(f"min_pixels {self.min_pixels} is above max_pixels {self.max_pixels}")
        if self.frame_size is not None and any(side % self.factor or side <= 0 for side in self.frame_size):
            raise ModelError(f"frame_size {self.frame_size} must be positive multiples of {self.factor}")

    @property
    def factor(self) -> int:
        """Side in pixels of the square one visual token covers: ``patch_size * merge_size``."""
        return self.patch_size * self.merge_size

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """``(H, W)`` that frames of native size ``height x width`` are resized to."""
        if self.frame_size is not None:
            return self.frame_size
        return smart_resize(height, width, self.factor, self.min_pixels, self.max_pixels)

    @classmethod
    def from_dict(
        cls,
        settings: dict[str, Any],
        vision_config: Any,
        source: Path | None = None,
        **overrides: Any,
    ) -> QwenVideoPreprocessing:
        """Settings of a transformers Qwen2-VL image / video processor config.

        Pixel bounds come from ``size`` (``shortest_edge`` / ``longest_edge``, the 5.x form)
        overridden by ``min_pixels`` / ``max_pixels`` (the saved form of older checkpoints), as
        the processors read them. Patch, temporal patch and merge sizes are the vision tower's;
        a file that disagrees is an error. ``overrides`` (``min_pixels``, ``max_pixels``,
        ``frame_size``) win over the file; ``None`` values are ignored.
        """
        where = source or "preprocessor config"
        tower = {
            "patch_size": int(vision_config.patch_size),
            "temporal_patch_size": int(vision_config.temporal_patch_size),
            "merge_size": int(vision_config.spatial_merge_size),
        }
        for name, value in tower.items():
            if settings.get(name) is not None and int(settings[name]) != value:
                raise ModelError(f"{where}: {name} {settings[name]} differs from the vision tower's {value}")
        kwargs: dict[str, Any] = {**tower, "source": source}
        size = settings.get("size")
        if isinstance(size, dict):
            for key, name in (("shortest_edge", "min_pixels"), ("longest_edge", "max_pixels")):
                if size.get(key) is not None:
                    kwargs[name] = int(size[key])
        for name in ("min_pixels", "max_pixels"):
            if settings.get(name) is not None:
                kwargs[name] = int(settings[name])
        for name, value in overrides.items():
            if value is not None:
                kwargs[name] = tuple(int(v) for v in value) if name == "frame_size" else int(value)
        factor = tower["patch_size"] * tower["merge_size"]
        given = {name: value for name, value in settings.items() if value is not None}
        defaults = {"image_mean": CLIP_MEAN, "image_std": CLIP_STD}
        kwargs["normalisation"] = FramePreprocessing.from_dict({**defaults, **given}, factor, source)
        return cls(**kwargs)

    @classmethod
    def from_checkpoint(
        cls,
        path_or_id: str | Path,
        vision_config: Any,
        overrides: dict[str, Any] | None = None,
        **hub_kwargs: Any,
    ) -> QwenVideoPreprocessing:
        """Settings from the checkpoint's video / image preprocessor JSON (first found), else defaults."""
        settings, source = preprocessor_settings(path_or_id, **hub_kwargs)
        return cls.from_dict(settings, vision_config, source=source, **(overrides or {}))
