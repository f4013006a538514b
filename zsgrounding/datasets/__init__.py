"""Dataset loaders: every STVG / temporal-grounding format becomes a list of :class:`Sample`.

``load_dataset(name, path, **kw)`` picks the loader by name; the loaders themselves are exported
for their extra options. Every loader takes ``skip_malformed`` (skip and report malformed entries
instead of raising) and ``report`` (a :class:`LoadReport` receiving the skipped entries).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zsgrounding.datasets.charades import load_charades
from zsgrounding.datasets.common import LoadReport, MalformedEntryWarning, SkippedEntry
from zsgrounding.datasets.hcstvg import load_hcstvg
from zsgrounding.datasets.refcoco import RefExpr, load_refcoco
from zsgrounding.datasets.toy import TOY_ANNOTATIONS, TOY_SIDECAR, TOY_VIDEOS, load_toy
from zsgrounding.datasets.vidstg import QTYPES, load_vidstg
from zsgrounding.errors import DatasetError
from zsgrounding.types import Sample

DATASET_NAMES = ("hcstvg-v1", "hcstvg-v2", "vidstg", "charades-sta", "toy")


def load_dataset(name: str, path: Path | str, **kw: Any) -> list[Sample]:
    """Load the dataset ``name`` from ``path``.

    Args:
        name: one of :data:`DATASET_NAMES`:
            ``hcstvg-v1`` / ``hcstvg-v2`` (``path`` = annotation JSON, see :func:`load_hcstvg`),
            ``vidstg`` (raw or TubeDETR-preprocessed JSON; the raw form needs ``vidor_dir=``,
            see :func:`load_vidstg`), ``charades-sta`` (text file, :func:`load_charades`),
            ``toy`` (a folder written by the toy world: ``annotations.json`` in HC-STVG v1 format
            plus ``videos/``; ``path`` may also be the ``annotations.json`` itself).
        path: the annotation file (or the toy folder).
        **kw: passed to the loader (``video_root``, ``skip_malformed``, ``report``, ...).

    Raises:
        DatasetError: unknown name, or any loader error.
    """
    if name == "hcstvg-v1":
        return load_hcstvg(path, version=1, **kw)
    if name == "hcstvg-v2":
        return load_hcstvg(path, version=2, **kw)
    if name == "vidstg":
        return load_vidstg(path, **kw)
    if name == "charades-sta":
        return load_charades(path, **kw)
    if name == "toy":
        return load_toy(path, **kw)
    raise DatasetError(f"unknown dataset {name!r}; valid names: {', '.join(DATASET_NAMES)}")


__all__ = [
    "DATASET_NAMES",
    "QTYPES",
    "TOY_ANNOTATIONS",
    "TOY_SIDECAR",
    "TOY_VIDEOS",
    "LoadReport",
    "MalformedEntryWarning",
    "RefExpr",
    "SkippedEntry",
    "load_charades",
    "load_dataset",
    "load_hcstvg",
    "load_refcoco",
    "load_toy",
    "load_vidstg",
]
