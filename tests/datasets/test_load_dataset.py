"""load_dataset: name dispatch, the toy folder layout, and unknown names."""

import json

import pytest

from zsgrounding.datasets import DATASET_NAMES, load_dataset
from zsgrounding.errors import DatasetError

ENTRY = {
    "bbox": [[1, 2, 3, 4], [2, 3, 4, 5]],
    "st_time": 0.5,
    "ed_time": 0.7,
    "img_num": 30,
    "caption": "the red circle moves left",
    "width": 64,
    "height": 48,
    "st_frame": 6,
}


def test_toy_folder_routes_to_hcstvg_v1_with_fps(tmp_path):
    (tmp_path / "annotations.json").write_text(json.dumps({"toy_0000.mp4": {**ENTRY, "fps": 10}}))
    for path in (tmp_path, tmp_path / "annotations.json"):
        (s,) = load_dataset("toy", path)
        assert s.video == tmp_path / "videos" / "toy_0000.mp4"
        assert s.fps == 10.0 and s.gt.fps == 10.0
        assert (s.gt.tube.start, s.gt.tube.end) == (5, 7)
        assert s.gt.segment == (0, 29)


def test_hcstvg_names(tmp_path):
    v1 = tmp_path / "v1.json"
    v1.write_text(json.dumps({"a.mp4": ENTRY}))
    assert load_dataset("hcstvg-v1", v1, video_root=tmp_path)[0].video == tmp_path / "a.mp4"
    v2 = tmp_path / "v2.json"
    entry2 = {k: v for k, v in ENTRY.items() if k not in ("caption", "width", "height")}
    v2.write_text(json.dumps({"a.mp4": {**entry2, "English": "x", "img_size": [48, 64]}}))
    s = load_dataset("hcstvg-v2", v2)[0]
    assert (s.width, s.height) == (64, 48)


def test_charades_name(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("AB12C 1 2##someone sits.\n")
    assert load_dataset("charades-sta", path)[0].id == "AB12C_1"


def test_unknown_name_lists_valid_names(tmp_path):
    with pytest.raises(DatasetError) as info:
        load_dataset("hcstvg", tmp_path / "x.json")
    for name in DATASET_NAMES:
        assert name in str(info.value)


def test_vidstg_name(tmp_path):
    video = {
        "original_video_id": "v1",
        "frame_count": 4,
        "fps": 2.0,
        "width": 8,
        "height": 8,
        "start_frame": 0,
        "end_frame": 4,
        "tube_start_frame": 1,
        "tube_end_frame": 3,
        "video_path": "00/v1.mp4",
        "caption": "a box",
        "type": "toy",
        "target_id": 0,
        "video_id": 7,
        "qtype": "declarative",
    }
    trajectories = {"v1": {"0": {"1": {"bbox": [0, 0, 2, 2]}, "2": {"bbox": [1, 1, 2, 2]}}}}
    path = tmp_path / "test.json"
    path.write_text(json.dumps({"videos": [video], "trajectories": trajectories}))
    (s,) = load_dataset("vidstg", path)
    assert s.id == "7" and s.gt.tube.box_dict() == {1: [0, 0, 2, 2], 2: [1, 1, 3, 3]}
