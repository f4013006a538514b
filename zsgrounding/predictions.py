"""Prediction files: ``{"<sample id>": {"start": int, "end": int, "boxes": {"<frame>": [x1, y1, x2, y2]}}}``.

Frames are native and 0-based, ``end`` is exclusive, boxes are pixel xyxy. For HC-STVG the
sample id is the video key of the annotation file.

Temporal grounding (Charades-STA) predictions are one span in seconds per query,
``{"<sample id>": [start_s, end_s]}`` with ``0 <= start_s <= end_s``, the ids as
:func:`zsgrounding.datasets.load_charades` names the queries (``f"{VIDEO}_{line}"``); read them
with :func:`load_span_predictions`.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from zsgrounding.atomic import write_text_atomic
from zsgrounding.errors import PredictionError
from zsgrounding.types import MAX_FRAME, Tube

_FRAME_KEY = re.compile(r"[0-9]+")


def _frame_id(value: Any, sample_id: str, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise PredictionError(f"prediction {sample_id!r}: {what} must be an integer frame id, got {value!r}")
    if not 0 <= value <= MAX_FRAME:
        raise PredictionError(
            f"prediction {sample_id!r}: {what} {value} is not a frame id (0 .. {MAX_FRAME:,})"
        )
    return value


def tube_from_json(sample_id: str, entry: Any) -> Tube:
    """Parse one prediction entry, with a one-line error naming the sample on bad input."""
    if not isinstance(entry, Mapping):
        raise PredictionError(f"prediction {sample_id!r}: expected an object, got {type(entry).__name__}")
    try:
        start, end = entry["start"], entry["end"]
        boxes = entry.get("boxes", {})
    except KeyError as err:
        raise PredictionError(f"prediction {sample_id!r}: missing key {err.args[0]!r}") from None
    start, end = _frame_id(start, sample_id, "start"), _frame_id(end, sample_id, "end")
    if end < start:
        raise PredictionError(f"prediction {sample_id!r}: end {end} is before start {start}")
    if not isinstance(boxes, Mapping):
        raise PredictionError(f"prediction {sample_id!r}: boxes must map frame ids to [x1, y1, x2, y2]")
    parsed: dict[int, list[float]] = {}
    for frame, box in boxes.items():
        key = str(frame)
        if not _FRAME_KEY.fullmatch(key):  # ASCII digits only: "-3", "²" and "1.5" are not frames
            raise PredictionError(f"prediction {sample_id!r}: frame key {key!r} is not a frame id")
        number = _frame_id(int(key), sample_id, "frame")
        if number in parsed:
            raise PredictionError(f"prediction {sample_id!r}: frame {number} is given twice (key {key!r})")
        if (
            not isinstance(box, list | tuple)
            or len(box) != 4
            or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in box
            )
        ):
            raise PredictionError(f"prediction {sample_id!r}, frame {key}: box must be 4 finite numbers")
        if box[2] < box[0] or box[3] < box[1]:
            raise PredictionError(
                f"prediction {sample_id!r}, frame {key}: box {list(box)} has x2 < x1 or y2 < y1"
            )
        parsed[number] = [float(v) for v in box]
    return Tube.from_dict(start, end, parsed)


def span_from_json(sample_id: str, entry: Any) -> tuple[float, float]:
    """Parse one temporal prediction ``[start_s, end_s]``, with a one-line error naming the sample."""
    if (
        not isinstance(entry, list | tuple)
        or len(entry) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in entry)
    ):
        shown = repr(entry) if len(repr(entry)) <= 60 else repr(entry)[:57] + "..."
        raise PredictionError(
            f"prediction {sample_id!r}: expected [start, end] in seconds (2 finite numbers), got {shown}"
        )
    start, end = float(entry[0]), float(entry[1])
    if start < 0:
        raise PredictionError(f"prediction {sample_id!r}: start {start:g} s is negative")
    if end < start:
        raise PredictionError(f"prediction {sample_id!r}: end {end:g} s is before start {start:g} s")
    return start, end


def load_span_predictions(path: str | os.PathLike[str]) -> dict[str, tuple[float, float]]:
    """Read a temporal prediction file ``{"<sample id>": [start_s, end_s]}`` (module docstring)."""
    path = Path(path)
    data = _read_object(path)
    return {str(k): span_from_json(str(k), v) for k, v in data.items()}


def load_predictions(path: str | os.PathLike[str]) -> dict[str, Tube]:
    """Read a prediction file (see the module docstring)."""
    path = Path(path)
    data = _read_object(path)
    tubes = {str(k): tube_from_json(str(k), v) for k, v in data.items()}
    _warn_outside_span(path, tubes)
    return tubes


def _read_object(path: Path) -> dict[str, Any]:
    """The JSON object of a prediction file, or a one-line :class:`PredictionError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PredictionError(f"prediction file not found: {path}") from None
    except UnicodeDecodeError as err:
        raise PredictionError(f"{path} is not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise PredictionError(f"cannot read prediction file {path}: {err.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise PredictionError(f"{path} is not valid JSON (line {err.lineno}, column {err.colno})") from None
    except RecursionError:
        raise PredictionError(f"{path} is nested too deeply to be a prediction file") from None
    if not isinstance(data, dict):
        raise PredictionError(f"{path}: expected an object keyed by sample id, got {type(data).__name__}")
    return data


def _warn_outside_span(path: Path, tubes: Mapping[str, Tube]) -> None:
    """One warning when boxes lie outside their tube's span: a real predictor may write them
    (boxes on every sampled frame), but the evaluator scores only the span's boxes."""
    outside = [
        (sample_id, int(t.frame_ids[(t.frame_ids < t.start) | (t.frame_ids >= t.end)][0]))
        for sample_id, t in tubes.items()
        if np.any((t.frame_ids < t.start) | (t.frame_ids >= t.end))
    ]
    if outside:
        sample_id, frame = outside[0]
        warnings.warn(
            f"{path}: {len(outside)} prediction(s) have boxes outside their [start, end) span"
            f" (first: {sample_id!r}, frame {frame}); those boxes are not scored",
            stacklevel=2,
        )


def save_predictions(predictions: Mapping[str, Tube], path: str | os.PathLike[str]) -> Path:
    """Write predictions atomically (a partial file never replaces a good one)."""
    return write_text_atomic(path, json.dumps({k: t.to_json() for k, t in predictions.items()}))
