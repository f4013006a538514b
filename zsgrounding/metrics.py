"""Evaluation: STVG (tIoU, vIoU, vIoU@R), temporal grounding (R@1, mIoU) and REC (Acc@0.5).

STVG follows the corrected TubeDETR protocol. For one sentence with GT span ``[gs, ge)`` and
predicted span ``[ps, pe)`` (native frames, end exclusive):

* ``tIoU = |[max(gs,ps), min(ge,pe))| / (|[gs,ge)| + |[ps,pe)| - intersection)`` in raw frames,
  and 0 when ``min(ge,pe) <= max(gs,ps)``.
* The evaluated frames ``F`` come from the GT's evaluation segment (``GroundTruth.segment``):
  ``frames="tubedetr"`` (default) keeps TubeDETR's 5 fps sampling of the segment: the first
  frame, then each frame ``f`` with ``int(last_kept * r) < int(f * r)`` for ``r = 5 / fps``,
  thinned to 200 frames by ``ids[(j * len) // 200]``; ``frames="all"`` keeps every native frame.
* ``U`` = frames of ``F`` in the hull ``[min(gs,ps), max(ge,pe))``; ``I`` = frames of ``F`` in
  ``[max(gs,ps), min(ge,pe))``.
* ``vIoU = sum over frames of I that have a GT box of IoU(pred, gt) / max(|U|, 1)``. A frame of
  ``I`` with a GT box but no predicted box contributes IoU 0 (the prediction claimed the span
  and gave no box). No overlap gives tIoU = vIoU = 0.
* ``vIoU@R`` is ``vIoU > R``: strict, as TubeDETR. Aggregates are means over sentences in
  percent. A sentence with no prediction scores 0 everywhere and is counted in ``missing``.

The named variant ``protocol="cgstvg"`` reproduces CG-STVG's evaluator: every native frame of
the segment is evaluated and predicted boxes are linearly interpolated between the frames that
carry one (held constant beyond the first / last). Its GT end depends on the dataset, as in
CG-STVG's data pipeline: for HC-STVG (``GroundTruth.cgstvg_end_inclusive``, the default) the
end is stored inclusive but scored exclusive, i.e. the GT span is one frame short:
``[gs, ge - 1)``; VidSTG's ``[begin_fid, end_fid)`` is scored in full.

A GT span of zero length (VidSTG has a few, ``begin_fid == end_fid``) overlaps nothing: the
sentence scores tIoU = vIoU = 0 in both protocols, as in TubeDETR's evaluator, and still counts
in every mean.

Temporal grounding (Charades-STA) scores one predicted span per query in seconds: ``R@1,IoU=m``
is the percentage of queries whose IoU with the GT span is ``>= m`` (m = 0.3, 0.5, 0.7), and
``mIoU`` the mean IoU in percent, as the temporal grounding papers report them. A query with no
prediction scores IoU 0.

Box IoU is on continuous pixel coordinates with no +1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from zsgrounding.boxes import box_iou
from zsgrounding.types import GroundTruth, Tube

FrameSet = Literal["tubedetr", "all"]
Protocol = Literal["tubedetr", "cgstvg"]

TUBEDETR_FPS = 5.0
TUBEDETR_MAX_FRAMES = 200
DEFAULT_THRESHOLDS = (0.3, 0.5)
TEMPORAL_THRESHOLDS = (0.3, 0.5, 0.7)


# --------------------------------------------------------------------------- spans


def temporal_iou(pred: tuple[float, float], gt: tuple[float, float]) -> float:
    """IoU of two half-open spans (frames or seconds); 0 when they do not overlap."""
    return float(_span_iou(np.array([pred[0]]), np.array([pred[1]]), np.array([gt[0]]), np.array([gt[1]]))[0])


def _span_iou(ps: np.ndarray, pe: np.ndarray, gs: np.ndarray, ge: np.ndarray) -> np.ndarray:
    inter = np.minimum(pe, ge) - np.maximum(ps, gs)
    union = (pe - ps) + (ge - gs) - inter
    ok = (inter > 0) & (union > 0)
    return np.where(ok, inter / np.where(ok, union, 1.0), 0.0)


def evaluated_frames(
    segment: tuple[int, int],
    fps: float,
    frames: FrameSet = "tubedetr",
    sample_fps: float = TUBEDETR_FPS,
    max_frames: int = TUBEDETR_MAX_FRAMES,
) -> np.ndarray:
    """Native frame ids evaluated for one sentence (see the module docstring)."""
    ids, _ = _evaluated_frames_batch(
        np.array([segment[0]]), np.array([segment[1]]), np.array([float(fps)]), frames, sample_fps, max_frames
    )
    return ids


def _evaluated_frames_batch(
    seg_start: np.ndarray,
    seg_end: np.ndarray,
    fps: np.ndarray,
    frames: FrameSet,
    sample_fps: float = TUBEDETR_FPS,
    max_frames: int = TUBEDETR_MAX_FRAMES,
) -> tuple[np.ndarray, np.ndarray]:
    """Evaluated frames of many sentences at once.

    Returns:
        ``(frame_ids (M,), owner (M,))``: the flat list of evaluated native frames, and the
        index of the sentence each belongs to, grouped by sentence in ascending frame order.
    """
    lengths = np.clip(seg_end - seg_start, 0, None).astype(np.int64)
    owner = np.repeat(np.arange(lengths.size), lengths)
    first = np.cumsum(lengths) - lengths
    ids = seg_start[owner] + (np.arange(owner.size) - first[owner])
    if frames == "all":
        return ids, owner
    if frames != "tubedetr":
        raise ValueError(f"unknown frame set {frames!r}: use 'tubedetr' or 'all'")
    # Keeping a frame whenever int(f * r) grows is the same as keeping the first frame of
    # each run of equal int(f * r); the segment's first frame is always kept.
    rate = sample_fps / np.where(fps > 0, fps, sample_fps)
    bucket = np.floor(ids * rate[owner])
    keep = np.ones(ids.size, dtype=bool)
    keep[1:] = (bucket[1:] != bucket[:-1]) | (owner[1:] != owner[:-1])
    ids, owner = ids[keep], owner[keep]
    # Thin each sentence to max_frames: index k survives iff some j < max_frames has
    # (j * count) // max_frames == k, i.e. j0 = ceil(max_frames * k / count) works.
    count = np.bincount(owner, minlength=lengths.size)
    c = count[owner]
    k = np.arange(ids.size) - (np.cumsum(count) - count)[owner]
    j0 = (max_frames * k + c - 1) // np.maximum(c, 1)
    keep = (c <= max_frames) | ((j0 < max_frames) & (j0 * c < max_frames * (k + 1)))
    return ids[keep], owner[keep]


# --------------------------------------------------------------------------- STVG


@dataclass
class STVGResult:
    """Per-sentence and aggregate STVG metrics.

    Attributes:
        ids: ``(n,)`` sentence ids in evaluation order.
        tiou: ``(n,)`` temporal IoU of each sentence, in [0, 1].
        viou: ``(n,)`` vIoU of each sentence, in [0, 1].
        qtypes: ``(n,)`` sentence type (``None`` when the dataset has none).
        missing: ids of sentences without a prediction (scored 0).
        thresholds: the R of vIoU@R.
    """

    ids: list[str]
    tiou: np.ndarray
    viou: np.ndarray
    qtypes: list[str | None]
    missing: list[str] = field(default_factory=list)
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS

    def summary(self, mask: np.ndarray | None = None) -> dict[str, float]:
        """Means in percent: ``m_tIoU``, ``m_vIoU``, ``vIoU@R`` for each R, and ``n``."""
        tiou = self.tiou if mask is None else self.tiou[mask]
        viou = self.viou if mask is None else self.viou[mask]
        n = int(tiou.size)
        out: dict[str, float] = {
            "m_tIoU": 100.0 * float(tiou.mean()) if n else 0.0,
            "m_vIoU": 100.0 * float(viou.mean()) if n else 0.0,
        }
        for r in self.thresholds:
            out[f"vIoU@{r:g}"] = 100.0 * float((viou > r).mean()) if n else 0.0
        out["n"] = n
        return out

    def by_qtype(self) -> dict[str, dict[str, float]]:
        """``summary()`` of each sentence type (VidSTG: declarative, interrogative)."""
        kinds = sorted({q for q in self.qtypes if q is not None})
        arr = np.array(self.qtypes, dtype=object)
        return {k: self.summary(arr == k) for k in kinds}

    def report(self) -> dict[str, object]:
        """The overall summary, with per-type splits when the sentences have types."""
        out: dict[str, object] = dict(self.summary())
        out["missing"] = len(self.missing)
        splits = self.by_qtype()
        if splits:
            out.update(splits)
        return out


def _flatten(tubes: Sequence[Tube | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate the boxes of many tubes: ``(owner (B,), frame_ids (B,), boxes (B, 4))``."""
    counts = np.array([0 if t is None else t.frame_ids.size for t in tubes], dtype=np.int64)
    owner = np.repeat(np.arange(len(tubes)), counts)
    present = [t for t in tubes if t is not None and t.frame_ids.size]
    if not present:
        return owner, np.zeros(0, dtype=np.int64), np.zeros((0, 4))
    fids = np.concatenate([t.frame_ids for t in present])
    boxes = np.concatenate([t.boxes for t in present])
    return owner, fids, boxes


