"""Qwen2-VL and Qwen2.5-VL adapter on tiny random checkpoints: patches, frame pairs, M-RoPE, templates, loading.

The contract every family meets (layout, special tokens, stock equality, capture, gradients) is
checked in ``test_adapter_contract.py``, on both model types.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from adapter_checks import cell_change, invert_region, stock_logits
from tiny_models import (
    QUESTION,
    QWEN_FACTOR,
    QWEN_FRAME,
    QWEN_GRID,
    QWEN_MAX_PIXELS,
    QWEN_MIN_PIXELS,
    QWEN_N_FRAMES,
    QWEN_TEMPLATE,
    make_clip,
    save_tiny_qwen_vl,
)
from torch import nn
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as reference_resize

from zsgrounding.mllm import REGISTRY, ModelError, PreparedInputs, load_adapter
from zsgrounding.mllm.preprocess import CLIP_MEAN, CLIP_STD
from zsgrounding.mllm.qwen2_vl import Qwen2VLAdapter
from zsgrounding.mllm.qwen_preprocess import QwenVideoPreprocessing, patchify_video, smart_resize
from zsgrounding.mllm.registry import entry_for_checkpoint, entry_for_family
from zsgrounding.types import Clip

MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl")
H, W = QWEN_GRID
T_GRID = QWEN_N_FRAMES // 2
# The perturbed frame (second pair) and the 28 x 28 grid cell (row, col) whose pixels change.
FRAME, PAIR = 2, 1
CELL = (1, 2)


@pytest.fixture(scope="module", params=MODEL_TYPES)
def qwen_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_qwen_vl(tmp_path_factory.mktemp(f"tiny_{request.param}"), request.param)


@pytest.fixture(scope="module")
def qwen(qwen_dir: Path) -> Qwen2VLAdapter:
    adapter = load_adapter(qwen_dir)
    assert isinstance(adapter, Qwen2VLAdapter)
    return adapter


def _clip(num_frames: int = QWEN_N_FRAMES, seed: int = 0) -> Clip:
    return make_clip(num_frames=num_frames, height=QWEN_FRAME[0], width=QWEN_FRAME[1], seed=seed)


@pytest.fixture(scope="module")
def prepared(qwen: Qwen2VLAdapter) -> PreparedInputs:
    return qwen.prepare(_clip(), QUESTION)


def _perturbed_clip(frame: int = FRAME) -> Clip:
    r, c = CELL
    rows = slice(r * QWEN_FACTOR, (r + 1) * QWEN_FACTOR)
    cols = slice(c * QWEN_FACTOR, (c + 1) * QWEN_FACTOR)
    return invert_region(_clip(), frame, rows, cols)


# --- preprocessing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("height", "width", "min_pixels", "max_pixels"),
    [
        (56, 84, QWEN_MIN_PIXELS, QWEN_MAX_PIXELS),
        (50, 70, QWEN_MIN_PIXELS, QWEN_MAX_PIXELS),
        (240, 320, QWEN_MIN_PIXELS, QWEN_MAX_PIXELS),  # shrunk
        (20, 30, QWEN_MIN_PIXELS, QWEN_MAX_PIXELS),  # grown
        (360, 640, 128 * 28 * 28, 768 * 28 * 28),
        (1080, 1920, 128 * 28 * 28, 768 * 28 * 28),
        (7, 1000, 56 * 56, 28 * 28 * 1280),
    ],
)
def test_smart_resize_has_the_processor_semantics(
    height: int, width: int, min_pixels: int, max_pixels: int
) -> None:
    got = smart_resize(height, width, QWEN_FACTOR, min_pixels, max_pixels)
    assert got == tuple(reference_resize(height, width, QWEN_FACTOR, min_pixels, max_pixels))
    assert got[0] % QWEN_FACTOR == 0 and got[1] % QWEN_FACTOR == 0


def test_patch_layout_matches_the_image_processor() -> None:
    # A still image is a video of one frame repeated over the temporal patch: transformers' PIL
    # image processor (no torchvision) lays it out like the video processor does.
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, size=(84, 112, 3), dtype=np.uint8)
    reference = Qwen2VLImageProcessorPil(min_pixels=QWEN_MIN_PIXELS, max_pixels=QWEN_MAX_PIXELS * 2)
    expected = reference(images=[frame], return_tensors="pt")
    pixels = (
        torch.from_numpy(frame).permute(2, 0, 1).float() / 255 - torch.tensor(CLIP_MEAN)[:, None, None]
    ) / (torch.tensor(CLIP_STD)[:, None, None])
    rows, grid = patchify_video(pixels[None], patch_size=14, temporal_patch_size=2, merge_size=2)
    assert grid == tuple(expected["image_grid_thw"][0].tolist()) == (1, 6, 8)
    torch.testing.assert_close(rows, expected["pixel_values"], rtol=0, atol=1e-5)


def test_preprocessing_from_the_checkpoint(qwen: Qwen2VLAdapter, qwen_dir: Path) -> None:
    settings = qwen.preprocessing
    assert (settings.min_pixels, settings.max_pixels) == (QWEN_MIN_PIXELS, QWEN_MAX_PIXELS)
    assert settings.normalisation.image_mean == CLIP_MEAN and settings.normalisation.image_std == CLIP_STD
    assert settings.source is not None and settings.source.parent == qwen_dir
    # CLIP statistics are the default without a file; patch sizes always come from the tower.
    bare = QwenVideoPreprocessing.from_dict({}, qwen.model.config.vision_config)
    assert bare.normalisation.image_mean == CLIP_MEAN and bare.factor == QWEN_FACTOR
    with pytest.raises(ModelError, match="patch_size"):
        QwenVideoPreprocessing.from_dict({"patch_size": 16}, qwen.model.config.vision_config)


# --- layout ---------------------------------------------------------------------------------------


def test_token_layout(qwen: Qwen2VLAdapter, prepared: PreparedInputs) -> None:
    n = prepared.input_ids.shape[1]
    assert qwen.grid_shape_for(*QWEN_FRAME) == QWEN_GRID
    assert qwen.num_video_tokens(QWEN_N_FRAMES, *QWEN_FRAME) == T_GRID * H * W
    # The grid (the whole run of <|video_pad|>) lies between vision start and end.
    start = int(prepared.visual_grid[0, 0, 0])
    assert int(prepared.input_ids[0, start - 1]) == qwen.vision_start_id
    assert int(prepared.input_ids[0, start + T_GRID * H * W]) == qwen.vision_end_id
    kwargs = prepared.model_kwargs
    assert kwargs["position_ids"].shape == (3, 1, n)
    torch.testing.assert_close(
        kwargs["mm_token_type_ids"][0], (prepared.input_ids[0] == qwen.video_token_id).long() * 2
    )
    with pytest.raises(ModelError, match=r"prepared\.grid_shape"):
        _ = qwen.grid_shape


def test_position_ids_are_m_rope(qwen: Qwen2VLAdapter, prepared: PreparedInputs) -> None:
    positions = prepared.model_kwargs["position_ids"][:, 0]
    grid = prepared.visual_grid
    start = int(grid[0, 0, 0])
    # Text before the video counts 0, 1, ...; the video's rows and columns are offsets from `start`.
    torch.testing.assert_close(positions[:, :start], torch.arange(start).expand(3, -1))
    rows, cols = positions[1, grid], positions[2, grid]
    torch.testing.assert_close(rows - start, torch.arange(H).view(1, H, 1).expand(T_GRID, H, W))
    torch.testing.assert_close(cols - start, torch.arange(W).view(1, 1, W).expand(T_GRID, H, W))
    # Temporal step: 1 per pair for Qwen2-VL; tokens_per_second x seconds per pair for Qwen2.5-VL.
    temporal = positions[0, grid] - start
    vision = qwen.model.config.vision_config
    step = 1 if qwen.model.config.model_type == "qwen2_vl" else int(vision.tokens_per_second * 2 * 0.2)
    torch.testing.assert_close(
        temporal, (torch.arange(T_GRID) * step).view(T_GRID, 1, 1).expand(T_GRID, H, W)
    )
    # Text after the video continues from start + max(h, w) (transformers' rule, not the largest
    # video position + 1: Qwen2.5-VL's temporal positions may go beyond it).
    after = positions[:, start + T_GRID * H * W :]
    torch.testing.assert_close(after, (torch.arange(after.shape[1]) + start + max(H, W)).expand(3, -1))


def test_odd_frame_count_repeats_the_last_frame(qwen: Qwen2VLAdapter) -> None:
    clip = _clip(num_frames=3, seed=4)
    padded = Clip(
        frames=np.concatenate([clip.frames, clip.frames[-1:]]),
        frame_ids=np.append(clip.frame_ids, clip.frame_ids[-1]),
        times=np.append(clip.times, clip.times[-1]),
        fps=clip.fps,
        num_frames=clip.num_frames,
        width=clip.width,
        height=clip.height,
    )
    odd, even = qwen.video_inputs(clip), qwen.video_inputs(padded)
    torch.testing.assert_close(odd.pixel_values_videos, even.pixel_values_videos, rtol=0, atol=0)
    prepared = qwen.prepare(clip, QUESTION)
    assert prepared.grid_shape == (2, H, W)
    torch.testing.assert_close(prepared.frame_ids, torch.tensor([2, 12]))


# --- visual grid ----------------------------------------------------------------------------------


def test_perturbing_one_region_maps_to_its_cell_exactly(qwen: Qwen2VLAdapter) -> None:
    # Without the vision blocks (no attention mixing) the features are patch embedding + merger
    # only: exactly the grid cell holding the perturbed pixels may change.
    visual = qwen.model.model.visual
    blocks = visual.blocks
    visual.blocks = nn.ModuleList()
    try:
        change = cell_change(qwen.prepare(_clip(), QUESTION), qwen.prepare(_perturbed_clip(), QUESTION))
    finally:
        visual.blocks = blocks
    expected = torch.zeros(T_GRID, H, W, dtype=torch.bool)
    expected[PAIR, CELL[0], CELL[1]] = True
    assert torch.equal(change > 0, expected)


# --- running the language model -------------------------------------------------------------------


def test_without_our_position_ids_the_logits_differ(qwen: Qwen2VLAdapter, prepared: PreparedInputs) -> None:
    # Control: the same embeddings without position_ids get 1-D positions (a stale rope_deltas of
    # an earlier stock call would shift them, so clear it), and the logits move.
    stock = stock_logits(qwen, prepared, _clip())
    qwen.model.model.rope_deltas = None
    with torch.no_grad():
        plain = qwen.model(
            inputs_embeds=prepared.inputs_embeds, attention_mask=prepared.attention_mask, logits_to_keep=1
        ).logits[:, -1]
    assert (plain - stock).abs().max() > 1e-4


def test_clip_times_set_the_temporal_spacing(qwen: Qwen2VLAdapter, prepared: PreparedInputs) -> None:
    # Frames 1 s apart instead of 0.2 s: Qwen2.5-VL spaces the pairs by tokens_per_second x 2 s,
    # and its stock forward agrees only with the matching seconds per pair; Qwen2-VL ignores time.
    slow = replace(_clip(), times=_clip().times * 5)
    again = qwen.prepare(slow, QUESTION)
    temporal = again.model_kwargs["position_ids"][0, 0, again.visual_grid[:, 0, 0]]
    with torch.no_grad():
        ours = qwen.forward(again).logits
    if qwen.model.config.model_type == "qwen2_vl":
        torch.testing.assert_close(again.model_kwargs["position_ids"], prepared.model_kwargs["position_ids"])
        return
    step = int(qwen.model.config.vision_config.tokens_per_second * 2 * 1.0)
    assert int(temporal[1] - temporal[0]) == step == 20
    torch.testing.assert_close(ours, stock_logits(qwen, again, slow), rtol=0, atol=1e-5)
    other = stock_logits(qwen, again, slow, second_per_grid_ts=torch.tensor([0.4]))
    assert (ours - other).abs().max() > 1e-4


# --- prompt templates -----------------------------------------------------------------------------


def test_plain_string_template_gives_the_same_prompt(qwen: Qwen2VLAdapter, prepared: PreparedInputs) -> None:
    # Qwen2's text-only template (string content): the video is written in as the processor would.
    plain = Qwen2VLAdapter(
        qwen.model, qwen.tokenizer, preprocessing=qwen.preprocessing, chat_template=QWEN_TEMPLATE
    )
    again = plain.prepare(_clip(), QUESTION)
    assert torch.equal(again.input_ids, prepared.input_ids)
    assert again.special_tokens == prepared.special_tokens


def test_template_without_vision_markers_is_an_error(qwen: Qwen2VLAdapter) -> None:
    bare = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for p in m['content'] %}"
        "{% if p['type'] == 'video' %}<|video_pad|>{% else %}{{ p['text'] }}{% endif %}{% endfor %}"
        "<|im_end|>\n{% endfor %}<|im_start|>assistant\n"
    )
    adapter = Qwen2VLAdapter(qwen.model, qwen.tokenizer, preprocessing=qwen.preprocessing, chat_template=bare)
    with pytest.raises(ModelError, match="vision_start"):
        adapter.prepare(_clip(), QUESTION)


# --- registry and loading -------------------------------------------------------------------------


def test_loaded_by_checkpoint_config_and_by_name(qwen_dir: Path) -> None:
    assert entry_for_checkpoint(qwen_dir) is REGISTRY["qwen2_vl"]
    for name in ("qwen2_vl", "Qwen2.5-VL", "qwen2-5-vl"):
        assert entry_for_family(name).adapter_class() is Qwen2VLAdapter
    adapter = load_adapter(qwen_dir, family="qwen2_vl", num_frames=8, device="cpu")
    assert isinstance(adapter, Qwen2VLAdapter) and adapter.num_frames == 8


def test_load_options_fix_the_frame_size(qwen_dir: Path) -> None:
    adapter = load_adapter(qwen_dir, frame_size=(28, 56), dtype=torch.bfloat16)
    assert adapter.grid_shape == (1, 2)
    prepared = adapter.prepare(_clip(num_frames=2), QUESTION)
    assert prepared.grid_shape == (1, 1, 2)
    assert prepared.inputs_embeds.dtype == torch.bfloat16
    assert adapter.forward(prepared).logits.dtype == torch.bfloat16
    # max_pixels bounds the grid of large frames.
    small = load_adapter(qwen_dir, max_pixels=6 * 28 * 28)
    big = make_clip(num_frames=2, height=280, width=420)
    assert small.prepare(big, QUESTION).grid_shape == (1, *small.grid_shape_for(280, 420)) == (1, 2, 3)


def test_other_model_types_are_refused(llava_dir: Path) -> None:
    with pytest.raises(ModelError, match="'llava_onevision' is not served") as info:
        Qwen2VLAdapter.from_pretrained(llava_dir)
    assert "\n" not in str(info.value)
