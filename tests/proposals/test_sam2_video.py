"""SAM2 tracker on a tiny random-weight ``Sam2VideoModel`` saved and loaded offline.

Random weights give meaningless masks. The checkpoint's object-score head is biased so that every
object is "present" on every frame (otherwise SAM2 blanks all masks); the tests then check the
plumbing of the real classes in the detect–track–correct loop: one mask per propagated frame at
native size, boxes equal to the masks' bounding boxes, ids, labels, the single-frame masks that
match detections, re-prompting, and the backward session. With ``mask_threshold`` far below every
logit the masks cover the whole frame, which makes the loop's decisions deterministic. The loop's
logic itself is tested with a scripted segmenter in ``test_loop.py``. The checkpoint builder
lives in ``tests/tiny_proposals.py``.
"""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_proposals import FULL_MASK_THRESHOLD, SAM2_MEAN, SAM2_SIDE, save_tiny_sam2
from transformers import Sam2VideoModel

from zsgrounding.mllm.errors import ModelError
from zsgrounding.proposals.detections import FrameDetections
from zsgrounding.proposals.loop import LoopConfig, mask_box
from zsgrounding.proposals.sam2 import Sam2Config, Sam2Tracker, box_prompt

SIDE = SAM2_SIDE  # the model's square input
H, W = 48, 80  # native frame size
T = 6
FULL = FULL_MASK_THRESHOLD  # below every logit of a present object: full-frame masks


def frames_of(num: int = T, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(num, H, W, 3), dtype=np.uint8)


def det(frame_id, boxes, scores, labels=None) -> FrameDetections:
    return FrameDetections(frame_id, np.asarray(boxes, dtype=np.float64), np.asarray(scores), labels or [])


FRAME_IDS = np.arange(T) * 10 + 3


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_tiny_sam2(tmp_path_factory.mktemp("sam2"))


@pytest.fixture(scope="module")
def model(checkpoint) -> Sam2VideoModel:
    return Sam2Tracker.from_pretrained(checkpoint).model


def tracker_with(model, mask_threshold: float = 0.0, **loop) -> Sam2Tracker:
    return Sam2Tracker.from_model(model, Sam2Config(loop=LoopConfig(**loop), mask_threshold=mask_threshold))


def previous_with(model, look_gap: int, **changes) -> Sam2Tracker:
    """The loop before the rework, looking for new objects every ``look_gap`` frames."""
    loop = dataclasses.replace(LoopConfig.previous(), look_gap=look_gap, **changes)
    return Sam2Tracker.from_model(model, Sam2Config(loop=loop, mask_threshold=FULL))


def test_box_prompt_and_mask_box_numbers():
    prompt = box_prompt(np.array([10.0, 12.0, 50.0, 36.0]), W, H, SIDE)
    torch.testing.assert_close(prompt["point_coords"], torch.tensor([[[[8.0, 16.0], [40.0, 48.0]]]]))
    torch.testing.assert_close(prompt["point_labels"], torch.tensor([[[2, 3]]], dtype=torch.int32))
    mask = np.zeros((H, W), dtype=bool)
    mask[5:9, 20:31] = True
    np.testing.assert_array_equal(mask_box(mask), [20.0, 5.0, 31.0, 9.0])
    assert mask_box(np.zeros((H, W), dtype=bool)) is None


def test_preprocessing_read_from_checkpoint(checkpoint):
    tracker = Sam2Tracker.from_pretrained(checkpoint)
    assert tracker.preprocessing.size == SIDE
    assert tracker.preprocessing.image_mean == tuple(SAM2_MEAN)
    assert tracker.preprocessing.source == checkpoint / "video_preprocessor_config.json"
    default = Sam2Tracker.from_model(tracker.model)
    assert default.preprocessing.image_mean == (0.485, 0.456, 0.406)
    with pytest.raises(ModelError, match="does not match"):
        Sam2Tracker.from_model(tracker.model, Sam2Config(image_size=1024))


