"""Smoke test of benchmarks/toy_zero_shot.py: ``--quick --tune`` on a tiny random LLaVA-OneVision.

Random weights ground nothing; this checks that one command produces every table, that the
numbers are percentages, and that the chance level is what the toy world's object counts say.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny_models import save_tiny_llava

from zsgrounding.toy.world import load_sidecar

ROOT = Path(__file__).resolve().parents[1]
ROWS = (
    "mean of special tokens",
    "+ GTI",
    "+ spatial prompt",
    "+ temporal prompt",
    "+ both prompts",
    "+ TAS (full method)",
    "random track",
    "oracle track",
)


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    model = save_tiny_llava(tmp_path_factory.mktemp("llava"))
    out = tmp_path_factory.mktemp("toy_zs")
    # Run as a user runs it; the script writes what its run returns to toy_zero_shot.json.
    argv = [
        "--quick",
        "--tune",
        "--detector-tracks",
        "--model",
        str(model),
        "--out",
        str(out),
        "--no-progress",
    ]
    done = subprocess.run(
        [sys.executable, "benchmarks/toy_zero_shot.py", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads((out / "toy_zero_shot.json").read_text())
    return out, result, (out / "toy_zero_shot.md").read_text()


def _percent(value: float) -> None:
    assert 0.0 <= value <= 100.0, value


def test_outputs_and_every_row(bench_run: tuple[Path, dict, str]) -> None:
    _, result, markdown = bench_run
    assert list(result["rows"]) == list(ROWS)
    for name, row in result["rows"].items():
        assert f"| {name} " in markdown
        assert row["n"] == 8 and row["failed"] == 0
        for value in (*row["metrics"].values(), row["track_acc"], row["chance"]):
            _percent(value)
    assert result["rows"]["oracle track"]["track_acc"] == 100.0
    # Re-deriving the full method's own track choice reproduces its stored tube on every clip.
    assert result["derived_exact"] == result["full_done"] == 8
    # The sweep ran on validation and its choice is what the held-out rows used.
    chosen = result["tuning"]["chosen"]
    assert result["settings"]["lra_steps"] == chosen["lra_steps"]
    assert len(result["tuning"]["layer_window"]) == 3 and len(result["tuning"]["lra"]) == 5


def test_rows_on_toy_detector_tracks(bench_run: tuple[Path, dict, str]) -> None:
    out, result, markdown = bench_run
    rows = result["detector_tracks"]["rows"]
    assert list(rows) == [
        "full method, toy-detector tracks",
        "random track, toy-detector tracks",
        "oracle track, toy-detector tracks",
    ]
    assert "## Held-out split: tracks from the toy detector" in markdown
    assert rows["oracle track, toy-detector tracks"]["track_acc"] == 100.0
    # the toy detector's boxes on flat-colour toy shapes are the world's own, pixel for pixel: the
    # ceiling on its tracks is the ceiling on the world's tracks
    assert result["detector_tracks"]["reach"]["closest >= 0.5"] == 100.0
    oracle = rows["oracle track, toy-detector tracks"]["metrics"]["m_vIoU"]
    assert oracle == pytest.approx(result["rows"]["oracle track"]["metrics"]["m_vIoU"], abs=0.5)
    assert len(list((out / "tracks" / "held-out").glob("*.json"))) == 8


def test_diagnostics_are_percentages(bench_run: tuple[Path, dict, str]) -> None:
    _, result, markdown = bench_run
    for cells in result["pointing"].values():
        assert cells["frames"] > 0
        for key, value in cells.items():
            if key != "frames":
                _percent(value)
    assert result["question_swap"]
    for summary in result["question_swap"].values():
        assert summary["n"] > 0
        for key, value in summary.items():
            if key != "n":
                _percent(value)
    assert "hit ratio" in markdown and len(result["pilot"]["hit_ratio"]) == len(
        result["pilot"]["token_names"]
    )


def test_chance_is_the_mean_inverse_track_count(bench_run: tuple[Path, dict, str]) -> None:
    _, result, _ = bench_run
    videos = load_sidecar(result["splits"]["held-out"]["folder"])["videos"]
    expected = 100.0 * np.mean([1.0 / len(entry["objects"]) for entry in videos.values()])
    for row in result["rows"].values():
        assert row["chance"] == pytest.approx(expected)
