"""Object proposals of one clip: Grounding DINO detections linked into tracks.

Two trackers: SAM2 (box prompts propagated into masks, :mod:`zsgrounding.proposals.sam2`) or the
IoU tracker (detections linked by box overlap, :mod:`zsgrounding.proposals.tracker`). A tracker
that needs the frames says so with a class attribute ``needs_frames = True`` and is called as
``track(frames, frame_ids, detections, size=...)``; any other as ``track(detections)``.

Boxes and masks come out in the clip's native resolution even when its frames were resized.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import torch

from zsgrounding.proposals.detections import FrameDetections
from zsgrounding.proposals.grounding_dino import DetectorConfig, GroundingDinoDetector
from zsgrounding.proposals.sam2 import Sam2Config, Sam2Tracker
from zsgrounding.types import Clip, Track

TrackerName = Literal["sam2", "iou"]


class Detector(Protocol):
    """What :func:`extract_tracks` needs of a detector (see :class:`GroundingDinoDetector`)."""

    def detect(
        self, frames: np.ndarray, frame_ids: np.ndarray, text: str, size: tuple[int, int] | None = None
    ) -> list[FrameDetections]: ...


@dataclass(frozen=True)
class ProposalConfig:
    """Which models make the proposals and how.

    Attributes:
        detector: Grounding DINO checkpoint, a local directory or a hub id.
        tracker: ``"sam2"`` (masks, needs ``sam2``) or ``"iou"`` (boxes only, no second model).
        sam2: SAM2 video checkpoint, a local directory or a hub id.
        detect_every: run the detector on every this-many-th clip frame (indices 0, k, 2k, ...).
        box_threshold, text_threshold, detector_image_size, detector_batch_size: see
            :class:`~zsgrounding.proposals.grounding_dino.DetectorConfig`.
        redetect_every, new_object_iou, mask_threshold, max_objects: see
            :class:`~zsgrounding.proposals.sam2.Sam2Config`.
        iou_tracker: keyword arguments of ``IoUTrackerConfig`` for the ``"iou"`` tracker.
        device: torch device of both models (``None``: CPU).
        dtype: torch dtype name of both models, e.g. ``"bfloat16"`` (``None``: the checkpoint's).
        hub_kwargs: ``revision``, ``cache_dir``, ``local_files_only``, ... for both checkpoints.
    """

    detector: str = "IDEA-Research/grounding-dino-tiny"
    tracker: TrackerName = "sam2"
    sam2: str = "facebook/sam2.1-hiera-tiny"
    detect_every: int = 1
    box_threshold: float = 0.25
    text_threshold: float = 0.3
    detector_image_size: int | None = None
    detector_batch_size: int = 4
    redetect_every: int = 5
    new_object_iou: float = 0.3
    mask_threshold: float = 0.0
    max_objects: int = 20
    iou_tracker: dict[str, Any] = field(default_factory=dict)
    device: str | None = None
    dtype: str | None = None
    hub_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.tracker not in ("sam2", "iou"):
            raise ValueError(f"unknown tracker {self.tracker!r}; use 'sam2' or 'iou'")
        if self.detect_every <= 0:
            raise ValueError(f"detect_every must be positive, got {self.detect_every}")

    def detector_config(self) -> DetectorConfig:
        return DetectorConfig(
            box_threshold=self.box_threshold,
            text_threshold=self.text_threshold,
            image_size=self.detector_image_size,
            batch_size=self.detector_batch_size,
        )

    def sam2_config(self) -> Sam2Config:
        return Sam2Config(
            redetect_every=self.redetect_every,
            new_object_iou=self.new_object_iou,
            mask_threshold=self.mask_threshold,
            max_objects=self.max_objects,
        )

    def torch_dtype(self) -> torch.dtype | None:
        if self.dtype is None:
            return None
        dtype = getattr(torch, self.dtype, None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"unknown torch dtype {self.dtype!r}")
        return dtype


def load_detector(config: ProposalConfig) -> GroundingDinoDetector:
    """The Grounding DINO detector ``config`` names."""
    return GroundingDinoDetector.from_pretrained(
        config.detector, config.detector_config(), config.torch_dtype(), config.device, **config.hub_kwargs
    )


def load_tracker(config: ProposalConfig) -> Any:
    """The tracker ``config`` names: a :class:`Sam2Tracker` or an ``IoUTracker``."""
    if config.tracker == "iou":
        from zsgrounding.proposals.tracker import IoUTracker, IoUTrackerConfig  # only this path needs it

        return IoUTracker(IoUTrackerConfig(**config.iou_tracker))
    return Sam2Tracker.from_pretrained(
        config.sam2, config.sam2_config(), config.torch_dtype(), config.device, **config.hub_kwargs
    )


def extract_tracks(
    clip: Clip, noun_phrase: str, detector: Detector, tracker: Any, detect_every: int = 1
) -> list[Track]:
    """Detect ``noun_phrase`` on the clip's frames and link the detections into tracks.

    Args:
        clip: the sampled frames; boxes and masks come out in its native ``width x height``.
        noun_phrase: what to detect (the detector lower-cases it and appends ``"."``).
        detector: e.g. :class:`GroundingDinoDetector`.
        tracker: a :class:`Sam2Tracker` (``needs_frames``) or anything with ``track(detections)``,
            e.g. ``IoUTracker``.
        detect_every: run the detector on clip frames ``0, k, 2k, ...`` only.

    Returns:
        the tracker's tracks; ``[]`` when the clip has no frames or nothing is detected on any
        frame (the tracker is then not called).
    """
    if detect_every <= 0:
        raise ValueError(f"detect_every must be positive, got {detect_every}")
    if len(clip) == 0:
        return []
    size = (int(clip.height), int(clip.width))
    picked = np.arange(0, len(clip), detect_every)
    detections = detector.detect(clip.frames[picked], clip.frame_ids[picked], noun_phrase, size=size)
    if not any(len(d) for d in detections):
        return []
    if getattr(tracker, "needs_frames", False):
        return list(tracker.track(clip.frames, clip.frame_ids, detections, size=size))
    return list(tracker.track(detections))


@dataclass
class Proposer:
    """A detector and a tracker bound together: ``proposer(clip, noun_phrase) -> tracks``."""

    detector: Detector
    tracker: Any
    detect_every: int = 1

    @classmethod
    def from_config(cls, config: ProposalConfig) -> Proposer:
        """Load both models ``config`` names."""
        return cls(load_detector(config), load_tracker(config), config.detect_every)

    def __call__(self, clip: Clip, noun_phrase: str) -> list[Track]:
        return extract_tracks(clip, noun_phrase, self.detector, self.tracker, self.detect_every)
