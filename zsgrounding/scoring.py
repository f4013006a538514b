"""``stvg score``: score a prediction file against a dataset's ground truth.

:func:`score_file` loads the annotations (with the per-dataset loader options), the predictions,
scores them (STVG: m_tIoU, m_vIoU, vIoU@R; Charades-STA: R@1 at IoU 0.3 / 0.5 / 0.7 and mIoU) and
returns the report, its Markdown table and the warnings (missing or ignored predictions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ScoreResult", "score_file"]


@dataclass
class ScoreResult:
    """What :func:`score_file` computed.

    Attributes:
        report: the metrics, in percent (what ``--json`` prints).
        table: the same as a Markdown table.
        warnings: one line each: missing predictions, predictions with no ground truth.
    """

    report: dict[str, Any]
    table: str
    warnings: list[str] = field(default_factory=list)


def score_file(
    dataset: str,
    gt_path: Path,
    pred_path: Path,
    *,
    frames: str = "tubedetr",
    protocol: str = "tubedetr",
    vidor_dir: Path | None = None,
    hcstvg_start: str = "one_based",
    skip_malformed: bool = False,
) -> ScoreResult:
    """Score ``pred_path`` against the annotations ``gt_path`` of ``dataset``.

    ``charades-sta`` scores one span per query (``{id: [start_s, end_s]}``); the STVG datasets
    score tubes under ``frames`` / ``protocol``. ``vidor_dir`` applies to raw VidSTG files,
    ``hcstvg_start`` to HC-STVG and toy annotations.
    """
    from zsgrounding.datasets import LoadReport, load_dataset
    from zsgrounding.metrics import evaluate, evaluate_temporal
    from zsgrounding.predictions import load_predictions, load_span_predictions
    from zsgrounding.report import markdown_table, stvg_rows

    kw: dict[str, object] = {"skip_malformed": skip_malformed, "report": LoadReport()}
    warnings: list[str] = []
    if dataset == "charades-sta":
        spans = {
            s.id: s.span_seconds for s in load_dataset(dataset, gt_path, **kw) if s.span_seconds is not None
        }
        span_predictions = load_span_predictions(pred_path)
        temporal = evaluate_temporal(span_predictions, spans)
        if temporal.missing:
            warnings.append(f"missing predictions: {len(temporal.missing)} of {len(spans)} (scored 0)")
        extra = len(set(span_predictions) - set(spans))
        if extra:
            warnings.append(f"ignored predictions with no ground truth: {extra}")
        summary = temporal.report()
        return ScoreResult(summary, markdown_table({"all": summary}, list(temporal.summary())), warnings)
    if dataset == "vidstg":
        kw["vidor_dir"] = vidor_dir
    elif dataset in ("hcstvg-v1", "hcstvg-v2", "toy"):
        kw["start_convention"] = hcstvg_start
    samples = load_dataset(dataset, gt_path, **kw)
    gts = {s.id: s.gt for s in samples if s.gt is not None}
    predictions = load_predictions(pred_path)
    result = evaluate(predictions, gts, frames=frames, protocol=protocol)  # type: ignore[arg-type]
    report = result.report()
    if result.missing:
        warnings.append(f"missing predictions: {len(result.missing)} of {len(gts)} (scored 0)")
    extra = len(set(predictions) - set(gts))
    if extra:
        warnings.append(f"ignored predictions with no ground truth: {extra}")
    return ScoreResult(report, markdown_table(stvg_rows(report)), warnings)
