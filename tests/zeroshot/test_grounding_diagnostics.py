"""Tests of zsgrounding.zeroshot.diagnostics against hand-computed values.

Frames are 40 x 20 px on a 2 x 4 evidence grid, so every cell is 10 x 10 px and the cell
centres are x in (5, 15, 25, 35), y in (5, 15).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from zsgrounding.zeroshot.diagnostics import (
    PointingCounts,
    SwapOutcome,
    cell_centres,
    evidence_peaks,
    pointing_counts,
    pointing_summary,
    question_swap_summary,
    selected_track,
    swap_outcome,
    track_selection,
    track_selection_summary,
)

W, H = 40, 20
GRID = (2, 4)
NAN = [np.nan] * 4


# --------------------------------------------------------------------------- track selection


def test_selected_track_is_the_first_argmax() -> None:
    assert selected_track([0.1, 0.5, 0.5]) == 1
    assert track_selection([0.1, 0.5, 0.5], 1)
    assert not track_selection([0.1, 0.5, 0.5], 2)
    with pytest.raises(ValueError):
        selected_track([])


def test_track_selection_summary_accuracy_and_chance() -> None:
    # A failed sample (None) counts as wrong; chance is the mean of 1 / num_tracks.
    summary = track_selection_summary([1, 0, None], [1, 2, 0], [2, 4, 4])
    assert summary.n == 3 and summary.correct == 1
    assert summary.accuracy == pytest.approx(1 / 3)
    assert summary.chance == pytest.approx((1 / 2 + 1 / 4 + 1 / 4) / 3)
    with pytest.raises(ValueError):
        track_selection_summary([0], [0, 1], [2, 2])
    with pytest.raises(ValueError):
        track_selection_summary([0], [0], [0])


# --------------------------------------------------------------------------- pointing


def test_cell_centres_and_peaks() -> None:
    centres = cell_centres(GRID, W, H)
    assert centres.shape == (2, 4, 2)
    np.testing.assert_allclose(centres[0, :, 0], [5, 15, 25, 35])
    np.testing.assert_allclose(centres[:, 0, 1], [5, 15])
    evidence = np.zeros((2, 2, 4))
    evidence[0, 1, 2] = 3.0
    evidence[1, 0, 1] = evidence[1, 1, 3] = 2.0  # a tie: the first in row-major order wins
    np.testing.assert_array_equal(evidence_peaks(evidence), [[1, 2], [0, 1]])


def _scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three frames; the third has no ground truth and must not count."""
    gt = np.array([[20, 10, 30, 20], [0, 0, 12, 8], NAN], dtype=float)
    other = np.array([[0, 10, 10, 20], [30, 0, 40, 10], [0, 0, 10, 10]], dtype=float)
    objects = np.stack([gt, other])  # the target's own track is among the objects
    peaks = np.array([[1, 2], [0, 3], [0, 0]])
    return peaks, gt, objects


def test_pointing_counts_centre_rule() -> None:
    peaks, gt, objects = _scene()
    counts = pointing_counts(peaks, gt, objects, GRID, W, H, rule="centre")
    # Frame 0: centre (25, 15) in the target's box. Frame 1: centre (35, 5) in the other object's.
    assert (counts.frames, counts.target_hits, counts.any_hits) == (2, 1, 2)
    # Cells whose centre is in the target's box: 1 of 8 on both frames; in any box: 2 of 8.
    assert counts.target_chance == pytest.approx(2 / 8)
    assert counts.any_chance == pytest.approx(4 / 8)


def test_pointing_counts_overlap_rule() -> None:
    peaks, gt, objects = _scene()
    counts = pointing_counts(peaks, gt, objects, GRID, W, H, rule="overlap")
    assert (counts.frames, counts.target_hits, counts.any_hits) == (2, 1, 2)
    # Frame 0: the target touches 1 cell, all boxes 2; frame 1: [0, 12) x [0, 8) touches 2 cells,
    # with the other object 3.
    assert counts.target_chance == pytest.approx(3 / 8)
    assert counts.any_chance == pytest.approx(5 / 8)


