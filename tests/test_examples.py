"""Every script in examples/ runs as written, as a user would start it, on toy data with small settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, *args: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_every_example_is_tested() -> None:
    tested = {"ground_video.py", "evaluate_hcstvg.py", "finetune_spacevllm.py", "compare_paradigms.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} <= tested


def test_ground_video(tmp_path: Path) -> None:
    out = run_example("ground_video.py", "--out", "run", "--num-frames", "8", cwd=tmp_path)
    assert "tube: frames [" in out
    (gif,) = (tmp_path / "run").glob("*_grounded.gif")
    with Image.open(gif) as image:
        assert image.n_frames > 1


def test_evaluate_hcstvg_on_toy_annotations(tmp_path: Path) -> None:
    args = ["--out", "run", "--toy-clips", "2", "--num-frames", "8"]
    out = run_example("evaluate_hcstvg.py", *args, cwd=tmp_path)
    assert "grounded 2, skipped 0, failed 0" in out
    assert (tmp_path / "run" / "run" / "metrics.md").is_file()
    again = run_example("evaluate_hcstvg.py", *args, cwd=tmp_path)  # resumes: nothing left to do
    assert "grounded 0, skipped 2, failed 0" in again


def test_finetune_spacevllm(tmp_path: Path) -> None:
    args = ["--out", "run", "--train-clips", "4", "--eval-clips", "2", "--steps", "2", "--frames", "4"]
    out = run_example("finetune_spacevllm.py", *args, cwd=tmp_path)
    assert "trained 2 steps" in out and "'m_vIoU'" in out
    assert (tmp_path / "run" / "run" / "final" / "spacevllm_config.json").is_file()


def test_compare_paradigms(tmp_path: Path) -> None:
    out = run_example(
        "compare_paradigms.py", "--out", "run", "--clips", "2", "--num-frames", "8", cwd=tmp_path
    )
    assert "| zero-shot w/o TAS" in out and "| SpaceVLLM" in out and "largest gap" in out
    assert (tmp_path / "run" / "comparison" / "metric_bars.png").is_file()
