"""The released zero-shot STVG code's mechanisms, one by one, against values worked out by hand.

Each test states the rule it checks; the numbers follow from the definitions in the audit (the
released code of "Unleashing the Potential of Multimodal LLMs for Zero-Shot Spatio-Temporal Video
Grounding"), and torch's own ``interpolate`` is the independent check of the resizes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from zsgrounding.tubes import (
    TubeScorer,
    TubeScorerConfig,
    bilinear_weights,
    box_coverage,
    box_point_coverage,
    mask_point_coverage,
    native_frame_scores,
    select_span,
    span_from_sampled,
)
from zsgrounding.types import Track
from zsgrounding.video import uniform_ids
from zsgrounding.zeroshot.decompose import reference_tidy
from zsgrounding.zeroshot.pipeline import interrogative


def _rasterise(box: list[float], height: int, width: int) -> np.ndarray:
    """Pixels whose centre lies in the box, written out with loops (the rule, not the code)."""
    mask = np.zeros((height, width))
    for y in range(height):
        for x in range(width):
            if box[0] <= x + 0.5 < box[2] and box[1] <= y + 0.5 < box[3]:
                mask[y, x] = 1.0
    return mask


# ------------------------------------------------------------------------- resizing


@pytest.mark.parametrize(("size_in", "size_out"), [(60, 6), (27, 6), (8, 2), (6, 60), (6, 13), (5, 5)])
def test_bilinear_weights_are_torch_interpolate(size_in: int, size_out: int) -> None:
    x = torch.rand(3, size_in, dtype=torch.float64)
    ours = torch.from_numpy(bilinear_weights(size_in, size_out)) @ x.T
    theirs = F.interpolate(x.T[None, None], size=(size_out, 3), mode="bilinear", align_corners=False)[0, 0]
    assert torch.allclose(ours, theirs, atol=1e-12)


def test_point_coverage_samples_near_cell_centres() -> None:
    # A 60 x 60 frame on a 6 x 6 grid: cell i reads pixels 10 i + 4 and 10 i + 5 (src = 10 i + 4.5).
    covering = box_point_coverage(np.array([20.0, 20.0, 28.0, 28.0]), 60, 60, (6, 6))
    assert covering[2, 2] == 1.0 and covering.sum() == 1.0
    # Pixels 10..13 hold none of the sampled pixels: a small off-centre object weighs 0 everywhere,
    # where area coverage gives it 0.4 of a cell.
    small = np.array([10.0, 10.0, 14.0, 14.0])
    assert box_point_coverage(small, 60, 60, (6, 6)).sum() == 0.0
    assert box_coverage(small, 60, 60, (6, 6))[1, 1] == pytest.approx(0.16)
    # One of the two sampled pixels of a cell inside: half weight on that axis.
    half = box_point_coverage(np.array([25.0, 20.0, 40.0, 28.0]), 60, 60, (6, 6))
    assert half[2, 2] == pytest.approx(0.5) and half[2, 3] == pytest.approx(1.0)


def test_point_coverage_of_boxes_and_masks_is_torch_interpolate_of_the_mask() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        x1, y1 = rng.uniform(0, 40, 2)
        box = [x1, y1, x1 + rng.uniform(1, 30), y1 + rng.uniform(1, 20)]
        mask = _rasterise(box, 36, 48)
        torch_grid = F.interpolate(torch.from_numpy(mask)[None, None], size=(3, 4), mode="bilinear")[0, 0]
        assert np.allclose(box_point_coverage(np.array(box), 48, 36, (3, 4)), torch_grid.numpy(), atol=1e-12)
        assert np.allclose(mask_point_coverage(mask, (3, 4)), torch_grid.numpy(), atol=1e-12)


def test_native_frame_scores_upsample_the_map_inside_the_region() -> None:
    rng = np.random.default_rng(1)
    evidence = rng.random((3, 2, 3))
    boxes = np.array([[2.0, 3.0, 20.0, 9.0], [0.0, 0.0, 30.0, 20.0], [np.nan] * 4])
    track = Track(frame_ids=np.array([0, 5, 10]), boxes=boxes)
    scores = native_frame_scores(evidence, track, np.array([0, 5, 10]), width=30, height=20)
    for t in range(2):
        up = F.interpolate(torch.from_numpy(evidence[t])[None, None], size=(20, 30), mode="bilinear")[0, 0]
        expected = (up.numpy() * _rasterise(list(boxes[t]), 20, 30)).max()
        assert scores[t] == pytest.approx(expected, abs=1e-12)
    assert scores[2] == 0.0  # no box on that frame
    # With masks: the same rule on the mask.
    masks = np.stack(
        [_rasterise(list(b), 20, 30) if t < 2 else np.zeros((20, 30)) for t, b in enumerate(boxes)]
    )
    masked = Track(frame_ids=np.array([0, 5, 10]), boxes=np.nan_to_num(boxes), masks=masks.astype(bool))
    assert np.allclose(native_frame_scores(evidence, masked, np.array([0, 5, 10]), 30, 20)[:2], scores[:2])


# ------------------------------------------------------------------------- the span rule


@pytest.mark.parametrize(
    ("scores", "window", "expected"),
    [
        # The higher neighbour joins until the window holds `window` frames.
        ([0.1, 0.6, 0.9, 0.5, 0.2], 3, (1, 3)),
        # A tie stops the growth: the peak alone.
        ([0.1, 0.5, 0.9, 0.5, 0.2], 4, (2, 2)),
        # Outside the clip counts -100: growth goes the only way it can.
        ([0.9, 0.3, 0.0, 0.0], 3, (0, 2)),
        # Zero on both sides (a track absent there) is a tie: no growth into it.
        ([0.0, 0.5, 1.0, 0.0, 0.0], 5, (1, 2)),
        # The first of two equal peaks, as torch.max returns it.
        ([0.2, 1.0, 0.1, 1.0, 0.3], 2, (0, 1)),
    ],
)
def test_reference_span_rule(scores: list[float], window: int, expected: tuple[int, int]) -> None:
    assert select_span(np.array(scores), window, "reference") == expected


def test_grow_goes_on_through_ties_where_the_reference_stops() -> None:
    scores = np.array([0.0, 0.5, 1.0, 0.0, 0.0])
    assert select_span(scores, 5, "grow") == (0, 4)
    assert select_span(scores, 5, "reference") == (1, 2)


def test_span_from_sampled_frames_is_the_released_sted() -> None:
    fids = np.array([0, 31, 63, 94, 126])
    # [frame_ids[first], frame_ids[last]] read with an exclusive end.
    assert span_from_sampled(1, 3, fids) == (31, 94)
    assert span_from_sampled(2, 2, fids) == (63, 63)


def test_reference_scorer_end_to_end_on_a_hand_made_clip() -> None:
    # Two tracks on a 60 x 60 frame, 5 sampled frames, a 6 x 6 map that is hot at cell (2, 2).
    fids = np.array([0, 10, 20, 30, 40])
    evidence = np.zeros((5, 6, 6))
    evidence[:, 2, 2] = [0.2, 0.5, 1.0, 0.6, 0.1]
    evidence[:, 0, 0] = 0.3
    on_target = Track(frame_ids=fids, boxes=np.tile([20.0, 20.0, 28.0, 28.0], (5, 1)))
    elsewhere = Track(frame_ids=fids, boxes=np.tile([0.0, 0.0, 8.0, 8.0], (5, 1)))
    config = TubeScorerConfig(
        weighting="point", span_method="reference", span_frames=3, span_scores="native", span_bounds="sampled"
    )
    result = TubeScorer(config).ground(evidence, [elsewhere, on_target], fids, 50, 60, 60)
    # Track scores: cell (2, 2) weighs 1 for the target's box (max 1.0), cell (0, 0) for the other (0.3).
    assert result.chosen_track == 1
    assert result.track_scores.tolist() == pytest.approx([0.3, 1.0])
    # Inside the box the upsampled map peaks at pixels 24-25, 0.95 of cell (2, 2) on each axis:
    # frame scores 0.9025 x the hot values. Peak frame 2; 0.6 > 0.5 adds frame 3; 0.5 > 0.1 frame 1.
    assert result.frame_scores == pytest.approx(0.9025 * np.array([0.2, 0.5, 1.0, 0.6, 0.1]))
    assert result.extras["span_sampled"] == (1, 3)
    assert (result.tube.start, result.tube.end) == (10, 30)


# ------------------------------------------------------------------------- frames and questions


def test_linspace_sampling_includes_both_ends_and_truncates() -> None:
    # int() of np.linspace(0, 99, 20): steps of 99 / 19 = 5.2105..., truncated.
    ids = uniform_ids(100, 20, "linspace")
    assert ids[:6].tolist() == [0, 5, 10, 15, 20, 26]
    assert ids[-1] == 99 and ids.size == 20
    assert uniform_ids(100, 4, "centres").tolist() == [12, 37, 62, 87]
    with pytest.raises(ValueError, match="unknown sampling"):
        uniform_ids(10, 2, "edges")


def test_reference_questions() -> None:
    # Sub-queries keep their case; periods at both ends and spaces are stripped.
    assert interrogative("The man goes to the car.", style="reference") == (
        "Is there The man goes to the car in this video?"
    )
    # The whole query is lower-cased first, as the released data loader lowers sentences.
    assert interrogative("The Man in RED.", style="reference", whole_query=True) == (
        "Is there the man in red in this video?"
    )
    assert interrogative("The man goes to the car.") == "Is there the man goes to the car in this video?"
    # Periods first, then spaces: a period before a trailing space stays, as in the released code.
    assert reference_tidy("..a dog. ") == "a dog."
    assert reference_tidy(" a dog.") == "a dog"
