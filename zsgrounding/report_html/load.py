"""Reading an ``stvg eval`` run folder or an ``stvg compare`` folder into the report's rows: per
sample its query and, per grounder, its status, error, tIoU / vIoU and seconds (and pictures,
filled by :class:`zsgrounding.report_html.pictures._Pictures`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zsgrounding.comparison import Comparison, load_comparison
from zsgrounding.errors import STVGError
from zsgrounding.metrics import FrameSet, evaluate
from zsgrounding.metrics import Protocol as EvalProtocol
from zsgrounding.predictions import tube_from_json
from zsgrounding.report_html.pictures import _Pictures
from zsgrounding.runfolder import RUN_FILE
from zsgrounding.runner import METRICS_JSON, is_error, load_results
from zsgrounding.types import Sample, Tube


@dataclass
class _Side:
    """One grounder's result for one sample."""

    status: str  # "ok", "failed" or "missing"
    error: str | None = None
    tiou: float = math.nan
    viou: float = math.nan
    seconds: float = math.nan
    pictures: dict[str, Path] = field(default_factory=dict)
    note: str | None = None


@dataclass
class _Row:
    id: str
    query: str
    sides: list[_Side]


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise STVGError(f"{path}: unreadable ({exc})") from exc


def _sample_ids(run_dir: Path, records: Mapping[str, dict], samples: Sequence[Sample]) -> list[str]:
    """The samples the run was asked (``run.json``), else the given samples, then any other line."""
    run_file = run_dir / RUN_FILE
    recorded = _read_json(run_file).get("samples", {}) if run_file.is_file() else {}
    ids = list(recorded) if recorded else [s.id for s in samples]
    known = set(ids)
    return ids + [i for i in records if i not in known]


def _sides(
    ids: Sequence[str], records: Mapping[str, dict], tiou: Mapping[str, float], viou: Mapping[str, float]
) -> dict[str, _Side]:
    sides = {}
    for sample_id in ids:
        record = records.get(sample_id)
        if record is None:
            sides[sample_id] = _Side("missing")
            continue
        status = "failed" if is_error(record) else "ok"
        sides[sample_id] = _Side(
            status,
            error=str(record["error"]) if status == "failed" else None,
            tiou=tiou.get(sample_id, math.nan),
            viou=viou.get(sample_id, math.nan),
            seconds=_number(record.get("seconds")),
        )
    return sides


def _query(sample_id: str, samples: Mapping[str, Sample], records: Iterable[Mapping[str, dict]]) -> str:
    """The sentence: from the annotations, else as a grounder recorded it in its extras."""
    if sample_id in samples:
        return samples[sample_id].sentence
    for by_id in records:
        extras = by_id.get(sample_id, {}).get("extras")
        if isinstance(extras, dict) and isinstance(extras.get("query"), str):
            return extras["query"]
    return ""


def _per_sample_scores(
    samples: Sequence[Sample], records: Mapping[str, dict], frames: FrameSet, protocol: EvalProtocol
) -> tuple[dict[str, float], dict[str, float], float | None]:
    """tIoU and vIoU per sample id (failed or missing: 0, as in the metrics), and the m_tIoU."""
    gts = {s.id: s.gt for s in samples if s.gt is not None}
    if not gts:
        return {}, {}, None
    tubes: dict[str, Tube] = {
        i: tube_from_json(i, r["tube"]) for i, r in records.items() if i in gts and not is_error(r)
    }
    result = evaluate(tubes, gts, frames=frames, protocol=protocol)
    tiou = dict(zip(result.ids, result.tiou.tolist(), strict=True))
    viou = dict(zip(result.ids, result.viou.tolist(), strict=True))
    return tiou, viou, result.summary()["m_tIoU"]


@dataclass
class _EvalRun:
    """What the page of an eval run shows: the grounder's name, metrics.json, rows and notes."""

    name: str
    metrics: Any
    rows: list[_Row]
    notes: list[str]


def _load_eval(
    run_dir: Path, samples: Sequence[Sample], pictures: _Pictures, frames: FrameSet, protocol: EvalProtocol
) -> _EvalRun:
    """Read an eval run folder into rows (drawing or finding the pictures)."""
    records = load_results(run_dir)
    by_id = {s.id: s for s in samples}
    ids = _sample_ids(run_dir, records, samples)
    metrics_path = run_dir / METRICS_JSON
    metrics = _read_json(metrics_path) if metrics_path.is_file() else None
    run_file = run_dir / RUN_FILE
    name = str(_read_json(run_file).get("grounder", "all")) if run_file.is_file() else "all"
    in_run = [by_id[i] for i in ids if i in by_id]
    tiou, viou, m_tiou = _per_sample_scores(in_run, records, frames, protocol)
    sides = _sides(ids, records, tiou, viou)
    pictures.fill(run_dir, sides, records, by_id)
    rows = [_Row(i, _query(i, by_id, [records]), [sides[i]]) for i in ids]
    notes = []
    if not in_run:
        notes.append("No annotations given: tIoU / vIoU per sample need --dataset/--gt.")
    stored = metrics.get("m_tIoU") if isinstance(metrics, dict) else None
    if m_tiou is not None and isinstance(stored, int | float) and abs(m_tiou - stored) > 1e-6:
        notes.append(
            f"The per-sample scores (frames {frames}, protocol {protocol}) average to m_tIoU "
            f"{m_tiou:.2f}, metrics.json says {stored:.2f}: the run used another protocol or other annotations."
        )
    notes += pictures.notes
    return _EvalRun(name, metrics, rows, notes)


def _load_compare(out: Path, samples: Sequence[Sample], pictures: _Pictures) -> tuple[Comparison, list[_Row]]:
    """Read a compare folder into rows, one side per grounder (drawing or finding the pictures)."""
    comparison = load_comparison(out)
    by_id = {s.id: s for s in samples}
    all_records: list[dict[str, dict]] = []
    sides_by_run: list[dict[str, _Side]] = []
    for run in comparison.runs.values():
        records = load_results(run.dir) if run.dir.is_dir() else {}
        all_records.append(records)
        sides = {}
        for k, sample_id in enumerate(comparison.ids):
            record = records.get(sample_id)
            if sample_id in run.tubes:
                status, error = "ok", None
            elif sample_id in run.errors or (record is not None and is_error(record)):
                status = "failed"
                error = run.errors.get(sample_id) or str((record or {}).get("error", ""))
            else:
                status, error = "missing", None
            seconds = _number(record.get("seconds")) if record else math.nan
            sides[sample_id] = _Side(status, error, float(run.tiou[k]), float(run.viou[k]), seconds)
        ok_records = {i: r for i, r in records.items() if sides.get(i) and sides[i].status == "ok"}
        pictures.fill(run.dir, {i: s for i, s in sides.items() if i in ok_records}, ok_records, by_id)
        sides_by_run.append(sides)
    rows = [
        _Row(i, _query(i, by_id, all_records), [sides[i] for sides in sides_by_run]) for i in comparison.ids
    ]
    return comparison, rows
