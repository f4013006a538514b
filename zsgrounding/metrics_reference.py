"""The STVG protocol written out frame by frame: an executable specification.

Slow and plain on purpose: it mirrors the per-video loop of TubeDETR's evaluator, so the
vectorised :func:`zsgrounding.metrics.evaluate` is checked against it in the tests and timed
against it in ``benchmarks/metrics_speed.py``.
"""

from __future__ import annotations

from zsgrounding.metrics import TUBEDETR_FPS, TUBEDETR_MAX_FRAMES, FrameSet
from zsgrounding.types import GroundTruth, Tube


def reference_frames(segment: tuple[int, int], fps: float, frames: FrameSet = "tubedetr") -> list[int]:
    """Evaluated frames of one sentence by TubeDETR's sampling loop."""
    start, end = segment
    if frames == "all":
        return list(range(start, end))
    rate = TUBEDETR_FPS / fps
    kept = [start]
    for f in range(start, end):
        if int(kept[-1] * rate) < int(f * rate):
            kept.append(f)
    if len(kept) > TUBEDETR_MAX_FRAMES:
        kept = [kept[(j * len(kept)) // TUBEDETR_MAX_FRAMES] for j in range(TUBEDETR_MAX_FRAMES)]
    return kept


def _iou(a: list[float], b: list[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def reference_tiou_viou(pred: Tube, gt: GroundTruth, frames: FrameSet = "tubedetr") -> tuple[float, float]:
    """``(tIoU, vIoU)`` of one sentence, one frame at a time."""
    gs, ge, ps, pe = gt.tube.start, gt.tube.end, pred.start, pred.end
    inter = min(ge, pe) - max(gs, ps)
    tiou = 0.0 if inter <= 0 else inter / ((ge - gs) + (pe - ps) - inter)
    evaluated = reference_frames(gt.segment, gt.fps, frames)
    union = [f for f in evaluated if min(gs, ps) <= f < max(ge, pe)]
    gt_boxes = gt.tube.box_dict()
    pred_boxes = {f: b for f, b in pred.box_dict().items() if ps <= f < pe}
    total = 0.0
    for f in evaluated:
        if max(gs, ps) <= f < min(ge, pe) and gs <= f < ge and f in gt_boxes and f in pred_boxes:
            total += _iou(pred_boxes[f], gt_boxes[f])
    return tiou, total / max(len(union), 1)
