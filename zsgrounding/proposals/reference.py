"""Importer for the object proposals released with the zero-shot paper's reference code.

(The stored settings key below keeps its old text: track stores made earlier match on it.)

One JSON file per video, named after the video without its extension (the reference opens
``video_name.split('.')[0] + '.json'``)::

    {"sample_frames": [native frame ids, or frame file names such as "00012.jpg"],
     "dino_sam2_proposals": [track, ...]}

Each track is a dict of exactly 7 items that the reference unpacks by position, so their key
names do not matter, only their order: track id; boxes (one ``[[x1, y1, x2, y2]]`` per sample
frame); masks (one COCO RLE per sample frame, maybe at another resolution); class name; box
format (``"xyxy"`` or ``"xywh"``); image width; image height. A frame whose box is all zeros
is a frame on which the track is absent.

VidSTG proposals come as a folder per video (``<dir>/<vid>/*.json``) whose files' tracks
together make the video's tracks: ``layout="folders"`` in :func:`import_reference_dir`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

from zsgrounding.boxes import xywh_to_xyxy
from zsgrounding.errors import DatasetError
from zsgrounding.proposals.rle import decode as decode_rle
from zsgrounding.proposals.store import TrackStore
from zsgrounding.types import Track

TRACK_ITEMS = ("id", "boxes", "masks", "class name", "box format", "image width", "image height")
DEFAULT_SETTINGS: dict[str, Any] = {"source": "reference proposals of the released zero-shot code"}


class VideoInfo(NamedTuple):
    """What the store needs to know about a video the reference files do not say."""

    key: str  # the store key, e.g. the dataset's video file name "55_vfjywN5CN0Y.mp4"
    num_frames: int
    width: int
    height: int


def reference_stem(video_name: str) -> str:
    """The reference's file stem of a video: its name up to the first dot."""
    return video_name.split(".")[0]


@dataclass
class _RawTrack:
    """One track as read from a file, before any conversion."""

    id: Any
    boxes: list[np.ndarray | None]  # per sample frame, ``(4,)`` in the file's format, or None
    masks: list[Any] | None  # per sample frame, an RLE dict (or None)
    label: str
    box_format: str
    width: int
    height: int


def _frame_id(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"bad sample frame {value!r}")
    if isinstance(value, str):
        value = value.split(".")[0]  # "00012.jpg" -> 12
    frame = int(value)
    if frame < 0 or (isinstance(value, float) and value != frame):
        raise ValueError(f"bad sample frame {value!r}")
    return frame


