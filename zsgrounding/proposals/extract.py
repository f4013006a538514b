"""Object proposals of one clip: Grounding DINO detections linked into tracks.

Two trackers: SAM2 in the detect–track–correct loop (:mod:`zsgrounding.proposals.sam2`,
:mod:`zsgrounding.proposals.loop`) or the IoU tracker (detections linked by box overlap,
:mod:`zsgrounding.proposals.tracker`). A tracker that needs the frames says so with a class
attribute ``needs_frames = True`` and is called as ``track(frames, frame_ids, detections,
size=...)``; any other as ``track(detections)``.

Tracking frames are not the MLLM's frames: a tracker follows objects from frame to frame, which
fails when the frames are a second apart (20 frames over a 20-s HC-STVG video). With ``track_fps``
the clip's video is decoded again at that rate, the MLLM's sampled frames added, and detection
and tracking run on that denser set; the grounder then reads the sampled frames' boxes and masks
from tracks that also cover every frame between (the tube takes its boxes from them too).

Boxes and masks come out in the clip's native resolution even when its frames were resized.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import torch

from zsgrounding.proposals.detections import FrameDetections
from zsgrounding.proposals.grounding_dino import DetectorConfig, GroundingDinoDetector
from zsgrounding.proposals.loop import LoopConfig
from zsgrounding.proposals.sam2 import Sam2Config, Sam2Tracker
from zsgrounding.types import Clip, Track
from zsgrounding.video import fps_ids, read_frames

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
        track_fps: tracking frames per second of video (the MLLM's sampled frames are always
            among them); ``None``: track on the sampled frames only (the previous behaviour).
        detect_every: run the detector on every this-many-th tracking frame (indices 0, k, 2k,
            ...); ``None``: 4 for SAM2 (0.8 s at 5 fps, as Grounded-SAM-2's 20 frames at 25 fps),
            1 for the IoU tracker (it has nothing but detections).
        box_threshold, text_threshold, detector_image_size, detector_batch_size: see
            :class:`~zsgrounding.proposals.grounding_dino.DetectorConfig`.
        loop: the SAM2 loop's settings (:class:`~zsgrounding.proposals.loop.LoopConfig`).
        mask_threshold: SAM2 mask logits ``>`` this are foreground.
        iou_tracker: keyword arguments of ``IoUTrackerConfig`` for the ``"iou"`` tracker; its
            ``high_score`` defaults to ``box_threshold``.
        device: torch device of both models (``None``: CPU).
        dtype: torch dtype name of both models, e.g. ``"bfloat16"`` (``None``: the checkpoint's).
        hub_kwargs: ``revision``, ``cache_dir``, ``local_files_only``, ... for both checkpoints.
    """

    detector: str = "IDEA-Research/grounding-dino-tiny"
    tracker: TrackerName = "sam2"
    sam2: str = "facebook/sam2.1-hiera-tiny"
    track_fps: float | None = 5.0
    detect_every: int | None = None
    box_threshold: float = 0.25
    text_threshold: float = 0.3
    detector_image_size: int | None = None
    detector_batch_size: int = 4
    loop: LoopConfig = field(default_factory=LoopConfig)
    mask_threshold: float = 0.0
    iou_tracker: dict[str, Any] = field(default_factory=dict)
    device: str | None = None
    dtype: str | None = None
    hub_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.tracker not in ("sam2", "iou"):
            raise ValueError(f"unknown tracker {self.tracker!r}; use 'sam2' or 'iou'")
        if self.detect_every is not None and self.detect_every <= 0:
            raise ValueError(f"detect_every must be positive, got {self.detect_every}")
        if self.track_fps is not None and not self.track_fps > 0:
            raise ValueError(f"track_fps must be positive, got {self.track_fps}")

    @property
    def detection_step(self) -> int:
        """``detect_every``, or the tracker's default when unset."""
        if self.detect_every is not None:
            return self.detect_every
        return 4 if self.tracker == "sam2" else 1

    def detector_config(self) -> DetectorConfig:
        return DetectorConfig(
            box_threshold=self.box_threshold,
            text_threshold=self.text_threshold,
            image_size=self.detector_image_size,
            batch_size=self.detector_batch_size,
        )

    def sam2_config(self) -> Sam2Config:
        return Sam2Config(loop=self.loop, mask_threshold=self.mask_threshold)

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

        return IoUTracker(IoUTrackerConfig.following(config.box_threshold, **config.iou_tracker))
    return Sam2Tracker.from_pretrained(
        config.sam2, config.sam2_config(), config.torch_dtype(), config.device, **config.hub_kwargs
    )


def tracking_clip(clip: Clip, track_fps: float | None) -> Clip:
    """The frames to track on: the clip's video at ``track_fps`` plus the clip's own frames.

    The frames are decoded at the clip's frame size. ``None``, or a clip with no video file,
    gives the clip itself.
    """
    if track_fps is None or clip.path is None or len(clip) == 0:
        return clip
    dense = fps_ids(clip.num_frames, clip.fps, track_fps)
    ids = np.union1d(dense, clip.frame_ids).astype(np.int64)
    if ids.size == len(clip):
        return clip
    height, width = clip.frames.shape[1:3]
    return read_frames(clip.path, ids, size=(int(width), int(height)))


def extract_tracks(
    clip: Clip,
    noun_phrase: str,
    detector: Detector,
    tracker: Any,
    detect_every: int = 1,
    track_fps: float | None = None,
) -> list[Track]:
    """Detect ``noun_phrase`` on the tracking frames and link the detections into tracks.

    Args:
        clip: the sampled frames; boxes and masks come out in its native ``width x height``.
        noun_phrase: what to detect (the detector lower-cases it and appends ``"."``).
        detector: e.g. :class:`GroundingDinoDetector`.
        tracker: a :class:`Sam2Tracker` (``needs_frames``) or anything with ``track(detections)``,
            e.g. ``IoUTracker``.
        detect_every: run the detector on tracking frames ``0, k, 2k, ...`` only.
        track_fps: track on the clip's video at this rate plus the sampled frames
            (:func:`tracking_clip`); ``None``: on the sampled frames.

    Returns:
        the tracker's tracks, on tracking frames (the sampled frames among them); ``[]`` when the
        clip has no frames or nothing is detected on any frame (the tracker is then not called).
    """
    if detect_every <= 0:
        raise ValueError(f"detect_every must be positive, got {detect_every}")
    if len(clip) == 0:
        return []
    frames = tracking_clip(clip, track_fps)
    size = (int(clip.height), int(clip.width))
    picked = np.arange(0, len(frames), detect_every)
    detections = detector.detect(frames.frames[picked], frames.frame_ids[picked], noun_phrase, size=size)
    if not any(len(d) for d in detections):
        return []
    if getattr(tracker, "needs_frames", False):
        return list(tracker.track(frames.frames, frames.frame_ids, detections, size=size))
    return list(tracker.track(detections))


@dataclass
class Proposer:
    """A detector and a tracker bound together: ``proposer(clip, noun_phrase) -> tracks``."""

    detector: Detector
    tracker: Any
    detect_every: int = 1
    track_fps: float | None = None

    @classmethod
    def from_config(cls, config: ProposalConfig) -> Proposer:
        """Load both models ``config`` names."""
        return cls(load_detector(config), load_tracker(config), config.detection_step, config.track_fps)

    def __call__(self, clip: Clip, noun_phrase: str) -> list[Track]:
        return extract_tracks(
            clip, noun_phrase, self.detector, self.tracker, self.detect_every, self.track_fps
        )
