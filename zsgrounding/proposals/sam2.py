"""Box prompts propagated into mask tracks with SAM2 (transformers' ``Sam2VideoModel``).

transformers' ``Sam2VideoProcessor`` needs torchvision, so the frames are prepared here (squeezed
to the model's square input, rescaled, normalised) and the inference session and box prompts are
built by hand: a box is two prompt points, its corners in the model's input pixels, with the point
labels 2 (top-left) and 3 (bottom-right).

Tracking walks the clip's frames in order, all in one session:

1. on the first frame with detections, every detection starts an object (one box prompt each);
2. every frame is propagated; the mask logits are upsampled to the native size and thresholded;
3. every ``redetect_every`` frames (counted from the last re-detection) that carry detections,
   the detections whose box IoU with every current object's mask box is below ``new_object_iou``
   start new objects with new ids, prompted on that frame.

Detections are taken best score first and each accepted one counts as a current object for the
next, so duplicates of one object start one track. An object's track begins on the frame it was
prompted on; SAM2 is not run backwards.
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

from zsgrounding.boxes import box_iou_matrix
from zsgrounding.mllm.errors import ModelError, first_line
from zsgrounding.mllm.files import HUB_KWARGS, checkpoint_file, read_json
from zsgrounding.mllm.hub import require_checkpoint
from zsgrounding.mllm.preprocess import FramePreprocessing, preprocess_frames
from zsgrounding.proposals.detections import FrameDetections
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
        redetect_every: look for new objects on a frame with detections once at least this many
            clip frames have passed since the last look (``0``: only the first detection frame).
        new_object_iou: a detection starts a new object when its IoU with every current object's
            mask box (and every detection accepted before it) is below this.
        mask_threshold: mask logits ``>`` this are foreground.
        image_size: side of the model's square input; ``None`` reads ``config.image_size``. It must
            match the model (its feature sizes are fixed by the checkpoint).
        max_objects: at most this many objects per clip; further detections are ignored.
    """

    redetect_every: int = 5
    new_object_iou: float = 0.3
    mask_threshold: float = 0.0
    image_size: int | None = None
    max_objects: int = 20

    def __post_init__(self) -> None:
        if self.redetect_every < 0:
            raise ValueError(f"redetect_every must be >= 0, got {self.redetect_every}")
        if self.max_objects <= 0:
            raise ValueError(f"max_objects must be positive, got {self.max_objects}")


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


def mask_box(mask: np.ndarray) -> np.ndarray | None:
    """The pixel ``xyxy`` box around a ``(H, W)`` bool mask (pixel ``j`` spans ``[j, j + 1)``), or ``None``."""
    cols = np.flatnonzero(mask.any(axis=0))
    if cols.size == 0:
        return None
    rows = np.flatnonzero(mask.any(axis=1))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float64)


