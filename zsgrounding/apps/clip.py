"""`stvg ground VIDEO QUERY`: one clip grounded, its result JSON and pictures written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zsgrounding.proposals.trackfile import file_digest
from zsgrounding.runner import grounder_settings, result_record
from zsgrounding.types import GroundingResult
from zsgrounding.viz import render_result

__all__ = ["clip_summary", "ground_clip"]


def ground_clip(
    grounder: Any, video: Path, query: str, out: Path, fmt: str = "gif", tracks_file: Path | None = None
) -> tuple[GroundingResult, dict[str, Path]]:
    """Ground ``query`` in ``video`` and write ``<stem>_result.json`` and the pictures into ``out``.

    The result JSON is the runner's record of the sample, with the grounder's resolved settings
    and, when the tracks came from the user's file, that file and its SHA-256.

    Returns:
        the result and the written files by name (``"result"`` first).
    """
    result = grounder.ground(video, query)
    out.mkdir(parents=True, exist_ok=True)
    record = result_record(video.name, result, result.extras.get("timings", {}).get("total", 0.0))
    settings = grounder_settings(grounder)
    if settings is not None:
        record["settings"] = settings
    if tracks_file is not None:
        record["tracks"] = {"file": str(tracks_file), "sha256": file_digest(tracks_file)}
    result_path = out / f"{video.stem}_result.json"
    result_path.write_text(json.dumps(record, indent=1) + "\n")
    paths = {"result": result_path}
    paths.update(render_result(out, video, result, query, format=fmt))
    return result, paths


def clip_summary(result: GroundingResult, video_name: str) -> list[str]:
    """The lines `stvg ground` prints about a result: the tube (or why none) and the sub-queries."""
    tube = result.tube
    if len(tube) == 0:
        lines = [f"no tube: {result.extras.get('reason', 'nothing grounded')}"]
    else:
        lines = [f"tube: frames [{tube.start}, {tube.end}) of {video_name}, {len(tube.frame_ids)} boxes"]
    subs = result.extras.get("sub_queries", {})
    if subs:
        lines.append(
            f"attribute: {subs.get('attribute')!r}  action: {subs.get('action')!r}  ({subs.get('source')})"
        )
    return lines
