"""Box prompts propagated into mask tracks with SAM2 (transformers' ``Sam2VideoModel``).

transformers' ``Sam2VideoProcessor`` needs torchvision, so the frames are prepared here (squeezed
to the model's square input, rescaled, normalised) and the inference session and box prompts are
built by hand: a box is two prompt points, its corners in the model's input pixels, with the point
labels 2 (top-left) and 3 (bottom-right).

:class:`Sam2Segmenter` is SAM2 behind the :mod:`~zsgrounding.proposals.segmenter` interface;
:class:`Sam2Tracker` runs the detect–track–correct loop of :mod:`~zsgrounding.proposals.loop`
with it (matching, re-prompting, backward runs, ending and merging are the loop's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import Sam2VideoModel
from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

from zsgrounding.mllm.errors import ModelError, first_line
from zsgrounding.mllm.files import HUB_KWARGS, checkpoint_file, read_json
from zsgrounding.mllm.hub import require_checkpoint
from zsgrounding.mllm.preprocess import FramePreprocessing, preprocess_frames
from zsgrounding.proposals.detections import FrameDetections
from zsgrounding.proposals.loop import LoopConfig, run_loop
from zsgrounding.types import Track

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Preprocessor files of a SAM2 video checkpoint, first found wins.
PREPROCESSOR_FILES = ("video_preprocessor_config.json", "preprocessor_config.json")
# SAM2's point labels for the two corners of a box prompt.
BOX_LABELS = (2, 3)


@dataclass(frozen=True)
class Sam2Config:
    """Settings of :class:`Sam2Tracker`.

    Attributes:
        loop: the detect–track–correct loop's settings.
        mask_threshold: mask logits ``>`` this are foreground.
        image_size: side of the model's square input; ``None`` reads ``config.image_size``. It must
            match the model (its feature sizes are fixed by the checkpoint).
    """

    loop: LoopConfig = field(default_factory=LoopConfig)
    mask_threshold: float = 0.0
    image_size: int | None = None


def sam2_preprocessing(path_or_id: str | Path | None, size: int, **hub_kwargs: Any) -> FramePreprocessing:
    """Square-resize settings of a SAM2 checkpoint (ImageNet normalisation, bilinear by default)."""
    defaults = FramePreprocessing(
        size=size, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD, resample=int(Image.Resampling.BILINEAR)
    )
    for filename in PREPROCESSOR_FILES if path_or_id is not None else ():
        path = checkpoint_file(path_or_id, filename, **hub_kwargs)
        if path is not None:
            merged: dict[str, Any] = {
                "image_mean": defaults.image_mean,
                "image_std": defaults.image_std,
                "resample": defaults.resample,
            }
            merged.update({k: v for k, v in read_json(path).items() if v is not None})
            return FramePreprocessing.from_dict(merged, size, source=path)
    return defaults


def box_prompt(box: np.ndarray, width: int, height: int, size: int) -> dict[str, torch.Tensor]:
    """A native pixel ``xyxy`` box as SAM2 point inputs on its ``size x size`` input.

    Returns ``{"point_coords": (1, 1, 2, 2) float32, "point_labels": (1, 1, 2) int32}``.
    """
    scale = np.array([size / width, size / height], dtype=np.float64)
    corners = np.asarray(box, dtype=np.float64).reshape(2, 2) * scale
    return {
        "point_coords": torch.tensor(corners, dtype=torch.float32).view(1, 1, 2, 2),
        "point_labels": torch.tensor(BOX_LABELS, dtype=torch.int32).view(1, 1, 2),
    }


class _Session:
    """One SAM2 inference session over an order of a clip's frames (a ``SegmenterSession``)."""

    def __init__(self, clip: _BoundSam2, order: np.ndarray) -> None:
        self.clip = clip
        model = clip.owner.model
        order = np.asarray(order, dtype=np.int64)
        if order.size and np.array_equal(order, np.arange(order[0], order[0] + order.size)):
            video = clip.pixels[int(order[0]) : int(order[0]) + order.size]  # a view: no copy of the frames
        else:
            video = clip.pixels[torch.as_tensor(order)]
        self.session = Sam2VideoInferenceSession(
            video=video,
            video_height=clip.size[0],
            video_width=clip.size[1],
            inference_device=model.device,
            inference_state_device=model.device,
            video_storage_device="cpu",
            dtype=model.dtype,  # a torch dtype: the session's default string breaks .to()
        )
        self.prompted: list[int] = []

    def add_box(self, position: int, obj_id: int, box: np.ndarray) -> None:
        obj_idx = self.session.obj_id_to_idx(obj_id)
        height, width = self.clip.size
        self.session.add_point_inputs(obj_idx, position, box_prompt(box, width, height, self.clip.side))
        self.session.remove_mask_inputs(obj_idx, position)
        if obj_id not in self.prompted:
            self.prompted.append(obj_id)

    @torch.inference_mode()
    def propagate(self, position: int) -> dict[int, np.ndarray]:
        if self.prompted:
            self.session.obj_with_new_inputs = list(self.prompted)
            self.prompted = []
        output = self.clip.owner.model(inference_session=self.session, frame_idx=position)
        masks = self.clip.owner.masks(output.pred_masks, *self.clip.size)
        return {int(obj_id): mask for obj_id, mask in zip(output.object_ids, masks, strict=True)}