@dataclass
class _Object:
    """One tracked object while a clip is processed."""

    obj_id: int
    label: str
    score: float
    masks: dict[int, np.ndarray] = field(default_factory=dict)  # clip frame index -> (H, W) bool

    def box_at(self, index: int) -> np.ndarray | None:
        mask = self.masks.get(index)
        return None if mask is None else mask_box(mask)


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

    def _new_objects(
        self, detections: FrameDetections, current: list[np.ndarray], next_id: int, room: int
    ) -> tuple[list[_Object], list[np.ndarray]]:
        """Detections (best first) that overlap no current box enough, at most ``room`` of them."""
        taken = list(current)
        new: list[_Object] = []
        new_boxes: list[np.ndarray] = []
        for i in np.argsort(-detections.scores, kind="stable"):
            if len(new) >= room:
                break
            box = detections.boxes[i]
            if taken and box_iou_matrix(box[None], np.stack(taken)).max() >= self.config.new_object_iou:
                continue
            taken.append(box)
            new_boxes.append(box)
            new.append(_Object(next_id + len(new), detections.labels[i], float(detections.scores[i])))
        return new, new_boxes

    def _masks(self, pred_masks: torch.Tensor, height: int, width: int) -> np.ndarray:
        """Low-resolution mask logits ``(N, 1, h, w)`` -> ``(N, H, W)`` bool at native size."""
        logits = F.interpolate(pred_masks.float(), size=(height, width), mode="bilinear", align_corners=False)
        return (logits[:, 0] > self.config.mask_threshold).cpu().numpy()

    @torch.inference_mode()
    def track(
        self,
        frames: np.ndarray,
        frame_ids: Sequence[int] | np.ndarray,
        detections: Sequence[FrameDetections],
        size: tuple[int, int] | None = None,
    ) -> list[Track]:
        """Track the detected objects through the clip.

        Args:
            frames: ``(T, H, W, 3)`` uint8 RGB.
            frame_ids: ``(T,)`` native frame ids, ascending.
            detections: detections of some (or all) of these frames, boxes in pixels of ``size``.
            size: ``(H, W)`` of the pixel grid detections, boxes and masks are expressed in,
                normally the native frame size when ``frames`` were resized; ``None``: the
                frames' own size.

        Returns:
            one :class:`Track` per object, by id: ``masks (K, H, W)`` bool and ``boxes (K, 4)`` (the
            masks' bounding boxes) on the ``K`` frames from its prompt frame on where its mask is not
            empty; label and score of the detection that started it. Objects whose mask is empty
            on every frame are dropped. No detection at all: ``[]``, without running the model.
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

        height, width = size if size is not None else frames.shape[1:3]
        side = self.preprocessing.size
        session = Sam2VideoInferenceSession(
            video=preprocess_frames(frames, self.preprocessing),
            video_height=height,
            video_width=width,
            inference_device=self.model.device,
            inference_state_device=self.model.device,
            video_storage_device="cpu",
            dtype=self.model.dtype,  # a torch dtype: the session's default string breaks .to()
        )
        objects: list[_Object] = []
        last_look = -1
        for t in range(min(by_index), frames.shape[0]):
            if objects:
                self._propagate(session, objects, t, height, width)
            det = by_index.get(t)
            due = not objects or (
                self.config.redetect_every > 0 and t - last_look >= self.config.redetect_every
            )
            room = self.config.max_objects - len(objects)
            if det is None or not due or room <= 0:
                continue
            last_look = t
            current = [box for box in (obj.box_at(t) for obj in objects) if box is not None]
            new, boxes = self._new_objects(det, current, len(objects), room)
            if not new:
                continue
            for obj, box in zip(new, boxes, strict=True):
                obj_idx = session.obj_id_to_idx(obj.obj_id)
                session.add_point_inputs(obj_idx, t, box_prompt(box, width, height, side))
                session.remove_mask_inputs(obj_idx, t)
            session.obj_with_new_inputs = [obj.obj_id for obj in new]
            objects.extend(new)
            # Runs frame t again for the existing objects too; their memory for t is rebuilt alike.
            self._propagate(session, objects, t, height, width)
        return [self._to_track(obj, ids) for obj in objects if any(m.any() for m in obj.masks.values())]

    def _propagate(
        self, session: Sam2VideoInferenceSession, objects: list[_Object], t: int, height: int, width: int
    ) -> None:
        output = self.model(inference_session=session, frame_idx=t)
        masks = self._masks(output.pred_masks, height, width)
        by_id = {obj.obj_id: obj for obj in objects}
        for obj_id, mask in zip(output.object_ids, masks, strict=True):
            by_id[obj_id].masks[t] = mask

    @staticmethod
    def _to_track(obj: _Object, frame_ids: np.ndarray) -> Track:
        kept = [t for t in sorted(obj.masks) if obj.masks[t].any()]
        boxes = [mask_box(obj.masks[t]) for t in kept]
        return Track(
            frame_ids=frame_ids[kept],
            boxes=np.stack(boxes),
            label=obj.label,
            score=obj.score,
            track_id=obj.obj_id,
            masks=np.stack([obj.masks[t] for t in kept]),
        )
