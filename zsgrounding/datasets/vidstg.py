"""VidSTG loader: the raw annotations with VidOR boxes, or TubeDETR's preprocessed file.

Raw form (``*_annotations.json``): a list of records, one per video segment, each with
``vid``, ``fps``, ``frame_count``, ``width``, ``height``, ``subject/objects`` (``[{tid,
category}]``), ``used_segment`` and ``temporal_gt`` (``{begin_fid, end_fid}``, end exclusive),
``captions`` (declarative) and ``questions`` (interrogative), each ``[{description, type,
target_id}]``. Boxes come from the VidOR annotation of the video, ``<vidor_dir>/**/<vid>.json``,
whose ``trajectories[frame]`` lists ``{tid, bbox: {xmin, ymin, xmax, ymax}}``.

Preprocessed form (TubeDETR): ``{"videos": [one per sentence], "trajectories": {vid: {tid:
{frame: {"bbox": [x, y, w, h]}}}}}``. :func:`load_vidstg` tells the two apart by the JSON's shape.

Conventions:

- one :class:`Sample` per sentence. Raw ids are ``f"{vid}_{begin}_{end}_{k}{i}"`` with
  ``begin``/``end`` the record's ``used_segment``, ``k`` = ``d`` (declarative, ``captions``) or
  ``q`` (interrogative, ``questions``) and ``i`` the sentence's index in that list; they do not
  depend on which question types are loaded. Preprocessed ids are ``str(video_id)``.
- GT tube: span ``temporal_gt`` with the target ``tid``'s boxes (``xyxy``) on the frames of the
  span that have one; a frame without a box for the target stays without one.
- ``GroundTruth.segment`` is ``used_segment`` (the frames the evaluator samples); ``fps`` is the
  record's. ``GroundTruth.cgstvg_end_inclusive`` is ``False``: CG-STVG scores VidSTG's
  ``[begin_fid, end_fid)`` in full.
- a zero-length GT span (``temporal_gt`` with ``begin_fid == end_fid``, or preprocessed
  ``tube_start_frame == tube_end_frame``) is loaded as an empty tube, with one warning giving how
  many such sentences the file has: TubeDETR keeps these sentences and they score 0, so the
  sentence counts match the published tables. An empty ``used_segment`` is still malformed.
- the sentence ``type`` is optional (``meta["type"]`` is ``None`` without it).
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zsgrounding.datasets.common import (
    EntryPolicy,
    LoadReport,
    MalformedEntry,
    as_mapping,
    get_float,
    get_int,
    get_list,
    get_mapping,
    get_str,
    make_tube,
    read_json,
    to_float,
    to_int,
    xywh_boxes,
)
from zsgrounding.errors import DatasetError
from zsgrounding.types import GroundTruth, Sample, Tube

QTYPES = ("declarative", "interrogative")
# question type -> (raw record key, id letter)
_RAW_LISTS = {"declarative": ("captions", "d"), "interrogative": ("questions", "q")}
_VIDOR_CACHE_SIZE = 8  # records of one video are usually adjacent; keep a few parsed files


def load_vidstg(
    annotations: Path | str,
    vidor_dir: Path | str | None = None,
    video_root: Path | str | None = None,
    qtypes: Iterable[str] = QTYPES,
    skip_malformed: bool = False,
    report: LoadReport | None = None,
) -> list[Sample]:
    """Load VidSTG sentences, from the raw annotations or TubeDETR's preprocessed file.

    Args:
        annotations: raw ``*_annotations.json`` (a list) or preprocessed JSON (an object with
            ``videos``); the form is detected from the content.
        vidor_dir: the VidOR annotation folder (searched recursively for ``<vid>.json``);
            required for the raw form, ignored for the preprocessed one.
        video_root: folder the VidOR ``video_path`` values are relative to; without it the
            video path is the bare ``video_path``.
        qtypes: which sentence types to load (``declarative``, ``interrogative``).
        skip_malformed: skip and report malformed records / sentences instead of raising.
        report: receives the loaded count and the skipped entries.

    Raises:
        DatasetError: unreadable file, bad arguments, or a malformed entry (unless skipped).
    """
    wanted = _check_qtypes(qtypes)
    data = read_json(annotations, "VidSTG annotation file")
    root = Path(video_root) if video_root is not None else None
    policy = EntryPolicy(annotations, skip_malformed, report)
    if isinstance(data, Mapping) and "videos" in data:
        samples = _load_preprocessed(annotations, data, root, wanted, policy)
    elif isinstance(data, list):
        if vidor_dir is None:
            raise DatasetError(
                f"{annotations}: raw VidSTG annotations need vidor_dir (the VidOR annotation folder)"
            )
        samples = _load_raw(data, _VidorIndex(vidor_dir), root, wanted, policy)
    else:
        raise DatasetError(
            f"{annotations}: not a VidSTG file: expected a list of records (raw) or an object with"
            " 'videos' and 'trajectories' (TubeDETR preprocessed)"
        )
    _warn_zero_length(annotations, samples)
    return policy.finish(samples)


def _warn_zero_length(annotations: Path | str, samples: Sequence[Sample]) -> None:
    """One warning naming how many loaded sentences have a zero-length GT span (they score 0)."""
    empty = [s.id for s in samples if s.gt is not None and len(s.gt.tube) == 0]
    if empty:
        warnings.warn(
            f"{annotations}: {len(empty)} sentence(s) have a zero-length GT span (begin == end;"
            f" first: {empty[0]!r}); they are kept and score 0, as in TubeDETR's evaluator",
            stacklevel=3,
        )


def _check_qtypes(qtypes: Iterable[str]) -> tuple[str, ...]:
    wanted = (qtypes,) if isinstance(qtypes, str) else tuple(qtypes)
    unknown = [q for q in wanted if q not in QTYPES]
    if unknown or not wanted:
        raise DatasetError(f"qtypes must be a non-empty subset of {QTYPES}, got {wanted!r}")
    return wanted


# ---------------------------------------------------------------- shared checks


@dataclass(frozen=True)
class _Clip:
    """The per-record facts every sentence of the record shares."""

    fps: float
    width: int
    height: int
    segment: tuple[int, int]
    span: tuple[int, int]


def _check_span(
    what: str, begin: int, end: int, frame_count: int, allow_empty: bool = False
) -> tuple[int, int]:
    """``(begin, end)`` if it is a half-open span inside ``[0, frame_count]``, non-empty unless
    ``allow_empty`` (a GT span may be empty: ``begin == end``, scored 0)."""
    if allow_empty and not 0 <= begin <= end <= frame_count:
        raise MalformedEntry(f"{what} [{begin}, {end}) is not a span within frame_count={frame_count}")
    if not allow_empty and not 0 <= begin < end <= frame_count:
        raise MalformedEntry(
            f"{what} [{begin}, {end}) is not a non-empty span within frame_count={frame_count}"
        )
    return begin, end


def _span(entry: Mapping[str, Any], key: str, frame_count: int, allow_empty: bool = False) -> tuple[int, int]:
    """The ``{begin_fid, end_fid}`` object ``entry[key]`` as a checked span."""
    raw = get_mapping(entry, key)
    return _check_span(key, get_int(raw, "begin_fid"), get_int(raw, "end_fid"), frame_count, allow_empty)


def _sample(
    sample_id: str,
    video: Path,
    sentence: str,
    qtype: str,
    tube: Tube,
    clip: _Clip,
    meta: dict[str, Any],
) -> Sample:
    return Sample(
        id=sample_id,
        video=video,
        sentence=sentence.strip(),
        gt=GroundTruth(
            tube=tube, fps=clip.fps, segment=clip.segment, qtype=qtype, cgstvg_end_inclusive=False
        ),
        width=clip.width,
        height=clip.height,
        fps=clip.fps,
        span_seconds=(clip.span[0] / clip.fps, clip.span[1] / clip.fps),
        meta={**meta, "qtype": qtype},
    )


def _optional_str(entry: Mapping[str, Any], key: str) -> str | None:
    return get_str(entry, key) if key in entry else None


# ---------------------------------------------------------------- raw VidSTG + VidOR


class _VidorVideo:
    """One VidOR annotation file: its video path and raw per-frame boxes, read on demand."""

    def __init__(self, path: Path) -> None:
        data = as_mapping(read_json(path, "VidOR annotation file"), f"VidOR file {path}")
        self.path = path
        self.frames: list[Any] = get_list(data, "trajectories")
        video_path = data.get("video_path")
        # VidOR lays videos out as <group>/<vid>.mp4, like its annotations
        self.video_path = video_path if isinstance(video_path, str) else f"{path.parent.name}/{path.stem}.mp4"

    def tube_boxes(self, tid: int, start: int, end: int) -> tuple[list[int], np.ndarray]:
        """Frames in ``[start, end)`` where ``tid`` has a box, and those boxes as ``xyxy``."""
        frame_ids: list[int] = []
        boxes: list[list[float]] = []
        for frame in range(start, end):
            objects = self.frames[frame]
            if not isinstance(objects, list):
                raise MalformedEntry(f"VidOR file {self.path}: trajectories[{frame}] is not a list")
            for obj in objects:
                obj = as_mapping(obj, f"VidOR file {self.path}: an object of trajectories[{frame}]")
                if to_int(obj.get("tid"), f"VidOR file {self.path}: tid in trajectories[{frame}]") != tid:
                    continue
                frame_ids.append(frame)
                boxes.append(self._box(obj, frame))
                break
        return frame_ids, np.asarray(boxes, dtype=np.float64).reshape(-1, 4)

    def _box(self, obj: Mapping[str, Any], frame: int) -> list[float]:
        where = f"VidOR file {self.path}: bbox of tid {obj['tid']} in trajectories[{frame}]"
        bbox = as_mapping(obj.get("bbox"), where)
        x1, y1, x2, y2 = (to_float(bbox.get(k), f"{where}: {k}") for k in ("xmin", "ymin", "xmax", "ymax"))
        if x2 < x1 or y2 < y1:
            raise MalformedEntry(f"{where} has xmax < xmin or ymax < ymin: {[x1, y1, x2, y2]}")
        return [x1, y1, x2, y2]


class _VidorIndex:
    """Finds ``<vid>.json`` under the VidOR folder (one glob) and keeps a few parsed files."""

    def __init__(self, vidor_dir: Path | str) -> None:
        root = Path(vidor_dir)
        if not root.is_dir():
            raise DatasetError(f"VidOR annotation folder not found: {root}")
        self.paths: dict[str, list[Path]] = {}
        for path in sorted(root.rglob("*.json")):
            self.paths.setdefault(path.stem, []).append(path)
        self.root = root
        self._cache: OrderedDict[str, _VidorVideo] = OrderedDict()

    def get(self, vid: str) -> _VidorVideo:
        if vid in self._cache:
            self._cache.move_to_end(vid)
            return self._cache[vid]
        paths = self.paths.get(vid, [])
        if not paths:
            raise MalformedEntry(f"no VidOR annotation {vid}.json under {self.root}")
        if len(paths) > 1:
            # a configuration problem, not one bad entry: skipping would hide it
            raise DatasetError(f"several VidOR annotations for video {vid}: {', '.join(map(str, paths))}")
        try:
            video = _VidorVideo(paths[0])
        except DatasetError as err:  # an unreadable VidOR file spoils only its records
            raise MalformedEntry(str(err)) from None
        self._cache[vid] = video
        if len(self._cache) > _VIDOR_CACHE_SIZE:
            self._cache.popitem(last=False)
        return video


def _record_id(raw: Any, index: int) -> str:
    """``f"{vid}_{begin}_{end}"`` from ``used_segment``, or ``f"#{index}"`` when unreadable."""
    try:
        record = as_mapping(raw)
        segment = get_mapping(record, "used_segment")
        return f"{get_str(record, 'vid')}_{get_int(segment, 'begin_fid')}_{get_int(segment, 'end_fid')}"
    except MalformedEntry:
        return f"#{index}"


@dataclass(frozen=True)
class _Record:
    vid: str
    clip: _Clip
    categories: dict[int, str]
    sentences: dict[str, list[Any]]  # qtype -> raw sentences
    vidor: _VidorVideo


def _parse_record(raw: Any, wanted: Sequence[str], index: _VidorIndex) -> _Record:
    record = as_mapping(raw)
    vid = get_str(record, "vid")
    frame_count = get_int(record, "frame_count", minimum=1)
    clip = _Clip(
        fps=get_float(record, "fps", positive=True),
        width=get_int(record, "width", minimum=1),
        height=get_int(record, "height", minimum=1),
        segment=_span(record, "used_segment", frame_count),
        span=_span(record, "temporal_gt", frame_count, allow_empty=True),
    )
    categories: dict[int, str] = {}
    for obj in get_list(record, "subject/objects"):
        obj = as_mapping(obj, "an item of 'subject/objects'")
        categories[get_int(obj, "tid")] = get_str(obj, "category")
    sentences = {q: get_list(record, _RAW_LISTS[q][0]) for q in wanted}
    vidor = index.get(vid)
    if clip.span[1] > len(vidor.frames):
        raise MalformedEntry(
            f"temporal_gt ends at {clip.span[1]} but VidOR file {vidor.path} has {len(vidor.frames)} frames"
        )
    return _Record(vid, clip, categories, sentences, vidor)


def _raw_sentence(record: _Record, record_id: str, qtype: str, i: int, raw: Any, root: Path | None) -> Sample:
    sentence = as_mapping(raw, "sentence")
    description = get_str(sentence, "description")
    target = get_int(sentence, "target_id")
    if target not in record.categories:
        raise MalformedEntry(
            f"target_id {target} is not a tid of 'subject/objects' {sorted(record.categories)}"
        )
    start, end = record.clip.span
    frame_ids, boxes = record.vidor.tube_boxes(target, start, end)
    video = root / record.vidor.video_path if root is not None else Path(record.vidor.video_path)
    meta = {
        "vid": record.vid,
        "target_id": target,
        "type": _optional_str(sentence, "type"),
        "category": record.categories[target],
    }
    sample_id = f"{record_id}_{_RAW_LISTS[qtype][1]}{i}"
    return _sample(
        sample_id, video, description, qtype, make_tube(start, end, frame_ids, boxes), record.clip, meta
    )


def _load_raw(
    records: list[Any], index: _VidorIndex, root: Path | None, wanted: Sequence[str], policy: EntryPolicy
) -> list[Sample]:
    samples: list[Sample] = []
    seen: set[str] = set()
    for n, raw in enumerate(records):
        record_id = _record_id(raw, n)
        if record_id in seen:
            policy.reject(record_id, "a second record with the same vid and used_segment")
            continue
        seen.add(record_id)
        record = policy.attempt(record_id, lambda raw=raw: _parse_record(raw, wanted, index))
        if record is None:
            continue
        for qtype in wanted:
            for i, sentence in enumerate(record.sentences[qtype]):
                sample_id = f"{record_id}_{_RAW_LISTS[qtype][1]}{i}"
                sample = policy.attempt(
                    sample_id,
                    lambda r=record, rid=record_id, q=qtype, i=i, s=sentence: _raw_sentence(
                        r, rid, q, i, s, root
                    ),
                )
                if sample is not None:
                    samples.append(sample)
    return samples


# ---------------------------------------------------------------- TubeDETR preprocessed


def _load_preprocessed(
    path: Path | str, data: Mapping[str, Any], root: Path | None, wanted: Sequence[str], policy: EntryPolicy
) -> list[Sample]:
    videos, trajectories = data.get("videos"), data.get("trajectories")
    if not isinstance(videos, list) or not isinstance(trajectories, Mapping):
        raise DatasetError(f"{path}: preprocessed VidSTG needs a 'videos' list and a 'trajectories' object")
    samples: list[Sample] = []
    seen: set[str] = set()
    for n, raw in enumerate(videos):
        video_id = raw.get("video_id") if isinstance(raw, Mapping) else None
        if not isinstance(video_id, int | str) or isinstance(video_id, bool):
            # the sentence's id in every prediction file: without a usable one it cannot be scored
            policy.reject(f"#{n}", f"'video_id' must be an integer or a string, got {video_id!r}")
            continue
        sample_id = str(video_id)
        if sample_id in seen:
            policy.reject(sample_id, "a second sentence with the same video_id")
            continue
        seen.add(sample_id)
        sample = policy.attempt(
            sample_id, lambda s=sample_id, v=raw: _preprocessed_sentence(s, v, trajectories, root)
        )
        if sample is not None and sample.gt is not None and sample.gt.qtype in wanted:
            samples.append(sample)
    return samples


def _preprocessed_sentence(
    sample_id: str, raw: Any, trajectories: Mapping[str, Any], root: Path | None
) -> Sample:
    entry = as_mapping(raw)
    vid = get_str(entry, "original_video_id")
    frame_count = get_int(entry, "frame_count", minimum=1)
    qtype = get_str(entry, "qtype")
    if qtype not in QTYPES:
        raise MalformedEntry(f"qtype must be one of {QTYPES}, got {qtype!r}")
    segment, span = (
        _check_span(
            f"{prefix}start_frame/{prefix}end_frame",
            get_int(entry, f"{prefix}start_frame"),
            get_int(entry, f"{prefix}end_frame"),
            frame_count,
            allow_empty=prefix == "tube_",
        )
        for prefix in ("", "tube_")
    )
    clip = _Clip(
        fps=get_float(entry, "fps", positive=True),
        width=get_int(entry, "width", minimum=1),
        height=get_int(entry, "height", minimum=1),
        segment=segment,
        span=span,
    )
    target = get_int(entry, "target_id")
    frame_ids, boxes = _preprocessed_boxes(trajectories, vid, target, span)
    video_path = get_str(entry, "video_path")
    meta = {"vid": vid, "target_id": target, "type": _optional_str(entry, "type")}
    video = root / video_path if root is not None else Path(video_path)
    tube = make_tube(span[0], span[1], frame_ids, boxes)
    return _sample(sample_id, video, get_str(entry, "caption"), qtype, tube, clip, meta)


def _preprocessed_boxes(
    trajectories: Mapping[str, Any], vid: str, target: int, span: tuple[int, int]
) -> tuple[list[int], np.ndarray]:
    """The target's ``xyxy`` boxes on the frames of ``span`` that have one."""
    per_video = trajectories.get(vid)
    if not isinstance(per_video, Mapping):
        raise MalformedEntry(f"no trajectories for video {vid!r}")
    per_frame = per_video.get(str(target))
    if not isinstance(per_frame, Mapping):
        raise MalformedEntry(f"no trajectory for target_id {target} of video {vid!r}")
    frame_ids: list[int] = []
    raw_boxes: list[Any] = []
    for frame in range(*span):
        box = per_frame.get(str(frame))
        if box is not None:
            frame_ids.append(frame)
            raw_boxes.append(as_mapping(box, f"trajectories[{vid!r}][{target}][{frame}]").get("bbox"))
    if not raw_boxes:
        return frame_ids, np.zeros((0, 4))
    # the preprocessed form stores VidOR's xyxy as [x, y, w, h]
    return frame_ids, xywh_boxes(raw_boxes, f"trajectories[{vid!r}][{target!r}] bbox")
