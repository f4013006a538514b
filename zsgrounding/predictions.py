"""Prediction files: ``{"<sample id>": {"start": int, "end": int, "boxes": {"<frame>": [x1, y1, x2, y2]}}}``.

Frames are native and 0-based, ``end`` is exclusive, boxes are pixel xyxy. For HC-STVG the
sample id is the video key of the annotation file.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zsgrounding.errors import PredictionError
from zsgrounding.types import Tube


def tube_from_json(sample_id: str, entry: Any) -> Tube:
    """Parse one prediction entry, with a one-line error naming the sample on bad input."""
    if not isinstance(entry, Mapping):
        raise PredictionError(f"prediction {sample_id!r}: expected an object, got {type(entry).__name__}")
    try:
        start, end = entry["start"], entry["end"]
        boxes = entry.get("boxes", {})
    except KeyError as err:
        raise PredictionError(f"prediction {sample_id!r}: missing key {err.args[0]!r}") from None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
        raise PredictionError(f"prediction {sample_id!r}: start and end must be integer frame ids")
    if end < start:
        raise PredictionError(f"prediction {sample_id!r}: end {end} is before start {start}")
    if not isinstance(boxes, Mapping):
        raise PredictionError(f"prediction {sample_id!r}: boxes must map frame ids to [x1, y1, x2, y2]")
    for frame, box in boxes.items():
        if not str(frame).lstrip("-").isdigit():
            raise PredictionError(f"prediction {sample_id!r}: frame key {frame!r} is not an integer")
        if (
            not isinstance(box, list | tuple)
            or len(box) != 4
            or not all(isinstance(v, int | float) and math.isfinite(v) for v in box)
        ):
            raise PredictionError(f"prediction {sample_id!r}, frame {frame}: box must be 4 finite numbers")
    return Tube.from_dict(start, end, boxes)


def load_predictions(path: str | os.PathLike[str]) -> dict[str, Tube]:
    """Read a prediction file (see the module docstring)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise PredictionError(f"prediction file not found: {path}") from None
    except OSError as err:
        raise PredictionError(f"cannot read prediction file {path}: {err.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise PredictionError(f"{path} is not valid JSON (line {err.lineno}, column {err.colno})") from None
    if not isinstance(data, dict):
        raise PredictionError(f"{path}: expected an object keyed by sample id, got {type(data).__name__}")
    return {str(k): tube_from_json(str(k), v) for k, v in data.items()}


def save_predictions(predictions: Mapping[str, Tube], path: str | os.PathLike[str]) -> Path:
    """Write predictions atomically (a partial file never replaces a good one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({k: t.to_json() for k, t in predictions.items()}))
    os.replace(tmp, path)
    return path
