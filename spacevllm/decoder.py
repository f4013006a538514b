"""The query-guided space decoder: parameter-free dual cross attention, then the MLP space head.

On the LLM's last-layer hidden states (after the final norm), for frame ``t`` of a row:

1. text-enhanced visual tokens: each visual token of the frame attends to the caption tokens,
   ``V'_t = V_t + softmax(V_t E^T * s) E``. The paper calls this the cross attention between
   visual and caption embeddings that yields "text-enhanced visual features", which have the
   visual tokens' shape, so the visual tokens are the queries and the caption the keys/values.
2. the frame's query attends to its enhanced visual tokens, ``S_t = q_t + softmax(q_t V'_t^T * s) V'_t``.
3. the space head, an MLP with a sigmoid, reads ``S_t`` -> normalised ``(cx, cy, w, h)``.
   With ``position_cue`` it also reads where the query looked: the centroid and spread of its
   attention weights over the frame's grid (:func:`attention_position`).

With ``position_codes``, step 2's keys and values are ``V'_t + P`` instead of ``V'_t``: ``P`` holds
fixed 2-D sinusoidal codes of the grid cells (:func:`grid_codes`), scaled to the frame's tokens.

No projection matrices (the paper: no parameters in the dual cross attention); ``s`` is
``1 / sqrt(D)`` by default. The residual adds (``attention_residual``) are our choice: see
:class:`spacevllm.config.SpaceVLLMConfig`. With ``dual_cross_attention=False`` the head reads
``q_t`` itself (Table 7 ablation). The decoder runs in its own parameters' dtype (float32 by
default), whatever the base model's.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import nn

from spacevllm.config import SpaceVLLMConfig


@dataclass
class SpaceDecoderOutput:
    """What :class:`QueryGuidedSpaceDecoder` returns (``B`` rows, ``T`` frames, ``P`` tokens per frame).

    Attributes:
        boxes: ``(B, T, 4)`` normalised ``(cx, cy, w, h)`` in ``(0, 1)``.
        query_states: ``(B, T, D)`` last-layer hidden states of the query tokens.
        decoded: ``(B, T, D)`` what the head read (``query_states`` without dual cross attention;
            ``(B, T, D + 4)`` with the position cue appended).
        query_attention: ``(B, T, P)`` each query's attention over its frame's visual tokens
            (row-major on the ``h x w`` grid), or ``None`` without dual cross attention.
    """

    boxes: torch.Tensor
    query_states: torch.Tensor
    decoded: torch.Tensor
    query_attention: torch.Tensor | None = None


def gather_positions(hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``hidden (B, L, D)`` at ``positions (B, ...)`` -> ``(B, ..., D)``."""
    b = hidden.shape[0]
    rows = torch.arange(b, device=hidden.device).view(b, *([1] * (positions.ndim - 1)))
    return hidden[rows, positions.to(hidden.device)]


