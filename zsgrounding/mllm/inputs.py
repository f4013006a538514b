"""Prepared inputs: the rows an adapter's forward runs on, their batching and their frame reversal.

:class:`PreparedInputs` holds input embeddings with the visual features in place and where the
visual and special tokens are; :meth:`PreparedInputs.from_prompt` builds one row from a
tokenized prompt whose expanded video placeholder starts with the visual grid.

Batches. :func:`stack_prepared` turns several prepared inputs of the same clip geometry (the
same visual grid positions and the same template tail) into one batch, so that LRA's sub-query
and generic prompt, or TAS's forward and frame-reversed inputs, run as ONE forward. Questions
may differ in length, so the padding goes in the middle, right after the visual slice (before
the question text): the prefix (system text, visual tokens) keeps its absolute positions and
the tail (special tokens, answer position) is end-aligned, so one :class:`CaptureConfig` serves
every row. Explicit ``position_ids`` give every real token the position it has unpadded.
:func:`reverse_frames` gives the frame-reversed input of TAS.

Everything here is re-exported by :mod:`zsgrounding.mllm.base`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from zsgrounding.attention import CaptureConfig
from zsgrounding.mllm.prompt import VideoPrompt


@dataclass
class PreparedInputs:
    """Inputs of ``B >= 1`` (clip, question) rows, ready for :meth:`MLLMAdapter.forward`.

    ``prepare`` gives one row (``B = 1``); :func:`stack_prepared` batches rows that share the
    visual grid and the template tail, padded in the middle (see the module docstring).

    Attributes:
        input_ids: ``(B, N)`` long, the tokenized prompt with the visual placeholder expanded
            (visual positions hold the placeholder id; padding holds the pad id).
        inputs_embeds: ``(B, N, D)`` input embeddings with the visual features scattered into the
            visual positions, as the model's own forward does; no autograd graph.
        attention_mask: ``(B, N)`` long, 1 on real tokens, 0 on padding (all ones for ``B = 1``
            from ``prepare``).
        visual_grid: ``(T, h, w)`` long, absolute sequence position of the visual token of frame
            ``t``, row ``i``, column ``j``, shared by every row. Separator tokens (newlines) are
            not in it.
        special_positions: ``(S,)`` long, ascending positions of the tokens after the question
            in the chat template (end of turn, assistant header), shared by every row; the last
            is ``answer_position``.
        special_tokens: ``S`` token strings at ``special_positions``.
        answer_position: position whose logits predict the first answer token: ``N - 1``.
        frame_ids: ``(T,)`` long, native frame id of each grid frame; ``(B, T)`` for a batch
            whose rows differ (e.g. a frame-reversed row, see :func:`reverse_frames`).
        separator_positions: ``(K,)`` long, visual-slice positions outside the grid (LLaVA-
            OneVision: the one newline token after the video); no delta is added to them.
        model_kwargs: extra keyword arguments of the model's forward (e.g. Qwen2-VL's
            ``position_ids`` ``(3, B, N)`` and ``mm_token_type_ids`` ``(B, N)``; a stacked
            LLaVA batch's ``position_ids`` ``(B, N)``).
        latent_separators: the LRA latent (``visual_delta``) also covers the separator positions,
            after the grid ones (:attr:`latent_positions`); maps still read the grid only.
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
    latent_separators: bool = False

    def __post_init__(self) -> None:
        if self.inputs_embeds.ndim != 3 or self.inputs_embeds.shape[0] < 1:
            raise ValueError(f"inputs_embeds must be (B, N, D), got {tuple(self.inputs_embeds.shape)}")
        b, n = self.inputs_embeds.shape[:2]
        for name in ("input_ids", "attention_mask"):
            if tuple(getattr(self, name).shape) != (b, n):
                raise ValueError(f"{name} must be ({b}, {n}), got {tuple(getattr(self, name).shape)}")
        if self.visual_grid.ndim != 3:
            raise ValueError(f"visual_grid must be (T, h, w), got {tuple(self.visual_grid.shape)}")
        t = self.visual_grid.shape[0]
        if tuple(self.frame_ids.shape) not in {(t,), (b, t)}:
            raise ValueError(f"frame_ids must be ({t},) or ({b}, {t}), got {tuple(self.frame_ids.shape)}")
        if len(self.special_tokens) != self.special_positions.numel():
            raise ValueError("special_tokens and special_positions differ in length")
        # forward() keeps the logits of the last position only (logits_to_keep=1).
        if self.answer_position != n - 1:
            raise ValueError(f"answer_position must be the last position {n - 1}, got {self.answer_position}")

    @classmethod
    def from_prompt(
        cls,
        prompt: VideoPrompt,
        input_ids: torch.Tensor,
        inputs_embeds: torch.Tensor,
        grid_shape: tuple[int, int, int],
        frame_ids: torch.Tensor,
        **fields: Any,
    ) -> PreparedInputs:
        """One row (``B = 1``, every token real) of a tokenized prompt.

        ``input_ids`` ``(1, N)`` are ``prompt.input_ids``, ``inputs_embeds`` ``(1, N, D)`` their
        embeddings with the visual features in place. Of the ``prompt.num_visual`` expanded
        placeholder tokens, the first ``T * h * w`` (``grid_shape``) are the visual grid,
        frame-major and row-major inside a frame; the rest are separators. ``fields``: the other
        attributes (``model_kwargs``, ``latent_separators``).
        """
        t, h, w = grid_shape
        start, grid_size = prompt.visual_start, t * h * w
        return cls(
            input_ids=input_ids,
            inputs_embeds=inputs_embeds,
            attention_mask=torch.ones_like(input_ids),
            visual_grid=torch.arange(start, start + grid_size).reshape(t, h, w),
            special_positions=torch.tensor(prompt.special_positions, dtype=torch.long),
            special_tokens=prompt.special_tokens,
            answer_position=prompt.answer_position,
            frame_ids=frame_ids,
            separator_positions=torch.arange(start + grid_size, start + prompt.num_visual),
            **fields,
        )

    @property
    def batch_size(self) -> int:
        """``B``, the number of rows."""
        return int(self.inputs_embeds.shape[0])

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

    @property
    def latent_positions(self) -> torch.Tensor:
        """``(L,)`` positions a ``visual_delta`` is added at: the grid in grid order, then the
        separators when :attr:`latent_separators` is set."""
        if not self.latent_separators:
            return self.visual_positions
        return torch.cat([self.visual_positions, self.separator_positions.to(self.visual_positions)])

    @property
    def num_latent(self) -> int:
        """``L``, the rows of a ``visual_delta``: ``V``, plus the separators when they are covered."""
        return int(self.latent_positions.numel())

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
        ``(S, T, h, w)``, per-head ``(1, H, S, V)`` ones ``(H, S, T, h, w)``; a batch of
        ``B > 1`` keeps it: ``(B, S, T, h, w)``. A map of a :func:`reverse_frames` input is
        in reversed frame order: ``.flip(-3)`` puts it back in the clip's order.
        """
        if maps.shape[-1] != self.num_visual:
            raise ValueError(f"maps have {maps.shape[-1]} keys, the grid has {self.num_visual}")
        if maps.ndim >= 3 and maps.shape[0] == 1:
            maps = maps[0]
        return maps.reshape(*maps.shape[:-1], *self.grid_shape)


def add_visual_delta(prepared: PreparedInputs, visual_delta: torch.Tensor | None) -> torch.Tensor:
    """``prepared.inputs_embeds`` ``(B, N, D)`` with ``visual_delta`` added at the latent positions.

    ``visual_delta`` is ``(L, D)`` (broadcast over the rows) or ``(B, L, D)`` (one per row), ``L =
    prepared.num_latent`` (the grid tokens, plus the separators when the latent covers them).
    """
    embeds = prepared.inputs_embeds
    if visual_delta is None:
        return embeds
    b, _, d = embeds.shape
    v = prepared.num_latent
    if tuple(visual_delta.shape) == (v, d):
        visual_delta = visual_delta.expand(b, v, d)
    elif tuple(visual_delta.shape) != (b, v, d):
        raise ValueError(
            f"visual_delta must be ({v}, {d}) or ({b}, {v}, {d}), got {tuple(visual_delta.shape)}"
        )
    positions = prepared.latent_positions.to(embeds.device)
    # Out of place, so the prepared embeddings can be reused across optimisation steps.
    return embeds.index_add(1, positions, visual_delta.to(device=embeds.device, dtype=embeds.dtype))


def embed_with_features(
    model: torch.nn.Module, input_ids: torch.Tensor, placeholder_id: int, features: torch.Tensor
) -> torch.Tensor:
    """Input embeddings ``(1, N, D)`` with ``features`` ``(P, D)`` at the placeholder positions.

    The same scatter as the models' own forward: features fill the placeholders in order.
    """
    embeds = model.get_input_embeddings()(input_ids)
    placeholder = (input_ids == placeholder_id).unsqueeze(-1)
    return embeds.masked_scatter(placeholder, features.to(embeds.device, embeds.dtype))


@dataclass
class _Row:
    """One row of prepared inputs without its padding: ``n`` real tokens.

    Attributes:
        input_ids: ``(n,)`` long.
        embeds: ``(n, D)``.
        position_ids: ``(n,)`` (1-D positions) or ``(3, n)`` (M-RoPE); ``None``: ``0 .. n-1``.
        token_types: ``(n,)`` long ``mm_token_type_ids``, or ``None``.
        frame_ids: ``(T,)`` long.
    """

    input_ids: torch.Tensor
    embeds: torch.Tensor
    position_ids: torch.Tensor | None
    token_types: torch.Tensor | None
    frame_ids: torch.Tensor


# model_kwargs that stack_prepared pads per row; any other key must be equal in every item.
_PADDED_KWARGS = ("position_ids", "mm_token_type_ids")


def _prefix_length(prepared: PreparedInputs) -> int:
    """Length of the visual prefix: one past the last visual or separator position."""
    last = int(prepared.visual_grid.max())
    if prepared.separator_positions.numel():
        last = max(last, int(prepared.separator_positions.max()))
    return last + 1


def _tail_offsets(prepared: PreparedInputs) -> torch.Tensor:
    """``(S,)`` distances of the special positions from the end of the sequence."""
    return prepared.inputs_embeds.shape[1] - prepared.special_positions.cpu()


def _check_same_layout(first: PreparedInputs, item: PreparedInputs) -> None:
    if not torch.equal(item.visual_grid.cpu(), first.visual_grid.cpu()):
        raise ValueError("items to stack must share the visual grid positions")
    if not torch.equal(item.separator_positions.cpu(), first.separator_positions.cpu()):
        raise ValueError("items to stack must share the separator positions")
    if item.special_tokens != first.special_tokens or not torch.equal(
        _tail_offsets(item), _tail_offsets(first)
    ):
        raise ValueError("items to stack must share the template tail (special tokens from the end)")
    if item.inputs_embeds.shape[-1] != first.inputs_embeds.shape[-1]:
        raise ValueError("items to stack must have the same hidden size")
    if item.latent_separators != first.latent_separators:
        raise ValueError("items to stack must agree on whether the latent covers the separators")
    # A missing position_ids means 1-D positions 0 .. n-1 (a fresh LLaVA item); M-RoPE ones never miss.
    keys, first_keys = set(item.model_kwargs) - {"position_ids"}, set(first.model_kwargs) - {"position_ids"}
    if keys != first_keys:
        raise ValueError(
            f"items to stack have different model_kwargs: {sorted(keys)} vs {sorted(first_keys)}"
        )
    if _position_dims(item) != _position_dims(first):
        raise ValueError("items to stack mix 1-D and M-RoPE position_ids")
    for key in first_keys - set(_PADDED_KWARGS):
        value, other = first.model_kwargs[key], item.model_kwargs[key]
        same = torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other
        if not same:
            raise ValueError(f"items to stack differ in model_kwargs[{key!r}]")


def _position_dims(prepared: PreparedInputs) -> int:
    """Position components per token: 1 (1-D positions, also when absent) or 3 (M-RoPE)."""
    positions = prepared.model_kwargs.get("position_ids")
    return 3 if positions is not None and positions.ndim == 3 else 1


def _unpadded_rows(item: PreparedInputs, prefix: int, tail_start: int) -> list[_Row]:
    positions = item.model_kwargs.get("position_ids")
    types = item.model_kwargs.get("mm_token_type_ids")
    rows = []
    for b in range(item.batch_size):
        real = item.attention_mask[b].bool()
        if not bool(real[:prefix].all()):
            raise ValueError("items to stack must have no padding before the end of the visual slice")
        n = int(real.sum())
        if n - tail_start < prefix:
            raise ValueError("the template tail overlaps the visual slice: nothing to pad between them")
        rows.append(
            _Row(
                input_ids=item.input_ids[b, real],
                embeds=item.inputs_embeds[b, real],
                # [..., b, real] reads (B, N) and (3, B, N) position ids alike.
                position_ids=None if positions is None else positions[..., b, real.to(positions.device)],
                token_types=None if types is None else types[b, real.to(types.device)],
                frame_ids=item.frame_ids if item.frame_ids.ndim == 1 else item.frame_ids[b],
            )
        )
    return rows


def _pad_middle(x: torch.Tensor, prefix: int, filler: torch.Tensor, dim: int) -> torch.Tensor:
    """``x`` with ``filler`` inserted at index ``prefix`` of dimension ``dim``."""
    head, rest = x.narrow(dim, 0, prefix), x.narrow(dim, prefix, x.shape[dim] - prefix)
    return torch.cat([head, filler.to(device=x.device, dtype=x.dtype), rest], dim=dim)


def stack_prepared(items: Sequence[PreparedInputs], pad_id: int = 0) -> PreparedInputs:
    """One batch of the rows of ``items`` (each ``B_i >= 1`` rows), padded in the middle.

    The items must share the visual grid positions (hence the prefix before and including the
    visual slice), the separators and the template tail (the same special tokens at the same
    distances from the end); their questions may differ in length. Each row of ``n`` real
    tokens gets ``N_max - n`` padding tokens inserted right after the visual slice (after the
    last visual / separator position, before the question text): zero embeddings, ``pad_id``,
    ``attention_mask`` 0, ``mm_token_type_ids`` 0. Explicit ``position_ids`` keep every real
    token at its unpadded position (1-D: ``0 .. n-1``, or the item's own; M-RoPE: the item's
    own ``(3, n)`` positions); padded entries repeat the position before the gap (they are
    masked as keys, so their value does not matter). The visual grid is then the items' own and
    the special positions sit at the same absolute positions in every row (end-aligned), so one
    ``capture_config`` serves the batch. Already stacked items are unpadded and re-padded, so
    stacks of stacks work; padding elsewhere than after the visual slice is refused.

    Returns:
        :class:`PreparedInputs` with ``B = sum B_i`` rows in item order, ``N = N_max``;
        ``frame_ids`` is ``(T,)`` when all rows agree, else ``(B, T)``.
    """
    if not items:
        raise ValueError("nothing to stack")
    first = items[0]
    for item in items[1:]:
        _check_same_layout(first, item)
    prefix = _prefix_length(first)
    tail = _tail_offsets(first)
    tail_start = int(tail.max()) if tail.numel() else 1
    rows = [row for item in items for row in _unpadded_rows(item, prefix, tail_start)]
    n_max = max(row.input_ids.shape[0] for row in rows)
    device = first.inputs_embeds.device
    embeds, ids, masks, positions, types = [], [], [], [], []
    for row in rows:
        n = row.input_ids.shape[0]
        gap = n_max - n
        embeds.append(_pad_middle(row.embeds, prefix, row.embeds.new_zeros(gap, row.embeds.shape[-1]), 0))
        ids.append(_pad_middle(row.input_ids, prefix, torch.full((gap,), pad_id), 0))
        mask = torch.ones(n_max, dtype=torch.long, device=device)
        mask[prefix : prefix + gap] = 0
        masks.append(mask)
        pos = row.position_ids
        if pos is None:
            pos = torch.arange(n, device=device)
        positions.append(
            _pad_middle(pos, prefix, pos[..., prefix - 1 : prefix].expand(*pos.shape[:-1], gap), -1)
        )
        if row.token_types is not None:
            types.append(_pad_middle(row.token_types, prefix, torch.zeros(gap, dtype=torch.long), 0))

    model_kwargs = {k: v for k, v in first.model_kwargs.items() if k not in _PADDED_KWARGS}
    # Rows are (N,) or (3, N): stacking on the second-to-last dimension gives (B, N) or (3, B, N).
    model_kwargs["position_ids"] = torch.stack(positions, dim=-2)
    if types:
        model_kwargs["mm_token_type_ids"] = torch.stack(types)
    frame_ids = torch.stack([row.frame_ids.cpu() for row in rows])
    if bool((frame_ids == frame_ids[0]).all()):
        frame_ids = frame_ids[0].clone()
    return PreparedInputs(
        input_ids=torch.stack(ids),
        inputs_embeds=torch.stack(embeds),
        attention_mask=torch.stack(masks),
        visual_grid=first.visual_grid.clone(),
        special_positions=n_max - tail,
        special_tokens=list(first.special_tokens),
        answer_position=n_max - 1,
        frame_ids=frame_ids,
        separator_positions=first.separator_positions.clone(),
        model_kwargs=model_kwargs,
        latent_separators=first.latent_separators,
    )


def reverse_frames(prepared: PreparedInputs) -> PreparedInputs:
    """The frame-reversed input of TAS: frame ``t``'s visual embeddings at frame ``T-1-t``'s grid positions.

    Only the visual CONTENT moves: positions, ``position_ids``, text, separators and the
    template are unchanged, and ``frame_ids`` are reversed with the content (the native frame
    shown at each grid frame). Works on batches (every row is reversed). A map captured on the
    result is in reversed frame order: ``maps.flip(-3)`` on its ``(..., T, h, w)`` grid puts it
    back in the clip's order.

    Qwen2-VL / Qwen2.5-VL: a grid frame is a temporal patch of ``temporal_patch_size`` (2)
    consecutive frames that the vision tower encodes together, so the reversal moves whole
    temporal-grid blocks: the result equals preparing the clip with its frame PAIRS in reverse
    order, each pair keeping its inner order (4 frames: ``f2 f3 f0 f1``). The tokens of a pair
    played backwards (``f1 f0``) differ from those of ``f0 f1`` and would need a new vision
    pass; the reversal is of the token sequence, which is what TAS assembles over.
    """
    embeds = prepared.inputs_embeds
    grid = prepared.visual_grid.to(embeds.device)
    reversed_embeds = embeds.clone()
    reversed_embeds[:, grid.reshape(-1)] = embeds[:, grid.flip(0).reshape(-1)]
    return replace(
        prepared,
        inputs_embeds=reversed_embeds,
        frame_ids=prepared.frame_ids.flip(-1),
        model_kwargs=dict(prepared.model_kwargs),
    )
