"""SpaceVLLM training data: one JSONL format for the three Uni-STG tasks.

One record per line, a JSON object with exactly these keys (``null`` where a field does not apply)::

    {"task": "stvg", "id": "55_vfjywN5CN0Y.mp4", "media": "videos/55_vfjywN5CN0Y.mp4",
     "query": "The man in brown clothes pours ...", "width": 480, "height": 360,
     "fps": 24.0, "num_frames": 480, "span": [6.5, 11.95],
     "boxes": {"156": [194.0, 0.0, 434.0, 359.0], ...}, "meta": {...}}

- ``task``: ``stvg`` (a tube: span + boxes), ``vtg`` (a span only) or ``rec`` (one box on an image).
- ``media``: the video (stvg, vtg) or image (rec). A relative path is relative to the JSONL's
  folder; :func:`read_records` resolves it, :func:`write_records` writes paths inside that folder
  relative to it (so the folder can move) and other absolute paths as they are.
- ``width``, ``height``: native size in pixels (boxes are in it). Required for stvg and rec; a vtg
  record may leave them ``null`` (Charades-STA does not give them).
- ``fps``, ``num_frames``: native frame rate and frame count of the video. stvg needs ``fps`` (boxes
  are keyed by native frame); ``num_frames`` may be ``null`` (unknown: read it from the video). A
  vtg record may leave both ``null``; a rec record must.
- ``span``: ``[start, end)`` seconds, ``0 <= start < end``; required for stvg / vtg, ``null`` for
  rec. The native frames in it are :func:`span_frames` (frame ``f`` is shown at ``f / fps``).
- ``boxes``: ``{native frame id: [x1, y1, x2, y2]}`` pixels. stvg: at least one, every frame inside
  the span (a tube may be sparse); rec: exactly ``{"0": box}``; vtg: ``{}``.
- ``meta``: a JSON object of anything else (dataset ids, the GT's native ``span_frames`` and
  evaluation ``segment``, VidSTG ``qtype``, synthesis provenance).

:class:`Record` validates itself on construction (``ValueError``); :func:`read_records` turns any
problem into a one-line :class:`~zsgrounding.errors.DatasetError` naming the file and the line.
Datasets become records in :mod:`spacevllm.convert`; tasks are mixed for training in
:mod:`spacevllm.mix`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from zsgrounding.atomic import write_text_atomic
from zsgrounding.errors import DatasetError
from zsgrounding.types import GroundTruth, Tube

Task = Literal["stvg", "vtg", "rec"]
TASKS: tuple[str, ...] = ("stvg", "vtg", "rec")
REC_DATASETS: tuple[str, ...] = ("refcoco", "refcoco+", "refcocog")
KEYS: tuple[str, ...] = (
    "task",
    "id",
    "media",
    "query",
    "width",
    "height",
    "fps",
    "num_frames",
    "span",
    "boxes",
    "meta",
)
_EPS = 1e-6  # tolerance of the seconds <-> frames round trip


class RecordWarning(UserWarning):
    """A sample was skipped by a converter under ``skip_invalid=True``; the message says why."""


# ---------------------------------------------------------------------------------------- record


def span_frames(span: tuple[float, float], fps: float) -> tuple[int, int]:
    """Native frames ``[lo, hi)`` whose presentation time ``f / fps`` lies in the half-open ``span``."""
    return math.ceil(span[0] * fps - _EPS), math.ceil(span[1] * fps - _EPS)


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _integer(value: Any, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def box_list(value: Any, what: str) -> list[float]:
    """``value`` as ``[x1, y1, x2, y2]`` floats (``ValueError`` naming ``what`` otherwise)."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, list | tuple) or len(value) != 4:
        raise ValueError(f"{what} must be [x1, y1, x2, y2], got {value!r}")
    x1, y1, x2, y2 = (_number(v, what) for v in value)
    if x2 < x1 or y2 < y1:
        raise ValueError(f"{what} has x2 < x1 or y2 < y1: {[x1, y1, x2, y2]}")
    return [x1, y1, x2, y2]


def _frame_key(key: Any) -> int:
    # JSON object keys are strings; in memory the keys are ints.
    if isinstance(key, str) and key.strip().lstrip("-").isdigit():
        key = int(key)
    return _integer(key, f"box frame id {key!r}", 0)