def attend(
    queries: torch.Tensor, keys: torch.Tensor, scale: float, key_mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Parameter-free attention, keys as values: ``softmax(Q K^T * scale) K``.

    Args:
        queries: ``(..., M, D)``.
        keys: ``(..., K, D)`` (broadcast against ``queries``' leading dimensions).
        key_mask: ``(..., K)`` bool, ``False`` keys are ignored; a row with no key gets zeros.

    Returns:
        ``(output (..., M, D), weights (..., M, K))``.
    """
    scores = torch.matmul(queries, keys.transpose(-1, -2)) * scale
    if key_mask is None:
        weights = scores.softmax(-1)
        return torch.matmul(weights, keys), weights
    mask = key_mask.unsqueeze(-2)
    weights = scores.masked_fill(~mask, torch.finfo(scores.dtype).min).softmax(-1) * mask
    return torch.matmul(weights, keys), weights


_SPREAD_EPS = 1e-6


def attention_position(weights: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Centroid and spread of attention over a row-major ``h x w`` grid.

    Args:
        weights: ``(..., h * w)`` non-negative weights summing to 1 (or 0 for an empty row).
        grid: ``(h, w)``.

    Returns:
        ``(..., 4)``: ``(cx, cy, sx, sy)``, the weighted mean and standard deviation of the cell
        centres' normalised coordinates (``(j + 0.5) / w``, ``(i + 0.5) / h``); the deviations
        are ``sqrt(variance + 1e-6)``, so a one-hot row has spread 0.001 and a finite gradient.
    """
    h, w = grid
    if weights.shape[-1] != h * w:
        raise ValueError(f"attention over {weights.shape[-1]} tokens does not fit the grid {h}x{w}")
    ys = (torch.arange(h, dtype=weights.dtype, device=weights.device) + 0.5) / h
    xs = (torch.arange(w, dtype=weights.dtype, device=weights.device) + 0.5) / w
    x = xs.repeat(h)  # row-major: column index varies fastest
    y = ys.repeat_interleave(w)
    cx, cy = (weights * x).sum(-1), (weights * y).sum(-1)
    # The epsilon keeps the gradient of sqrt finite on a one-hot row (variance 0); the clamp
    # absorbs rounding below 0.
    var_x = (weights * (x - cx.unsqueeze(-1)) ** 2).sum(-1).clamp_min(0)
    var_y = (weights * (y - cy.unsqueeze(-1)) ** 2).sum(-1).clamp_min(0)
    sx, sy = (var_x + _SPREAD_EPS).sqrt(), (var_y + _SPREAD_EPS).sqrt()
    return torch.stack([cx, cy, sx, sy], dim=-1)


def grid_codes(grid: tuple[int, int], dim: int) -> torch.Tensor:
    """Fixed 2-D sinusoidal codes of a row-major ``h x w`` grid, root-mean-square 1 per entry.

    The first half of the dimensions codes the cell centre's ``x`` in ``[0, 1]``, the second half
    its ``y``, each as ``sin`` / ``cos`` pairs at ``dim // 4`` frequencies spaced geometrically
    from half a cycle to ``max(h, w) / 2`` cycles across the frame (the finest a grid can show).
    A ``dim`` not divisible by 4 leaves its last dimensions zero.

    Returns:
        ``(h * w, dim)`` float32.
    """
    h, w = grid
    pairs = max(dim // 4, 1)
    top = max(max(h, w) / 2.0, 0.5)
    cycles = 0.5 * (top / 0.5) ** (torch.arange(pairs, dtype=torch.float64) / max(pairs - 1, 1))
    xs = ((torch.arange(w, dtype=torch.float64) + 0.5) / w).repeat(h)
    ys = ((torch.arange(h, dtype=torch.float64) + 0.5) / h).repeat_interleave(w)
    parts = []
    for coord in (xs, ys):
        angle = 2 * math.pi * coord[:, None] * cycles[None, :]
        parts += [angle.sin(), angle.cos()]
    codes = torch.cat(parts, dim=-1)[:, :dim] * math.sqrt(2.0)  # sin^2 + cos^2 = 1 per pair
    if codes.shape[-1] < dim:
        codes = torch.cat([codes, codes.new_zeros(h * w, dim - codes.shape[-1])], dim=-1)
    return codes.float()


class SpaceHead(nn.Module):
    """MLP ``D -> hidden -> ... -> 4`` with ReLU between layers and a sigmoid on the output."""

    def __init__(self, in_dim: int, hidden: int, num_layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [hidden] * (num_layers - 1) + [4]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., D)`` -> ``(..., 4)`` in ``(0, 1)``."""
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x.sigmoid()


class QueryGuidedSpaceDecoder(nn.Module):
    """Dual cross attention (no parameters) + :class:`SpaceHead` (the only trained weights)."""

    def __init__(
        self, hidden_size: int, config: SpaceVLLMConfig, grid: tuple[int, int] | None = None
    ) -> None:
        super().__init__()
        self.hidden_size = int(hidden_size)
        self.dual_cross_attention = config.dual_cross_attention
        self.position_cue = config.position_cue
        self.position_codes = config.position_codes
        if (self.position_cue or self.position_codes) and grid is None:
            raise ValueError("position_cue and position_codes need the visual grid (h, w)")
        self.grid = None if grid is None else (int(grid[0]), int(grid[1]))
        codes = grid_codes(self.grid, self.hidden_size) if self.position_codes and self.grid else None
        # A buffer, not a parameter: fixed, moves with .to(), not saved (rebuilt from the grid).
        self.register_buffer("codes", codes, persistent=False)
        self.residual = config.attention_residual
        self.scale = (
            config.attention_scale if config.attention_scale is not None else 1.0 / math.sqrt(hidden_size)
        )
        extra = 4 if self.position_cue else 0
        self.head = SpaceHead(hidden_size + extra, config.head_hidden or hidden_size, config.head_layers)

    def forward(
        self,
        hidden: torch.Tensor,
        visual_positions: torch.Tensor,
        query_positions: torch.Tensor,
        caption_positions: torch.Tensor,
        caption_mask: torch.Tensor | None = None,
    ) -> SpaceDecoderOutput:
        """Boxes of every frame of every row.

        Args:
            hidden: ``(B, L, D)`` last-layer hidden states.
            visual_positions: ``(B, T, P)`` positions of each frame's visual tokens.
            query_positions: ``(B, T)`` positions of each frame's query token.
            caption_positions: ``(B, C)`` positions of the caption tokens.
            caption_mask: ``(B, C)`` bool, ``False`` on padding; ``None``: all valid.
        """
        dtype = self.head.layers[0].weight.dtype
        queries = gather_positions(hidden, query_positions).to(dtype)  # (B, T, D)
        if not self.dual_cross_attention:
            return SpaceDecoderOutput(boxes=self.head(queries), query_states=queries, decoded=queries)

        visual = gather_positions(hidden, visual_positions).to(dtype)  # (B, T, P, D)
        caption = gather_positions(hidden, caption_positions).to(dtype)  # (B, C, D)
        mask = None if caption_mask is None else caption_mask.to(hidden.device).bool()[:, None, :]
        # Step 1: every visual token of every frame attends to the row's caption tokens.
        text, _ = attend(visual, caption[:, None], self.scale, mask)
        enhanced = visual + text if self.residual else text
        if self.codes is not None:
            enhanced = enhanced + self._scaled_codes(enhanced)
        # Step 2: each frame's query attends to its own frame's enhanced visual tokens.
        spatial, weights = attend(queries.unsqueeze(-2), enhanced, self.scale)
        spatial, weights = spatial.squeeze(-2), weights.squeeze(-2)
        decoded = queries + spatial if self.residual else spatial
        if self.position_cue:
            decoded = torch.cat([decoded, attention_position(weights, self.grid)], dim=-1)
        return SpaceDecoderOutput(
            boxes=self.head(decoded), query_states=queries, decoded=decoded, query_attention=weights
        )

    def _scaled_codes(self, tokens: torch.Tensor) -> torch.Tensor:
        """``codes`` times each frame's root-mean-square token entry: ``(B, T, P, D)``.

        The scale follows the base's states (a model's last-layer norm sets their size); it is
        detached so the codes stay fixed inputs rather than a path for gradients.
        """
        if tokens.shape[-2] != self.codes.shape[0]:
            raise ValueError(f"{tokens.shape[-2]} visual tokens per frame do not fit the grid {self.grid}")
        rms = tokens.detach().pow(2).mean(dim=(-2, -1), keepdim=True).sqrt()
        return self.codes.to(tokens.dtype) * rms
