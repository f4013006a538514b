"""LLaVA-OneVision adapter on a tiny random checkpoint: grid, prompt, stock equality, capture, gradients."""

from __future__ import annotations

import pytest
import torch
from tiny_models import GRID, IMAGE_SIZE, N_FRAMES, N_HEADS, N_LAYERS, PATCH, QUESTION, make_clip

from zsgrounding.mllm import MLLMOutput, PreparedInputs
from zsgrounding.mllm.llava_onevision import LlavaOnevisionAdapter

H, W = GRID
# The perturbed patch (row, col) of the 8 x 8 patch grid and the pooled cell it falls into.
PATCH_RC = (2, 5)
CELL = (PATCH_RC[0] // 2, PATCH_RC[1] // 2)
FRAME = 1


@pytest.fixture(scope="module")
def prepared(llava: LlavaOnevisionAdapter) -> PreparedInputs:
    return llava.prepare(make_clip(), QUESTION)


def _perturbed_clip():
    clip = make_clip()
    r, c = PATCH_RC
    clip.frames[FRAME, r * PATCH : (r + 1) * PATCH, c * PATCH : (c + 1) * PATCH] = (
        255 - clip.frames[FRAME, r * PATCH : (r + 1) * PATCH, c * PATCH : (c + 1) * PATCH]
    )
    return clip


def _cell_change(a: PreparedInputs, b: PreparedInputs) -> torch.Tensor:
    """Per grid cell L2 change of the embeddings: ``(T, h, w)``."""
    diff = (a.inputs_embeds[0] - b.inputs_embeds[0]).norm(dim=-1)
    return diff[a.visual_grid]


def test_token_layout(llava: LlavaOnevisionAdapter, prepared: PreparedInputs) -> None:
    n = prepared.input_ids.shape[1]
    assert llava.grid_shape == GRID
    assert prepared.grid_shape == (N_FRAMES, H, W)
    assert llava.num_video_tokens(N_FRAMES) == N_FRAMES * H * W + 1
    # The grid is contiguous, frame-major, and one newline token follows the whole video.
    start = int(prepared.visual_grid[0, 0, 0])
    torch.testing.assert_close(
        prepared.visual_positions, torch.arange(start, start + N_FRAMES * H * W), rtol=0, atol=0
    )
    torch.testing.assert_close(prepared.separator_positions, torch.tensor([start + N_FRAMES * H * W]))
    video = (prepared.input_ids[0] == llava.video_token_id).nonzero().flatten().cpu()
    torch.testing.assert_close(video, torch.cat([prepared.visual_positions, prepared.separator_positions]))
    assert prepared.answer_position == n - 1
    assert prepared.inputs_embeds.shape == (1, n, llava.model.config.text_config.hidden_size)
    assert prepared.attention_mask.shape == (1, n)
    torch.testing.assert_close(prepared.frame_ids, torch.tensor([2, 7, 12]))


def test_special_tokens_follow_the_question(llava: LlavaOnevisionAdapter, prepared: PreparedInputs) -> None:
    expected = ["<|im_end|>", "\n", "<|im_start|>", "assistant", "\n"]
    assert prepared.special_tokens == expected
    ids = prepared.input_ids[0, prepared.special_positions].tolist()
    assert llava.tokenizer.convert_ids_to_tokens(ids) == expected
    assert int(prepared.special_positions[-1]) == prepared.answer_position
    # The token just before the special ones is the question's last token.
    before = int(prepared.special_positions[0]) - 1
    assert llava.tokenizer.convert_ids_to_tokens(int(prepared.input_ids[0, before])) == "?"


def test_yes_no_ids(llava: LlavaOnevisionAdapter) -> None:
    assert llava.tokenizer.decode([llava.yes_id]) == "yes"
    assert llava.tokenizer.decode([llava.no_id]) == "no"


def test_perturbing_one_patch_changes_only_its_frame(
    llava: LlavaOnevisionAdapter, prepared: PreparedInputs
) -> None:
    perturbed = llava.prepare(_perturbed_clip(), QUESTION)
    change = _cell_change(prepared, perturbed)
    others = [t for t in range(N_FRAMES) if t != FRAME]
    assert torch.all(change[others] == 0)
    assert torch.all(change[FRAME] > 0)  # the vision tower's self-attention mixes the frame
    # ... but the perturbed cell changes most.
    assert divmod(int(change[FRAME].argmax()), W) == CELL
    # Text, newline and everything outside the grid are untouched.
    outside = torch.ones(prepared.input_ids.shape[1], dtype=torch.bool)
    outside[prepared.visual_positions] = False
    torch.testing.assert_close(
        perturbed.inputs_embeds[0, outside], prepared.inputs_embeds[0, outside], rtol=0, atol=0
    )


def test_perturbing_one_patch_maps_to_its_pooled_cell(
    llava: LlavaOnevisionAdapter, prepared: PreparedInputs, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Features of the patch embedding layer (no attention mixing), through the real projector and
    # pooling: only the pooled cell holding the perturbed patch may change.
    # A list: the int 0 is read as "no hidden states" by transformers 5.23's select_hidden_states.
    monkeypatch.setattr(llava.model.config, "vision_feature_layer", [0])
    base = llava.prepare(make_clip(), QUESTION)
    change = _cell_change(base, llava.prepare(_perturbed_clip(), QUESTION))
    expected = torch.zeros(N_FRAMES, H, W, dtype=torch.bool)
    expected[FRAME, CELL[0], CELL[1]] = True
    assert torch.equal(change > 0, expected)


def test_forward_matches_the_stock_forward(llava: LlavaOnevisionAdapter, prepared: PreparedInputs) -> None:
    clip = make_clip()
    with torch.no_grad():
        ours = llava.forward(prepared)
        stock = llava.model(
            input_ids=prepared.input_ids,
            pixel_values_videos=llava.preprocess(clip.frames)[None],
            attention_mask=prepared.attention_mask,
            logits_to_keep=1,
        )
    assert ours.logits.shape == (1, llava.model.config.text_config.vocab_size)
    torch.testing.assert_close(ours.logits, stock.logits[:, -1], rtol=0, atol=1e-5)


def test_hidden_states_are_what_the_head_reads(
    llava: LlavaOnevisionAdapter, prepared: PreparedInputs
) -> None:
    with torch.no_grad():
        out = llava.forward(prepared, output_hidden_states=True)
        head = llava.model.lm_head(out.hidden_states[:, -1])
    assert out.hidden_states.shape == prepared.inputs_embeds.shape
    torch.testing.assert_close(head, out.logits, rtol=0, atol=1e-5)


def _eager_rows(llava: LlavaOnevisionAdapter, prepared: PreparedInputs) -> list[torch.Tensor]:
    """Per layer ``(1, S, V)`` head-mean rows of the eager attention maps."""
    llava.model.set_attn_implementation({"text_config": "eager"})
    try:
        with torch.no_grad():
            out = llava.model(
                inputs_embeds=prepared.inputs_embeds,
                attention_mask=prepared.attention_mask,
                output_attentions=True,
                logits_to_keep=1,
            )
    finally:
        llava.model.set_attn_implementation({"text_config": "sdpa"})
    rows, cols = prepared.special_positions, prepared.visual_positions
    return [layer[:, :, rows][..., cols].mean(dim=1) for layer in out.attentions]


def test_capture_matches_eager_rows(llava: LlavaOnevisionAdapter, prepared: PreparedInputs) -> None:
    with torch.no_grad():
        plain = llava.forward(prepared)
        out = llava.forward(prepared, capture=prepared.capture_config())
    assert isinstance(out, MLLMOutput) and out.attention is not None
    torch.testing.assert_close(out.logits, plain.logits, rtol=0, atol=1e-6)
    eager = _eager_rows(llava, prepared)
    s, v = prepared.special_positions.numel(), prepared.num_visual
    assert sorted(out.attention.maps) == list(range(N_LAYERS))
    for layer in range(N_LAYERS):
        got = out.attention.maps[layer]
        assert got.shape == (1, s, v)
        torch.testing.assert_close(got, eager[layer], rtol=0, atol=1e-5)
    grid = prepared.to_grid(out.attention.mean())
    assert grid.shape == (s, N_FRAMES, H, W)
    # Grid cell (t, i, j) is the key at visual_grid[t, i, j].
    t, i, j = 2, 1, 3
    flat = t * H * W + i * W + j
    assert int(prepared.visual_grid[t, i, j]) == int(prepared.visual_positions[flat])
    torch.testing.assert_close(grid[:, t, i, j], out.attention.mean()[0, :, flat])


def test_per_head_capture_in_a_layer_window(llava: LlavaOnevisionAdapter, prepared: PreparedInputs) -> None:
    with torch.no_grad():
        out = llava.forward(prepared, capture=prepared.capture_config(layers=(1, 3), per_head=True))
    assert sorted(out.attention.maps) == [1, 2]
    grid = prepared.to_grid(out.attention.maps[1])
    assert grid.shape == (N_HEADS, prepared.special_positions.numel(), N_FRAMES, H, W)


def test_gradient_reaches_the_visual_delta(llava: LlavaOnevisionAdapter, prepared: PreparedInputs) -> None:
    torch.manual_seed(0)
    delta = torch.zeros(prepared.num_visual, prepared.inputs_embeds.shape[-1], requires_grad=True)
    out = llava.forward(prepared, visual_delta=delta)
    with torch.no_grad():
        torch.testing.assert_close(out.logits, llava.forward(prepared).logits, rtol=0, atol=0)
    score = llava.yes_no_score(out)
    assert score.shape == (1,)
    score.sum().backward()
    assert delta.grad is not None and delta.grad.shape == delta.shape
    assert torch.isfinite(delta.grad).all()
    assert delta.grad.abs().sum() > 0
    # A non-zero delta moves the answer logits; the prepared embeddings stay as they were.
    before = prepared.inputs_embeds.clone()
    with torch.no_grad():
        moved = llava.forward(prepared, visual_delta=torch.randn_like(delta))
    assert not torch.allclose(moved.logits, out.logits.detach())
    torch.testing.assert_close(prepared.inputs_embeds, before, rtol=0, atol=0)


def test_visual_delta_shape_is_checked(llava: LlavaOnevisionAdapter, prepared: PreparedInputs) -> None:
    with pytest.raises(ValueError, match="visual_delta"):
        llava.forward(prepared, visual_delta=torch.zeros(prepared.num_visual + 1, 64))


def test_other_frame_counts_and_sizes(llava: LlavaOnevisionAdapter) -> None:
    # Native frames of any size are squeezed to the tower's input (no cropping).
    clip = make_clip(num_frames=2, height=48, width=80, seed=3)
    prepared = llava.prepare(clip, "please describe this video.")
    assert prepared.grid_shape == (2, H, W)
    assert llava.preprocess(clip.frames).shape == (2, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert prepared.special_tokens[0] == "<|im_end|>"
