"""What the detect–track–correct loop needs of a promptable video segmenter (SAM2 or a stand-in).

A segmenter is bound to one clip's tracking frames (:meth:`Segmenter.bind`, where it can prepare
them once). The bound segmenter opens *sessions* on an order of those frames: ``arange(T)`` walks
forward, ``arange(t, -1, -1)`` walks backwards in time from frame ``t``. In a session, box prompts
are added on a frame for an object id, and :meth:`SegmenterSession.propagate` walks the session's
frames in order, returning the mask of every prompted object on each; calling it again on the
frame just prompted re-runs that frame with the new prompts (SAM2's way of conditioning on them).

:meth:`ClipSegmenter.segment` masks boxes on one frame alone, with no memory: the loop compares
those masks with the tracked objects' to match detections to tracks (SAM2's image path;
Grounded-SAM-2 does the same with its image predictor).

:class:`~zsgrounding.proposals.sam2.Sam2Segmenter` is the real one; the toy world's
:class:`~zsgrounding.toy.scripted.ScriptedSegmenter` follows scripted ground truth so the loop's
logic can be tested and measured without weights.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class SegmenterSession(Protocol):
    """One propagation over the frames of an order (positions ``0 .. len(order) - 1``)."""

    def add_box(self, position: int, obj_id: int, box: np.ndarray) -> None:
        """Prompt object ``obj_id`` (new or already tracked) with a pixel ``xyxy`` box at ``position``."""
        ...

    def propagate(self, position: int) -> dict[int, np.ndarray]:
        """Masks of every prompted object at ``position``: ``obj_id -> (H, W)`` bool.

        Positions are visited in ascending order; the same position again re-runs it with new prompts.
        """
        ...


class ClipSegmenter(Protocol):
    """A segmenter bound to one clip's frames; masks are ``(H, W)`` bool at the bound size."""

    def open(self, order: np.ndarray) -> SegmenterSession:
        """A session on the frames ``order`` (tracking frame indices) names, in that order."""
        ...

    def segment(self, index: int, boxes: np.ndarray) -> np.ndarray:
        """Masks ``(N, H, W)`` bool of the ``(N, 4)`` boxes on tracking frame ``index`` alone."""
        ...


class Segmenter(Protocol):
    """Binds to a clip's tracking frames."""

    def bind(self, frames: np.ndarray, size: tuple[int, int]) -> ClipSegmenter:
        """Bound to ``frames`` ``(T, h, w, 3)`` uint8; masks and boxes in pixels of ``size`` ``(H, W)``."""
        ...


__all__ = ["ClipSegmenter", "Segmenter", "SegmenterSession"]
