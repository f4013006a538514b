"""Smoke test of benchmarks/spacevllm_toy.py: ``--quick`` on the tiny base, and the shipping of a row."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from spacevllm.model import SpaceVLLM

ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_trains_evaluates_and_ships(svl_base_dir: Path, tmp_path: Path) -> None:
    ship = tmp_path / "shipped"
    argv = ["--base", str(svl_base_dir), "--out", str(tmp_path / "run"), "--quick", "--no-progress"]
    argv += ["--rows", "spacevllm", "no_interleave", "--eval-seed", "77", "--ship", str(ship)]
    # Run as a user runs it, from the repository root (the recipe records that command).
    done = subprocess.run(
        [sys.executable, "benchmarks/spacevllm_toy.py", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    printed = done.stdout
    assert "SpaceVLLM" in printed and "w/o interleaved design" in printed
    rows = json.loads((tmp_path / "run" / "benchmark.json").read_text())["rows"]
    assert [r["row"] for r in rows] == ["SpaceVLLM", "w/o interleaved design"]
    for row in rows:
        assert row["n"] == 4 and row["failed"] == 0
        assert all(0.0 <= row[k] <= 100.0 for k in ("m_tIoU", "m_vIoU", "vIoU@0.3", "vIoU@0.5"))
    recipe = json.loads((ship / "recipe.json").read_text())
    assert recipe["held_out_videos"] == {"count": 4, "toy_world_seed": 77}
    assert recipe["held_out_metrics"]["m_tIoU"] == rows[0]["m_tIoU"]
    assert recipe["command"].startswith("python benchmarks/spacevllm_toy.py --base")
    model = SpaceVLLM.from_pretrained(ship)
    assert model.config.interleave  # the first row is the one shipped
