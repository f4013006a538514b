"""VidSTG loader: raw annotations + VidOR boxes, and TubeDETR's preprocessed form."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from zsgrounding.datasets import LoadReport, MalformedEntryWarning, load_vidstg
from zsgrounding.errors import DatasetError
from zsgrounding.types import Tube

VID_A, VID_B = "2401075277", "3001"


def _adult(f):  # tid 0: has a box on every frame but 8
    return {"xmin": 10 + f, "ymin": 20, "xmax": 50 + f, "ymax": 90}


def _dog(f):  # tid 1
    return {"xmin": 200, "ymin": 100 + f, "xmax": 260, "ymax": 150 + f}


def _vidor_a():
    frames = []
    for f in range(10):
        objs = [{"tid": 1, "bbox": _dog(f), "generated": 0, "tracker": "none"}]
        if f != 8:
            objs.append({"tid": 0, "bbox": _adult(f), "generated": 1, "tracker": "linear"})
        frames.append(objs)
    return {
        "video_id": VID_A,
        "video_path": f"0000/{VID_A}.mp4",
        "frame_count": 10,
        "fps": 30,
        "width": 640,
        "height": 480,
        "subject/objects": [{"tid": 0, "category": "adult"}, {"tid": 1, "category": "dog"}],
        "trajectories": frames,
    }


def _vidor_b():
    return {
        "video_id": VID_B,
        "video_path": f"0001/{VID_B}.mp4",
        "frame_count": 5,
        "fps": 25,
        "width": 320,
        "height": 240,
        "subject/objects": [{"tid": 0, "category": "cat"}],
        "trajectories": [
            [{"tid": 0, "bbox": _adult(f), "generated": 0, "tracker": "none"}] for f in range(5)
        ],
    }


RECORDS = [
    {
        "vid": VID_A,
        "fps": 30.0,
        "frame_count": 10,
        "width": 640,
        "height": 480,
        "subject/objects": [{"tid": 0, "category": "adult"}, {"tid": 1, "category": "dog"}],
        "used_segment": {"begin_fid": 0, "end_fid": 10},
        "used_relation": {
            "subject_tid": 0,
            "object_tid": 1,
            "predicate": "hold",
            "begin_fid": 6,
            "end_fid": 10,
        },
        "temporal_gt": {"begin_fid": 6, "end_fid": 10},  # end exclusive, equal to frame_count
        "captions": [
            {"description": "An adult holds a dog.", "type": "adult", "target_id": 0},
            {"description": "A dog is held by an adult.", "type": "dog", "target_id": 1},
        ],
        "questions": [{"description": "Who holds the dog?", "type": "adult", "target_id": 0}],
    },
    {
        "vid": VID_B,
        "fps": 25.0,
        "frame_count": 5,
        "width": 320,
        "height": 240,
        "subject/objects": [{"tid": 0, "category": "cat"}],
        "used_segment": {"begin_fid": 0, "end_fid": 5},
        "used_relation": {
            "subject_tid": 0,
            "object_tid": 0,
            "predicate": "sit",
            "begin_fid": 1,
            "end_fid": 3,
        },
        "temporal_gt": {"begin_fid": 1, "end_fid": 3},
        "captions": [{"description": "A cat sits.", "type": "cat", "target_id": 0}],
        "questions": [],
    },
]


def _write(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def _raw(tmp_path, records=RECORDS):
    vidor = tmp_path / "vidor"
    _write(vidor / "0000" / f"{VID_A}.json", _vidor_a())
    _write(vidor / "0001" / f"{VID_B}.json", _vidor_b())
    return _write(tmp_path / "test_annotations.json", records), vidor


def _preprocessed(records, vidors):
    """The same data in TubeDETR's preprocessed layout, built independently of the loader."""
    videos, trajectories = [], {}
    for rec in records:
        vidor = vidors[rec["vid"]]
        per_tid = {}
        for f, objs in enumerate(vidor["trajectories"]):
            for o in objs:
                b = o["bbox"]
                box = [b["xmin"], b["ymin"], b["xmax"] - b["xmin"], b["ymax"] - b["ymin"]]
                per_tid.setdefault(str(o["tid"]), {})[str(f)] = {"bbox": box, "generated": o["generated"]}
        trajectories[rec["vid"]] = per_tid
        for qtype, key in (("interrogative", "questions"), ("declarative", "captions")):
            for sent in rec[key]:
                videos.append(
                    {
                        "original_video_id": rec["vid"],
                        "frame_count": rec["frame_count"],
                        "fps": rec["fps"],
                        "width": rec["width"],
                        "height": rec["height"],
                        "start_frame": rec["used_segment"]["begin_fid"],
                        "end_frame": rec["used_segment"]["end_fid"],
                        "tube_start_frame": rec["temporal_gt"]["begin_fid"],
                        "tube_end_frame": rec["temporal_gt"]["end_fid"],
                        "video_path": vidor["video_path"],
                        "caption": sent["description"],
                        "type": sent["type"],
                        "target_id": sent["target_id"],
                        "video_id": len(videos),
                        "qtype": qtype,
                    }
                )
    return {"videos": videos, "trajectories": trajectories}


