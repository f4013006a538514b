"""The detect–track–correct loop on the scripted cases (zsgrounding.toy.scripted), before and after.

Each case breaks one thing; the pins are the whole outcome (tracks, the object each follows, the
frames it covers), for the loop as it is and for :meth:`LoopConfig.previous`.
"""

from __future__ import annotations

import numpy as np
import pytest

from zsgrounding.boxes import box_iou
from zsgrounding.proposals.loop import LoopConfig, mask_box, mask_iou_matrix, run_loop
from zsgrounding.toy.scripted import Script, ScriptedSegmenter, scenarios, scripted_detections
from zsgrounding.types import Track

SCENARIOS = scenarios()


def _run(script: Script, config: LoopConfig) -> list[Track]:
    return run_loop(
        script.frames(),
        np.arange(script.num_frames),
        scripted_detections(script),
        ScriptedSegmenter(script),
        config,
    )


def _followed(script: Script, track: Track) -> int | None:
    """The scripted object a track's boxes overlap most (mean IoU over its frames), or None."""
    best, best_iou = None, 0.0
    for g, truth in enumerate(script.boxes):
        ious = [
            box_iou(box[None], truth[int(f)][None])[0] if int(f) in truth else 0.0
            for f, box in zip(track.frame_ids, track.boxes, strict=True)
        ]
        if np.mean(ious) > best_iou:
            best, best_iou = g, float(np.mean(ious))
    return best


def _summary(script: Script, tracks: list[Track]) -> list[tuple[int | None, int, int, int]]:
    """Per track: (object followed, first frame, last frame, frames covered)."""
    return [
        (_followed(script, t), int(t.frame_ids[0]), int(t.frame_ids[-1]), len(t.frame_ids)) for t in tracks
    ]


# (object, first, last, frames) per track: the loop now | the previous loop
PINNED = {
    "lost-for-a-while": (
        [(0, 0, 39, 40), (1, 0, 39, 40)],
        [(0, 0, 39, 34), (1, 0, 39, 40), (0, 16, 39, 24)],
    ),
    "appears-late": (
        [(0, 0, 39, 40), (1, 9, 39, 31)],
        [(0, 0, 39, 40), (1, 16, 39, 24)],
    ),
    "leaves-and-returns": (
        [(0, 0, 39, 30), (1, 0, 39, 40)],
        [(0, 0, 39, 30), (1, 0, 39, 40)],
    ),
    "returns-unseen": (
        [(0, 0, 14, 15), (1, 0, 39, 40), (0, 25, 39, 15)],
        [(0, 0, 14, 15), (1, 0, 39, 40), (0, 32, 39, 8)],
    ),
    "drifts": (
        [(0, 0, 39, 40), (1, 0, 39, 40)],
        [(0, 0, 39, 40), (1, 0, 39, 40), (0, 16, 39, 24), (1, 16, 39, 24), (0, 32, 39, 8), (1, 32, 39, 8)],
    ),
    "false-alarm": (
        [(0, 0, 39, 40), (1, 0, 39, 40)],
        [(0, 0, 39, 40), (1, 0, 39, 40), (None, 8, 39, 32)],
    ),
}


def test_every_scenario_is_pinned() -> None:
    assert set(PINNED) == set(SCENARIOS)


@pytest.mark.parametrize("name", sorted(PINNED))
def test_the_loop_now(name: str) -> None:
    script = SCENARIOS[name]
    tracks = _run(script, LoopConfig())
    assert _summary(script, tracks) == PINNED[name][0]
    assert [t.track_id for t in tracks] == sorted(t.track_id for t in tracks)  # id order


@pytest.mark.parametrize("name", sorted(PINNED))
def test_the_previous_loop(name: str) -> None:
    script = SCENARIOS[name]
    assert _summary(script, _run(script, LoopConfig.previous())) == PINNED[name][1]


def test_one_id_per_object_and_no_duplicate_wherever_the_segmenter_can_follow() -> None:
    for name in ("lost-for-a-while", "appears-late", "leaves-and-returns", "drifts", "false-alarm"):
        script = SCENARIOS[name]
        followed = [_followed(script, t) for t in _run(script, LoopConfig())]
        assert sorted(followed) == [0, 1], name


def test_a_late_object_is_covered_backwards_from_its_first_frame() -> None:
    script = SCENARIOS["appears-late"]
    late = _run(script, LoopConfig())[1]
    # first detected on round 12, covered from frame 9 where it walks in
    assert min(scripted_detections(script)) == 0 and 9 not in scripted_detections(script)
    np.testing.assert_array_equal(late.frame_ids, np.arange(9, 40))
    np.testing.assert_array_equal(late.boxes, np.stack([script.boxes[1][i] for i in range(9, 40)]))
    forward_only = _run(script, LoopConfig(backward=False))[1]
    assert int(forward_only.frame_ids[0]) == 12


def test_re_prompting_corrects_drift() -> None:
    script = SCENARIOS["drifts"]
    man = _run(script, LoopConfig())[0]
    truth = np.stack([script.boxes[0][int(f)] for f in man.frame_ids])
    iou = box_iou(man.boxes, truth)
    # at most 3 frames since the last prompt: 3 px of a 16 px box
    assert iou.min() == pytest.approx(13 * 16 / (2 * 256 - 13 * 16))
    uncorrected = _run(script, LoopConfig(reprompt=False))
    assert len(uncorrected) > 2


def test_the_merge_joins_a_restarted_track_with_the_one_it_continues() -> None:
    script = SCENARIOS["lost-for-a-while"]
    unmerged = _run(script, LoopConfig(merge_iou=None))
    assert [_followed(script, t) for t in unmerged] == [0, 1, 0]
    assert len(_run(script, LoopConfig())) == 2


def test_an_unconfirmed_object_ends_and_is_dropped() -> None:
    script = SCENARIOS["false-alarm"]
    kept = _run(script, LoopConfig(min_hits=1))
    # ended after 3 unmatched rounds (12, 16, 20): frames from the first of them on are dropped
    assert _summary(script, kept)[2] == (None, 0, 11, 12)
    never_ended = _run(script, LoopConfig(end_after=None))
    assert _summary(script, never_ended)[2] == (None, 0, 39, 40)


def test_masks_and_their_boxes() -> None:
    mask = np.zeros((6, 8), dtype=bool)
    mask[1:3, 2:5] = True
    np.testing.assert_array_equal(mask_box(mask), [2, 1, 5, 3])
    assert mask_box(np.zeros((6, 8), dtype=bool)) is None
    other = np.zeros_like(mask)
    other[1:3, 3:6] = True
    iou = mask_iou_matrix(np.stack([mask, np.zeros_like(mask)]), np.stack([other, np.zeros_like(mask)]))
    np.testing.assert_allclose(iou, [[4 / 8, 0.0], [0.0, 0.0]])


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"match": "centre"}, "match must be"),
        ({"match_iou": 0.0}, "match_iou 0.0"),
        ({"end_after": 0}, "end_after must be at least 1"),
        ({"min_hits": 0}, "min_hits"),
        ({"look_gap": -1}, "look_gap"),
    ],
)
def test_bad_settings_are_refused(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LoopConfig(**settings)
