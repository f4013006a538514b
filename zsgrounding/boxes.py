"""Box format conversions: the one place where boxes change representation.

The toolkit's boxes are pixel ``xyxy`` floats (``x1, y1, x2, y2``) with no +1 convention
(design.md). Dataset files and model heads use other forms; every conversion goes through here.
Each function takes an array-like of shape ``(..., 4)`` and returns a new float64 array of the
same shape, so a single box, a tube's ``(K, 4)`` boxes or a batch all work alike.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


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
