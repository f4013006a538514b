"""Your own clips: a JSONL file of (video, sentence) pairs, grounded without ground truth.

One JSON object per line::

    {"video": "clips/kitchen.mp4", "query": "the man who opens the fridge", "id": "kitchen-1"}

``video`` is a path, relative to the JSONL file's folder unless absolute; ``query`` the sentence;
``id`` optional (default ``"<video file name>:<line number>"``) and unique in the file; ``tracks``
optional, your own object tracks for the video (a track file, see
:mod:`zsgrounding.proposals.trackfile`; relative to the JSONL file's folder too), kept in the
sample's ``meta["tracks"]``. Blank
lines are skipped. Every line is checked when the file is read: a malformed one is a
:class:`~zsgrounding.errors.DatasetError` naming the file and the line.
"""

from __future__ import annotations

import json
from pathlib import Path

from zsgrounding.datasets.common import read_text
from zsgrounding.errors import DatasetError
from zsgrounding.types import Sample

__all__ = ["load_pairs"]

_KEYS = {"video", "query", "id", "tracks"}


def load_pairs(path: Path | str) -> list[Sample]:
    """The pairs of ``path`` as :class:`Sample` s with no ground truth, in file order."""
    source = Path(path)
    text = read_text(source, "pairs file")
    samples: list[Sample] = []
    seen: set[str] = set()
    tracks_of: dict[Path, tuple[Path, int]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{source}, line {number}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as err:
            raise DatasetError(f"{where}: not a JSON object ({err.msg})") from None
        except RecursionError:
            raise DatasetError(f"{where}: nested too deeply") from None
        if not isinstance(entry, dict):
            raise DatasetError(f'{where}: expected an object {{"video": ..., "query": ...}}')
        unknown = sorted(set(entry) - _KEYS)
        if unknown:
            raise DatasetError(
                f"{where}: unknown keys {unknown}; a pair has video, query, and optional id and tracks"
            )
        video, query = entry.get("video"), entry.get("query")
        if not isinstance(video, str) or not video.strip():
            raise DatasetError(f"{where}: 'video' must be a path")
        if not isinstance(query, str) or not query.strip():
            raise DatasetError(f"{where}: 'query' must be a non-empty sentence")
        file = Path(video).expanduser()
        file = file if file.is_absolute() else source.parent / file
        sample_id = entry.get("id", f"{file.name}:{number}")
        if not isinstance(sample_id, str | int) or isinstance(sample_id, bool) or not str(sample_id).strip():
            raise DatasetError(f"{where}: 'id' must be a string or an integer")
        sample_id = str(sample_id)
        if sample_id in seen:
            raise DatasetError(f"{where}: id {sample_id!r} is given twice")
        seen.add(sample_id)
        meta: dict[str, Path] = {}
        if "tracks" in entry:
            tracks = entry["tracks"]
            if not isinstance(tracks, str) or not tracks.strip():
                raise DatasetError(f"{where}: 'tracks' must be the path of a track file")
            track_file = Path(tracks).expanduser()
            track_file = track_file if track_file.is_absolute() else source.parent / track_file
            before = tracks_of.setdefault(file.resolve(), (track_file.resolve(), number))
            if before[0] != track_file.resolve():
                raise DatasetError(
                    f"{where}: video {file.name!r} was given the track file {before[0].name!r} on line "
                    f"{before[1]}; tracks belong to the video, so give every pair of it the same file"
                )
            meta["tracks"] = track_file
        samples.append(Sample(id=sample_id, video=file, sentence=query.strip(), gt=None, meta=meta))
    if not samples:
        raise DatasetError(f"{source}: no pairs (one JSON object per line)")
    for sample in samples:
        given = tracks_of.get(Path(sample.video).resolve())
        if given is not None and "tracks" not in sample.meta:
            raise DatasetError(
                f"{source}: pair {sample.id!r} has no 'tracks' but line {given[1]} gives its video "
                f"{Path(sample.video).name!r} a track file; give every pair of that video the same file"
            )
    return samples
