"""Helpers shared by the dataset loaders: file reading, field checks and the malformed-entry policy.

The policy: a loader checks every entry it reads. A malformed entry raises :class:`DatasetError`
naming the file, the entry id and what is wrong, unless the caller passed
``skip_malformed=True``; then the entry is skipped, a :class:`MalformedEntryWarning` is issued
with the same text, and the entry is recorded in the caller's :class:`LoadReport` if one was
given. An entry is never dropped silently.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from zsgrounding.boxes import xywh_to_xyxy
from zsgrounding.errors import DatasetError
from zsgrounding.types import MAX_FRAME, Tube

T = TypeVar("T")


class MalformedEntry(DatasetError):
    """Raised by a loader's per-entry parser; :class:`EntryPolicy` adds the file and entry id."""


class MalformedEntryWarning(UserWarning):
    """Issued for each malformed entry skipped under ``skip_malformed=True``."""


@dataclass(frozen=True)
class SkippedEntry:
    """One entry a loader skipped: the file, the entry id and the reason."""

    source: str
    id: str
    reason: str


@dataclass
class LoadReport:
    """What a load did: how many items it returned and which entries it skipped.

    Pass one to a loader (``report=LoadReport()``) to receive the skipped entries as data; the
    loader appends to it, so one report can collect several loads.
    """

    loaded: int = 0
    skipped: list[SkippedEntry] = field(default_factory=list)

    @property
    def skipped_ids(self) -> list[str]:
        """Ids of the skipped entries, in file order."""
        return [s.id for s in self.skipped]

    def summary(self) -> str:
        """One line for logs: counts of loaded and skipped entries."""
        return f"loaded {self.loaded}, skipped {len(self.skipped)} malformed"


class EntryPolicy:
    """Applies the malformed-entry policy for one file.

    Args:
        source: the file being read (named in every message).
        skip_malformed: skip and report malformed entries instead of raising.
        report: where skipped entries and the loaded count are recorded, or ``None``.
    """

    def __init__(self, source: Path | str, skip_malformed: bool, report: LoadReport | None) -> None:
        self.source = str(source)
        self.skip_malformed = skip_malformed
        self.report = report

    def attempt(self, entry_id: str, parse: Callable[[], T]) -> T | None:
        """Run ``parse`` for one entry; ``None`` when it was malformed and skipped."""
        try:
            return parse()
        except MalformedEntry as err:
            self.reject(entry_id, str(err))
            return None

    def reject(self, entry_id: str, reason: str) -> None:
        """Raise :class:`DatasetError` for a malformed entry, or skip and report it."""
        message = f"{self.source}: malformed entry {entry_id!r}: {reason}"
        if not self.skip_malformed:
            raise DatasetError(message)
        warnings.warn(f"{message} (skipped)", MalformedEntryWarning, stacklevel=3)
        if self.report is not None:
            self.report.skipped.append(SkippedEntry(self.source, entry_id, reason))

    def finish(self, items: list[T]) -> list[T]:
        """Record how many items were loaded and hand them back."""
        if self.report is not None:
            self.report.loaded += len(items)
        return items


# ---------------------------------------------------------------- files


def require_file(path: Path | str, what: str) -> Path:
    """``path`` as a ``Path``; :class:`DatasetError` if it is not an existing file."""
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"{what} not found: {p}")
    return p


def read_text(path: Path | str, what: str = "annotation file") -> str:
    """The UTF-8 text of a file, with one-line :class:`DatasetError` on any read failure."""
    p = require_file(path, what)
    try:
        return p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"cannot read {what} {p}: {err}") from None


def read_json(path: Path | str, what: str = "annotation file") -> Any:
    """Parse a JSON file, with one-line :class:`DatasetError` on a missing file or bad JSON."""
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DatasetError(
            f"{what} {path} is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"
        ) from None
    except RecursionError:
        raise DatasetError(f"{what} {path} is nested too deeply to be an annotation file") from None


# ---------------------------------------------------------------- field checks
# Each raises MalformedEntry with a reason; the policy adds file and entry id.


