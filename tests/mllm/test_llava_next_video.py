"""LLaVA-NeXT-Video adapter on a tiny random checkpoint: pooling, grid, prompt, stock equality, capture, gradients."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from tiny_models import (
    N_FRAMES,
    N_HEADS,
    N_LAYERS,
    NV_IMAGE_SIZE,
    NV_PATCH,
    NV_PATCHES,
    NV_SYSTEM,
    QUESTION,
    make_bpe_tokenizer,
    make_clip,
    save_tiny_llava_next_video,
    tiny_llava_next_video_config,
)
from transformers import LlavaNextVideoForConditionalGeneration

from zsgrounding.mllm import REGISTRY, MLLMOutput, ModelError, PreparedInputs, load_adapter
from zsgrounding.mllm.llava_next_video import (
    CLIP_MEAN,
    CLIP_STD,
    VICUNA_VIDEO_TEMPLATE,
    LlavaNextVideoAdapter,
)
from zsgrounding.mllm.registry import entry_for_checkpoint, entry_for_family

# The checkpoint pools its 24 x 24 patches with stride 2 (as the hf 7B one); the reference's
# setting is stride 4, i.e. 6 x 6 tokens per frame.
GRID = (NV_PATCHES // 2, NV_PATCHES // 2)
H, W = GRID
REFERENCE_STRIDE = 4
# The perturbed region: one cell of the stride-2 grid (8 x 8 px), in frame FRAME.
CELL = (3, 9)
FRAME = 1


@pytest.fixture(scope="module")
def nv_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_llava_next_video(tmp_path_factory.mktemp("tiny_llava_next_video"))


@pytest.fixture(scope="module")
def nv(nv_dir: Path) -> LlavaNextVideoAdapter:
    adapter = load_adapter(nv_dir)
    assert isinstance(adapter, LlavaNextVideoAdapter)
    return adapter


@pytest.fixture(scope="module")
def nv_reference(nv_dir: Path) -> LlavaNextVideoAdapter:
    """The same checkpoint with the reference's pooling stride (its own model instance)."""
    adapter = load_adapter(nv_dir, spatial_pool_stride=REFERENCE_STRIDE)
    assert isinstance(adapter, LlavaNextVideoAdapter)
    return adapter


@pytest.fixture(scope="module")
def prepared(nv: LlavaNextVideoAdapter) -> PreparedInputs:
    return nv.prepare(make_clip(height=NV_IMAGE_SIZE, width=NV_IMAGE_SIZE), QUESTION)


def _clip(perturbed: bool = False):
    clip = make_clip(height=NV_IMAGE_SIZE, width=NV_IMAGE_SIZE)
    if perturbed:
        side = NV_PATCH * 2
        rows = slice(CELL[0] * side, (CELL[0] + 1) * side)
        cols = slice(CELL[1] * side, (CELL[1] + 1) * side)
        clip.frames[FRAME, rows, cols] = 255 - clip.frames[FRAME, rows, cols]
    return clip


def _cell_change(a: PreparedInputs, b: PreparedInputs) -> torch.Tensor:
    """Per grid cell L2 change of the embeddings: ``(T, h, w)``."""
    diff = (a.inputs_embeds[0] - b.inputs_embeds[0]).norm(dim=-1)
    return diff[a.visual_grid]


def _stock_logits(adapter: LlavaNextVideoAdapter, prepared: PreparedInputs, clip) -> torch.Tensor:
    with torch.no_grad():
        stock = adapter.model(
            input_ids=prepared.input_ids,
            pixel_values_videos=adapter.preprocess(clip.frames)[None],
            attention_mask=prepared.attention_mask,
            logits_to_keep=1,
        )
    return stock.logits[:, -1]


def test_token_layout(nv: LlavaNextVideoAdapter, prepared: PreparedInputs) -> None:
    n = prepared.input_ids.shape[1]
    assert (nv.spatial_pool_stride, nv.spatial_pool_mode) == (2, "average")
    assert nv.grid_shape == GRID
    assert prepared.grid_shape == (N_FRAMES, H, W)
    assert nv.num_video_tokens(N_FRAMES) == N_FRAMES * H * W
    # Every <video> token is a grid token: contiguous, frame-major, no newline for videos.
    video = (prepared.input_ids[0] == nv.video_token_id).nonzero().flatten().cpu()
    torch.testing.assert_close(prepared.visual_positions, video, rtol=0, atol=0)
    assert video.numel() == N_FRAMES * H * W and int(video[-1] - video[0]) == video.numel() - 1
    assert prepared.separator_positions.numel() == 0
    # The BOS the processor's tokenizer call adds is counted.
    assert int(prepared.input_ids[0, 0]) == nv.tokenizer.bos_token_id
    assert prepared.answer_position == n - 1
    assert prepared.inputs_embeds.shape == (1, n, nv.model.config.text_config.hidden_size)
    torch.testing.assert_close(prepared.frame_ids, torch.tensor([2, 7, 12]))


