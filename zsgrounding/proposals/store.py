"""The track store: one JSON file of object tracks per video, reused when present.

File schema (``version`` 1)::

    {"format": "stvg-tracks", "version": 1, "video": <key>,
     "num_frames": int, "width": int, "height": int,
     "settings": {...},                       # what made the tracks; a mismatch makes them stale
     "tracks": [{"id": int, "label": str, "score": float,
                 "frames": [native frame ids], "boxes": [[x1, y1, x2, y2], ...],
                 "masks": [COCO RLE, ...] or null}]}
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from hashlib import sha1
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from zsgrounding.atomic import write_text_atomic
from zsgrounding.errors import DatasetError
from zsgrounding.proposals.rle import decode as decode_rle
from zsgrounding.proposals.rle import encode as encode_rle
from zsgrounding.types import Track

FORMAT = "stvg-tracks"
VERSION = 1
_MAX_STEM = 180  # keeps "<stem>.json" and the temp file name under common 255-byte limits


def file_stem(video_key: str) -> str:
    """A file name stem for ``video_key``: readable, and distinct keys give distinct stems.

    Characters other than letters, digits and ``-_.~`` are percent-escaped (``"0001/24"`` ->
    ``"0001%2F24"``), as is a leading dot (no hidden files); very long keys are cut and end in a hash.
    """
    if not video_key:
        raise ValueError("video key must not be empty")
    stem = quote(video_key, safe="")
    if stem.startswith("."):
        stem = "%2E" + stem[1:]
    if len(stem) > _MAX_STEM:
        stem = stem[: _MAX_STEM - 17] + "-" + sha1(video_key.encode("utf-8")).hexdigest()[:16]
    return stem


class StaleTracksWarning(UserWarning):
    """A stored track file was made with other settings than asked for; it is not used."""


def _short(value: Any, limit: int = 40) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _differing(stored: Any, wanted: Mapping[str, Any]) -> list[str]:
    """The settings keys whose stored value differs from the wanted one, with both values."""
    stored = stored if isinstance(stored, dict) else {}
    return [
        f"{key}: stored {_short(stored.get(key))}, asked {_short(wanted.get(key))}"
        for key in sorted(set(stored) | set(wanted), key=str)
        if stored.get(key) != wanted.get(key)
    ]


def _canonical(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """Settings as they read back from JSON (tuples become lists), for comparison."""
    return json.loads(json.dumps(dict(settings or {}), sort_keys=True))


def _track_json(track: Track) -> dict[str, Any]:
    return {
        "id": int(track.track_id),
        "label": str(track.label),
        "score": float(track.score),
        "frames": [int(f) for f in track.frame_ids],
        "boxes": [[float(v) for v in box] for box in track.boxes],
        "masks": None if track.masks is None else [encode_rle(m) for m in track.masks],
    }


@dataclass(frozen=True)
class StoredTracks:
    """One track file's content.

    Attributes:
        tracks: its tracks.
        settings: what made them (canonical JSON).
        path: the file.
    """

    tracks: list[Track]
    settings: dict[str, Any]
    path: Path

    def made_with(self, settings: Mapping[str, Any]) -> bool:
        """Whether the tracks were made with exactly ``settings``."""
        return self.settings == _canonical(settings)


def warn_stale(stored: StoredTracks, wanted: Mapping[str, Any]) -> None:
    """One :class:`StaleTracksWarning` naming the file and the settings that differ."""
    # Never dropped in silence: say which settings made it stale.
    differ = _differing(stored.settings, _canonical(wanted))
    warnings.warn(
        f"{stored.path}: stored tracks were made with other settings ({'; '.join(differ[:3])}"
        f"{f'; and {len(differ) - 3} more' if len(differ) > 3 else ''}); not used",
        StaleTracksWarning,
        stacklevel=3,
    )


class TrackStore:
    """Track files under ``root``: ``root/<file_stem(video_key)>.json``."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def path(self, video_key: str) -> Path:
        """The file of ``video_key`` (it may not exist)."""
        return self.root / f"{file_stem(video_key)}.json"

    def read(self, video_key: str) -> StoredTracks | None:
        """The stored tracks with the settings that made them, or ``None`` when there is no file.

        Raises:
            DatasetError: the file is unreadable, not a track file, of another video or malformed.
        """
        path = self.path(video_key)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DatasetError(f"{path}: unreadable track file ({exc.strerror or exc})") from exc
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise DatasetError(f"{path}: not valid JSON ({exc})") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise DatasetError(f"{path}: not a {FORMAT} file")
        if data.get("version") != VERSION:
            raise DatasetError(f"{path}: {FORMAT} version {data.get('version')!r}, expected {VERSION}")
        if data.get("video") != video_key:
            raise DatasetError(f"{path}: holds tracks of video {data.get('video')!r}, not {video_key!r}")
        try:
            height, width = int(data["height"]), int(data["width"])
            tracks = [self._track(entry, height, width) for entry in data["tracks"]]
        except (KeyError, TypeError, ValueError) as exc:
            detail = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
            raise DatasetError(f"{path}: malformed track file ({detail})") from exc
        return StoredTracks(tracks, _canonical(data.get("settings")), path)

    def load(self, video_key: str, settings: Mapping[str, Any] | None = None) -> list[Track] | None:
        """The stored tracks, or ``None`` when there is no file or ``settings`` differ (stale).

        Raises:
            DatasetError: as :meth:`read`.
        """
        stored = self.read(video_key)
        if stored is None:
            return None
        if settings is not None and not stored.made_with(settings):
            warn_stale(stored, settings)
            return None
        return stored.tracks

    @staticmethod
    def _track(entry: Mapping[str, Any], height: int, width: int) -> Track:
        frames = np.asarray(entry["frames"], dtype=np.int64).reshape(-1)
        boxes = np.asarray(entry["boxes"], dtype=np.float64)
        if boxes.shape != (frames.size, 4) and not (frames.size == 0 and boxes.size == 0):
            raise ValueError(
                f"track {entry.get('id')}: {frames.size} frames but boxes of shape {boxes.shape}"
            )
        masks = None
        if entry.get("masks") is not None:
            decoded = [decode_rle(m) for m in entry["masks"]]
            if len(decoded) != frames.size or any(m.shape != (height, width) for m in decoded):
                raise ValueError(
                    f"track {entry.get('id')}: masks do not match its frames and {width}x{height}"
                )
            masks = np.stack(decoded) if decoded else np.zeros((0, height, width), dtype=bool)
        return Track(
            frames,
            boxes.reshape(-1, 4),
            label=str(entry["label"]),
            score=float(entry["score"]),
            track_id=int(entry["id"]),
            masks=masks,
        )

    def save(
        self,
        video_key: str,
        tracks: Sequence[Track],
        settings: Mapping[str, Any] | None,
        num_frames: int,
        width: int,
        height: int,
    ) -> Path:
        """Write the tracks of ``video_key`` atomically (a temp file, then ``os.replace``).

        Masks, when a track has them, must be ``(K, height, width)``; they are stored as COCO RLE.
        Returns the file's path.
        """
        for track in tracks:
            if track.masks is not None and track.masks.shape[1:] != (height, width):
                raise ValueError(
                    f"track {track.track_id}: masks are {track.masks.shape[1:]}, the video {height}x{width}"
                )
        data = {
            "format": FORMAT,
            "version": VERSION,
            "video": video_key,
            "num_frames": int(num_frames),
            "width": int(width),
            "height": int(height),
            "settings": _canonical(settings),
            "tracks": [_track_json(t) for t in tracks],
        }
        # allow_nan=False: a NaN box is a bug upstream, and would make the file non-standard JSON
        text = json.dumps(data, separators=(",", ":"), allow_nan=False)
        path = self.path(video_key)
        return write_text_atomic(path, text + "\n")


__all__ = ["FORMAT", "VERSION", "StaleTracksWarning", "StoredTracks", "TrackStore", "file_stem", "warn_stale"]
