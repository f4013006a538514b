"""The shared tube scorer: coverage, track and frame scores, spans, tube assembly."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from zsgrounding.tubes import (
    TubeScorer,
    TubeScorerConfig,
    assemble,
    box_coverage,
    frame_scores,
    mask_coverage,
    score_tracks,
    select_span,
    span_to_native,
)
from zsgrounding.types import Track


def static_track(box, frames, **kw):
    frames = np.asarray(frames)
    return Track(frames, np.tile(np.asarray(box, float), (frames.size, 1)), **kw)


def test_box_coverage_fractions_on_any_frame_size():
    # A 640x480 frame on a 4x4 grid: cells are 160x120 px.
    cov = box_coverage(np.array([80.0, 0.0, 320.0, 120.0]), 640, 480, (4, 4))
    assert_allclose(cov[0], [0.5, 1.0, 0.0, 0.0])
    assert_allclose(cov[1:], 0.0)
    # A box smaller than a cell still reaches it, with its area share.
    cov = box_coverage(np.array([10.0, 10.0, 50.0, 40.0]), 640, 480, (4, 4))
    assert cov[0, 0] == pytest.approx(40 * 30 / (160 * 120))
    # Absent (NaN) boxes cover nothing.
    assert box_coverage(np.full(4, np.nan), 640, 480, (4, 4)).sum() == 0.0


def test_mask_coverage_equals_box_coverage_for_rectangles():
    m = np.zeros((7, 9), bool)
    m[1:4, 2:8] = True
    assert_allclose(mask_coverage(m, (3, 4)), box_coverage(np.array([2.0, 1.0, 8.0, 4.0]), 9, 7, (3, 4)))
    assert_allclose(mask_coverage(np.ones((2, 5, 5), bool), (3, 3)), np.ones((2, 3, 3)))


def peaked_evidence(T=4, grid=(4, 4), peaks=None):
    ev = np.full((T, *grid), 0.1)
    for t, (r, c, v) in (peaks or {}).items():
        ev[t, r, c] = v
    return ev


def test_frame_and_track_scores_pick_the_track_under_the_peak():
    # 64x64 frame, 4x4 grid of 16 px cells; the peak sits in cell (1, 2) = x 32..48, y 16..32.
    ev = peaked_evidence(peaks={1: (1, 2, 0.9), 2: (1, 2, 0.7)})
    fids = np.array([0, 5, 10, 15])
    on_peak = static_track([32, 16, 48, 32], fids)
    elsewhere = static_track([0, 48, 16, 64], fids)
    half_on_peak = static_track([40, 16, 56, 32], [5])  # only on frame 5, half of the cell
    scores = frame_scores(ev, [on_peak, elsewhere, half_on_peak], fids, 64, 64)
    assert_allclose(scores[0], [0.1, 0.9, 0.7, 0.1])
    assert_allclose(scores[1], [0.1, 0.1, 0.1, 0.1])
    assert_allclose(scores[2], [0.0, 0.45, 0.0, 0.0])  # no box on frames 0, 10, 15 -> 0
    assert_allclose(score_tracks(ev, [on_peak, elsewhere, half_on_peak], fids, 64, 64), [0.9, 0.1, 0.45])
    # Binary weighting counts the touched cell fully.
    assert frame_scores(ev, half_on_peak, fids, 64, 64, weighting="binary")[1] == pytest.approx(0.9)
    # Vectorised over tracks equals scoring them one by one.
    one_by_one = np.stack([frame_scores(ev, t, fids, 64, 64) for t in (on_peak, elsewhere, half_on_peak)])
    assert_allclose(scores, one_by_one)


def test_masks_take_precedence_over_boxes():
    ev = peaked_evidence(T=1, peaks={0: (0, 0, 1.0)})
    mask = np.zeros((1, 64, 64), bool)
    mask[0, 40:64, 40:64] = True  # the mask lies far from the peak, the (loose) box covers it
    t = Track([0], [[0, 0, 64, 64]], masks=mask)
    assert frame_scores(ev, t, [0], 64, 64)[0] == pytest.approx(0.1)
    assert frame_scores(ev, t, [0], 64, 64, use_masks=False)[0] == pytest.approx(1.0)


def test_zero_and_one_track():
    ev = peaked_evidence()
    fids = np.arange(4)
    assert score_tracks(ev, [], fids, 64, 64).shape == (0,)
    assert frame_scores(ev, [], fids, 64, 64).shape == (0, 4)
    assert score_tracks(ev, [static_track([0, 0, 64, 64], fids)], fids, 64, 64).shape == (1,)
    with pytest.raises(ValueError, match="evidence must be"):
        frame_scores(ev[:2], [], fids, 64, 64)


def test_select_span_methods():
    s = np.array([0.0, 0.2, 0.9, 0.1, 0.8, 0.0])
    assert select_span(s, 2, "topk_hull") == (2, 4)
    # grow from the peak (2): neighbours 0.2 vs 0.1 -> left; then 0.0 vs 0.1 -> right.
    assert select_span(s, 3, "grow") == (1, 3)
    assert select_span(s, 4, "grow") == (1, 4)
    assert select_span(s, 1, "grow") == (2, 2)
    assert select_span(s, 99, "grow") == (0, 5)  # clamped to T
    with pytest.raises(ValueError, match="unknown span method"):
        select_span(s, 2, "middle")


def test_span_to_native_midpoints():
    fids = np.array([5, 15, 25, 35])
    assert span_to_native(1, 2, fids, 40) == (10, 30)
    assert span_to_native(0, 3, fids, 40) == (0, 40)
    assert span_to_native(3, 3, fids, 40) == (30, 40)


def test_assemble_interpolates_and_holds():
    track = Track([10, 20], [[0, 0, 10, 10], [10, 0, 20, 10]])
    tube = assemble(track, (5, 25))
    assert (tube.start, tube.end) == (5, 25)
    assert tube.frame_ids.tolist() == list(range(5, 25))
    assert_allclose(tube.boxes_at([15])[0], [5, 0, 15, 10])
    assert_allclose(tube.boxes_at([5])[0], [0, 0, 10, 10])  # held before the track starts
    assert_allclose(tube.boxes_at([24])[0], [10, 0, 20, 10])
    cut = assemble(track, (5, 25), extrapolate=False)
    assert cut.frame_ids.tolist() == list(range(10, 21))
    assert assemble(Track([], []), (0, 5)).frame_ids.size == 0


def test_scorer_grounds_the_right_track_and_span():
    T, fids = 8, np.arange(0, 80, 10)
    ev = np.full((T, 4, 4), 0.05)
    ev[3:6, 2, 1] = [0.6, 1.0, 0.7]  # the target sits in cell (2, 1) on sampled frames 3..5
    target = static_track([16, 32, 32, 48], np.arange(80))
    other = static_track([48, 0, 64, 16], np.arange(80))
    scorer = TubeScorer(TubeScorerConfig(span_method="grow", span_frames=3))
    res = scorer.ground(ev, [other, target], fids, num_frames=80, width=64, height=64)
    assert res.chosen_track == 1
    assert res.extras["span_sampled"] == (3, 5)
    assert (res.tube.start, res.tube.end) == (25, 55)
    assert_allclose(res.tube.boxes_at([30])[0], [16, 32, 32, 48])
    # A separate temporal map moves the span without changing the track.
    temporal = np.zeros((T, 4, 4))
    temporal[0:2, 2, 1] = 1.0
    res = scorer.ground(ev, [other, target], fids, 80, 64, 64, temporal_evidence=temporal)
    assert res.chosen_track == 1 and (res.tube.start, res.tube.end) == (0, 25)


def test_scorer_with_no_tracks_returns_an_empty_tube():
    res = TubeScorer().ground(np.zeros((4, 2, 2)), [], np.arange(4), 4, 32, 32)
    assert res.chosen_track is None and len(res.tube) == 0 and res.track_scores.shape == (0,)