def test_special_tokens_are_the_pieces_of_the_assistant_header(
    nv: LlavaNextVideoAdapter, prepared: PreparedInputs
) -> None:
    assert prepared.special_tokens == ["ĠASSISTANT", ":"]
    ids = prepared.input_ids[0, prepared.special_positions].tolist()
    assert nv.tokenizer.decode(ids) == " ASSISTANT:"
    assert int(prepared.special_positions[-1]) == prepared.answer_position
    before = int(prepared.special_positions[0]) - 1
    assert nv.tokenizer.convert_ids_to_tokens(int(prepared.input_ids[0, before])) == "?"
    # The checkpoint's template (chat_template.json, with its system line) rendered the prompt.
    assert nv.render_prompt(QUESTION) == f"<s>{NV_SYSTEM} USER: <video>\n{QUESTION} ASSISTANT:"


def test_yes_no_ids_take_the_leading_space(nv: LlavaNextVideoAdapter) -> None:
    # After "ASSISTANT:" the answer starts with a space: "Ġyes", not the line-start "yes".
    assert nv.tokenizer.convert_ids_to_tokens([nv.yes_id, nv.no_id]) == ["Ġyes", "Ġno"]
    assert nv.tokenizer.decode([nv.yes_id]) == " yes"
    assert nv.tokenizer.decode([nv.no_id]) == " no"
    assert nv.yes_id != nv.tokenizer.convert_tokens_to_ids("yes") != nv.tokenizer.unk_token_id


def test_perturbing_one_region_changes_only_its_frame(
    nv: LlavaNextVideoAdapter, prepared: PreparedInputs
) -> None:
    perturbed = nv.prepare(_clip(perturbed=True), QUESTION)
    change = _cell_change(prepared, perturbed)
    others = [t for t in range(N_FRAMES) if t != FRAME]
    assert torch.all(change[others] == 0)
    assert torch.all(change[FRAME] > 0)  # the vision tower's self-attention mixes the frame
    assert divmod(int(change[FRAME].argmax()), W) == CELL  # ... the perturbed cell most
    outside = torch.ones(prepared.input_ids.shape[1], dtype=torch.bool)
    outside[prepared.visual_positions] = False
    torch.testing.assert_close(
        perturbed.inputs_embeds[0, outside], prepared.inputs_embeds[0, outside], rtol=0, atol=0
    )


