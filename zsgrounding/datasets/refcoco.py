"""RefCOCO / RefCOCO+ / RefCOCOg loader (referring expression comprehension on images).

Inputs: the COCO ``instances.json`` (``images`` with ``id``, ``file_name``, ``width``,
``height``; ``annotations`` with ``id``, ``image_id``, ``bbox`` as ``[x, y, w, h]``) and the refs
file as JSON: a list of ``{ref_id, ann_id, image_id, split, sentences: [{sent}, ...]}``.

Upstream ships the refs as a pickle. A pickle can run arbitrary code when loaded, so this loader
never unpickles: it asks for a JSON export instead.

One :class:`RefExpr` per sentence, id ``f"{ref_id}_{i}"`` with ``i`` the sentence's index in
the ref. Malformed refs are named by ``ref_id``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zsgrounding.datasets.common import (
    EntryPolicy,
    LoadReport,
    MalformedEntry,
    as_mapping,
    get_int,
    get_list,
    get_str,
    get_value,
    read_json,
    xywh_boxes,
)
from zsgrounding.errors import DatasetError

PICKLE_SUFFIXES = (".p", ".pkl", ".pickle")


@dataclass
class RefExpr:
    """One referring expression and the box it refers to.

    Attributes:
        id: ``f"{ref_id}_{i}"``.
        image: path of the image file.
        sentence: the expression.
        box: ``(4,)`` float64 pixel ``xyxy`` box of the referred object.
        width, height: image size in pixels.
        split: the ref's split (``train``, ``val``, ``testA``, ...).
        meta: ``ref_id``, ``ann_id``, ``image_id``.
    """

    id: str
    image: Path
    sentence: str
    box: np.ndarray
    width: int
    height: int
    split: str
    meta: dict[str, Any] = field(default_factory=dict)


def load_refcoco(
    instances: Path | str,
    refs: Path | str,
    split: str | None = "val",
    image_root: Path | str | None = None,
    skip_malformed: bool = False,
    report: LoadReport | None = None,
) -> list[RefExpr]:
    """Load the referring expressions of one split.

    Args:
        instances: COCO ``instances.json``.
        refs: the refs file exported to JSON (a ``.p``/``.pkl`` path is refused).
        split: keep refs of this split only; ``None`` keeps all.
        image_root: folder holding the images; without it the image path is the bare file name.
        skip_malformed: skip and report malformed refs instead of raising.
        report: receives the loaded count and the skipped refs.

    Raises:
        DatasetError: unreadable or pickled file, or a malformed ref (unless skipped).
    """
    refs = Path(refs)
    if refs.suffix.lower() in PICKLE_SUFFIXES:
        raise DatasetError(
            f"{refs} is a pickle; this toolkit never unpickles user files. If you trust it, export it once"
            f" to JSON: python -c \"import json,pickle; json.dump(pickle.load(open('{refs}','rb')),"
            f" open('{refs.with_suffix('.json')}','w'))\""
        )
    images, boxes = _read_instances(instances)
    ref_list = read_json(refs, "refs file")
    if not isinstance(ref_list, list):
        raise DatasetError(f"{refs}: the refs file must be a JSON list of refs")
    _check_split(refs, ref_list, split)
    root = Path(image_root) if image_root is not None else None
    policy = EntryPolicy(refs, skip_malformed, report)
    out: list[RefExpr] = []
    for n, raw in enumerate(ref_list):
        ref_id = raw.get("ref_id") if isinstance(raw, Mapping) else None
        entry_id = str(ref_id) if ref_id is not None else f"#{n}"
        exprs = policy.attempt(
            entry_id, lambda r=raw, e=entry_id: _parse_ref(e, r, split, images, boxes, root)
        )
        out.extend(exprs or [])
    return policy.finish(out)


def _check_split(path: Path, ref_list: list[Any], split: str | None) -> None:
    """A split no ref carries is a typo, not an empty split: say so instead of returning nothing."""
    present = {r.get("split") for r in ref_list if isinstance(r, Mapping)}
    if split is not None and ref_list and split not in present:
        names = sorted(str(p) for p in present)
        raise DatasetError(f"{path}: no ref has split {split!r}; the file's splits are {names}")


def _read_instances(path: Path | str) -> tuple[dict[int, Mapping[str, Any]], dict[int, tuple[int, Any]]]:
    """``image id -> image record`` and ``annotation id -> (image id, raw bbox)``.

    Errors here name the file but not one ref: a broken instances file breaks every ref.
    """
    data = read_json(path, "COCO instances file")
    if not isinstance(data, Mapping) or not isinstance(data.get("images"), list):
        raise DatasetError(f"{path}: a COCO instances file needs an 'images' list and an 'annotations' list")
    if not isinstance(data.get("annotations"), list):
        raise DatasetError(f"{path}: a COCO instances file needs an 'images' list and an 'annotations' list")
    try:
        images = {get_int(as_mapping(im), "id", maximum=None): im for im in data["images"]}
        boxes = {
            get_int(as_mapping(a), "id", maximum=None): (
                get_int(a, "image_id", maximum=None),
                get_value(a, "bbox"),
            )
            for a in data["annotations"]
        }
    except MalformedEntry as err:
        raise DatasetError(f"{path}: malformed image or annotation: {err}") from None
    return images, boxes


def _parse_ref(
    entry_id: str,
    raw: Any,
    split: str | None,
    images: Mapping[int, Mapping[str, Any]],
    boxes: Mapping[int, tuple[int, Any]],
    root: Path | None,
) -> list[RefExpr]:
    ref = as_mapping(raw, "ref")
    ref_split = get_str(ref, "split")
    if split is not None and ref_split != split:
        return []
    ann_id, image_id = get_int(ref, "ann_id", maximum=None), get_int(ref, "image_id", maximum=None)
    if ann_id not in boxes:
        raise MalformedEntry(f"ann_id {ann_id} is not in the instances file")
    ann_image, raw_box = boxes[ann_id]
    if ann_image != image_id:
        raise MalformedEntry(f"ann_id {ann_id} belongs to image {ann_image}, not image_id {image_id}")
    if image_id not in images:
        raise MalformedEntry(f"image_id {image_id} is not in the instances file")
    image = images[image_id]
    file_name = get_str(image, "file_name")
    width, height = get_int(image, "width", minimum=1), get_int(image, "height", minimum=1)
    box = xywh_boxes([raw_box], f"bbox of annotation {ann_id}")[0]
    sentences = get_list(ref, "sentences")
    if not sentences:
        raise MalformedEntry("'sentences' is empty")
    texts = [get_str(as_mapping(s, "a sentence"), "sent").strip() for s in sentences]
    path = root / file_name if root is not None else Path(file_name)
    meta = {"ref_id": ref.get("ref_id"), "ann_id": ann_id, "image_id": image_id}
    return [
        RefExpr(f"{entry_id}_{i}", path, text, box.copy(), width, height, ref_split, dict(meta))
        for i, text in enumerate(texts)
    ]
