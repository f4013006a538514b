"""The protocol every MLLM family implements: prepared inputs, outputs, and the adapter.

An adapter turns ``(clip, question)`` into :class:`PreparedInputs` (input embeddings with the
visual features in place, and where the visual and special tokens are), then runs the language
model on them with an optional additive delta on the visual slice (the LRA latent) and returns
:class:`MLLMOutput`: the logits of the first answer token, optionally the last hidden states
and the captured attention rows of the special tokens over the visual tokens.

Prepared inputs, their batching (:func:`stack_prepared`, padded in the middle so one
:class:`CaptureConfig` serves every row) and the frame-reversed input of TAS
(:func:`reverse_frames`) live in :mod:`zsgrounding.mllm.inputs` and are re-exported here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from zsgrounding.attention import AttentionCapture, CaptureConfig, capture_attention
from zsgrounding.mllm.errors import ModelError
from zsgrounding.mllm.inputs import (
    PreparedInputs,
    add_visual_delta,
    embed_with_features,
    reverse_frames,
    stack_prepared,
)
from zsgrounding.mllm.options import AdapterOptions
from zsgrounding.mllm.prompt import VideoPrompt, answer_token_id, tokenize_video_prompt
from zsgrounding.types import Clip

__all__ = [
    "MLLMAdapter",
    "MLLMOutput",
    "PreparedInputs",
    "add_visual_delta",
    "bare_piece_id",
    "checked_video_tokens",
    "embed_with_features",
    "reverse_frames",
    "stack_prepared",
]

# Question used to render the template tail that yes/no ids are derived from: any text works,
# the ids only depend on the generation prompt that follows it.
_PROBE_QUESTION = "Is there a cat in this video?"


@dataclass
class MLLMOutput:
    """What :meth:`MLLMAdapter.forward` returns.

    Attributes:
        logits: ``(B, vocab)`` logits at the answer position (the next token's distribution).
        hidden_states: ``(B, N, D)`` last-layer hidden states after the final norm (what the LM
            head reads), when asked for.
        attention: the capture of the forward when a ``CaptureConfig`` was given; its ``maps``
            are ``layer -> (B, S, V)`` (or ``(B, heads, S, V)``), see
            :meth:`PreparedInputs.to_grid`.
    """

    logits: torch.Tensor
    hidden_states: torch.Tensor | None = None
    attention: AttentionCapture | None = None


class MLLMAdapter(ABC):
    """One MLLM family behind the common protocol.

    Subclasses implement loading, the family's video preprocessing and prompt (:meth:`prepare`)
    and the template rendering :meth:`render_prompt`; running the language model is shared.

    Attributes:
        model: the transformers model (``...ForConditionalGeneration``), in eval mode.
        tokenizer: its tokenizer (fast), with the chat template used for prompts.
        answer_words: the words whose first-token logits give the yes/no score.
        options: how the model is fed (:class:`AdapterOptions`); a family refuses the changed
            options it does not implement (``supported_options``).
        video_token_id: the id of the video placeholder the prompt expands (set by the family,
            from the model config).
    """

    family: ClassVar[str]
    video_token_id: int
    # Frames a grounding run samples by default (the released code's setting).
    default_num_frames: ClassVar[int] = 20
    # AdapterOptions fields this family implements (besides their defaults).
    supported_options: ClassVar[tuple[str, ...]] = ("frame_size", "prompt", "answer_tokens")

    def __init__(
        self,
        model: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        num_frames: int | None = None,
        answer_words: tuple[str, str] = ("yes", "no"),
        options: AdapterOptions | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.answer_words = answer_words
        self.options = options or AdapterOptions()
        self.options.check_supported(self.family, self.supported_options)
        self._num_frames = int(num_frames) if num_frames is not None else self.default_num_frames

    @classmethod
    @abstractmethod
    def from_pretrained(
        cls,
        path_or_id: str | Path,
        dtype: torch.dtype | str | None = None,
        device: torch.device | str | None = None,
        device_map: str | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> MLLMAdapter:
        """Load model, tokenizer and preprocessing settings from a local directory or hub id."""

    @abstractmethod
    def render_prompt(self, question: str) -> str:
        """The chat template text of one user turn (video placeholder once, question) plus the
        generation prompt."""

    @abstractmethod
    def prepare(self, clip: Clip, question: str) -> PreparedInputs:
        """Preprocess the clip's frames, build the prompt and the input embeddings."""

    @property
    @abstractmethod
    def grid_shape(self) -> tuple[int, int]:
        """``(h, w)`` of the visual token grid of one frame."""

    @property
    def num_frames(self) -> int:
        """Number of frames to sample per clip by default."""
        return self._num_frames

    @property
    def device(self) -> torch.device:
        """Device of the input embeddings (where prepared inputs live)."""
        return self.model.get_input_embeddings().weight.device

    @cached_property
    def yes_id(self) -> int:
        """Token id of the answer ``answer_words[0]`` (see ``AdapterOptions.answer_tokens``)."""
        return self._answer_id(self.answer_words[0])

    @cached_property
    def no_id(self) -> int:
        """Token id of the answer ``answer_words[1]`` (see ``AdapterOptions.answer_tokens``)."""
        return self._answer_id(self.answer_words[1])

    def special_token_count(self) -> int:
        """How many tokens follow the question in this adapter's prompt (the grounding candidates)."""
        return len(self.tokenize_prompt(_PROBE_QUESTION, 1).special_positions)

    def tokenize_prompt(self, question: str, num_visual: int) -> VideoPrompt:
        """The rendered prompt of ``question`` tokenized, its placeholder ``video_token_id``
        expanded to ``num_visual`` tokens; under ``options.prompt == "reference"`` the text before
        and after the video is tokenized separately (as the released code does)."""
        return tokenize_video_prompt(
            self.tokenizer,
            self.render_prompt(question),
            question,
            int(self.video_token_id),
            num_visual,
            split_at_video=self.options.prompt == "reference",
        )

    def embed_prompt(self, prompt: VideoPrompt, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``input_ids`` ``(1, N)`` of the tokenized prompt on :attr:`device` and their input
        embeddings ``(1, N, D)`` with ``features`` ``(P, D)`` filling the ``P`` placeholders in order."""
        input_ids = torch.tensor([prompt.input_ids], dtype=torch.long, device=self.device)
        return input_ids, embed_with_features(self.model, input_ids, int(self.video_token_id), features)

    def _answer_id(self, word: str) -> int:
        if self.options.answer_tokens == "bare":
            return bare_piece_id(self.tokenizer, word)
        return answer_token_id(self.tokenizer, self.render_prompt(_PROBE_QUESTION), word)

    def yes_no_score(self, output: MLLMOutput) -> torch.Tensor:
        """``logit(yes) - logit(no)`` at the answer position, ``(B,)``: the paper's s(q)."""
        return output.logits[:, self.yes_id] - output.logits[:, self.no_id]

    def forward(
        self,
        prepared: PreparedInputs,
        visual_delta: torch.Tensor | None = None,
        capture: CaptureConfig | None = None,
        output_hidden_states: bool = False,
    ) -> MLLMOutput:
        """Run the language model on the prepared embeddings.

        Args:
            prepared: from :meth:`prepare`, or a batch from :func:`stack_prepared`.
            visual_delta: ``(V, D)`` (the same for every row) or ``(B, V, D)`` (one per row)
                added to the embeddings at ``prepared.visual_positions`` (grid order); the
                output is differentiable with respect to it.
            capture: attention rows to capture (e.g. ``prepared.capture_config(layers)``); the
                positions are shared by every row of a batch.
            output_hidden_states: also return the last-layer hidden states ``(B, N, D)``.
        """
        embeds = add_visual_delta(prepared, visual_delta)
        inputs = {
            "inputs_embeds": embeds,
            "attention_mask": prepared.attention_mask,
            "logits_to_keep": 1,
            "use_cache": False,
            "output_hidden_states": output_hidden_states,
            **prepared.model_kwargs,
        }
        captured = None
        if capture is None:
            out = self.model(**inputs)
        else:
            with capture_attention(self.model, capture) as captured:
                out = self.model(**inputs)
        return MLLMOutput(
            logits=out.logits[:, -1, :],
            hidden_states=out.hidden_states[-1] if output_hidden_states else None,
            attention=captured,
        )


def bare_piece_id(tokenizer: PreTrainedTokenizerBase, word: str) -> int:
    """Id of the vocabulary piece spelled exactly ``word`` (no word-start marker), as the released
    zero-shot STVG code reads ``yes`` / ``no``; a word with no such piece raises :class:`ModelError`."""
    token_id = tokenizer.convert_tokens_to_ids(word)
    if not isinstance(token_id, int) or token_id < 0 or token_id == tokenizer.unk_token_id:
        raise ModelError(f"the tokenizer has no vocabulary piece {word!r}")
    return int(token_id)


def checked_video_tokens(features: torch.Tensor, expected: int, hint: str = "") -> torch.Tensor:
    """``features`` ``(P, D)``, the video tokens a model produced, if ``P`` is the ``expected``
    number of placeholder tokens; else :class:`ModelError` (``hint`` ends its message)."""
    if features.shape[0] != expected:
        raise ModelError(f"the model produced {features.shape[0]} video tokens, expected {expected}{hint}")
    return features
