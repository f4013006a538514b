"""`stvg report`: the HTML page of an eval run and of a comparison, parsed and rendered in Chromium."""

from __future__ import annotations

import base64
import json
import math
import re
import shutil
import subprocess
import warnings
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest

from cli import main
from zsgrounding.toy.world import ToyWorldConfig, make_dataset

SCRIPT_QUERY = " <script>alert(1)</script>"


def _stvg(argv: list[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
    assert exit_info.value.code == 0, argv


@pytest.fixture(scope="module", autouse=True)
def _no_endpoint():
    # No LLM endpoint here (the zero-shot eval decomposes with offline rules).
    with pytest.MonkeyPatch.context() as mp:
        for name in ("STVG_LLM_BASE_URL", "STVG_LLM_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
            mp.delenv(name, raising=False)
        yield


@pytest.fixture(scope="module")
def eval_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A toy eval run of 3 clips: one ok, one ok with a `<script>` query, one failed (bad video)."""
    root = tmp_path_factory.mktemp("report_eval")
    toy = root / "toy"
    make_dataset(toy, 3, ToyWorldConfig(seed=4), progress=False)
    annotations = toy / "annotations.json"
    data = json.loads(annotations.read_text())
    data["toy_00002.mp4"]["caption"] += SCRIPT_QUERY
    annotations.write_text(json.dumps(data))
    (toy / "videos" / "toy_00003.mp4").write_bytes(b"not a video")
    run = root / "run"
    _stvg(["eval", "--dataset", "toy", "--gt", str(toy), "--out", str(run), "--quiet"])
    _stvg(["report", str(run), "--dataset", "toy", "--gt", str(toy), "--quiet"])
    return toy, run


@pytest.fixture(scope="module")
def compare_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report_compare")
    toy = root / "toy"
    make_dataset(toy, 2, ToyWorldConfig(seed=4), progress=False)
    out = root / "cmp"
    grounders = ["--grounder", "colour", "--grounder", "oracle-track"]
    _stvg(["compare", "--dataset", "toy", "--gt", str(toy), *grounders, "--out", str(out), "--quiet"])
    _stvg(["report", str(out), "--dataset", "toy", "--gt", str(toy), "--quiet"])
    return out


class Page(HTMLParser):
    """The parts of a report page the tests check."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[dict[str, str]] = []  # attributes of <tr class="sample">
        self.metrics: dict[tuple[str, str], str] = {}  # (table id, row, metric) -> data-value
        self.images: list[str] = []
        self.scripts: list[str] = []
        self.status_text: dict[str, str] = {}
        self._table: str | None = None
        self._row: str | None = None
        self._sample: str | None = None
        self._in_status = False
        self._in_script = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "table":
            self._table = a.get("id")
        elif tag == "tr":
            self._row = a.get("data-row")
            if a.get("class") == "sample":
                self.rows.append(a)
                self._sample = a["data-id"]
                self.status_text[self._sample] = ""
        elif tag == "td" and "data-metric" in a and self._row is not None:
            self.metrics[(self._table or "", self._row, a["data-metric"])] = a["data-value"]
        elif tag == "td" and "status" in a.get("class", "").split():
            self._in_status = True
        elif tag == "img":
            self.images.append(a["src"])
        elif tag == "script":
            self._in_script = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._in_status = False
        elif tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_status and self._sample is not None:
            self.status_text[self._sample] += data
        if self._in_script:
            self.scripts.append(data)


def _check_images(page: Page, base: Path) -> None:
    assert page.images
    for src in page.images:
        if src.startswith("data:"):
            assert base64.b64decode(src.split(",", 1)[1])
        else:
            assert not re.match(r"^[a-z]+:", src), src  # relative, no scheme
            assert (base / unquote(src)).resolve().is_file(), src


def _same(stored: object, shown: str) -> bool:
    value = json.loads(shown)
    if isinstance(stored, float) or isinstance(value, float):
        return value is not None and math.isclose(float(stored), float(value), rel_tol=0, abs_tol=1e-9)
    return stored == value


def test_eval_report_rows_metrics_status_images_escaping(eval_run: tuple[Path, Path]) -> None:
    _, run = eval_run
    text = (run / "report.html").read_text(encoding="utf-8")
    page = Page(text)
    assert [r["data-id"] for r in page.rows] == ["toy_00001.mp4", "toy_00002.mp4", "toy_00003.mp4"]
    assert [r["data-status"] for r in page.rows] == ["ok", "ok", "failed"]
    error = next(
        json.loads(line) for line in (run / "results.jsonl").read_text().splitlines() if "error" in line
    )
    assert error["error"] in page.status_text["toy_00003.mp4"]  # the error line is shown
    metrics = json.loads((run / "metrics.json").read_text())
    for column in ("m_tIoU", "m_vIoU", "vIoU@0.3", "vIoU@0.5", "n", "missing"):
        assert _same(metrics[column], page.metrics[("metrics", "zero-shot", column)]), column
    _check_images(page, run)
    assert sum(src.endswith("_grounded.gif") for src in page.images) == 2  # the two ok samples
    assert (run / "report" / "toy_00001.mp4_grounded.gif").is_file()
    # Escaped: the query shows as text, never as a script element of its own.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<script>alert(1)" not in text
    assert not any("alert(1)" in s for s in page.scripts)
    assert text.count("<script>") == 1


def test_report_marks_missing_and_reuses_pictures(eval_run: tuple[Path, Path], tmp_path: Path) -> None:
    """An interrupted run: run.json lists a sample that has no result line, and no metrics yet."""
    _, run = eval_run
    copy = tmp_path / "killed"
    shutil.copytree(run, copy)
    for path in copy.glob("results*.jsonl"):
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(line for line in lines if '"toy_00002.mp4"' not in line))
    (copy / "metrics.json").unlink()
    _stvg(["report", str(copy), "--no-render", "--embed", "--quiet", "--out", str(tmp_path / "alone.html")])
    text = (tmp_path / "alone.html").read_text(encoding="utf-8")
    page = Page(text)
    assert {r["data-id"]: r["data-status"] for r in page.rows} == {
        "toy_00001.mp4": "ok",
        "toy_00002.mp4": "missing",
        "toy_00003.mp4": "failed",
    }
    assert 'id="no-metrics"' in text
    assert page.images and all(src.startswith("data:image/") for src in page.images)  # reused, embedded
    _check_images(page, tmp_path)


def test_compare_report_side_by_side(compare_run: Path) -> None:
    page = Page((compare_run / "report.html").read_text(encoding="utf-8"))
    comparison = json.loads((compare_run / "comparison.json").read_text())
    assert [r["data-id"] for r in page.rows] == comparison["ids"]
    assert all(r["data-status"] == "ok" for r in page.rows)
    for name, entry in comparison["grounders"].items():
        stored = json.loads((compare_run / entry["dir"] / "metrics.json").read_text())
        for column in ("m_tIoU", "m_vIoU", "vIoU@0.3", "vIoU@0.5", "n"):
            assert _same(stored[column], page.metrics[("metrics", name, column)]), (name, column)
    names = comparison["agreement"]["names"]
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            assert _same(comparison["agreement"]["matrix"][i][j], page.metrics[("agreement", a, b)])
    _check_images(page, compare_run)
    gifs = [src for src in page.images if src.endswith("_grounded.gif")]
    assert len(gifs) == 2 * len(names)  # every grounder's tube, per sample
    assert any(src.endswith("metric_bars.png") for src in page.images)
    assert any("scatter_" in src for src in page.images)


# ------------------------------------------------------------------------------- browser


def _chromium() -> str | None:
    for name in ("chromium", "chromium-headless-shell", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _browse(binary: str, url: str, *args: str) -> str:
    command = [
        binary,
        "--headless",
        "--no-sandbox",  # root in a container
        "--disable-gpu",
        "--virtual-time-budget=5000",  # run the page's load handlers before dumping
        "--window-size=1400,2000",
        *args,
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


@pytest.mark.skipif(_chromium() is None, reason="no Chromium binary (apt-get install chromium)")
def test_page_in_headless_chromium(eval_run: tuple[Path, Path], compare_run: Path, tmp_path: Path) -> None:
    binary = _chromium()
    assert binary is not None
    _, run = eval_run
    url = (run / "report.html").resolve().as_uri()
    dom = _browse(binary, url + "#sort=tiou:desc", "--dump-dom")
    page = Page(dom)
    assert len(page.rows) == 3  # rows still there after the script ran
    assert 'data-sorted="tiou:desc"' in dom  # the fragment sorted the table
    shown = [float(m) for m in re.findall(r'data-col="tiou" data-sort="([0-9.e-]+)"', dom)]
    assert shown == sorted(shown, reverse=True) and len(shown) == 3
    loaded = re.search(r'data-images="(\d+)/(\d+)"', dom)
    assert loaded and loaded.group(1) == loaded.group(2) and int(loaded.group(2)) >= 4, loaded
    widths = [int(w) for w in re.findall(r'data-natural-width="(\d+)"', dom)]
    assert widths and all(w > 0 for w in widths)
    assert "alert(1)" in dom and "<script>alert" not in dom  # shown as text
    shot = tmp_path / "eval_report.png"
    _browse(binary, url, f"--screenshot={shot}")
    assert shot.stat().st_size > 10_000

    dom = _browse(
        binary, (compare_run / "report.html").resolve().as_uri() + "#sort=viou-1:desc", "--dump-dom"
    )
    assert 'data-sorted="viou-1:desc"' in dom and len(Page(dom).rows) == 2
    loaded = re.search(r'data-images="(\d+)/(\d+)"', dom)
    assert loaded and loaded.group(1) == loaded.group(2), loaded
    _browse(
        binary, (compare_run / "report.html").resolve().as_uri(), f"--screenshot={tmp_path / 'compare.png'}"
    )
