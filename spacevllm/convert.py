"""Datasets -> SpaceVLLM records: STVG and temporal-grounding samples, RefCOCO expressions; the
check that every record's video can be read."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from spacevllm.data import REC_DATASETS, TASKS, Record, RecordWarning, box_list, write_records
from zsgrounding.datasets import RefExpr, load_dataset, load_refcoco
from zsgrounding.errors import DatasetError, STVGError
from zsgrounding.types import Sample
from zsgrounding.video import probe


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
        boxes={0: box_list(ref.box, "box")},
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


__all__ = ["convert", "records_from_samples", "unreadable_media"]
