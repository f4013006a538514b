"""`stvg ground` / `stvg eval` with `--method spacevllm` on a tiny saved SpaceVLLM checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zsgrounding.datasets import load_dataset
from zsgrounding.metrics import evaluate
from zsgrounding.predictions import load_predictions
from zsgrounding.toy.world import ToyWorldConfig, make_dataset


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("svl_cli_toy")
    make_dataset(out, 2, ToyWorldConfig(seed=11), progress=False)
    return out


@pytest.fixture
def checkpoint(tmp_path_factory: pytest.TempPathFactory, make_model) -> Path:
    directory = tmp_path_factory.mktemp("svl_ckpt")
    make_model().save_pretrained(directory)
    return directory


def test_ground_with_a_spacevllm_checkpoint(run_cli, toy_dir: Path, checkpoint: Path, tmp_path: Path) -> None:
    sample = load_dataset("toy", toy_dir)[0]
    out = tmp_path / "one"
    code, _stdout, stderr = run_cli(
        [
            "ground",
            str(sample.video),
            sample.sentence,
            "--method",
            "spacevllm",
            "--checkpoint",
            str(checkpoint),
            "--num-frames",
            "4",
            "--out",
            str(out),
        ]
    )
    assert code == 0, stderr
    record = json.loads((out / f"{sample.video.stem}_result.json").read_text())
    assert 0 <= record["tube"]["start"] < record["tube"]["end"]
    assert "answer" in json.dumps(record["extras"])
    assert (out / f"{sample.video.stem}_grounded.gif").exists()


def test_eval_with_a_spacevllm_checkpoint(run_cli, toy_dir: Path, checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    code, stdout, stderr = run_cli(
        [
            "eval",
            "--dataset",
            "toy",
            "--gt",
            str(toy_dir),
            "--method",
            "spacevllm",
            "--checkpoint",
            str(checkpoint),
            "--num-frames",
            "4",
            "--quiet",
            "--out",
            str(out),
        ]
    )
    assert code == 0, stderr
    assert "| spacevllm" in stdout and "done 2" in stdout
    samples = load_dataset("toy", toy_dir)
    expected = evaluate(load_predictions(out / "predictions.json"), {s.id: s.gt for s in samples}).report()
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(expected))


def test_spacevllm_without_checkpoint_is_a_usage_error(run_cli, toy_dir: Path, tmp_path: Path) -> None:
    video = next((toy_dir / "videos").iterdir())
    code, _, stderr = run_cli(
        ["ground", str(video), "the red circle", "--method", "spacevllm", "--out", str(tmp_path)]
    )
    assert code == 2 and "--checkpoint" in stderr


def test_convert_writes_records_the_reader_accepts(run_cli, toy_dir: Path, tmp_path: Path) -> None:
    from spacevllm.data import read_records

    out = tmp_path / "toy.jsonl"
    code, stdout, stderr = run_cli(["convert", "--dataset", "toy", "--gt", str(toy_dir), "--out", str(out)])
    assert code == 0, stderr
    records = read_records(out)
    assert stdout.strip() == f"wrote 2 records to {out}"
    assert [r.task for r in records] == ["stvg", "stvg"]
    assert {r.id for r in records} == {s.id for s in load_dataset("toy", toy_dir)}


def test_convert_leaves_out_an_unreadable_video_and_says_so(run_cli, toy_dir: Path, tmp_path: Path) -> None:
    import shutil

    from spacevllm.data import read_records

    copy = tmp_path / "toy"
    shutil.copytree(toy_dir, copy)
    broken = sorted((copy / "videos").iterdir())[0]
    broken.write_bytes(b"not a video at all")
    out = tmp_path / "toy.jsonl"
    code, stdout, stderr = run_cli(["convert", "--dataset", "toy", "--gt", str(copy), "--out", str(out)])
    assert code == 0, stderr
    assert stdout.strip() == f"wrote 1 records to {out}; left out 1 whose video is unreadable or too short"
    assert broken.name in stderr and "left out" in stderr and stderr.count("\n") == 1
    assert len(read_records(out)) == 1
    # Unchecked, the record stays (and a training run would skip it, warned).
    code, stdout, _ = run_cli(
        ["convert", "--dataset", "toy", "--gt", str(copy), "--out", str(out), "--no-check-videos"]
    )
    assert code == 0 and stdout.strip() == f"wrote 2 records to {out}"


def test_convert_raw_vidstg_with_the_vidor_folder(run_cli, tmp_path: Path) -> None:
    """Raw VidSTG (a list of records) needs --vidor-dir; each sentence becomes one checked record."""
    import numpy as np

    from spacevllm.data import read_records
    from zsgrounding.video import write_video

    record = {
        "vid": "2401075277",
        "fps": 10.0,
        "frame_count": 20,
        "width": 32,
        "height": 24,
        "subject/objects": [{"tid": 0, "category": "dog"}],
        "used_segment": {"begin_fid": 0, "end_fid": 20},
        "temporal_gt": {"begin_fid": 5, "end_fid": 15},
        "captions": [{"description": "a dog runs.", "type": "subject", "target_id": 0}],
        "questions": [{"description": "what runs?", "type": "subject", "target_id": 0}],
    }
    ann = tmp_path / "test_annotations.json"
    ann.write_text(json.dumps([record]))
    box = {"xmin": 2, "ymin": 3, "xmax": 12, "ymax": 13}
    vidor = tmp_path / "vidor" / "0000"
    vidor.mkdir(parents=True)
    (vidor / "2401075277.json").write_text(
        json.dumps(
            {
                "video_id": "2401075277",
                "video_path": "0000/2401075277.mp4",
                "trajectories": [[{"tid": 0, "bbox": box}] for _ in range(20)],
            }
        )
    )
    videos = tmp_path / "videos" / "0000"
    videos.mkdir(parents=True)
    write_video(videos / "2401075277.mp4", np.zeros((20, 24, 32, 3), dtype=np.uint8), fps=10.0)
    out = tmp_path / "vidstg.jsonl"
    argv = [
        "convert",
        "--dataset",
        "vidstg",
        "--gt",
        str(ann),
        "--videos",
        str(tmp_path / "videos"),
        "--out",
        str(out),
    ]
    code, _, stderr = run_cli(argv)
    assert code == 2 and "vidor_dir" in stderr and stderr.count("\n") == 1
    code, stdout, stderr = run_cli([*argv, "--vidor-dir", str(tmp_path / "vidor")])
    assert code == 0, stderr
    assert stdout.strip() == f"wrote 2 records to {out}"
    records = read_records(out)
    assert sorted(r.id for r in records) == ["2401075277_0_20_d0", "2401075277_0_20_q0"]
    assert all(Path(r.media) == videos / "2401075277.mp4" for r in records)
    first = records[0]
    assert first.span == pytest.approx((0.5, 1.5)) and sorted(first.boxes) == list(range(5, 15))
    assert first.boxes[5] == [2.0, 3.0, 12.0, 13.0] and first.query in ("a dog runs.", "what runs?")


def test_synth_reports_every_stage(run_cli, toy_dir: Path, tmp_path: Path) -> None:
    from tiny_proposals import save_tiny_detector

    detector = save_tiny_detector(tmp_path / "dino")
    out = tmp_path / "synth.jsonl"
    code, stdout, stderr = run_cli(
        [
            "synth",
            "--dataset",
            "toy",
            "--gt",
            str(toy_dir),
            "--detector",
            str(detector),
            "--whole-videos",
            "--quiet",
            "--out",
            str(out),
        ]
    )
    assert code == 0, stderr
    lines = stdout.splitlines()
    kept, total = (int(w) for w in lines[0].split()[1::2])
    assert total == 2
    removed = sum(int(line.split("removed ")[1].split()[0]) for line in lines if "removed" in line)
    # Random detector weights: whatever it finds, every sample is either kept or removed by a stage.
    assert kept + removed == total
    assert lines[-1] == f"wrote {kept} records to {out}"


def test_synth_with_the_toy_detector_keeps_whole_toy_videos(run_cli, toy_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "synth.jsonl"
    args = ["synth", "--dataset", "toy", "--gt", str(toy_dir), "--detector", "toy", "--whole-videos"]
    code, stdout, stderr = run_cli([*args, "--quiet", "--out", str(out)])
    assert code == 0, stderr
    kept, total = (int(w) for w in stdout.splitlines()[0].split()[1::2])
    assert total == 2 and kept >= 1  # the colour detector finds the caption's shape on real pixels
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == kept and all(r["boxes"] for r in records)


def test_train_from_yaml_then_resume_does_nothing_more(
    run_cli, toy_dir: Path, svl_base_dir: Path, tmp_path: Path
) -> None:
    import yaml

    from spacevllm.convert import convert
    from spacevllm.model import SpaceVLLM

    data = tmp_path / "toy.jsonl"
    convert("toy", toy_dir, data)
    config = tmp_path / "train.yaml"
    settings = {
        "base_model": str(svl_base_dir),
        "output_dir": str(tmp_path / "run"),
        "data": [{"path": str(data)}],
        "model": {"head_hidden": 32, "max_new_tokens": 8},
        "num_frames": 4,
        "lr": 1.0e-3,
        "batch_size": 2,
        "max_steps": 2,
        "save_every": 1,
    }
    config.write_text(yaml.safe_dump(settings))
    code, stdout, stderr = run_cli(["train", "--config", str(config), "--quiet"])
    assert code == 0, stderr
    assert stdout.startswith("trained 2 steps (from step 0)")
    SpaceVLLM.from_pretrained(tmp_path / "run" / "final")
    code, stdout, stderr = run_cli(["train", "--config", str(config), "--quiet"])
    assert code == 0, stderr
    assert stdout.startswith("trained 2 steps (from step 2)")
    config.write_text(yaml.safe_dump({**settings, "learning_rate": 1.0}))
    code, _, stderr = run_cli(["train", "--config", str(config)])
    assert code == 2 and "learning_rate" in stderr and len(stderr.strip().splitlines()) == 1
