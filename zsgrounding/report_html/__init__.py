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

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from zsgrounding.atomic import write_text_atomic
from zsgrounding.comparison import JSON_FILE as COMPARISON_JSON
from zsgrounding.errors import STVGError
from zsgrounding.metrics import FrameSet
from zsgrounding.metrics import Protocol as EvalProtocol
from zsgrounding.report_html.load import _load_compare, _load_eval
from zsgrounding.report_html.page import _compare_page, _eval_page
from zsgrounding.report_html.pictures import PICTURES_DIR, _Images, _Pictures
from zsgrounding.types import Sample

__all__ = ["PICTURES_DIR", "REPORT_FILE", "ReportSummary", "report_run", "write_report"]

REPORT_FILE = "report.html"


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
        comparison, rows = _load_compare(folder, samples, pictures)
        text = _compare_page(folder, comparison, rows, images, pictures.notes)
    elif any(folder.glob("results*.jsonl")):
        kind = "eval"
        data = _load_eval(folder, samples, pictures, frames, protocol)
        rows = data.rows
        text = _eval_page(folder, data, images)
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


def report_run(
    run_dir: Path | str,
    dataset: str | None = None,
    gt_path: Path | None = None,
    *,
    videos: Path | None = None,
    vidor_dir: Path | None = None,
    out: Path | str | None = None,
    embed: bool = False,
    render: bool = True,
    force_render: bool = False,
    frames: FrameSet = "tubedetr",
    protocol: EvalProtocol = "tubedetr",
    progress: bool = False,
) -> ReportSummary:
    """``stvg report``: load the run's samples from ``dataset``/``gt_path`` (when given), then
    :func:`write_report`.

    ``videos`` is the video folder (toy: the dataset's own ``videos/`` by default), ``vidor_dir``
    the VidOR annotation folder of raw VidSTG files; the other arguments are :func:`write_report`'s.
    """
    samples: list[Sample] = []
    if dataset is not None and gt_path is not None:
        from zsgrounding.datasets import load_dataset

        kw: dict[str, object] = {}
        if videos is not None:
            kw["video_root"] = videos
        if dataset == "vidstg":
            kw["vidor_dir"] = vidor_dir
        samples = load_dataset(dataset, gt_path, **kw)
    return write_report(
        run_dir,
        samples,
        out=out,
        embed=embed,
        render=render,
        force_render=force_render,
        frames=frames,
        protocol=protocol,
        progress=progress,
    )
