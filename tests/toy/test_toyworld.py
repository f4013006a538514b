"""The toy world: deterministic, unambiguous captions, GT tubes that follow the drawn target."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from zsgrounding.errors import DatasetError
from zsgrounding.toy.world import (
    ACTIONS,
    COLOURS,
    MOTIONS,
    CaptionParts,
    ToyVideo,
    ToyWorldConfig,
    generate,
    generate_one,
    load_sidecar,
    make_dataset,
    object_tracks,
    sidecar_meta,
    sidecar_tracks,
)
from zsgrounding.types import Sample
from zsgrounding.video import probe, read_frames

HCSTVG_KEYS = {"bbox", "st_time", "ed_time", "img_num", "st_frame", "width", "height", "caption", "fps"}
PALETTE = np.array(list(COLOURS.values()), dtype=int)


@pytest.fixture(scope="module")
def videos() -> list[ToyVideo]:
    return generate(80, ToyWorldConfig(seed=3))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("toy"), 6, ToyWorldConfig(seed=5), progress=False)


def centre(box: np.ndarray) -> tuple[int, int]:
    """``(row, col)`` of the pixel at the centre of an xyxy box."""
    x1, y1, x2, y2 = (int(v) for v in box)
    return (y1 + y2) // 2, (x1 + x2) // 2


def test_same_seed_same_world() -> None:
    a, b = generate(3, ToyWorldConfig(seed=11)), generate(3, ToyWorldConfig(seed=11))
    for x, y in zip(a, b, strict=True):
        assert x.caption == y.caption
        np.testing.assert_array_equal(x.frames, y.frames)
        np.testing.assert_array_equal(x.tube.boxes, y.tube.boxes)
    other = generate(3, ToyWorldConfig(seed=12))
    assert [v.caption for v in other] != [v.caption for v in a]
    # video i depends only on (seed, i): a bigger dataset starts with the smaller one
    assert generate_one(2, ToyWorldConfig(seed=11)).caption == a[2].caption


def test_same_seed_byte_identical_files(dataset: Path, tmp_path: Path) -> None:
    again = make_dataset(tmp_path, 6, ToyWorldConfig(seed=5), progress=False)
    assert again.read_bytes() == dataset.read_bytes()
    assert (tmp_path / "toyworld.json").read_bytes() == (dataset.parent / "toyworld.json").read_bytes()


def test_caption_parts_join_to_caption(videos: list[ToyVideo]) -> None:
    for video in videos:
        parts = video.parts
        assert video.caption == f"{parts.attribute_phrase} {parts.action_phrase}"
        assert parts.action_phrase == f"that {ACTIONS[parts.action]}"
        expected = ["the", *([parts.size] if parts.size else []), parts.colour, parts.shape]
        assert parts.attribute_phrase == " ".join(expected)
        assert CaptionParts.parse(video.caption) == parts
    assert {v.parts.size is None for v in videos} == {True, False}  # both caption forms occur
    for bad in ("a red circle that grows", "the red circle that flies", "the circle red that grows"):
        with pytest.raises(ValueError):
            CaptionParts.parse(bad)


def test_gt_tube_is_the_targets_action_span(videos: list[ToyVideo]) -> None:
    seen = set()
    for video in videos:
        target, action, tube = video.objects[video.target], video.parts.action, video.tube
        seen.add(action)
        assert target.role == "target"
        assert target.action_spans(video.num_frames)[action] == [(tube.start, tube.end)]
        assert tube.frame_ids.tolist() == list(range(tube.start, tube.end))  # a box on every frame
        np.testing.assert_array_equal(
            tube.boxes, target.boxes[tube.start - target.visible[0] : tube.end - target.visible[0]]
        )
        # The boxes themselves show the action (checked on the boxes, not on the timeline).
        first, last = tube.boxes[0], tube.boxes[-1]
        side = tube.boxes[:, 2] - tube.boxes[:, 0]
        if action == "move_left":
            assert last[0] < first[0]
        elif action == "move_right":
            assert last[0] > first[0]
        elif action == "move_up":
            assert last[1] < first[1]
        elif action == "move_down":
            assert last[1] > first[1]
        elif action == "grow":
            assert side[-1] > side[0]
        elif action == "shrink":
            assert side[-1] < side[0]
        elif action == "stay_still":
            assert (tube.start, tube.end) == (0, video.num_frames)
            assert np.all(tube.boxes == first)
        elif action == "appear":
            assert 0 < tube.start == target.visible[0] and tube.end == video.num_frames
        elif action == "leave":
            assert tube.start == 0 and tube.end == target.visible[1] < video.num_frames
    assert seen == set(ACTIONS)


def test_objects_move_only_inside_motion_segments(videos: list[ToyVideo]) -> None:
    for video in videos:
        for obj in video.objects:
            changed = np.flatnonzero(np.any(obj.boxes[1:] != obj.boxes[:-1], axis=1)) + 1 + obj.visible[0]
            moving = {f for seg in obj.motions for f in range(seg.start, seg.end)}
            assert set(changed.tolist()) <= moving
            assert all(seg.action in MOTIONS for seg in obj.motions)
            assert len({seg.action for seg in obj.motions}) == len(obj.motions)  # each motion at most once


def test_every_distractor_shares_exactly_one_cue(videos: list[ToyVideo]) -> None:
    for video in videos:
        parts, n = video.parts, video.num_frames
        fits = [(parts.matches(o), parts.action in o.action_spans(n)) for o in video.objects]
        assert fits[video.target] == (True, True)
        for i, (attribute, action) in enumerate(fits):
            if i != video.target:
                assert attribute != action, (video.name, video.objects[i])
                assert video.objects[i].role == ("attribute" if attribute else "action")
        assert sum(a and b for a, b in fits) == 1  # the caption names exactly one object
        if len(video.objects) >= 3:
            assert {o.role for o in video.objects} == {"target", "attribute", "action"}


def test_boxes_in_frame_disjoint_and_sized(videos: list[ToyVideo]) -> None:
    cfg = ToyWorldConfig()
    for video in videos:
        occupied: dict[int, list[np.ndarray]] = {}
        for obj in video.objects:
            b = obj.boxes
            assert (
                np.all(b[:, :2] >= 0) and np.all(b[:, 2] <= video.width) and np.all(b[:, 3] <= video.height)
            )
            assert np.all(b == np.rint(b))
            side = b[:, 2] - b[:, 0]
            limit = cfg.small_px * cfg.scale_factor
            assert np.all(side <= limit) if obj.size == "small" else np.all(side > limit)
            for f, box in zip(obj.frame_ids.tolist(), b, strict=True):
                for other in occupied.get(f, []):
                    assert (
                        box[2] <= other[0] or other[2] <= box[0] or box[3] <= other[1] or other[3] <= box[1]
                    )
                occupied.setdefault(f, []).append(box)


def test_target_colour_at_box_centre_in_memory(videos: list[ToyVideo]) -> None:
    for video in videos:
        colour = COLOURS[video.objects[video.target].colour]
        for f, box in zip(video.tube.frame_ids, video.tube.boxes, strict=True):
            assert tuple(video.frames[f][centre(box)]) == colour


def test_annotation_file_is_hcstvg_v1(dataset: Path) -> None:
    annotations = json.loads(dataset.read_text())
    sidecar = load_sidecar(dataset.parent)
    assert list(annotations) == [f"toy_{i:05d}.mp4" for i in range(1, 7)]
    assert sidecar["seed"] == 5 and sidecar["config"]["seed"] == 5
    for key, entry in annotations.items():
        assert set(entry) == HCSTVG_KEYS
        assert all(isinstance(entry[k], int) for k in ("img_num", "st_frame", "width", "height"))
        assert all(isinstance(entry[k], float) for k in ("st_time", "ed_time", "fps"))
        assert isinstance(entry["caption"], str)
        assert all(len(b) == 4 and all(isinstance(v, int) for v in b) for b in entry["bbox"])
        fps, start = entry["fps"], entry["st_frame"] - 1  # st_frame is 1-based
        assert start == round(entry["st_time"] * fps)
        assert start + len(entry["bbox"]) == round(entry["ed_time"] * fps) <= entry["img_num"]
        video = sidecar["videos"][key]
        target = video["objects"][video["target"]]
        for k, (x, y, w, h) in enumerate(entry["bbox"]):
            assert target["boxes"][str(start + k)] == [x, y, x + w, y + h]
        assert entry["caption"] == video["caption"]
        assert set(video["caption_parts"]) >= {
            "attribute_phrase",
            "action_phrase",
            "colour",
            "shape",
            "size",
            "action",
        }


def test_videos_decode_back(dataset: Path) -> None:
    annotations = json.loads(dataset.read_text())
    sidecar = load_sidecar(dataset.parent)
    for key, entry in annotations.items():
        path = dataset.parent / "videos" / key
        info = probe(path)
        assert (info.num_frames, info.fps, info.width, info.height) == (
            entry["img_num"],
            entry["fps"],
            entry["width"],
            entry["height"],
        )
        # after lossy coding the target's centre pixel is still nearest to its colour
        video = sidecar["videos"][key]
        target = video["objects"][video["target"]]
        ids = list(range(entry["st_frame"] - 1, entry["st_frame"] - 1 + len(entry["bbox"])))
        clip = read_frames(path, ids)
        for frame, f in zip(clip.frames, ids, strict=True):
            pixel = frame[centre(np.array(target["boxes"][str(f)]))].astype(int)
            assert list(COLOURS)[int(np.abs(PALETTE - pixel).sum(1).argmin())] == target["colour"]


def test_to_sample_and_tracks(videos: list[ToyVideo], dataset: Path) -> None:
    video = videos[0]
    sample = video.to_sample()
    assert isinstance(sample, Sample)
    assert (sample.id, sample.sentence, sample.fps) == (video.key, video.caption, video.fps)
    assert sample.gt is not None and sample.gt.tube is video.tube
    assert sample.gt.segment == (0, video.num_frames - 1)
    assert sample.span_seconds == (video.tube.start / video.fps, video.tube.end / video.fps)
    assert sample.meta["target_id"] == video.target
    assert sample.meta["caption_parts"] == video.parts.to_json()
    tracks = object_tracks(video, masks=True)
    assert [t.track_id for t in tracks] == list(range(len(video.objects)))
    target = tracks[video.target]
    np.testing.assert_array_equal(target.boxes_at(video.tube.frame_ids), video.tube.boxes)
    assert target.label == video.objects[video.target].label
    for track in tracks:  # each mask is the drawn shape: inside its box, covering its centre
        assert track.masks is not None
        for mask, box in zip(track.masks, track.boxes, strict=True):
            rows, cols = np.nonzero(mask)
            x1, y1, x2, y2 = box
            assert rows.min() >= y1 and rows.max() < y2 and cols.min() >= x1 and cols.max() < x2
            assert mask[centre(box)]
    # from disk: the sidecar gives the same tracks and the same meta as memory
    disk = load_sidecar(dataset.parent)["videos"]["toy_00001.mp4"]
    memory = generate_one(0, ToyWorldConfig(seed=5))
    for a, b in zip(sidecar_tracks(disk), object_tracks(memory), strict=True):
        np.testing.assert_array_equal(a.frame_ids, b.frame_ids)
        np.testing.assert_array_equal(a.boxes, b.boxes)
        assert (a.label, a.track_id) == (b.label, b.track_id)
    assert sidecar_meta(disk) == memory.to_sample().meta


def test_config_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="colours"):
        ToyWorldConfig(colours=("red", "magenta"))
    with pytest.raises(ValueError, match="scale_factor"):
        ToyWorldConfig(scale_factor=1.5)
    with pytest.raises(ValueError, match="even"):
        ToyWorldConfig(width=127)
    with pytest.raises(DatasetError):
        load_sidecar(tmp_path)


def test_config_shapes_the_videos() -> None:
    cfg = ToyWorldConfig(seed=1, width=64, height=48, fps=5.0, min_seconds=3, max_seconds=3, max_objects=2)
    for video in generate(4, cfg):
        assert video.frames.shape == (15, 48, 64, 3) and video.fps == 5.0
        assert len(video.objects) == 2
