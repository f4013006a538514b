"""Prediction files: round trip and one-line errors on malformed input."""

import json

import numpy as np
import pytest
from numpy.testing import assert_allclose

from zsgrounding.errors import PredictionError
from zsgrounding.predictions import load_predictions, load_span_predictions, save_predictions
from zsgrounding.types import Tube


def test_round_trip(tmp_path):
    tube = Tube(3, 9, [4, 3], [[1.5, 2, 3, 4], [0, 0, 1, 1]])
    path = save_predictions({"v.mp4": tube, "empty": Tube(0, 0)}, tmp_path / "sub" / "p.json")
    raw = json.loads(path.read_text())
    assert raw["v.mp4"] == {
        "start": 3,
        "end": 9,
        "boxes": {"3": [0.0, 0.0, 1.0, 1.0], "4": [1.5, 2.0, 3.0, 4.0]},
    }
    back = load_predictions(path)
    assert back["v.mp4"].frame_ids.tolist() == [3, 4]
    assert_allclose(back["v.mp4"].boxes, tube.boxes)
    assert len(back["empty"]) == 0 and not (tmp_path / "sub" / "p.json.tmp").exists()


@pytest.mark.parametrize(
    "content, needle",
    [
        ("[]", "expected an object keyed by sample id"),
        ('{"a": 3}', "prediction 'a': expected an object"),
        ('{"a": {"start": 1.5, "end": 3}}', "start must be an integer frame id"),
        ('{"a": {"start": true, "end": 3}}', "start must be an integer frame id"),
        ('{"a": {"start": -2, "end": 3}}', "start -2 is not a frame id"),
        ('{"a": {"start": 0, "end": 100000000000}}', "end 100000000000 is not a frame id"),
        (
            '{"a": {"start": 1, "end": 3, "boxes": {"\u00b2": [0, 0, 1, 1]}}}',
            "frame key '\u00b2' is not a frame id",
        ),
        ('{"a": {"start": 1, "end": 3, "boxes": {"-1": [0, 0, 1, 1]}}}', "frame key '-1' is not a frame id"),
        (
            '{"a": {"start": 1, "end": 3, "boxes": {"0": [0, 0, 1, 1], "00": [0, 0, 1, 1]}}}',
            "frame 0 is given twice",
        ),
        (
            '{"a": {"start": 1, "end": 3, "boxes": {"99999999999": [0, 0, 1, 1]}}}',
            "frame 99999999999 is not a frame id",
        ),
        ('{"a": {"start": 1, "end": 3, "boxes": {"1": [5, 0, 1, 1]}}}', "has x2 < x1 or y2 < y1"),
        ('{"a": {"start": 1, "end": 3, "boxes": {"1": [true, 0, 1, 1]}}}', "box must be 4 finite numbers"),
        ('{"a": {"start": 5, "end": 3}}', "end 3 is before start 5"),
        ('{"a": {"start": 1, "end": 3, "boxes": {"x": [0, 0, 1, 1]}}}', "frame key 'x'"),
        ('{"a": {"start": 1, "end": 3, "boxes": {"1": [0, 0, 1]}}}', "box must be 4 finite numbers"),
        ('{"a": {"start": 1, "end": 3, "boxes": {"1": [0, 0, 1, NaN]}}}', "box must be 4 finite numbers"),
    ],
)
def test_malformed_files_name_the_sample(tmp_path, content, needle):
    path = tmp_path / "p.json"
    path.write_text(content)
    with pytest.raises(PredictionError, match=needle):
        load_predictions(path)


def test_unreadable_files_are_one_line(tmp_path):
    latin = tmp_path / "latin.json"
    latin.write_bytes('{"caf\xe9": 1}'.encode("latin-1"))
    with pytest.raises(PredictionError, match="is not UTF-8 text"):
        load_predictions(latin)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(PredictionError, match="nested too deeply"):
        load_predictions(deep)


def test_duplicate_frames_rejected():
    with pytest.raises(ValueError, match="appears twice"):
        Tube(0, 3, np.array([1, 1]), np.zeros((2, 4)))


def test_boxes_outside_the_span_warn_once_and_load(tmp_path):
    path = tmp_path / "p.json"
    # a real predictor may write a box on every sampled frame; only the span's boxes are scored
    path.write_text(
        json.dumps(
            {
                "a": {"start": 2, "end": 4, "boxes": {"1": [0, 0, 1, 1], "3": [0, 0, 1, 1]}},
                "b": {"start": 0, "end": 2, "boxes": {"5": [0, 0, 1, 1]}},
                "c": {"start": 0, "end": 2, "boxes": {"1": [0, 0, 1, 1]}},
            }
        )
    )
    with pytest.warns(UserWarning) as caught:
        tubes = load_predictions(path)
    assert len(caught) == 1
    assert "2 prediction(s) have boxes outside" in str(caught[0].message)
    assert "first: 'a', frame 1" in str(caught[0].message)
    assert tubes["a"].frame_ids.tolist() == [1, 3]


def test_span_predictions_in_seconds(tmp_path):
    path = tmp_path / "preds.json"
    path.write_text('{"3MSZA_1": [24, 30.5], "AO8RW_3": [0.0, 0.0]}')
    assert load_span_predictions(path) == {"3MSZA_1": (24.0, 30.5), "AO8RW_3": (0.0, 0.0)}
    path.write_text('{"3MSZA_1": {"start": 1, "end": 3}}')  # the STVG tube format is refused
    with pytest.raises(PredictionError, match=r"'3MSZA_1': expected \[start, end\] in seconds"):
        load_span_predictions(path)
