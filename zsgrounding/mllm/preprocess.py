"""Video frame preprocessing for vision towers with a square input, without torchvision.

transformers' video processors need torchvision, which has no CPU build here and breaks
transformers when installed, so frames are prepared with PIL and numpy: resize to the tower's
square input size, rescale to [0, 1], normalise with the checkpoint's mean and std.

There is no cropping: the whole frame is squeezed into the square (aspect ratio not kept), so
the visual token grid covers the whole frame and cell ``(i, j)`` of a ``h x w`` grid is the
frame region ``[j W / w, (j + 1) W / w) x [i H / h, (i + 1) H / h)`` in native pixels. The tube
scorer relies on that mapping when it reads evidence inside a box.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from zsgrounding.mllm.errors import ModelError
from zsgrounding.mllm.files import checkpoint_file, read_json

# SigLIP's normalisation (LLaVA-OneVision's towers): the default when a checkpoint has no file.
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)

# OpenAI CLIP's normalisation: LLaVA-NeXT-Video's tower (the default when a checkpoint has none)
# and the Qwen2-VL / Qwen2.5-VL processors' default.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Preprocessor files to read, first found wins: the video processor's settings are the ones the
# model saw videos with; the image processor's are the usual fallback.
PREPROCESSOR_FILES = ("video_preprocessor_config.json", "preprocessor_config.json")


@dataclass(frozen=True)
class FramePreprocessing:
    """How frames become the vision tower's ``pixel_values``.

    Attributes:
        size: side of the square input in pixels (the vision tower's ``image_size``).
        image_mean, image_std: per-channel normalisation (RGB) applied after rescaling.
        rescale_factor: multiplier taking uint8 values to [0, 1].
        resample: PIL resampling filter (an ``Image.Resampling`` value; bicubic by default).
        do_rescale, do_normalize: whether to apply the two steps.
        source: the file the settings were read from (``None``: defaults).
    """

    size: int
    image_mean: tuple[float, float, float] = SIGLIP_MEAN
    image_std: tuple[float, float, float] = SIGLIP_STD
    rescale_factor: float = 1 / 255
    resample: int = int(Image.Resampling.BICUBIC)
    do_rescale: bool = True
    do_normalize: bool = True
    source: Path | None = field(default=None, compare=False)

    @classmethod
    def from_dict(cls, settings: dict[str, Any], size: int, source: Path | None = None) -> FramePreprocessing:
        """Read the fields of a transformers preprocessor config; ``size`` always comes from the tower.

        The tower's size wins over the file's ``size`` entry because the model's pooling assumes
        the tower's patch grid.
        """
        kwargs: dict[str, Any] = {"size": int(size), "source": source}
        for name in ("image_mean", "image_std"):
            if settings.get(name) is not None:
                kwargs[name] = _triple(settings[name], name, source)
        if settings.get("rescale_factor") is not None:
            kwargs["rescale_factor"] = float(settings["rescale_factor"])
        if settings.get("resample") is not None:
            kwargs["resample"] = _resample(settings["resample"], source)
        for name in ("do_rescale", "do_normalize"):
            if settings.get(name) is not None:
                kwargs[name] = bool(settings[name])
        return cls(**kwargs)

    @classmethod
    def from_checkpoint(
        cls, path_or_id: str | Path, size: int, defaults: dict[str, Any] | None = None, **hub_kwargs: Any
    ) -> FramePreprocessing:
        """Settings from the checkpoint's preprocessor JSON (:func:`preprocessor_settings`).

        What the file does not give (or all of it, without a file) comes from ``defaults``
        (settings in the same form, e.g. a family's ``image_mean`` / ``image_std``), else from
        the SigLIP defaults.
        """
        settings, source = preprocessor_settings(path_or_id, **hub_kwargs)
        given = {name: value for name, value in settings.items() if value is not None}
        return cls.from_dict({**(defaults or {}), **given}, size, source=source)


def preprocessor_settings(path_or_id: str | Path, **hub_kwargs: Any) -> tuple[dict[str, Any], Path | None]:
    """The checkpoint's first preprocessor JSON in :data:`PREPROCESSOR_FILES` and its path;
    ``({}, None)`` when it has none."""
    for filename in PREPROCESSOR_FILES:
        path = checkpoint_file(path_or_id, filename, **hub_kwargs)
        if path is not None:
            return read_json(path), path
    return {}, None


def _triple(value: Any, name: str, source: Path | None) -> tuple[float, float, float]:
    values = [float(value)] * 3 if isinstance(value, int | float) else [float(v) for v in value]
    if len(values) != 3:
        raise ModelError(f"{source or 'preprocessor config'}: {name} must have 3 values, got {value!r}")
    return (values[0], values[1], values[2])


def _resample(value: Any, source: Path | None) -> int:
    try:
        return int(Image.Resampling(int(value)))
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{source or 'preprocessor config'}: unknown resample filter {value!r}") from exc


def preprocess_frames(
    frames: np.ndarray | Sequence[np.ndarray], settings: FramePreprocessing
) -> torch.Tensor:
    """Frames ``(T, H, W, 3)`` uint8 RGB -> ``pixel_values`` ``(T, 3, S, S)`` float32, ``S = settings.size``."""
    resized = resize_frames(frames, settings.size, settings.size, settings.resample)
    return normalise_frames(resized, settings)


def resize_frames(
    frames: np.ndarray | Sequence[np.ndarray], height: int, width: int, resample: int
) -> np.ndarray:
    """Frames ``(T, H, W, 3)`` uint8 RGB resized (whole frame, no crop) to ``(T, height, width, 3)``."""
    array = np.asarray(frames)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3) RGB, got shape {array.shape}")
    if array.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {array.dtype}")
    if array.shape[0] == 0:
        raise ValueError("no frames to preprocess")
    return np.stack(
        [np.asarray(Image.fromarray(frame).resize((width, height), resample=resample)) for frame in array]
    )


def normalise_frames(frames: np.ndarray, settings: FramePreprocessing) -> torch.Tensor:
    """Frames ``(T, H, W, 3)`` uint8 -> ``(T, 3, H, W)`` float32, rescaled and normalised as ``settings`` says."""
    pixels = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    if settings.do_rescale:
        pixels = pixels * settings.rescale_factor
    if settings.do_normalize:
        mean = torch.tensor(settings.image_mean).view(1, 3, 1, 1)
        std = torch.tensor(settings.image_std).view(1, 3, 1, 1)
        pixels = (pixels - mean) / std
    return pixels.contiguous()
