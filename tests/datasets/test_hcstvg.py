"""HC-STVG v1 / v2 loader on small hand-written annotation files."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from zsgrounding.datasets import LoadReport, MalformedEntryWarning, load_hcstvg
from zsgrounding.errors import DatasetError

KEY = "55_vfjywN5CN0Y.mp4"
V1 = {
    KEY: {
        "bbox": [[194, 0, 240, 359], [195, 1, 240, 358], [196.5, 2, 239, 357]],
        "st_time": 6.5,
        "ed_time": 6.6,
        "img_num": 480,
        "caption": "The man in brown clothes pours water. ",
        "width": 480,
        "height": 360,
        "st_frame": 157,
    },
    "2_other.mp4": {
        "bbox": [[0, 0, 10, 10], [1, 1, 10, 10]],
        "st_time": 0.0,
        "ed_time": 0.1,
        "img_num": 500,
        "caption": "A woman turns.",
        "width": 640,
        "height": 360,
        "st_frame": 1,
    },
}


def _write(tmp_path: Path, data, name="test.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _v2(v1: dict) -> dict:
    out = {}
    for key, entry in v1.items():
        entry = dict(entry)
        entry["English"] = entry.pop("caption")
        entry["img_size"] = [entry.pop("height"), entry.pop("width")]
        out[key] = entry
    return out


def test_v1_values_by_hand(tmp_path):
    samples = load_hcstvg(_write(tmp_path, V1), video_root=tmp_path / "videos")
    assert [s.id for s in samples] == [KEY, "2_other.mp4"]
    s = samples[0]
    assert s.video == tmp_path / "videos" / KEY
    assert s.sentence == "The man in brown clothes pours water."
    assert (s.width, s.height) == (480, 360)
    assert s.fps == 24.0 and s.gt.fps == 24.0  # img_num / 20 s
    assert s.gt.segment == (0, 479)  # the last frame is never evaluated
    assert s.span_seconds == (6.5, 6.6)
    tube = s.gt.tube
    assert (tube.start, tube.end) == (156, 159)  # st_frame 157 is 1-based
    np.testing.assert_array_equal(tube.frame_ids, [156, 157, 158])
    np.testing.assert_array_equal(
        tube.boxes, [[194, 0, 434, 359], [195, 1, 435, 359], [196.5, 2, 435.5, 359]]
    )
    assert s.gt.qtype is None
    assert samples[1].gt.tube.start == 0 and samples[1].gt.tube.end == 2
    assert samples[1].fps == 25.0


def test_video_path_without_root_is_the_key(tmp_path):
    assert load_hcstvg(_write(tmp_path, V1))[0].video == Path(KEY)


def test_tubedetr_convention_is_one_frame_later(tmp_path):
    s = load_hcstvg(_write(tmp_path, V1), start_convention="tubedetr")[0]
    assert (s.gt.tube.start, s.gt.tube.end) == (157, 160)
    np.testing.assert_array_equal(s.gt.tube.frame_ids, [157, 158, 159])


def test_fps_key_is_honoured(tmp_path):
    data = copy.deepcopy(V1)
    data[KEY]["fps"] = 10.0
    s = load_hcstvg(_write(tmp_path, data))[0]
    assert s.fps == 10.0 and s.gt.fps == 10.0


def test_tube_may_end_on_the_last_frame(tmp_path):
    data = copy.deepcopy(V1)
    data[KEY]["st_frame"] = 478  # frames 477, 478, 479 of 480
    assert load_hcstvg(_write(tmp_path, data))[0].gt.tube.end == 480


def test_v2_caption_and_img_size_order(tmp_path):
    samples = load_hcstvg(_write(tmp_path, _v2(V1)), version=2)
    s = samples[1]
    assert (s.width, s.height) == (640, 360)  # img_size is [height, width]
    assert s.sentence == "A woman turns."
    assert samples[0].gt.tube.start == 156


def test_v1_file_read_as_v2_names_missing_key(tmp_path):
    with pytest.raises(DatasetError, match=r"English|img_size"):
        load_hcstvg(_write(tmp_path, V1), version=2)


def _break(field, value):
    def apply(entry):
        if value is _DELETE:
            del entry[field]
        else:
            entry[field] = value

    return apply


_DELETE = object()
MALFORMED = {
    "missing caption": (_break("caption", _DELETE), "caption"),
    "missing bbox": (_break("bbox", _DELETE), "bbox"),
    "empty bbox": (_break("bbox", []), "empty"),
    "short box": (_break("bbox", [[1, 2, 3]]), "bbox"),
    "string box": (_break("bbox", [[1, 2, "3", 4]]), "bbox"),
    "negative width": (_break("bbox", [[1, 2, -3, 4]]), "negative"),
    "past img_num": (_break("st_frame", 500), "img_num"),  # frames 499, 500 of 500
    "st_frame zero": (_break("st_frame", 0), "st_frame"),
    "float st_frame": (_break("st_frame", 1.5), "st_frame"),
    "bad img_num": (_break("img_num", "480"), "img_num"),
    # 10**12 frames would be a 7 TiB allocation in the evaluator: refused as malformed.
    "huge img_num": (_break("img_num", 10**12), "more than any video has"),
    "boolean st_frame": (_break("st_frame", True), "st_frame"),
    "ed before st": (_break("ed_time", -1.0), "ed_time"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_entry_raises_with_its_id(tmp_path, case):
    breaker, needle = MALFORMED[case]
    data = copy.deepcopy(V1)
    breaker(data["2_other.mp4"])
    path = _write(tmp_path, data)
    with pytest.raises(DatasetError, match=needle) as info:
        load_hcstvg(path)
    assert "2_other.mp4" in str(info.value) and str(path) in str(info.value)


def test_deeply_nested_file_is_one_line(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DatasetError, match="nested too deeply"):
        load_hcstvg(path)


def test_entry_that_is_not_an_object(tmp_path):
    data = {**V1, "bad.mp4": [1, 2]}
    with pytest.raises(DatasetError, match=r"bad\.mp4"):
        load_hcstvg(_write(tmp_path, data))


def test_skip_malformed_loads_the_rest_and_reports(tmp_path):
    data = copy.deepcopy(V1)
    data["2_other.mp4"]["bbox"] = []
    report = LoadReport()
    with pytest.warns(MalformedEntryWarning, match="2_other.mp4"):
        samples = load_hcstvg(_write(tmp_path, data), skip_malformed=True, report=report)
    assert [s.id for s in samples] == [KEY]
    assert report.skipped_ids == ["2_other.mp4"]
    assert report.loaded == 1
    assert "empty" in report.skipped[0].reason


@pytest.mark.parametrize(
    ("content", "needle"),
    [(None, "not found"), ("{not json", "not valid JSON"), ("[1, 2]", "object keyed")],
)
def test_file_level_errors(tmp_path, content, needle):
    path = tmp_path / "ann.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DatasetError, match=needle) as info:
        load_hcstvg(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_arguments(tmp_path):
    path = _write(tmp_path, V1)
    with pytest.raises(DatasetError, match="version"):
        load_hcstvg(path, version=3)
    with pytest.raises(DatasetError, match="start_convention"):
        load_hcstvg(path, start_convention="zero_based")
