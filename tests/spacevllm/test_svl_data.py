"""SpaceVLLM records: JSONL round trips, one-line validation errors, converters from annotation files
written in the real formats, and ratio mixing."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from torch.utils.data import DataLoader

from spacevllm.convert import convert, records_from_samples
from spacevllm.data import KEYS, Record, RecordWarning, read_records, span_frames, write_records
from spacevllm.mix import MixedDataset, RecordDataset
from zsgrounding.datasets import load_dataset
from zsgrounding.errors import DatasetError
from zsgrounding.toy.world import ToyWorldConfig, load_sidecar, make_dataset

# ------------------------------------------------------------------------------------ records


def _stvg(media: Path, rid: str = "a") -> Record:
    boxes = {5: [10.0, 20.0, 40.0, 60.0], 7: [12.0, 22.0, 42.0, 62.0]}
    meta = {"span_frames": [5, 8], "segment": [0, 199]}
    return Record("stvg", rid, media, "the man in red walks", 320, 240, 10.0, 200, (0.5, 0.8), boxes, meta)


def _vtg(media: Path) -> Record:
    return Record("vtg", "b", media, "person turn a light on.", None, None, span=(24.3, 30.4))


def _rec(media: Path) -> Record:
    return Record(
        "rec", "c", media, "left guy", 640, 480, boxes={0: [100.0, 50.0, 300.0, 150.0]}, meta={"split": "val"}
    )


def test_round_trip_all_tasks(tmp_path: Path) -> None:
    out = tmp_path / "data" / "mix.jsonl"
    inside = tmp_path / "data" / "videos" / "v1.mp4"
    outside = tmp_path / "elsewhere" / "img.jpg"
    records = [_stvg(inside), _vtg(Path("clips/3MSZA.mp4")), _rec(outside)]
    write_records(out, records)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3
    first = json.loads(lines[0])
    assert list(first) == list(KEYS)
    assert first == {
        "task": "stvg",
        "id": "a",
        "media": "videos/v1.mp4",  # inside the folder: written relative to it
        "query": "the man in red walks",
        "width": 320,
        "height": 240,
        "fps": 10.0,
        "num_frames": 200,
        "span": [0.5, 0.8],
        "boxes": {"5": [10.0, 20.0, 40.0, 60.0], "7": [12.0, 22.0, 42.0, 62.0]},
        "meta": {"span_frames": [5, 8], "segment": [0, 199]},
    }
    assert json.loads(lines[1])["media"] == "clips/3MSZA.mp4"
    assert json.loads(lines[2])["media"] == str(outside)
    back = read_records(out)
    # relative paths come back resolved against the JSONL's folder
    assert [r.media for r in back] == [inside, tmp_path / "data" / "clips" / "3MSZA.mp4", outside]
    records[1].media = tmp_path / "data" / "clips" / "3MSZA.mp4"
    assert back == records
    assert [p.name for p in out.parent.iterdir()] == ["mix.jsonl"]  # no temporary file left


def test_write_is_atomic_and_replaces(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    write_records(out, [_stvg(tmp_path / "v.mp4", "x"), _stvg(tmp_path / "v.mp4", "y")])
    with pytest.raises(ValueError, match="duplicate record id 'x'"):
        write_records(out, [_stvg(tmp_path / "v.mp4", "x"), _stvg(tmp_path / "v.mp4", "x")])
    assert [r.id for r in read_records(out)] == ["x", "y"]  # the failed write left the file alone
    bad = _stvg(tmp_path / "v.mp4", "z")
    bad.meta["path"] = Path("not json")
    with pytest.raises(ValueError, match="record 'z': meta is not JSON-serialisable"):
        write_records(out, [bad])
    write_records(out, [_vtg(tmp_path / "v.mp4")])
    assert [r.id for r in read_records(out)] == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl"]


def test_ground_truth_and_span_frames(tmp_path: Path) -> None:
    gt = _stvg(tmp_path / "v.mp4").ground_truth()
    assert (gt.tube.start, gt.tube.end, gt.fps, gt.segment, gt.qtype) == (5, 8, 10.0, (0, 199), None)
    assert gt.tube.frame_ids.tolist() == [5, 7]
    assert span_frames((0.5, 0.8), 10.0) == (5, 8)
    assert span_frames((6.5, 11.95), 24.0) == (156, 287)
    with pytest.raises(ValueError, match="only an stvg record"):
        _vtg(tmp_path / "v.mp4").ground_truth()


GOOD = _stvg(Path("v.mp4")).to_json()


def _line(**change: object) -> str:
    obj = {**GOOD, **change}
    return json.dumps({k: v for k, v in obj.items() if v != "DROP"})


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON: Expecting property name enclosed in double quotes at column 2"),
        ("[1, 2]", "a record must be a JSON object, got list"),
        (_line(boxes="DROP"), "missing key(s) 'boxes'"),
        (json.dumps({**GOOD, "boxs": {}}), "unknown key(s) 'boxs' (put extras in 'meta')"),
        (_line(task="vqa"), "task must be one of ('stvg', 'vtg', 'rec'), got 'vqa'"),
        (_line(query=" "), "query must be a non-empty string, got ' '"),
        (_line(media=3), "media must be a string, got 3"),
        (_line(width=0), "width must be an integer >= 1, got 0"),
        (_line(height=2.5), "height must be an integer >= 1, got 2.5"),
        (_line(fps=None), "fps is required for an stvg record (its boxes are keyed by native frame)"),
        (_line(fps=-1), "fps must be > 0, got -1.0"),
        (_line(span=[0.8, 0.5]), "span must satisfy 0 <= start < end, got [0.8, 0.5]"),
        (_line(span=None), "span is required for a stvg record"),
        (_line(boxes={}), "an stvg record needs at least one box"),
        (
            _line(boxes={"8": [0, 0, 1, 1]}),
            "box frames [8] lie outside the span's native frames [5, 8) at 10 fps",
        ),
        (_line(boxes={"5": [0, 0, 1]}), "box of frame 5 must be [x1, y1, x2, y2], got [0, 0, 1]"),
        (_line(boxes={"5": [5, 0, 1, 1]}), "box of frame 5 has x2 < x1 or y2 < y1: [5.0, 0.0, 1.0, 1.0]"),
        (_line(boxes={"x": [0, 0, 1, 1]}), "box frame id 'x' must be an integer >= 0, got 'x'"),
        (_line(num_frames=6, boxes={"7": [0, 0, 1, 1]}), "box frame 7 is past num_frames=6"),
        (_line(task="vtg"), "a vtg record has no boxes (boxes must be {})"),
        (_line(task="rec", fps=None, num_frames=None), "a rec record has no span (it must be null)"),
        (_line(task="rec"), "a rec record has no fps or num_frames (they must be null)"),
        (
            _line(task="rec", fps=None, num_frames=None, span=None),
            "a rec record has exactly one box, keyed 0; got frames [5, 7]",
        ),
        (_line(meta=[]), "meta must be an object, got list"),
    ],
)
def test_validation_errors_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(_line() + "\n\n" + line + "\n", encoding="utf-8")
    with pytest.raises(DatasetError) as info:
        read_records(path)
    assert str(info.value) == f"{path}:3: {message}"


def test_duplicate_id_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "dup.jsonl"
    path.write_text(_line() + "\n" + _line() + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"dup.jsonl:2: duplicate id 'a' \(first on line 1\)$"):
        read_records(path)
    with pytest.raises(DatasetError, match="record file not found"):
        read_records(tmp_path / "none.jsonl")


# ------------------------------------------------------------------------------------ converters


def _write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


HCSTVG_V1 = {
    "1_abc.mp4": {
        "bbox": [[10, 20, 30, 40], [11, 21, 30, 40], [12, 22, 30, 40]],
        "st_time": 0.5,
        "ed_time": 0.8,
        "img_num": 200,
        "st_frame": 6,
        "width": 320,
        "height": 240,
        "caption": "The man in red walks to the door.",
    },
    "2_def.mp4": {
        "bbox": [[0, 0, 8, 8], [1, 0, 8, 8]],
        "st_time": 19.8,
        "ed_time": 19.9,
        "img_num": 500,
        "st_frame": 498,
        "width": 640,
        "height": 360,
        "caption": "A woman sits down.",
    },
}


def test_convert_hcstvg_v1(tmp_path: Path) -> None:
    ann = _write_json(tmp_path / "test.json", HCSTVG_V1)
    out = tmp_path / "out" / "hcstvg.jsonl"
    records = convert("hcstvg-v1", ann, out, video_root=tmp_path / "out" / "videos")
    first, second = records
    assert first == Record(
        "stvg",
        "1_abc.mp4",
        tmp_path / "out" / "videos" / "1_abc.mp4",
        "The man in red walks to the door.",
        320,
        240,
        10.0,
        200,
        (0.5, 0.8),
        {5: [10.0, 20.0, 40.0, 60.0], 6: [11.0, 21.0, 41.0, 61.0], 7: [12.0, 22.0, 42.0, 62.0]},
        {"st_frame": 6, "source_span": [0.5, 0.8], "span_frames": [5, 8], "segment": [0, 199]},
    )
    # 500 frames over HC-STVG's 20 s: 25 fps; st_frame 498 (1-based) -> native frames 497, 498
    assert (second.fps, second.num_frames, second.span, list(second.boxes)) == (
        25.0,
        500,
        (19.88, 19.96),
        [497, 498],
    )
    assert json.loads(out.read_text().splitlines()[0])["media"] == "videos/1_abc.mp4"
    assert read_records(out) == records
    gt = load_dataset("hcstvg-v1", ann)[0].gt
    back = records[0].ground_truth()
    assert (back.tube.start, back.tube.end, back.segment, back.fps) == (
        gt.tube.start,
        gt.tube.end,
        gt.segment,
        gt.fps,
    )
    assert back.tube.boxes.tolist() == gt.tube.boxes.tolist()


def test_convert_hcstvg_v2_as_vtg(tmp_path: Path) -> None:
    entry = dict(HCSTVG_V1["1_abc.mp4"])
    entry["English"] = entry.pop("caption")
    entry["img_size"] = [entry.pop("height"), entry.pop("width")]
    ann = _write_json(tmp_path / "valv2.json", {"1_abc.mp4": entry})
    (record,) = convert("hcstvg-v2", ann, tmp_path / "v2.jsonl", task="vtg")
    assert (record.task, record.span, record.boxes, record.width, record.height) == (
        "vtg",
        (0.5, 0.8),
        {},
        320,
        240,
    )
    assert record.media == Path("1_abc.mp4")  # no video_root: a bare name, relative to the JSONL
    assert read_records(tmp_path / "v2.jsonl")[0].media == tmp_path / "1_abc.mp4"


VIDSTG = {
    "videos": [
        {
            "original_video_id": "2401075277",
            "frame_count": 100,
            "fps": 5.0,
            "width": 640,
            "height": 480,
            "start_frame": 0,
            "end_frame": 100,
            "tube_start_frame": 10,
            "tube_end_frame": 14,
            "video_path": "0000/2401075277.mp4",
            "caption": "a dog chases a red ball.",
            "type": "dog",
            "target_id": 1,
            "video_id": 7,
            "qtype": "declarative",
        },
        {
            "original_video_id": "2401075277",
            "frame_count": 100,
            "fps": 5.0,
            "width": 640,
            "height": 480,
            "start_frame": 0,
            "end_frame": 100,
            "tube_start_frame": 10,
            "tube_end_frame": 14,
            "video_path": "0000/2401075277.mp4",
            "caption": "what chases a red ball?",
            "type": "dog",
            "target_id": 1,
            "video_id": 8,
            "qtype": "interrogative",
        },
    ],
    "trajectories": {
        "2401075277": {
            "1": {
                "10": {"bbox": [1, 2, 3, 4]},
                "11": {"bbox": [2, 2, 3, 4]},
                "13": {"bbox": [4, 2, 3, 4]},  # no box on frame 12: the tube stays sparse
                "20": {"bbox": [9, 9, 9, 9]},
            }
        }
    },
}


def test_convert_vidstg_preprocessed(tmp_path: Path) -> None:
    ann = _write_json(tmp_path / "test.json", VIDSTG)
    records = convert("vidstg", ann, tmp_path / "vidstg.jsonl", video_root=tmp_path / "videos")
    assert [r.id for r in records] == ["7", "8"]
    first = records[0]
    assert (first.span, first.fps, first.num_frames, first.width) == ((2.0, 2.8), 5.0, None, 640)
    assert first.boxes == {10: [1.0, 2.0, 4.0, 6.0], 11: [2.0, 2.0, 5.0, 6.0], 13: [4.0, 2.0, 7.0, 6.0]}
    assert first.media == tmp_path / "videos" / "0000" / "2401075277.mp4"
    assert first.meta == {
        "vid": "2401075277",
        "target_id": 1,
        "type": "dog",
        "qtype": "declarative",
        "source_span": [2.0, 2.8],
        "span_frames": [10, 14],
        "segment": [0, 100],
    }
    assert records[1].ground_truth().qtype == "interrogative"
    assert read_records(tmp_path / "vidstg.jsonl") == records


CHARADES = "3MSZA 24.3 30.4##person turn a light on.\n\nABCDE 0.0 5.5##person opens a door.\n"


def test_convert_charades_sta(tmp_path: Path) -> None:
    ann = tmp_path / "charades_sta_test.txt"
    ann.write_text(CHARADES, encoding="utf-8")
    records = convert("charades-sta", ann, tmp_path / "charades.jsonl", video_root=tmp_path / "videos")
    assert records == [
        Record(
            "vtg",
            "3MSZA_1",
            tmp_path / "videos" / "3MSZA.mp4",
            "person turn a light on.",
            None,
            None,
            span=(24.3, 30.4),
            meta={"vid": "3MSZA", "line": 1, "source_span": [24.3, 30.4]},
        ),
        Record(
            "vtg",
            "ABCDE_3",
            tmp_path / "videos" / "ABCDE.mp4",
            "person opens a door.",
            None,
            None,
            span=(0.0, 5.5),
            meta={"vid": "ABCDE", "line": 3, "source_span": [0.0, 5.5]},
        ),
    ]
    assert read_records(tmp_path / "charades.jsonl") == records


def test_charades_empty_span_is_an_error_or_skipped(tmp_path: Path) -> None:
    ann = tmp_path / "c.txt"
    ann.write_text("AAAAA 3.0 3.0##person sits.\nBBBBB 1.0 2.0##person stands.\n", encoding="utf-8")
    message = "sample 'AAAAA_1' makes no valid record: span must satisfy 0 <= start < end, got [3.0, 3.0]"
    with pytest.raises(DatasetError) as info:
        convert("charades-sta", ann, tmp_path / "c.jsonl")
    assert str(info.value) == message
    assert not (tmp_path / "c.jsonl").exists()
    with pytest.warns(RecordWarning, match="AAAAA_1"):
        records = convert("charades-sta", ann, tmp_path / "c.jsonl", skip_invalid=True)
    assert [r.id for r in records] == ["BBBBB_2"]


def test_probe_fills_what_charades_lacks(tmp_path: Path) -> None:
    make_dataset(tmp_path / "toy", 1, ToyWorldConfig(seed=1), progress=False)
    num_frames = load_sidecar(tmp_path / "toy")["videos"]["toy_00001.mp4"]["num_frames"]
    ann = tmp_path / "c.txt"
    ann.write_text("toy_00001 0.5 1.5##the shape moves.\nmissing 0 1##no video here.\n", encoding="utf-8")
    samples = load_dataset("charades-sta", ann, video_root=tmp_path / "toy" / "videos")
    with_probe, missing = records_from_samples(samples, probe_videos=True)
    assert (with_probe.width, with_probe.height, with_probe.fps, with_probe.num_frames) == (
        128,
        96,
        10.0,
        num_frames,
    )
    assert (missing.width, missing.fps, missing.num_frames) == (None, None, None)
    plain = records_from_samples(samples)[0]
    assert (plain.width, plain.fps, plain.num_frames) == (None, None, None)


def test_stvg_needs_a_tube(tmp_path: Path) -> None:
    ann = tmp_path / "c.txt"
    ann.write_text(CHARADES, encoding="utf-8")
    samples = load_dataset("charades-sta", ann)
    with pytest.raises(
        DatasetError, match="'3MSZA_1' makes no valid record: the sample has no ground-truth tube"
    ):
        records_from_samples(samples, task="stvg")
    with pytest.raises(DatasetError, match="task must be one of"):
        records_from_samples(samples, task="vqa")


INSTANCES = {
    "images": [
        {"id": 1, "file_name": "COCO_train2014_000000000001.jpg", "width": 640, "height": 480},
        {"id": 2, "file_name": "COCO_train2014_000000000002.jpg", "width": 500, "height": 375},
    ],
    "annotations": [
        {"id": 10, "image_id": 1, "bbox": [100, 50, 200, 100], "category_id": 1},
        {"id": 20, "image_id": 2, "bbox": [30.5, 40, 50, 60], "category_id": 3},
    ],
}
REFS = [
    {
        "ref_id": 0,
        "ann_id": 10,
        "image_id": 1,
        "split": "val",
        "sentences": [{"sent": "man on the left", "sent_id": 0}, {"sent": "left guy", "sent_id": 1}],
    },
    {
        "ref_id": 1,
        "ann_id": 20,
        "image_id": 2,
        "split": "testA",
        "sentences": [{"sent": "red car", "sent_id": 2}],
    },
]


def test_convert_refcoco(tmp_path: Path) -> None:
    inst = _write_json(tmp_path / "instances.json", INSTANCES)
    refs = _write_json(tmp_path / "refs(unc).json", REFS)
    out = tmp_path / "rec.jsonl"
    records = convert("refcoco", inst, out, refs=refs, split=None, image_root=tmp_path / "images")
    assert [(r.id, r.query, r.boxes, r.meta["split"]) for r in records] == [
        ("0_0", "man on the left", {0: [100.0, 50.0, 300.0, 150.0]}, "val"),
        ("0_1", "left guy", {0: [100.0, 50.0, 300.0, 150.0]}, "val"),
        ("1_0", "red car", {0: [30.5, 40.0, 80.5, 100.0]}, "testA"),
    ]
    first = records[0]
    assert (first.task, first.width, first.height, first.fps, first.span, first.num_frames) == (
        "rec",
        640,
        480,
        None,
        None,
        None,
    )
    assert first.meta == {"ref_id": 0, "ann_id": 10, "image_id": 1, "split": "val"}
    assert json.loads(out.read_text().splitlines()[0])["media"] == "images/COCO_train2014_000000000001.jpg"
    assert read_records(out) == records
    with pytest.raises(DatasetError, match="pass refs="):
        convert("refcoco", inst, out)


def test_convert_toy_dataset(tmp_path: Path) -> None:
    folder = tmp_path / "toy"
    make_dataset(folder, 2, ToyWorldConfig(seed=5), progress=False)
    out = folder / "toy.jsonl"
    records = convert("toy", folder, out)
    sidecar = load_sidecar(folder)["videos"]
    samples = load_dataset("toy", folder)
    assert [r.id for r in records] == ["toy_00001.mp4", "toy_00002.mp4"]
    for record, sample in zip(records, samples, strict=True):
        entry = sidecar[record.id]
        assert (record.fps, record.num_frames, record.width, record.height) == (
            10.0,
            entry["num_frames"],
            128,
            96,
        )
        assert record.meta["span_frames"] == [entry["tube"]["start"], entry["tube"]["end"]]
        assert record.boxes == sample.gt.tube.box_dict()
        assert record.meta["caption_parts"] == entry["caption_parts"]
        assert record.media == (folder / "videos" / record.id).absolute()
        assert json.loads(out.read_text().splitlines()[0])["media"] == "videos/toy_00001.mp4"
    assert read_records(out) == records


# ------------------------------------------------------------------------------------ mixing


def _source(task: str, n: int) -> list[Record]:
    media = Path("/data/v.mp4")
    if task == "rec":
        return [Record("rec", f"r{i}", media, "q", 10, 10, boxes={0: [0, 0, 1, 1]}) for i in range(n)]
    return [Record("vtg", f"{task}{i}", media, "q", None, None, span=(0, 1)) for i in range(n)]


SOURCES = {"stvg": _source("s", 10), "vtg": _source("t", 4), "rec": _source("rec", 100)}


def test_mixing_counts_match_the_ratios() -> None:
    mixed = MixedDataset(SOURCES, {"stvg": 0.5, "vtg": 0.3, "rec": 0.2}, seed=3, length=1000)
    assert mixed.quotas == {"rec": 200, "stvg": 500, "vtg": 300}
    names = Counter(name for name, _ in mixed.plan())
    assert names == {"stvg": 500, "vtg": 300, "rec": 200}
    # 1:1:1 over 100 slots: the leftover slot goes to the first name
    assert MixedDataset(SOURCES, {"stvg": 1, "vtg": 1, "rec": 1}, length=100).quotas == {
        "rec": 34,
        "stvg": 33,
        "vtg": 33,
    }
    # the default length is every record of the sources with a positive ratio
    assert len(MixedDataset(SOURCES, {"stvg": 1, "vtg": 1, "rec": 0})) == 14


def test_mixing_is_deterministic_and_epochs_differ() -> None:
    ratios = {"stvg": 0.5, "vtg": 0.3, "rec": 0.2}
    a, b = MixedDataset(SOURCES, ratios, seed=1), MixedDataset(SOURCES, ratios, seed=1)
    assert [r.id for r in a] == [r.id for r in b]
    assert a.plan() != MixedDataset(SOURCES, ratios, seed=2).plan()
    epoch0 = a.plan()
    a.set_epoch(1)
    assert a.plan() != epoch0
    assert a.plan() == b.plan(epoch=1)  # any epoch, computed directly
    assert [a[i] for i in range(len(a))] == list(a)
    small = MixedDataset({"x": _source("x", 3), "y": _source("y", 2)}, {"x": 2, "y": 1}, seed=0, length=6)
    assert small.plan() == [("x", 2), ("x", 0), ("y", 0), ("y", 1), ("x", 1), ("x", 2)]
    # x: a pass [2, 0, 1], then the next pass begins; epoch 1 goes on with that pass
    assert small.plan(epoch=1) == [("x", 1), ("y", 1), ("y", 0), ("x", 0), ("x", 0), ("x", 2)]


def test_a_source_that_runs_out_is_cycled_without_repeats_inside_a_pass() -> None:
    mixed = MixedDataset(SOURCES, {"stvg": 0.5, "vtg": 0.3, "rec": 0.2}, seed=4, length=100)
    stream = [i for e in range(3) for name, i in mixed.plan(epoch=e) if name == "vtg"]
    assert len(stream) == 90  # 30 per epoch from a source of 4
    passes = [stream[k : k + 4] for k in range(0, 88, 4)]
    assert all(sorted(p) == [0, 1, 2, 3] for p in passes)  # each pass is a permutation
    assert len({tuple(p) for p in passes}) > 1  # reshuffled at every wrap
    # each epoch continues the source's stream where the previous one stopped
    longer = MixedDataset(SOURCES, {"stvg": 0.5, "vtg": 0.3, "rec": 0.2}, seed=4, length=300)
    assert [i for name, i in longer.plan() if name == "vtg"] == stream


def test_mixing_rejects_bad_ratios() -> None:
    with pytest.raises(ValueError, match="ratios name"):
        MixedDataset(SOURCES, {"stvg": 1})
    with pytest.raises(ValueError, match="at least one ratio must be positive"):
        MixedDataset(SOURCES, {"stvg": 0, "vtg": 0, "rec": 0})
    with pytest.raises(ValueError, match="'vtg' has a positive ratio but no records"):
        MixedDataset({"vtg": []}, {"vtg": 1})
    with pytest.raises(ValueError, match="must be a number >= 0"):
        MixedDataset(SOURCES, {"stvg": -1, "vtg": 1, "rec": 1})


def test_record_dataset_feeds_a_dataloader(tmp_path: Path) -> None:
    path = write_records(tmp_path / "r.jsonl", [_stvg(tmp_path / "v.mp4", "x"), _vtg(tmp_path / "v.mp4")])
    dataset = RecordDataset.from_jsonl(path)
    batches = list(DataLoader(dataset, batch_size=2, collate_fn=list))
    assert [[r.id for r in batch] for batch in batches] == [["x", "b"]]
    assert batches[0][0].boxes[5] == [10.0, 20.0, 40.0, 60.0]
