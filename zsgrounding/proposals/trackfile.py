"""Your own object tracks: a plain JSON file, used as given instead of a detector.

The format (``stvg ground --tracks FILE``; in a ``--batch`` pairs file, a ``"tracks"`` key)::

    {
      "video": "kitchen.mp4",
      "tracks": [
        {"label": "man in a red shirt", "score": 0.9,
         "boxes": {"0": [12, 40, 118, 300], "10": [20, 42, 126, 302], "25": null}},
        {"label": "dog", "boxes": {"4": [200, 210, 260, 280]}}
      ]
    }

- ``tracks``: one entry per object. ``label`` (text) is required; ``score`` (default 1.0) and
  ``id`` (an integer, default the entry's position) are optional.
- ``boxes``: native frame index (0-based, a string since JSON keys are strings) -> pixel box
  ``[x1, y1, x2, y2]`` in the video's own resolution, or ``null`` where the object is hidden.
- ``video`` (optional): the video's file name; when given it must match the clip's.

The grounder samples its own frames, so a track is resampled to them: a sampled frame given in
the file takes its box as given; one between two given boxes (with no ``null`` between them) takes
the linear interpolation of the two; any other sampled frame (before the first box, after the last,
next to a ``null``) has no box. Boxes are clipped to the frame; frame ids past the video's end,
boxes with no area and tracks that miss every sampled frame are errors or are reported, never
silently changed.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zsgrounding.errors import DatasetError
from zsgrounding.types import Clip, Track

__all__ = ["FileTrack", "TrackFileProposer", "TrackFileWarning", "file_digest", "read_track_file", "resample"]

_TRACK_KEYS = {"label", "score", "id", "boxes"}


class TrackFileWarning(UserWarning):
    """A track of a user's file has no box on any sampled frame (it cannot be chosen)."""


@dataclass(frozen=True)
class FileTrack:
    """One track as its file gives it.

    Attributes:
        frames: ``(K,)`` int64 ascending native frame ids the file names.
        boxes: ``(K, 4)`` float64 ``xyxy`` boxes, NaN rows for the file's ``null`` (hidden).
        label: what the object is.
        score: the track's confidence.
        track_id: its id, unique in the file.
    """

    frames: np.ndarray
    boxes: np.ndarray
    label: str
    score: float
    track_id: int


