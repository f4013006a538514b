"""The pictures of one grounding result: annotated video, attention sheet and temporal plot."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from zsgrounding.types import Clip, GroundingResult, Track, Tube
from zsgrounding.video import probe, read_frames
from zsgrounding.viz.attention import attention_grid_image
from zsgrounding.viz.common import _as_numpy
from zsgrounding.viz.plots import plot_temporal_scores
from zsgrounding.viz.video import _nearest, annotate_frames, write_annotated


def _playback_fps(clip: Clip) -> float:
    """Real-time rate of a clip's frames, at least 1 fps so a sparse clip still plays."""
    ids = clip.frame_ids
    step = float(np.mean(np.diff(ids))) if ids.size > 1 else 1.0
    return max(1.0, clip.fps / max(step, 1.0)) if clip.fps > 0 else 1.0


def _load_clip(
    path: Path, sampled: np.ndarray | None, max_frames: int, short_side: int | None
) -> tuple[Clip, np.ndarray | None]:
    """``(frames spread over the video, frames at the sampled ids)`` decoded in one pass."""
    info = probe(path)
    step = max(1, math.ceil(info.num_frames / max_frames))
    shown = np.arange(0, info.num_frames, step, dtype=np.int64)
    wanted = shown if sampled is None else np.union1d(shown, sampled)
    size = short_side if short_side and min(info.width, info.height) > short_side else None
    full = read_frames(path, wanted, size, info)
    pick = np.searchsorted(wanted, shown)
    clip = Clip(
        full.frames[pick], shown, full.times[pick], full.fps, full.num_frames, full.width, full.height, path
    )
    at_sampled = None if sampled is None else full.frames[np.searchsorted(wanted, sampled)]
    return clip, at_sampled


def render_result(
    out_dir: Path | str,
    video_path_or_clip: Path | str | Clip,
    result: GroundingResult,
    query: str,
    gt: Tube | None = None,
    fps: float | None = None,
    format: str = "gif",
    *,
    tracks: Sequence[Track] | None = None,
    name: str | None = None,
    max_frames: int = 120,
    short_side: int | None = 360,
) -> dict[str, Path]:
    """Write the pictures of one grounding result into ``out_dir``.

    Args:
        out_dir: folder, created if needed.
        video_path_or_clip: the video file (frames spread over the whole video are decoded) or a
            :class:`Clip` (its frames are drawn as they are).
        result: the grounder's output; its evidence needs ``sampled_frame_ids`` (or a clip whose
            frames are the sampled ones).
        query: the sentence, shown as the caption.
        gt: the ground-truth tube, drawn as ``GT`` next to the prediction ``pred``.
        fps: playback rate of the annotated video; default real time (at least 1 fps).
        format: ``"gif"`` or a video suffix such as ``"mp4"``.
        tracks: proposal tracks to draw as thin grey boxes.
        name: file name stem; default the video's stem, else ``"result"``.
        max_frames: at most this many frames are decoded from a video file.
        short_side: frames of a video file larger than this are decoded with this short side.

    Returns:
        ``{"video": ..., "attention": ..., "temporal": ...}``; ``attention`` only with evidence.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    suffix = format.lower().lstrip(".")
    maps = None if result.evidence is None else _as_numpy(result.evidence)
    sampled = None if result.sampled_frame_ids is None else np.asarray(result.sampled_frame_ids, np.int64)
    if isinstance(video_path_or_clip, Clip):
        clip = video_path_or_clip
        stem = name or (clip.path.stem if clip.path else "result")
        if maps is not None and sampled is None:
            if len(clip) != maps.shape[0]:
                raise ValueError("result.evidence has no sampled_frame_ids and does not match the clip")
            sampled = clip.frame_ids
        at_sampled = None if sampled is None else clip.frames[_nearest(sampled, clip.frame_ids)]
    else:
        path = Path(video_path_or_clip)
        stem = name or path.stem
        if maps is not None and sampled is None:
            raise ValueError("result.evidence has no sampled_frame_ids")
        clip, at_sampled = _load_clip(path, sampled, max_frames, short_side)

    tubes = {**({"GT": gt} if gt is not None else {}), "pred": result.tube}
    frames = annotate_frames(
        clip, None, tubes, evidence=maps, evidence_frame_ids=sampled, caption=query, tracks=tracks
    )
    paths = {"video": write_annotated(out / f"{stem}_grounded.{suffix}", frames, fps or _playback_fps(clip))}
    if maps is not None and at_sampled is not None and sampled is not None:
        paths["attention"] = attention_grid_image(
            out / f"{stem}_attention.png", at_sampled, maps, sampled, title=query
        )
    scores: dict[str, np.ndarray] = {}
    if result.frame_scores is not None and sampled is not None and len(result.frame_scores) == sampled.size:
        scores["chosen track"] = _as_numpy(result.frame_scores)
    if maps is not None:
        scores["evidence peak"] = maps.reshape(maps.shape[0], -1).max(axis=1)
    spans = {name_: (t.start, t.end) for name_, t in tubes.items()}
    paths["temporal"] = plot_temporal_scores(
        out / f"{stem}_temporal.png",
        sampled if sampled is not None else np.zeros(0, np.int64),
        scores,
        spans,
        clip.num_frames,
        clip.fps,
        title=query,
    )
    return paths


__all__ = ["render_result"]
