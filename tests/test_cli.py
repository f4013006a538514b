"""`stvg score` end to end on annotation files in the real formats, through the real entry point."""

import json
import subprocess
import sys

import pytest


def hcstvg_v1(tmp_path):
    """Three HC-STVG v1 videos: GT [10,20), [0,10), [50,60) after the 1-based st_frame."""
    ann = {
        "a.mp4": {"st_frame": 11, "bbox": [[0, 0, 10, 10]] * 10},
        "b.mp4": {"st_frame": 1, "bbox": [[0, 0, 10, 10]] * 10},
        "c.mp4": {"st_frame": 51, "bbox": [[0, 0, 10, 10]] * 10},
    }
    for key, entry in ann.items():
        entry.update(img_num=100, width=64, height=48, caption=f"caption of {key}")
        entry["st_time"] = (entry["st_frame"] - 1) / 5.0
        entry["ed_time"] = entry["st_time"] + 2.0
    path = tmp_path / "test.json"
    path.write_text(json.dumps(ann))
    return path


def dense_pred(start, end, box=(0, 0, 10, 10)):
    return {"start": start, "end": end, "boxes": {str(f): list(box) for f in range(start, end)}}


def test_score_frames_all_gives_the_hand_computed_numbers(tmp_path, run_cli):
    gt = hcstvg_v1(tmp_path)
    pred = tmp_path / "pred.json"
    # a: [15,25) vs [10,20): tIoU = vIoU = 5/15; b: identical; c: predicted far away -> 0.
    pred.write_text(
        json.dumps({"a.mp4": dense_pred(15, 25), "b.mp4": dense_pred(0, 10), "c.mp4": dense_pred(0, 10)})
    )
    code, out, err = run_cli(
        [
            "score",
            "--dataset",
            "hcstvg-v1",
            "--gt",
            str(gt),
            "--pred",
            str(pred),
            "--frames",
            "all",
            "--json",
        ]
    )
    assert code == 0, err
    got = json.loads(out)
    expected_mean = 100 * (1 / 3 + 1 + 0) / 3
    assert got["m_tIoU"] == pytest.approx(expected_mean)
    assert got["m_vIoU"] == pytest.approx(expected_mean)
    assert got["vIoU@0.3"] == pytest.approx(200 / 3)  # 1/3 > 0.3 and 1 > 0.3
    assert got["vIoU@0.5"] == pytest.approx(100 / 3)
    assert got["n"] == 3 and got["missing"] == 0


def test_score_counts_missing_predictions_and_prints_a_table(tmp_path, run_cli):
    gt = hcstvg_v1(tmp_path)
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps({"b.mp4": dense_pred(0, 10), "zzz.mp4": dense_pred(0, 10)}))
    code, out, err = run_cli(
        ["score", "--dataset", "hcstvg-v1", "--gt", str(gt), "--pred", str(pred), "--frames", "all"]
    )
    assert code == 0
    assert "missing predictions: 2 of 3" in err
    assert "ignored predictions with no ground truth: 1" in err
    assert "| all " in out and "33.33" in out


