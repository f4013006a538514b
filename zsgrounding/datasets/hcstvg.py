"""HC-STVG v1 and v2 annotation loader.

File layout (one JSON object keyed by video file name)::

    {"55_vfjywN5CN0Y.mp4": {"bbox": [[x, y, w, h], ...], "st_frame": 157, "img_num": 480,
                            "st_time": 6.5, "ed_time": 11.95,
                            "width": 480, "height": 360, "caption": "..."}}

v2 names the caption ``English`` and gives the size as ``img_size: [height, width]``.

Conversions to the toolkit's conventions:

- ``st_frame`` is 1-based: the tube starts at native frame ``st_frame - 1`` and ends (exclusive)
  ``len(bbox)`` frames later, one box per frame. ``start_convention="tubedetr"`` reproduces
  TubeDETR's preprocessing, which uses ``st_frame`` as if it were 0-based (one frame late).
  Entries are validated on the 1-based reading whatever the convention, so both conventions load
  the same entries.
- fps: the entry's ``fps`` key when present (the toy world writes it), else ``img_num / 20``
  because every HC-STVG clip lasts 20 s (as TubeDETR).
- evaluated segment: ``(0, img_num - 1)``: TubeDETR never samples the last frame.
- ``st_time`` / ``ed_time`` become ``Sample.span_seconds`` when present (they are optional).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from zsgrounding.datasets.common import (
    EntryPolicy,
    LoadReport,
    MalformedEntry,
    as_mapping,
    get_float,
    get_int,
    get_list,
    get_str,
    get_value,
    make_tube,
    read_json,
    to_int,
    xywh_boxes,
)
from zsgrounding.errors import DatasetError
from zsgrounding.types import GroundTruth, Sample

CLIP_SECONDS = 20.0  # every HC-STVG clip is 20 s long
START_CONVENTIONS = ("one_based", "tubedetr")

StartConvention = Literal["one_based", "tubedetr"]


def load_hcstvg(
    path: Path | str,
    version: int = 1,
    video_root: Path | str | None = None,
    start_convention: StartConvention = "one_based",
    skip_malformed: bool = False,
    report: LoadReport | None = None,
) -> list[Sample]:
    """Load an HC-STVG v1 or v2 annotation file as one :class:`Sample` per video.

    Args:
        path: the annotation JSON (e.g. ``test.json``, ``valv2.json``).
        version: 1 or 2 (v2: caption ``English``, size ``img_size`` as ``[height, width]``).
        video_root: folder holding the videos; ``Sample.video = video_root / key``. Without it
            the video path is the bare key.
        start_convention: ``"one_based"`` (correct: start = ``st_frame - 1``) or ``"tubedetr"``
            (start = ``st_frame``, reproducing TubeDETR's preprocessing).
        skip_malformed: skip and report malformed entries instead of raising.
        report: receives the loaded count and the skipped entries.

    Returns:
        Samples in file order, ``id`` = the video key.

    Raises:
        DatasetError: unreadable file, bad arguments, or a malformed entry (unless skipped).
    """
    if version not in (1, 2):
        raise DatasetError(f"HC-STVG version must be 1 or 2, got {version!r}")
    if start_convention not in START_CONVENTIONS:
        raise DatasetError(f"start_convention must be one of {START_CONVENTIONS}, got {start_convention!r}")
    data = read_json(path, "HC-STVG annotation file")
    if not isinstance(data, Mapping):
        raise DatasetError(f"{path}: HC-STVG annotations must be an object keyed by video file name")
    root = Path(video_root) if video_root is not None else None
    offset = 1 if start_convention == "tubedetr" else 0
    policy = EntryPolicy(path, skip_malformed, report)
    samples: list[Sample] = []
    for key, entry in data.items():
        sample = policy.attempt(key, lambda k=key, e=entry: _parse_entry(k, e, version, root, offset))
        if sample is not None:
            samples.append(sample)
    return policy.finish(samples)


def _parse_entry(key: str, raw: Any, version: int, root: Path | None, offset: int) -> Sample:
    entry = as_mapping(raw)
    width, height = _size(entry, version)
    sentence = get_str(entry, "caption" if version == 1 else "English").strip()
    num_frames = get_int(entry, "img_num", minimum=1)
    fps = get_float(entry, "fps", positive=True) if "fps" in entry else num_frames / CLIP_SECONDS

    raw_boxes = get_list(entry, "bbox")
    if not raw_boxes:
        raise MalformedEntry("'bbox' is empty")
    boxes = xywh_boxes(raw_boxes, "'bbox'")
    first = get_int(entry, "st_frame", minimum=1) - 1  # the true 0-based first box frame
    if first + len(boxes) > num_frames:
        raise MalformedEntry(
            f"tube frames {first}..{first + len(boxes) - 1} (from st_frame and {len(boxes)} boxes)"
            f" run past img_num={num_frames}"
        )
    start = first + offset
    tube = make_tube(start, start + len(boxes), range(start, start + len(boxes)), boxes)

    span_seconds = None
    if "st_time" in entry or "ed_time" in entry:
        st_time, ed_time = get_float(entry, "st_time"), get_float(entry, "ed_time")
        if ed_time < st_time:
            raise MalformedEntry(f"ed_time {ed_time} is before st_time {st_time}")
        span_seconds = (st_time, ed_time)

    return Sample(
        id=key,
        video=root / key if root is not None else Path(key),
        sentence=sentence,
        gt=GroundTruth(tube=tube, fps=fps, segment=(0, num_frames - 1)),
        width=width,
        height=height,
        fps=fps,
        span_seconds=span_seconds,
        meta={"st_frame": first + 1},
    )


def _size(entry: Mapping[str, Any], version: int) -> tuple[int, int]:
    """``(width, height)`` from v1's ``width``/``height`` or v2's ``img_size: [height, width]``."""
    if version == 1:
        return get_int(entry, "width", minimum=1), get_int(entry, "height", minimum=1)
    size = get_value(entry, "img_size")
    if not isinstance(size, list) or len(size) != 2:
        raise MalformedEntry(f"'img_size' must be [height, width], got {size!r}")
    height, width = (to_int(v, "'img_size' value", minimum=1) for v in size)
    return width, height
