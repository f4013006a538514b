import json

import numpy as np
import pytest

from zsgrounding.errors import DatasetError
from zsgrounding.proposals.reference import (
    DEFAULT_SETTINGS,
    VideoInfo,
    import_reference_dir,
    load_reference_proposals,
    reference_stem,
)
from zsgrounding.proposals.rle import encode
from zsgrounding.proposals.source import CachedProposer, make_proposer
from zsgrounding.proposals.store import TrackStore
from zsgrounding.types import Clip

FRAMES = [0, 10, 20]


def _mask(h, w, y1, y2, x1, x2):
    m = np.zeros((h, w), dtype=bool)
    m[y1:y2, x1:x2] = True
    return m


def _person():
    """xyxy boxes at the video's size (8x6), absent on the middle frame."""
    masks = [_mask(6, 8, 1, 3, 2, 5), np.zeros((6, 8), bool), _mask(6, 8, 2, 5, 3, 7)]
    return {
        "id": 1,
        "bboxes": [[[2.0, 1.0, 5.0, 3.0]], [[0.0, 0.0, 0.0, 0.0]], [[3.0, 2.0, 7.0, 5.0]]],
        "masks": [encode(m) for m in masks],
        "class_name": "person",
        "box_format": "xyxy",
        "img_width": 8,
        "img_height": 6,
    }, masks


def _car():
    """xywh boxes, masks at half the image size (4x3): keys named differently on purpose."""
    small = [_mask(3, 4, 0, 1, 0, 2), _mask(3, 4, 1, 3, 1, 4), _mask(3, 4, 0, 3, 0, 4)]
    return {
        "track": 5,
        "b": [[[0.0, 0.0, 4.0, 2.0]], [[2.0, 2.0, 6.0, 4.0]], [[0.0, 0.0, 8.0, 6.0]]],
        "m": [encode(m) for m in small],
        "c": "car",
        "f": "xywh",
        "w": 8,
        "h": 6,
    }, small


def _write(path, tracks, frames=FRAMES):
    path.write_text(json.dumps({"sample_frames": frames, "dino_sam2_proposals": tracks}))
    return path


def test_load_boxes_masks_and_absent_frames(tmp_path):
    person, person_masks = _person()
    car, car_small = _car()
    frames, tracks = load_reference_proposals(_write(tmp_path / "v1.json", [person, car]))
    np.testing.assert_array_equal(frames, FRAMES)
    assert frames.dtype == np.int64
    assert [(t.track_id, t.label, t.score) for t in tracks] == [(1, "person", 1.0), (5, "car", 1.0)]
    p, c = tracks
    np.testing.assert_array_equal(p.frame_ids, [0, 20])  # all-zero box on frame 10: absent
    np.testing.assert_array_equal(p.boxes, [[2.0, 1.0, 5.0, 3.0], [3.0, 2.0, 7.0, 5.0]])
    np.testing.assert_array_equal(p.masks, np.stack([person_masks[0], person_masks[2]]))
    np.testing.assert_array_equal(c.frame_ids, [0, 10, 20])
    np.testing.assert_array_equal(c.boxes, [[0.0, 0.0, 4.0, 2.0], [2.0, 2.0, 8.0, 6.0], [0.0, 0.0, 8.0, 6.0]])
    assert c.masks.shape == (3, 6, 8)
    # nearest-neighbour upsampling by 2: every pixel becomes a 2x2 block
    np.testing.assert_array_equal(c.masks, np.stack([m.repeat(2, 0).repeat(2, 1) for m in car_small]))


def test_load_scaled_to_native_size(tmp_path):
    person, person_masks = _person()
    _, tracks = load_reference_proposals(_write(tmp_path / "v.json", [person]), width=16, height=12)
    np.testing.assert_array_equal(tracks[0].boxes, [[4.0, 2.0, 10.0, 6.0], [6.0, 4.0, 14.0, 10.0]])
    expected = np.stack([person_masks[k].repeat(2, 0).repeat(2, 1) for k in (0, 2)])
    np.testing.assert_array_equal(tracks[0].masks, expected)
    _, lean = load_reference_proposals(tmp_path / "v.json", masks=False)
    assert lean[0].masks is None


