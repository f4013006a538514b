"""AdapterOptions: the released zero-shot STVG code's way of feeding each family, on tiny checkpoints.

Each option is checked against the operation written out here from its definition (pooling
after the projector, the conversation templates, the bare answer pieces, the latent over the
newline, repeated Qwen2-VL frames).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny_models import (
    IMAGE_SIZE,
    PATCH,
    QUESTION,
    make_clip,
    save_tiny_llava,
    save_tiny_llava_next_video,
    save_tiny_qwen_vl,
)

from zsgrounding.mllm import ModelError, load_adapter
from zsgrounding.mllm.base import add_visual_delta
from zsgrounding.mllm.options import QWEN_1_5_TEMPLATE, VICUNA_V1_SYSTEM, AdapterOptions
from zsgrounding.zeroshot.lra import LRAConfig, tune_latent


@pytest.fixture(scope="module")
def nv_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_llava_next_video(tmp_path_factory.mktemp("opt_nv"))


@pytest.fixture(scope="module")
def ov_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_llava(tmp_path_factory.mktemp("opt_ov"))


def _patch_tokens(model: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """The tower's selected-layer patch tokens, CLS dropped as the ``default`` strategy does."""
    config = model.config
    hidden = model.model.vision_tower(pixels, output_hidden_states=True).hidden_states[
        config.vision_feature_layer
    ]
    return hidden[:, 1:] if config.vision_feature_select_strategy == "default" else hidden


def test_llava_next_video_pools_after_the_projector(nv_dir: Path) -> None:
    options = AdapterOptions(pool_stride=4, pool_order="project_then_pool")
    adapter = load_adapter(nv_dir, options=options)
    pixels = adapter.preprocess(make_clip(num_frames=2, height=96, width=96).frames)
    with torch.no_grad():
        projected = adapter.model.model.multi_modal_projector(_patch_tokens(adapter.model, pixels))
        t, n, d = projected.shape
        side = int(n**0.5)
        grid = projected.reshape(t, side, side, d).permute(0, 3, 1, 2)
        expected = F.avg_pool2d(grid, 4).flatten(2).transpose(1, 2).reshape(-1, d)
        ours = adapter.video_features(pixels)
    assert adapter.grid_shape == (6, 6) and ours.shape == (2 * 36, d)
    torch.testing.assert_close(ours, expected)
    # transformers' order (pool, then project) gives other tokens: the projector is not linear.
    checkpoint_order = load_adapter(nv_dir, options=AdapterOptions(pool_stride=4))
    with torch.no_grad():
        assert not torch.allclose(checkpoint_order.video_features(pixels), ours, atol=1e-4)


def test_llava_onevision_pool_stride_is_the_same_bilinear_resize(ov_dir: Path) -> None:
    adapter = load_adapter(ov_dir, options=AdapterOptions(pool_stride=5))
    patches = IMAGE_SIZE // PATCH
    side = -(-patches // 5)
    assert adapter.grid_shape == (side, side)
    pixels = adapter.preprocess(make_clip(num_frames=2).frames)
    with torch.no_grad():
        projected = adapter.model.model.multi_modal_projector(_patch_tokens(adapter.model, pixels))
        d = projected.shape[-1]
        grid = projected.reshape(2, patches, patches, d).permute(0, 3, 1, 2)
        pooled = F.interpolate(grid, size=(side, side), mode="bilinear", align_corners=False)
        expected = torch.cat(
            [pooled.permute(0, 2, 3, 1).reshape(-1, d), adapter.model.model.image_newline[None]]
        )
        torch.testing.assert_close(adapter.video_features(pixels), expected)
    # Stride 2 is transformers' own path.
    plain = load_adapter(ov_dir)
    with torch.no_grad():
        own = plain.model.get_video_features(
            pixel_values_videos=pixels[None], return_dict=True
        ).pooler_output[0]
        torch.testing.assert_close(plain.video_features(pixels), own)


def test_vicuna_reference_prompt_is_tokenized_in_two_pieces(nv_dir: Path) -> None:
    adapter = load_adapter(nv_dir, options=AdapterOptions(prompt="reference", pool_stride=4))
    text = adapter.render_prompt(QUESTION)
    assert text == f"<s>{VICUNA_V1_SYSTEM} USER: <video>\n{QUESTION} ASSISTANT:"
    prepared = adapter.prepare(make_clip(num_frames=2, height=96, width=96), QUESTION)
    tok = adapter.tokenizer
    head, tail = text.split("<video>")
    before = tok(head, add_special_tokens=False)["input_ids"]
    after = tok(tail, add_special_tokens=False)["input_ids"]
    expected = before + [adapter.video_token_id] * (2 * 36) + after
    assert prepared.input_ids[0].tolist() == expected
    # The tokens after the question are the end of "ASSISTANT:", read off the second piece.
    assert "".join(prepared.special_tokens).replace("Ġ", " ").strip() == "ASSISTANT:"


def test_qwen_1_5_reference_template(ov_dir: Path) -> None:
    adapter = load_adapter(ov_dir, options=AdapterOptions(prompt="reference"))
    assert adapter.chat_template == QWEN_1_5_TEMPLATE
    assert adapter.render_prompt(QUESTION) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<video>\n"
        f"{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
    )


