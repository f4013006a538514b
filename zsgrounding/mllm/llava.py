"""What the LLaVA video families share: LLaVA-OneVision / LLaVA-Video and LLaVA-NeXT-Video.

Both run every frame through a vision tower with a square input (``vision_config.image_size``;
no anyres tiling for videos): frames are squeezed whole into that square, without a crop (see
:mod:`zsgrounding.mllm.preprocess`), so the token grid covers the whole frame. The model
config names the ``<video>`` placeholder (``video_token_id``), and the placeholder expands to
the frames' tokens in order: ``T * h * w`` grid tokens, frame-major and row-major inside a frame,
then the family's separator tokens (LLaVA-OneVision: one newline after the whole video;
LLaVA-NeXT-Video: none). The features of the tokens come from the model's own
``get_video_features``, or from the same steps written out for a pooling the model does not do
itself, starting from :func:`projected_patch_grid`.

:class:`LlavaVideoAdapter` holds what the two adapters share: the constructor's checks, loading,
preprocessing, prompt rendering, ``prepare`` and the token count check of the features. A family
sets its model class and its defaults (normalisation, reference and fallback templates) and
implements the grid (``grid_shape``), the separators (``num_separators``) and how the features
are produced (``_compute_video_features``).
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from zsgrounding.mllm.base import MLLMAdapter, PreparedInputs, checked_video_tokens
from zsgrounding.mllm.errors import ModelError
from zsgrounding.mllm.files import load_checkpoint, processor_chat_template
from zsgrounding.mllm.options import AdapterOptions, pre_resize
from zsgrounding.mllm.preprocess import SIGLIP_MEAN, SIGLIP_STD, FramePreprocessing, preprocess_frames
from zsgrounding.mllm.prompt import render_video_prompt
from zsgrounding.types import Clip

_Adapter = TypeVar("_Adapter", bound="LlavaVideoAdapter")


class LlavaVideoAdapter(MLLMAdapter):
    """Base of the adapters of LLaVA video checkpoints (one square-input tower, ``<video>`` expanded in order).

    Attributes:
        preprocessing: how frames become ``pixel_values_videos``.
        chat_template: the template prompts are rendered with (``None``: the tokenizer's).
        video_token_id, video_token: the ``<video>`` placeholder (from the model config).
        bos_prefix: text put in front of every rendered prompt (empty unless the family says).
    """

    # The transformers class the checkpoints load with.
    model_class: ClassVar[type[PreTrainedModel]]
    # Normalisation when neither the caller nor the checkpoint's preprocessor files give one.
    default_image_mean: ClassVar[tuple[float, float, float]] = SIGLIP_MEAN
    default_image_std: ClassVar[tuple[float, float, float]] = SIGLIP_STD
    # The template of the released code, used under ``options.prompt == "reference"``.
    reference_template: ClassVar[str]
    # The template when neither the checkpoint's processor nor its tokenizer has one.
    fallback_template: ClassVar[str | None] = None
    # Tokens ``<video>`` expands to after the grid tokens (newlines).
    num_separators: ClassVar[int] = 0
    # ``from_pretrained`` keywords that go to the constructor rather than to the model's loading.
    constructor_keywords: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        preprocessing: FramePreprocessing | None = None,
        chat_template: str | None = None,
        num_frames: int | None = None,
        answer_words: tuple[str, str] = ("yes", "no"),
        options: AdapterOptions | None = None,
    ) -> None:
        """Wrap a loaded model; ``options.prompt == "reference"`` renders prompts with the
        family's :attr:`reference_template` whatever the checkpoint ships."""
        super().__init__(model, tokenizer, num_frames=num_frames, answer_words=answer_words, options=options)
        if self.options.prompt == "reference":
            chat_template = self.reference_template
        vision = model.config.vision_config
        self.preprocessing = preprocessing or FramePreprocessing(
            size=vision.image_size, image_mean=self.default_image_mean, image_std=self.default_image_std
        )
        if self.preprocessing.size != vision.image_size:
            raise ModelError(
                f"frames would be resized to {self.preprocessing.size} px but the vision tower takes "
                f"{vision.image_size} px"
            )
        if tokenizer.chat_template is None and chat_template is None:
            chat_template = self.fallback_template
        self.chat_template = chat_template
        self.video_token_id = int(model.config.video_token_id)
        self.video_token = tokenizer.convert_ids_to_tokens(self.video_token_id)
        self.bos_prefix = ""
        # The side of the tower's square patch grid.
        self._patches = vision.image_size // vision.patch_size

    @classmethod
    def from_pretrained(
        cls: type[_Adapter],
        path_or_id: str | Path,
        dtype: torch.dtype | str | None = None,
        device: torch.device | str | None = None,
        device_map: str | dict[str, Any] | None = None,
        num_frames: int | None = None,
        answer_words: tuple[str, str] = ("yes", "no"),
        attn_implementation: str = "sdpa",
        options: AdapterOptions | None = None,
        **kwargs: Any,
    ) -> _Adapter:
        """Load a checkpoint (local directory or hub id).

        The model loads with SDPA attention by default (the capture delegates to it);
        ``kwargs`` go to the model's ``from_pretrained`` (but the family's
        :attr:`constructor_keywords`, which go to the adapter), and the hub ones (``revision``,
        ``cache_dir``, ``token``, ``local_files_only``, ...) also to the tokenizer and files.
        Preprocessing settings come from ``video_preprocessor_config.json`` or
        ``preprocessor_config.json`` (the family's mean and std where they say nothing); the
        prompt template from a processor's ``chat_template.json`` if present, else the
        tokenizer's, else the family's :attr:`fallback_template`.
        """
        family_kwargs = {name: kwargs.pop(name) for name in cls.constructor_keywords if name in kwargs}
        model, tokenizer, hub_kwargs = load_checkpoint(
            cls.model_class, path_or_id, dtype, device, device_map, attn_implementation, **kwargs
        )
        preprocessing = FramePreprocessing.from_checkpoint(
            path_or_id,
            size=model.config.vision_config.image_size,
            defaults={"image_mean": cls.default_image_mean, "image_std": cls.default_image_std},
            **hub_kwargs,
        )
        return cls(
            model,
            tokenizer,
            preprocessing=preprocessing,
            chat_template=processor_chat_template(path_or_id, **hub_kwargs),
            num_frames=num_frames,
            answer_words=answer_words,
            options=options,
            **family_kwargs,
        )

    def num_video_tokens(self, num_frames: int) -> int:
        """Tokens ``<video>`` expands to: ``T * h * w`` plus the family's :attr:`num_separators`."""
        h, w = self.grid_shape
        return num_frames * h * w + self.num_separators

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        """Frames ``(T, H, W, 3)`` uint8 -> ``(T, 3, S, S)`` on the vision tower's device and dtype."""
        tower = next(self.model.model.vision_tower.parameters())
        frames = pre_resize(frames, self.options.frame_size)
        return preprocess_frames(frames, self.preprocessing).to(device=tower.device, dtype=tower.dtype)

    @torch.no_grad()
    def video_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The video features of ``(T, 3, S, S)`` pixels: ``(num_video_tokens(T), D)``, in the
        order ``<video>`` expands to (:meth:`_compute_video_features`, then the count is checked)."""
        return checked_video_tokens(
            self._compute_video_features(pixel_values),
            self.num_video_tokens(pixel_values.shape[0]),
            f" (vision_feature_select_strategy={self.model.config.vision_feature_select_strategy!r})",
        )

    @abstractmethod
    def _compute_video_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The family's video tokens of ``(T, 3, S, S)`` pixels, ``(P, D)``, before the count check."""

    def _model_video_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The model's own ``get_video_features`` of one video ``(T, 3, S, S)``: ``(P, D)``."""
        out = self.model.get_video_features(pixel_values_videos=pixel_values[None], return_dict=True)
        return out.pooler_output[0]

    def render_prompt(self, question: str) -> str:
        return self.bos_prefix + render_video_prompt(
            self.tokenizer, question, self.video_token, self.chat_template
        ).removeprefix(self.bos_prefix)

    @torch.no_grad()
    def prepare(self, clip: Clip, question: str) -> PreparedInputs:
        """Embeddings of the chat prompt with the clip's video features in place of ``<video>``.

        Frame-major ``T * h * w`` grid tokens, then the separators (the latent covers them under
        ``options.latent_on_separators``). Runs without autograd: gradients reach the visual
        tokens through ``forward``'s ``visual_delta`` only.
        """
        num_frames = len(clip)
        features = self.video_features(self.preprocess(clip.frames))
        prompt = self.tokenize_prompt(question, self.num_video_tokens(num_frames))
        input_ids, embeds = self.embed_prompt(prompt, features)
        return PreparedInputs.from_prompt(
            prompt,
            input_ids,
            embeds,
            (num_frames, *self.grid_shape),
            torch.as_tensor(np.asarray(clip.frame_ids), dtype=torch.long),
            latent_separators=self.options.latent_on_separators,
        )


def projected_patch_grid(model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """A LLaVA model's projected patch tokens of ``(T, 3, S, S)`` pixels as a grid ``(T, D, p, p)``.

    The vision tower's ``vision_feature_layer`` hidden states (several concatenated), the class
    token dropped under the ``default`` strategy, then the multimodal projector: the tokens the
    original LLaVA-NeXT code pools (after the projector), before any pooling.
    """
    inner, config = model.model, model.config
    hidden = inner.vision_tower(pixel_values, output_hidden_states=True, return_dict=True).hidden_states
    layer = config.vision_feature_layer
    patches = hidden[layer] if isinstance(layer, int) else torch.cat([hidden[i] for i in layer], dim=-1)
    if config.vision_feature_select_strategy == "default":
        patches = patches[:, 1:]
    projected = inner.multi_modal_projector(patches)  # (T, p * p, D)
    t, n, d = projected.shape
    side = round(n**0.5)
    return projected.reshape(t, side, side, d).permute(0, 3, 1, 2)