# the tiny model's mask logits are within +-0.003: 0.002 leaves sparse masks, some frames empty
@pytest.mark.parametrize("threshold", [0.0, 0.002])
def test_one_mask_per_propagated_frame_and_boxes_from_masks(model, threshold):
    tracker = tracker_with(model, mask_threshold=threshold)
    dets = [det(FRAME_IDS[0], [[10, 8, 40, 30]], [0.9], ["man"])]
    tracks = tracker.track(frames_of(), FRAME_IDS, dets)
    assert [(t.track_id, t.label, t.score) for t in tracks] == [(0, "man", 0.9)]
    track = tracks[0]
    assert track.masks is not None and track.masks.dtype == bool
    assert track.masks.shape == (len(track.frame_ids), H, W)
    assert set(track.frame_ids) <= set(FRAME_IDS)
    assert np.all(track.masks.reshape(len(track.frame_ids), -1).any(axis=1))  # empty-mask frames have no box
    for box, mask in zip(track.boxes, track.masks, strict=True):
        ys, xs = np.nonzero(mask)
        np.testing.assert_array_equal(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    # the same run twice gives the same masks
    again = tracker.track(frames_of(), FRAME_IDS, dets)[0]
    np.testing.assert_array_equal(again.masks, track.masks)


def test_full_masks_cover_every_frame_at_native_size(model):
    tracker = tracker_with(model, mask_threshold=FULL)
    tracks = tracker.track(frames_of(), FRAME_IDS, [det(FRAME_IDS[0], [[10, 8, 40, 30]], [0.9])])
    assert len(tracks) == 1
    np.testing.assert_array_equal(tracks[0].frame_ids, FRAME_IDS)
    assert tracks[0].masks.shape == (T, H, W) and tracks[0].masks.all()
    np.testing.assert_array_equal(tracks[0].boxes, np.tile([0.0, 0.0, W, H], (T, 1)))


def test_output_size_differs_from_frame_size(model):
    # frames resized to half size, boxes and masks asked in the native 96 x 160 grid
    tracker = tracker_with(model, mask_threshold=FULL)
    tracks = tracker.track(
        frames_of(3), FRAME_IDS[:3], [det(FRAME_IDS[0], [[20, 16, 80, 60]], [0.5])], size=(96, 160)
    )
    assert tracks[0].masks.shape == (3, 96, 160)
    np.testing.assert_array_equal(tracks[0].boxes[0], [0.0, 0.0, 160.0, 96.0])


def test_tracks_start_on_the_first_frame_with_detections_and_run_backwards(model):
    dets = [det(FRAME_IDS[0], [], []), det(FRAME_IDS[2], [[0, 0, 20, 20]], [0.7], ["dog"])]
    forward_only = tracker_with(model, mask_threshold=FULL, backward=False).track(
        frames_of(), FRAME_IDS, dets
    )
    assert len(forward_only) == 1 and forward_only[0].label == "dog"
    np.testing.assert_array_equal(forward_only[0].frame_ids, FRAME_IDS[2:])
    # the backward session (frames 2, 1, 0) covers the frames before the detection
    both = tracker_with(model, mask_threshold=FULL).track(frames_of(), FRAME_IDS, dets)
    assert [t.label for t in both] == ["dog"]
    np.testing.assert_array_equal(both[0].frame_ids, FRAME_IDS)
    assert both[0].masks.shape == (T, H, W) and both[0].masks.all()


def test_detections_of_a_tracked_object_correct_it_instead_of_starting_another(model):
    # full-frame masks: each detection's own mask (SAM2's single-frame path) is the full frame,
    # IoU 1 with the tracked object's, so every later detection is matched and re-prompts object 0
    small = [[5, 5, 15, 15]]
    dets = [
        det(FRAME_IDS[0], [[10, 8, 40, 30]], [0.9], ["man"]),
        det(FRAME_IDS[1], small, [0.8], ["dog"]),
        det(FRAME_IDS[3], small, [0.6], ["cat"]),
    ]
    tracker = tracker_with(model, mask_threshold=FULL)
    masks = tracker.segmenter.bind(frames_of(2), (H, W)).segment(1, np.array([*small, [0, 0, 80, 48]]))
    assert masks.shape == (2, H, W) and masks.all()
    tracks = tracker.track(frames_of(), FRAME_IDS, dets)
    assert [(t.track_id, t.label) for t in tracks] == [(0, "man")]
    assert tracks[0].score == pytest.approx((0.9 + 0.8 + 0.6) / 3)  # started and corrected twice
    np.testing.assert_array_equal(tracks[0].frame_ids, FRAME_IDS)


def test_the_previous_loop_starts_objects_by_box_iou_every_few_frames(model):
    # full-frame masks: a 10 x 10 box has IoU 100 / 3840 = 0.026 with them, a new object;
    # a 70 x 44 box has IoU 3080 / 3840 = 0.80, the same object
    small, large = [[5, 5, 15, 15]], [[5, 2, 75, 46]]
    dets = [
        det(FRAME_IDS[0], [[10, 8, 40, 30]], [0.9], ["man"]),
        det(FRAME_IDS[1], small, [0.8], ["too early"]),  # not a re-detection frame
        det(FRAME_IDS[3], small, [0.6], ["dog"]),
        det(FRAME_IDS[4], small, [0.7], ["cat"]),  # one frame after the last look: skipped
        det(FRAME_IDS[5], large, [0.7], ["car"]),
    ]
    tracks = previous_with(model, look_gap=2).track(frames_of(), FRAME_IDS, dets)
    assert [(t.track_id, t.label, t.score) for t in tracks] == [(0, "man", 0.9), (1, "dog", 0.6)]
    np.testing.assert_array_equal(tracks[0].frame_ids, FRAME_IDS)
    np.testing.assert_array_equal(tracks[1].frame_ids, FRAME_IDS[3:])
    assert tracks[1].masks.shape == (3, H, W)
    # looking on every frame with a strict IoU threshold, every detection is a new object
    strict = previous_with(model, look_gap=1, match_iou=0.9)
    tracks = strict.track(frames_of(), FRAME_IDS, dets)
    assert [t.label for t in tracks] == ["man", "too early", "dog", "cat", "car"]
    assert [t.track_id for t in tracks] == [0, 1, 2, 3, 4]
    assert [int(t.frame_ids[0]) for t in tracks] == [int(FRAME_IDS[i]) for i in (0, 1, 3, 4, 5)]


def test_duplicates_on_one_frame_start_one_object(model):
    dets = [
        det(
            FRAME_IDS[0],
            [[10, 8, 40, 30], [11, 8, 41, 31], [50, 20, 70, 40]],
            [0.5, 0.8, 0.6],
            ["a", "b", "c"],
        )
    ]
    # by box IoU (the previous loop) "a" duplicates "b" and "c" is apart; by the detections' own
    # full-frame masks all three are one object
    previous = previous_with(model, look_gap=5).track(frames_of(3), FRAME_IDS[:3], dets)
    assert [(t.track_id, t.label) for t in previous] == [(0, "b"), (1, "c")]
    assert [
        t.label for t in tracker_with(model, mask_threshold=FULL).track(frames_of(3), FRAME_IDS[:3], dets)
    ] == ["b"]
    capped = previous_with(model, look_gap=5, max_objects=1)
    assert [t.label for t in capped.track(frames_of(3), FRAME_IDS[:3], dets)] == ["b"]


def test_no_detections_returns_nothing_without_running_the_model(model, monkeypatch):
    tracker = tracker_with(model)

    def boom(*args, **kwargs):
        raise AssertionError("the model must not run")

    monkeypatch.setattr(tracker.model, "forward", boom)
    assert tracker.track(frames_of(), FRAME_IDS, []) == []
    assert tracker.track(frames_of(), FRAME_IDS, [det(FRAME_IDS[1], [], [])]) == []


def test_invalid_inputs(model):
    tracker = tracker_with(model)
    with pytest.raises(ValueError, match="not in the clip"):
        tracker.track(frames_of(), FRAME_IDS, [det(999, [[0, 0, 5, 5]], [0.5])])
    with pytest.raises(ValueError, match="frame ids"):
        tracker.track(frames_of(), FRAME_IDS[:2], [])