def file_digest(path: Path | str) -> str:
    """The first 16 hex digits of the file's SHA-256: what a run records of a track file."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    except OSError as exc:
        raise DatasetError(f"{path}: unreadable track file ({exc.strerror or exc})") from None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _frame_id(key: str, where: str) -> int:
    text = key.strip()
    if not (text.isascii() and text.isdigit()):
        raise DatasetError(f"{where}: frame {key!r} is not a frame index (0, 1, 2, ...)")
    return int(text)


def _box(value: Any, where: str) -> list[float]:
    if value is None:
        return [math.nan] * 4
    if not isinstance(value, list) or len(value) != 4 or not all(_number(v) for v in value):
        raise DatasetError(f"{where}: a box is [x1, y1, x2, y2] (4 finite numbers) or null, got {value!r}")
    x1, y1, x2, y2 = (float(v) for v in value)
    if x2 <= x1 or y2 <= y1:
        raise DatasetError(f"{where}: box {value} has no area (x2 must exceed x1, y2 must exceed y1)")
    return [x1, y1, x2, y2]


def _track(entry: Any, index: int, where: str) -> FileTrack:
    here = f"{where}, track {index}"
    if not isinstance(entry, dict):
        raise DatasetError(f'{here}: expected an object {{"label": ..., "boxes": {{frame: box}}}}')
    unknown = sorted(set(entry) - _TRACK_KEYS)
    if unknown:
        raise DatasetError(f"{here}: unknown keys {unknown}; a track has label, boxes, score and id")
    label = entry.get("label")
    if not isinstance(label, str) or not label.strip():
        raise DatasetError(f"{here}: 'label' must be a non-empty text")
    score = entry.get("score", 1.0)
    if not _number(score):
        raise DatasetError(f"{here}: 'score' must be a number, got {score!r}")
    track_id = entry.get("id", index)
    if not isinstance(track_id, int) or isinstance(track_id, bool):
        raise DatasetError(f"{here}: 'id' must be an integer, got {track_id!r}")
    boxes = entry.get("boxes")
    if not isinstance(boxes, dict) or not boxes:
        raise DatasetError(
            f"{here}: 'boxes' must map frame indices to boxes, e.g. {{\"0\": [x1, y1, x2, y2]}}"
        )
    rows = sorted((_frame_id(k, here), _box(v, f"{here}, frame {k}")) for k, v in boxes.items())
    frames = np.array([f for f, _ in rows], dtype=np.int64)
    if np.unique(frames).size != frames.size:
        raise DatasetError(f"{here}: a frame index is given twice (e.g. '7' and '07')")
    return FileTrack(
        frames, np.array([b for _, b in rows], dtype=np.float64), label.strip(), float(score), track_id
    )


def read_track_file(path: Path | str) -> tuple[str | None, list[FileTrack]]:
    """``(video name or None, tracks)`` of a track file, every entry checked.

    Raises:
        DatasetError: unreadable, not JSON, or an entry breaks the format (named by position).
    """
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"{source}: unreadable track file ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise DatasetError(f"{source}: not a text file (a track file is JSON)") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{source}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except RecursionError:
        raise DatasetError(f"{source}: nested too deeply") from None
    if not isinstance(data, dict) or not isinstance(data.get("tracks"), list):
        raise DatasetError(f'{source}: expected an object {{"tracks": [...]}} (see `stvg ground --help`)')
    unknown = sorted(set(data) - {"video", "tracks"})
    if unknown:
        raise DatasetError(f"{source}: unknown keys {unknown}; a track file has tracks and an optional video")
    video = data.get("video")
    if video is not None and (not isinstance(video, str) or not video.strip()):
        raise DatasetError(f"{source}: 'video' must be the video's file name")
    tracks = [_track(entry, i, str(source)) for i, entry in enumerate(data["tracks"])]
    ids = [t.track_id for t in tracks]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"{source}: two tracks share an id")
    return video, tracks


def resample(track: FileTrack, frame_ids: np.ndarray, width: int, height: int) -> Track:
    """``track`` on the sampled ``frame_ids``: given boxes as given, interpolated between two given
    boxes, none elsewhere; clipped to the ``width`` x ``height`` frame."""
    query = np.asarray(frame_ids, dtype=np.int64).reshape(-1)
    frames, boxes = track.frames, track.boxes
    right = np.searchsorted(frames, query, side="left")  # first given frame >= query
    kept_ids: list[int] = []
    kept: list[np.ndarray] = []
    for fid, r in zip(query.tolist(), right.tolist(), strict=True):
        if r < frames.size and frames[r] == fid:
            box = boxes[r]
        elif 0 < r < frames.size:
            before, after = boxes[r - 1], boxes[r]
            weight = (fid - frames[r - 1]) / (frames[r] - frames[r - 1])
            box = (1.0 - weight) * before + weight * after  # NaN if either side is hidden
        else:
            continue
        if np.isnan(box).any():
            continue
        clipped = np.clip(box, 0.0, [width, height, width, height])
        if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
            continue  # wholly outside the frame here
        kept_ids.append(fid)
        kept.append(clipped)
    return Track(
        np.array(kept_ids, dtype=np.int64),
        np.array(kept, dtype=np.float64).reshape(-1, 4),
        label=track.label,
        score=track.score,
        track_id=track.track_id,
    )


Fallback = Callable[[Clip, str, "str | None"], list[Track]]


class TrackFileProposer:
    """Tracks from the user's files: ``files`` maps a video path to its track file.

    A clip whose video has no file goes to ``fallback`` (the detector's proposer), or is an error
    when there is none. Files are read (and checked) when the proposer is made, so a bad file is
    one line before any model loads.

    Args:
        files: video path -> track file path.
        fallback: the proposer for the other videos, or ``None``.
    """

    def __init__(self, files: Mapping[Path, Path], fallback: Fallback | None = None) -> None:
        self.files = {Path(v).resolve(): Path(f) for v, f in files.items()}
        self.fallback = fallback
        self._read: dict[Path, list[FileTrack]] = {}
        for video, file in self.files.items():
            name, tracks = read_track_file(file)
            if name is not None and name != video.name:
                raise DatasetError(f"{file}: holds tracks of video {name!r}, not {video.name!r}")
            self._read[video] = tracks

    def __call__(self, clip: Clip, noun_phrase: str, key: str | None = None) -> list[Track]:
        video = clip.path.resolve() if clip.path is not None else None
        if video not in self._read:
            if self.fallback is None:
                raise DatasetError(f"no track file for {key or video}")
            return self.fallback(clip, noun_phrase, key)
        file = self.files[video]
        out: list[Track] = []
        for track in self._read[video]:
            late = track.frames[track.frames >= clip.num_frames]
            if late.size:
                raise DatasetError(
                    f"{file}, track {track.track_id}: frame {int(late[0])} is past the video's last "
                    f"frame ({clip.num_frames - 1}); frame indices are native, from 0"
                )
            resampled = resample(track, clip.frame_ids, clip.width, clip.height)
            if len(resampled.frame_ids):
                out.append(resampled)
        missed = len(self._read[video]) - len(out)
        if missed:
            warnings.warn(
                f"{file}: {missed} of {len(self._read[video])} tracks have no box on the "
                f"{len(clip.frame_ids)} sampled frames and cannot be chosen",
                TrackFileWarning,
                stacklevel=2,
            )
        return out