def test_the_rules_differ_on_a_cell_the_box_only_touches() -> None:
    gt = np.array([[0, 0, 12, 8]], dtype=float)
    peak = np.array([[0, 1]])  # cell x in [10, 20): the box covers x in [10, 12) of it
    assert pointing_counts(peak, gt, gt[None], GRID, W, H, rule="centre").target_hits == 0
    assert pointing_counts(peak, gt, gt[None], GRID, W, H, rule="overlap").target_hits == 1
    with pytest.raises(ValueError):
        pointing_counts(peak, gt, gt[None], GRID, W, H, rule="corner")  # type: ignore[arg-type]


def test_the_target_counts_as_an_object_without_its_track() -> None:
    gt = np.array([[20, 10, 30, 20]], dtype=float)
    no_objects = np.full((1, 1, 4), np.nan)
    counts = pointing_counts(np.array([[1, 2]]), gt, no_objects, GRID, W, H)
    assert (counts.target_hits, counts.any_hits) == (1, 1)


def test_pointing_summary_pools_frames() -> None:
    peaks, gt, objects = _scene()
    first = pointing_counts(peaks, gt, objects, GRID, W, H)
    miss = pointing_counts(
        np.array([[0, 0]]), np.array([[20, 10, 30, 20]], float), objects[:, :1], GRID, W, H
    )
    assert (miss.frames, miss.target_hits, miss.any_hits) == (1, 0, 0)
    summary = pointing_summary([first, miss])
    assert summary.frames == 3
    assert summary.target == pytest.approx(1 / 3)
    assert summary.any_object == pytest.approx(2 / 3)
    assert summary.target_chance == pytest.approx((2 / 8 + 1 / 8) / 3)
    assert summary.any_chance == pytest.approx((4 / 8 + 2 / 8) / 3)
    empty = pointing_summary([PointingCounts()])
    assert empty.frames == 0 and math.isnan(empty.target)


def test_frames_without_ground_truth_count_nothing() -> None:
    counts = pointing_counts(np.array([[0, 0]]), np.array([NAN]), np.full((1, 1, 4), np.nan), GRID, W, H)
    assert counts == PointingCounts()


# --------------------------------------------------------------------------- question swap


def test_swap_outcomes_and_summary() -> None:
    ev_a, ev_b = np.zeros((1, 2, 4)), np.zeros((1, 2, 4))
    ev_a[0, 0, 0], ev_b[0, 1, 3] = 1.0, 1.0
    followed = swap_outcome([0.9, 0.1, 0.0], [0.2, 0.8, 0.1], 0, 1, ev_a, ev_b)
    assert followed == SwapOutcome(follows=True, track_moves=True, peak_moves=True, num_tracks=3)

    blind = swap_outcome([0.3, 0.6], [0.3, 0.6], 0, 1, ev_a, ev_a)
    assert blind == SwapOutcome(follows=False, track_moves=False, peak_moves=False, num_tracks=2)

    # The track moves to a wrong one while the peak of the whole map stays put.
    ev_c = ev_a.copy()
    ev_c[0, 1, 1] = 0.5
    wrong = swap_outcome([0.1, 0.9, 0.2, 0.0], [0.1, 0.2, 0.9, 0.0], 1, 3, ev_a, ev_c)
    assert wrong == SwapOutcome(follows=False, track_moves=True, peak_moves=False, num_tracks=4)

    summary = question_swap_summary([followed, blind, wrong])
    assert summary.n == 3
    assert summary.follows == pytest.approx(1 / 3)
    assert summary.track_moves == pytest.approx(2 / 3)
    assert summary.peak_moves == pytest.approx(1 / 3)
    assert summary.chance_follows == pytest.approx((1 / 9 + 1 / 4 + 1 / 16) / 3)
    assert summary.chance_moves == pytest.approx((2 / 3 + 1 / 2 + 3 / 4) / 3)


def test_swap_rejects_bad_pairs() -> None:
    ev = np.zeros((1, 2, 4))
    with pytest.raises(ValueError):
        swap_outcome([0.1, 0.2], [0.1, 0.2], 1, 1, ev, ev)
    with pytest.raises(ValueError):
        swap_outcome([0.1, 0.2], [0.1, 0.2, 0.3], 0, 1, ev, ev)
    with pytest.raises(ValueError):
        swap_outcome([0.1, 0.2], [0.1, 0.2], 0, 1, ev, np.zeros((2, 2, 4)))
    assert question_swap_summary([]).n == 0
