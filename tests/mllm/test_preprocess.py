"""Frame preprocessing without torchvision: settings from the checkpoint, resize, normalisation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from zsgrounding.mllm import FramePreprocessing, ModelError, preprocess_frames
from zsgrounding.mllm.preprocess import SIGLIP_MEAN, SIGLIP_STD


def _write(directory: Path, name: str, settings: dict) -> None:
    (directory / name).write_text(json.dumps(settings), encoding="utf-8")


def test_defaults_without_a_preprocessor_file(tmp_path: Path) -> None:
    settings = FramePreprocessing.from_checkpoint(tmp_path, size=32)
    assert settings == FramePreprocessing(size=32)
    assert (settings.image_mean, settings.image_std) == (SIGLIP_MEAN, SIGLIP_STD)
    assert settings.resample == Image.Resampling.BICUBIC


def test_settings_from_the_checkpoint(tmp_path: Path) -> None:
    _write(tmp_path, "preprocessor_config.json", {"image_mean": [0.1, 0.2, 0.3], "resample": 2, "size": 999})
    settings = FramePreprocessing.from_checkpoint(tmp_path, size=32)
    assert settings.size == 32  # the tower's size wins over the file's
    assert settings.image_mean == (0.1, 0.2, 0.3)
    assert settings.image_std == SIGLIP_STD
    assert settings.resample == Image.Resampling.BILINEAR
    # The video processor's file, when present, is the one the model saw videos with.
    _write(tmp_path, "video_preprocessor_config.json", {"image_std": 0.25, "do_normalize": False})
    settings = FramePreprocessing.from_checkpoint(tmp_path, size=32)
    assert settings.image_std == (0.25, 0.25, 0.25) and settings.image_mean == SIGLIP_MEAN
    assert not settings.do_normalize


@pytest.mark.parametrize("bad", [{"image_mean": [0.1, 0.2]}, {"resample": 42}])
def test_bad_settings_are_an_error(tmp_path: Path, bad: dict) -> None:
    _write(tmp_path, "preprocessor_config.json", bad)
    with pytest.raises(ModelError, match=r"preprocessor_config\.json"):
        FramePreprocessing.from_checkpoint(tmp_path, size=32)


def test_rescale_and_normalise() -> None:
    frames = np.zeros((2, 20, 30, 3), dtype=np.uint8)
    frames[0] = (255, 0, 51)
    frames[1] = (102, 204, 153)
    settings = FramePreprocessing(size=16, image_mean=(0.5, 0.4, 0.3), image_std=(0.5, 0.25, 0.2))
    pixels = preprocess_frames(frames, settings)
    assert pixels.shape == (2, 3, 16, 16) and pixels.dtype == torch.float32
    mean, std = torch.tensor(settings.image_mean), torch.tensor(settings.image_std)
    for t in range(2):
        expected = (torch.tensor(frames[t, 0, 0], dtype=torch.float32) / 255 - mean) / std
        torch.testing.assert_close(pixels[t], expected.view(3, 1, 1).expand(3, 16, 16))


def test_the_whole_frame_is_kept() -> None:
    # A wide frame with markers at its left and right edges: a centre crop would drop them.
    frames = np.zeros((1, 40, 160, 3), dtype=np.uint8)
    frames[0, :, :20] = 255
    frames[0, :, -20:] = 255
    settings = FramePreprocessing(size=32, do_normalize=False)
    pixels = preprocess_frames(frames, settings)[0, 0]
    assert torch.all(pixels[:, :2] > 0.9) and torch.all(pixels[:, -2:] > 0.9)
    assert torch.all(pixels[:, 10:22].abs() < 0.05)


@pytest.mark.parametrize(
    "frames",
    [np.zeros((4, 4, 3), np.uint8), np.zeros((1, 4, 4, 3), np.float32), np.zeros((0, 4, 4, 3), np.uint8)],
    ids=["no_time_axis", "float", "empty"],
)
def test_bad_frames(frames: np.ndarray) -> None:
    with pytest.raises(ValueError):
        preprocess_frames(frames, FramePreprocessing(size=8))
