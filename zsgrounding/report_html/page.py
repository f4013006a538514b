"""The report's HTML: the metrics tables, the sortable sample table, the CSS, the inline script
and the Content-Security-Policy that lets only that script run (by its hash).

Every text read from files (ids, queries, errors, names, settings) is HTML-escaped, so a query
holding ``<script>`` is shown, never executed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from zsgrounding.comparison import METRIC_COLUMNS, Comparison
from zsgrounding.report import STVG_COLUMNS, stvg_rows
from zsgrounding.report_html.load import _EvalRun, _number, _Row, _Side
from zsgrounding.report_html.pictures import _KINDS, _e, _Images

_EAGER_ROWS = 20  # rows whose pictures load at once; later rows load when scrolled to


def _fmt(value: Any, digits: int = 2) -> str:
    number = _number(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{number:.{digits}f}" if math.isfinite(number) else "n/a"


def _sort_key(value: float) -> str:
    return repr(float(value)) if math.isfinite(value) else ""


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


def _eval_page(run_dir: Path, data: _EvalRun, images: _Images) -> str:
    """The page of an eval run folder."""
    columns = [("id", "id", "text"), ("query", "query", "text"), ("tiou", "tIoU", "number")]
    columns += [("viou", "vIoU", "number"), ("status", "status", "text"), ("seconds", "s", "number")]
    header = [*_sample_header(columns), "<th>pictures</th>"]
    body = []
    name = data.name
    for k, row in enumerate(data.rows):
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
    content = _eval_metrics(data.metrics, name)
    return _page_parts(
        f"stvg report: {run_dir.name}", "eval", data.rows, images, content, header, body, data.notes
    )


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
    out: Path, comparison: Comparison, rows: Sequence[_Row], images: _Images, notes: Sequence[str]
) -> str:
    """The page of a compare folder."""
    names = comparison.names
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
    return _page_parts(title, "compare", rows, images, metrics, header, body, notes)
