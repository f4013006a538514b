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


# ----------------------------------------------------------------------------- VidSTG protocols


def vidstg_raw(tmp_path, spans):
    """Raw VidSTG records, one per ``{vid: (begin_fid, end_fid)}``: 25 fps, 50 frames, segment
    [0,50), one caption and one question each, and VidOR files with a box on every frame."""
    records, vidor = [], tmp_path / "vidor" / "0000"
    vidor.mkdir(parents=True)
    box = {"xmin": 0, "ymin": 0, "xmax": 10, "ymax": 10}
    for vid, (begin, end) in spans.items():
        records.append(
            {
                "vid": vid,
                "fps": 25.0,
                "frame_count": 50,
                "width": 64,
                "height": 48,
                "subject/objects": [{"tid": 0, "category": "dog"}],
                "used_segment": {"begin_fid": 0, "end_fid": 50},
                "used_relation": {"subject_tid": 0, "object_tid": 0, "predicate": "run"},
                "temporal_gt": {"begin_fid": begin, "end_fid": end},
                "captions": [{"description": "a dog runs.", "type": "subject", "target_id": 0}],
                "questions": [{"description": "what runs?", "type": "subject", "target_id": 0}],
            }
        )
        trajectories = [[{"tid": 0, "bbox": box, "generated": 0, "tracker": "none"}] for _ in range(50)]
        (vidor / f"{vid}.json").write_text(
            json.dumps({"video_id": vid, "video_path": f"0000/{vid}.mp4", "trajectories": trajectories})
        )
    ann = tmp_path / "test_annotations.json"
    ann.write_text(json.dumps(records))
    return ann, tmp_path / "vidor"


def test_score_cgstvg_keeps_the_vidstg_span_and_shortens_hcstvg(tmp_path, run_cli):
    # VidSTG: GT [10,20), prediction equal to it: tIoU = vIoU = 100 under cgstvg (CG-STVG scores
    # [begin_fid, end_fid) in full; before, the GT was cut to [10,19) and this gave 90).
    ann, vidor = vidstg_raw(tmp_path, {"v1": (10, 20)})
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps({"v1_0_50_d0": dense_pred(10, 20), "v1_0_50_q0": dense_pred(10, 20)}))
    argv = ["score", "--dataset", "vidstg", "--gt", str(ann), "--vidor-dir", str(vidor), "--pred", str(pred)]
    for protocol in ("tubedetr", "cgstvg"):
        code, out, err = run_cli([*argv, "--protocol", protocol, "--json"])
        assert code == 0, err
        got = json.loads(out)
        assert got["m_tIoU"] == pytest.approx(100.0) and got["m_vIoU"] == pytest.approx(100.0), protocol
        assert got["n"] == 2
    # HC-STVG stays as it was: predictions equal to the GT [10,20), [0,10), [50,60) are each
    # scored against a GT one frame short: |I| = 9 of |U| = 10 frames, tIoU = vIoU = 90.
    gt = hcstvg_v1(tmp_path)
    pred.write_text(
        json.dumps({"a.mp4": dense_pred(10, 20), "b.mp4": dense_pred(0, 10), "c.mp4": dense_pred(50, 60)})
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
            "--protocol",
            "cgstvg",
            "--json",
        ]
    )
    assert code == 0, err
    got = json.loads(out)
    assert got["m_tIoU"] == pytest.approx(90.0) and got["m_vIoU"] == pytest.approx(90.0)
    assert got["vIoU@0.5"] == pytest.approx(100.0) and got["n"] == 3


@pytest.mark.parametrize("protocol", ["tubedetr", "cgstvg"])
def test_score_vidstg_zero_length_gt_counts_as_zero(tmp_path, run_cli, protocol):
    # v1: GT [10,20); v2: GT [10,10), zero length. Sentences: v1 d0 = GT (1), v1 q0 far away (0),
    # v2 d0 predicted around frame 10 (0: nothing overlaps an empty span), v2 q0 missing (0).
    # n = 4 (the zero-length sentences count): m_tIoU = m_vIoU = 100 * 1/4 = 25.
    ann, vidor = vidstg_raw(tmp_path, {"v1": (10, 20), "v2": (10, 10)})
    pred = tmp_path / "pred.json"
    pred.write_text(
        json.dumps(
            {
                "v1_0_50_d0": dense_pred(10, 20),
                "v1_0_50_q0": dense_pred(30, 40),
                "v2_0_50_d0": dense_pred(5, 15),
            }
        )
    )
    code, out, err = run_cli(
        [
            "score",
            "--dataset",
            "vidstg",
            "--gt",
            str(ann),
            "--vidor-dir",
            str(vidor),
            "--pred",
            str(pred),
            "--protocol",
            protocol,
            "--json",
        ]
    )
    assert code == 0, err
    got = json.loads(out)
    assert got["n"] == 4 and got["missing"] == 1
    assert got["m_tIoU"] == pytest.approx(25.0) and got["m_vIoU"] == pytest.approx(25.0)
    assert got["declarative"]["m_tIoU"] == pytest.approx(50.0) and got["declarative"]["n"] == 2
    assert got["interrogative"]["m_tIoU"] == 0.0 and got["interrogative"]["n"] == 2
    warning = [line for line in err.splitlines() if "zero-length" in line]
    assert len(warning) == 1 and "2 sentence(s)" in warning[0] and warning[0].startswith("stvg: warning:")
    assert "missing predictions: 1 of 4" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- Charades-STA


