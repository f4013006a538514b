"""A comparison's results: per grounder its tubes, scores and costs; the agreement between them;
the table, the JSON and the pictures it is saved as, and reading it back.

:func:`zsgrounding.compare.compare_paradigms` runs the grounders and builds a :class:`Comparison`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zsgrounding.atomic import write_text_atomic
from zsgrounding.metrics import TUBEDETR_FPS, FrameSet, evaluate
from zsgrounding.metrics import Protocol as EvalProtocol
from zsgrounding.predictions import load_predictions
from zsgrounding.report import markdown_table
from zsgrounding.types import GroundTruth, Sample, Tube

__all__ = ["METRIC_COLUMNS", "Comparison", "GrounderRun", "load_comparison", "tube_agreement"]

METRIC_COLUMNS = ("m_tIoU", "m_vIoU", "vIoU@0.3", "vIoU@0.5")
COST_COLUMNS = ("s/video", "peak MB")
MARKDOWN_FILE = "comparison.md"
JSON_FILE = "comparison.json"
BARS_FILE = "metric_bars.png"
MAX_ALL_PAIRS = 4  # up to this many grounders every pair gets a scatter plot, else first vs rest


# ------------------------------------------------------------------------------- agreement


def tube_agreement(
    tubes_a: Mapping[str, Tube],
    tubes_b: Mapping[str, Tube],
    samples: Sequence[Sample],
    frames: FrameSet = "tubedetr",
) -> np.ndarray:
    """Per sample, the vIoU of ``a``'s tube scored with ``b``'s tube as the ground truth.

    The evaluator is :func:`zsgrounding.metrics.evaluate` under the TubeDETR protocol on the
    sample's evaluated frames (its ground truth's segment and fps; without ground truth, every
    frame of the two tubes' hull at the sample's fps). Under that protocol the value is
    symmetric: a frame counts only where both tubes have a box, and the union and intersection
    of the spans do not depend on which tube is the "truth".

    Returns:
        ``(n,)`` in [0, 1], in ``samples`` order; NaN where either tube is missing.
    """
    gts: dict[str, GroundTruth] = {}
    for s in samples:
        a, b = tubes_a.get(s.id), tubes_b.get(s.id)
        if a is None or b is None:
            continue
        if s.gt is not None:
            fps, segment = s.gt.fps, s.gt.segment
        else:
            fps, segment = s.fps or TUBEDETR_FPS, (min(a.start, b.start), max(a.end, b.end))
        gts[s.id] = GroundTruth(tube=b, fps=fps, segment=segment)
    out = np.full(len(samples), np.nan)
    if not gts:
        return out
    result = evaluate(tubes_a, gts, frames=frames, protocol="tubedetr")
    viou = dict(zip(result.ids, result.viou.tolist(), strict=True))
    for i, s in enumerate(samples):
        if s.id in viou:
            out[i] = viou[s.id]
    return out


# ------------------------------------------------------------------------------- results


@dataclass
class GrounderRun:
    """One grounder's side of a comparison; arrays are aligned with :attr:`Comparison.ids`.

    Attributes:
        name: the row label.
        dir: the folder of its run files (``results.jsonl``, ``predictions.json``, ...).
        tubes: sample id -> predicted tube (a failed sample has none).
        tiou: ``(n,)`` temporal IoU per sample in [0, 1]; NaN where the sample has no ground truth.
        viou: ``(n,)`` vIoU per sample in [0, 1]; NaN where the sample has no ground truth.
        metrics: ``STVGResult.report()`` in percent (``m_tIoU``, ``m_vIoU``, ``vIoU@0.3``,
            ``vIoU@0.5``, ``n``, ``missing``, per-type splits); empty without ground truth.
        seconds: ``(n,)`` wall seconds of each grounder call; NaN where not measured.
        peak_mb: ``(n,)`` peak memory growth of each call in MiB; NaN where not measured.
        memory: how ``peak_mb`` was measured: ``"cuda"``, ``"rss"`` (approximate), or ``None``.
        errors: sample id -> the one-line error of a failed sample.
    """

    name: str
    dir: Path
    tubes: dict[str, Tube]
    tiou: np.ndarray
    viou: np.ndarray
    metrics: dict[str, Any]
    seconds: np.ndarray
    peak_mb: np.ndarray
    memory: str | None = None
    errors: dict[str, str] = field(default_factory=dict)

    def cost(self) -> dict[str, float | None]:
        """``seconds_mean``, ``seconds_max`` (s per video), ``peak_mb_mean``, ``peak_mb_max`` (MiB)."""
        return {
            "seconds_mean": _nan_stat(np.nanmean, self.seconds),
            "seconds_max": _nan_stat(np.nanmax, self.seconds),
            "peak_mb_mean": _nan_stat(np.nanmean, self.peak_mb),
            "peak_mb_max": _nan_stat(np.nanmax, self.peak_mb),
        }


@dataclass
class Comparison:
    """Grounders compared on the same samples, proposals and evaluator.

    Attributes:
        ids: the ``n`` sample ids, in dataset order.
        runs: grounder name -> its :class:`GrounderRun`, in the order given.
        agreement: ``(G, G)`` percent: entry ``[i, j]`` is the mean over samples of the vIoU of
            grounder ``i``'s tube scored with grounder ``j``'s tube as ground truth
            (:func:`tube_agreement`); samples where either failed are left out (NaN if none is
            left). Symmetric, with 100 on the diagonal for tubes with a box on every frame.
        agreement_per_sample: ``(G, G, n)`` the per-sample values in [0, 1], NaN where missing.
        frames: the evaluated frame set.
        protocol: the evaluation protocol of the metrics against the ground truth.
    """

    ids: list[str]
    runs: dict[str, GrounderRun]
    agreement: np.ndarray
    agreement_per_sample: np.ndarray
    frames: FrameSet = "tubedetr"
    protocol: EvalProtocol = "tubedetr"

    @property
    def names(self) -> list[str]:
        """The grounder names, in table order."""
        return list(self.runs)

    def rows(self) -> dict[str, dict[str, Any]]:
        """Per grounder the four metrics (percent), ``s/video`` (mean seconds per call), ``peak MB``
        (the largest growth of a call, MiB) and ``failed`` (samples); ``None`` where unknown."""
        rows: dict[str, dict[str, Any]] = {}
        for name, run in self.runs.items():
            cost = run.cost()
            row: dict[str, Any] = {c: run.metrics.get(c) for c in METRIC_COLUMNS}
            row.update({"s/video": cost["seconds_mean"], "peak MB": cost["peak_mb_max"]})
            row["failed"] = len(run.errors)
            rows[name] = row
        return rows

    def to_markdown(self) -> str:
        """The side-by-side table, then the agreement matrix."""
        with_gt = max((int(r.metrics.get("n", 0)) for r in self.runs.values()), default=0)
        how = {"cuda": "CUDA allocated", "rss": "resident set, sampled, approximate"}
        memory = sorted({how.get(m, m) for r in self.runs.values() if r.memory for m in r.memory.split("+")})
        lines = [
            f"{len(self.ids)} samples ({with_gt} with ground truth); protocol {self.protocol}, "
            f"frames {self.frames}; metrics in percent; s/video: mean wall seconds per call; "
            f"peak MB: largest memory growth of a call ({'; '.join(memory) or 'not measured'}).",
            "",
            markdown_table(
                {name: _cells(row) for name, row in self.rows().items()},
                (*METRIC_COLUMNS, *COST_COLUMNS, "failed"),
            ),
            "",
            "Agreement: mean vIoU (percent) of the row's tube scored against the column's tube as "
            "ground truth (TubeDETR protocol; symmetric; samples where either failed left out).",
            "",
        ]
        matrix = {
            a: {b: _fmt(float(self.agreement[i, j]), 2) for j, b in enumerate(self.names)}
            for i, a in enumerate(self.names)
        }
        lines.append(markdown_table(matrix, self.names))
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, Any]:
        """Everything but the tubes (they stay in each run's ``predictions.json``); NaN -> null."""
        return {
            "format": "stvg-comparison-v1",
            "ids": self.ids,
            "frames": self.frames,
            "protocol": self.protocol,
            "grounders": {
                name: {
                    "dir": run.dir.name,
                    "metrics": run.metrics,
                    "cost": run.cost(),
                    "memory": run.memory,
                    "tiou": _json_floats(run.tiou),
                    "viou": _json_floats(run.viou),
                    "seconds": _json_floats(run.seconds),
                    "peak_mb": _json_floats(run.peak_mb),
                    "errors": run.errors,
                }
                for name, run in self.runs.items()
            },
            "agreement": {
                "names": self.names,
                "matrix": [_json_floats(row) for row in self.agreement],
                "per_sample": [[_json_floats(v) for v in row] for row in self.agreement_per_sample],
            },
        }

    def scatter_pairs(self) -> list[tuple[str, str]]:
        """The pairs plotted: every pair up to :data:`MAX_ALL_PAIRS` grounders, else first vs rest."""
        names = self.names
        if len(names) <= MAX_ALL_PAIRS:
            return [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
        return [(names[0], b) for b in names[1:]]

    def save(self, out_dir: Path | str) -> dict[str, Path]:
        """Write ``comparison.md``, ``comparison.json``, ``metric_bars.png`` and the scatter plots.

        Returns:
            ``{"markdown", "json", "bars", "scatter:<a>:<b>" ...: path}``.
        """
        paths = self.file_paths(out_dir)
        paths["markdown"].parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(paths["markdown"], self.to_markdown())
        write_text_atomic(paths["json"], json.dumps(self.to_json(), indent=1) + "\n")
        # Imported here: matplotlib and Pillow load only when a comparison is saved.
        from zsgrounding.viz.plots import plot_metric_bars, plot_viou_scatter

        title = f"{len(self.ids)} samples, protocol {self.protocol}"
        plot_metric_bars(
            paths["bars"], {name: run.metrics for name, run in self.runs.items()}, METRIC_COLUMNS, title
        )
        for a, b in self.scatter_pairs():
            plot_viou_scatter(
                paths[f"scatter:{a}:{b}"], a, self.runs[a].viou, b, self.runs[b].viou, ids=self.ids
            )
        return paths

    def file_paths(self, out_dir: Path | str) -> dict[str, Path]:
        """Where :meth:`save` writes each file (same keys as its return value)."""
        out = Path(out_dir)
        paths = {"markdown": out / MARKDOWN_FILE, "json": out / JSON_FILE, "bars": out / BARS_FILE}
        slugs = {name: run.dir.name for name, run in self.runs.items()}
        for a, b in self.scatter_pairs():
            paths[f"scatter:{a}:{b}"] = out / f"scatter_{slugs[a]}_vs_{slugs[b]}.png"
        return paths


def load_comparison(out_dir: Path | str) -> Comparison:
    """Read a saved comparison back (tubes from each grounder's ``predictions.json``)."""
    out = Path(out_dir)
    data = json.loads((out / JSON_FILE).read_text())
    runs = {}
    for name, entry in data["grounders"].items():
        folder = out / entry["dir"]
        predictions = folder / "predictions.json"
        runs[name] = GrounderRun(
            name=name,
            dir=folder,
            tubes=load_predictions(predictions) if predictions.exists() else {},
            tiou=_array(entry["tiou"]),
            viou=_array(entry["viou"]),
            metrics=entry["metrics"],
            seconds=_array(entry["seconds"]),
            peak_mb=_array(entry["peak_mb"]),
            memory=entry["memory"],
            errors=dict(entry["errors"]),
        )
    agreement = data["agreement"]
    return Comparison(
        ids=list(data["ids"]),
        runs=runs,
        agreement=np.array([_array(row) for row in agreement["matrix"]]).reshape(len(runs), len(runs)),
        agreement_per_sample=np.array(
            [[_array(v) for v in row] for row in agreement["per_sample"]], dtype=np.float64
        ).reshape(len(runs), len(runs), len(data["ids"])),
        frames=data["frames"],
        protocol=data["protocol"],
    )


# ------------------------------------------------------------------------------- helpers


def _nan_stat(fn: Callable[[np.ndarray], Any], values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(fn(finite)) if finite.size else None


def _fmt(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _cells(row: Mapping[str, Any]) -> dict[str, str]:
    # Seconds get three decimals: a baseline's call takes milliseconds.
    digits = {"s/video": 3, "peak MB": 1}
    return {key: _fmt(value, digits.get(key, 2)) for key, value in row.items()}


def number_or_nan(value: Any) -> float:
    """``value`` as a float when it is a number, else NaN (a missing or null cost)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan


def _json_floats(values: np.ndarray) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in np.asarray(values, dtype=np.float64).tolist()]


def _array(values: Sequence[float | None]) -> np.ndarray:
    return np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)
