"""The adapter contract, checked on every family's tiny checkpoint (one test per check, one case per family).

Whatever the family, ``prepare`` gives a contiguous, frame-major visual grid inside the expanded
video placeholder (then the family's separators), the special tokens right after the question
up to the answer position, and ``forward`` agrees with the model's own forward, returns hidden
states the head reads, captures the attention rows an eager forward computes, and carries a
gradient to the visual delta. The family files keep what only their family does (pooling,
newline and BOS placement, M-RoPE, frame pairs, templates, loading).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from adapter_checks import cell_change, invert_region, stock_logits
from tiny_models import (
    GRID,
    N_FRAMES,
    N_HEADS,
    N_LAYERS,
    NV_IMAGE_SIZE,
    NV_PATCH,
    NV_PATCHES,
    PATCH,
    QUESTION,
    QWEN_FACTOR,
    QWEN_FRAME,
    QWEN_GRID,
    QWEN_N_FRAMES,
    QWEN_N_LAYERS,
    make_clip,
    save_tiny_llava_next_video,
    save_tiny_qwen_vl,
)

from zsgrounding.mllm import MLLMAdapter, MLLMOutput, PreparedInputs, load_adapter
from zsgrounding.types import Clip

FAMILIES = ("llava_onevision", "llava_next_video", "qwen2_vl", "qwen2_5_vl")
CHATML_TAIL = ["<|im_end|>", "\n", "<|im_start|>", "assistant", "\n"]


def _region(cell: tuple[int, int], side: int) -> tuple[slice, slice]:
    """The pixel rows and columns of grid cell ``(row, col)`` of ``side`` pixels."""
    return slice(cell[0] * side, (cell[0] + 1) * side), slice(cell[1] * side, (cell[1] + 1) * side)


@dataclass
class Case:
    """One family's tiny adapter, the clip it prepares and the facts the contract checks against.

    Attributes:
        grid: ``(T, h, w)`` of the clip's visual grid.
        separators: placeholder tokens after the grid.
        frame_ids: the native frame id naming each grid frame.
        answers: the decoded yes / no answer ids.
        probe: a grid cell ``(t, i, j)`` whose captured map is read back through ``to_grid``.
        region: pixels ``(rows, cols)`` inverted in each of ``perturbed_frames``; they all belong
            to grid frame ``grid_frame`` and most to its cell ``cell``.
        mixes_whole_frame: the vision tower attends over the whole frame (every cell of the
            perturbed grid frame changes), not in windows.
        other_clip, other_grid: a clip of another length and size, and its visual grid.
    """

    adapter: MLLMAdapter
    clip: Clip
    grid: tuple[int, int, int]
    separators: int
    frame_ids: list[int]
    special_tokens: list[str]
    answers: tuple[str, str]
    num_layers: int
    num_heads: int
    probe: tuple[int, int, int]
    region: tuple[slice, slice]
    perturbed_frames: tuple[int, ...]
    grid_frame: int
    cell: tuple[int, int]
    mixes_whole_frame: bool
    other_clip: Clip
    other_grid: tuple[int, int, int]


def _llava_onevision(llava_dir: Path) -> Case:
    # Patch (2, 5) of the 8 x 8 patch grid of frame 1 falls into pooled cell (1, 2).
    patch = (2, 5)
    return Case(
        adapter=load_adapter(llava_dir),
        clip=make_clip(),
        grid=(N_FRAMES, *GRID),
        separators=1,
        frame_ids=[2, 7, 12],
        special_tokens=CHATML_TAIL,
        answers=("yes", "no"),
        num_layers=N_LAYERS,
        num_heads=N_HEADS,
        probe=(2, 1, 3),
        region=_region(patch, PATCH),
        perturbed_frames=(1,),
        grid_frame=1,
        cell=(patch[0] // 2, patch[1] // 2),
        mixes_whole_frame=True,
        # Native frames of any size are squeezed to the tower's input (no cropping).
        other_clip=make_clip(num_frames=2, height=48, width=80, seed=3),
        other_grid=(2, *GRID),
    )


def _llava_next_video(directory: Path) -> Case:
    # The checkpoint's stride 2: 12 x 12 tokens per frame, one cell per 8 x 8 pixels.
    side = NV_PATCHES // 2
    return Case(
        adapter=load_adapter(save_tiny_llava_next_video(directory)),
        clip=make_clip(height=NV_IMAGE_SIZE, width=NV_IMAGE_SIZE),
        grid=(N_FRAMES, side, side),
        separators=0,
        frame_ids=[2, 7, 12],
        special_tokens=["ĠASSISTANT", ":"],
        answers=(" yes", " no"),
        num_layers=N_LAYERS,
        num_heads=N_HEADS,
        probe=(2, 5, 7),
        region=_region((3, 9), NV_PATCH * 2),
        perturbed_frames=(1,),
        grid_frame=1,
        cell=(3, 9),
        mixes_whole_frame=True,
        # Native frames of any size are squeezed to the tower's input (no centre crop).
        other_clip=make_clip(num_frames=2, height=60, width=130, seed=3),
        other_grid=(2, side, side),
    )


def _qwen_vl(directory: Path, model_type: str) -> Case:
    # Grid frames are frame pairs, named by their first native frame (make_clip: ids 2, 7, 12, 17);
    # either frame of the second pair moves only that pair's grid frame. Qwen2.5-VL's tower
    # attends in windows, so not every cell of the pair changes.
    adapter = load_adapter(save_tiny_qwen_vl(directory, model_type))
    return Case(
        adapter=adapter,
        clip=make_clip(num_frames=QWEN_N_FRAMES, height=QWEN_FRAME[0], width=QWEN_FRAME[1]),
        grid=(QWEN_N_FRAMES // 2, *QWEN_GRID),
        separators=0,
        frame_ids=[2, 12],
        special_tokens=CHATML_TAIL,
        answers=("yes", "no"),
        num_layers=QWEN_N_LAYERS,
        num_heads=adapter.model.config.text_config.num_attention_heads,
        probe=(1, 1, 2),
        region=_region((1, 2), QWEN_FACTOR),
        perturbed_frames=(2, 3),
        grid_frame=1,
        cell=(1, 2),
        mixes_whole_frame=False,
        # The grid follows the frame size: 84 x 56 -> 3 x 2 tokens per frame pair.
        other_clip=make_clip(num_frames=2, height=84, width=56, seed=3),
        other_grid=(1, 3, 2),
    )


@pytest.fixture(scope="module", params=FAMILIES)
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, llava_dir: Path) -> Case:
    if request.param == "llava_onevision":
        return _llava_onevision(llava_dir)
    directory = tmp_path_factory.mktemp(f"contract_{request.param}")
    if request.param == "llava_next_video":
        return _llava_next_video(directory)
    return _qwen_vl(directory, request.param)


@pytest.fixture(scope="module")
def prepared(case: Case) -> PreparedInputs:
    return case.adapter.prepare(case.clip, QUESTION)


# --- prepare: layout ------------------------------------------------------------------------------


def test_token_layout(case: Case, prepared: PreparedInputs) -> None:
    n = prepared.input_ids.shape[1]
    t, h, w = case.grid
    assert prepared.grid_shape == case.grid
    # The grid is contiguous and frame-major; the family's separators follow it.
    start = int(prepared.visual_grid[0, 0, 0])
    torch.testing.assert_close(
        prepared.visual_positions, torch.arange(start, start + t * h * w), rtol=0, atol=0
    )
    torch.testing.assert_close(
        prepared.separator_positions, torch.arange(start + t * h * w, start + t * h * w + case.separators)
    )
    # The expanded placeholder is exactly the grid and the separators.
    video = (prepared.input_ids[0] == case.adapter.video_token_id).nonzero().flatten().cpu()
    assert video.numel() == t * h * w + case.separators
    torch.testing.assert_close(video, torch.cat([prepared.visual_positions, prepared.separator_positions]))
    assert prepared.answer_position == n - 1
    hidden = case.adapter.model.config.text_config.hidden_size
    assert prepared.inputs_embeds.shape == (1, n, hidden)
    assert prepared.attention_mask.shape == (1, n)
    torch.testing.assert_close(prepared.frame_ids, torch.tensor(case.frame_ids))


def test_special_tokens_follow_the_question(case: Case, prepared: PreparedInputs) -> None:
    tokenizer = case.adapter.tokenizer
    assert prepared.special_tokens == case.special_tokens
    ids = prepared.input_ids[0, prepared.special_positions].tolist()
    assert tokenizer.convert_ids_to_tokens(ids) == case.special_tokens
    assert int(prepared.special_positions[-1]) == prepared.answer_position == prepared.input_ids.shape[1] - 1
    # The token just before the special ones is the question's last token.
    before = int(prepared.special_positions[0]) - 1
    assert tokenizer.convert_ids_to_tokens(int(prepared.input_ids[0, before])) == "?"


def test_yes_no_ids(case: Case) -> None:
    adapter = case.adapter
    assert adapter.tokenizer.decode([adapter.yes_id]) == case.answers[0]
    assert adapter.tokenizer.decode([adapter.no_id]) == case.answers[1]


def test_other_frame_counts_and_sizes(case: Case) -> None:
    prepared = case.adapter.prepare(case.other_clip, "please describe this video.")
    assert prepared.grid_shape == case.other_grid
    assert prepared.special_tokens == case.special_tokens


# --- prepare: the visual grid ---------------------------------------------------------------------


def test_perturbing_one_region_changes_only_its_grid_frame(case: Case, prepared: PreparedInputs) -> None:
    others = [t for t in range(case.grid[0]) if t != case.grid_frame]
    outside = torch.ones(prepared.input_ids.shape[1], dtype=torch.bool)
    outside[prepared.visual_positions] = False
    for frame in case.perturbed_frames:
        perturbed = case.adapter.prepare(invert_region(case.clip, frame, *case.region), QUESTION)
        change = cell_change(prepared, perturbed)
        assert torch.all(change[others] == 0)
        assert change[case.grid_frame].max() > 0
        if case.mixes_whole_frame:
            assert torch.all(change[case.grid_frame] > 0)  # the vision tower's self-attention mixes the frame
        # ... but the perturbed cell changes most.
        assert divmod(int(change[case.grid_frame].argmax()), case.grid[2]) == case.cell
        # Text, separators and everything outside the grid are untouched.
        torch.testing.assert_close(
            perturbed.inputs_embeds[0, outside], prepared.inputs_embeds[0, outside], rtol=0, atol=0
        )


# --- forward ----------------------------------------------------------------------------------------


def test_forward_matches_the_stock_forward(case: Case, prepared: PreparedInputs) -> None:
    stock = stock_logits(case.adapter, prepared, case.clip)
    with torch.no_grad():
        ours = case.adapter.forward(prepared)
    assert ours.logits.shape == (1, case.adapter.model.config.text_config.vocab_size)
    torch.testing.assert_close(ours.logits, stock, rtol=0, atol=1e-5)


def test_hidden_states_are_what_the_head_reads(case: Case, prepared: PreparedInputs) -> None:
    with torch.no_grad():
        out = case.adapter.forward(prepared, output_hidden_states=True)
        head = case.adapter.model.lm_head(out.hidden_states[:, -1])
    assert out.hidden_states.shape == prepared.inputs_embeds.shape
    torch.testing.assert_close(head, out.logits, rtol=0, atol=1e-5)


def _eager_rows(adapter: MLLMAdapter, prepared: PreparedInputs) -> list[torch.Tensor]:
    """Per layer ``(1, S, V)`` head-mean rows of the eager attention maps (same positions as ours)."""
    adapter.model.set_attn_implementation({"text_config": "eager"})
    try:
        with torch.no_grad():
            out = adapter.model(
                inputs_embeds=prepared.inputs_embeds,
                attention_mask=prepared.attention_mask,
                output_attentions=True,
                logits_to_keep=1,
                **prepared.model_kwargs,
            )
    finally:
        adapter.model.set_attn_implementation({"text_config": "sdpa"})
    rows, cols = prepared.special_positions, prepared.visual_positions
    return [layer[:, :, rows][..., cols].mean(dim=1) for layer in out.attentions]


def test_capture_matches_eager_rows(case: Case, prepared: PreparedInputs) -> None:
    with torch.no_grad():
        plain = case.adapter.forward(prepared)
        out = case.adapter.forward(prepared, capture=prepared.capture_config())
    assert isinstance(out, MLLMOutput) and out.attention is not None
    torch.testing.assert_close(out.logits, plain.logits, rtol=0, atol=1e-6)
    eager = _eager_rows(case.adapter, prepared)
    s, v = prepared.special_positions.numel(), prepared.num_visual
    assert sorted(out.attention.maps) == list(range(case.num_layers))
    for layer in range(case.num_layers):
        got = out.attention.maps[layer]
        assert got.shape == (1, s, v)
        torch.testing.assert_close(got, eager[layer], rtol=0, atol=1e-5)
    grid = prepared.to_grid(out.attention.mean())
    assert grid.shape == (s, *case.grid)
    # Grid cell (t, i, j) is the key at visual_grid[t, i, j].
    t, i, j = case.probe
    _, h, w = case.grid
    flat = t * h * w + i * w + j
    assert int(prepared.visual_grid[t, i, j]) == int(prepared.visual_positions[flat])
    torch.testing.assert_close(grid[:, t, i, j], out.attention.mean()[0, :, flat])


def test_per_head_capture_in_a_layer_window(case: Case, prepared: PreparedInputs) -> None:
    window = (1, case.num_layers)
    with torch.no_grad():
        out = case.adapter.forward(prepared, capture=prepared.capture_config(layers=window, per_head=True))
    assert sorted(out.attention.maps) == list(range(*window))
    grid = prepared.to_grid(out.attention.maps[1])
    assert grid.shape == (case.num_heads, prepared.special_positions.numel(), *case.grid)


def test_gradient_reaches_the_visual_delta(case: Case, prepared: PreparedInputs) -> None:
    adapter = case.adapter
    torch.manual_seed(0)
    delta = torch.zeros(prepared.num_visual, prepared.inputs_embeds.shape[-1], requires_grad=True)
    out = adapter.forward(prepared, visual_delta=delta)
    with torch.no_grad():
        torch.testing.assert_close(out.logits, adapter.forward(prepared).logits, rtol=0, atol=0)
    score = adapter.yes_no_score(out)
    assert score.shape == (1,)
    score.sum().backward()
    assert delta.grad is not None and delta.grad.shape == delta.shape
    assert torch.isfinite(delta.grad).all()
    assert delta.grad.abs().sum() > 0
    # A non-zero delta moves the answer logits; the prepared embeddings stay as they were.
    before = prepared.inputs_embeds.clone()
    with torch.no_grad():
        moved = adapter.forward(prepared, visual_delta=torch.randn_like(delta))
    assert not torch.allclose(moved.logits, out.logits.detach())
    torch.testing.assert_close(prepared.inputs_embeds, before, rtol=0, atol=0)


def test_visual_delta_shape_is_checked(case: Case, prepared: PreparedInputs) -> None:
    with pytest.raises(ValueError, match="visual_delta"):
        case.adapter.forward(
            prepared, visual_delta=torch.zeros(prepared.num_visual + 1, prepared.inputs_embeds.shape[-1])
        )
