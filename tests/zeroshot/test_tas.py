"""Temporal-augmented assembling on a tiny LLaVA-OneVision checkpoint."""

from __future__ import annotations

import pytest
import torch
from tiny_models import QUESTION, make_clip, save_tiny_llava

from zsgrounding.mllm import MLLMAdapter, PreparedInputs, load_adapter
from zsgrounding.mllm.base import reverse_frames, stack_prepared
from zsgrounding.zeroshot.lra import LRAConfig, lra_maps, tune_latent
from zsgrounding.zeroshot.tas import tas_maps

GENERIC = "please describe this video."
LAYERS = (1, 3)


@pytest.fixture(scope="module")
def llava(tmp_path_factory: pytest.TempPathFactory) -> MLLMAdapter:
    return load_adapter(save_tiny_llava(tmp_path_factory.mktemp("tas_llava")))


@pytest.fixture(scope="module")
def inputs(llava: MLLMAdapter) -> tuple[PreparedInputs, PreparedInputs]:
    clip = make_clip(num_frames=3, seed=5)
    return llava.prepare(clip, QUESTION), llava.prepare(clip, GENERIC)


def test_one_batch_equals_two_separate_runs(
    llava: MLLMAdapter, inputs: tuple[PreparedInputs, PreparedInputs]
) -> None:
    # Relative maps: the four rows [fwd sub, rev sub, fwd generic, rev generic] in both forwards.
    sub, generic = inputs
    config = LRAConfig(steps=2, step_size=8.0)
    result = tas_maps(llava, sub, generic, config, LAYERS, relative=True)
    # Separate runs: forward-only LRA on the input and on its reversal, each with its own latent.
    for lra, maps, (s, g) in (
        (result.forward_lra, result.forward_maps, (sub, generic)),
        (result.reversed_lra, result.reversed_maps, (reverse_frames(sub), reverse_frames(generic))),
    ):
        alone = tune_latent(llava, s, g, config)
        torch.testing.assert_close(lra.latent, alone.latent, rtol=0, atol=1e-4)
        torch.testing.assert_close(lra.losses, alone.losses, rtol=0, atol=1e-4)
        expected = lra_maps(llava, s, alone.latent, LAYERS, relative_to=g)
        torch.testing.assert_close(maps, expected, rtol=0, atol=1e-4)
    assert result.forward_lra.updates.tolist() == result.reversed_lra.updates.tolist() == [2]
    # The two latents are different variables: the reversed input tunes its own.
    assert (result.forward_lra.latent - result.reversed_lra.latent).abs().max() > 1e-4
    assert result.maps.shape == (len(sub.special_tokens), *sub.grid_shape)
    torch.testing.assert_close(
        result.maps, result.forward_maps + result.reversed_maps.flip(-3), rtol=0, atol=0
    )


def test_steps_zero_is_plain_attention_assembly(
    llava: MLLMAdapter, inputs: tuple[PreparedInputs, PreparedInputs]
) -> None:
    sub, _ = inputs
    result = tas_maps(llava, sub, None, LRAConfig(steps=0), LAYERS)
    flipped = reverse_frames(sub)
    with torch.no_grad():
        forward = llava.forward(sub, capture=sub.capture_config(LAYERS)).attention
        backward = llava.forward(flipped, capture=flipped.capture_config(LAYERS)).attention
    assert forward is not None and backward is not None
    torch.testing.assert_close(result.forward_maps, sub.to_grid(forward.mean()), rtol=0, atol=1e-6)
    torch.testing.assert_close(result.reversed_maps, flipped.to_grid(backward.mean()), rtol=0, atol=1e-6)
    torch.testing.assert_close(
        result.maps, result.forward_maps + result.reversed_maps.flip(-3), rtol=0, atol=0
    )
    assert torch.equal(result.forward_lra.latent, torch.zeros_like(result.forward_lra.latent))
    assert result.forward_lra.losses.shape == (0, 1)
    # The reversed map really is in reversed frame order: it differs from the forward one.
    assert (result.reversed_maps - result.forward_maps).abs().max() > 1e-6


def test_inputs_are_checked(llava: MLLMAdapter, inputs: tuple[PreparedInputs, PreparedInputs]) -> None:
    sub, generic = inputs
    with pytest.raises(ValueError, match="relative"):
        tas_maps(llava, sub, None, LRAConfig(steps=0), LAYERS, relative=True)
    with pytest.raises(ValueError, match="generic"):
        tas_maps(llava, sub, None, LRAConfig(steps=1), LAYERS)
    with pytest.raises(ValueError, match="one row"):
        tas_maps(llava, sub, stack_prepared([generic, generic]), LRAConfig(steps=1), LAYERS)
