"""benchmarks/tracking.py: the scripted cases' scores (pinned) and a 3-clip toy run end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
tracking = pytest.importorskip("tracking")  # benchmarks/ is not a package

from zsgrounding.types import Track  # noqa: E402


def test_metrics_of_a_hand_made_case() -> None:
    """Two objects on 4 frames; the tracker swaps ids half way and misses one box."""
    box_a, box_b = np.array([0.0, 0, 10, 10]), np.array([50.0, 50, 60, 60])
    frames = np.arange(4)
    gt = [
        Track(frames, np.stack([box_a] * 4), "a", 1.0, 0),
        Track(frames, np.stack([box_b] * 4), "b", 1.0, 1),
    ]
    pred = [
        Track(np.arange(2), np.stack([box_a] * 2), "a", 1.0, 0),
        Track(np.arange(2, 4), np.stack([box_a] * 2), "a", 1.0, 1),
        Track(np.arange(3), np.stack([box_b] * 3), "b", 1.0, 2),
    ]
    row = tracking.score({"case": (gt, pred, frames)})
    # a: one switch; b: its track ends a frame early, a miss but no fragment (it is not picked up again)
    assert row["IDSW"] == 1 and row["Frag"] == 0
    assert row["MOTA"] == pytest.approx(100 * (1 - (1 + 1) / 8))  # 1 miss + 1 switch of 8
    assert row["IDF1"] == pytest.approx(100 * 2 * 5 / (8 + 7))  # best ids: a 2 frames, b 3 frames
    assert (row["covered"], row["one track"]) == (pytest.approx(100 * 7 / 8), pytest.approx(100 * 5 / 8))
    assert tracking.coverage(gt, pred, frames) == (8, 7, 5)


def test_the_scripted_cases_before_and_after() -> None:
    rows = tracking.scripted_rows()
    before, after = rows["all"]["before"], rows["all"]["after"]
    assert (before["IDSW"], before["tracks"], after["IDSW"], after["tracks"]) == (6, 19, 1, 13)
    assert before["HOTA"] == pytest.approx(73.8, abs=0.05) and after["HOTA"] == pytest.approx(94.8, abs=0.05)
    assert before["IDF1"] == pytest.approx(70.9, abs=0.05) and after["IDF1"] == pytest.approx(96.7, abs=0.05)
    assert after["covered"] == 100.0
    # the one case the loop cannot mend: SAM2 does not find a returning object, a new id follows it
    assert rows["returns-unseen"]["after"]["IDSW"] == 1


def test_the_benchmark_runs_and_writes_its_table(tmp_path: Path) -> None:
    code = tracking.main(["--out", str(tmp_path), "--clips", "3", "--num-frames", "6", "--no-progress"])
    assert code == 0
    data = json.loads((tmp_path / "tracking.json").read_text())
    rows = data["toy"]["rows"]
    assert set(rows) == {
        "IoU tracker, before",
        "IoU tracker, after",
        "SAM2 loop (scripted SAM2), before",
        "SAM2 loop (scripted SAM2), after",
    }
    assert all(r["objects"] == rows["IoU tracker, before"]["objects"] > 0 for r in rows.values())
    assert "| all | after | 94.8 | 96.7 | 1 | 2 |" in (tmp_path / "tracking.md").read_text()
