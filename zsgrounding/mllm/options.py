"""Adapter options that reproduce how the released zero-shot STVG code feeds each MLLM.

The released code of *Unleashing the Potential of Multimodal LLMs for Zero-Shot Spatio-Temporal
Video Grounding* (Yang et al.) runs the original LLaVA-NeXT / Qwen2-VL code bases, which differ
from transformers' ports in a few places that change the attention maps. Each difference is one
field of :class:`AdapterOptions`; every default keeps the checkpoint's own behaviour, and the
``reference-*`` presets of :class:`zsgrounding.zeroshot.pipeline.ZeroShotConfig` set them.

The two conversation templates below are the released code's (LLaVA's ``vicuna_v1`` and
``qwen_1_5`` conversation styles), reproduced as facts: the system sentence, the role names and
the separators, with the video placeholder followed by a line break before the question.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import numpy as np

from zsgrounding.mllm.errors import ModelError

__all__ = [
    "QWEN_1_5_TEMPLATE",
    "VICUNA_V1_SYSTEM",
    "VICUNA_V1_TEMPLATE",
    "AdapterOptions",
    "pre_resize",
]

# LLaVA's vicuna_v1 conversation: "{system} USER: <image>\n{question} ASSISTANT:".
VICUNA_V1_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
VICUNA_V1_TEMPLATE = (
    "{{ '" + VICUNA_V1_SYSTEM.replace("'", "\\'") + " ' }}"
    "{% for message in messages %}{{ message['role'] | upper + ': ' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}{{ '<video>\\n' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ ' ' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

# LLaVA's qwen_1_5 conversation (ChatML with the default system turn).
QWEN_1_5_TEMPLATE = (
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}{{ '<video>\\n' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

PoolOrder = Literal["checkpoint", "project_then_pool"]
PromptStyle = Literal["checkpoint", "reference"]
AnswerTokens = Literal["continuation", "bare"]


@dataclass(frozen=True)
class AdapterOptions:
    """How an adapter feeds its model; every default is the checkpoint's own behaviour.

    Attributes:
        frame_size: resize every frame to ``frame_size x frame_size`` (PIL bicubic, aspect ratio
            not kept) before the model's own preprocessing, as the released code's data loader
            does (336 for the LLaVA families, 224 for Qwen2-VL). ``None``: no extra resize.
        pool_stride: LLaVA families: spatial pooling stride of the visual tokens (the released
            code: 4 for LLaVA-NeXT-Video, 5 for LLaVA-OneVision; 6 x 6 tokens per frame on the
            real towers). ``None``: the checkpoint's.
        pool_order: LLaVA-NeXT-Video: ``"project_then_pool"`` pools the projected tokens, as the
            original LLaVA-NeXT code does; ``"checkpoint"`` keeps transformers' order (pool the
            tower's patches, then project). LLaVA-OneVision always projects first.
        prompt: ``"reference"``: the released code's conversation template for the family
            (:data:`VICUNA_V1_TEMPLATE`, :data:`QWEN_1_5_TEMPLATE`), tokenized in two pieces around
            the video as LLaVA's ``tokenizer_image_token`` does; ``"checkpoint"``: the
            checkpoint's chat template, tokenized whole.
        answer_tokens: the yes / no ids: ``"continuation"``, the first token of the word as the
            model would write it after the prompt (``▁yes`` after ``ASSISTANT:``); ``"bare"``, the
            vocabulary piece spelled exactly ``yes`` / ``no`` (the released code's 3582 / 1217 in
            LLaMA's vocabulary, 9693 / 2152 in Qwen2's).
        latent_on_separators: the LRA latent also covers the separator tokens of the visual slice
            (LLaVA-OneVision's newline after the video), as the released code's latent covers its
            whole visual slice; the maps still read the grid tokens only.
        repeat_frames: Qwen2-VL: each sampled frame repeated this many times before the frames
            are grouped into temporal patches (the released code: 2, so every grid frame is one
            sampled frame shown twice). 1: consecutive frames are paired.
    """

    frame_size: int | None = None
    pool_stride: int | None = None
    pool_order: PoolOrder = "checkpoint"
    prompt: PromptStyle = "checkpoint"
    answer_tokens: AnswerTokens = "continuation"
    latent_on_separators: bool = False
    repeat_frames: int = 1

    def __post_init__(self) -> None:
        if self.frame_size is not None and self.frame_size < 1:
            raise ModelError(f"frame_size must be positive, got {self.frame_size}")
        if self.pool_stride is not None and self.pool_stride < 1:
            raise ModelError(f"pool_stride must be positive, got {self.pool_stride}")
        choices = {
            "pool_order": ("checkpoint", "project_then_pool"),
            "prompt": ("checkpoint", "reference"),
            "answer_tokens": ("continuation", "bare"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ModelError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        if self.repeat_frames < 1:
            raise ModelError(f"repeat_frames must be at least 1, got {self.repeat_frames}")

    def changed(self) -> dict[str, Any]:
        """The fields that differ from the defaults."""
        default = AdapterOptions()
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) != getattr(default, f.name)
        }

    def check_supported(self, family: str, supported: Sequence[str]) -> None:
        """Refuse a changed option the ``family`` adapter does not implement (one line)."""
        unsupported = sorted(set(self.changed()) - set(supported))
        if unsupported:
            raise ModelError(f"the {family} adapter has no option {', '.join(unsupported)}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def pre_resize(frames: np.ndarray, frame_size: int | None) -> np.ndarray:
    """Frames ``(T, H, W, 3)`` uint8 resized to ``(T, S, S, 3)`` with PIL bicubic (``S = frame_size``)."""
    if frame_size is None:
        return frames
    # Imported here: preprocess imports this module's neighbours, not the other way round.
    from PIL import Image

    from zsgrounding.mllm.preprocess import resize_frames

    return resize_frames(frames, frame_size, frame_size, int(Image.Resampling.BICUBIC))
