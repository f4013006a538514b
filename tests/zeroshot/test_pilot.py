"""Tests of zsgrounding.zeroshot.pilot against hand-computed values.

Frames are 20 x 20 px on a 2 x 2 token grid, so each cell is 10 x 10 px.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from zsgrounding.zeroshot.pilot import (
    PilotSample,
    activation_rank_accuracy,
    attention_ratio,
    hit_ratios,
    pilot_table,
    proposal_choices,
    proposals_correct,
    temporal_consistency,
    token_attention_ratios,
)

W = H = 20
NAN_BOX = [np.nan] * 4
LEFT = [0.0, 0.0, 10.0, 20.0]
RIGHT = [10.0, 0.0, 20.0, 20.0]


# --------------------------------------------------------------------------- eq. 1


def test_attention_ratio_inside_over_outside():
    attn = np.array([[0.9, 0.3], [0.3, 0.3]])
    box = [0.0, 0.0, 10.0, 10.0]  # exactly cell (0, 0)
    assert attention_ratio(attn, box, W, H) == pytest.approx(3.0)
    assert attention_ratio(attn, box, W, H, region="coverage") == pytest.approx(3.0)
    assert attention_ratio(torch.tensor(attn), torch.tensor(box), W, H) == pytest.approx(3.0)


def test_majority_and_coverage_regions_differ_on_half_covered_cells():
    attn = np.array([[0.4, 0.8], [0.2, 0.1]])
    box = [0.0, 0.0, 15.0, 10.0]  # cell (0, 0) fully, cell (0, 1) half
    # Majority: (0, 1) is outside (not > 0.5) -> 0.4 / 0.8.
    assert attention_ratio(attn, box, W, H) == pytest.approx(0.5)
    # Coverage: inside max(0.4, 0.8 * 0.5) = 0.4; outside max(0.8 * 0.5, 0.2, 0.1) = 0.4.
    assert attention_ratio(attn, box, W, H, region="coverage") == pytest.approx(1.0)


def test_a_box_smaller_than_half_a_cell_keeps_its_cell():
    attn = np.array([[0.2, 0.1], [0.1, 0.6]])
    assert attention_ratio(attn, [12.0, 12.0, 14.0, 14.0], W, H) == pytest.approx(3.0)


def test_undefined_and_unbounded_ratios():
    attn = np.array([[0.9, 0.3], [0.3, 0.3]])
    assert math.isnan(attention_ratio(attn, [0.0, 0.0, 20.0, 20.0], W, H))  # nothing outside
    assert math.isnan(attention_ratio(attn, NAN_BOX, W, H))  # nothing inside
    assert math.isnan(attention_ratio(attn, [0.0, 0.0, 20.0, 20.0], W, H, region="coverage"))
    assert attention_ratio(np.array([[0.5, 0.0], [0.0, 0.0]]), [0.0, 0.0, 10.0, 10.0], W, H) == math.inf
    assert math.isnan(attention_ratio(np.zeros((2, 2)), [0.0, 0.0, 10.0, 10.0], W, H))


def test_video_ratio_counts_frames_without_a_box_as_outside():
    attn = np.array([[[0.5, 0.1], [0.1, 0.1]], [[0.25, 0.1], [0.1, 0.1]]])
    boxes = np.array([[0.0, 0.0, 10.0, 10.0], NAN_BOX])
    assert attention_ratio(attn, boxes, W, H) == pytest.approx(2.0)


def test_token_ratios_match_one_token_at_a_time():
    rng = np.random.default_rng(0)
    maps = rng.random((3, 2, 2, 2))
    boxes = np.array([[0.0, 0.0, 15.0, 10.0], [5.0, 5.0, 20.0, 20.0]])
    expected = [attention_ratio(m, boxes, W, H) for m in maps]
    np.testing.assert_allclose(token_attention_ratios(maps, boxes, W, H), expected)


def test_hit_ratios():
    ratios = np.array(
        [
            [1.0, 2.0, 0.0],  # token 1
            [3.0, 1.0, 1.0],  # token 0
            [2.0, 2.0, 1.0],  # tie -> token 0
            [np.nan, np.nan, np.nan],  # left out
            [np.nan, 5.0, 1.0],  # token 1
        ]
    )
    np.testing.assert_allclose(hit_ratios(ratios), [0.5, 0.5, 0.0])
    assert np.isnan(hit_ratios(np.full((2, 2), np.nan))).all()


# --------------------------------------------------------------------------- Fig. 2(b)


def _samples() -> list[PilotSample]:
    """Three images, two tokens, two proposals (left and right half)."""
    proposals = np.array([LEFT, RIGHT])
    maps = [
        [[[0.9, 0.1], [0.1, 0.1]], [[0.1, 0.5], [0.1, 0.1]]],  # GT left: t0 (max .9) left, t1 right
        [[[0.3, 0.2], [0.1, 0.1]], [[0.1, 0.7], [0.1, 0.1]]],  # GT right: t0 (max .3) left, t1 right
        [[[0.2, 0.6], [0.1, 0.1]], [[0.4, 0.1], [0.1, 0.1]]],  # GT left: t0 (max .6) right, t1 left
    ]
    gts = [LEFT, RIGHT, LEFT]
    return [
        PilotSample(np.array(m), np.array(g), W, H, proposals=proposals)
        for m, g in zip(maps, gts, strict=True)
    ]


def test_proposal_choices_and_correctness():
    samples = _samples()
    np.testing.assert_array_equal(samples[0].correct, [True, False])
    np.testing.assert_array_equal(samples[1].correct, [False, True])
    assert samples[0].maps.shape == (2, 1, 2, 2)
    np.testing.assert_array_equal(proposal_choices(samples[0].maps, np.array([LEFT, RIGHT]), W, H), [0, 1])


def test_proposals_correct_averages_iou_over_gt_frames():
    gt = np.array([LEFT, LEFT, NAN_BOX])
    proposals = np.array(
        [
            [LEFT, NAN_BOX, RIGHT],  # IoU 1 and 0 on the GT frames -> 0.5, right at the threshold
            [LEFT, [0.0, 0.0, 10.0, 10.0], LEFT],  # 1 and 0.5 -> 0.75
            [RIGHT, RIGHT, LEFT],  # 0 and 0
        ]
    )
    np.testing.assert_array_equal(proposals_correct(proposals, gt), [True, True, False])
    np.testing.assert_array_equal(proposals_correct(proposals, gt, threshold=0.6), [False, True, False])


def test_activation_rank_accuracy():
    # Rank 1 (highest max) is right on samples 1 and 2, rank 2 only on sample 3.
    np.testing.assert_allclose(activation_rank_accuracy(_samples()), [2 / 3, 1 / 3])
    no_props = [PilotSample(s.maps, s.gt_boxes, W, H) for s in _samples()]
    assert np.isnan(activation_rank_accuracy(no_props)).all()


# --------------------------------------------------------------------------- eq. 5


def test_temporal_consistency():
    rng = np.random.default_rng(0)
    a = rng.random((3, 2, 2))
    for method in ("cosine", "intersection"):
        assert temporal_consistency(a, a, method) == pytest.approx(1.0)
        assert temporal_consistency(a, 2 * a, method) == pytest.approx(1.0)
        assert temporal_consistency(a, a[::-1], method) < 1.0
    x = np.array([[[1.0, 1.0], [0.0, 0.0]]])
    y = np.array([[[1.0, 0.0], [1.0, 0.0]]])
    assert temporal_consistency(x, y, "cosine") == pytest.approx(0.5)
    assert temporal_consistency(x, y, "intersection") == pytest.approx(0.5)
    u, v = np.array([3.0, 1.0]).reshape(2, 1, 1), np.ones((2, 1, 1))
    assert temporal_consistency(u, v, "cosine") == pytest.approx(4 / math.sqrt(20))
    assert temporal_consistency(u, v, "intersection") == pytest.approx(0.75)
    # flip=True flips the reversed run's map back along T.
    assert temporal_consistency(torch.tensor(a), torch.tensor(a[::-1].copy()), flip=True) == pytest.approx(
        1.0
    )
    assert math.isnan(temporal_consistency(np.zeros((1, 2, 2)), x))


# --------------------------------------------------------------------------- the table


def test_pilot_table():
    table = pilot_table(_samples(), token_names=["<|im_end|>", "assistant"])
    # Ratios: sample 1 (9, 0.2), sample 2 (0.2 / 0.3, 7), sample 3 (0.2 / 0.6, 4).
    np.testing.assert_allclose(table.mean_ratio, [10 / 3, 11.2 / 3])
    np.testing.assert_allclose(table.hit_ratio, [1 / 3, 2 / 3])
    np.testing.assert_allclose(table.rank_accuracy, [2 / 3, 1 / 3])
    assert (table.n_samples, table.n_ratio_samples, table.n_rank_samples) == (3, 3, 3)
    text = table.to_markdown()
    assert "| <\\|im_end\\|> | 3.333 | 33.3 |" in text
    assert "| assistant | 3.733 | 66.7 |" in text
    assert "| 1 | 66.7 |" in text and "| 2 | 33.3 |" in text
    with pytest.raises(ValueError, match="token names"):
        pilot_table(_samples(), token_names=["a"])
