"""The tube scorer shared by both paradigms: evidence maps + tracks -> a tube.

Evidence is a ``(T, h, w)`` array: for each sampled frame, a non-negative map on the model's
visual token grid (zero-shot: grounding-token attention; supervised: rendered predicted boxes).
The grid is assumed to cover the whole native frame (the adapters resize without cropping), so
grid cell ``(i, j)`` covers native pixels ``[j W/w, (j+1) W/w) x [i H/h, (i+1) H/h)``.

A track meets a map through a weight per cell, three ways (``weighting``):

- ``"point"``: the released code of *Unleashing the Potential of Multimodal LLMs for Zero-Shot
  Spatio-Temporal Video Grounding* (eq. 2): the full-resolution mask resized to the grid with
  bilinear interpolation (``align_corners=False``, no antialiasing), which samples the mask at
  about 2 x 2 pixels near each cell centre. A box is first rasterised (a pixel belongs to it
  when its centre lies inside). Small off-centre objects can get weight 0 everywhere.
- ``"coverage"``: the fraction of each cell's area inside the box or mask, in [0, 1] (this
  toolkit's earlier default: every object reaches the cells it overlaps).
- ``"binary"``: 1 for every cell the region touches.

Steps (the paper's eq. 2 and its temporal step):

1. :func:`frame_scores`: per track and sampled frame, the max over cells of evidence x coverage
   (a track with no box on a frame scores 0 there).
2. :func:`score_tracks`: a track's score is its max frame score; the grounded track is the argmax.
3. :func:`select_span`: from the chosen track's frame scores, the span of sampled frames: the
   hull of the top-k frames (the paper's text), a contiguous growth from the peak frame, or the
   released code's growth (``"reference"``: ties stop it). The released code reads those frame
   scores at native resolution (:func:`native_frame_scores`: the map upsampled bilinearly to
   the frame times the full-resolution region, max per frame).
4. :func:`assemble`: a :class:`Tube` on native frames, boxes taken from the track where it has
   them and linearly interpolated in between.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from zsgrounding.types import GroundingResult, Track, Tube

Weighting = Literal["point", "coverage", "binary"]
SpanMethod = Literal["topk_hull", "grow", "reference"]
SpanScores = Literal["grid", "native"]
SpanBounds = Literal["cells", "sampled"]

# The released code's value for a neighbour outside the clip while it grows a span.
_OUTSIDE = -100.0


# --------------------------------------------------------------------------- regions on the grid


def _axis_coverage(lo: np.ndarray, hi: np.ndarray, size: float, cells: int) -> np.ndarray:
    """Fraction of each of ``cells`` equal cells along an axis of ``size`` px inside ``[lo, hi)``.

    ``lo``, ``hi``: ``(...)`` -> ``(..., cells)``.
    """
    edges = np.linspace(0.0, size, cells + 1)
    left, right = edges[:-1], edges[1:]
    overlap = np.minimum(hi[..., None], right) - np.maximum(lo[..., None], left)
    return np.clip(overlap, 0.0, None) / (size / cells)


def box_coverage(boxes: np.ndarray, width: int, height: int, grid: tuple[int, int]) -> np.ndarray:
    """Coverage of grid cells by boxes.

    Args:
        boxes: ``(..., 4)`` pixel xyxy boxes in a ``width`` x ``height`` frame; NaN rows are absent.
        grid: ``(h, w)`` of the evidence grid.

    Returns:
        ``(..., h, w)`` in [0, 1]; all zeros for absent boxes.
    """
    h, w = grid
    b = np.nan_to_num(np.asarray(boxes, dtype=np.float64), nan=0.0)
    cx = _axis_coverage(b[..., 0], b[..., 2], float(width), w)
    cy = _axis_coverage(b[..., 1], b[..., 3], float(height), h)
    return cy[..., :, None] * cx[..., None, :]


def mask_coverage(masks: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Area-average ``(..., H, W)`` boolean masks onto a ``(h, w)`` grid -> ``(..., h, w)`` in [0, 1]."""
    m = np.asarray(masks, dtype=np.float64)
    H, W = m.shape[-2:]
    h, w = grid
    # Pixel y covers part ay[y, r] of cell row r (already divided by the cell height), so the
    # product sums to (mask area inside the cell) / (cell area), borders included.
    ay = _axis_coverage(np.arange(H, dtype=np.float64), np.arange(1, H + 1, dtype=np.float64), float(H), h)
    ax = _axis_coverage(np.arange(W, dtype=np.float64), np.arange(1, W + 1, dtype=np.float64), float(W), w)
    return np.einsum("yr,...yx,xc->...rc", ay, m, ax)


