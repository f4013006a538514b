"""Helpers the adapter tests share: the model's own forward, per-cell embedding change, a perturbed clip."""

from __future__ import annotations

from dataclasses import replace

import torch

from zsgrounding.mllm import MLLMAdapter, PreparedInputs
from zsgrounding.mllm.qwen2_vl import Qwen2VLAdapter
from zsgrounding.types import Clip


def stock_logits(adapter: MLLMAdapter, prepared: PreparedInputs, clip: Clip, **extra: object) -> torch.Tensor:
    """Last-position logits of the model's own forward from ids and pixels.

    LLaVA families: the preprocessed frames as ``pixel_values_videos``. Qwen2-VL / Qwen2.5-VL:
    the processor-style patch rows and ``video_grid_thw`` (the model computes M-RoPE itself), and
    for Qwen2.5-VL the clip's ``second_per_grid_ts``; ``extra`` wins over both.
    """
    if isinstance(adapter, Qwen2VLAdapter):
        video = adapter.video_inputs(clip)
        if adapter.model.config.model_type == "qwen2_5_vl":
            extra = {"second_per_grid_ts": video.second_per_grid_ts, **extra}
        pixels = {
            "pixel_values_videos": video.pixel_values_videos,
            "video_grid_thw": video.video_grid_thw,
            "mm_token_type_ids": prepared.model_kwargs["mm_token_type_ids"],
        }
    else:
        pixels = {"pixel_values_videos": adapter.preprocess(clip.frames)[None]}
    with torch.no_grad():
        out = adapter.model(
            input_ids=prepared.input_ids,
            attention_mask=prepared.attention_mask,
            logits_to_keep=1,
            **pixels,
            **extra,
        )
    return out.logits[:, -1]


def cell_change(a: PreparedInputs, b: PreparedInputs) -> torch.Tensor:
    """Per grid cell L2 change of the embeddings: ``(T, h, w)``."""
    diff = (a.inputs_embeds[0] - b.inputs_embeds[0]).norm(dim=-1)
    return diff[a.visual_grid]


def invert_region(clip: Clip, frame: int, rows: slice, cols: slice) -> Clip:
    """A copy of ``clip`` with the pixels ``rows x cols`` of ``frame`` inverted."""
    frames = clip.frames.copy()
    frames[frame, rows, cols] = 255 - frames[frame, rows, cols]
    return replace(clip, frames=frames)
