"""Batched forward of every adapter family: middle padding, position ids, frame reversal."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
import torch
from tiny_models import (
    NV_IMAGE_SIZE,
    QUESTION,
    QWEN_FRAME,
    make_clip,
    save_tiny_llava,
    save_tiny_llava_next_video,
    save_tiny_qwen_vl,
)

from zsgrounding.mllm import MLLMAdapter, PreparedInputs, load_adapter
from zsgrounding.mllm.base import reverse_frames, stack_prepared
from zsgrounding.mllm.llava_onevision import LlavaOnevisionAdapter
from zsgrounding.types import Clip

FAMILIES = ("llava_onevision", "llava_next_video", "qwen2_vl", "qwen2_5_vl")
# Shorter than QUESTION by 6 tokens with the tiny word-level tokenizers.
GENERIC = "please describe this video."


@dataclass
class Case:
    """One family's tiny adapter, a clip and the frame order that reverses its grid frames."""

    adapter: MLLMAdapter
    clip: Clip
    reversed_order: list[int]


@pytest.fixture(scope="module", params=FAMILIES)
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Case:
    directory = tmp_path_factory.mktemp(f"batched_{request.param}")
    if request.param == "llava_onevision":
        adapter = load_adapter(save_tiny_llava(directory))
        return Case(adapter, make_clip(), [2, 1, 0])
    if request.param == "llava_next_video":
        # The reference's stride 4: 6 x 6 tokens per frame keeps the sequence short.
        adapter = load_adapter(save_tiny_llava_next_video(directory), spatial_pool_stride=4)
        return Case(adapter, make_clip(height=NV_IMAGE_SIZE, width=NV_IMAGE_SIZE), [2, 1, 0])
    adapter = load_adapter(save_tiny_qwen_vl(directory, request.param))
    clip = make_clip(num_frames=4, height=QWEN_FRAME[0], width=QWEN_FRAME[1])
    # Grid frames are frame pairs: reversing the grid reverses the pairs, each keeping its order.
    return Case(adapter, clip, [2, 3, 0, 1])


def _run(adapter: MLLMAdapter, prepared: PreparedInputs, delta: torch.Tensor | None = None):
    with torch.no_grad():
        return adapter.forward(prepared, visual_delta=delta, capture=prepared.capture_config())


def test_stack_of_two_questions_equals_separate_forwards(case: Case) -> None:
    long, short = case.adapter.prepare(case.clip, QUESTION), case.adapter.prepare(case.clip, GENERIC)
    gap = long.input_ids.shape[1] - short.input_ids.shape[1]
    assert gap > 0
    batch = stack_prepared([long, short])
    assert batch.input_ids.shape == (2, long.input_ids.shape[1])
    # Padding sits right after the visual slice; grid and tail positions serve both rows.
    prefix = int(torch.cat([long.visual_positions, long.separator_positions]).max()) + 1
    torch.testing.assert_close(batch.attention_mask[0], torch.ones_like(batch.attention_mask[0]))
    assert batch.attention_mask[1].tolist() == [1] * prefix + [0] * gap + [1] * (
        short.input_ids.shape[1] - prefix
    )
    assert torch.equal(batch.visual_grid, long.visual_grid)
    assert torch.equal(batch.special_positions, long.special_positions)

    out, first, second = _run(case.adapter, batch), _run(case.adapter, long), _run(case.adapter, short)
    torch.testing.assert_close(out.logits[0], first.logits[0], rtol=0, atol=1e-4)
    torch.testing.assert_close(out.logits[1], second.logits[0], rtol=0, atol=1e-4)
    assert out.attention is not None and first.attention is not None and second.attention is not None
    assert sorted(out.attention.maps) == sorted(first.attention.maps)
    for layer, rows in out.attention.maps.items():
        torch.testing.assert_close(rows[0], first.attention.maps[layer][0], rtol=0, atol=1e-5)
        torch.testing.assert_close(rows[1], second.attention.maps[layer][0], rtol=0, atol=1e-5)
    grid = batch.to_grid(out.attention.mean())
    assert grid.shape == (2, len(batch.special_tokens), *batch.grid_shape)


def test_stacked_item_of_one_equals_the_plain_forward(case: Case) -> None:
    prepared = case.adapter.prepare(case.clip, QUESTION)
    single = stack_prepared([prepared])
    assert torch.equal(single.inputs_embeds, prepared.inputs_embeds)
    assert torch.equal(single.attention_mask, prepared.attention_mask)
    out, plain = _run(case.adapter, single), _run(case.adapter, prepared)
    torch.testing.assert_close(out.logits, plain.logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.attention.mean(), plain.attention.mean(), rtol=0, atol=1e-6)


