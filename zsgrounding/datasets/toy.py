"""The toy world's dataset folder, read: ``annotations.json`` (HC-STVG v1 format), ``videos/`` and
the ``toyworld.json`` sidecar with what HC-STVG's format cannot hold (every object's track, the
target's id, the caption's parts).

The folder is written by :func:`zsgrounding.toy.world.make_dataset`; reading it is a dataset format
like the others, so it lives in the core and needs nothing from the simulator.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from zsgrounding.datasets.hcstvg import load_hcstvg
from zsgrounding.errors import DatasetError
from zsgrounding.types import Sample, Track

TOY_ANNOTATIONS = "annotations.json"
TOY_VIDEOS = "videos"
TOY_SIDECAR = "toyworld.json"


def load_toy(path: Path | str, **kw: Any) -> list[Sample]:
    """The samples of a toy folder (``path`` may also be its ``annotations.json``).

    ``kw`` goes to :func:`~zsgrounding.datasets.hcstvg.load_hcstvg` (``video_root`` defaults to the
    folder's ``videos/``); each sample's ``meta`` gains the sidecar's keys (:func:`sidecar_meta`).
    """
    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    kw.setdefault("video_root", folder / TOY_VIDEOS)
    samples = load_hcstvg(folder / TOY_ANNOTATIONS, version=1, **kw)
    if (folder / TOY_SIDECAR).exists():
        videos = load_sidecar(folder)["videos"]
        for sample in samples:
            if sample.id in videos:
                sample.meta.update(sidecar_meta(videos[sample.id]))
    return samples


def sidecar_meta(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The ``Sample.meta`` of a toy video from its ``toyworld.json`` entry (same in memory and on disk).

    Keys: ``dataset``, ``target_id``, ``caption_parts`` (attribute_phrase, action_phrase, colour,
    shape, size, action, verb), ``num_objects``.
    """
    return {
        "dataset": "toyworld",
        "target_id": int(entry["target"]),
        "caption_parts": dict(entry["caption_parts"]),
        "num_objects": len(entry["objects"]),
    }


def sidecar_tracks(entry: Mapping[str, Any]) -> list[Track]:
    """The ground-truth tracks of one ``toyworld.json`` video entry (same as :func:`object_tracks`)."""
    tracks = []
    for obj in entry["objects"]:
        boxes = obj["boxes"]
        fids = np.array([int(f) for f in boxes], dtype=np.int64)
        tracks.append(
            Track(fids, np.array(list(boxes.values()), dtype=np.float64), obj["label"], 1.0, obj["id"])
        )
    return tracks


def load_sidecar(out_dir: Path | str) -> dict[str, Any]:
    """Read ``out_dir/toyworld.json`` (or that file itself); its ``videos`` are keyed by file name."""
    path = Path(out_dir)
    path = path / "toyworld.json" if path.is_dir() else path
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DatasetError(f"{path}: toy world sidecar not found") from exc
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable toy world sidecar ({exc})") from exc
    if (
        not isinstance(data, dict)
        or data.get("format") != "toyworld-v1"
        or not isinstance(data.get("videos"), dict)
    ):
        raise DatasetError(f"{path}: not a toyworld-v1 sidecar")
    return data
