"""Smoke test of ``python -m research.toy_stage1`` on the tiny recipe: rows train, probe, resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "research.toy_stage1", *args, "--quick", "--no-progress"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_rows_train_probe_and_resume(tmp_path: Path) -> None:
    out = _run("--out", str(tmp_path), "--rows", "before", "zoom")
    rows = json.loads((tmp_path / "stage1.json").read_text())
    assert sorted(rows) == ["before", "zoom"]
    for row in rows.values():
        assert row["steps"] == 2 and row["seconds"] > 0
        assert 0.0 <= row["binding"] <= 1.0 and 0.0 <= row["top1"] <= 1.0
        for name in ("shape", "colour", "size", "column", "row"):
            probe = row["probes"][f"tower/{name}"]
            assert 0.0 <= probe["accuracy"] <= 1.0 and 0.0 < probe["chance"] <= 1.0
        assert row["probes"]["objects"]["test"] > 0
    assert "| before |" in out and "| zoom |" in out
    # A rerun trains nothing: the rows come back from stage1.json unchanged.
    again = _run("--out", str(tmp_path), "--rows", "before", "zoom")
    assert "row before ..." not in again
    assert json.loads((tmp_path / "stage1.json").read_text()) == rows