def test_bare_answer_pieces(nv_dir: Path) -> None:
    # Byte-level BPE tells "yes" from " yes" ("Ġyes"): after "ASSISTANT:" the model would write the
    # latter; the released code reads the former.
    continuation = load_adapter(nv_dir)
    bare = load_adapter(nv_dir, options=AdapterOptions(answer_tokens="bare"))
    tok = bare.tokenizer
    assert (bare.yes_id, bare.no_id) == tuple(tok.convert_tokens_to_ids(["yes", "no"]))
    assert tok.convert_ids_to_tokens(continuation.yes_id) == "Ġyes"
    assert bare.yes_id != continuation.yes_id
    missing = load_adapter(nv_dir, options=AdapterOptions(answer_tokens="bare"), answer_words=("yess", "no"))
    with pytest.raises(ModelError, match="no vocabulary piece 'yess'"):
        _ = missing.yes_id


def test_latent_on_the_newline(ov_dir: Path) -> None:
    adapter = load_adapter(ov_dir, options=AdapterOptions(latent_on_separators=True))
    clip = make_clip(num_frames=2)
    sub, generic = adapter.prepare(clip, QUESTION), adapter.prepare(clip, "please describe this video")
    assert sub.num_latent == sub.num_visual + 1
    assert sub.latent_positions[-1] == sub.separator_positions[0]
    tuned = tune_latent(adapter, sub, generic, LRAConfig(steps=2, step_size=1.0, schedule="reference"))
    assert tuned.latent.shape == (1, sub.num_visual + 1, sub.inputs_embeds.shape[-1])
    assert float(tuned.latent[0, -1].abs().max()) > 0  # the newline's row is tuned too
    moved = add_visual_delta(sub, tuned.latent[0]) - sub.inputs_embeds
    newline = int(sub.separator_positions[0])
    torch.testing.assert_close(moved[0, newline], tuned.latent[0, -1])


def test_qwen_repeated_frames_give_one_grid_frame_per_sampled_frame(tmp_path: Path) -> None:
    directory = save_tiny_qwen_vl(tmp_path, "qwen2_vl")
    adapter = load_adapter(directory, options=AdapterOptions(frame_size=224, repeat_frames=2))
    clip = make_clip(num_frames=3, height=60, width=100)
    prepared = adapter.prepare(clip, QUESTION)
    # 224 x 224 frames -> the tiny checkpoint's pixel bounds -> 84 x 84 -> 3 x 3 tokens.
    assert prepared.grid_shape == (3, 3, 3)
    assert prepared.frame_ids.tolist() == clip.frame_ids.tolist()
    # Repeating frames is feeding each frame twice: the same pixels as an explicit repeat.
    plain = load_adapter(directory, options=AdapterOptions(frame_size=224))
    doubled = plain.video_inputs(
        type(clip)(
            frames=np.repeat(clip.frames, 2, axis=0),
            frame_ids=np.repeat(clip.frame_ids, 2),
            times=np.repeat(clip.times, 2),
            fps=clip.fps,
            num_frames=clip.num_frames,
            width=clip.width,
            height=clip.height,
        )
    )
    torch.testing.assert_close(adapter.video_inputs(clip).pixel_values_videos, doubled.pixel_values_videos)


def test_an_option_a_family_does_not_have_is_refused(tmp_path: Path, ov_dir: Path) -> None:
    with pytest.raises(ModelError, match="qwen2_vl adapter has no option pool_stride"):
        load_adapter(save_tiny_qwen_vl(tmp_path, "qwen2_vl"), options=AdapterOptions(pool_stride=4))
    with pytest.raises(ModelError, match="llava_onevision adapter has no option repeat_frames"):
        load_adapter(ov_dir, options=AdapterOptions(repeat_frames=2))
    with pytest.raises(ModelError, match="pool_order must be one of"):
        AdapterOptions(pool_order="sideways")  # type: ignore[arg-type]