def bilinear_weights(size_in: int, size_out: int) -> np.ndarray:
    """``(size_out, size_in)`` weights of 1-D bilinear resizing, ``align_corners=False``, no antialias.

    Output sample ``i`` reads the input at ``src = (i + 0.5) * size_in / size_out - 0.5``
    (clamped at 0) from its two neighbours ``floor(src)`` and the next one (clamped at the
    end), as ``torch.nn.functional.interpolate(mode="bilinear")`` does, so resizing a ``(H, W)``
    array is ``Wy @ array @ Wx.T``.
    """
    if size_in < 1 or size_out < 1:
        raise ValueError(f"sizes must be positive, got {size_in} -> {size_out}")
    src = np.maximum((np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5, 0.0)
    lo = np.floor(src).astype(np.int64)
    frac = src - lo
    hi = np.where(lo < size_in - 1, lo + 1, lo)
    weights = np.zeros((size_out, size_in))
    rows = np.arange(size_out)
    np.add.at(weights, (rows, lo), 1.0 - frac)
    np.add.at(weights, (rows, hi), frac)
    return weights


def _box_pixels(lo: np.ndarray, hi: np.ndarray, size: int) -> np.ndarray:
    """``(..., size)`` 1.0 where pixel ``p``'s centre ``p + 0.5`` lies in ``[lo, hi)``."""
    centres = np.arange(size) + 0.5
    return ((centres >= lo[..., None]) & (centres < hi[..., None])).astype(np.float64)


def box_point_coverage(boxes: np.ndarray, width: int, height: int, grid: tuple[int, int]) -> np.ndarray:
    """The released code's mask-to-grid resize applied to rasterised boxes.

    Args:
        boxes: ``(..., 4)`` pixel xyxy boxes in a ``width`` x ``height`` frame; NaN rows are absent.
        grid: ``(h, w)`` of the evidence grid.

    Returns:
        ``(..., h, w)`` in [0, 1]: the box's pixel mask resized bilinearly to the grid (separable,
        so computed per axis); all zeros for absent boxes.
    """
    h, w = grid
    b = np.nan_to_num(np.asarray(boxes, dtype=np.float64), nan=0.0)
    rows = _box_pixels(b[..., 1], b[..., 3], int(height)) @ bilinear_weights(int(height), h).T
    cols = _box_pixels(b[..., 0], b[..., 2], int(width)) @ bilinear_weights(int(width), w).T
    return rows[..., :, None] * cols[..., None, :]


def mask_point_coverage(masks: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """``(..., H, W)`` masks resized bilinearly to ``(h, w)`` as the released code does -> ``(..., h, w)``."""
    m = np.asarray(masks, dtype=np.float64)
    wy = bilinear_weights(m.shape[-2], grid[0])
    wx = bilinear_weights(m.shape[-1], grid[1])
    return np.einsum("ry,...yx,cx->...rc", wy, m, wx)


def render_box_evidence(boxes: np.ndarray, width: int, height: int, grid: tuple[int, int]) -> np.ndarray:
    """Evidence maps from boxes (SpaceVLLM's predictions): ``(T, 4)`` -> ``(T, h, w)`` coverage."""
    return box_coverage(boxes, width, height, grid)


# --------------------------------------------------------------------------- scoring


def _track_regions(
    tracks: Sequence[Track],
    frame_ids: np.ndarray,
    width: int,
    height: int,
    grid: tuple[int, int],
    use_masks: bool,
    point: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """``(weights (P, T, h, w), present (P, T) bool)`` of every track on every sampled frame.

    ``point``: the released code's point-sampled resize, else area coverage.
    """
    P, T = len(tracks), frame_ids.size
    cover = np.zeros((P, T, *grid))
    present = np.zeros((P, T), dtype=bool)
    if P == 0:
        return cover, present
    boxes = np.stack([t.boxes_at(frame_ids) for t in tracks])  # (P, T, 4)
    present = ~np.isnan(boxes).any(-1)
    cover = (box_point_coverage if point else box_coverage)(boxes, width, height, grid)
    if use_masks:
        for p, track in enumerate(tracks):
            got = track.masks_at(frame_ids)
            if got is None:
                continue
            masks, has = got
            if has.any():
                cover[p, has] = (mask_point_coverage if point else mask_coverage)(masks[has], grid)
                present[p] |= has
    cover[~present] = 0.0
    return cover, present


def frame_scores(
    evidence: np.ndarray,
    tracks: Sequence[Track] | Track,
    frame_ids: np.ndarray,
    width: int,
    height: int,
    weighting: Weighting = "coverage",
    use_masks: bool = True,
) -> np.ndarray:
    """Per track and sampled frame, the max of evidence inside the track.

    Args:
        evidence: ``(T, h, w)`` non-negative maps of the sampled frames.
        tracks: ``P`` tracks (or one), boxes in the native ``width`` x ``height`` frame.
        frame_ids: ``(T,)`` native ids of the sampled frames.
        weighting: ``"point"`` (the released code), ``"coverage"`` or ``"binary"`` (module docstring).
        use_masks: use a track's masks where it has them, else its boxes.

    Returns:
        ``(P, T)`` scores (``(T,)`` for a single track); 0 where a track has no box.
    """
    single = isinstance(tracks, Track)
    track_list = [tracks] if single else list(tracks)
    ev = np.asarray(evidence, dtype=np.float64)
    fids = np.asarray(frame_ids, dtype=np.int64).reshape(-1)
    if ev.ndim != 3 or ev.shape[0] != fids.size:
        raise ValueError(f"evidence must be (T, h, w) with T={fids.size}, got {ev.shape}")
    if weighting not in ("point", "coverage", "binary"):
        raise ValueError(f"unknown weighting {weighting!r}: use 'point', 'coverage' or 'binary'")
    cover, present = _track_regions(
        track_list, fids, width, height, ev.shape[1:], use_masks, point=weighting == "point"
    )
    if weighting == "binary":
        cover = (cover > 0).astype(np.float64)
    scores = (cover * ev[None]).reshape(len(track_list), fids.size, ev.shape[1] * ev.shape[2])
    scores = scores.max(-1, initial=0.0)
    scores = np.where(present, scores, 0.0)
    return scores[0] if single else scores


def score_tracks(
    evidence: np.ndarray,
    tracks: Sequence[Track],
    frame_ids: np.ndarray,
    width: int,
    height: int,
    weighting: Weighting = "coverage",
    use_masks: bool = True,
) -> np.ndarray:
    """Track scores ``(P,)``: the max of evidence inside each track over the sampled frames."""
    per_frame = frame_scores(evidence, list(tracks), frame_ids, width, height, weighting, use_masks)
    return per_frame.max(-1, initial=0.0) if per_frame.size else np.zeros(len(tracks))


# --------------------------------------------------------------------------- spans


def native_frame_scores(
    evidence: np.ndarray,
    track: Track,
    frame_ids: np.ndarray,
    width: int,
    height: int,
    use_masks: bool = True,
) -> np.ndarray:
    """The released code's frame scores of one track: ``(T,)``.

    Each frame's map is upsampled bilinearly (``align_corners=False``) to the region's
    resolution (the mask's, else the native ``height x width``), multiplied by the region (the
    mask, else the rasterised box: pixels whose centre lies inside) and maxed over pixels; 0 on
    frames where the track has no region. For a box only the box's pixels are computed.
    """
    ev = np.asarray(evidence, dtype=np.float64)
    fids = np.asarray(frame_ids, dtype=np.int64).reshape(-1)
    if ev.ndim != 3 or ev.shape[0] != fids.size:
        raise ValueError(f"evidence must be (T, h, w) with T={fids.size}, got {ev.shape}")
    h, w = ev.shape[1:]
    scores = np.zeros(fids.size)
    boxes = track.boxes_at(fids)
    got = track.masks_at(fids) if use_masks else None
    if got is not None and got[1].any():
        masks, has = got
        wy, wx = bilinear_weights(h, masks.shape[-2]), bilinear_weights(w, masks.shape[-1])
        for t in np.flatnonzero(has):
            up = wy @ ev[t] @ wx.T
            scores[t] = max(0.0, float((up * masks[t]).max()))
        todo = ~has & ~np.isnan(boxes).any(-1)
    else:
        todo = ~np.isnan(boxes).any(-1)
    if todo.any():
        wy, wx = bilinear_weights(h, int(height)), bilinear_weights(w, int(width))
        rows_in = _box_pixels(boxes[:, 1], boxes[:, 3], int(height)).astype(bool)
        cols_in = _box_pixels(boxes[:, 0], boxes[:, 2], int(width)).astype(bool)
        for t in np.flatnonzero(todo):
            if rows_in[t].any() and cols_in[t].any():
                up = wy[rows_in[t]] @ ev[t] @ wx[cols_in[t]].T
                scores[t] = max(0.0, float(up.max()))
    return scores


def select_span(scores: np.ndarray, k: int, method: SpanMethod = "topk_hull") -> tuple[int, int]:
    """Choose a span of sampled frames from per-frame scores.

    Args:
        scores: ``(T,)`` per sampled frame scores.
        k: ``topk_hull``: how many top frames to take; ``grow`` and ``reference``: how many frames
            the window holds (the released code's ``frames_thre + 1``). Clamped to ``[1, T]``.
        method: ``"topk_hull"``: the hull of the ``k`` highest frames (the paper's text);
            ``"grow"``: start at the peak frame and extend the window one frame at a time toward
            the higher neighbour, a tie going left; ``"reference"``: the released code's rule,
            the same growth on the scores divided by their max (+1e-4), a neighbour outside the
            clip counting -100, and a tie stopping the growth (so a track is not grown into
            frames where it scores the same, e.g. 0 where it is absent).

    Returns:
        ``(first, last)``: sampled-frame indices, both inclusive.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    T = s.size
    if T == 0:
        raise ValueError("no frames to select a span from")
    k = int(min(max(k, 1), T))
    if method == "topk_hull":
        top = np.argsort(-s, kind="stable")[:k]
        return int(top.min()), int(top.max())
    if method == "reference":
        return _grow_reference(s, k)
    if method != "grow":
        raise ValueError(f"unknown span method {method!r}: use 'topk_hull', 'grow' or 'reference'")
    lo = hi = int(np.argmax(s))
    while hi - lo + 1 < k:
        left = s[lo - 1] if lo > 0 else -np.inf
        right = s[hi + 1] if hi < T - 1 else -np.inf
        if right > left:
            hi += 1
        else:
            lo -= 1
    return lo, hi


def _grow_reference(scores: np.ndarray, window: int) -> tuple[int, int]:
    """The released code's span growth (see :func:`select_span`), ``window`` frames at most."""
    s = scores / (scores.max() + 1e-4)
    T = s.size
    lo = hi = int(np.argmax(scores))  # the first peak, as torch.max returns it
    while hi - lo + 1 < window:
        left = s[lo - 1] if lo > 0 else _OUTSIDE
        right = s[hi + 1] if hi < T - 1 else _OUTSIDE
        if left > right:
            lo -= 1
        elif right > left:
            hi += 1
        else:
            break
    return lo, hi


def span_to_native(first: int, last: int, frame_ids: np.ndarray, num_frames: int) -> tuple[int, int]:
    """Native ``[start, end)`` covered by sampled frames ``first..last`` (inclusive).

    A sampled frame stands for the native frames nearer to it than to any other sampled frame;
    the first and last sampled frames reach the video's start and end.
    """
    fids = np.asarray(frame_ids, dtype=np.int64)
    T = fids.size
    bounds = np.empty(T + 1, dtype=np.int64)
    bounds[0], bounds[-1] = 0, max(int(num_frames), int(fids[-1]) + 1)
    bounds[1:-1] = (fids[:-1] + fids[1:] + 1) // 2
    return int(bounds[first]), int(bounds[last + 1])


def span_from_sampled(first: int, last: int, frame_ids: np.ndarray) -> tuple[int, int]:
    """The released code's span: ``[frame_ids[first], frame_ids[last])``.

    The released code stores ``[frame_ids[first], frame_ids[last]]`` and its evaluator reads the
    end as exclusive (``end - start`` frames), which this half-open span keeps: the last chosen
    sampled frame itself is not in it, and a one-frame window is empty.
    """
    fids = np.asarray(frame_ids, dtype=np.int64)
    return int(fids[first]), int(fids[last])


# --------------------------------------------------------------------------- tubes


def assemble(track: Track, span: tuple[int, int], extrapolate: bool = True) -> Tube:
    """A tube over the native span ``[start, end)`` following ``track``.

    Frames where the track has a box keep it; frames between two of its boxes get the linear
    interpolation; frames before its first / after its last box hold that box when
    ``extrapolate`` (objects rarely vanish at a proposal's edge), else stay without a box.
    """
    start, end = int(span[0]), int(span[1])
    frames = np.arange(start, end, dtype=np.int64)
    if track.frame_ids.size == 0 or frames.size == 0:
        return Tube(start, end)
    tf = track.frame_ids.astype(np.float64)
    boxes = np.stack([np.interp(frames, tf, track.boxes[:, c]) for c in range(4)], axis=1)
    if not extrapolate:
        inside = (frames >= track.frame_ids[0]) & (frames <= track.frame_ids[-1])
        frames, boxes = frames[inside], boxes[inside]
    return Tube(start, end, frames, boxes)


@dataclass
class TubeScorerConfig:
    """Settings of the shared tube scorer.

    Attributes:
        span_method: ``"topk_hull"``, ``"grow"`` or ``"reference"`` (see :func:`select_span`).
        span_frames: k of the span method; ``None`` means half the sampled frames.
        weighting: ``"point"``, ``"coverage"`` or ``"binary"`` (see :func:`frame_scores`).
        span_scores: the chosen track's frame scores the span is grown on: ``"grid"`` (the
            track's weights times the map on the grid, as for the track choice) or ``"native"``
            (:func:`native_frame_scores`, the released code).
        span_bounds: native span of the chosen sampled frames: ``"cells"`` (each sampled frame
            stands for the native frames nearest to it, :func:`span_to_native`) or ``"sampled"``
            (the released code, :func:`span_from_sampled`).
        use_masks: score with masks where tracks have them.
        extrapolate: hold a track's end boxes over span frames beyond it.
    """

    span_method: SpanMethod = "grow"
    span_frames: int | None = None
    weighting: Weighting = "coverage"
    span_scores: SpanScores = "grid"
    span_bounds: SpanBounds = "cells"
    use_masks: bool = True
    extrapolate: bool = True

    def __post_init__(self) -> None:
        choices = {
            "span_method": ("topk_hull", "grow", "reference"),
            "weighting": ("point", "coverage", "binary"),
            "span_scores": ("grid", "native"),
            "span_bounds": ("cells", "sampled"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        if self.span_frames is not None and self.span_frames < 1:
            raise ValueError(f"span_frames must be at least 1, got {self.span_frames}")


class TubeScorer:
    """Evidence maps + proposal tracks -> a grounded tube, the same for both paradigms."""

    def __init__(self, config: TubeScorerConfig | None = None) -> None:
        self.config = config or TubeScorerConfig()

    def ground(
        self,
        evidence: np.ndarray,
        tracks: Sequence[Track],
        frame_ids: np.ndarray,
        num_frames: int,
        width: int,
        height: int,
        temporal_evidence: np.ndarray | None = None,
    ) -> GroundingResult:
        """Pick the best track, its span, and assemble the tube.

        Args:
            evidence: ``(T, h, w)`` maps used to pick the track (spatial).
            tracks: the proposals.
            frame_ids: ``(T,)`` native ids of the sampled frames.
            num_frames: frames in the whole video.
            width, height: native frame size.
            temporal_evidence: optional ``(T, h', w')`` maps used for the span (the temporal
                prompt's attention); defaults to ``evidence``.

        Returns:
            A :class:`GroundingResult`; with no tracks, an empty tube and no chosen track.
        """
        cfg = self.config
        fids = np.asarray(frame_ids, dtype=np.int64)
        if len(tracks) == 0:
            return GroundingResult(
                tube=Tube(0, 0), track_scores=np.zeros(0), evidence=evidence, sampled_frame_ids=fids
            )
        spatial = frame_scores(evidence, tracks, fids, width, height, cfg.weighting, cfg.use_masks)
        track_scores = spatial.max(-1)
        best = int(np.argmax(track_scores))
        span_evidence = evidence if temporal_evidence is None else temporal_evidence
        if cfg.span_scores == "native":
            per_frame = native_frame_scores(span_evidence, tracks[best], fids, width, height, cfg.use_masks)
        elif temporal_evidence is None:
            per_frame = spatial[best]
        else:
            per_frame = frame_scores(
                temporal_evidence, tracks[best], fids, width, height, cfg.weighting, cfg.use_masks
            )
        k = cfg.span_frames if cfg.span_frames is not None else max(1, fids.size // 2)
        first, last = select_span(per_frame, k, cfg.span_method)
        if cfg.span_bounds == "sampled":
            span = span_from_sampled(first, last, fids)
        else:
            span = span_to_native(first, last, fids, num_frames)
        tube = assemble(tracks[best], span, cfg.extrapolate)
        return GroundingResult(
            tube=tube,
            track_scores=track_scores,
            chosen_track=best,
            frame_scores=per_frame,
            evidence=evidence,
            sampled_frame_ids=fids,
            extras={"span_sampled": (first, last)},
        )