def test_score_vidstg_reports_sentence_types(tmp_path, run_cli):
    record = {
        "vid": "v1",
        "fps": 25.0,
        "frame_count": 50,
        "width": 64,
        "height": 48,
        "subject/objects": [{"tid": 0, "category": "dog"}],
        "used_segment": {"begin_fid": 0, "end_fid": 50},
        "used_relation": {"subject_tid": 0, "object_tid": 0, "predicate": "run"},
        "temporal_gt": {"begin_fid": 10, "end_fid": 20},
        "captions": [{"description": "a dog runs.", "type": "subject", "target_id": 0}],
        "questions": [{"description": "what runs?", "type": "subject", "target_id": 0}],
    }
    ann = tmp_path / "test_annotations.json"
    ann.write_text(json.dumps([record]))
    vidor = tmp_path / "vidor" / "0000"
    vidor.mkdir(parents=True)
    box = {"xmin": 0, "ymin": 0, "xmax": 10, "ymax": 10}
    trajectories = [[{"tid": 0, "bbox": box, "generated": 0, "tracker": "none"}] for _ in range(50)]
    (vidor / "v1.json").write_text(
        json.dumps(
            {
                "video_id": "v1",
                "video_path": "0000/v1.mp4",
                "frame_count": 50,
                "fps": 25.0,
                "width": 64,
                "height": 48,
                "subject/objects": [{"tid": 0, "category": "dog"}],
                "trajectories": trajectories,
            }
        )
    )
    from zsgrounding.datasets import load_dataset

    samples = load_dataset("vidstg", ann, vidor_dir=tmp_path / "vidor")
    by_type = {s.gt.qtype: s.id for s in samples}
    pred = tmp_path / "pred.json"
    pred.write_text(
        json.dumps({by_type["declarative"]: dense_pred(10, 20), by_type["interrogative"]: dense_pred(30, 40)})
    )
    code, out, err = run_cli(
        [
            "score",
            "--dataset",
            "vidstg",
            "--gt",
            str(ann),
            "--vidor-dir",
            str(tmp_path / "vidor"),
            "--pred",
            str(pred),
            "--json",
        ]
    )
    assert code == 0, err
    got = json.loads(out)
    assert got["declarative"]["m_vIoU"] == pytest.approx(100.0)
    assert got["interrogative"]["m_vIoU"] == 0.0
    assert got["m_tIoU"] == pytest.approx(50.0) and got["n"] == 2


@pytest.mark.parametrize(
    "case, needle",
    [
        ("missing_pred", "prediction file not found"),
        ("bad_json", "is not valid JSON"),
        ("bad_entry", "prediction 'a.mp4': missing key 'end'"),
        ("unknown_dataset", "Invalid value for '--dataset'"),
        ("missing_gt", "does not exist"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(tmp_path, run_cli, case, needle):
    gt = hcstvg_v1(tmp_path)
    pred = tmp_path / "pred.json"
    pred.write_text(
        {"bad_json": "{not json", "bad_entry": json.dumps({"a.mp4": {"start": 1}})}.get(case, "{}")
    )
    argv = ["score", "--dataset", "hcstvg-v1", "--gt", str(gt), "--pred", str(pred)]
    if case == "missing_pred":
        argv[-1] = str(tmp_path / "nope.json")
    if case == "unknown_dataset":
        argv[2] = "hcstvg-v9"
    if case == "missing_gt":
        argv[4] = str(tmp_path / "nope.json")
    code, _, err = run_cli(argv)
    assert code == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_console_script_runs_as_a_process(tmp_path):
    # The installed `stvg` script, as a user runs it: a malformed annotation gives one line, code 2.
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"x.mp4": {"st_frame": 1}}))
    pred = tmp_path / "p.json"
    pred.write_text("{}")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from cli import main; main()",
            "score",
            "--dataset",
            "hcstvg-v1",
            "--gt",
            str(bad),
            "--pred",
            str(pred),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "x.mp4" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_score_warns_once_about_boxes_outside_the_span(tmp_path, run_cli):
    gt = hcstvg_v1(tmp_path)
    pred = tmp_path / "pred.json"
    outside = dense_pred(10, 20)
    outside["boxes"]["25"] = [0, 0, 10, 10]  # not scored: the tube claims frames 10..19 only
    pred.write_text(json.dumps({"a.mp4": outside, "b.mp4": dense_pred(0, 10), "c.mp4": dense_pred(50, 60)}))
    argv = ["score", "--dataset", "hcstvg-v1", "--gt", str(gt), "--pred", str(pred), "--frames", "all"]
    code, out, err = run_cli([*argv, "--json"])
    assert code == 0, err
    assert json.loads(out)["m_vIoU"] == pytest.approx(100.0)
    lines = [line for line in err.splitlines() if "outside" in line]
    assert len(lines) == 1 and "'a.mp4', frame 25" in lines[0] and "Traceback" not in err
