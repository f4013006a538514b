"""The report's pictures: find the GIFs / plots a run folder already has, draw the missing ones, and
give each its ``src`` (a path relative to the page, or a ``data:`` URI).

Pictures are drawn with :func:`zsgrounding.viz.render_result` into ``<run>/report/``; files already
there, or ``stvg ground`` pictures in the run folder itself, are reused.
"""

from __future__ import annotations

import base64
import html
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np
from tqdm import tqdm

from zsgrounding.predictions import tube_from_json
from zsgrounding.types import GroundingResult, Sample

if TYPE_CHECKING:
    from zsgrounding.report_html.load import _Side

PICTURES_DIR = "report"
_KINDS = {"video": "_grounded.gif", "attention": "_attention.png", "temporal": "_temporal.png"}
_MIME = {".gif": "image/gif", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


@dataclass
class _Pictures:
    """Finds, draws and counts the pictures of the result lines."""

    render: bool
    force: bool
    progress: bool
    rendered: int = 0
    reused: int = 0
    notes: list[str] = field(default_factory=list)

    def fill(
        self,
        run_dir: Path,
        sides: Mapping[str, _Side],
        records: Mapping[str, dict],
        samples: Mapping[str, Sample],
    ) -> None:
        """Set ``side.pictures`` of every successful sample of one run folder."""
        todo = [i for i, side in sides.items() if side.status == "ok"]
        for sample_id in tqdm(
            todo, desc=f"pictures {run_dir.name}", unit="sample", disable=not self.progress
        ):
            side = sides[sample_id]
            found = {} if self.force else _existing_pictures(run_dir, sample_id)
            if "video" in found and "temporal" in found:
                self.reused += len(found)
                side.pictures = found
                continue
            sample = samples.get(sample_id)
            if not self.render or sample is None:
                side.pictures = found
                self.reused += len(found)
                if sample is None and self.render:
                    side.note = "not drawn: the sample's video is unknown (pass --dataset/--gt)"
                continue
            try:
                drawn = _draw(run_dir / PICTURES_DIR, sample_id, records[sample_id], sample)
            except Exception as err:  # a bad video costs its pictures, not the report
                side.pictures = found
                side.note = f"not drawn: {type(err).__name__}: {' '.join(str(err).split())}"
                self.notes.append(f"{run_dir.name}/{sample_id}: {side.note}")
                continue
            self.rendered += len(drawn)
            self.reused += len(found.keys() - drawn.keys())
            side.pictures = {**found, **drawn}


def _file_stem(sample_id: str) -> str:
    """A file name stem for a sample id (``toy_00001.mp4`` -> ``toy_00001.mp4``, ``a/b c`` -> ``a_b_c``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", sample_id).strip("._") or "sample"


def _existing_pictures(run_dir: Path, sample_id: str) -> dict[str, Path]:
    """Pictures already drawn for ``sample_id``: in ``run/report/`` first, then as `stvg ground` names them."""
    stems = dict.fromkeys([_file_stem(sample_id), _file_stem(Path(sample_id).stem)])
    found: dict[str, Path] = {}
    for folder in (run_dir / PICTURES_DIR, run_dir):
        for stem in stems:
            for kind, suffix in _KINDS.items():
                path = folder / f"{stem}{suffix}"
                if kind not in found and path.is_file():
                    found[kind] = path
    return found


def _array(value: Any) -> np.ndarray | None:
    return None if value is None else np.asarray(value)


def _draw(out: Path, sample_id: str, record: Mapping[str, Any], sample: Sample) -> dict[str, Path]:
    """Draw the GIF and temporal plot of one result line with :func:`render_result`."""
    from zsgrounding.viz import render_result  # matplotlib and Pillow load only when drawing

    if not Path(sample.video).is_file():
        raise FileNotFoundError(f"video {sample.video} not found")
    result = GroundingResult(
        tube=tube_from_json(sample_id, record["tube"]),
        track_scores=_array(record.get("track_scores")),
        chosen_track=record.get("chosen_track"),
        frame_scores=_array(record.get("frame_scores")),
        sampled_frame_ids=_array(record.get("sampled_frame_ids")),
        extras=dict(record.get("extras") or {}),
    )
    gt = sample.gt.tube if sample.gt is not None else None
    return render_result(out, sample.video, result, sample.sentence, gt=gt, name=_file_stem(sample_id))


class _Images:
    """``src`` values of pictures: data URIs, or URL-quoted paths relative to the page."""

    def __init__(self, page: Path, embed: bool) -> None:
        self.base = page.parent
        self.embed = embed

    def src(self, path: Path) -> str:
        if self.embed:
            mime = _MIME.get(path.suffix.lower(), "application/octet-stream")
            return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"
        relative = os.path.relpath(path.resolve(), self.base.resolve())
        return "/".join(quote(part) for part in Path(relative).parts)

    def img(self, path: Path, alt: str, css: str, eager: bool = True) -> str:
        lazy = "" if eager else ' loading="lazy"'
        return f'<img class="{css}" src="{_e(self.src(path))}" alt="{_e(alt)}"{lazy}>'


def _e(value: Any) -> str:
    """Text from files, escaped for element content and quoted attributes."""
    return html.escape(str(value), quote=True)
