"""Smoke test of benchmarks/spacevllm_toy.py: ``--quick`` on the tiny base, a lever row on
single-object clips, the whole-video reference row and the shipping of a row."""

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
    argv += [
        "--rows",
        "spacevllm",
        "position_codes",
        "--objects",
        "1",
        "--eval-seed",
        "77",
        "--ship",
        str(ship),
    ]
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
    assert "SpaceVLLM" in printed and "+ position codes" in printed and "objects per video: 1" in printed
    rows = json.loads((tmp_path / "run" / "benchmark.json").read_text())["rows"]
    assert [r["row"] for r in rows] == ["whole video, mean box", "SpaceVLLM", "+ position codes"]
    for row in rows:
        assert row["n"] == 4
        assert all(0.0 <= row[k] <= 100.0 for k in ("m_tIoU", "m_vIoU", "vIoU@0.3", "vIoU@0.5"))
    for row in rows[1:]:
        assert row["failed"] == 0
        assert 0.0 <= row["attention_on_target"] <= 100.0 and 0.0 < row["uniform_on_target"] <= 100.0
        answers = row["answers"]
        assert answers["distinct_spans"] in range(1, 5) and 0.0 < answers["gt_fraction"] <= 1.0
    assert all(0.0 <= row["span_box_IoU"] <= 100.0 for row in rows)
    sidecar = json.loads((tmp_path / "run" / "toy_eval_77_1obj" / "toyworld.json").read_text())
    assert all(len(v["objects"]) == 1 for v in sidecar["videos"].values())
    # the whole video as the span: each clip's tIoU is its GT span's share of the video (the
    # evaluator samples frames at 5 fps, hence the tolerance)
    annotations = json.loads((tmp_path / "run" / "toy_eval_77_1obj" / "annotations.json").read_text())
    share = 100 * sum(len(a["bbox"]) / a["img_num"] for a in annotations.values()) / len(annotations)
    assert abs(rows[0]["m_tIoU"] - share) < 5.0
    recipe = json.loads((ship / "recipe.json").read_text())
    assert recipe["held_out_videos"] == {"count": 4, "toy_world_seed": 77}
    assert recipe["held_out_metrics"]["m_tIoU"] == rows[1]["m_tIoU"]
    assert recipe["objects_per_video"] == 1
    assert recipe["command"].startswith("python benchmarks/spacevllm_toy.py --base")
    model = SpaceVLLM.from_pretrained(ship)
    assert model.config.interleave and not model.config.position_codes  # the first row is shipped

    # --checkpoint scores a saved model on another split without training
    again = [
        sys.executable,
        "benchmarks/spacevllm_toy.py",
        "--base",
        str(svl_base_dir),
        "--out",
        str(tmp_path / "ck"),
    ]
    again += ["--quick", "--no-progress", "--checkpoint", str(ship), "--eval-seed", "78"]
    done = subprocess.run(again, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = json.loads((tmp_path / "ck" / "benchmark.json").read_text())["rows"]
    assert [r["row"] for r in rows] == ["whole video, mean box", f"checkpoint {ship}"]
    assert rows[1]["n"] == 4 and "final_loss" not in rows[1]
    assert not (tmp_path / "ck" / "spacevllm").exists()  # nothing trained
