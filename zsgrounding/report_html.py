"""One self-contained HTML page for an ``stvg eval`` run folder or an ``stvg compare`` folder.

:func:`write_report` reads what the folder holds (``results.jsonl`` or the rank files,
``metrics.json``, ``run.json``; for a comparison ``comparison.json``, the plots and one run folder
per grounder) and writes ``report.html``:

* the metrics table (a comparison: the grounders side by side, the agreement matrix and the
  plots);
* one row per sample (id, query, tIoU, vIoU, status, seconds), sortable by clicking a column
  header or by a URL fragment ``#sort=<column>:<asc|desc>``; a failed sample shows its error
  line, a sample of ``run.json`` with no result line shows as missing;
* per sample its pictures: the GIF with the predicted (and GT) tube drawn over the video, the
  attention sheet and the temporal plot; for a comparison every grounder's GIF side by side.

Pictures the folder does not have yet are drawn with :func:`zsgrounding.viz.render_result` into
``<run>/report/`` (a comparison: ``<compare>/<grounder>/report/``, where a report of that run
folder alone finds them again); files already there, or ``stvg ground`` pictures in the run
folder itself, are reused. Drawing needs the samples (video and ground truth), which the CLI
loads from ``--dataset/--gt``. Evidence maps are not kept in ``results.jsonl``, so an attention
sheet appears only where one already exists.

Images are referenced by relative paths inside the run folder by default: a GIF of a real video
weighs megabytes, so a page of a thousand samples stays small and opens fast, and the folder can
be moved or archived whole. ``embed=True`` inlines every picture as a ``data:`` URI instead: one
file that can be sent alone. Either way the page needs no server (it opens from ``file://``).

Every text read from files (ids, queries, errors, names, settings) is HTML-escaped, and a
Content-Security-Policy lets only the page's own script run (by its hash), so a query holding
``<script>`` is shown, never executed.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from tqdm import tqdm

from zsgrounding.atomic import write_text_atomic
from zsgrounding.comparison import JSON_FILE as COMPARISON_JSON
from zsgrounding.comparison import METRIC_COLUMNS, Comparison, load_comparison
from zsgrounding.errors import STVGError
from zsgrounding.metrics import FrameSet, evaluate
from zsgrounding.metrics import Protocol as EvalProtocol
from zsgrounding.predictions import tube_from_json
from zsgrounding.report import STVG_COLUMNS, stvg_rows
from zsgrounding.runfolder import RUN_FILE
from zsgrounding.runner import METRICS_JSON, is_error, load_results
from zsgrounding.types import GroundingResult, Sample, Tube

__all__ = ["PICTURES_DIR", "REPORT_FILE", "ReportSummary", "write_report"]

REPORT_FILE = "report.html"
PICTURES_DIR = "report"
_KINDS = {"video": "_grounded.gif", "attention": "_attention.png", "temporal": "_temporal.png"}
_MIME = {".gif": "image/gif", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
_EAGER_ROWS = 20  # rows whose pictures load at once; later rows load when scrolled to


@dataclass
class ReportSummary:
    """What :func:`write_report` wrote.

    Attributes:
        path: the HTML file.
        kind: ``"eval"`` or ``"compare"``.
        samples: rows of the sample table.
        failed: samples with an error line (a comparison: of any grounder).
        missing: samples with no result line (a comparison: of any grounder).
        rendered: pictures drawn by this call.
        reused: pictures found already drawn.
        embedded: whether the images are ``data:`` URIs (else relative paths).
        notes: why some pictures could not be drawn, one line each.
    """

    path: Path
    kind: str
    samples: int
    failed: int
    missing: int
    rendered: int = 0
    reused: int = 0
    embedded: bool = False
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------- the data


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


@dataclass
class _Pictures:
    """Finds, draws and counts the pictures of the result lines."""

    render: bool
    force: bool
    progress: bool
    rendered: int = 0
    reused: int = 0
    notes: list[str] = field(default_factory=list)

    def fill(
        self,
        run_dir: Path,
        sides: Mapping[str, _Side],
        records: Mapping[str, dict],
        samples: Mapping[str, Sample],
    ) -> None:
        """Set ``side.pictures`` of every successful sample of one run folder."""
        todo = [i for i, side in sides.items() if side.status == "ok"]
        for sample_id in tqdm(
            todo, desc=f"pictures {run_dir.name}", unit="sample", disable=not self.progress
        ):
            side = sides[sample_id]
            found = {} if self.force else _existing_pictures(run_dir, sample_id)
            if "video" in found and "temporal" in found:
                self.reused += len(found)
                side.pictures = found
                continue
            sample = samples.get(sample_id)
            if not self.render or sample is None:
                side.pictures = found
                self.reused += len(found)
                if sample is None and self.render:
                    side.note = "not drawn: the sample's video is unknown (pass --dataset/--gt)"
                continue
            try:
                drawn = _draw(run_dir / PICTURES_DIR, sample_id, records[sample_id], sample)
            except Exception as err:  # a bad video costs its pictures, not the report
                side.pictures = found
                side.note = f"not drawn: {type(err).__name__}: {' '.join(str(err).split())}"
                self.notes.append(f"{run_dir.name}/{sample_id}: {side.note}")
                continue
            self.rendered += len(drawn)
            self.reused += len(found.keys() - drawn.keys())
            side.pictures = {**found, **drawn}


def _file_stem(sample_id: str) -> str:
    """A file name stem for a sample id (``toy_00001.mp4`` -> ``toy_00001.mp4``, ``a/b c`` -> ``a_b_c``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", sample_id).strip("._") or "sample"


def _existing_pictures(run_dir: Path, sample_id: str) -> dict[str, Path]:
    """Pictures already drawn for ``sample_id``: in ``run/report/`` first, then as `stvg ground` names them."""
    stems = dict.fromkeys([_file_stem(sample_id), _file_stem(Path(sample_id).stem)])
    found: dict[str, Path] = {}
    for folder in (run_dir / PICTURES_DIR, run_dir):
        for stem in stems:
            for kind, suffix in _KINDS.items():
                path = folder / f"{stem}{suffix}"
                if kind not in found and path.is_file():
                    found[kind] = path
    return found


def _array(value: Any) -> np.ndarray | None:
    return None if value is None else np.asarray(value)


def _draw(out: Path, sample_id: str, record: Mapping[str, Any], sample: Sample) -> dict[str, Path]:
    """Draw the GIF and temporal plot of one result line with :func:`render_result`."""
    from zsgrounding.viz import render_result  # matplotlib and Pillow load only when drawing

    if not Path(sample.video).is_file():
        raise FileNotFoundError(f"video {sample.video} not found")
    result = GroundingResult(
        tube=tube_from_json(sample_id, record["tube"]),
        track_scores=_array(record.get("track_scores")),
        chosen_track=record.get("chosen_track"),
        frame_scores=_array(record.get("frame_scores")),
        sampled_frame_ids=_array(record.get("sampled_frame_ids")),
        extras=dict(record.get("extras") or {}),
    )
    gt = sample.gt.tube if sample.gt is not None else None
    return render_result(out, sample.video, result, sample.sentence, gt=gt, name=_file_stem(sample_id))


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


# ------------------------------------------------------------------------------- HTML pieces


def _e(value: Any) -> str:
    """Text from files, escaped for element content and quoted attributes."""
    return html.escape(str(value), quote=True)


def _fmt(value: Any, digits: int = 2) -> str:
    number = _number(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{number:.{digits}f}" if math.isfinite(number) else "n/a"


def _sort_key(value: float) -> str:
    return repr(float(value)) if math.isfinite(value) else ""


class _Images:
    """``src`` values of pictures: data URIs, or URL-quoted paths relative to the page."""

    def __init__(self, page: Path, embed: bool) -> None:
        self.base = page.parent
        self.embed = embed

    def src(self, path: Path) -> str:
        if self.embed:
            mime = _MIME.get(path.suffix.lower(), "application/octet-stream")
            return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"
        relative = os.path.relpath(path.resolve(), self.base.resolve())
        return "/".join(quote(part) for part in Path(relative).parts)

    def img(self, path: Path, alt: str, css: str, eager: bool = True) -> str:
        lazy = "" if eager else ' loading="lazy"'
        return f'<img class="{css}" src="{_e(self.src(path))}" alt="{_e(alt)}"{lazy}>'


def _table(header: Sequence[str], rows: Iterable[str], table_id: str, caption: str = "") -> str:
    head = "".join(header)
    cap = f"<caption>{caption}</caption>" if caption else ""
    return f'<table id="{table_id}">{cap}<thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _metric_cell(column: str, value: Any, digits: int = 2) -> str:
    raw = json.dumps(value) if value is not None else "null"
    return f'<td data-metric="{_e(column)}" data-value="{_e(raw)}">{_fmt(value, digits)}</td>'


def _eval_metrics(metrics: Mapping[str, Any] | None, name: str) -> str:
    if metrics is None:
        return (
            '<p class="note" id="no-metrics">No metrics.json: the run has not been merged yet '
            "(killed or sharded), or its samples have no ground truth.</p>"
        )
    report = {k: v for k, v in metrics.items() if k != "settings"}
    columns = [*STVG_COLUMNS, "missing"]
    header = ["<th></th>", *(f"<th>{_e(c)}</th>" for c in columns)]
    rows = []
    for label, row in stvg_rows(report, name).items():
        values = report if label == name else row  # the overall row has the missing count too
        cells = "".join(_metric_cell(c, values.get(c)) for c in columns)
        rows.append(f'<tr data-row="{_e(label)}"><th scope="row">{_e(label)}</th>{cells}</tr>')
    table = _table(header, rows, "metrics", "metrics in percent (from metrics.json)")
    settings = metrics.get("settings")
    if isinstance(settings, Mapping):
        table += (
            "<details><summary>settings</summary><pre>"
            f"{_e(json.dumps(settings, indent=1, default=str))}</pre></details>"
        )
    return table


def _compare_metrics(comparison: Comparison, images: _Images, out: Path) -> str:
    columns = (*METRIC_COLUMNS, "n", "s/video", "peak MB", "failed")
    digits = {"s/video": 3, "peak MB": 1}
    header = ["<th></th>", *(f"<th>{_e(c)}</th>" for c in columns)]
    rows = []
    for name, row in comparison.rows().items():
        values = {**row, "n": comparison.runs[name].metrics.get("n")}
        cells = "".join(_metric_cell(c, values.get(c), digits.get(c, 2)) for c in columns)
        rows.append(f'<tr data-row="{_e(name)}"><th scope="row">{_e(name)}</th>{cells}</tr>')
    parts = [
        _table(
            header,
            rows,
            "metrics",
            "metrics in percent; s/video: mean wall seconds per call; "
            "peak MB: largest memory growth of a call",
        ),
        "<h2>Agreement</h2><p>Mean vIoU (percent) of the row's tube scored against the column's "
        "tube as ground truth (TubeDETR protocol; samples where either failed left out).</p>",
    ]
    names = comparison.names
    agree_rows = []
    for i, a in enumerate(names):
        cells = "".join(
            _metric_cell(
                b, float(comparison.agreement[i, j]) if math.isfinite(comparison.agreement[i, j]) else None
            )
            for j, b in enumerate(names)
        )
        agree_rows.append(f'<tr data-row="{_e(a)}"><th scope="row">{_e(a)}</th>{cells}</tr>')
    parts.append(_table(["<th></th>", *(f"<th>{_e(n)}</th>" for n in names)], agree_rows, "agreement"))
    plots = [
        p
        for key, p in comparison.file_paths(out).items()
        if key.startswith(("bars", "scatter")) and p.is_file()
    ]
    if plots:
        parts.append('<h2>Plots</h2><div class="plots">')
        parts += [images.img(p, p.name, "plot") for p in plots]
        parts.append("</div>")
    return "".join(parts)


def _status_cell(side: _Side, suffix: str = "") -> str:
    body = _e(side.status)
    if side.error:
        body += f'<div class="error">{_e(side.error)}</div>'
    return f'<td class="status {side.status}" data-col="status{suffix}" data-sort="{side.status}">{body}</td>'


def _score_cells(side: _Side, suffix: str = "") -> str:
    return "".join(
        f'<td class="num" data-col="{key}{suffix}" data-sort="{_sort_key(value)}">{_fmt(value)}</td>'
        for key, value in (("tiou", side.tiou), ("viou", side.viou))
    )


def _figure(
    side: _Side, images: _Images, label: str, eager: bool, kinds: Sequence[str] = tuple(_KINDS)
) -> str:
    shots = [
        images.img(side.pictures[kind], f"{label}: {kind}", f"thumb {kind}", eager)
        for kind in kinds
        if kind in side.pictures
    ]
    if side.note and "video" in kinds:
        shots.append(f'<div class="note">{_e(side.note)}</div>')
    if not shots:
        shots.append('<div class="note">no pictures</div>')
    return f"<figure><figcaption>{_e(label)}</figcaption>{''.join(shots)}</figure>"


_SCRIPT = """
(function () {
  var table = document.getElementById('samples');
  function value(row, col) {
    var cell = row.querySelector('td[data-col="' + col + '"]');
    return cell ? cell.getAttribute('data-sort') : '';
  }
  function sortBy(col, dir) {
    var th = table.querySelector('th[data-col="' + col + '"]');
    if (!th) { return; }
    var numeric = th.getAttribute('data-type') === 'number';
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = value(a, col), y = value(b, col);
      if (x === '' || y === '') { return (x === '') - (y === ''); }
      var c = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
      return dir === 'desc' ? -c : c;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (cell) {
      cell.removeAttribute('aria-sort');
    });
    th.setAttribute('aria-sort', dir === 'desc' ? 'descending' : 'ascending');
    table.setAttribute('data-sorted', col + ':' + dir);
  }
  Array.prototype.forEach.call(table.querySelectorAll('th[data-col]'), function (th) {
    th.addEventListener('click', function () {
      var col = th.getAttribute('data-col');
      var dir = table.getAttribute('data-sorted') === col + ':asc' ? 'desc' : 'asc';
      sortBy(col, dir);
      try { history.replaceState(null, '', '#sort=' + col + ':' + dir); } catch (e) { /* file:// */ }
    });
  });
  var wanted = /sort=([A-Za-z0-9_-]+)(?::(asc|desc))?/.exec(location.hash);
  if (wanted) { sortBy(wanted[1], wanted[2] || 'asc'); }
  Array.prototype.forEach.call(document.querySelectorAll('img.thumb'), function (img) {
    img.addEventListener('click', function () { img.classList.toggle('big'); });
  });
  function checkImages() {
    var images = document.images, ok = 0, broken = 0;
    for (var i = 0; i < images.length; i++) {
      var img = images[i];
      if (img.complete && img.naturalWidth > 0) { ok++; }
      else if (img.complete) { broken++; img.classList.add('broken'); }
      img.setAttribute('data-natural-width', String(img.naturalWidth));
    }
    document.body.setAttribute('data-images', ok + '/' + images.length);
    var warn = document.getElementById('image-warning');
    if (broken) {
      warn.textContent = broken + ' of ' + images.length + ' pictures did not load: was a file ' +
        'of the run folder moved or deleted?';
      warn.hidden = false;
    }
  }
  if (document.readyState === 'complete') { checkImages(); }
  else { window.addEventListener('load', checkImages); }
})();
"""

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; vertical-align: top; }
caption { text-align: left; color: #555; padding-bottom: 0.3em; }
td.num, td[data-metric] { text-align: right; font-variant-numeric: tabular-nums; }
#samples th[data-col] { cursor: pointer; background: #f3f3f3; user-select: none; }
#samples th[aria-sort=ascending]::after { content: " \\25B2"; }
#samples th[aria-sort=descending]::after { content: " \\25BC"; }
td.status.failed { background: #fde8e8; } td.status.missing { background: #fff4d6; }
.error { font: 12px monospace; color: #a00; max-width: 28em; white-space: pre-wrap; }
.note { color: #666; font-size: 12px; max-width: 28em; }
.pics { display: flex; gap: 0.5em; align-items: flex-start; }
figure { display: inline-block; margin: 0 0.5em 0.5em 0; vertical-align: top; }
figcaption { font-weight: 600; }
img.thumb { max-height: 180px; display: inline-block; vertical-align: top; margin: 0.2em 0.3em 0 0;
  cursor: zoom-in; }
img.thumb.temporal { max-height: 120px; }
td.query { min-width: 12em; }
img.thumb.big { max-height: none; cursor: zoom-out; }
img.plot { max-width: 48%; margin-right: 1%; }
img.broken { outline: 2px solid #c00; min-width: 40px; min-height: 20px; }
#image-warning { background: #fde8e8; padding: 0.5em; }
"""


def _page(title: str, summary: str, metrics: str, samples_table: str, notes: Sequence[str]) -> str:
    digest = base64.b64encode(hashlib.sha256(_SCRIPT.encode("utf-8")).digest()).decode("ascii")
    csp = (
        f"default-src 'none'; img-src data: file: 'self'; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'"
    )
    note_list = "".join(f"<li>{_e(n)}</li>" for n in notes)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{_e(title)}</h1>{summary}"
        '<p id="image-warning" hidden></p>'
        f"<h2>Metrics</h2>{metrics}"
        f"<h2>Samples</h2><p>Click a column header to sort (or open the page with "
        f"<code>#sort=viou:desc</code>); click a picture to enlarge it.</p>{samples_table}"
        + (f'<h2>Notes</h2><ul id="notes">{note_list}</ul>' if notes else "")
        + f"<script>{_SCRIPT}</script></body></html>\n"
    )


def _summary_line(kind: str, rows: Sequence[_Row], images: _Images, extra: str = "") -> str:
    count = {s: sum(any(side.status == s for side in r.sides) for r in rows) for s in ("failed", "missing")}
    where = (
        "embedded as data URIs (this file stands alone)"
        if images.embed
        else "linked by relative paths inside the run folder (keep the page in the folder)"
    )
    return (
        f'<p id="summary" data-kind="{kind}" data-samples="{len(rows)}" data-failed="{count["failed"]}" '
        f'data-missing="{count["missing"]}">{len(rows)} samples, {count["failed"]} failed, '
        f"{count['missing']} without a result line. {extra}Pictures are {where}.</p>"
    )


def _sample_header(columns: Sequence[tuple[str, str, str]]) -> list[str]:
    return [f'<th data-col="{col}" data-type="{kind}">{_e(label)}</th>' for col, label, kind in columns]


# ------------------------------------------------------------------------------- eval / compare


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


def _eval_page(
    run_dir: Path,
    samples: Sequence[Sample],
    images: _Images,
    pictures: _Pictures,
    frames: FrameSet,
    protocol: EvalProtocol,
) -> tuple[str, list[_Row]]:
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
    columns = [("id", "id", "text"), ("query", "query", "text"), ("tiou", "tIoU", "number")]
    columns += [("viou", "vIoU", "number"), ("status", "status", "text"), ("seconds", "s", "number")]
    header = [*_sample_header(columns), "<th>pictures</th>"]
    body = []
    for k, row in enumerate(rows):
        side = row.sides[0]
        body.append(
            f'<tr class="sample" data-id="{_e(row.id)}" data-status="{side.status}">'
            f'<td data-col="id" data-sort="{_e(row.id)}">{_e(row.id)}</td>'
            f'<td class="query" data-col="query" data-sort="{_e(row.query)}">{_e(row.query)}</td>'
            f"{_score_cells(side)}{_status_cell(side)}"
            f'<td class="num" data-col="seconds" data-sort="{_sort_key(side.seconds)}">{_fmt(side.seconds, 3)}</td>'
            f'<td class="pictures">{_figure(side, images, name, k < _EAGER_ROWS) if side.status == "ok" else ""}</td>'
            "</tr>"
        )
    content = _eval_metrics(metrics, name)
    notes += pictures.notes
    return _page_parts(
        f"stvg report: {run_dir.name}", "eval", rows, images, content, header, body, notes
    ), rows


def _page_parts(
    title: str,
    kind: str,
    rows: Sequence[_Row],
    images: _Images,
    metrics: str,
    header: Sequence[str],
    body: Sequence[str],
    notes: Sequence[str],
) -> str:
    table = _table(header, body, "samples")
    extra = "Attention sheets appear only where one was drawn before (results.jsonl keeps no evidence maps). "
    return _page(title, _summary_line(kind, rows, images, extra), metrics, table, notes)


def _compare_page(
    out: Path, samples: Sequence[Sample], images: _Images, pictures: _Pictures
) -> tuple[str, list[_Row]]:
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
    names = comparison.names
    rows = [
        _Row(i, _query(i, by_id, all_records), [sides[i] for sides in sides_by_run]) for i in comparison.ids
    ]
    columns = [("id", "id", "text"), ("query", "query", "text")]
    for g, name in enumerate(names):
        columns += [(f"tiou-{g}", f"tIoU {name}", "number"), (f"viou-{g}", f"vIoU {name}", "number")]
        columns += [(f"status-{g}", f"status {name}", "text")]
    header = [*_sample_header(columns), "<th>tubes side by side</th>"]
    body = []
    for k, row in enumerate(rows):
        worst = next((s for s in ("failed", "missing") if any(side.status == s for side in row.sides)), "ok")
        cells = "".join(
            _score_cells(side, f"-{g}") + _status_cell(side, f"-{g}") for g, side in enumerate(row.sides)
        )
        figures = "".join(  # the GIFs side by side, then the temporal plots side by side
            '<div class="pics">'
            + "".join(
                _figure(side, images, name, k < _EAGER_ROWS, kinds)
                for name, side in zip(names, row.sides, strict=True)
                if side.status == "ok"
            )
            + "</div>"
            for kinds in (("video", "attention"), ("temporal",))
        )
        body.append(
            f'<tr class="sample" data-id="{_e(row.id)}" data-status="{worst}">'
            f'<td data-col="id" data-sort="{_e(row.id)}">{_e(row.id)}</td>'
            f'<td class="query" data-col="query" data-sort="{_e(row.query)}">{_e(row.query)}</td>'
            f'{cells}<td class="pictures">{figures}</td></tr>'
        )
    metrics = _compare_metrics(comparison, images, out)
    title = f"stvg report: comparison {out.name}"
    return _page_parts(title, "compare", rows, images, metrics, header, body, pictures.notes), rows


def write_report(
    run_dir: Path | str,
    samples: Iterable[Sample] | None = None,
    *,
    out: Path | str | None = None,
    embed: bool = False,
    render: bool = True,
    force_render: bool = False,
    frames: FrameSet = "tubedetr",
    protocol: EvalProtocol = "tubedetr",
    progress: bool = False,
) -> ReportSummary:
    """Write the HTML report of an eval run folder or a compare folder.

    Args:
        run_dir: a folder written by ``stvg eval`` / :func:`run_dataset` (``results.jsonl`` or
            rank files) or by ``stvg compare`` / :func:`compare_paradigms` (``comparison.json``).
        samples: the run's samples (queries, videos, ground truth); without them the queries
            come from the result lines where a grounder recorded them, tIoU / vIoU per sample of
            an eval run are not shown, and no picture is drawn (existing ones are reused).
        out: the HTML file; default ``run_dir/report.html``.
        embed: inline the pictures as ``data:`` URIs instead of relative paths.
        render: draw the pictures that do not exist yet (into ``<run>/report/``).
        force_render: draw every picture again, even those that exist.
        frames, protocol: how an eval run's per-sample tIoU / vIoU are scored (as ``stvg eval``
            scored them: the defaults).
        progress: a progress bar while drawing.

    Raises:
        STVGError: the folder is neither an eval run nor a comparison, or a file is unreadable.
    """
    folder = Path(run_dir)
    page = Path(out) if out is not None else folder / REPORT_FILE
    samples = list(samples or [])
    images = _Images(page, embed)
    pictures = _Pictures(render=render, force=force_render, progress=progress)
    if (folder / COMPARISON_JSON).is_file():
        kind = "compare"
        text, rows = _compare_page(folder, samples, images, pictures)
    elif any(folder.glob("results*.jsonl")):
        kind = "eval"
        text, rows = _eval_page(folder, samples, images, pictures, frames, protocol)
    else:
        raise STVGError(
            f"{folder} is neither an eval run folder (results.jsonl) nor a compare folder ({COMPARISON_JSON})"
        )
    page.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(page, text)
    return ReportSummary(
        path=page,
        kind=kind,
        samples=len(rows),
        failed=sum(any(s.status == "failed" for s in r.sides) for r in rows),
        missing=sum(any(s.status == "missing" for s in r.sides) for r in rows),
        rendered=pictures.rendered,
        reused=pictures.reused,
        embedded=embed,
        notes=pictures.notes,
    )
