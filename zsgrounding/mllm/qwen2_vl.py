"""Qwen2-VL and Qwen2.5-VL (``Qwen2VLForConditionalGeneration``, ``Qwen2_5_VLForConditionalGeneration``).

The video path of transformers (5.x): frames are resized (whole frame, aspect ratio kept as far
as the grid allows) to a size ``(H, W)`` that is a multiple of ``patch_size * merge_size`` (28)
with ``smart_resize``; consecutive frames are grouped in pairs (``temporal_patch_size``, 2), and
each pair is cut into ``H / 14 x W / 14`` patches of ``2 x 14 x 14`` pixels, flattened to
``pixel_values_videos`` rows ``(C, 2, 14, 14)``. The rows are ordered merge block by merge block,
so the vision tower's patch merger (2 x 2 patches -> one token) yields tokens frame-pair-major,
row-major on the merged grid: ``<|video_pad|>`` expands to ``T_grid * h * w`` tokens with
``T_grid = T / 2``, ``h = H / 28``, ``w = W / 28``, and the whole run is the visual grid (no
newline tokens). ``video_grid_thw`` is ``(T_grid, H / 14, W / 14)``, in patches.

Position ids: the language model uses M-RoPE (temporal, row, column position per token). The
model's forward computes them from ``input_ids``, ``mm_token_type_ids`` and ``video_grid_thw``
with ``model.model.get_rope_index``; run on ``inputs_embeds`` alone it falls back to 1-D positions
(Qwen2.5-VL without an error), which is silently wrong. :meth:`Qwen2VLAdapter.prepare` therefore
computes them with the model's own ``get_rope_index`` and hands them to ``forward`` in
``model_kwargs``. Qwen2.5-VL spaces temporal positions by ``tokens_per_second *
second_per_grid_ts``; ``second_per_grid_ts`` is the time one frame pair spans, taken from the
clip's sample times (``temporal_patch_size`` times the mean interval between sampled frames, the
processor's ``temporal_patch_size / fps`` of the sampled video).

Frame pairs: a clip with an odd number of frames gets its last frame repeated (as the reference
video processor pads), and grid frame ``t`` is named by the first native frame of its pair
(``frame_ids = clip.frame_ids[0::2]``).

Grid cells: there is no cropping, so cell ``(i, j)`` of the ``h x w`` grid is the native frame
region ``[j W_n / w, (j + 1) W_n / w) x [i H_n / h, (i + 1) H_n / h)``, as for every adapter. The
grid size depends on the frame size: use ``prepared.grid_shape`` (or :meth:`grid_shape_for`).

Options (:class:`AdapterOptions`): ``frame_size`` resizes every frame to a square first (the
released zero-shot STVG code: 224); ``repeat_frames`` shows every sampled frame that many times
before the pairing (the released code: 2, so each grid frame is one sampled frame and its map
belongs to that frame); ``prompt="reference"`` keeps the checkpoint's template, which is what the
released code used for this family.

Not reproduced: the optional whole-video pixel budget of qwen-vl-utils (transformers'
``cap_pixels_per_frame``); lower ``max_pixels`` to bound the tokens of long clips.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    AutoConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLForConditionalGeneration,
)

from zsgrounding.mllm.base import MLLMAdapter, PreparedInputs, checked_video_tokens
from zsgrounding.mllm.errors import ModelError, first_line
from zsgrounding.mllm.files import HUB_KWARGS, load_checkpoint, processor_chat_template
from zsgrounding.mllm.options import AdapterOptions, pre_resize
from zsgrounding.mllm.preprocess import (
    normalise_frames,
    resize_frames,
)
from zsgrounding.mllm.prompt import render_video_prompt, tokenize_video_prompt
from zsgrounding.mllm.qwen_preprocess import (
    QwenVideoPreprocessing,
    patchify_video,
)
from zsgrounding.types import Clip

# A user turn whose content is a plain string: the processor template's rendering of a video
# part followed by a text part (no separator between them).
QWEN_TEXT_CONTENT = "<|vision_start|>{video}<|vision_end|>{question}"

# mm_token_type_ids values of transformers' processors: text 0, image 1, video 2.
_IMAGE_TYPE, _VIDEO_TYPE = 1, 2

_MODEL_CLASSES: dict[str, type[PreTrainedModel]] = {
    "qwen2_vl": Qwen2VLForConditionalGeneration,
    "qwen2_5_vl": Qwen2_5_VLForConditionalGeneration,
}


@dataclass
class QwenVideoInputs:
    """The vision inputs of one clip, as the model's forward takes them.

    Attributes:
        pixel_values_videos: ``(T_grid * gh * gw, C * 2 * 14 * 14)`` patch rows
            (see :func:`patchify_video`), on the vision tower's device and dtype.
        video_grid_thw: ``(1, 3)`` long, ``(T_grid, gh, gw)`` in patches.
        frame_size: ``(H, W)`` the frames were resized to.
        second_per_grid_ts: ``(1,)`` float, seconds one temporal grid step spans (Qwen2.5-VL's
            temporal position spacing).
    """

    pixel_values_videos: torch.Tensor
    video_grid_thw: torch.Tensor
    frame_size: tuple[int, int]
    second_per_grid_ts: torch.Tensor


class Qwen2VLAdapter(MLLMAdapter):
    """Adapter of Qwen2-VL and Qwen2.5-VL checkpoints.

    Attributes:
        preprocessing: how frames become ``pixel_values_videos`` (resize bounds, normalisation).
        chat_template: the template prompts are rendered with (``None``: the tokenizer's).
        video_token_id, video_token: the ``<|video_pad|>`` placeholder (from the model config).
        vision_start_id, vision_end_id: the tokens that must enclose the video in the prompt.
    """

    family = "qwen2_vl"
    supported_options = ("frame_size", "prompt", "answer_tokens", "repeat_frames")

    def __init__(
        self,
        model: Qwen2VLForConditionalGeneration | Qwen2_5_VLForConditionalGeneration,
        tokenizer: PreTrainedTokenizerBase,
        preprocessing: QwenVideoPreprocessing | None = None,
        chat_template: str | None = None,
        num_frames: int | None = None,
        answer_words: tuple[str, str] = ("yes", "no"),
        options: AdapterOptions | None = None,
    ) -> None:
        super().__init__(model, tokenizer, num_frames=num_frames, answer_words=answer_words, options=options)
        config = model.config
        self.preprocessing = preprocessing or QwenVideoPreprocessing.from_dict({}, config.vision_config)
        vision = config.vision_config
        tower = (vision.patch_size, vision.temporal_patch_size, vision.spatial_merge_size)
        ours = (
            self.preprocessing.patch_size,
            self.preprocessing.temporal_patch_size,
            self.preprocessing.merge_size,
        )
        if ours != tower:
            raise ModelError(
                f"preprocessing (patch, temporal patch, merge) {ours} differs from the vision tower's {tower}"
            )
        self.chat_template = chat_template
        self.video_token_id = int(config.video_token_id)
        self.image_token_id = int(config.image_token_id)
        self.vision_start_id = int(config.vision_start_token_id)
        self.vision_end_id = int(config.vision_end_token_id)
        self.video_token = tokenizer.convert_ids_to_tokens(self.video_token_id)
        self._rope_index = _rope_index_function(model)
        self._rope_takes_seconds = "second_per_grid_ts" in inspect.signature(self._rope_index).parameters

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
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        frame_size: tuple[int, int] | None = None,
        options: AdapterOptions | None = None,
        **kwargs: Any,
    ) -> Qwen2VLAdapter:
        """Load a checkpoint (local directory or hub id) of model type ``qwen2_vl`` or ``qwen2_5_vl``.

        The model loads with SDPA attention by default (the capture delegates to it);
        ``kwargs`` go to the model's ``from_pretrained``, and the hub ones (``revision``,
        ``cache_dir``, ``token``, ``local_files_only``, ...) also to the config, tokenizer and
        files. Preprocessing comes from ``video_preprocessor_config.json`` or
        ``preprocessor_config.json``; ``min_pixels`` / ``max_pixels`` / ``frame_size`` override
        it. The prompt template is a processor's ``chat_template.json`` if present, else the
        tokenizer's.
        """
        hub_kwargs = {k: kwargs[k] for k in HUB_KWARGS if k in kwargs}
        try:
            config = AutoConfig.from_pretrained(str(path_or_id), **hub_kwargs)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"{path_or_id}: cannot read the model config ({first_line(exc)})") from exc
        model_class = _MODEL_CLASSES.get(config.model_type)
        if model_class is None:
            raise ModelError(
                f"{path_or_id}: model_type {config.model_type!r} is not served by the Qwen2-VL adapter "
                f"(served: {', '.join(_MODEL_CLASSES)})"
            )
        model, tokenizer, hub_kwargs = load_checkpoint(
            model_class, path_or_id, dtype, device, device_map, attn_implementation, config=config, **kwargs
        )
        overrides = {"min_pixels": min_pixels, "max_pixels": max_pixels, "frame_size": frame_size}
        preprocessing = QwenVideoPreprocessing.from_checkpoint(
            path_or_id, model.config.vision_config, overrides, **hub_kwargs
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
        """``(h, w)`` tokens per frame pair, defined only for a fixed ``preprocessing.frame_size``.

        Qwen's grid follows the frame size: use ``prepared.grid_shape`` of a prepared clip or
        :meth:`grid_shape_for` of a native frame size; without a fixed size this raises
        :class:`ModelError`.
        """
        if self.preprocessing.frame_size is None:
            raise ModelError(
                "the Qwen2-VL grid depends on the frame size: use prepared.grid_shape or "
                "grid_shape_for(height, width), or load with frame_size=(H, W)"
            )
        return self.grid_shape_for(*self.preprocessing.frame_size)

    def grid_shape_for(self, height: int, width: int) -> tuple[int, int]:
        """``(h, w)`` tokens per frame pair for native frames of ``height x width`` pixels."""
        if self.options.frame_size is not None:
            height = width = self.options.frame_size
        resized_h, resized_w = self.preprocessing.resized_size(height, width)
        return resized_h // self.preprocessing.factor, resized_w // self.preprocessing.factor

    def num_video_tokens(self, num_frames: int, height: int, width: int) -> int:
        """Tokens ``<|video_pad|>`` expands to: ``ceil(T * repeat / 2) * h * w`` (no separators)."""
        h, w = self.grid_shape_for(height, width)
        shown = num_frames * self.options.repeat_frames
        return -(-shown // self.preprocessing.temporal_patch_size) * h * w

    def pair_frame_ids(self, frame_ids: np.ndarray) -> torch.Tensor:
        """``(T_grid,)`` long: the first native frame id of each temporal group of frames shown."""
        shown = np.repeat(np.asarray(frame_ids), self.options.repeat_frames)
        ids = torch.as_tensor(shown, dtype=torch.long)
        return ids[:: self.preprocessing.temporal_patch_size].clone()

    def video_inputs(self, clip: Clip) -> QwenVideoInputs:
        """``pixel_values_videos`` and ``video_grid_thw`` of the clip's frames, as the processor makes them."""
        frames = np.asarray(clip.frames)
        if frames.ndim != 4:
            raise ValueError(f"frames must be (T, H, W, 3) RGB, got shape {frames.shape}")
        frames = pre_resize(frames, self.options.frame_size)
        if self.options.repeat_frames > 1:
            frames = np.repeat(frames, self.options.repeat_frames, axis=0)
        size = self.preprocessing.resized_size(frames.shape[1], frames.shape[2])
        norm = self.preprocessing.normalisation
        pixels = normalise_frames(resize_frames(frames, size[0], size[1], norm.resample), norm)
        rows, grid = patchify_video(
            pixels,
            self.preprocessing.patch_size,
            self.preprocessing.temporal_patch_size,
            self.preprocessing.merge_size,
        )
        tower = next(self.model.model.visual.parameters())
        return QwenVideoInputs(
            pixel_values_videos=rows.to(device=tower.device, dtype=tower.dtype),
            video_grid_thw=torch.tensor([grid], dtype=torch.long, device=tower.device),
            frame_size=size,
            second_per_grid_ts=torch.tensor([self._seconds_per_grid(clip)], dtype=torch.float32),
        )

    def _seconds_per_grid(self, clip: Clip) -> float:
        """Seconds a temporal grid step spans: ``temporal_patch_size`` mean sampling intervals."""
        times = np.asarray(clip.times, dtype=np.float64).reshape(-1)
        if times.size >= 2 and times[-1] > times[0]:
            interval = float((times[-1] - times[0]) / (times.size - 1))
        elif clip.fps > 0:
            interval = 1.0 / float(clip.fps)
        else:
            interval = 1.0
        return self.preprocessing.temporal_patch_size * interval / self.options.repeat_frames

    @torch.no_grad()
    def video_features(self, inputs: QwenVideoInputs) -> torch.Tensor:
        """The model's own video features: ``(T_grid * h * w, D)``."""
        out = self.model.get_video_features(
            pixel_values_videos=inputs.pixel_values_videos,
            video_grid_thw=inputs.video_grid_thw,
            return_dict=True,
        )
        expected = int(inputs.video_grid_thw.prod()) // self.preprocessing.merge_size**2
        return checked_video_tokens(out.pooler_output[0], expected)

    def render_prompt(self, question: str) -> str:
        return render_video_prompt(
            self.tokenizer, question, self.video_token, self.chat_template, text_content=QWEN_TEXT_CONTENT
        )

    def mm_token_type_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``input_ids``-shaped long modality types, as the processors make them: text 0, image 1, video 2."""
        types = torch.zeros_like(input_ids)
        types[input_ids == self.image_token_id] = _IMAGE_TYPE
        types[input_ids == self.video_token_id] = _VIDEO_TYPE
        return types

    def position_ids(
        self, input_ids: torch.Tensor, video_grid_thw: torch.Tensor, second_per_grid_ts: torch.Tensor
    ) -> torch.Tensor:
        """``(3, 1, N)`` M-RoPE positions (temporal, row, column) from the model's ``get_rope_index``."""
        kwargs: dict[str, Any] = {
            "mm_token_type_ids": self.mm_token_type_ids(input_ids),
            "video_grid_thw": video_grid_thw.to(input_ids.device),
            "attention_mask": torch.ones_like(input_ids),
        }
        if self._rope_takes_seconds:
            kwargs["second_per_grid_ts"] = second_per_grid_ts.to(input_ids.device)
        positions, _ = self._rope_index(input_ids, **kwargs)
        return positions

    @torch.no_grad()
    def prepare(self, clip: Clip, question: str) -> PreparedInputs:
        """Embeddings of the chat prompt with the clip's video features in place of ``<|video_pad|>``.

        ``model_kwargs`` carries the M-RoPE ``position_ids`` ``(3, 1, N)`` and the
        ``mm_token_type_ids`` ``(1, N)``. Runs without autograd: gradients reach the visual
        tokens through ``forward``'s ``visual_delta`` only.
        """
        video = self.video_inputs(clip)
        features = self.video_features(video)
        t_grid = int(video.video_grid_thw[0, 0])
        h, w = (int(side) // self.preprocessing.merge_size for side in video.video_grid_thw[0, 1:])
        prompt = tokenize_video_prompt(
            self.tokenizer, self.render_prompt(question), question, self.video_token_id, t_grid * h * w
        )
        start, end = prompt.visual_start, prompt.visual_start + prompt.num_visual
        ids = prompt.input_ids
        if (
            start == 0
            or ids[start - 1] != self.vision_start_id
            or end >= len(ids)
            or ids[end] != self.vision_end_id
        ):
            raise ModelError(
                "the chat template does not enclose the video in <|vision_start|> ... <|vision_end|>"
            )
        input_ids, embeds = self.embed_prompt(prompt, features)
        model_kwargs = {
            "position_ids": self.position_ids(input_ids, video.video_grid_thw, video.second_per_grid_ts),
            "mm_token_type_ids": self.mm_token_type_ids(input_ids),
        }
        return PreparedInputs.from_prompt(
            prompt,
            input_ids,
            embeds,
            (t_grid, h, w),
            self.pair_frame_ids(clip.frame_ids),
            model_kwargs=model_kwargs,
        )


def _rope_index_function(model: torch.nn.Module) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """The model's ``get_rope_index`` (on the inner ``Qwen2VLModel`` in transformers 5.x)."""
    for owner in (getattr(model, "model", None), model):
        function = getattr(owner, "get_rope_index", None)
        if callable(function):
            return function
    raise ModelError(
        f"{type(model).__name__} has no get_rope_index: this transformers version is not supported"
    )
