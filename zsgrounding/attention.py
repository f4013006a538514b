"""Capture of selected attention rows of an MLLM's language model, without N x N maps.

The grounding signal of the zero-shot method is the attention that a few query tokens (the
special tokens after the user instruction) pay to the visual tokens. Eager attention would give
it, but only by materialising every layer's ``(B, heads, N, N)`` map, which does not fit for
video-length prompts. Instead, an attention function registered with transformers' attention
interface delegates the layer output to the stock SDPA function and, for the decoder layers in
a window, recomputes ``softmax(q_rows . K^T * scaling + mask_rows)`` for the selected query rows
only. Memory stays ``O(layers x heads x rows x N)``.

Usage::

    cfg = CaptureConfig(query_positions=[-5, -4], key_positions=visual_positions, layers=(6, 26))
    with capture_attention(model, cfg) as cap:
        model(inputs_embeds=embeds, attention_mask=mask)
    evidence = cap.mean()  # (B, rows, K)

Only the language model's attention is switched: on a composite model (LLaVA-OneVision,
Qwen2-VL, ...) the ``text_config`` sub-config gets the capture implementation and the vision
tower keeps its own. The capture assumes one full forward without a KV cache: query positions
are absolute positions of the whole sequence (negative ones count from its end, which left
padding keeps aligned across the batch). A call whose query length differs from its key length
(decoding with a cache) is not captured and is counted in ``AttentionCapture.skipped_calls``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import overload

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

__all__ = [
    "CAPTURE_ATTN_IMPLEMENTATION",
    "AttentionCapture",
    "CaptureConfig",
    "capture_attention",
    "relative_attention",
]

# Name under which the capture function is registered with transformers.
CAPTURE_ATTN_IMPLEMENTATION = "zsg_capture_sdpa"

# Attribute set on the attention modules of the captured layers for the duration of a context;
# it points to the per-call state, so the registered function itself stays stateless.
_CTX_ATTR = "_zsg_attention_capture"


@dataclass(frozen=True)
class CaptureConfig:
    """What to capture.

    Attributes:
        query_positions: absolute positions of the query rows in the full sequence (R of them);
            negative values count from the end of the sequence.
        key_positions: absolute positions of the key columns to keep (K of them), e.g. the
            visual tokens; ``None`` keeps all N keys. Negative values count from the end.
        layers: half-open window ``[lo, hi)`` of decoder layer indices; ``None`` = all layers.
        per_head: keep one map per attention head instead of the mean over heads.
        keep_graph: keep the captured rows differentiable (default: detached, no autograd
            graph is built for them; the layer outputs stay differentiable either way).
    """

    query_positions: Sequence[int]
    key_positions: Sequence[int] | None = None
    layers: tuple[int, int] | None = None
    per_head: bool = False
    keep_graph: bool = False

    def __post_init__(self) -> None:
        if len(self.query_positions) == 0:
            raise ValueError("query_positions must not be empty")
        if self.key_positions is not None and len(self.key_positions) == 0:
            raise ValueError("key_positions must be None (all keys) or non-empty")
        if self.layers is not None:
            lo, hi = self.layers
            if not 0 <= lo < hi:
                raise ValueError(f"layers must be a window [lo, hi) with 0 <= lo < hi, got {self.layers}")

    def captures_layer(self, layer_idx: int) -> bool:
        return self.layers is None or self.layers[0] <= layer_idx < self.layers[1]


@dataclass
class AttentionCapture:
    """Per-call capture state and result of one ``capture_attention`` context.

    Attributes:
        config: what is captured.
        maps: layer index -> float32 CPU tensor of the last captured forward, shape
            ``(B, R, K)`` (head mean) or ``(B, heads, R, K)`` (``per_head``); R query rows in
            the order of ``config.query_positions``, K key columns in the order of
            ``config.key_positions`` (all N keys if ``None``). Each row is the query's softmax
            restricted to the kept columns, so it sums to 1 only when all keys are kept.
        calls: number of attention calls captured.
        skipped_calls: number of calls in the window not captured because the query length
            differed from the key length (a KV cache was in use).
    """

    config: CaptureConfig
    maps: dict[int, torch.Tensor] = field(default_factory=dict)
    calls: int = 0
    skipped_calls: int = 0

    def mean(self) -> torch.Tensor:
        """Mean over the captured layers: ``(B, R, K)``, or ``(B, heads, R, K)`` with ``per_head``."""
        if not self.maps:
            raise RuntimeError("no attention was captured; run a forward inside the context first")
        return torch.stack([self.maps[i] for i in sorted(self.maps)]).mean(dim=0)

    def clear(self) -> None:
        """Forget the captured maps (e.g. between forwards of an optimisation loop)."""
        self.maps.clear()
        self.calls = 0
        self.skipped_calls = 0

    def record(
        self,
        module: nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        attention_mask: torch.Tensor | None,
        scaling: float | None,
        is_causal: bool,
        sliding_window: int | None,
        position_bias: torch.Tensor | None,
    ) -> None:
        """Compute and store the selected rows of one layer (called by the attention function).

        ``query`` is ``(B, heads, Q, D)``, ``key`` ``(B, kv_heads, N, D)`` (before any GQA
        repetition), ``attention_mask`` boolean (True = attend) or additive, broadcastable to
        ``(B, heads, Q, N)``, or ``None`` when SDPA relies on ``is_causal``.
        """
        q_len, n = query.shape[2], key.shape[2]
        if q_len != n:
            self.skipped_calls += 1
            return
        device = query.device
        rows = _resolve_positions(self.config.query_positions, n, "query", device)
        cols = None
        if self.config.key_positions is not None:
            cols = _resolve_positions(self.config.key_positions, n, "key", device)
        # Without keep_graph, no autograd graph is built for the rows (LRA backpropagates through
        # many forwards; the rows would only hold memory).
        grad_mode = nullcontext() if self.config.keep_graph else torch.no_grad()
        with grad_mode:
            probs = _attention_rows(
                query, key, rows, attention_mask, scaling, is_causal, sliding_window, position_bias
            )
            if cols is not None:
                probs = probs[..., cols]
            if not self.config.per_head:
                probs = probs.mean(dim=1)
            probs = probs.to(device="cpu", dtype=torch.float32)
        self.maps[module.layer_idx] = probs if self.config.keep_graph else probs.detach()
        self.calls += 1


def _resolve_positions(positions: Sequence[int], n: int, what: str, device: torch.device) -> torch.Tensor:
    idx = torch.as_tensor(list(positions), dtype=torch.long)
    idx = torch.where(idx < 0, idx + n, idx)
    if bool(((idx < 0) | (idx >= n)).any()):
        raise IndexError(f"{what} positions {list(positions)} out of range for a sequence of length {n}")
    return idx.to(device)


def _attention_rows(
    query: torch.Tensor,
    key: torch.Tensor,
    rows: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None,
    is_causal: bool,
    sliding_window: int | None,
    position_bias: torch.Tensor | None,
) -> torch.Tensor:
    """Softmax of the selected query rows over all N keys: ``(B, heads, R, N)`` float32."""
    batch, heads, _, dim = query.shape
    kv_heads, n = key.shape[1], key.shape[2]
    n_rep = heads // kv_heads
    r = rows.numel()
    scale = scaling if scaling is not None else 1.0 / math.sqrt(dim)
    # Float32 for the scores whatever the model dtype: the rows are evidence, not activations.
    q_rows = query[:, :, rows, :].float()
    # GQA without repeating K: attention head h uses kv head h // n_rep, so group the query heads.
    q_grouped = q_rows.reshape(batch, kv_heads, n_rep * r, dim)
    scores = torch.matmul(q_grouped, key.float().transpose(-1, -2)) * scale
    scores = scores.reshape(batch, heads, r, n)
    if position_bias is not None:
        scores = scores + position_bias[..., rows, :].float()
    min_value = torch.finfo(scores.dtype).min
    if attention_mask is not None:
        mask_rows = attention_mask[..., rows, :]
        if mask_rows.dtype == torch.bool:
            # Masked keys get the dtype minimum, as in eager attention (a fully masked row stays finite).
            scores = scores.masked_fill(~mask_rows, min_value)
        else:
            scores = scores + mask_rows.float()
    else:
        keys = torch.arange(n, device=query.device)
        allowed = torch.ones(r, n, dtype=torch.bool, device=query.device)
        if is_causal:
            allowed &= keys[None, :] <= rows[:, None]
        if sliding_window is not None:
            allowed &= keys[None, :] > rows[:, None] - sliding_window
        scores = scores.masked_fill(~allowed, min_value)
    return torch.softmax(scores, dim=-1)


def _capture_sdpa_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: object,
) -> tuple[torch.Tensor, None]:
    """Attention function registered with transformers: SDPA output, plus row capture when active."""
    attn_output, _ = sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    capture = getattr(module, _CTX_ATTR, None)
    if capture is not None:
        is_causal = kwargs.get("is_causal")
        if is_causal is None:
            is_causal = getattr(module, "is_causal", True)
        capture.record(
            module,
            query,
            key,
            attention_mask,
            scaling=kwargs.get("scaling"),
            is_causal=bool(is_causal),
            sliding_window=kwargs.get("sliding_window"),
            position_bias=kwargs.get("position_bias"),
        )
    return attn_output, None


AttentionInterface.register(CAPTURE_ATTN_IMPLEMENTATION, _capture_sdpa_attention)
# Without a mask function under the same name, transformers builds no mask at all for a custom
# implementation and padding would be silently ignored; SDPA's boolean masks are what we want.
AttentionMaskInterface.register(CAPTURE_ATTN_IMPLEMENTATION, sdpa_mask)


def _language_config(model: nn.Module) -> tuple[object, bool]:
    """The config whose attention implementation drives the language model, and whether it is a sub-config."""
    config = model.config
    if (
        "text_config" in getattr(config, "sub_configs", {})
        and getattr(config, "text_config", None) is not None
    ):
        return config.text_config, True
    return config, False


def _set_language_attn(model: nn.Module, implementation: str, is_sub_config: bool) -> None:
    if is_sub_config:
        # A dict targets the text sub-config only; the vision tower keeps its implementation.
        model.set_attn_implementation({"text_config": implementation})
    else:
        model.set_attn_implementation(implementation)


@contextmanager
def capture_attention(model: nn.Module, config: CaptureConfig) -> Iterator[AttentionCapture]:
    """Capture attention rows of ``model``'s language model for forwards run inside the context.

    ``model`` is a transformers ``PreTrainedModel``: a causal LM (e.g. ``Qwen2ForCausalLM``), a
    bare decoder (``Qwen2Model``) or a composite MLLM with a ``text_config``. The model's
    outputs are those of SDPA and stay differentiable. The previous attention implementation is
    restored on exit, also when the body raises. Each forward overwrites the maps of the layers
    it captures, so ``maps`` holds the last forward.
    """
    lm_config, is_sub_config = _language_config(model)
    modules = [
        module
        for module in model.modules()
        if getattr(module, "config", None) is lm_config
        and isinstance(getattr(module, "layer_idx", None), int)
        and config.captures_layer(module.layer_idx)
    ]
    if not modules:
        raise ValueError("no attention module with a `layer_idx` in the requested layer window")
    if any(hasattr(module, _CTX_ATTR) for module in modules):
        raise RuntimeError("attention capture is already active on this model")

    capture = AttentionCapture(config=config)
    previous = lm_config._attn_implementation
    try:
        for module in modules:
            setattr(module, _CTX_ATTR, capture)
        _set_language_attn(model, CAPTURE_ATTN_IMPLEMENTATION, is_sub_config)
        yield capture
    finally:
        for module in modules:
            if getattr(module, _CTX_ATTR, None) is capture:
                delattr(module, _CTX_ATTR)
        _set_language_attn(model, previous, is_sub_config)


@overload
def relative_attention(maps: torch.Tensor, baseline_maps: torch.Tensor, eps: float = ...) -> torch.Tensor: ...


@overload
def relative_attention(
    maps: Mapping[int, torch.Tensor], baseline_maps: Mapping[int, torch.Tensor], eps: float = ...
) -> dict[int, torch.Tensor]: ...


def relative_attention(
    maps: torch.Tensor | Mapping[int, torch.Tensor],
    baseline_maps: torch.Tensor | Mapping[int, torch.Tensor],
    eps: float = 1e-4,
) -> torch.Tensor | dict[int, torch.Tensor]:
    """``maps / (baseline_maps + eps)``: attention relative to that of a generic prompt.

    The baseline is the map captured for the same video with the prompt "please describe this
    video"; dividing by it removes the tokens every prompt attends to (attention sinks). Works
    on tensors of the same (broadcastable) shape, or on per-layer dicts (layers of both).
    """
    if isinstance(maps, Mapping):
        if not isinstance(baseline_maps, Mapping):
            raise TypeError("baseline_maps must be a mapping when maps is a mapping")
        missing = set(maps) - set(baseline_maps)
        if missing:
            raise KeyError(f"baseline has no maps for layers {sorted(missing)}")
        return {layer: maps[layer] / (baseline_maps[layer] + eps) for layer in maps}
    if isinstance(baseline_maps, Mapping):
        raise TypeError("baseline_maps must be a tensor when maps is a tensor")
    return maps / (baseline_maps + eps)
