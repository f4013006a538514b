"""LLaVA-OneVision and LLaVA-Video (``LlavaOnevisionForConditionalGeneration``).

The video path of transformers (5.x, ``LlavaOnevisionModel.get_video_features``): every frame
goes through the vision tower at its square ``image_size`` (no anyres tiling for videos), the
selected layer's patch tokens (``image_size // patch_size`` squared) through the projector,
then a 2x bilinear downsampling of the patch grid to ``ceil(p / 2)`` squared tokens per frame
(``apply_pooling``); the frames are concatenated in order and ONE ``image_newline`` token is
appended after the whole video. So ``<video>`` expands to ``T * h * w + 1`` tokens, frame-major,
row-major inside a frame, and the visual grid is the first ``T * h * w`` of them.

Real checkpoints: SigLIP at 384 px, patch 14 -> 27 x 27 patches -> 14 x 14 = 196 tokens per
frame (``ceil(27 / 2)``; the pooling is then not an exact 2 x 2 average).

``AdapterOptions.pool_stride`` replaces the 2 by another stride with the same operation
(bilinear resize of the projected patch grid to ``ceil(p / stride)`` per side, ``align_corners``
off, as both transformers and the original LLaVA-NeXT code do it): the released zero-shot STVG
code used 5, i.e. 6 x 6 tokens per frame. ``latent_on_separators`` lets the LRA latent cover the
newline token too, as the released code's latent covers its whole visual slice.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import LlavaOnevisionForConditionalGeneration, PreTrainedTokenizerBase

from zsgrounding.mllm.base import (
    MLLMAdapter,
    PreparedInputs,
    prepare_placeholder_video,
    projected_patch_grid,
)
from zsgrounding.mllm.errors import ModelError
from zsgrounding.mllm.files import load_checkpoint, processor_chat_template
from zsgrounding.mllm.options import QWEN_1_5_TEMPLATE, AdapterOptions, pre_resize
from zsgrounding.mllm.preprocess import FramePreprocessing, preprocess_frames
from zsgrounding.mllm.prompt import render_video_prompt
from zsgrounding.types import Clip


class LlavaOnevisionAdapter(MLLMAdapter):
    """Adapter of ``LlavaOnevisionForConditionalGeneration`` checkpoints (LLaVA-OneVision, LLaVA-Video).

    Attributes:
        preprocessing: how frames become ``pixel_values_videos``.
        chat_template: the template prompts are rendered with (``None``: the tokenizer's).
        video_token_id, video_token: the ``<video>`` placeholder (from the model config).
    """

    family = "llava_onevision"
    supported_options = (
        "frame_size",
        "prompt",
        "answer_tokens",
        "pool_stride",
        "pool_order",
        "latent_on_separators",
    )

    def __init__(
        self,
        model: LlavaOnevisionForConditionalGeneration,
        tokenizer: PreTrainedTokenizerBase,
        preprocessing: FramePreprocessing | None = None,
        chat_template: str | None = None,
        num_frames: int | None = None,
        answer_words: tuple[str, str] = ("yes", "no"),
        options: AdapterOptions | None = None,
    ) -> None:
        super().__init__(model, tokenizer, num_frames=num_frames, answer_words=answer_words, options=options)
        if self.options.prompt == "reference":
            chat_template = QWEN_1_5_TEMPLATE
        vision = model.config.vision_config
        self.preprocessing = preprocessing or FramePreprocessing(size=vision.image_size)
        if self.preprocessing.size != vision.image_size:
            raise ModelError(
                f"frames would be resized to {self.preprocessing.size} px but the vision tower takes "
                f"{vision.image_size} px"
            )
        self.chat_template = chat_template
        self.video_token_id = int(model.config.video_token_id)
        self.video_token = tokenizer.convert_ids_to_tokens(self.video_token_id)
        # apply_pooling: the tower's patch grid, bilinearly resized to ceil(p / stride) per side
        # (transformers' stride is 2; pool_order is accepted as it is already projector first).
        self._patches = vision.image_size // vision.patch_size
        self.pool_stride = self.options.pool_stride or 2
        side = math.ceil(self._patches / self.pool_stride)
        self._grid = (side, side)

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | Path,
        dtype: torch.dtype | str | None = None,
        device: torch.device | str | None = None,
        device_map: str | dict[str, Any] | None = None,
        num_frames: int | None = None,
        answer_words: tuple[str, str] = ("yes", "no"),
        attn_implementation: str = "sdpa",
        options: AdapterOptions | None = None,
        **kwargs: Any,
    ) -> LlavaOnevisionAdapter:
        """Load a checkpoint (local directory or hub id).

        The model loads with SDPA attention by default (the capture delegates to it);
        ``kwargs`` go to the model's ``from_pretrained``, and the hub ones (``revision``,
        ``cache_dir``, ``token``, ``local_files_only``, ...) also to the tokenizer and files.
        Preprocessing settings come from ``video_preprocessor_config.json`` or
        ``preprocessor_config.json``; the prompt template from a processor's
        ``chat_template.json`` if present, else the tokenizer's.
        """
        model, tokenizer, hub_kwargs = load_checkpoint(
            LlavaOnevisionForConditionalGeneration,
            path_or_id,
            dtype,
            device,
            device_map,
            attn_implementation,
            **kwargs,
        )
        preprocessing = FramePreprocessing.from_checkpoint(
            path_or_id, size=model.config.vision_config.image_size, **hub_kwargs
        )
        return cls(
            model,
            tokenizer,
            preprocessing=preprocessing,
            chat_template=processor_chat_template(path_or_id, **hub_kwargs),
            num_frames=num_frames,
            answer_words=answer_words,
            options=options,
        )

    @property
    def grid_shape(self) -> tuple[int, int]:
        """``(h, w)`` tokens per frame after the model's 2x bilinear pooling."""
        return self._grid

    def num_video_tokens(self, num_frames: int) -> int:
        """Tokens ``<video>`` expands to: ``T * h * w`` plus one newline for the whole video."""
        h, w = self._grid
        return num_frames * h * w + 1

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        """Frames ``(T, H, W, 3)`` uint8 -> ``(T, 3, S, S)`` on the vision tower's device and dtype."""
        tower = next(self.model.model.vision_tower.parameters())
        frames = pre_resize(frames, self.options.frame_size)
        return preprocess_frames(frames, self.preprocessing).to(device=tower.device, dtype=tower.dtype)

    @torch.no_grad()
    def video_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The video features of ``(T, 3, S, S)`` pixels: ``(T * h * w + 1, D)``.

        The model's own ``get_video_features``; with another pooling stride the same steps
        (projected patches, bilinear resize, one newline) with that stride.
        """
        if self.pool_stride == 2:
            out = self.model.get_video_features(pixel_values_videos=pixel_values[None], return_dict=True)
            features = out.pooler_output[0]
        else:
            features = self._features_with_stride(pixel_values)
        expected = self.num_video_tokens(pixel_values.shape[0])
        if features.shape[0] != expected:
            raise ModelError(
                f"the model produced {features.shape[0]} video tokens, expected {expected} "
                f"(vision_feature_select_strategy={self.model.config.vision_feature_select_strategy!r})"
            )
        return features

    def _features_with_stride(self, pixel_values: torch.Tensor) -> torch.Tensor:
        grid = projected_patch_grid(self.model, pixel_values)  # (T, D, p, p)
        pooled = torch.nn.functional.interpolate(grid, size=self._grid, mode="bilinear")
        tokens = pooled.permute(0, 2, 3, 1).reshape(-1, grid.shape[1])
        newline = self.model.model.image_newline[None].to(tokens.dtype)
        return torch.cat([tokens, newline])

    def render_prompt(self, question: str) -> str:
        return render_video_prompt(self.tokenizer, question, self.video_token, self.chat_template)

    def prepare(self, clip: Clip, question: str) -> PreparedInputs:
        """Embeddings of the chat prompt with the clip's video features in place of ``<video>``."""
        return prepare_placeholder_video(self, clip, question)
