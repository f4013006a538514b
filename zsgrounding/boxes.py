"""Boxes: the one place where they change representation and where their overlap is computed.

The toolkit's boxes are pixel ``xyxy`` floats (``x1, y1, x2, y2``) with no +1 convention
(docs/design.md). Dataset files and model heads use other forms; every conversion goes through
here. The numpy functions take an array-like of shape ``(..., 4)`` and return a new float64
array, so a single box, a tube's ``(K, 4)`` boxes or a batch all work alike; the torch functions
(``*_t``) are their differentiable twins for training losses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    import torch


def _boxes(boxes: ArrayLike) -> np.ndarray:
    arr = np.array(boxes, dtype=np.float64)  # a copy: callers' arrays are never modified
    if arr.ndim == 0 or arr.shape[-1] != 4:
        raise ValueError(f"boxes must have shape (..., 4), got {arr.shape}")
    return arr


def xywh_to_xyxy(boxes: ArrayLike) -> np.ndarray:
    """``[x, y, w, h]`` (top-left corner and size, pixels) -> ``[x1, y1, x2, y2]``."""
    arr = _boxes(boxes)
    arr[..., 2:] += arr[..., :2]
    return arr


def xyxy_to_xywh(boxes: ArrayLike) -> np.ndarray:
    """``[x1, y1, x2, y2]`` -> ``[x, y, w, h]`` (top-left corner and size, pixels)."""
    arr = _boxes(boxes)
    arr[..., 2:] -= arr[..., :2]
    return arr


def xyxy_to_cxcywh_norm(boxes: ArrayLike, width: float, height: float) -> np.ndarray:
    """Pixel ``xyxy`` -> ``[cx, cy, w, h]`` divided by the frame size (DETR-style heads).

    Args:
        boxes: ``(..., 4)`` pixel ``xyxy`` boxes.
        width, height: the frame size in pixels the boxes are expressed in.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    arr = _boxes(boxes)
    scale = np.array([width, height, width, height], dtype=np.float64)
    centre = (arr[..., :2] + arr[..., 2:]) / 2.0
    size = arr[..., 2:] - arr[..., :2]
    return np.concatenate([centre, size], axis=-1) / scale


def cxcywh_norm_to_xyxy(boxes: ArrayLike, width: float, height: float) -> np.ndarray:
    """Normalised ``[cx, cy, w, h]`` -> pixel ``xyxy`` in a ``width`` x ``height`` frame."""
    if width <= 0 or height <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    arr = _boxes(boxes)
    scale = np.array([width, height, width, height], dtype=np.float64)
    arr = arr * scale
    half = arr[..., 2:] / 2.0
    return np.concatenate([arr[..., :2] - half, arr[..., :2] + half], axis=-1)


# ---------------------------------------------------------------- overlap (numpy)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise IoU of paired ``xyxy`` boxes.

    Args:
        a, b: ``(..., 4)`` boxes, broadcastable against each other.

    Returns:
        ``(...)`` IoU in [0, 1]; 0 where the union is empty.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = np.clip(a[..., 2] - a[..., 0], 0, None) * np.clip(a[..., 3] - a[..., 1], 0, None)
    area_b = np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)
    union = area_a + area_b - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU: ``(N, 4)`` x ``(M, 4)`` -> ``(N, M)``."""
    return box_iou(np.asarray(a, dtype=np.float64)[:, None, :], np.asarray(b, dtype=np.float64)[None, :, :])


# ---------------------------------------------------------------- torch twins


def cxcywh_to_xyxy_t(boxes: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` ``(cx, cy, w, h)`` -> ``(x1, y1, x2, y2)``, in whatever units they come."""
    import torch

    centre, size = boxes[..., :2], boxes[..., 2:]
    return torch.cat([centre - size / 2, centre + size / 2], dim=-1)


def paired_generalized_iou_t(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """GIoU of matching rows of ``a`` and ``b``, both ``(K, 4)`` xyxy -> ``(K,)``."""
    import torch

    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt, rb = torch.maximum(a[:, :2], b[:, :2]), torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = area_a + area_b - inter
    iou = inter / (union + eps)
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).clamp(min=0).prod(-1)
    return iou - (hull - union) / (hull + eps)