def _size(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0 or value != int(value):
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def _box(entry: Any, frame: int) -> np.ndarray | None:
    if entry is None:
        return None
    arr = np.asarray(entry, dtype=np.float64)
    if arr.size == 0:
        return None
    if arr.size != 4:
        raise ValueError(f"frame {frame}: a box must have 4 numbers, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"frame {frame}: box {arr.reshape(-1).tolist()} is not finite")
    return arr.reshape(4)


def _raw_track(entry: Any, num_frames: int) -> _RawTrack:
    if not isinstance(entry, Mapping) or len(entry) != len(TRACK_ITEMS):
        count = len(entry) if isinstance(entry, Mapping) else type(entry).__name__
        raise ValueError(f"expected a dict of 7 items ({', '.join(TRACK_ITEMS)}), got {count}")
    track_id, boxes, masks, label, box_format, width, height = entry.values()
    if not isinstance(boxes, list) or len(boxes) != num_frames:
        n = len(boxes) if isinstance(boxes, list) else type(boxes).__name__
        raise ValueError(f"boxes (item 2) must be a list of {num_frames}, one per sample frame, got {n}")
    if masks is not None and (not isinstance(masks, list) or len(masks) != num_frames):
        n = len(masks) if isinstance(masks, list) else type(masks).__name__
        raise ValueError(f"masks (item 3) must be a list of {num_frames}, one per sample frame, got {n}")
    if not isinstance(label, str):
        raise ValueError(f"class name (item 4) must be a string, got {label!r}")
    fmt = box_format.strip().lower() if isinstance(box_format, str) else box_format
    if fmt not in ("xyxy", "xywh"):
        raise ValueError(f"box format (item 5) must be 'xyxy' or 'xywh', got {box_format!r}")
    return _RawTrack(
        track_id,
        [_box(b, j) for j, b in enumerate(boxes)],
        masks,
        label,
        fmt,
        _size(width, "image width (item 6)"),
        _size(height, "image height (item 7)"),
    )


def _read(path: Path) -> tuple[np.ndarray, list[_RawTrack]]:
    """``(sample_frames (T,) int64, raw tracks)`` of one file; DatasetError naming it otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DatasetError(f"{path}: reference proposal file not found") from exc
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable reference proposal file ({exc})") from exc
    if not isinstance(data, dict) or not {"sample_frames", "dino_sam2_proposals"} <= data.keys():
        raise DatasetError(
            f"{path}: not a reference proposal file (needs 'sample_frames' and 'dino_sam2_proposals')"
        )
    frames_raw, tracks_raw = data["sample_frames"], data["dino_sam2_proposals"]
    if not isinstance(frames_raw, list) or not isinstance(tracks_raw, list):
        raise DatasetError(f"{path}: 'sample_frames' and 'dino_sam2_proposals' must be lists")
    try:
        frames = np.asarray([_frame_id(f) for f in frames_raw], dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: sample_frames: {exc}") from exc
    if np.unique(frames).size != frames.size:
        raise DatasetError(f"{path}: sample_frames has a frame twice")
    tracks = []
    for i, entry in enumerate(tracks_raw):
        try:
            tracks.append(_raw_track(entry, frames.size))
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"{path}: track {i}: {exc}") from exc
    return frames, tracks


def _resize_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize by pixel centres: output pixel ``i`` takes ``floor((i + 0.5) * h / H)``."""
    h, w = mask.shape
    if (h, w) == (height, width):
        return mask
    rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64), w - 1)
    return mask[rows[:, None], cols[None, :]]


def _convert(
    raw: _RawTrack, frames: np.ndarray, track_id: int, width: int | None, height: int | None, masks: bool
) -> Track:
    """A :class:`Track` in native pixels (``width`` x ``height``, default: the track's image size)."""
    out_w, out_h = width or raw.width, height or raw.height
    present = [j for j, b in enumerate(raw.boxes) if b is not None and np.any(b != 0)]
    boxes = np.stack([raw.boxes[j] for j in present]) if present else np.zeros((0, 4))
    if raw.box_format == "xywh":
        boxes = xywh_to_xyxy(boxes)
    boxes = boxes * np.array([out_w / raw.width, out_h / raw.height] * 2)
    mask_arr = None
    if masks and raw.masks is not None:
        decoded = []
        for j in present:
            rle = raw.masks[j]
            try:
                mask = decode_rle(rle) if rle is not None else np.zeros((out_h, out_w), dtype=bool)
            except ValueError as exc:
                raise ValueError(f"frame {int(frames[j])}: bad RLE mask ({exc})") from exc
            decoded.append(_resize_nearest(mask, out_h, out_w))
        mask_arr = np.stack(decoded) if decoded else np.zeros((0, out_h, out_w), dtype=bool)
    return Track(frames[present], boxes, label=raw.label, score=1.0, track_id=track_id, masks=mask_arr)


def _track_ids(raws: list[_RawTrack]) -> list[int]:
    """The files' ids when they are distinct integers, else positions."""
    try:
        ids = [int(r.id) for r in raws if not isinstance(r.id, bool)]
    except (TypeError, ValueError):
        return list(range(len(raws)))
    return ids if len(ids) == len(raws) and len(set(ids)) == len(ids) else list(range(len(raws)))


def _tracks(
    path: Path, frames: np.ndarray, raws: list[_RawTrack], width: int | None, height: int | None, masks: bool
) -> list[Track]:
    out = []
    for i, (raw, track_id) in enumerate(zip(raws, _track_ids(raws), strict=True)):
        try:
            out.append(_convert(raw, frames, track_id, width, height, masks))
        except ValueError as exc:
            raise DatasetError(f"{path}: track {i}: {exc}") from exc
    return out


