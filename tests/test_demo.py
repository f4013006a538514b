"""`stvg toy make` and `stvg demo` through the CLI, and the demo's table against `stvg score`."""

import json

import pytest

from zsgrounding.datasets import load_dataset


def test_toy_make_writes_a_loadable_hcstvg_dataset(tmp_path, run_cli):
    code, out, _ = run_cli(
        ["toy", "make", "--n", "3", "--out", str(tmp_path / "toy"), "--seed", "5", "--quiet"]
    )
    assert code == 0 and "wrote 3 clips" in out
    samples = load_dataset("toy", tmp_path / "toy")
    assert len(samples) == 3
    for s in samples:
        assert s.video.exists()
        parts = s.meta["caption_parts"]
        assert s.sentence == f"{parts['attribute_phrase']} {parts['action_phrase']}"
        assert s.gt.tube.frame_ids.size == len(s.gt.tube)


def test_demo_scores_agree_with_stvg_score_and_resume(tmp_path, run_cli):
    out_dir = tmp_path / "demo"
    code, out, _ = run_cli(["demo", "--out", str(out_dir), "--n", "4"])
    assert code == 0
    assert "| colour" in out and "| oracle-track" in out
    rows = json.loads((out_dir / "metrics.json").read_text())
    assert set(rows) == {"centre", "colour", "oracle-track"}
    for name, row in rows.items():
        code, out, _ = run_cli(
            [
                "score",
                "--dataset",
                "toy",
                "--gt",
                str(out_dir / "toy"),
                "--pred",
                str(out_dir / "predictions" / f"{name}.json"),
                "--json",
            ]
        )
        assert code == 0
        rescored = json.loads(out)
        for key in ("m_tIoU", "m_vIoU", "vIoU@0.3", "vIoU@0.5", "n"):
            assert rescored[key] == pytest.approx(row[key])
    code, out, _ = run_cli(["demo", "--out", str(out_dir), "--n", "4"])
    assert code == 0 and "reusing 4 toy clips" in out
