import json
import os

import numpy as np
import pytest

from zsgrounding.errors import DatasetError
from zsgrounding.proposals.store import StaleTracksWarning, TrackStore, file_stem
from zsgrounding.toy.world import generate_one, object_tracks
from zsgrounding.types import Track

SETTINGS = {"detector": "toy", "box_threshold": 0.25, "stride": 2}


def _tracks():
    rng = np.random.default_rng(0)
    masks = rng.random((3, 6, 8)) < 0.4
    with_masks = Track([4, 0, 2], rng.uniform(0, 50, size=(3, 4)), "red car", 0.8125, 7, masks)
    plain = Track([1], [[0.1, 0.2, 3.3, 4.4]], "man", 1 / 3, 2)
    empty = Track(np.zeros(0, dtype=np.int64), np.zeros((0, 4)), "nothing", 0.0, 3)
    return [with_masks, plain, empty]


def _assert_same(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        assert (a.track_id, a.label, a.score) == (b.track_id, b.label, b.score)
        np.testing.assert_array_equal(a.frame_ids, b.frame_ids)
        np.testing.assert_array_equal(a.boxes, b.boxes)  # floats survive JSON exactly
        if b.masks is None:
            assert a.masks is None
        else:
            assert a.masks.dtype == bool
            np.testing.assert_array_equal(a.masks, b.masks)


def test_round_trip_boxes_and_masks_exactly(tmp_path):
    store = TrackStore(tmp_path / "tracks")
    tracks = _tracks()
    path = store.save("0001/2439741229", tracks, SETTINGS, num_frames=10, width=8, height=6)
    assert path == tmp_path / "tracks" / "0001%2F2439741229.json"
    _assert_same(store.load("0001/2439741229"), tracks)
    _assert_same(store.load("0001/2439741229", settings=dict(SETTINGS)), tracks)
    data = json.loads(path.read_text())
    assert {k: data[k] for k in ("format", "version", "video", "num_frames", "width", "height")} == {
        "format": "stvg-tracks",
        "version": 1,
        "video": "0001/2439741229",
        "num_frames": 10,
        "width": 8,
        "height": 6,
    }
    assert data["settings"] == {"box_threshold": 0.25, "detector": "toy", "stride": 2}
    first = data["tracks"][0]
    assert (first["id"], first["label"], first["frames"]) == (7, "red car", [0, 2, 4])
    assert len(first["masks"]) == 3 and first["masks"][0]["size"] == [6, 8]
    assert data["tracks"][1]["masks"] is None


def test_round_trip_toy_world_masks(tmp_path):
    video = generate_one(0)
    tracks = object_tracks(video, masks=True)
    store = TrackStore(tmp_path)
    store.save(video.key, tracks, {}, video.num_frames, video.width, video.height)
    assert store.path(video.key).name == "toy_00001.mp4.json"
    _assert_same(store.load(video.key, {}), tracks)


def test_missing_and_stale(tmp_path):
    store = TrackStore(tmp_path)
    assert store.load("55_vfjywN5CN0Y.mp4") is None
    store.save("55_vfjywN5CN0Y.mp4", _tracks()[:2], SETTINGS, 10, 8, 6)
    # A file made with other settings is not used, and says so (never dropped in silence).
    with pytest.warns(StaleTracksWarning, match=r"other settings \(stride: stored 2, asked 4\); not used"):
        assert store.load("55_vfjywN5CN0Y.mp4", {**SETTINGS, "stride": 4}) is None
    with pytest.warns(StaleTracksWarning, match="stored tracks were made with other settings"):
        assert store.load("55_vfjywN5CN0Y.mp4", {}) is None
    assert len(store.load("55_vfjywN5CN0Y.mp4")) == 2  # no settings given: whatever is stored
    # tuples and lists compare equal, as they read back from JSON alike
    store.save("v", [], {"sizes": (1, 2)}, 1, 8, 6)
    assert store.load("v", {"sizes": [1, 2]}) == []


def test_atomic_write_leaves_no_temp_file(tmp_path):
    store = TrackStore(tmp_path)
    store.save("a.mp4", _tracks(), SETTINGS, 10, 8, 6)
    store.save("a.mp4", _tracks()[1:], SETTINGS, 10, 8, 6)  # replaces the file
    assert sorted(os.listdir(tmp_path)) == ["a.mp4.json"]
    assert [t.track_id for t in store.load("a.mp4")] == [2, 3]


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    store = TrackStore(tmp_path)
    store.save("a.mp4", _tracks()[1:2], SETTINGS, 10, 8, 6)
    nan_track = Track([0], [[0.0, 0.0, np.nan, 1.0]])
    with pytest.raises(ValueError):
        store.save("a.mp4", [nan_track], SETTINGS, 10, 8, 6)
    with pytest.raises(ValueError, match="masks are"):
        store.save("a.mp4", _tracks()[:1], SETTINGS, 10, 16, 12)
    assert sorted(os.listdir(tmp_path)) == ["a.mp4.json"]

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        store.save("a.mp4", _tracks(), SETTINGS, 10, 8, 6)  # fails after the temp file is written
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["a.mp4.json"]
    assert [t.track_id for t in store.load("a.mp4")] == [2]


def test_file_names_are_safe_unique_and_readable():
    assert file_stem("55_vfjywN5CN0Y.mp4") == "55_vfjywN5CN0Y.mp4"
    assert file_stem("0001/2439741229") == "0001%2F2439741229"
    assert file_stem("0001_2439741229") != file_stem("0001/2439741229")
    assert file_stem("..") == "%2E."
    assert file_stem("a b?c") == "a%20b%3Fc"
    long_a, long_b = "x" * 300 + "a", "x" * 300 + "b"
    assert len(file_stem(long_a)) == 180 and file_stem(long_a) != file_stem(long_b)
    with pytest.raises(ValueError):
        file_stem("")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"format": "something-else"}', "not a stvg-tracks file"),
        ("[1, 2]", "not a stvg-tracks file"),
        ('{"format": "stvg-tracks", "version": 2, "video": "k"}', "version 2, expected 1"),
        ('{"format": "stvg-tracks", "version": 1, "video": "other"}', "holds tracks of video 'other'"),
        ('{"format": "stvg-tracks", "version": 1, "video": "k", "width": 8, "height": 6}', "missing key"),
        (
            '{"format": "stvg-tracks", "version": 1, "video": "k", "width": 8, "height": 6, "tracks":'
            ' [{"id": 0, "label": "a", "score": 1, "frames": [0, 1], "boxes": [[0, 0, 1, 1]], "masks": null}]}',
            "2 frames but boxes of shape",
        ),
        (
            '{"format": "stvg-tracks", "version": 1, "video": "k", "width": 8, "height": 6, "tracks":'
            ' [{"id": 0, "label": "a", "score": 1, "frames": [0], "boxes": [[0, 0, 1, 1]],'
            ' "masks": [{"size": [6, 8], "counts": "5"}]}]}',
            "RLE counts sum to 5",
        ),
    ],
)
def test_corrupt_or_foreign_file_raises_one_line(tmp_path, content, message):
    store = TrackStore(tmp_path)
    store.path("k").write_text(content)
    with pytest.raises(DatasetError, match=message) as info:
        store.load("k")
    text = str(info.value)
    assert text.startswith(str(store.path("k"))) and "\n" not in text