class _BoundSam2:
    """SAM2 bound to one clip: its frames prepared once for every session (a ``ClipSegmenter``)."""

    def __init__(self, owner: Sam2Segmenter, frames: np.ndarray, size: tuple[int, int]) -> None:
        self.owner = owner
        self.size = size
        self.side = owner.preprocessing.size
        self.pixels = preprocess_frames(np.asarray(frames), owner.preprocessing)

    def open(self, order: np.ndarray) -> _Session:
        return _Session(self, order)

    def segment(self, index: int, boxes: np.ndarray) -> np.ndarray:
        """Each box prompted on frame ``index`` alone (no memory): SAM2's image path. ``(N, H, W)`` bool."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if boxes.shape[0] == 0:
            return np.zeros((0, *self.size), dtype=bool)
        session = self.open(np.array([index]))
        for i, box in enumerate(boxes):
            session.add_box(0, i, box)
        masks = session.propagate(0)
        return np.stack([masks[i] for i in range(boxes.shape[0])])


class Sam2Segmenter:
    """SAM2 as a :class:`~zsgrounding.proposals.segmenter.Segmenter`.

    Args:
        model: a loaded ``Sam2VideoModel`` (eval mode).
        preprocessing: its square-resize settings.
        mask_threshold: mask logits ``>`` this are foreground.
    """

    def __init__(
        self, model: Sam2VideoModel, preprocessing: FramePreprocessing, mask_threshold: float = 0.0
    ) -> None:
        self.model = model
        self.preprocessing = preprocessing
        self.mask_threshold = mask_threshold

    def masks(self, pred_masks: torch.Tensor, height: int, width: int) -> np.ndarray:
        """Low-resolution mask logits ``(N, 1, h, w)`` -> ``(N, H, W)`` bool at ``height x width``."""
        logits = F.interpolate(pred_masks.float(), size=(height, width), mode="bilinear", align_corners=False)
        return (logits[:, 0] > self.mask_threshold).cpu().numpy()

    def bind(self, frames: np.ndarray, size: tuple[int, int]) -> _BoundSam2:
        return _BoundSam2(self, frames, size)


class Sam2Tracker:
    """Turns per-frame detections into mask tracks with SAM2.

    Build with :meth:`from_pretrained` (a local directory or a hub id) or :meth:`from_model`.
    """

    needs_frames: ClassVar[bool] = True  # extract_tracks passes the frames to trackers that say so

    def __init__(
        self,
        model: Sam2VideoModel,
        config: Sam2Config | None = None,
        preprocessing: FramePreprocessing | None = None,
    ) -> None:
        self.model = model.eval()
        self.config = config or Sam2Config()
        size = int(model.config.image_size)
        if self.config.image_size is not None and self.config.image_size != size:
            raise ModelError(
                f"image_size {self.config.image_size} does not match the model's input size {size}"
            )
        self.preprocessing = preprocessing or sam2_preprocessing(None, size)
        if self.preprocessing.size != size:
            raise ModelError(
                f"preprocessing size {self.preprocessing.size} does not match the model's {size}"
            )

    @classmethod
    def from_model(
        cls,
        model: Sam2VideoModel,
        config: Sam2Config | None = None,
        preprocessing: FramePreprocessing | None = None,
    ) -> Sam2Tracker:
        """Wrap an already loaded model (ImageNet normalisation unless ``preprocessing`` is given)."""
        return cls(model, config, preprocessing)

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | Path,
        config: Sam2Config | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        **hub_kwargs: Any,
    ) -> Sam2Tracker:
        """Load the model and its preprocessing settings from a checkpoint directory or hub id."""
        unknown = set(hub_kwargs) - set(HUB_KWARGS)
        if unknown:
            raise TypeError(f"unexpected keyword arguments {sorted(unknown)}")
        require_checkpoint(path_or_id, "SAM2 tracker", offline="`--tracker iou`", **hub_kwargs)
        try:
            model = Sam2VideoModel.from_pretrained(path_or_id, dtype=dtype, **hub_kwargs)
        except OSError as exc:
            raise ModelError(f"{path_or_id}: cannot load SAM2 ({first_line(exc)})") from exc
        if device is not None:
            model = model.to(device)
        size = int(model.config.image_size)
        return cls(model, config, sam2_preprocessing(path_or_id, size, **hub_kwargs))

    @property
    def segmenter(self) -> Sam2Segmenter:
        """This tracker's model as a :class:`~zsgrounding.proposals.segmenter.Segmenter`."""
        return Sam2Segmenter(self.model, self.preprocessing, self.config.mask_threshold)

    def track(
        self,
        frames: np.ndarray,
        frame_ids: Sequence[int] | np.ndarray,
        detections: Sequence[FrameDetections],
        size: tuple[int, int] | None = None,
    ) -> list[Track]:
        """Track the detected objects through the frames with the detect–track–correct loop.

        Args:
            frames: ``(T, H, W, 3)`` uint8 RGB tracking frames.
            frame_ids: ``(T,)`` native frame ids, ascending.
            detections: detections of some (or all) of these frames, boxes in pixels of ``size``.
            size: ``(H, W)`` of the pixel grid detections, boxes and masks are expressed in,
                normally the native frame size when ``frames`` were resized; ``None``: the
                frames' own size.

        Returns:
            one :class:`Track` per object (see :func:`~zsgrounding.proposals.loop.run_loop`). No
            detection at all: ``[]``, without running the model.
        """
        frames = np.asarray(frames)
        ids = np.asarray(frame_ids, dtype=np.int64).reshape(-1)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
        if ids.shape[0] != frames.shape[0]:
            raise ValueError(f"{frames.shape[0]} frames but {ids.shape[0]} frame ids")
        index_of = {int(f): i for i, f in enumerate(ids)}
        by_index: dict[int, FrameDetections] = {}
        for det in detections:
            if det.frame_id not in index_of:
                raise ValueError(f"detections of frame {det.frame_id}, which is not in the clip")
            if len(det):
                by_index[index_of[det.frame_id]] = det
        if not by_index:
            return []
        return run_loop(frames, ids, by_index, self.segmenter, self.config.loop, size)