def test_reverse_frames_equals_the_reversed_clip(case: Case) -> None:
    prepared = case.adapter.prepare(case.clip, QUESTION)
    flipped = reverse_frames(prepared)
    # Content reversed, times kept: positions (and Qwen2.5-VL's time spacing) stay as they were.
    clip = replace(case.clip, frames=case.clip.frames[case.reversed_order].copy())
    expected = case.adapter.prepare(clip, QUESTION)
    torch.testing.assert_close(flipped.inputs_embeds, expected.inputs_embeds, rtol=0, atol=0)
    torch.testing.assert_close(flipped.frame_ids, prepared.frame_ids.flip(0))
    assert torch.equal(flipped.input_ids, prepared.input_ids)
    for key, value in prepared.model_kwargs.items():
        assert torch.equal(flipped.model_kwargs[key], value)
    torch.testing.assert_close(_run(case.adapter, flipped).logits, _run(case.adapter, expected).logits)
    # The original embeddings are untouched and reversing twice is the identity.
    twice = reverse_frames(flipped)
    torch.testing.assert_close(twice.inputs_embeds, prepared.inputs_embeds, rtol=0, atol=0)
    torch.testing.assert_close(twice.frame_ids, prepared.frame_ids)


def test_visual_delta_is_broadcast_or_per_row(case: Case) -> None:
    long, short = case.adapter.prepare(case.clip, QUESTION), case.adapter.prepare(case.clip, GENERIC)
    batch = stack_prepared([long, short])
    torch.manual_seed(0)
    deltas = torch.randn(2, long.num_visual, long.inputs_embeds.shape[-1])
    shared = _run(case.adapter, batch, deltas[0])
    per_row = _run(case.adapter, batch, deltas)
    torch.testing.assert_close(
        shared.logits[1], _run(case.adapter, short, deltas[0]).logits[0], rtol=0, atol=1e-4
    )
    torch.testing.assert_close(
        per_row.logits[0], _run(case.adapter, long, deltas[0]).logits[0], rtol=0, atol=1e-4
    )
    torch.testing.assert_close(
        per_row.logits[1], _run(case.adapter, short, deltas[1]).logits[0], rtol=0, atol=1e-4
    )
    with pytest.raises(ValueError, match="visual_delta"):
        case.adapter.forward(batch, visual_delta=torch.zeros(3, *deltas.shape[1:]))


def test_padding_needs_the_position_ids(llava: LlavaOnevisionAdapter) -> None:
    # Control: the padded row without our position ids counts the padding and its logits move.
    long, short = llava.prepare(make_clip(), QUESTION), llava.prepare(make_clip(), GENERIC)
    batch = stack_prepared([long, short])
    unpositioned = replace(batch, model_kwargs={})
    with torch.no_grad():
        wrong = llava.forward(unpositioned).logits[1]
        right = llava.forward(short).logits[0]
    assert (wrong - right).abs().max() > 1e-4  # ours agree to ~1e-7


def test_stacks_of_stacks_and_frame_ids(llava: LlavaOnevisionAdapter) -> None:
    long, short = llava.prepare(make_clip(), QUESTION), llava.prepare(make_clip(), GENERIC)
    nested = stack_prepared([stack_prepared([short, long]), short])
    flat = stack_prepared([short, long, short])
    for name in ("input_ids", "inputs_embeds", "attention_mask", "special_positions"):
        assert torch.equal(getattr(nested, name), getattr(flat, name)), name
    assert torch.equal(nested.model_kwargs["position_ids"], flat.model_kwargs["position_ids"])
    assert flat.model_kwargs["position_ids"][0].tolist()[-1] == short.input_ids.shape[1] - 1
    # Rows showing frames in different orders keep one frame id row each.
    both = stack_prepared([long, reverse_frames(long)])
    torch.testing.assert_close(both.frame_ids, torch.tensor([[2, 7, 12], [12, 7, 2]]))
    assert flat.frame_ids.shape == (3,)


def test_stack_refuses_different_layouts(llava: LlavaOnevisionAdapter) -> None:
    three, two = llava.prepare(make_clip(), QUESTION), llava.prepare(make_clip(num_frames=2), QUESTION)
    with pytest.raises(ValueError, match="visual grid"):
        stack_prepared([three, two])
    with pytest.raises(ValueError, match="nothing"):
        stack_prepared([])
    tailless = replace(
        three, special_positions=three.special_positions[1:], special_tokens=three.special_tokens[1:]
    )
    with pytest.raises(ValueError, match="template tail"):
        stack_prepared([three, tailless])