CHARADES = (
    "AAAAA 0.0 10.0##person opens a door.\n"
    "\n"
    "BBBBB 0 10##person sits down.\n"
    "CCCCC 10.0 20.0##person drinks from a cup.\n"
    "DDDDD 5.0 15.0##person laughs.\n"
    "EEEEE 0.0 4.0##person runs away.\n"
)


def charades(tmp_path, predictions):
    gt = tmp_path / "charades_sta_test.txt"
    gt.write_text(CHARADES)
    pred = tmp_path / "preds.json"
    pred.write_text(json.dumps(predictions) if not isinstance(predictions, str) else predictions)
    return ["score", "--dataset", "charades-sta", "--gt", str(gt), "--pred", str(pred)]


# ids are VIDEO_line (the blank line 2 counts); IoU by hand: A 10/10 = 1, B 10/20 = 1/2,
# C 10/30 = 1/3, D 7.5/10 = 3/4, E no prediction = 0; ZZZZZ_9 has no ground truth.
CHARADES_PRED = {
    "AAAAA_1": [0, 10],
    "BBBBB_3": [0.0, 20.0],
    "CCCCC_4": [0.0, 30.0],
    "DDDDD_5": [7.5, 15.0],
    "ZZZZZ_9": [0, 1],
}


def test_score_charades_recall_and_miou_by_hand(tmp_path, run_cli):
    code, out, err = run_cli([*charades(tmp_path, CHARADES_PRED), "--json"])
    assert code == 0, err
    got = json.loads(out)
    assert got["R@1,IoU=0.3"] == pytest.approx(80.0)  # 1, 1/2, 1/3, 3/4 of 5
    assert got["R@1,IoU=0.5"] == pytest.approx(60.0)  # 1, 1/2 (>= 0.5), 3/4
    assert got["R@1,IoU=0.7"] == pytest.approx(40.0)  # 1, 3/4
    assert got["mIoU"] == pytest.approx(100 * (1 + 1 / 2 + 1 / 3 + 3 / 4 + 0) / 5)  # 51.67
    assert got["n"] == 5 and got["missing"] == 1
    assert "missing predictions: 1 of 5 (scored 0)" in err
    assert "ignored predictions with no ground truth: 1" in err

    code, out, _ = run_cli(charades(tmp_path, CHARADES_PRED))
    assert code == 0
    header, _, row = out.strip().splitlines()
    assert "R@1,IoU=0.3" in header and "R@1,IoU=0.7" in header and "mIoU" in header
    assert [cell.strip() for cell in row.split("|")[1:-1]] == ["all", "80.00", "60.00", "40.00", "51.67", "5"]


@pytest.mark.parametrize(
    "predictions, needle",
    [
        ({"AAAAA_1": [5, 1]}, "prediction 'AAAAA_1': end 1 s is before start 5 s"),
        ({"AAAAA_1": {"start": 0, "end": 10}}, "prediction 'AAAAA_1': expected [start, end] in seconds"),
        ({"AAAAA_1": [0, 1, 2]}, "expected [start, end] in seconds"),
        ({"AAAAA_1": [0, "10"]}, "expected [start, end] in seconds"),
        ({"AAAAA_1": [True, 10]}, "expected [start, end] in seconds"),
        ({"AAAAA_1": [-1, 10]}, "start -1 s is negative"),
        ('{"AAAAA_1": [0, NaN]}', "expected [start, end] in seconds"),
        ("[[0, 10]]", "expected an object keyed by sample id"),
    ],
)
def test_score_charades_malformed_predictions_are_one_line(tmp_path, run_cli, predictions, needle):
    code, out, err = run_cli(charades(tmp_path, predictions))
    assert code == 2 and out == ""
    assert err.startswith("stvg: error:") and needle in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_score_charades_refuses_stvg_protocol_options(tmp_path, run_cli):
    code, _, err = run_cli([*charades(tmp_path, CHARADES_PRED), "--protocol", "cgstvg"])
    assert code == 2 and "--protocol applies to STVG datasets, not charades-sta" in err