def load_reference_proposals(
    path: Path | str, width: int | None = None, height: int | None = None, *, masks: bool = True
) -> tuple[np.ndarray, list[Track]]:
    """Read one reference proposal file.

    Args:
        path: the video's JSON file.
        width, height: the video's native size; boxes are scaled and masks resized (nearest
            neighbour) to it from each track's image size. Default: the track's image size.
        masks: decode the masks (``False`` leaves ``Track.masks`` ``None`` and saves memory).

    Returns:
        ``(sample_frames (T,) int64 as in the file, tracks)``: one track per file entry, in file
        order, holding the frames where its box is not all zeros; label = class name, score 1.0,
        track_id = the file's id when the ids are distinct integers, else the position.

    Raises:
        DatasetError: the file is missing, unreadable or malformed (the message names the file,
            the track and the problem).
    """
    file = Path(path)
    frames, raws = _read(file)
    return frames, _tracks(file, frames, raws, width, height, masks)


def _read_folder(folder: Path) -> tuple[np.ndarray, list[_RawTrack]]:
    """A VidSTG-style folder: its files share the sample frames; their tracks are concatenated."""
    frames: np.ndarray | None = None
    raws: list[_RawTrack] = []
    for file in sorted(folder.glob("*.json")):
        f, r = _read(file)
        if frames is not None and not np.array_equal(frames, f):
            raise DatasetError(f"{file}: sample_frames differ from the other files of {folder}")
        frames = f
        raws.extend(r)
    if frames is None:
        raise DatasetError(f"{folder}: no proposal files")
    for r in raws:
        r.id = None  # ids repeat across files: number the tracks by position
    return frames, raws


def import_reference_dir(
    src_dir: Path | str,
    store: TrackStore,
    *,
    videos: Mapping[str, VideoInfo] | None = None,
    settings: Mapping[str, Any] | None = None,
    masks: bool = True,
    overwrite: bool = False,
    layout: Literal["files", "folders"] = "files",
) -> int:
    """Convert a folder of reference proposal files into ``store``; returns how many were written.

    Args:
        src_dir: ``layout="files"``: ``<stem>.json`` per video; ``"folders"``: every folder under
            ``src_dir`` holding JSON files is a video named by its path relative to ``src_dir``.
        store: the track store written to.
        videos: reference name (stem or relative folder) -> :class:`VideoInfo`; only the videos
            listed are imported, under ``info.key`` at ``info.width`` x ``info.height``. Without it
            every file is imported under its reference name, at the image size of its first track,
            with ``num_frames`` one past the last sample frame (the files do not say more).
        settings: stored with the tracks, over :data:`DEFAULT_SETTINGS` (whose ``"source"`` key
            marks the files as imported, see :mod:`zsgrounding.proposals.source`).
        masks: import the masks.
        overwrite: rewrite videos the store already holds with the same settings.
    """
    root = Path(src_dir)
    if not root.is_dir():
        raise DatasetError(f"{root}: reference proposal folder not found")
    # the "source" key marks the files as imported: used as they are, never re-extracted
    settings = {**DEFAULT_SETTINGS, **(settings or {})}
    if layout == "files":
        sources = {p.stem: p for p in sorted(root.glob("*.json"))}
    elif layout == "folders":
        dirs = sorted({p.parent for p in root.rglob("*.json")} - {root})
        sources = {d.relative_to(root).as_posix(): d for d in dirs}
    else:
        raise ValueError(f"layout must be 'files' or 'folders', got {layout!r}")
    written = 0
    for name, source in sources.items():
        info = videos.get(name) if videos is not None else None
        if videos is not None and info is None:
            continue
        key = info.key if info else name
        if not overwrite and store.load(key, settings) is not None:
            continue
        frames, raws = _read(source) if layout == "files" else _read_folder(source)
        if info:
            num_frames, width, height = info.num_frames, info.width, info.height
        else:
            num_frames = int(frames.max()) + 1 if frames.size else 0
            width, height = (raws[0].width, raws[0].height) if raws else (0, 0)
        tracks = _tracks(source, frames, raws, width or None, height or None, masks)
        store.save(key, tracks, settings, num_frames, width, height)
        written += 1
    return written


__all__ = [
    "DEFAULT_SETTINGS",
    "TRACK_ITEMS",
    "VideoInfo",
    "import_reference_dir",
    "load_reference_proposals",
    "reference_stem",
]
