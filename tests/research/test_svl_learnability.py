"""The shared-code learnability harness of SpaceVLLM's decoder: the states, and both regimes on
small splits with fixed seeds (the benchmark, benchmarks/spacevllm_learnability.py, runs the
full rows)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from research.svl_learnability import WORLDS, code_book, coded_clip, coded_split, query_states, run_row
from zsgrounding.toy.world import generate_one


def test_cells_hold_the_codes_of_what_covers_them_and_the_caption_its_words() -> None:
    book = code_book(16)
    video = generate_one(0, WORLDS["multi"])
    clip = coded_clip(video, 4, (6, 8), book, noise=0.0, generator=torch.Generator().manual_seed(0))
    assert clip.visual.shape == (4, 48, 16)
    # a cell nobody covers is the background code
    frame0 = clip.visual[0]
    bg = torch.isclose(frame0, book["background"].expand_as(frame0)).all(dim=1)
    assert bg.sum() > 24
    # the caption is "the [size] colour shape that <action>", one state per part
    parts = video.parts
    words = ["the", *([parts.size] if parts.size else []), parts.colour, parts.shape, "that", parts.action]
    torch.testing.assert_close(clip.caption, torch.stack([book[w] for w in words]))
    torch.testing.assert_close(
        query_states(clip, "caption_first")[0], clip.caption[1:-2].sum(0) + book[parts.action]
    )
    # the paper's layout: a query holds the objects of its frame, not the caption
    assert not torch.allclose(query_states(clip, "paper")[0], query_states(clip, "caption_first")[0])
    # the span's frames carry the target's box; a random visible object's IoU is at most 1
    assert clip.mask.any() and (clip.targets[~clip.mask] == 0).all()
    assert 0.0 < float(clip.chance[clip.mask].mean()) <= 1.0
    with pytest.raises(ValueError, match="unknown layout"):
        query_states(clip, "queries_last")  # type: ignore[arg-type]


def test_localisation_needs_a_position_lever() -> None:
    """Single-object clips: the query finds the object, but only position codes say where it is."""
    book = code_book(128)
    train = coded_split(WORLDS["single"], 400, 8, (12, 12), book, 0.5, seed=11)
    held_out = coded_split(WORLDS["single"], 100, 8, (12, 12), book, 0.5, seed=12)
    plain = run_row(train, held_out, "paper", "none", (12, 12), steps=600, attention_scale=0.03)
    coded = run_row(train, held_out, "paper", "position_codes", (12, 12), steps=600, attention_scale=0.03)
    assert plain.attention_on_target > 0.99 and coded.attention_on_target > 0.99
    assert plain.mean_box_iou == pytest.approx(0.0356, abs=1e-3)
    assert plain.span_iou < 0.08  # no better than the mean box: the query's state has no place
    assert coded.span_iou == pytest.approx(0.383, abs=0.04)  # measured 0.383
    assert coded.span_iou > 8 * coded.mean_box_iou


def test_selection_needs_the_caption_before_the_queries() -> None:
    """Multi-object clips: the attention (no parameters) finds the target far more often when the
    query knows the caption; the head's training does not enter, hence one step."""
    book = code_book(128)
    one = coded_split(WORLDS["multi"], 1, 8, (12, 12), book, 0.5, seed=11)
    held_out = coded_split(WORLDS["multi"], 60, 8, (12, 12), book, 0.5, seed=12)
    paper = run_row(one, held_out, "paper", "position_codes", (12, 12), steps=1, attention_scale=0.03)
    first = run_row(one, held_out, "caption_first", "position_codes", (12, 12), steps=1, attention_scale=0.03)
    assert paper.attention_on_target == pytest.approx(0.4378, abs=2e-3)
    assert first.attention_on_target == pytest.approx(0.6919, abs=2e-3)
    assert np.isclose(paper.random_object_iou, first.random_object_iou)
