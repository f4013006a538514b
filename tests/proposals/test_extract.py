"""Proposal extraction: detector + tracker on a clip, with tiny random-weight checkpoints.

The tiny checkpoints come from ``tests/tiny_proposals.py``. Random weights give
meaningless boxes and masks, so these tests check the wiring: which frames are detected, the
native coordinates, the tracker dispatch and the empty cases.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_proposals import FULL_MASK_THRESHOLD as FULL
from tiny_proposals import NUM_QUERIES, save_tiny_detector, save_tiny_sam2

from zsgrounding.proposals.detections import FrameDetections
from zsgrounding.proposals.extract import ProposalConfig, Proposer, extract_tracks, load_detector
from zsgrounding.proposals.loop import LoopConfig
from zsgrounding.proposals.sam2 import Sam2Config, Sam2Tracker
from zsgrounding.types import Clip, Track

NATIVE_H, NATIVE_W = 96, 160  # the clip's frames are half this size


def make_clip(num: int = 5, seed: int = 0) -> Clip:
    frames = np.random.default_rng(seed).integers(0, 256, size=(num, 48, 80, 3), dtype=np.uint8)
    ids = np.arange(num, dtype=np.int64) * 7 + 1
    return Clip(frames, ids, ids / 25.0, 25.0, 7 * num + 1, NATIVE_W, NATIVE_H)


class FixedDetector:
    """Stand-in detector: the given boxes on every detected frame; records its calls."""

    def __init__(self, boxes=()):
        self.boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        self.calls = []

    def detect(self, frames, frame_ids, text, size=None):
        self.calls.append((frames.shape, [int(f) for f in frame_ids], text, size))
        n = len(self.boxes)
        return [
            FrameDetections(int(f), self.boxes, np.linspace(0.9, 0.5, n), ["thing"] * n) for f in frame_ids
        ]


class RecordingTracker:
    """Stand-in detection-only tracker (the IoU tracker's interface): one track per detection frame."""

    def __init__(self):
        self.seen = None

    def track(self, detections):
        self.seen = list(detections)
        return [
            Track([d.frame_id], d.boxes[:1], label="x", track_id=i)
            for i, d in enumerate(detections)
            if len(d)
        ]


class ExplodingTracker:
    needs_frames = True

    def track(self, *args, **kwargs):
        raise AssertionError("the tracker must not run")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> tuple[Path, Path]:
    return save_tiny_detector(tmp_path_factory.mktemp("gd")), save_tiny_sam2(tmp_path_factory.mktemp("sam2"))


@pytest.fixture(scope="module")
def sam2(checkpoints) -> Sam2Tracker:
    return Sam2Tracker.from_pretrained(checkpoints[1], Sam2Config(mask_threshold=FULL))


def test_sam2_path_in_native_coordinates(sam2):
    clip = make_clip()
    detector = FixedDetector([[20, 16, 80, 60]])
    tracks = extract_tracks(clip, "The Man", detector, sam2)
    assert detector.calls == [((5, 48, 80, 3), clip.frame_ids.tolist(), "The Man", (NATIVE_H, NATIVE_W))]
    assert len(tracks) == 1 and tracks[0].label == "thing"
    np.testing.assert_array_equal(tracks[0].frame_ids, clip.frame_ids)
    assert tracks[0].masks.shape == (5, NATIVE_H, NATIVE_W)
    # full masks (threshold below every logit): the box is the whole native frame
    np.testing.assert_array_equal(tracks[0].boxes, np.tile([0.0, 0.0, NATIVE_W, NATIVE_H], (5, 1)))


def test_detect_every_picks_frames_and_tracks_all_of_them(sam2):
    clip = make_clip()
    detector = FixedDetector([[20, 16, 80, 60]])
    tracks = extract_tracks(clip, "a dog", detector, sam2, detect_every=2)
    assert [call[1] for call in detector.calls] == [clip.frame_ids[[0, 2, 4]].tolist()]
    np.testing.assert_array_equal(tracks[0].frame_ids, clip.frame_ids)
    with pytest.raises(ValueError, match="detect_every"):
        extract_tracks(clip, "a dog", detector, sam2, detect_every=0)


def test_no_detections_give_no_tracks_without_tracking():
    detector = FixedDetector()
    assert extract_tracks(make_clip(), "a unicorn", detector, ExplodingTracker()) == []
    assert len(detector.calls) == 1
    empty = FixedDetector([[0, 0, 5, 5]])
    assert extract_tracks(make_clip(0), "a unicorn", empty, ExplodingTracker()) == []
    assert empty.calls == []  # nothing to detect on


def test_real_detector_feeds_a_detection_only_tracker(checkpoints):
    config = ProposalConfig(detector=str(checkpoints[0]), box_threshold=0.0, text_threshold=0.0)
    tracker = RecordingTracker()
    proposer = Proposer(load_detector(config), tracker, detect_every=2)
    clip = make_clip()
    tracks = proposer(clip, "The Man in red")
    assert [d.frame_id for d in tracker.seen] == clip.frame_ids[[0, 2, 4]].tolist()
    for det in tracker.seen:
        assert len(det) == NUM_QUERIES
        assert np.all(det.boxes >= 0)
        assert np.all(det.boxes[:, [0, 2]] <= NATIVE_W) and np.all(det.boxes[:, [1, 3]] <= NATIVE_H)
        assert set(det.labels) == {"the man in red"}
    assert [t.track_id for t in tracks] == [0, 1, 2]


def test_proposer_from_config_loads_both_checkpoints(checkpoints):
    config = ProposalConfig(
        detector=str(checkpoints[0]),
        sam2=str(checkpoints[1]),
        box_threshold=0.0,
        text_threshold=0.0,
        loop=LoopConfig(max_objects=2),
        mask_threshold=FULL,
        dtype="float32",
        hub_kwargs={"local_files_only": True},
    )
    proposer = Proposer.from_config(config)
    assert proposer.detector.config.box_threshold == 0.0
    assert isinstance(proposer.tracker, Sam2Tracker)
    assert (proposer.tracker.config.loop.max_objects, proposer.tracker.config.mask_threshold) == (2, FULL)
    assert proposer.tracker.model.dtype == torch.float32
    clip = make_clip(3)
    tracks = proposer(clip, "a car")
    # all ten queries pass on frame 0; overlapping ones start one object, at most two objects
    assert 1 <= len(tracks) <= 2
    for track in tracks:
        np.testing.assert_array_equal(track.frame_ids, clip.frame_ids)
        assert track.masks.shape == (3, NATIVE_H, NATIVE_W)
        assert track.label == "a car"  # text threshold 0: every word of the prompt


def test_config_validation():
    with pytest.raises(ValueError, match="unknown tracker"):
        ProposalConfig(tracker="bytetrack")
    with pytest.raises(ValueError, match="unknown torch dtype"):
        ProposalConfig(dtype="float99").torch_dtype()
    assert ProposalConfig(dtype="bfloat16").torch_dtype() is torch.bfloat16
    assert ProposalConfig().sam2_config() == Sam2Config()
