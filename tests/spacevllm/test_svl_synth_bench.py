"""Smoke test of benchmarks/synth_toy.py: ``--quick`` synthesis with the pixel-based toy detector."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from spacevllm.synth import REASONS, STAGES

ROOT = Path(__file__).resolve().parents[2]
QUICK_VIDEOS = 8  # what --quick runs: "8 videos: a smoke test"


def _run(*args: str) -> tuple[dict, str]:
    """``python benchmarks/synth_toy.py ARGS`` as a user runs it: ``(synth_toy.json, stdout)``."""
    done = subprocess.run(
        [sys.executable, "benchmarks/synth_toy.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    out = Path(args[args.index("--out") + 1])
    return json.loads((out / "synth_toy.json").read_text()), done.stdout


def _unit(value: float | None) -> None:
    assert value is not None and 0.0 <= value <= 1.0, value


def test_quick_run_writes_consistent_counts(tmp_path: Path) -> None:
    result, printed = _run("--quick", "--out", str(tmp_path))
    assert (tmp_path / "synth_toy.md").is_file()
    assert result["videos"] == QUICK_VIDEOS
    assert list(result["runs"]) == ["spans", "whole"]
    kept_somewhere = False
    for run in result["runs"].values():
        report = run["report"]
        assert report["total"] == QUICK_VIDEOS
        assert set(report["removed"]) == set(STAGES)
        assert all(set(report["removed"][s]) == set(REASONS[s]) for s in STAGES)
        removed = sum(sum(reasons.values()) for reasons in report["removed"].values())
        assert report["total"] == report["kept"] + removed
        assert len(report["dropped"]) == removed
        assert run["summary"] in printed
        quality = run["quality"]
        assert quality["records"] == report["kept"] == len(run["records"])
        if report["kept"]:
            kept_somewhere = True
            for key in ("mean_box_iou", "frames_on_target", "mean_tiou", "follow_target"):
                _unit(quality[key])
            for record in run["records"]:
                _unit(record["box_iou"])
                _unit(record["tiou"])
                assert 0 <= record["frames_on_target"] <= record["frames"]
            assert sum(quality["mostly_on"].values()) == report["kept"]
    assert kept_somewhere
    # the whole-video run annotates every frame of every video, the span run only the spans
    spans, whole = (result["runs"][k]["report"]["frames_annotated"] for k in ("spans", "whole"))
    assert 0 < spans < whole

    # a second run reuses the toy videos already written
    videos = tmp_path / "toy" / "videos"
    stamps = {p.name: p.stat().st_mtime_ns for p in videos.iterdir()}
    again, _ = _run("--quick", "--out", str(tmp_path), "--analyzer", "attributes")
    assert {p.name: p.stat().st_mtime_ns for p in videos.iterdir()} == stamps
    assert again["analyzer"] == "attributes"
