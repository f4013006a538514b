"""Stored tracks onto a grounder's sampled frames, when the two frame sets differ.

Tracks made by this toolkit hold every sampled frame. Tracks from elsewhere (the released
zero-shot code's proposal files, a store read "as stored") may hold other frames: every 10th
native frame, say, while the grounder samples 20 frames by ``linspace``. Each sampled frame then
takes the box (and mask) of the track's nearest stored frame, if that frame is within
``tolerance`` native frames; otherwise the track has no box there. The default tolerance is half
the stored frames' usual spacing (the median step of all tracks' frames together, rounded up), so
a sampled frame borrows only from a stored frame that is nearer to it than any other stored frame
could be, and a track hidden on a stored frame stays hidden around it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from zsgrounding.types import Track

__all__ = ["align_tracks", "stored_tolerance"]


def stored_tolerance(tracks: Sequence[Track]) -> int:
    """Half the median spacing of the tracks' frames together, rounded up (0 for one frame or none)."""
    frames = np.unique(np.concatenate([np.asarray(t.frame_ids, dtype=np.int64) for t in tracks] or [[]]))
    if frames.size < 2:
        return 0
    return math.ceil(float(np.median(np.diff(frames))) / 2)


def align_tracks(tracks: Sequence[Track], frame_ids: np.ndarray, tolerance: int | None = None) -> list[Track]:
    """``tracks`` on ``frame_ids`` (ascending native ids): each takes its nearest stored frame's box.

    Args:
        tracks: stored tracks (boxes, maybe masks, on their own frames).
        frame_ids: ``(T,)`` the sampled native frame ids.
        tolerance: largest distance in native frames to the stored frame borrowed from
            (``None``: :func:`stored_tolerance`); on a tie the earlier stored frame wins.

    Returns:
        the tracks that have a box on at least one sampled frame, in their order, on those frames.
    """
    query = np.asarray(frame_ids, dtype=np.int64).reshape(-1)
    limit = stored_tolerance(tracks) if tolerance is None else int(tolerance)
    out = []
    for track in tracks:
        own = np.asarray(track.frame_ids, dtype=np.int64)
        if own.size == 0:
            continue
        right = np.clip(np.searchsorted(own, query, side="left"), 0, own.size - 1)
        left = np.clip(right - 1, 0, own.size - 1)
        pick = np.where(np.abs(own[left] - query) <= np.abs(own[right] - query), left, right)
        near = np.abs(own[pick] - query) <= limit
        if not near.any():
            continue
        rows = pick[near]
        out.append(
            Track(
                query[near],
                np.asarray(track.boxes, dtype=np.float64)[rows],
                label=track.label,
                score=track.score,
                track_id=track.track_id,
                masks=None if track.masks is None else track.masks[rows],
            )
        )
    return out
