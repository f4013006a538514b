"""The protocol every MLLM family implements: prepared inputs, outputs, and the adapter.

An adapter turns ``(clip, question)`` into :class:`PreparedInputs` (input embeddings with the
visual features in place, and where the visual and special tokens are), then runs the language
model on them with an optional additive delta on the visual slice (the LRA latent) and returns
:class:`MLLMOutput`: the logits of the first answer token, optionally the last hidden states
and the captured attention rows of the special tokens over the visual tokens.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from zsgrounding.attention import AttentionCapture, CaptureConfig, capture_attention
from zsgrounding.mllm.prompt import answer_token_id
from zsgrounding.types import Clip

# Question used to render the template tail that yes/no ids are derived from: any text works,
# the ids only depend on the generation prompt that follows it.
_PROBE_QUESTION = "Is there a cat in this video?"


@dataclass
class PreparedInputs:
    """Inputs of one (clip, question) pair, ready for :meth:`MLLMAdapter.forward` (batch of 1).

    Attributes:
        input_ids: ``(1, N)`` long, the tokenized prompt with the visual placeholder expanded
            (visual positions hold the placeholder id).
        inputs_embeds: ``(1, N, D)`` input embeddings with the visual features scattered into the
            visual positions, as the model's own forward does; no autograd graph.
        attention_mask: ``(1, N)`` long, all ones.
        visual_grid: ``(T, h, w)`` long, absolute sequence position of the visual token of frame
            ``t``, row ``i``, column ``j``. Separator tokens (newlines) are not in it.
        special_positions: ``(S,)`` long, ascending positions of the tokens after the question
            in the chat template (end of turn, assistant header); the last is ``answer_position``.
        special_tokens: ``S`` token strings at ``special_positions``.
        answer_position: position whose logits predict the first answer token: ``N - 1``.
        frame_ids: ``(T,)`` long, native frame id of each grid frame.
        separator_positions: ``(K,)`` long, visual-slice positions outside the grid (LLaVA-
            OneVision: the one newline token after the video); no delta is added to them.
        model_kwargs: extra keyword arguments of the model's forward (e.g. Qwen2-VL's
            ``position_ids`` and ``mm_token_type_ids``).
    """

    input_ids: torch.Tensor
    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    visual_grid: torch.Tensor
    special_positions: torch.Tensor
    special_tokens: list[str]
    answer_position: int
    frame_ids: torch.Tensor
    separator_positions: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.inputs_embeds.shape[1]
        if self.inputs_embeds.ndim != 3 or self.inputs_embeds.shape[0] != 1:
            raise ValueError(f"inputs_embeds must be (1, N, D), got {tuple(self.inputs_embeds.shape)}")
        if self.visual_grid.ndim != 3:
            raise ValueError(f"visual_grid must be (T, h, w), got {tuple(self.visual_grid.shape)}")
        if self.frame_ids.shape != (self.visual_grid.shape[0],):
            raise ValueError(
                f"frame_ids must be ({self.visual_grid.shape[0]},), got {tuple(self.frame_ids.shape)}"
            )
        if len(self.special_tokens) != self.special_positions.numel():
            raise ValueError("special_tokens and special_positions differ in length")
        # forward() keeps the logits of the last position only (logits_to_keep=1).
        if self.answer_position != n - 1:
            raise ValueError(f"answer_position must be the last position {n - 1}, got {self.answer_position}")

    @property
    def visual_positions(self) -> torch.Tensor:
        """``(V,)`` long, the grid positions flattened in grid order, ``V = T * h * w``."""
        return self.visual_grid.reshape(-1)

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        """``(T, h, w)``."""
        t, h, w = self.visual_grid.shape
        return int(t), int(h), int(w)

    @property
    def num_visual(self) -> int:
        """``V``, the number of grid tokens."""
        return self.visual_grid.numel()

    def capture_config(
        self, layers: tuple[int, int] | None = None, per_head: bool = False, keep_graph: bool = False
    ) -> CaptureConfig:
        """Capture of the special rows over the visual (grid) keys, in the layer window ``[lo, hi)``."""
        return CaptureConfig(
            query_positions=self.special_positions.tolist(),
            key_positions=self.visual_positions.tolist(),
            layers=layers,
            per_head=per_head,
            keep_graph=keep_graph,
        )

    def to_grid(self, maps: torch.Tensor) -> torch.Tensor:
        """Reshape maps over the visual keys, ``(..., V)``, to ``(..., T, h, w)``.

        A leading batch dimension of size 1 is dropped: captured ``(1, S, V)`` maps become
        ``(S, T, h, w)``, per-head ``(1, H, S, V)`` ones ``(H, S, T, h, w)``.
        """
        if maps.shape[-1] != self.num_visual:
            raise ValueError(f"maps have {maps.shape[-1]} keys, the grid has {self.num_visual}")
        if maps.ndim >= 3 and maps.shape[0] == 1:
            maps = maps[0]
        return maps.reshape(*maps.shape[:-1], *self.grid_shape)


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
    """

    family: ClassVar[str]
    # Frames a grounding run samples by default (seed 003's reference setting).
    default_num_frames: ClassVar[int] = 20

    def __init__(
        self,
        model: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        num_frames: int | None = None,
        answer_words: tuple[str, str] = ("yes", "no"),
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.answer_words = answer_words
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
        """Token id the model starts the answer ``answer_words[0]`` with, after the generation prompt."""
        return answer_token_id(self.tokenizer, self.render_prompt(_PROBE_QUESTION), self.answer_words[0])

    @cached_property
    def no_id(self) -> int:
        """Token id the model starts the answer ``answer_words[1]`` with, after the generation prompt."""
        return answer_token_id(self.tokenizer, self.render_prompt(_PROBE_QUESTION), self.answer_words[1])

    def yes_no_score(self, output: MLLMOutput) -> torch.Tensor:
        """``logit(yes) - logit(no)`` at the answer position, ``(B,)``: seed 003's s(q)."""
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
            prepared: from :meth:`prepare`.
            visual_delta: ``(V, D)`` added to the embeddings at ``prepared.visual_positions``
                (grid order); the output is differentiable with respect to it.
            capture: attention rows to capture (e.g. ``prepared.capture_config(layers)``).
            output_hidden_states: also return the last-layer hidden states ``(1, N, D)``.
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


def add_visual_delta(prepared: PreparedInputs, visual_delta: torch.Tensor | None) -> torch.Tensor:
    """``prepared.inputs_embeds`` with ``visual_delta`` ``(V, D)`` added at the grid positions."""
    embeds = prepared.inputs_embeds
    if visual_delta is None:
        return embeds
    expected = (prepared.num_visual, embeds.shape[-1])
    if tuple(visual_delta.shape) != expected:
        raise ValueError(f"visual_delta must be {expected}, got {tuple(visual_delta.shape)}")
    positions = prepared.visual_positions.to(embeds.device)
    # Out of place, so the prepared embeddings can be reused across optimisation steps.
    return embeds.index_add(1, positions, visual_delta.to(device=embeds.device, dtype=embeds.dtype)[None])


def embed_with_features(
    model: torch.nn.Module, input_ids: torch.Tensor, placeholder_id: int, features: torch.Tensor
) -> torch.Tensor:
    """Input embeddings ``(1, N, D)`` with ``features`` ``(P, D)`` at the placeholder positions.

    The same scatter as the models' own forward: features fill the placeholders in order.
    """
    embeds = model.get_input_embeddings()(input_ids)
    placeholder = (input_ids == placeholder_id).unsqueeze(-1)
    return embeds.masked_scatter(placeholder, features.to(embeds.device, embeds.dtype))