def as_mapping(value: Any, what: str = "entry") -> Mapping[str, Any]:
    """``value`` if it is a JSON object, else :class:`MalformedEntry`."""
    if not isinstance(value, Mapping):
        raise MalformedEntry(f"{what} must be an object, got {type(value).__name__}")
    return value


def get_value(entry: Mapping[str, Any], key: str) -> Any:
    """``entry[key]``, or :class:`MalformedEntry` naming the missing key."""
    if key not in entry:
        raise MalformedEntry(f"missing key {key!r}")
    return entry[key]


def to_int(value: Any, what: str, minimum: int | None = None, maximum: int | None = MAX_FRAME) -> int:
    """An integer (an integral float such as ``480.0`` is accepted), optionally ``>= minimum``,
    at most ``maximum`` (default :data:`~zsgrounding.types.MAX_FRAME`: every integer of an
    annotation is a frame id, a count or a size)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedEntry(f"{what} must be an integer, got {value!r}")
    if isinstance(value, float) and not value.is_integer():
        raise MalformedEntry(f"{what} must be an integer, got {value!r}")
    out = int(value)
    if minimum is not None and out < minimum:
        raise MalformedEntry(f"{what} must be >= {minimum}, got {out}")
    if maximum is not None and out > maximum:
        raise MalformedEntry(f"{what} is {out}, more than any video has (at most {maximum:,})")
    return out


def to_float(value: Any, what: str, positive: bool = False) -> float:
    """A finite number as ``float``, optionally required ``> 0``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MalformedEntry(f"{what} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise MalformedEntry(f"{what} must be > 0, got {value!r}")
    return float(value)


def get_int(
    entry: Mapping[str, Any], key: str, minimum: int | None = None, maximum: int | None = MAX_FRAME
) -> int:
    """``entry[key]`` checked by :func:`to_int` (``maximum=None`` for ids that are not frames)."""
    return to_int(get_value(entry, key), repr(key), minimum, maximum)


def get_float(entry: Mapping[str, Any], key: str, positive: bool = False) -> float:
    """``entry[key]`` checked by :func:`to_float`."""
    return to_float(get_value(entry, key), repr(key), positive)


def get_str(entry: Mapping[str, Any], key: str) -> str:
    """``entry[key]``, which must be a string."""
    value = get_value(entry, key)
    if not isinstance(value, str):
        raise MalformedEntry(f"{key!r} must be a string, got {value!r}")
    return value


def get_list(entry: Mapping[str, Any], key: str) -> list[Any]:
    """``entry[key]``, which must be a JSON array."""
    value = get_value(entry, key)
    if not isinstance(value, list):
        raise MalformedEntry(f"{key!r} must be a list, got {type(value).__name__}")
    return value


def get_mapping(entry: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """``entry[key]``, which must be a JSON object."""
    return as_mapping(get_value(entry, key), repr(key))


def xywh_boxes(raw: Any, what: str = "bbox") -> np.ndarray:
    """``[[x, y, w, h], ...]`` pixels -> ``(N, 4)`` float64 ``xyxy``; checks shape, finiteness, w/h >= 0."""
    numbers = MalformedEntry(f"{what} must be a list of [x, y, w, h] numbers")
    try:
        arr = np.asarray(raw)
    except (TypeError, ValueError):  # ragged nesting
        raise numbers from None
    if arr.size and arr.dtype.kind not in "iuf":  # strings, bools, nulls or ragged rows
        raise numbers
    arr = arr.astype(np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise MalformedEntry(f"{what} must be a list of [x, y, w, h] boxes, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise MalformedEntry(f"{what} has a non-finite coordinate")
    bad = np.flatnonzero(np.any(arr[:, 2:] < 0, axis=1))
    if bad.size:
        raise MalformedEntry(f"{what}[{int(bad[0])}] has a negative width or height: {arr[bad[0]].tolist()}")
    return xywh_to_xyxy(arr)


def make_tube(start: int, end: int, frame_ids: Any, boxes: Any) -> Tube:
    """A :class:`Tube`, with its validation errors turned into :class:`MalformedEntry`."""
    try:
        return Tube(start, end, frame_ids, boxes)
    except ValueError as err:
        raise MalformedEntry(f"invalid tube: {err}") from None