@dataclass
class Record:
    """One training / evaluation sample of any Uni-STG task (see the module docstring for the rules).

    Attributes:
        task: ``"stvg"``, ``"vtg"`` or ``"rec"``.
        id: unique within a file.
        media: video (stvg, vtg) or image (rec) path.
        query: the sentence to ground.
        width, height: native size in pixels (``None`` only for vtg).
        fps: native frame rate (``None`` for rec; may be ``None`` for vtg).
        num_frames: frames in the video (``None`` for rec, or when unknown).
        span: ``(start, end)`` half-open seconds (``None`` for rec).
        boxes: ``{native frame id: [x1, y1, x2, y2]}`` pixels (rec: ``{0: box}``; vtg: ``{}``).
        meta: JSON-serialisable extras.
    """

    task: Task
    id: str
    media: Path
    query: str
    width: int | None
    height: int | None
    fps: float | None = None
    num_frames: int | None = None
    span: tuple[float, float] | None = None
    boxes: dict[int, list[float]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"id must be a non-empty string, got {self.id!r}")
        if not isinstance(self.media, str | os.PathLike) or not str(self.media):
            raise ValueError(f"media must be a non-empty path, got {self.media!r}")
        self.media = Path(self.media)
        if not isinstance(self.query, str) or not self.query.strip():
            raise ValueError(f"query must be a non-empty string, got {self.query!r}")
        if not isinstance(self.meta, dict):
            raise ValueError(f"meta must be an object, got {type(self.meta).__name__}")
        self._check_video_fields()
        self._check_span()
        self._check_boxes()

    def _check_video_fields(self) -> None:
        optional_size = self.task == "vtg"
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is None and not optional_size:
                raise ValueError(f"{name} is required for a {self.task} record")
            if value is not None:
                setattr(self, name, _integer(value, name, 1))
        if self.task == "rec":
            if self.fps is not None or self.num_frames is not None:
                raise ValueError("a rec record has no fps or num_frames (they must be null)")
            return
        if self.fps is None and self.task == "stvg":
            raise ValueError("fps is required for an stvg record (its boxes are keyed by native frame)")
        if self.fps is not None:
            self.fps = _number(self.fps, "fps")
            if self.fps <= 0:
                raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.num_frames is not None:
            self.num_frames = _integer(self.num_frames, "num_frames", 1)

    def _check_span(self) -> None:
        if self.task == "rec":
            if self.span is not None:
                raise ValueError("a rec record has no span (it must be null)")
            return
        if self.span is None:
            raise ValueError(f"span is required for a {self.task} record")
        if not isinstance(self.span, list | tuple) or len(self.span) != 2:
            raise ValueError(f"span must be [start, end] seconds, got {self.span!r}")
        start, end = (_number(v, "span") for v in self.span)
        if not 0 <= start < end:
            raise ValueError(f"span must satisfy 0 <= start < end, got [{start}, {end}]")
        self.span = (start, end)

    def _check_boxes(self) -> None:
        if not isinstance(self.boxes, Mapping):
            raise ValueError(f"boxes must be an object {{frame: box}}, got {type(self.boxes).__name__}")
        boxes = {_frame_key(k): box_list(v, f"box of frame {k}") for k, v in self.boxes.items()}
        self.boxes = dict(sorted(boxes.items()))
        if self.task == "vtg" and boxes:
            raise ValueError("a vtg record has no boxes (boxes must be {})")
        if self.task == "rec" and list(boxes) != [0]:
            raise ValueError(f"a rec record has exactly one box, keyed 0; got frames {list(boxes)}")
        if self.task != "stvg":
            return
        if not boxes:
            raise ValueError("an stvg record needs at least one box")
        assert self.fps is not None and self.span is not None  # checked above
        lo, hi = span_frames(self.span, self.fps)
        outside = [f for f in boxes if not lo <= f < hi]
        if outside:
            raise ValueError(
                f"box frames {outside[:5]} lie outside the span's native frames [{lo}, {hi}) at {self.fps:g} fps"
            )
        if self.num_frames is not None and max(boxes) >= self.num_frames:
            raise ValueError(f"box frame {max(boxes)} is past num_frames={self.num_frames}")

    def to_json(self, media: str | None = None) -> dict[str, Any]:
        """The JSONL object (``media`` overrides the path text, see :func:`write_records`)."""
        return {
            "task": self.task,
            "id": self.id,
            "media": media if media is not None else str(self.media),
            "query": self.query,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "num_frames": self.num_frames,
            "span": list(self.span) if self.span is not None else None,
            "boxes": {str(f): b for f, b in self.boxes.items()},
            "meta": self.meta,
        }

    @classmethod
    def from_json(cls, obj: Any, base: Path | None = None) -> Record:
        """Parse one JSONL object; a relative ``media`` is resolved against ``base``. ``ValueError``."""
        if not isinstance(obj, dict):
            raise ValueError(f"a record must be a JSON object, got {type(obj).__name__}")
        missing = [k for k in KEYS if k not in obj]
        unknown = sorted(set(obj) - set(KEYS))
        if missing:
            raise ValueError(f"missing key(s) {', '.join(map(repr, missing))}")
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(map(repr, unknown))} (put extras in 'meta')")
        if not isinstance(obj["media"], str):
            raise ValueError(f"media must be a string, got {obj['media']!r}")
        media = Path(obj["media"])
        if base is not None and not media.is_absolute():
            media = base / media
        return cls(**{**obj, "media": media})

    def ground_truth(self) -> GroundTruth:
        """The evaluator's :class:`GroundTruth` of an stvg record.

        The span in native frames is ``meta["span_frames"]`` when the converter kept it (exact),
        else :func:`span_frames`; the evaluation segment is ``meta["segment"]``, else the span.
        """
        if self.task != "stvg" or self.fps is None or self.span is None:
            raise ValueError(f"record {self.id!r}: only an stvg record has a ground-truth tube")
        start, end = self.meta.get("span_frames") or span_frames(self.span, self.fps)
        segment = self.meta.get("segment") or (start, end)
        tube = Tube.from_dict(start, end, self.boxes)
        return GroundTruth(tube, self.fps, (int(segment[0]), int(segment[1])), self.meta.get("qtype"))


