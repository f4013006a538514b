"""A user's own track file: read and checked, then resampled to the grounder's frames."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from zsgrounding.errors import DatasetError
from zsgrounding.proposals.trackfile import (
    FileTrack,
    TrackFileProposer,
    TrackFileWarning,
    read_track_file,
    resample,
)
from zsgrounding.types import Clip


def _write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def _clip(video: Path, frame_ids: list[int], num_frames: int = 50, size: tuple[int, int] = (100, 80)) -> Clip:
    width, height = size
    frames = np.zeros((len(frame_ids), height, width, 3), dtype=np.uint8)
    ids = np.array(frame_ids, dtype=np.int64)
    return Clip(frames, ids, ids / 10.0, 10.0, num_frames, width, height, path=video)


def test_resample_keeps_given_boxes_interpolates_between_and_stops_at_null() -> None:
    nan = [math.nan] * 4
    track = FileTrack(
        np.array([10, 20, 30, 40]),
        np.array([[10, 10, 20, 20], [20, 10, 40, 30], nan, [0, 0, 5, 5]], dtype=np.float64),
        label="cup",
        score=0.5,
        track_id=3,
    )
    got = resample(track, np.array([5, 10, 15, 20, 25, 35, 40, 45]), width=100, height=100)
    # 5: before the first box; 25 and 35: next to the null; 45: after the last
    assert got.frame_ids.tolist() == [10, 15, 20, 40]
    assert got.boxes.tolist() == [[10, 10, 20, 20], [15, 10, 30, 25], [20, 10, 40, 30], [0, 0, 5, 5]]
    assert (got.label, got.score, got.track_id) == ("cup", 0.5, 3)
    # 3/10 of the way from frame 10 to 20: x1 = 10 + 0.3 * 10, x2 = 20 + 0.3 * 20, y2 = 20 + 0.3 * 10
    np.testing.assert_allclose(resample(track, np.array([13]), 100, 100).boxes, [[13, 10, 26, 23]])


def test_resample_clips_to_the_frame_and_drops_boxes_wholly_outside() -> None:
    track = FileTrack(
        np.array([0, 1]), np.array([[90, 70, 120, 130], [-20, -20, -5, -5]], dtype=np.float64), "x", 1.0, 0
    )
    got = resample(track, np.array([0, 1]), width=100, height=80)
    assert got.frame_ids.tolist() == [0] and got.boxes.tolist() == [[90, 70, 100, 80]]


def test_a_file_is_read_with_defaults(tmp_path: Path) -> None:
    data = {
        "video": "a.mp4",
        "tracks": [
            {"label": " man ", "boxes": {"7": [1, 2, 3, 4], "3": None}},
            {"label": "dog", "score": 0.25, "id": 9, "boxes": {"0": [0, 0, 1.5, 1.5]}},
        ],
    }
    video, tracks = read_track_file(_write(tmp_path / "t.json", data))
    assert video == "a.mp4"
    assert [(t.label, t.score, t.track_id) for t in tracks] == [("man", 1.0, 0), ("dog", 0.25, 9)]
    assert tracks[0].frames.tolist() == [3, 7] and np.isnan(tracks[0].boxes[0]).all()
    assert tracks[0].boxes[1].tolist() == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("{not json", "not valid JSON"),
        ([{"label": "a", "boxes": {"0": [0, 0, 1, 1]}}], 'expected an object {"tracks"'),
        ({"tracks": [], "fps": 25}, "unknown keys ['fps']"),
        ({"tracks": [{"boxes": {"0": [0, 0, 1, 1]}}]}, "track 0: 'label' must be"),
        ({"tracks": [{"label": "a", "boxes": {}}]}, "track 0: 'boxes' must map"),
        (
            {"tracks": [{"label": "a", "boxes": {"first": [0, 0, 1, 1]}}]},
            "frame 'first' is not a frame index",
        ),
        ({"tracks": [{"label": "a", "boxes": {"-1": [0, 0, 1, 1]}}]}, "frame '-1' is not a frame index"),
        ({"tracks": [{"label": "a", "boxes": {"0": [0, 0, 1]}}]}, "frame 0: a box is [x1, y1, x2, y2]"),
        ({"tracks": [{"label": "a", "boxes": {"0": [5, 0, 5, 1]}}]}, "frame 0: box [5, 0, 5, 1] has no area"),
        ({"tracks": [{"label": "a", "boxes": {"7": [0, 0, 1, 1], "07": [0, 0, 1, 1]}}]}, "given twice"),
        ({"tracks": [{"label": "a", "score": "high", "boxes": {"0": [0, 0, 1, 1]}}]}, "'score' must be"),
        ({"tracks": [{"label": "a", "mask": 1, "boxes": {"0": [0, 0, 1, 1]}}]}, "unknown keys ['mask']"),
        (
            {
                "tracks": [
                    {"label": "a", "boxes": {"0": [0, 0, 1, 1]}},
                    {"label": "b", "id": 0, "boxes": {"0": [0, 0, 1, 1]}},
                ]
            },
            "two tracks share an id",
        ),
    ],
)
def test_a_broken_file_is_one_line_naming_the_place(tmp_path: Path, content: object, said: str) -> None:
    path = _write(tmp_path / "t.json", content)
    with pytest.raises(DatasetError) as caught:
        read_track_file(path)
    assert said in str(caught.value) and str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_the_proposer_checks_the_video_and_its_length(tmp_path: Path) -> None:
    video = tmp_path / "a.mp4"
    wrong = _write(tmp_path / "w.json", {"video": "b.mp4", "tracks": []})
    with pytest.raises(DatasetError, match=r"holds tracks of video 'b\.mp4', not 'a\.mp4'"):
        TrackFileProposer({video: wrong})
    late = _write(tmp_path / "late.json", {"tracks": [{"label": "a", "boxes": {"50": [0, 0, 1, 1]}}]})
    with pytest.raises(DatasetError, match=r"frame 50 is past the video's last frame \(49\)"):
        TrackFileProposer({video: late})(_clip(video, [0, 10]), "a")


def test_the_proposer_resamples_reports_missed_tracks_and_falls_back(tmp_path: Path) -> None:
    video, other = tmp_path / "a.mp4", tmp_path / "b.mp4"
    file = _write(
        tmp_path / "t.json",
        {
            "tracks": [
                {"label": "a", "boxes": {"0": [0, 0, 10, 10], "20": [10, 0, 20, 10]}},
                {"label": "b", "boxes": {"3": [0, 0, 4, 4]}},
            ]
        },
    )
    asked: list[str | None] = []
    proposer = TrackFileProposer({video: file}, fallback=lambda clip, phrase, key: asked.append(key) or [])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracks = proposer(_clip(video, [0, 5, 10, 30]), "a")
    assert [t.label for t in tracks] == ["a"]
    assert tracks[0].frame_ids.tolist() == [0, 5, 10] and tracks[0].boxes[1].tolist() == [2.5, 0, 12.5, 10]
    said = [str(w.message) for w in caught if issubclass(w.category, TrackFileWarning)]
    assert len(said) == 1 and "1 of 2 tracks have no box on the 4 sampled frames" in said[0]
    assert proposer(_clip(other, [0]), "a", "b.mp4") == [] and asked == ["b.mp4"]
    with pytest.raises(DatasetError, match=r"no track file for b\.mp4"):
        TrackFileProposer({video: file})(_clip(other, [0]), "a", "b.mp4")
