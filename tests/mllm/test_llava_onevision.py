"""LLaVA-OneVision adapter on a tiny random checkpoint: the pooled grid, the newline, the tower input.

The contract every family meets (layout, special tokens, stock equality, capture, gradients) is
checked in ``test_adapter_contract.py``.
"""

from __future__ import annotations

import pytest
import torch
from adapter_checks import cell_change, invert_region
from tiny_models import GRID, IMAGE_SIZE, N_FRAMES, PATCH, QUESTION, make_clip

from zsgrounding.mllm.llava_onevision import LlavaOnevisionAdapter

H, W = GRID
# The perturbed patch (row, col) of the 8 x 8 patch grid and the pooled cell it falls into.
PATCH_RC = (2, 5)
CELL = (PATCH_RC[0] // 2, PATCH_RC[1] // 2)
FRAME = 1


def _perturbed_clip():
    r, c = PATCH_RC
    return invert_region(
        make_clip(), FRAME, slice(r * PATCH, (r + 1) * PATCH), slice(c * PATCH, (c + 1) * PATCH)
    )


def test_pooled_grid_and_one_newline(llava: LlavaOnevisionAdapter) -> None:
    # 8 x 8 patches, 2x bilinear pooling -> 4 x 4 tokens per frame; one newline after the video.
    assert llava.grid_shape == GRID
    assert llava.num_video_tokens(N_FRAMES) == N_FRAMES * H * W + 1


def test_perturbing_one_patch_maps_to_its_pooled_cell(
    llava: LlavaOnevisionAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Features of the patch embedding layer (no attention mixing), through the real projector and
    # pooling: only the pooled cell holding the perturbed patch may change.
    # A list: the int 0 is read as "no hidden states" by transformers 5.23's select_hidden_states.
    monkeypatch.setattr(llava.model.config, "vision_feature_layer", [0])
    base = llava.prepare(make_clip(), QUESTION)
    change = cell_change(base, llava.prepare(_perturbed_clip(), QUESTION))
    expected = torch.zeros(N_FRAMES, H, W, dtype=torch.bool)
    expected[FRAME, CELL[0], CELL[1]] = True
    assert torch.equal(change > 0, expected)


def test_frames_of_any_size_are_squeezed_to_the_tower_input(llava: LlavaOnevisionAdapter) -> None:
    # No cropping: the grid of such a clip is checked in the contract (other frame counts and sizes).
    clip = make_clip(num_frames=2, height=48, width=80, seed=3)
    assert llava.preprocess(clip.frames).shape == (2, 3, IMAGE_SIZE, IMAGE_SIZE)