# ---------------------------------------------------------------------------------------- files


def read_records(path: Path | str) -> list[Record]:
    """Read a JSONL file of records (blank lines are skipped).

    Raises:
        DatasetError: ``"<file>:<line>: <what is wrong>"`` for an unreadable file, bad JSON, an
            invalid record or an id seen before.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"record file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"cannot read record file {p}: {err}") from None
    base = p.absolute().parent
    records: list[Record] = []
    first_line: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = Record.from_json(json.loads(line), base)
        except json.JSONDecodeError as err:
            raise DatasetError(f"{p}:{lineno}: not valid JSON: {err.msg} at column {err.colno}") from None
        except (ValueError, TypeError) as err:
            raise DatasetError(f"{p}:{lineno}: {' '.join(str(err).split())}") from None
        if record.id in first_line:
            raise DatasetError(
                f"{p}:{lineno}: duplicate id {record.id!r} (first on line {first_line[record.id]})"
            )
        first_line[record.id] = lineno
        records.append(record)
    return records


def _media_text(media: Path, folder: Path) -> str:
    """Absolute paths inside ``folder`` become relative to it; others are written as they are."""
    if media.is_absolute() and media.is_relative_to(folder):
        return media.relative_to(folder).as_posix()
    return media.as_posix() if not media.is_absolute() else str(media)


def write_records(path: Path | str, records: Iterable[Record]) -> Path:
    """Write records as JSONL, atomically (a temporary file in the same folder, then a rename).

    Raises:
        ValueError: two records share an id, or a record's ``meta`` is not JSON-serialisable.
    """
    p = Path(path)
    folder = p.absolute().parent
    folder.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    seen: set[str] = set()
    for record in records:
        if record.id in seen:
            raise ValueError(f"duplicate record id {record.id!r}")
        seen.add(record.id)
        try:
            lines.append(json.dumps(record.to_json(_media_text(record.media, folder)), ensure_ascii=False))
        except TypeError as err:
            raise ValueError(f"record {record.id!r}: meta is not JSON-serialisable ({err})") from None
    return write_text_atomic(p, "".join(line + "\n" for line in lines))


__all__ = [
    "KEYS",
    "REC_DATASETS",
    "TASKS",
    "Record",
    "RecordWarning",
    "box_list",
    "read_records",
    "span_frames",
    "write_records",
]