def test_raw_sentences_ids_and_types(tmp_path):
    ann, vidor = _raw(tmp_path)
    samples = load_vidstg(ann, vidor_dir=vidor, video_root=tmp_path / "videos")
    ids = [s.id for s in samples]
    assert ids == [f"{VID_A}_0_10_d0", f"{VID_A}_0_10_d1", f"{VID_A}_0_10_q0", f"{VID_B}_0_5_d0"]
    qtypes = [s.gt.qtype for s in samples]
    assert qtypes.count("declarative") == 3 and qtypes.count("interrogative") == 1
    assert all(s.meta["qtype"] == s.gt.qtype for s in samples)
    s = samples[2]
    assert s.sentence == "Who holds the dog?"
    assert s.video == tmp_path / "videos" / "0000" / f"{VID_A}.mp4"
    assert (s.width, s.height, s.fps) == (640, 480, 30.0)
    assert s.gt.segment == (0, 10) and s.gt.fps == 30.0
    assert s.span_seconds == pytest.approx((0.2, 10 / 30))
    assert s.meta == {
        "vid": VID_A,
        "target_id": 0,
        "type": "adult",
        "category": "adult",
        "qtype": "interrogative",
    }


def test_raw_tube_takes_the_target_boxes_and_leaves_gaps(tmp_path):
    ann, vidor = _raw(tmp_path)
    by_id = {s.id: s for s in load_vidstg(ann, vidor_dir=vidor)}
    adult = by_id[f"{VID_A}_0_10_d0"].gt.tube
    assert (adult.start, adult.end) == (6, 10)  # temporal_gt end == frame_count is allowed
    np.testing.assert_array_equal(adult.frame_ids, [6, 7, 9])  # frame 8 has no adult box: none made up
    np.testing.assert_array_equal(adult.boxes, [[16, 20, 56, 90], [17, 20, 57, 90], [19, 20, 59, 90]])
    assert np.isnan(adult.boxes_at([8])).all()
    dog = by_id[f"{VID_A}_0_10_d1"].gt.tube
    np.testing.assert_array_equal(dog.frame_ids, [6, 7, 8, 9])
    np.testing.assert_array_equal(dog.boxes[0], [200, 106, 260, 156])
    cat = by_id[f"{VID_B}_0_5_d0"]
    assert (cat.gt.tube.start, cat.gt.tube.end) == (1, 3) and cat.video == Path(f"0001/{VID_B}.mp4")


def test_qtypes_filter_keeps_ids(tmp_path):
    ann, vidor = _raw(tmp_path)
    decl = load_vidstg(ann, vidor_dir=vidor, qtypes=("declarative",))
    assert [s.id for s in decl] == [f"{VID_A}_0_10_d0", f"{VID_A}_0_10_d1", f"{VID_B}_0_5_d0"]
    inter = load_vidstg(ann, vidor_dir=vidor, qtypes="interrogative")
    assert [s.id for s in inter] == [f"{VID_A}_0_10_q0"]
    with pytest.raises(DatasetError, match="qtypes"):
        load_vidstg(ann, vidor_dir=vidor, qtypes=("imperative",))