@pytest.mark.parametrize("stride", [2, REFERENCE_STRIDE])
def test_perturbing_one_region_maps_to_its_pooled_cell(
    nv: LlavaNextVideoAdapter,
    nv_reference: LlavaNextVideoAdapter,
    stride: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Features of the patch embedding layer (no attention mixing), through the real pooling and
    # projector: only the pooled cell holding the perturbed region may change.
    adapter = nv if stride == 2 else nv_reference
    side = NV_PATCHES // stride
    assert adapter.grid_shape == (side, side)
    # A list: the int 0 is read as "no hidden states" by transformers 5.23's select_hidden_states.
    monkeypatch.setattr(adapter.model.config, "vision_feature_layer", [0])
    base = adapter.prepare(_clip(), QUESTION)
    change = _cell_change(base, adapter.prepare(_clip(perturbed=True), QUESTION))
    assert change.shape == (N_FRAMES, side, side)
    expected = torch.zeros(N_FRAMES, side, side, dtype=torch.bool)
    expected[FRAME, CELL[0] * 2 // stride, CELL[1] * 2 // stride] = True
    assert torch.equal(change > 0, expected)


def test_reference_stride_gives_six_by_six(nv_reference: LlavaNextVideoAdapter) -> None:
    clip = _clip()
    prepared = nv_reference.prepare(clip, QUESTION)
    assert nv_reference.model.config.spatial_pool_stride == REFERENCE_STRIDE
    assert prepared.grid_shape == (N_FRAMES, 6, 6)
    assert int((prepared.input_ids == nv_reference.video_token_id).sum()) == N_FRAMES * 36
    # The model's own forward pools the same way (its pooling module was rebuilt).
    with torch.no_grad():
        ours = nv_reference.forward(prepared).logits
    torch.testing.assert_close(ours, _stock_logits(nv_reference, prepared, clip), rtol=0, atol=1e-5)


def test_pooling_settings_come_from_the_checkpoint(tmp_path: Path) -> None:
    adapter = load_adapter(
        save_tiny_llava_next_video(tmp_path, spatial_pool_stride=3, spatial_pool_mode="max")
    )
    assert (adapter.spatial_pool_stride, adapter.spatial_pool_mode) == (3, "max")
    assert adapter.grid_shape == (8, 8)
    clip = make_clip(num_frames=2, height=NV_IMAGE_SIZE, width=NV_IMAGE_SIZE)
    prepared = adapter.prepare(clip, QUESTION)
    assert prepared.grid_shape == (2, 8, 8)
    with torch.no_grad():
        ours = adapter.forward(prepared).logits
    torch.testing.assert_close(ours, _stock_logits(adapter, prepared, clip), rtol=0, atol=1e-5)
    # Setting the config's stride before features are computed is honoured too.
    adapter.model.config.spatial_pool_stride = 6
    assert adapter.prepare(clip, QUESTION).grid_shape == (2, 4, 4)


def test_bad_pooling_overrides_are_errors(nv: LlavaNextVideoAdapter) -> None:
    with pytest.raises(ModelError, match="must divide"):
        nv.set_spatial_pool_stride(5)  # 24 % 5: the grid would not cover the whole frame
    assert nv.spatial_pool_stride == 2 and nv.grid_shape == GRID
    tokenizer = make_bpe_tokenizer()
    torch.manual_seed(0)
    conv = LlavaNextVideoForConditionalGeneration(
        tiny_llava_next_video_config(tokenizer, spatial_pool_mode="conv")
    )
    with pytest.raises(ModelError, match="'conv' spatial pooling"):
        LlavaNextVideoAdapter(conv, tokenizer, spatial_pool_stride=REFERENCE_STRIDE)
    assert conv.config.spatial_pool_stride == 2
    # Its own stride works: the conv pooling is the model's.
    adapter = LlavaNextVideoAdapter(conv, tokenizer)
    clip = make_clip(num_frames=1, height=NV_IMAGE_SIZE, width=NV_IMAGE_SIZE)
    assert adapter.prepare(clip, QUESTION).grid_shape == (1, H, W)


def test_forward_matches_the_stock_forward(nv: LlavaNextVideoAdapter, prepared: PreparedInputs) -> None:
    with torch.no_grad():
        ours = nv.forward(prepared)
    assert ours.logits.shape == (1, nv.model.config.text_config.vocab_size)
    torch.testing.assert_close(ours.logits, _stock_logits(nv, prepared, _clip()), rtol=0, atol=1e-5)


def test_hidden_states_are_what_the_head_reads(nv: LlavaNextVideoAdapter, prepared: PreparedInputs) -> None:
    with torch.no_grad():
        out = nv.forward(prepared, output_hidden_states=True)
        head = nv.model.lm_head(out.hidden_states[:, -1])
    assert out.hidden_states.shape == prepared.inputs_embeds.shape
    torch.testing.assert_close(head, out.logits, rtol=0, atol=1e-5)


def _eager_rows(nv: LlavaNextVideoAdapter, prepared: PreparedInputs) -> list[torch.Tensor]:
    """Per layer ``(1, S, V)`` head-mean rows of the eager attention maps."""
    nv.model.set_attn_implementation({"text_config": "eager"})
    try:
        with torch.no_grad():
            out = nv.model(
                inputs_embeds=prepared.inputs_embeds,
                attention_mask=prepared.attention_mask,
                output_attentions=True,
                logits_to_keep=1,
            )
    finally:
        nv.model.set_attn_implementation({"text_config": "sdpa"})
    rows, cols = prepared.special_positions, prepared.visual_positions
    return [layer[:, :, rows][..., cols].mean(dim=1) for layer in out.attentions]


def test_capture_matches_eager_rows(nv: LlavaNextVideoAdapter, prepared: PreparedInputs) -> None:
    with torch.no_grad():
        plain = nv.forward(prepared)
        out = nv.forward(prepared, capture=prepared.capture_config())
    assert isinstance(out, MLLMOutput) and out.attention is not None
    torch.testing.assert_close(out.logits, plain.logits, rtol=0, atol=1e-6)
    eager = _eager_rows(nv, prepared)
    s, v = prepared.special_positions.numel(), prepared.num_visual
    assert sorted(out.attention.maps) == list(range(N_LAYERS))
    for layer in range(N_LAYERS):
        got = out.attention.maps[layer]
        assert got.shape == (1, s, v)
        torch.testing.assert_close(got, eager[layer], rtol=0, atol=1e-5)
    grid = prepared.to_grid(out.attention.mean())
    assert grid.shape == (s, N_FRAMES, H, W)
    t, i, j = 2, 5, 7
    flat = t * H * W + i * W + j
    assert int(prepared.visual_grid[t, i, j]) == int(prepared.visual_positions[flat])
    torch.testing.assert_close(grid[:, t, i, j], out.attention.mean()[0, :, flat])


def test_per_head_capture_in_a_layer_window(nv: LlavaNextVideoAdapter, prepared: PreparedInputs) -> None:
    with torch.no_grad():
        out = nv.forward(prepared, capture=prepared.capture_config(layers=(1, 3), per_head=True))
    assert sorted(out.attention.maps) == [1, 2]
    grid = prepared.to_grid(out.attention.maps[1])
    assert grid.shape == (N_HEADS, prepared.special_positions.numel(), N_FRAMES, H, W)


def test_gradient_reaches_the_visual_delta(nv: LlavaNextVideoAdapter, prepared: PreparedInputs) -> None:
    torch.manual_seed(0)
    delta = torch.zeros(prepared.num_visual, prepared.inputs_embeds.shape[-1], requires_grad=True)
    out = nv.forward(prepared, visual_delta=delta)
    score = nv.yes_no_score(out)
    assert score.shape == (1,)
    score.sum().backward()
    assert delta.grad is not None and delta.grad.shape == delta.shape
    assert torch.isfinite(delta.grad).all()
    assert delta.grad.abs().sum() > 0
    before = prepared.inputs_embeds.clone()
    with torch.no_grad():
        moved = nv.forward(prepared, visual_delta=torch.randn_like(delta))
    assert not torch.allclose(moved.logits, out.logits.detach())
    torch.testing.assert_close(prepared.inputs_embeds, before, rtol=0, atol=0)


def test_other_frame_counts_and_sizes(nv: LlavaNextVideoAdapter) -> None:
    # Native frames of any size are squeezed to the tower's input (no centre crop).
    clip = make_clip(num_frames=2, height=60, width=130, seed=3)
    prepared = nv.prepare(clip, "please describe this video.")
    assert prepared.grid_shape == (2, H, W)
    assert nv.preprocess(clip.frames).shape == (2, 3, NV_IMAGE_SIZE, NV_IMAGE_SIZE)
    assert prepared.special_tokens == ["ĠASSISTANT", ":"]


def test_registry_loads_by_directory_and_family(nv_dir: Path) -> None:
    assert entry_for_checkpoint(nv_dir) is REGISTRY["llava_next_video"]
    assert entry_for_family("LLaVA-NeXT-Video").adapter_class() is LlavaNextVideoAdapter
    adapter = load_adapter(nv_dir, family="llava-next-video", num_frames=8, dtype=torch.bfloat16)
    assert isinstance(adapter, LlavaNextVideoAdapter)
    assert adapter.num_frames == 8 and adapter.model.dtype == torch.bfloat16
    # The video preprocessor file is read; it has no mean / std, so CLIP's apply.
    assert adapter.preprocessing.source == nv_dir / "video_preprocessor_config.json"
    assert (adapter.preprocessing.image_mean, adapter.preprocessing.image_std) == (CLIP_MEAN, CLIP_STD)
    assert adapter.preprocessing.resample == 3
    prepared = adapter.prepare(make_clip(num_frames=1, height=NV_IMAGE_SIZE, width=NV_IMAGE_SIZE), QUESTION)
    assert adapter.forward(prepared).logits.dtype == torch.bfloat16


def test_default_template_without_one_in_the_checkpoint(nv_dir: Path, tmp_path: Path) -> None:
    checkpoint = Path(shutil.copytree(nv_dir, tmp_path / "ckpt"))
    (checkpoint / "chat_template.json").unlink()
    (checkpoint / "video_preprocessor_config.json").unlink()
    adapter = load_adapter(checkpoint)
    assert adapter.chat_template == VICUNA_VIDEO_TEMPLATE
    assert adapter.preprocessing.source is None and adapter.preprocessing.image_mean == CLIP_MEAN
    assert adapter.render_prompt(QUESTION) == f"<s>USER: <video>\n{QUESTION} ASSISTANT:"
    prepared = adapter.prepare(make_clip(num_frames=1, height=NV_IMAGE_SIZE, width=NV_IMAGE_SIZE), QUESTION)
    assert prepared.special_tokens == ["ĠASSISTANT", ":"]
    assert adapter.tokenizer.decode([adapter.yes_id]) == " yes"
    # A tokenizer template wins over the default (and a template that writes <s> itself keeps one).
    tokenizer_config = json.loads((checkpoint / "tokenizer_config.json").read_text("utf-8"))
    tokenizer_config["chat_template"] = "{{ bos_token }}" + VICUNA_VIDEO_TEMPLATE.replace(
        "ASSISTANT:", "GPT:"
    )
    (checkpoint / "tokenizer_config.json").write_text(json.dumps(tokenizer_config), "utf-8")
    adapter = load_adapter(checkpoint)
    assert adapter.chat_template is None
    assert adapter.render_prompt(QUESTION) == f"<s>USER: <video>\n{QUESTION} GPT:"
