"""SpaceVLLM: a base video MLLM + interleaved query tokens + the query-guided space decoder.

One forward serves training and inference: the batch (from :class:`spacevllm.collate.
SpaceVLLMCollator`) is embedded with its visual features and query tokens, the language model
runs once, and from its last-layer hidden states

* the decoder gives a box per sampled frame (every frame; the loss masks those outside the span),
* the LM head is applied only where an answer token is predicted (full-vocabulary logits over
  thousands of visual positions would cost gigabytes), giving the time loss.

The training seam (what a fine-tuning script needs)::

    model = SpaceVLLM.from_base("llava-hf/LLaVA-Video-7B-Qwen2-hf", SpaceVLLMConfig())
    collate = model.collator()                      # (record, clip) pairs -> SpaceVLLMBatch
    out = model(batch.to(device))                   # SpaceVLLMOutput
    out.loss.backward()                             # weighted total; parts in out.losses
    model.save_pretrained(out_dir)                  # reload with SpaceVLLM.from_pretrained(out_dir)

Checkpoint layout (one folder): the base model with its resized embeddings and the tokenizer
with the query tokens (as any transformers checkpoint, so the zero-shot adapters can load it
too), ``preprocessor_config.json`` and ``chat_template.json`` (the preprocessing and template
used), ``space_decoder.safetensors`` (the head) and ``spacevllm_config.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from spacevllm.collate import SpaceVLLMBatch, SpaceVLLMCollator
from spacevllm.config import SpaceVLLMConfig
from spacevllm.decoder import QueryGuidedSpaceDecoder
from spacevllm.losses import SpaceVLLMLosses, answer_targets, spacevllm_losses
from spacevllm.queries import LlavaOnevisionQueryAdapter, QueryAdapter, add_query_tokens
from zsgrounding.mllm.errors import ModelError
from zsgrounding.mllm.llava_onevision import LlavaOnevisionAdapter

DECODER_FILE = "space_decoder.safetensors"


@dataclass
class SpaceVLLMOutput:
    """What :meth:`SpaceVLLM.forward` returns (``B`` rows, ``T`` frames, ``L`` tokens).

    Attributes:
        loss: the weighted total loss (scalar).
        losses: its parts (:class:`spacevllm.losses.SpaceVLLMLosses`).
        lm_loss: the time (answer-token cross-entropy) part, for convenience.
        boxes: ``(B, T, 4)`` normalised ``(cx, cy, w, h)`` per sampled frame (padded frames too;
            see ``frame_mask``).
        frame_mask: ``(B, T)`` bool, valid frames.
        query_states: ``(B, T, D)`` last-layer states of the query tokens.
        decoded: ``(B, T, D)`` the space head's input.
        query_attention: ``(B, T, P)`` query-over-frame attention of the decoder, or ``None``.
        last_hidden_state: ``(B, L, D)`` the language model's last layer (after its norm).
        next_token_logits: ``(B, V)`` logits at each row's last prompt token (the first answer
            token), when asked for.
        past_key_values: the KV cache, when ``use_cache``.
    """

    loss: torch.Tensor
    losses: SpaceVLLMLosses
    lm_loss: torch.Tensor
    boxes: torch.Tensor
    frame_mask: torch.Tensor
    query_states: torch.Tensor
    decoded: torch.Tensor
    query_attention: torch.Tensor | None
    last_hidden_state: torch.Tensor
    next_token_logits: torch.Tensor | None = None
    past_key_values: Any = None


class SpaceVLLM(nn.Module):
    """The base MLLM (``self.base``), the query adapter and the space decoder (``self.decoder``).

    Args:
        base: a ``LlavaOnevisionForConditionalGeneration`` whose tokenizer has the query tokens
            (see :func:`spacevllm.queries.add_query_tokens`).
        adapter: the query adapter (tokenizer, layout, preprocessing).
        config: the SpaceVLLM settings.
        decoder: a decoder to use; default a fresh one (float32, on the base's device).
    """

    def __init__(
        self,
        base: nn.Module,
        adapter: QueryAdapter,
        config: SpaceVLLMConfig,
        decoder: QueryGuidedSpaceDecoder | None = None,
    ) -> None:
        super().__init__()
        self.base = base
        self.adapter = adapter
        self.config = config
        hidden = int(base.config.text_config.hidden_size)
        if decoder is None:
            device = base.get_input_embeddings().weight.device
            decoder = QueryGuidedSpaceDecoder(hidden, config, grid=adapter.grid_shape).to(device)
        self.decoder = decoder

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_adapter(cls, adapter: LlavaOnevisionAdapter, config: SpaceVLLMConfig) -> SpaceVLLM:
        """Wrap a loaded base adapter: add the query tokens (new rows at the vocabulary mean)."""
        tokens = add_query_tokens(adapter.model, adapter.tokenizer, config)
        return cls(adapter.model, LlavaOnevisionQueryAdapter.from_adapter(adapter, tokens, config), config)

    @classmethod
    def from_base(
        cls,
        base_path: str | Path,
        config: SpaceVLLMConfig | None = None,
        dtype: torch.dtype | str | None = None,
        device: torch.device | str | None = None,
        **kwargs: Any,
    ) -> SpaceVLLM:
        """A fresh SpaceVLLM on a base checkpoint (local folder or hub id); ``kwargs`` go to the
        base's ``from_pretrained``. The decoder is initialised from torch's global generator."""
        config = config or SpaceVLLMConfig()
        if not config.base_model:
            config = replace(config, base_model=str(base_path))
        adapter = LlavaOnevisionAdapter.from_pretrained(base_path, dtype=dtype, device=device, **kwargs)
        return cls.from_adapter(adapter, config)

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        dtype: torch.dtype | str | None = None,
        device: torch.device | str | None = None,
        **kwargs: Any,
    ) -> SpaceVLLM:
        """Reload a checkpoint written by :meth:`save_pretrained` exactly (no re-initialisation)."""
        directory = Path(directory)
        config = SpaceVLLMConfig.load(directory)
        adapter = LlavaOnevisionAdapter.from_pretrained(directory, dtype=dtype, device=device, **kwargs)
        vocab = adapter.tokenizer.get_vocab()
        missing = [t for t in [*config.query_token_strings(), config.image_query_token] if t not in vocab]
        if missing:
            raise ModelError(f"{directory}: the tokenizer lacks the query tokens {missing[:3]}")
        model = cls.from_adapter(adapter, config)
        state = load_file(str(directory / DECODER_FILE))
        model.decoder.load_state_dict(state, strict=True)
        return model

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write the checkpoint folder (see the module docstring); return it."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self.base.save_pretrained(out)
        self.adapter.save(out)
        state = {k: v.detach().contiguous().cpu() for k, v in self.decoder.state_dict().items()}
        save_file(state, str(out / DECODER_FILE))
        self.config.save(out)
        return out

    # ------------------------------------------------------------------ helpers

    @property
    def tokenizer(self) -> Any:
        return self.adapter.tokenizer

    @property
    def device(self) -> torch.device:
        return self.base.get_input_embeddings().weight.device

    def collator(self, with_answers: bool = True, skip_unreadable: bool = False) -> SpaceVLLMCollator:
        """The collator matching this model's tokenizer, layout and time format; bare records are
        sampled at ``config.num_frames`` frames (``skip_unreadable``: see the collator)."""
        return SpaceVLLMCollator(
            self.adapter,
            num_frames=self.config.num_frames,
            decimals=self.config.time_decimals,
            time_style=self.config.time_instruction,
            with_answers=with_answers,
            skip_unreadable=skip_unreadable,
        )

    def embed(self, batch: SpaceVLLMBatch) -> torch.Tensor:
        """``(B, L, D)`` input embeddings: visual features at ``<video>``, query rows after frames."""
        features = self.adapter.video_features(self.base, batch.pixel_values, batch.num_frames.tolist())
        return self.adapter.embed(self.base, batch.input_ids.to(self.device), features)

    # ------------------------------------------------------------------ forward

    def forward(
        self, batch: SpaceVLLMBatch, use_cache: bool = False, next_token_logits: bool = False
    ) -> SpaceVLLMOutput:
        """Boxes of every sampled frame and the losses of the batch.

        Args:
            batch: from the collator, on any device (moved to the model's).
            use_cache: return the KV cache (inference: continue the answer with :meth:`step`).
            next_token_logits: return the logits of the first answer token per row.
        """
        batch = batch.to(self.device)
        embeds = self.embed(batch)
        out = self.base.model(
            inputs_embeds=embeds, attention_mask=batch.attention_mask, use_cache=use_cache, return_dict=True
        )
        hidden = out.last_hidden_state
        decoded = self.decoder(
            hidden, batch.visual_positions, batch.query_positions, batch.caption_positions, batch.caption_mask
        )
        lm_head = self.base.get_output_embeddings()
        where = answer_targets(batch.labels)
        answer_logits = lm_head(hidden[where.rows, where.positions])
        losses = spacevllm_losses(
            decoded.boxes, batch.target_boxes, batch.box_mask, answer_logits, where.targets, self.config
        )
        first = None
        if next_token_logits:
            rows = torch.arange(batch.batch_size, device=hidden.device)
            first = lm_head(hidden[rows, batch.prompt_lengths - 1]).float()
        return SpaceVLLMOutput(
            loss=losses.total,
            losses=losses,
            lm_loss=losses.lm,
            boxes=decoded.boxes,
            frame_mask=batch.frame_mask,
            query_states=decoded.query_states,
            decoded=decoded.decoded,
            query_attention=decoded.query_attention,
            last_hidden_state=hidden,
            next_token_logits=first,
            past_key_values=out.cache if use_cache else None,
        )

    def step(
        self, token_ids: torch.Tensor, past_key_values: Any, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, Any]:
        """One cached decoding step: ``token_ids (B, 1)`` -> ``(logits (B, V), cache)``.

        ``attention_mask`` ``(B, past + 1)`` covers the cached tokens and the new one.
        """
        embeds = self.base.get_input_embeddings()(token_ids.to(self.device))
        out = self.base.model(
            inputs_embeds=embeds,
            attention_mask=attention_mask,
            cache=past_key_values,
            use_cache=True,
            return_dict=True,
        )
        logits = self.base.get_output_embeddings()(out.last_hidden_state[:, -1]).float()
        return logits, out.cache