def test_preprocessed_gives_the_same_tubes(tmp_path):
    ann, vidor = _raw(tmp_path)
    raw = load_vidstg(ann, vidor_dir=vidor)
    pre_path = _write(tmp_path / "test.json", _preprocessed(RECORDS, {VID_A: _vidor_a(), VID_B: _vidor_b()}))
    pre = load_vidstg(pre_path)
    assert sorted(s.id for s in pre) == ["0", "1", "2", "3"]

    def key(s):
        return (s.meta["vid"], s.sentence)

    assert sorted(map(key, raw)) == sorted(map(key, pre))
    pre_by_key = {key(s): s for s in pre}
    for r in raw:
        p = pre_by_key[key(r)]
        assert (p.gt.tube.start, p.gt.tube.end) == (r.gt.tube.start, r.gt.tube.end)
        np.testing.assert_array_equal(p.gt.tube.frame_ids, r.gt.tube.frame_ids)
        np.testing.assert_array_equal(p.gt.tube.boxes, r.gt.tube.boxes)
        assert (p.gt.segment, p.gt.fps, p.gt.qtype) == (r.gt.segment, r.gt.fps, r.gt.qtype)
        assert (p.video, p.width, p.height) == (r.video, r.width, r.height)
        assert p.meta["target_id"] == r.meta["target_id"]
    assert [s.id for s in load_vidstg(pre_path, qtypes=("interrogative",))] == ["0"]


def test_raw_needs_vidor_dir(tmp_path):
    ann, _ = _raw(tmp_path)
    with pytest.raises(DatasetError, match="vidor_dir"):
        load_vidstg(ann)


def test_neither_form_is_refused(tmp_path):
    with pytest.raises(DatasetError, match="not a VidSTG file"):
        load_vidstg(_write(tmp_path / "x.json", {"foo": 1}))


def test_ambiguous_vidor_file_is_an_error(tmp_path):
    ann, vidor = _raw(tmp_path)
    _write(vidor / "9999" / f"{VID_A}.json", _vidor_a())
    with pytest.raises(DatasetError, match="several VidOR"):
        load_vidstg(ann, vidor_dir=vidor, skip_malformed=True)


def _broken(change):
    records = copy.deepcopy(RECORDS)
    change(records)
    return records


