"""LLaVA-NeXT-Video adapter on a tiny random checkpoint: pooling, BOS, Vicuna prompt, answer pieces, loading.

The contract every family meets (layout, special tokens, stock equality, capture, gradients) is
checked in ``test_adapter_contract.py``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from adapter_checks import cell_change, invert_region, stock_logits
from tiny_models import (
    N_FRAMES,
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

from zsgrounding.mllm import REGISTRY, ModelError, PreparedInputs, load_adapter
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
    if not perturbed:
        return clip
    side = NV_PATCH * 2
    rows = slice(CELL[0] * side, (CELL[0] + 1) * side)
    cols = slice(CELL[1] * side, (CELL[1] + 1) * side)
    return invert_region(clip, FRAME, rows, cols)


def test_pooled_grid_no_newline_and_bos(nv: LlavaNextVideoAdapter, prepared: PreparedInputs) -> None:
    assert (nv.spatial_pool_stride, nv.spatial_pool_mode) == (2, "average")
    assert nv.grid_shape == GRID
    # Every <video> token is a grid token: no newline for videos.
    assert nv.num_video_tokens(N_FRAMES) == N_FRAMES * H * W
    # The BOS the processor's tokenizer call adds is counted.
    assert int(prepared.input_ids[0, 0]) == nv.tokenizer.bos_token_id


def test_special_tokens_are_the_pieces_of_the_assistant_header(
    nv: LlavaNextVideoAdapter, prepared: PreparedInputs
) -> None:
    ids = prepared.input_ids[0, prepared.special_positions].tolist()
    assert nv.tokenizer.decode(ids) == " ASSISTANT:"
    # The checkpoint's template (chat_template.json, with its system line) rendered the prompt.
    assert nv.render_prompt(QUESTION) == f"<s>{NV_SYSTEM} USER: <video>\n{QUESTION} ASSISTANT:"


def test_yes_no_ids_take_the_leading_space(nv: LlavaNextVideoAdapter) -> None:
    # After "ASSISTANT:" the answer starts with a space: "Ġyes", not the line-start "yes".
    assert nv.tokenizer.convert_ids_to_tokens([nv.yes_id, nv.no_id]) == ["Ġyes", "Ġno"]
    assert nv.yes_id != nv.tokenizer.convert_tokens_to_ids("yes") != nv.tokenizer.unk_token_id


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
    change = cell_change(base, adapter.prepare(_clip(perturbed=True), QUESTION))
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
    torch.testing.assert_close(ours, stock_logits(nv_reference, prepared, clip), rtol=0, atol=1e-5)


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
    torch.testing.assert_close(ours, stock_logits(adapter, prepared, clip), rtol=0, atol=1e-5)
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


def test_frames_of_any_size_are_squeezed_to_the_tower_input(nv: LlavaNextVideoAdapter) -> None:
    # No centre crop: the grid of such a clip is checked in the contract (other frame counts and sizes).
    clip = make_clip(num_frames=2, height=60, width=130, seed=3)
    assert nv.preprocess(clip.frames).shape == (2, 3, NV_IMAGE_SIZE, NV_IMAGE_SIZE)


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
