"""SpaceVLLM training data: one JSONL format for the three Uni-STG tasks, converters, task mixing.

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
"""

from __future__ import annotations

import json
import math
import os
import warnings
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch.utils.data import Dataset

from zsgrounding.atomic import write_text_atomic
from zsgrounding.datasets import RefExpr, load_dataset, load_refcoco
from zsgrounding.errors import DatasetError, STVGError
from zsgrounding.types import GroundTruth, Sample, Tube
from zsgrounding.video import probe

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


def _box(value: Any, what: str) -> list[float]:
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
        boxes = {_frame_key(k): _box(v, f"box of frame {k}") for k, v in self.boxes.items()}
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


# ---------------------------------------------------------------------------------------- converters


class _Prober:
    """Video facts by :func:`probe`, once per file; ``None`` for a file that is not there."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._seen: dict[Path, Any] = {}

    def __call__(self, path: Path) -> Any:
        if not self.enabled or not path.is_file():
            return None
        if path not in self._seen:
            self._seen[path] = probe(path)
        return self._seen[path]


def _from_sample(sample: Sample, task: str | None, prober: _Prober) -> Record:
    meta = dict(sample.meta)
    num_frames = meta.pop("num_frames", None)  # a loader may pass the frame count this way
    width, height, fps = sample.width, sample.height, sample.fps
    if sample.gt is not None:
        fps = fps or sample.gt.fps
    info = prober(sample.video)
    if info is not None:  # only fills what the annotation does not say
        width, height = width or info.width, height or info.height
        fps, num_frames = fps or info.fps, num_frames or info.num_frames
    if sample.span_seconds is not None:
        meta["source_span"] = list(sample.span_seconds)
    task = task or ("stvg" if sample.gt is not None else "vtg")
    if task not in ("stvg", "vtg"):
        raise ValueError(f"a video sample converts to stvg or vtg, not {task!r}")
    boxes: dict[int, list[float]] = {}
    if sample.gt is not None:
        tube, gt_fps = sample.gt.tube, sample.gt.fps
        span: tuple[float, float] | None = (tube.start / gt_fps, tube.end / gt_fps)
        meta["span_frames"] = [tube.start, tube.end]
        meta["segment"] = [int(v) for v in sample.gt.segment]
        if sample.gt.qtype is not None:
            meta["qtype"] = sample.gt.qtype
        if task == "stvg":
            boxes = tube.box_dict()
    elif task == "stvg":
        raise ValueError("the sample has no ground-truth tube, so it cannot be an stvg record")
    else:
        span = sample.span_seconds
    return Record(
        task, sample.id, sample.video, sample.sentence, width, height, fps, num_frames, span, boxes, meta
    )


def _from_ref(ref: RefExpr, task: str | None) -> Record:
    if task not in (None, "rec"):
        raise ValueError(f"a referring expression converts to rec, not {task!r}")
    meta = {**ref.meta, "split": ref.split}
    return Record(
        "rec",
        ref.id,
        ref.image,
        ref.sentence,
        ref.width,
        ref.height,
        boxes={0: _box(ref.box, "box")},
        meta=meta,
    )


def records_from_samples(
    samples: Iterable[Sample | RefExpr],
    task: str | None = None,
    *,
    probe_videos: bool = False,
    skip_invalid: bool = False,
) -> list[Record]:
    """Convert loader output to records.

    Args:
        samples: :class:`Sample` s (HC-STVG, VidSTG, toy, Charades-STA) or :class:`RefExpr` s.
        task: ``None`` picks per sample: a Sample with a GT tube -> stvg, without -> vtg,
            a RefExpr -> rec. ``"vtg"`` turns STVG samples into span-only records.
        probe_videos: fill the width, height, fps and frame count an annotation lacks by probing
            the video file, when it exists (Charades-STA gives none of them).
        skip_invalid: skip a sample that makes no valid record (warning :class:`RecordWarning`)
            instead of raising.

    Conversions: an stvg span is the GT tube's native frames over fps (so boxes and span agree);
    ``meta`` keeps the loader's meta plus ``span_frames`` (exact native span), ``segment`` (the
    evaluation segment), ``qtype`` and ``source_span`` (the annotation's seconds, when given).
    ``Sample.meta["num_frames"]``, when a loader sets it, becomes ``num_frames``.

    Raises:
        DatasetError: a sample makes no valid record (naming its id), unless skipped.
    """
    if task is not None and task not in TASKS:
        raise DatasetError(f"task must be one of {TASKS}, got {task!r}")
    prober = _Prober(probe_videos)
    out: list[Record] = []
    for sample in samples:
        try:
            record = (
                _from_ref(sample, task) if isinstance(sample, RefExpr) else _from_sample(sample, task, prober)
            )
        except ValueError as err:
            message = f"sample {sample.id!r} makes no valid record: {err}"
            if not skip_invalid:
                raise DatasetError(message) from None
            warnings.warn(f"{message} (skipped)", RecordWarning, stacklevel=2)
            continue
        out.append(record)
    return out


def unreadable_media(records: Sequence[Record], min_frames: int = 2) -> list[tuple[str, str]]:
    """``(id, reason)`` of the records whose video cannot be decoded or has fewer than
    ``min_frames`` frames (a training run would meet them as errors). Images are not checked."""
    found: list[tuple[str, str]] = []
    seen: dict[Path, str | None] = {}
    for record in records:
        if record.task == "rec":
            continue
        path = Path(record.media)
        if path not in seen:
            try:
                count = probe(path).num_frames
                seen[path] = None if count >= min_frames else f"only {count} frame(s)"
            except (STVGError, OSError) as err:
                seen[path] = " ".join(str(err).split())
        if seen[path] is not None:
            found.append((record.id, str(seen[path])))
    return found


def convert(
    dataset_name: str,
    path: Path | str,
    out_jsonl: Path | str,
    *,
    task: str | None = None,
    probe_videos: bool = False,
    skip_invalid: bool = False,
    check_videos: bool = False,
    **loader_kw: Any,
) -> list[Record]:
    """Load a dataset with the core loaders, convert it (:func:`records_from_samples`), write JSONL.

    Args:
        dataset_name: a name of :func:`zsgrounding.datasets.load_dataset` (``hcstvg-v1``,
            ``hcstvg-v2``, ``vidstg``, ``charades-sta``, ``toy``) or ``refcoco`` / ``refcoco+`` /
            ``refcocog`` (``path`` = COCO ``instances.json``; pass ``refs=`` the refs JSON, and
            optionally ``split=``, ``image_root=``).
        path: the annotation file (or toy folder).
        out_jsonl: where the records go.
        task, probe_videos, skip_invalid: see :func:`records_from_samples`.
        check_videos: decode every record's video header (:func:`unreadable_media`) and leave
            out the records whose video is unreadable or too short, each with a
            :class:`RecordWarning`.
        **loader_kw: passed to the loader (``video_root``, ``vidor_dir``, ``skip_malformed``, ...).

    Media paths under a given ``video_root`` / ``image_root`` (or the toy folder) are made absolute
    before writing, so they are written relative to the JSONL's folder when inside it. Without a
    root the loaders give bare file names, which then count as relative to the JSONL's folder.
    HC-STVG and toy records get ``num_frames`` from the annotation's ``img_num``.

    Returns:
        The records written.
    """
    rooted = dataset_name == "toy" or any(loader_kw.get(k) is not None for k in ("video_root", "image_root"))
    samples: list[Sample | RefExpr]
    if dataset_name in REC_DATASETS:
        if "refs" not in loader_kw:
            raise DatasetError(f"{dataset_name}: pass refs= (the refs file exported to JSON)")
        samples = list(load_refcoco(path, **loader_kw))
        for ref in samples:
            ref.image = ref.image.absolute() if rooted else ref.image
    else:
        samples = list(load_dataset(dataset_name, path, **loader_kw))
        for sample in samples:
            if rooted:
                sample.video = sample.video.absolute()
            if dataset_name in ("hcstvg-v1", "hcstvg-v2", "toy") and sample.gt is not None:
                # The loader's evaluation segment is (0, img_num - 1): img_num comes back from it.
                sample.meta.setdefault("num_frames", sample.gt.segment[1] + 1)
    records = records_from_samples(samples, task, probe_videos=probe_videos, skip_invalid=skip_invalid)
    if check_videos:
        dropped = dict(unreadable_media(records))
        for record_id, reason in dropped.items():
            warnings.warn(f"record {record_id!r} left out: {reason}", RecordWarning, stacklevel=2)
        records = [r for r in records if r.id not in dropped]
    write_records(out_jsonl, records)
    return records


# ---------------------------------------------------------------------------------------- datasets


class RecordDataset(Dataset):
    """A map-style torch dataset over records; items are the :class:`Record` objects themselves."""

    def __init__(self, records: Sequence[Record]) -> None:
        self.records = list(records)

    @classmethod
    def from_jsonl(cls, path: Path | str) -> RecordDataset:
        return cls(read_records(path))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Record:
        return self.records[index]


def _quotas(length: int, weights: Mapping[str, float]) -> dict[str, int]:
    """Split ``length`` slots by ``weights`` (largest remainder; ties go to the earlier name)."""
    names = sorted(weights)
    total = sum(weights.values())
    exact = {n: length * weights[n] / total for n in names}
    quotas = {n: math.floor(exact[n]) for n in names}
    leftover = length - sum(quotas.values())
    for name in sorted(names, key=lambda n: (-(exact[n] - quotas[n]), n))[:leftover]:
        quotas[name] += 1
    return quotas


class MixedDataset(Dataset):
    """Several record sources mixed by ratio in a deterministic, seedable, epoch-able order.

    Each epoch has ``length`` slots (default: the records of every source with a positive
    ratio). Source ``s`` gets ``round(length * ratio_s / sum(ratios))`` of them (largest
    remainder, so the counts are exact up to one slot), placed in an order shuffled per
    ``(seed, epoch)``. Inside a source, records are drawn without replacement from a shuffled
    pass over it; when a source runs out it is cycled: a new pass, shuffled anew, begins. The
    passes continue across epochs (epoch ``e`` of a source with quota ``q`` takes positions
    ``[e * q, (e + 1) * q)`` of its stream), so a small source is not replayed from the same
    records each epoch, and any epoch's order is computed directly, without the earlier ones.

    Same sources, ratios, seed, length and epoch -> the same order. Call :meth:`set_epoch`
    before each epoch (before a DataLoader creates its worker iterators).
    """

    def __init__(
        self,
        sources: Mapping[str, Sequence[Record]],
        ratios: Mapping[str, float],
        seed: int = 0,
        length: int | None = None,
    ) -> None:
        if set(ratios) != set(sources):
            raise ValueError(f"ratios name {sorted(ratios)} but the sources are {sorted(sources)}")
        for name, ratio in ratios.items():
            if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not ratio >= 0:
                raise ValueError(f"ratio of {name!r} must be a number >= 0, got {ratio!r}")
            if ratio > 0 and not sources[name]:
                raise ValueError(f"source {name!r} has a positive ratio but no records")
        self.weights = {n: float(r) for n, r in ratios.items() if r > 0}
        if not self.weights:
            raise ValueError("at least one ratio must be positive")
        self.sources = {n: list(sources[n]) for n in self.weights}
        self.seed = int(seed)
        self.length = sum(len(s) for s in self.sources.values()) if length is None else int(length)
        if self.length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        self.quotas = _quotas(self.length, self.weights)
        self.epoch = 0
        self._plan: list[tuple[str, int]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order :meth:`__getitem__` and :meth:`__iter__` follow."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        if epoch != self.epoch:
            self.epoch, self._plan = int(epoch), None

    def _stream(self, name: str, start: int, count: int) -> list[int]:
        """Positions ``[start, start + count)`` of the source's endless stream of shuffled passes."""
        n = len(self.sources[name])
        tag = zlib.crc32(name.encode("utf-8"))  # stable across runs, unlike hash()
        out: list[int] = []
        if count <= 0:
            return out
        for cycle in range(start // n, (start + count - 1) // n + 1):
            order = np.random.default_rng([self.seed, 1, tag, cycle]).permutation(n)
            lo = max(start - cycle * n, 0)
            hi = min(start + count - cycle * n, n)
            out.extend(int(i) for i in order[lo:hi])
        return out

    def plan(self, epoch: int | None = None) -> list[tuple[str, int]]:
        """``(source name, index in that source)`` for every slot of ``epoch`` (default: the current)."""
        epoch = self.epoch if epoch is None else int(epoch)
        if epoch == self.epoch and self._plan is not None:
            return self._plan
        names = sorted(self.quotas)
        labels = np.repeat(np.arange(len(names)), [self.quotas[n] for n in names])
        labels = np.random.default_rng([self.seed, 0, epoch]).permutation(labels)
        picks = {n: iter(self._stream(n, epoch * self.quotas[n], self.quotas[n])) for n in names}
        plan = [(names[k], next(picks[names[k]])) for k in labels.tolist()]
        if epoch == self.epoch:
            self._plan = plan
        return plan

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Record:
        name, i = self.plan()[index]
        return self.sources[name][i]

    def __iter__(self) -> Iterator[Record]:
        for name, i in self.plan():
            yield self.sources[name][i]


__all__ = [
    "KEYS",
    "REC_DATASETS",
    "TASKS",
    "MixedDataset",
    "Record",
    "RecordDataset",
    "RecordWarning",
    "convert",
    "read_records",
    "records_from_samples",
    "span_frames",
    "write_records",
]
