"""Dataset files: toy videos written as mp4 with their HC-STVG v1 ``annotations.json`` and the
``toyworld.json`` sidecar that ``load_dataset("toy", ...)`` reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tqdm import tqdm

from zsgrounding.toy.world.config import ToyWorldConfig
from zsgrounding.toy.world.scenes import generate_one
from zsgrounding.video import write_video


def _dump(data: Any, path: Path) -> None:
    # Compact and in insertion order: the same seed gives byte-identical files.
    path.write_text(json.dumps(data, separators=(",", ":"), ensure_ascii=True) + "\n", encoding="utf-8")


def make_dataset(
    out_dir: Path | str, n: int, config: ToyWorldConfig | None = None, *, progress: bool = True
) -> Path:
    """Write ``n`` toy videos and their annotations; return the path of ``annotations.json``.

    Layout: ``out_dir/videos/<name>.mp4``; ``out_dir/annotations.json`` in the HC-STVG v1 format
    (keyed by video file name; ``bbox`` ``[x, y, w, h]`` ints on consecutive frames from the
    1-based ``st_frame``; ``st_time``/``ed_time`` the half-open tube span in seconds; ``img_num``,
    ``width``, ``height``, ``caption``; plus ``fps``, which real HC-STVG lacks);
    ``out_dir/toyworld.json``: the config, the seed and per video every object, the target and the
    caption parts (see :meth:`ToyVideo.sidecar`).
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    cfg = config or ToyWorldConfig()
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    annotations: dict[str, Any] = {}
    sidecar: dict[str, Any] = {
        "format": "toyworld-v1",
        "seed": cfg.seed,
        "config": cfg.to_json(),
        "videos": {},
    }
    for index in tqdm(range(n), desc="toy world", unit="video", disable=not progress):
        video = generate_one(index, cfg)
        write_video(out / "videos" / video.key, video.frames, video.fps)
        annotations[video.key] = video.annotation()
        sidecar["videos"][video.key] = video.sidecar()
    _dump(sidecar, out / "toyworld.json")
    _dump(annotations, out / "annotations.json")
    return out / "annotations.json"


__all__ = [
    "make_dataset",
]
