"""The training-free grounder end to end on toy clips with a tiny random-weight LLaVA-OneVision.

Random weights ground nothing, so these tests check the plumbing with real numbers: shapes,
that the evidence is exactly the captured attention of the chosen token, that every Table-2
configuration runs, determinism, and the documented answers to bad input.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import N_LAYERS, save_tiny_llava, save_tiny_qwen_vl

from zsgrounding.datasets import load_dataset
from zsgrounding.errors import STVGError, VideoError
from zsgrounding.mllm import load_adapter
from zsgrounding.toy.proposer import ToyProposer
from zsgrounding.toy.world import CaptionParts, ToyWorldConfig, make_dataset
from zsgrounding.types import Track
from zsgrounding.video import sample_uniform
from zsgrounding.zeroshot.decompose import Decomposer, RuleDecomposer
from zsgrounding.zeroshot.gti import select_grounding_token
from zsgrounding.zeroshot.lra import LRAConfig
from zsgrounding.zeroshot.pipeline import ZeroShotConfig, ZeroShotGrounder

NUM_FRAMES = 4
TABLE2 = {
    "mean": {"gti": "mean", "spatial_prompt": False, "temporal_prompt": False, "tas": False},
    "gti": {"spatial_prompt": False, "temporal_prompt": False, "tas": False},
    "spatial": {"temporal_prompt": False, "tas": False},
    "temporal": {"spatial_prompt": False, "tas": False},
    "both": {"tas": False},
    "full": {},
}


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("toy")
    make_dataset(out, 2, ToyWorldConfig(seed=3), progress=False)
    return out


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory):
    return load_adapter(save_tiny_llava(tmp_path_factory.mktemp("llava")), num_frames=NUM_FRAMES)


def _grounder(adapter, toy_dir: Path, **changes) -> ZeroShotGrounder:
    config = ZeroShotConfig(num_frames=NUM_FRAMES, lra=LRAConfig(steps=2, step_size=1.0), **changes)
    decomposer = Decomposer(rules=RuleDecomposer())
    return ZeroShotGrounder(config, adapter=adapter, decomposer=decomposer, proposer=ToyProposer(toy_dir))


@pytest.fixture(autouse=True)
def _no_endpoint_warning():
    # No LLM endpoint exists here: the decomposer's "using offline rules" warning is expected.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def test_full_method_on_a_toy_clip(adapter, toy_dir: Path) -> None:
    sample = load_dataset("toy", toy_dir)[0]
    result = _grounder(adapter, toy_dir).ground_sample(sample)
    clip = sample_uniform(sample.video, NUM_FRAMES)
    tracks = ToyProposer(toy_dir)(clip, "", sample.id)

    assert result.evidence.shape == (NUM_FRAMES, *adapter.grid_shape)
    assert result.track_scores.shape == (len(tracks),)
    assert result.chosen_track == int(np.argmax(result.track_scores))
    tube = result.tube
    assert 0 <= tube.start < tube.end <= clip.num_frames
    # The tube follows the chosen track on every frame where the track has a box.
    chosen = tracks[result.chosen_track]
    on_track = np.isin(tube.frame_ids, chosen.frame_ids)
    np.testing.assert_allclose(tube.boxes[on_track], chosen.boxes_at(tube.frame_ids[on_track]))

    parts = CaptionParts.parse(sample.sentence)
    extras = result.extras
    assert extras["sub_queries"]["attribute"] == parts.attribute_phrase
    assert extras["questions"]["spatial"] == f"Is there {parts.attribute_phrase} in this video?"
    # TAS tunes two latents for the spatial question (forward, reversed), one for the temporal.
    assert len(extras["yes_no"]["spatial"]) == 2 and len(extras["yes_no"]["temporal"]) == 1
    assert all(len(entry["s_sub"]) == 2 for entry in extras["yes_no"]["spatial"])
    timings = extras["timings"]
    assert set(timings) >= {"decode", "decompose", "proposals", "mllm_spatial", "mllm_temporal", "scoring"}
    # Forwards: 2 LRA steps + 1 capture for each question, + 2 + 1 prepares (sub-query and
    # generic for both questions): the clock sees them all and never more than the total.
    assert timings["model_forward"] > 0 and timings["model_backward"] > 0
    assert 0 <= timings["outside_model"] < timings["total"]
    assert extras["grounding_token"]["spatial"].split(":")[0].isdigit()


@pytest.mark.parametrize("row", list(TABLE2))
def test_every_table2_row_runs(adapter, toy_dir: Path, row: str) -> None:
    sample = load_dataset("toy", toy_dir)[1]
    result = _grounder(adapter, toy_dir, **TABLE2[row]).ground_sample(sample)
    assert result.chosen_track is not None and len(result.tube) > 0
    expected_token = "mean" if row == "mean" else None
    if expected_token:
        assert result.extras["grounding_token"]["spatial"] == "mean"


@pytest.fixture(scope="module")
def qwen_adapter(tmp_path_factory: pytest.TempPathFactory):
    return load_adapter(save_tiny_qwen_vl(tmp_path_factory.mktemp("qwen"), "qwen2_vl"), num_frames=NUM_FRAMES)


@pytest.mark.parametrize("row", ["gti", "full"])
def test_qwen2_vl_grounds_on_frame_pairs(qwen_adapter, toy_dir: Path, row: str) -> None:
    # Qwen2-VL's maps have one grid frame per frame pair: the tube is scored on the pairs' first
    # frames, and TAS's reversed input pairs the same frames.
    sample = load_dataset("toy", toy_dir)[0]
    result = _grounder(qwen_adapter, toy_dir, **TABLE2[row]).ground_sample(sample)
    clip = sample_uniform(sample.video, NUM_FRAMES)
    h, w = qwen_adapter.grid_shape_for(clip.height, clip.width)
    assert result.evidence.shape == (NUM_FRAMES // 2, h, w)
    np.testing.assert_array_equal(result.sampled_frame_ids, clip.frame_ids[0::2])
    assert result.chosen_track is not None and len(result.tube) > 0
    assert 0 <= result.tube.start < result.tube.end <= clip.num_frames


def test_plain_evidence_is_the_captured_attention_of_the_chosen_token(adapter, toy_dir: Path) -> None:
    sample = load_dataset("toy", toy_dir)[0]
    grounder = _grounder(adapter, toy_dir, **TABLE2["gti"], layers=(1, N_LAYERS))
    result = grounder.ground_sample(sample)

    clip = sample_uniform(sample.video, NUM_FRAMES)
    question = f"Is there {sample.sentence.rstrip('.')} in this video?"
    prepared = adapter.prepare(clip, question)
    out = adapter.forward(prepared, capture=prepared.capture_config((1, N_LAYERS)))
    maps = prepared.to_grid(out.attention.mean())
    expected = select_grounding_token(maps, "max_activation")
    torch.testing.assert_close(
        torch.from_numpy(result.evidence).float(), expected.evidence, atol=1e-6, rtol=0
    )
    assert result.extras["grounding_token"]["spatial"].startswith(f"{expected.token_index}:")


def test_relative_attention_divides_by_the_generic_prompt(adapter, toy_dir: Path) -> None:
    sample = load_dataset("toy", toy_dir)[0]
    grounder = _grounder(adapter, toy_dir, **TABLE2["mean"], relative=True)
    clip = sample_uniform(sample.video, NUM_FRAMES)
    question = f"Is there {sample.sentence.rstrip('.')} in this video?"
    maps = grounder.question_maps(clip, question, tune=False, tas=False).maps

    plain = replace(grounder.config, relative=False)
    raw = ZeroShotGrounder(plain, adapter=adapter).question_maps(clip, question, tune=False, tas=False).maps
    generic = (
        ZeroShotGrounder(plain, adapter=adapter)
        .question_maps(clip, grounder.config.lra.generic_question, tune=False, tas=False)
        .maps
    )
    np.testing.assert_allclose(maps, raw / (generic + 1e-4), rtol=1e-4)


def test_same_input_same_tube(adapter, toy_dir: Path) -> None:
    sample = load_dataset("toy", toy_dir)[0]
    a = _grounder(adapter, toy_dir).ground_sample(sample)
    b = _grounder(adapter, toy_dir).ground_sample(sample)
    assert (a.tube.start, a.tube.end) == (b.tube.start, b.tube.end)
    np.testing.assert_array_equal(a.tube.boxes, b.tube.boxes)


def test_one_track_is_chosen_and_no_track_gives_an_empty_tube(adapter, toy_dir: Path) -> None:
    sample = load_dataset("toy", toy_dir)[0]
    grounder = _grounder(adapter, toy_dir, tas=False)
    only = Track(np.arange(0, 30), np.tile([10.0, 10.0, 40.0, 40.0], (30, 1)), label="circle")
    one = grounder.ground(sample.video, sample.sentence, tracks=[only])
    assert one.chosen_track == 0 and one.track_scores.shape == (1,)
    none = grounder.ground(sample.video, sample.sentence, tracks=[])
    assert len(none.tube) == 0 and none.chosen_track is None
    assert none.extras["reason"] == "no proposals"


def test_bad_input_is_a_clear_error(adapter, toy_dir: Path, tmp_path: Path) -> None:
    sample = load_dataset("toy", toy_dir)[0]
    grounder = _grounder(adapter, toy_dir)
    with pytest.raises(STVGError, match="empty query"):
        grounder.ground(sample.video, "   ")
    with pytest.raises(VideoError, match=r"missing\.mp4"):
        grounder.ground(tmp_path / "missing.mp4", "the red circle")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    with pytest.raises(VideoError, match=r"corrupt\.mp4"):
        grounder.ground(corrupt, "the red circle")
    with pytest.raises(STVGError, match="no proposer"):
        ZeroShotGrounder(grounder.config, adapter=adapter).ground(sample.video, "the red circle")