def _lookup_boxes(
    keys: np.ndarray, boxes: np.ndarray, query: np.ndarray, interpolate: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes at ``query`` keys (sorted ``keys``); ``(boxes (Q, 4), found (Q,))``.

    With ``interpolate``, a query between two keys of the same owner gets the linear blend and
    one outside them the nearest box of that owner.
    """
    q = query.size
    out = np.zeros((q, 4))
    if keys.size == 0 or q == 0:
        return out, np.zeros(q, dtype=bool)
    pos = np.searchsorted(keys, query)
    at = np.clip(pos, 0, keys.size - 1)
    exact = keys[at] == query
    out[exact] = boxes[at[exact]]
    if not interpolate:
        return out, exact
    owner_q, owner_of_key = query >> 32, keys >> 32
    left = np.clip(pos - 1, 0, keys.size - 1)
    right = np.clip(pos, 0, keys.size - 1)
    has_left = (pos > 0) & (owner_of_key[left] == owner_q)
    has_right = (pos < keys.size) & (owner_of_key[right] == owner_q)
    fl, fr = keys[left] & 0xFFFFFFFF, keys[right] & 0xFFFFFFFF
    fq = query & 0xFFFFFFFF
    both = ~exact & has_left & has_right
    w = np.where(both, (fq - fl) / np.maximum(fr - fl, 1), 0.0)[:, None]
    out[both] = ((1 - w) * boxes[left] + w * boxes[right])[both]
    only_left = ~exact & has_left & ~has_right
    only_right = ~exact & ~has_left & has_right
    out[only_left] = boxes[left[only_left]]
    out[only_right] = boxes[right[only_right]]
    return out, exact | both | only_left | only_right


def evaluate(
    predictions: Mapping[str, Tube],
    ground_truth: Mapping[str, GroundTruth],
    frames: FrameSet = "tubedetr",
    protocol: Protocol = "tubedetr",
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
) -> STVGResult:
    """Score predicted tubes against ground truth, vectorised over all sentences.

    Args:
        predictions: sentence id -> predicted tube; ids absent here score 0.
        ground_truth: sentence id -> ground truth; its keys define the evaluated sentences.
        frames: the evaluated frame set, ``"tubedetr"`` (5 fps sampling) or ``"all"``.
        protocol: ``"tubedetr"`` (corrected TubeDETR) or ``"cgstvg"`` (every native frame,
            interpolated predictions, and the GT one frame short where
            ``GroundTruth.cgstvg_end_inclusive`` is set: HC-STVG, not VidSTG); ``cgstvg``
            ignores ``frames``.
        thresholds: R values of vIoU@R (strict ``>``).

    Returns:
        An :class:`STVGResult`.
    """
    if protocol not in ("tubedetr", "cgstvg"):
        raise ValueError(f"unknown protocol {protocol!r}: use 'tubedetr' or 'cgstvg'")
    ids = list(ground_truth)
    n = len(ids)
    gts = [ground_truth[i] for i in ids]
    preds = [predictions.get(i) for i in ids]
    missing = [i for i, p in zip(ids, preds, strict=True) if p is None]

    gs = np.array([g.tube.start for g in gts], dtype=np.int64)
    ge = np.array([g.tube.end for g in gts], dtype=np.int64)
    if protocol == "cgstvg":
        inclusive = np.array([g.cgstvg_end_inclusive for g in gts], dtype=bool)
        ge = np.where(inclusive, np.maximum(ge - 1, gs), ge)
        frames = "all"
    has_pred = np.array([p is not None for p in preds], dtype=bool)
    ps = np.array([p.start if p is not None else 0 for p in preds], dtype=np.int64)
    pe = np.array([p.end if p is not None else 0 for p in preds], dtype=np.int64)

    tiou = np.where(has_pred, _span_iou(ps, pe, gs, ge), 0.0)

    seg_s = np.array([g.segment[0] for g in gts], dtype=np.int64)
    seg_e = np.array([g.segment[1] for g in gts], dtype=np.int64)
    fps = np.array([g.fps for g in gts], dtype=np.float64)
    fids, owner = _evaluated_frames_batch(seg_s, seg_e, fps, frames)

    lo, hi = np.minimum(gs, ps)[owner], np.maximum(ge, pe)[owner]
    in_union = has_pred[owner] & (fids >= lo) & (fids < hi)
    i_lo, i_hi = np.maximum(gs, ps)[owner], np.minimum(ge, pe)[owner]
    in_inter = has_pred[owner] & (fids >= i_lo) & (fids < i_hi)

    # One sorted int64 key per (sentence, frame) lets a single searchsorted find every box.
    query = (owner[in_inter].astype(np.int64) << 32) | fids[in_inter]
    g_owner, g_fids, g_boxes = _flatten([g.tube for g in gts])
    g_keep = (g_fids >= gs[g_owner]) & (g_fids < ge[g_owner])
    g_keys = (g_owner[g_keep].astype(np.int64) << 32) | g_fids[g_keep]
    g_order = np.argsort(g_keys, kind="stable")
    gt_box, gt_found = _lookup_boxes(g_keys[g_order], g_boxes[g_keep][g_order], query, False)
    p_owner, p_fids, p_boxes = _flatten(preds)
    # Only boxes inside the predicted span count: the tube claims nothing outside it.
    p_keep = (p_fids >= ps[p_owner]) & (p_fids < pe[p_owner])
    p_keys = (p_owner[p_keep].astype(np.int64) << 32) | p_fids[p_keep]
    p_order = np.argsort(p_keys, kind="stable")
    pred_box, pred_found = _lookup_boxes(
        p_keys[p_order], p_boxes[p_keep][p_order], query, interpolate=protocol == "cgstvg"
    )
    iou = np.where(gt_found & pred_found, box_iou(pred_box, gt_box), 0.0)
    numerator = np.bincount(owner[in_inter], weights=iou, minlength=n)
    denominator = np.bincount(owner, weights=in_union.astype(np.float64), minlength=n)
    viou = numerator / np.maximum(denominator, 1.0)
    return STVGResult(
        ids=ids,
        tiou=tiou,
        viou=viou,
        qtypes=[g.qtype for g in gts],
        missing=missing,
        thresholds=tuple(float(t) for t in thresholds),
    )


# --------------------------------------------------------------------------- temporal grounding


@dataclass
class TemporalResult:
    """Temporal grounding (Charades-STA style) results.

    Attributes:
        iou: ``(n,)`` IoU in seconds of each top-1 span with its GT span, in [0, 1].
        thresholds: the m of R@1 IoU=m (``>=``).
        ids: ``(n,)`` query ids in evaluation order (empty when scored from bare arrays).
        missing: ids of queries without a prediction (scored IoU 0).
    """

    iou: np.ndarray
    thresholds: tuple[float, ...] = TEMPORAL_THRESHOLDS
    ids: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """``R@1,IoU=m`` for each m and ``mIoU``, in percent, with ``n``."""
        n = int(self.iou.size)
        out = {f"R@1,IoU={m:g}": 100.0 * float((self.iou >= m).mean()) if n else 0.0 for m in self.thresholds}
        out["mIoU"] = 100.0 * float(self.iou.mean()) if n else 0.0
        out["n"] = n
        return out

    def report(self) -> dict[str, object]:
        """The summary with the number of queries that had no prediction, ``missing``."""
        out: dict[str, object] = dict(self.summary())
        out["missing"] = len(self.missing)
        return out


def evaluate_temporal(
    predictions: Mapping[str, tuple[float, float]] | np.ndarray | Sequence[tuple[float, float]],
    ground_truth: Mapping[str, tuple[float, float]] | np.ndarray | Sequence[tuple[float, float]],
    thresholds: Sequence[float] = TEMPORAL_THRESHOLDS,
) -> TemporalResult:
    """R@1 at IoU m (``>=``) and mIoU for top-1 spans ``(start, end)`` in seconds.

    Args:
        predictions: either ``(n, 2)`` spans aligned with ``ground_truth``, or a mapping
            query id -> span when ``ground_truth`` is a mapping; ids absent from it score 0.
        ground_truth: ``(n, 2)`` GT spans, or a mapping query id -> span whose keys define the
            evaluated queries.
        thresholds: the m values (default 0.3, 0.5, 0.7).

    Returns:
        A :class:`TemporalResult` (with ``ids`` and ``missing`` when given mappings).
    """
    ms = tuple(float(m) for m in thresholds)
    if isinstance(ground_truth, Mapping):
        if not isinstance(predictions, Mapping):
            raise TypeError("with ground truth keyed by id, predictions must be keyed by id too")
        ids = list(ground_truth)
        missing = [i for i in ids if i not in predictions]
        g = np.array([ground_truth[i] for i in ids], dtype=np.float64).reshape(-1, 2)
        p = np.array([predictions.get(i, (0.0, 0.0)) for i in ids], dtype=np.float64).reshape(-1, 2)
        has = np.array([i in predictions for i in ids], dtype=bool)
        iou = np.where(has, _span_iou(p[:, 0], p[:, 1], g[:, 0], g[:, 1]), 0.0)
        return TemporalResult(iou=iou, thresholds=ms, ids=ids, missing=missing)
    if isinstance(predictions, Mapping):
        raise TypeError("predictions keyed by id need ground truth keyed by id")
    p = np.asarray(predictions, dtype=np.float64).reshape(-1, 2)
    g = np.asarray(ground_truth, dtype=np.float64).reshape(-1, 2)
    if p.shape != g.shape:
        raise ValueError(f"{p.shape[0]} predicted spans for {g.shape[0]} ground-truth spans")
    iou = _span_iou(p[:, 0], p[:, 1], g[:, 0], g[:, 1])
    return TemporalResult(iou=iou, thresholds=ms)


# --------------------------------------------------------------------------- REC


def rec_accuracy(pred_boxes: np.ndarray, gt_boxes: np.ndarray, threshold: float = 0.5) -> float:
    """Referring-expression Acc@threshold in percent: share of boxes with IoU >= threshold."""
    p = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 4)
    g = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    if p.shape != g.shape:
        raise ValueError(f"{p.shape[0]} predicted boxes for {g.shape[0]} ground-truth boxes")
    if p.shape[0] == 0:
        return 0.0
    return 100.0 * float((box_iou(p, g) >= threshold).mean())