def test_frame_file_names_and_fallback_ids(tmp_path):
    person, _ = _person()
    twin = dict(person)  # the same id twice: tracks are numbered by position instead
    path = _write(tmp_path / "v.json", [person, twin], frames=["00000.jpg", "00010.jpg", "00020.jpg"])
    frames, tracks = load_reference_proposals(path)
    np.testing.assert_array_equal(frames, FRAMES)
    assert [t.track_id for t in tracks] == [0, 1]


def _malformed_cases():
    person, _ = _person()
    six = dict(list(person.items())[:6])
    short_boxes = {**person, "bboxes": person["bboxes"][:2]}
    bad_format = {**person, "box_format": "cxcywh"}
    bad_box = {**person, "bboxes": [[[1.0, 2.0, 3.0]], *person["bboxes"][1:]]}
    bad_rle = {**person, "masks": [{"size": [6, 8], "counts": "5"}, *person["masks"][1:]]}
    bad_size = {**person, "img_width": -8}
    return [
        ("{oops", "unreadable reference proposal file"),
        (json.dumps({"sample_frames": FRAMES}), "not a reference proposal file"),
        (json.dumps({"sample_frames": [0, 0, 1], "dino_sam2_proposals": []}), "a frame twice"),
        (json.dumps({"sample_frames": ["x.jpg"], "dino_sam2_proposals": []}), "sample_frames"),
        (
            json.dumps({"sample_frames": FRAMES, "dino_sam2_proposals": [six]}),
            "track 0: expected a dict of 7 items",
        ),
        (json.dumps({"sample_frames": FRAMES, "dino_sam2_proposals": [short_boxes]}), "list of 3, one per"),
        (json.dumps({"sample_frames": FRAMES, "dino_sam2_proposals": [bad_format]}), "'xyxy' or 'xywh'"),
        (json.dumps({"sample_frames": FRAMES, "dino_sam2_proposals": [bad_box]}), "4 numbers"),
        (json.dumps({"sample_frames": FRAMES, "dino_sam2_proposals": [bad_rle]}), "frame 0: bad RLE"),
        (
            json.dumps({"sample_frames": FRAMES, "dino_sam2_proposals": [person, bad_size]}),
            "track 1: image width",
        ),
    ]


