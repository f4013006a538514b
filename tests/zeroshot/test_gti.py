"""Tests of zsgrounding.zeroshot.gti: hand-made maps, then maps captured from a tiny real-class model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from zsgrounding.attention import CaptureConfig, capture_attention
from zsgrounding.zeroshot.gti import rows_to_grid, select_grounding_token

# Two special tokens on a one-frame 2 x 2 grid; token 1 has the higher max (0.8 > 0.5).
MAPS = torch.tensor(
    [
        [[[0.5, 0.1], [0.2, 0.0]]],
        [[[0.1, 0.8], [0.3, 0.2]]],
    ]
)


def test_max_activation_picks_the_token_with_the_highest_max():
    result = select_grounding_token(MAPS, "max_activation")
    assert result.token_index == 1
    torch.testing.assert_close(result.evidence, MAPS[1])
    torch.testing.assert_close(result.activations, torch.tensor([0.5, 0.8]))


def test_mean_averages_all_tokens():
    result = select_grounding_token(MAPS, "mean")
    assert result.token_index is None
    torch.testing.assert_close(result.evidence, torch.tensor([[[0.3, 0.45], [0.25, 0.1]]]))


def test_fixed_index_supports_negative_indices():
    maps = torch.stack([MAPS[0], MAPS[1], MAPS[0] * 2])
    last = select_grounding_token(maps, "fixed", fixed_index=-1)
    assert last.token_index == 2
    torch.testing.assert_close(last.evidence, maps[2])
    assert select_grounding_token(maps, "fixed", fixed_index=1).token_index == 1
    with pytest.raises(IndexError):
        select_grounding_token(maps, "fixed", fixed_index=3)
    with pytest.raises(IndexError):
        select_grounding_token(maps, "fixed", fixed_index=-4)


def test_ties_go_to_the_first_token_and_numpy_stays_numpy():
    maps = np.array([[[[0.0, 0.7]]], [[[0.7, 0.1]]], [[[0.2, 0.3]]]])
    result = select_grounding_token(maps)
    assert result.token_index == 0
    assert isinstance(result.evidence, np.ndarray)
    np.testing.assert_allclose(result.activations, [0.7, 0.7, 0.3])
    np.testing.assert_allclose(select_grounding_token(maps, "mean").evidence, [[[0.3, 1.1 / 3]]])


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="unknown GTI method"):
        select_grounding_token(MAPS, "median")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="S >= 1"):
        select_grounding_token(torch.zeros(0, 1, 2, 2))


def test_rows_to_grid_keeps_row_major_frame_order():
    rows = torch.arange(2 * 12, dtype=torch.float32).reshape(2, 12)
    maps = rows_to_grid(rows, (2, 2, 3))
    assert maps.shape == (2, 2, 2, 3)
    # Column k = t * 6 + i * 3 + j.
    assert maps[1, 1, 0, 2].item() == 12 + 6 + 0 + 2
    with pytest.raises(ValueError, match="do not fill"):
        rows_to_grid(rows, (2, 2, 2))


def test_select_on_maps_captured_from_a_tiny_qwen2():
    torch.manual_seed(0)
    config = Qwen2Config(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=100,
        max_position_embeddings=64,
    )
    model = Qwen2ForCausalLM._from_config(config, attn_implementation="sdpa").eval()
    grid = (2, 2, 3)  # T, h, w
    prefix, n_visual, n_special = 3, 12, 4
    visual = list(range(prefix, prefix + n_visual))
    embeds = torch.randn(1, prefix + n_visual + 5 + n_special, 64)
    cfg = CaptureConfig(query_positions=list(range(-n_special, 0)), key_positions=visual)
    with capture_attention(model, cfg) as cap, torch.no_grad():
        model(inputs_embeds=embeds)
    maps = rows_to_grid(cap.mean()[0], grid)
    assert maps.shape == (n_special, *grid)
    result = select_grounding_token(maps)
    per_token_max = maps.reshape(n_special, -1).max(dim=1).values
    assert result.token_index == int(per_token_max.argmax())
    assert result.evidence.shape == grid
    torch.testing.assert_close(result.activations, per_token_max)
    torch.testing.assert_close(result.evidence, maps[result.token_index])