MALFORMED = {
    # name: (change to the records, id named in the error, words in the reason)
    "missing temporal_gt": (lambda r: r[1].pop("temporal_gt"), f"{VID_B}_0_5", "temporal_gt"),
    "temporal_gt past frame_count": (
        lambda r: r[1]["temporal_gt"].update(end_fid=6),
        f"{VID_B}_0_5",
        "frame_count",
    ),
    "reversed temporal_gt": (
        lambda r: r[1]["temporal_gt"].update(begin_fid=2, end_fid=1),
        f"{VID_B}_0_5",
        "temporal_gt",
    ),
    "empty used_segment": (lambda r: r[1]["used_segment"].update(end_fid=0), f"{VID_B}_0_0", "used_segment"),
    "unknown target": (lambda r: r[0]["captions"][1].update(target_id=7), f"{VID_A}_0_10_d1", "target_id 7"),
    "no description": (lambda r: r[0]["questions"][0].pop("description"), f"{VID_A}_0_10_q0", "description"),
    "no VidOR file": (lambda r: r[1].update(vid="4242"), "4242_0_5", "no VidOR"),
    "unreadable record": (lambda r: r[1].pop("used_segment"), "#1", "used_segment"),
    "duplicate record": (lambda r: r.append(copy.deepcopy(r[1])), f"{VID_B}_0_5", "same vid"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_raises_with_id(tmp_path, case):
    change, entry_id, reason = MALFORMED[case]
    ann, vidor = _raw(tmp_path, _broken(change))
    with pytest.raises(DatasetError, match=reason) as info:
        load_vidstg(ann, vidor_dir=vidor)
    assert repr(entry_id) in str(info.value)


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_skipped_and_reported(tmp_path, case):
    change, entry_id, _ = MALFORMED[case]
    ann, vidor = _raw(tmp_path, _broken(change))
    report = LoadReport()
    with pytest.warns(MalformedEntryWarning, match=entry_id):
        samples = load_vidstg(ann, vidor_dir=vidor, skip_malformed=True, report=report)
    assert report.skipped_ids == [entry_id]
    assert f"{VID_A}_0_10_d0" in {s.id for s in samples}
    assert report.loaded == len(samples)


def test_bad_vidor_box_spoils_its_record_only(tmp_path):
    ann, vidor = _raw(tmp_path)
    bad = _vidor_b()
    bad["trajectories"][2][0]["bbox"]["xmax"] = 0  # xmax < xmin on a GT frame
    _write(vidor / "0001" / f"{VID_B}.json", bad)
    with pytest.raises(DatasetError, match=f"{VID_B}_0_5_d0.*xmax"):
        load_vidstg(ann, vidor_dir=vidor)
    with pytest.warns(MalformedEntryWarning):
        samples = load_vidstg(ann, vidor_dir=vidor, skip_malformed=True)
    assert len(samples) == 3


def test_preprocessed_malformed_named_by_video_id(tmp_path):
    data = _preprocessed(RECORDS, {VID_A: _vidor_a(), VID_B: _vidor_b()})
    data["videos"][3]["target_id"] = 5
    path = _write(tmp_path / "test.json", data)
    with pytest.raises(DatasetError, match=r"'3'.*target_id 5"):
        load_vidstg(path)
    report = LoadReport()
    with pytest.warns(MalformedEntryWarning, match="'3'"):
        samples = load_vidstg(path, skip_malformed=True, report=report)
    assert [s.id for s in samples] == ["0", "1", "2"] and report.skipped_ids == ["3"]


@pytest.mark.parametrize("video_id", [True, None, 1.5, [3]])
def test_preprocessed_video_id_must_be_an_id(tmp_path, video_id):
    data = _preprocessed(RECORDS, {VID_A: _vidor_a(), VID_B: _vidor_b()})
    if video_id is None:
        del data["videos"][1]["video_id"]
    else:
        data["videos"][1]["video_id"] = video_id
    path = _write(tmp_path / "test.json", data)
    with pytest.raises(DatasetError, match=r"'#1'.*'video_id' must be an integer or a string"):
        load_vidstg(path)
    report = LoadReport()
    with pytest.warns(MalformedEntryWarning, match="'#1'"):
        samples = load_vidstg(path, skip_malformed=True, report=report)
    assert [s.id for s in samples] == ["0", "2", "3"] and report.skipped_ids == ["#1"]


def _zero_length_b(records):
    records[1]["temporal_gt"].update(begin_fid=1, end_fid=1)  # the cat sits for no frame


def test_zero_length_gt_span_loads_with_one_warning(tmp_path):
    records = _broken(_zero_length_b)
    ann, vidor = _raw(tmp_path, records)
    report = LoadReport()
    with pytest.warns(UserWarning, match=r"1 sentence\(s\) have a zero-length GT span.*'3001_0_5_d0'"):
        samples = load_vidstg(ann, vidor_dir=vidor, report=report)
    assert len(samples) == 4 and report.loaded == 4 and report.skipped == []  # counted, not dropped
    cat = {s.id: s for s in samples}[f"{VID_B}_0_5_d0"]
    assert (cat.gt.tube.start, cat.gt.tube.end) == (1, 1) and cat.gt.tube.frame_ids.size == 0
    assert cat.gt.segment == (0, 5) and cat.span_seconds == (1 / 25, 1 / 25)
    assert all(s.gt.cgstvg_end_inclusive is False for s in samples)  # CG-STVG scores VidSTG in full

    pre_path = _write(tmp_path / "test.json", _preprocessed(records, {VID_A: _vidor_a(), VID_B: _vidor_b()}))
    with pytest.warns(UserWarning, match=r"1 sentence\(s\) have a zero-length GT span.*'3'"):
        pre = load_vidstg(pre_path)
    assert len(pre) == 4
    assert (pre[3].gt.tube.start, pre[3].gt.tube.end) == (1, 1) and pre[3].gt.tube.frame_ids.size == 0


def test_zero_length_gt_span_scores_zero_in_both_protocols(tmp_path):
    from zsgrounding.metrics import evaluate

    ann, vidor = _raw(tmp_path, _broken(_zero_length_b))
    with pytest.warns(UserWarning, match="zero-length"):
        samples = load_vidstg(ann, vidor_dir=vidor, qtypes=("declarative",))
    gts = {s.id: s.gt for s in samples}
    # Every prediction equals its GT tube: the adult and dog sentences score tIoU 1 in both
    # protocols (VidSTG's GT is not shortened under cgstvg); the cat's [1,1) scores 0.
    preds = {s.id: s.gt.tube for s in samples}
    preds[f"{VID_B}_0_5_d0"] = Tube(0, 5)
    for protocol in ("tubedetr", "cgstvg"):
        r = evaluate(preds, gts, protocol=protocol)
        assert r.tiou.tolist() == [1.0, 1.0, 0.0], protocol
        assert r.viou[2] == 0.0 and r.summary()["n"] == 3