@pytest.mark.parametrize(("content", "message"), _malformed_cases())
def test_malformed_file_names_file_and_problem(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(DatasetError, match=message) as info:
        load_reference_proposals(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_reference_proposals(tmp_path / "nope.json")


def test_import_dir_into_store(tmp_path):
    src = tmp_path / "proposals"
    src.mkdir()
    person, person_masks = _person()
    car, _ = _car()
    _write(src / "55_vfjywN5CN0Y.json", [person, car])
    _write(src / "other.json", [car])
    store = TrackStore(tmp_path / "store")
    assert reference_stem("55_vfjywN5CN0Y.mp4") == "55_vfjywN5CN0Y"
    videos = {"55_vfjywN5CN0Y": VideoInfo("55_vfjywN5CN0Y.mp4", 30, 16, 12)}
    assert import_reference_dir(src, store, videos=videos) == 1  # "other" is not in `videos`
    tracks = store.load(
        "55_vfjywN5CN0Y.mp4", {"source": "reference proposals of the released zero-shot code"}
    )
    assert [t.label for t in tracks] == ["person", "car"]
    np.testing.assert_array_equal(tracks[0].boxes, [[4.0, 2.0, 10.0, 6.0], [6.0, 4.0, 14.0, 10.0]])
    np.testing.assert_array_equal(tracks[0].masks[0], person_masks[0].repeat(2, 0).repeat(2, 1))
    data = json.loads(store.path("55_vfjywN5CN0Y.mp4").read_text())
    assert (data["num_frames"], data["width"], data["height"]) == (30, 16, 12)
    # already there with the same settings: skipped, unless overwriting
    assert import_reference_dir(src, store, videos=videos) == 0
    assert import_reference_dir(src, store, videos=videos, overwrite=True) == 1
    # without video infos: every file, under its own name, at its tracks' image size
    assert import_reference_dir(src, store, settings={"v": 2}, masks=False) == 2
    other = json.loads(store.path("other").read_text())
    assert (other["num_frames"], other["width"], other["height"]) == (21, 8, 6)
    assert store.load("other", {**DEFAULT_SETTINGS, "v": 2})[0].masks is None


def test_import_folders_layout(tmp_path):
    folder = tmp_path / "src" / "0001" / "2439741229"
    folder.mkdir(parents=True)
    person, _ = _person()
    car, _ = _car()
    _write(folder / "adult.json", [person])
    _write(folder / "car.json", [car])
    store = TrackStore(tmp_path / "store")
    assert import_reference_dir(tmp_path / "src", store, layout="folders") == 1
    tracks = store.load("0001/2439741229")
    assert [(t.track_id, t.label) for t in tracks] == [(0, "person"), (1, "car")]
    _write(folder / "car.json", [car], frames=[0, 10, 30])
    with pytest.raises(DatasetError, match="sample_frames differ"):
        import_reference_dir(tmp_path / "src", store, layout="folders", overwrite=True)
    with pytest.raises(DatasetError, match="folder not found"):
        import_reference_dir(tmp_path / "missing", store)


def _clip(frame_ids, num_frames=30, width=16, height=12):
    ids = np.asarray(frame_ids, dtype=np.int64)
    frames = np.zeros((ids.size, height, width, 3), dtype=np.uint8)
    return Clip(frames, ids, ids / 10.0, 10.0, num_frames, width, height)


def test_a_sparse_imported_file_gives_the_sampled_frames_the_nearest_stored_boxes(tmp_path):
    """Every 10th frame stored (0, 10, 20); the grounder samples others: nearest within 5 frames."""
    src = tmp_path / "proposals"
    src.mkdir()
    person, _ = _person()  # absent on frame 10
    car, _ = _car()
    _write(src / "v.json", [person, car])
    store_dir = tmp_path / "store"
    assert import_reference_dir(src, TrackStore(store_dir), videos={"v": VideoInfo("v.mp4", 30, 16, 12)}) == 1

    # the proposer a run builds: its settings are not the import's, and it must not extract
    proposer = make_proposer(store_dir=store_dir, detector="never/loaded")
    proposer.extract = None
    tracks = proposer(_clip([0, 4, 9, 14, 16, 24, 29]), "person", "v.mp4")
    person_t, car_t = tracks
    # person: frame 0 -> 0, 4 -> 0; 9 and 14 are nearest to 10 (absent); 16, 24 -> 20; 29 is 9 away
    np.testing.assert_array_equal(person_t.frame_ids, [0, 4, 16, 24])
    np.testing.assert_array_equal(person_t.boxes, [[4, 2, 10, 6]] * 2 + [[6, 4, 14, 10]] * 2)
    assert person_t.masks.shape == (4, 12, 16)
    np.testing.assert_array_equal(car_t.frame_ids, [0, 4, 9, 14, 16, 24])
    # exactly stored frames are read as they are
    exact = proposer(_clip([0, 20]), "person", "v.mp4")
    np.testing.assert_array_equal(exact[0].frame_ids, [0, 20])


def test_a_store_read_as_stored_ignores_settings_and_a_missing_file_is_one_error(tmp_path):
    store = TrackStore(tmp_path / "store")
    src = tmp_path / "proposals"
    src.mkdir()
    person, _ = _person()
    _write(src / "v.json", [person])
    import_reference_dir(
        src, store, videos={"v": VideoInfo("v.mp4", 30, 16, 12)}, settings={"source": "mine"}
    )
    as_stored = CachedProposer(store, None)
    assert [t.label for t in as_stored(_clip([1, 21]), "", "v.mp4")] == ["person"]
    with pytest.raises(DatasetError, match=r"no stored tracks for 'w\.mp4' \("):
        as_stored(_clip([1, 21]), "", "w.mp4")
