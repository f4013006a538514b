"""The toy model's own paths from frames to logits, as the training stages run them.

For ``LlavaOnevisionForConditionalGeneration`` the SigLIP tower, projector, ``apply_pooling``,
newline and Qwen2 LM; for ``Qwen2VLForConditionalGeneration`` the frame-pair tower, its patch
merger (the projector) and the LM with M-RoPE positions from the model's ``get_rope_index``.
:class:`VisualSource` gives tower outputs of bank frames, computed or cached once when the tower
is frozen; :func:`lm_loss` is the loss of stages 2 and 3, with the optional cell head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm
from transformers import (
    LlavaOnevisionForConditionalGeneration,
    PreTrainedModel,
    Qwen2VLForConditionalGeneration,
)

from zsgrounding.mllm.qwen_preprocess import patchify_video
from zsgrounding.toy.mllm.data import PAIR_GAPS, ClipBank, TextBatch

ToyModel = LlavaOnevisionForConditionalGeneration | Qwen2VLForConditionalGeneration


def to_pixels(frames: torch.Tensor) -> torch.Tensor:
    """``(..., S, S, 3)`` uint8 -> ``(..., 3, S, S)`` float32 with SigLIP's normalisation.

    ``(x / 255 - 0.5) / 0.5``: what the adapter's preprocessing does with the checkpoint's
    ``preprocessor_config.json``.
    """
    return frames.movedim(-1, -3).float() / 127.5 - 1.0


def is_qwen(model: PreTrainedModel) -> bool:
    """Whether the toy model is the Qwen2-VL family (frame-pair tower, M-RoPE)."""
    return isinstance(model, Qwen2VLForConditionalGeneration)


def tower_modules(model: ToyModel) -> list[nn.Module]:
    """The vision tower without its projector."""
    if is_qwen(model):
        return [model.model.visual.patch_embed, model.model.visual.blocks]
    return [model.model.vision_tower]


def projector_modules(model: ToyModel) -> list[nn.Module]:
    """What maps tower outputs to the LM: LLaVA-OneVision's projector, Qwen2-VL's patch merger."""
    if is_qwen(model):
        return [model.model.visual.merger]
    return [model.model.multi_modal_projector]


def newline_parameters(model: ToyModel) -> list[nn.Parameter]:
    """LLaVA-OneVision's video newline (Qwen2-VL has none)."""
    return [] if is_qwen(model) else [model.model.image_newline]


def tower_hidden(model: ToyModel, pixels: torch.Tensor) -> torch.Tensor:
    """The tower's selected layer, per tower input.

    LLaVA-OneVision: ``(M, 3, S, S)`` frames -> ``(M, P * P, Dv)``. Qwen2-VL: ``(M, 2, 3, H, W)``
    frame pairs -> ``(M, N, Dv)``, ``N = (H / p) * (W / p)`` patches in the merger's block order
    (each pair attends only to itself, as the frame groups of one video do).
    """
    if is_qwen(model):
        visual = model.model.visual
        rows, grid = patchify_video(
            pixels.flatten(0, 1), visual.config.patch_size, 2, visual.config.spatial_merge_size
        )
        out = visual(rows, grid_thw=torch.tensor([grid], dtype=torch.long)).last_hidden_state
        return out.reshape(pixels.shape[0], -1, out.shape[-1])
    out = model.model.vision_tower(pixels, output_hidden_states=True)
    return out.hidden_states[model.config.vision_feature_layer]


def frame_tokens(model: ToyModel, hidden: torch.Tensor) -> torch.Tensor:
    """The LM's tokens of each tower input, in grid order: ``(M, n, D)``.

    LLaVA-OneVision, from frames ``(M, P * P, Dv)``: projector and 2x bilinear pooling, ``n = h * w``
    row by row. Qwen2-VL, from frame pairs ``(M, N, Dv)``: the patch merger, ``n = N / 4``.
    """
    if is_qwen(model):
        merged = model.model.visual.merger(hidden.flatten(0, 1))
        return merged.reshape(hidden.shape[0], -1, merged.shape[-1])
    return model.model.apply_pooling(model.model.multi_modal_projector(hidden))


def join_frames(model: ToyModel, per_frame: torch.Tensor, batch: int) -> torch.Tensor:
    """:func:`frame_tokens` ``(B * F, n, D)`` of ``batch`` clips as the LM reads them: frames
    concatenated, plus LLaVA-OneVision's one newline after the video."""
    features = per_frame.reshape(batch, -1, per_frame.shape[-1])
    if is_qwen(model):
        return features
    newline = model.model.image_newline[None, None, :].expand(batch, 1, -1)
    return torch.cat([features, newline.to(features.dtype)], dim=1)


def video_tokens(model: ToyModel, hidden: torch.Tensor, batch: int, frames: int) -> torch.Tensor:
    """The video features the LM reads, from tower outputs of ``batch`` clips of ``frames`` frames.

    LLaVA-OneVision, from ``(B * F, P * P, Dv)``: projector, 2x bilinear pooling, frames
    concatenated, one newline after the video (``LlavaOnevisionModel.get_video_features`` after the
    tower): ``(B, F * h * w + 1, D)``. Qwen2-VL, from ``(B * F / 2, N, Dv)``: the patch merger,
    pairs concatenated: ``(B, F / 2 * N / 4, D)``.
    """
    return join_frames(model, frame_tokens(model, hidden), batch)


class VisualSource:
    """Tower outputs of bank frames: read from a cache (frozen tower) or computed (trained tower).

    Attributes:
        cache: ``None`` to run the tower, else float16 ``(N, K, P * P, Dv)`` per bank frame
            (LLaVA-OneVision) or ``(N, U, N_p, Dv)`` per frame pair ``(a, a + g)``, ``g`` in
            :data:`~zsgrounding.toy.mllm.data.PAIR_GAPS` (Qwen2-VL; :meth:`pair_unit` orders them).
    """

    def __init__(self, model: ToyModel, bank: ClipBank, cache: torch.Tensor | None):
        self.model = model
        self.bank = bank
        self.cache = cache

    @property
    def pairs(self) -> bool:
        return is_qwen(self.model)

    def pair_unit(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """Cache rows of frame pairs ``(first, second)``: gap 1 pairs first, then gap 2, ..."""
        bank_frames = self.bank.frames.shape[1]
        offsets = {g: sum(bank_frames - h for h in PAIR_GAPS if h < g) for g in PAIR_GAPS}
        gap = second - first
        unit = torch.full_like(first, -1)
        for g, offset in offsets.items():
            unit = torch.where(gap == g, offset + first, unit)
        return unit

    def grid_thw(self, batch: int, frames: int) -> torch.Tensor:
        """``(B, 3)`` Qwen2-VL ``video_grid_thw`` of clips of ``frames`` frames: pairs and patches."""
        patch = self.model.config.vision_config.patch_size
        height, width = self.bank.frames.shape[2:4]
        return torch.tensor([[frames // 2, height // patch, width // patch]] * batch, dtype=torch.long)

    @classmethod
    @torch.no_grad()
    def cached(cls, model: ToyModel, bank: ClipBank, chunk: int = 256, progress: bool = True) -> VisualSource:
        """Run the (frozen) tower once over every bank frame (or training frame pair)."""
        source = cls(model, bank, None)
        if source.pairs:
            k = bank.frames.shape[1]
            firsts = torch.cat([torch.arange(k - g) for g in PAIR_GAPS])
            seconds = torch.cat([torch.arange(g, k) for g in PAIR_GAPS])
            units = torch.stack([firsts, seconds], dim=1)  # (U, 2), in pair_unit's order
            per_clip = units.shape[0]
            parts = []
            step = max(1, chunk // per_clip)
            for start in tqdm(range(0, len(bank), step), desc="tower cache", disable=not progress):
                clips = torch.arange(start, min(start + step, len(bank)))
                frames = bank.frames[clips[:, None, None], units[None]]  # (C, U, 2, H, W, 3)
                hidden = tower_hidden(model, to_pixels(frames.flatten(0, 1)))
                parts.append(hidden.half().reshape(len(clips), per_clip, *hidden.shape[1:]))
            source.cache = torch.cat(parts)
            return source
        frames = bank.frames.reshape(-1, *bank.frames.shape[2:])
        parts = []
        for start in tqdm(range(0, frames.shape[0], chunk), desc="tower cache", disable=not progress):
            parts.append(tower_hidden(model, to_pixels(frames[start : start + chunk])).half())
        source.cache = torch.cat(parts).reshape(*bank.frames.shape[:2], *parts[0].shape[1:])
        return source

    def hidden(self, clips: torch.Tensor, picks: torch.Tensor) -> torch.Tensor:
        """Tower outputs for bank frames ``picks (B, F)`` of ``clips (B,)``: ``(B * F, P * P, Dv)``,
        or ``(B * F / 2, N_p, Dv)`` for consecutive pairs of picks (Qwen2-VL)."""
        if self.pairs:
            first, second = picks[:, 0::2], picks[:, 1::2]
            unit = self.pair_unit(first, second)
            if self.cache is not None and bool((unit >= 0).all()):
                return self.cache[clips[:, None], unit].flatten(0, 1).float()
            frames = self.bank.frames[clips[:, None], picks]  # (B, F, H, W, 3)
            pairs = frames.reshape(-1, 2, *frames.shape[2:])
            return tower_hidden(self.model, to_pixels(pairs))
        if self.cache is not None:
            return self.cache[clips[:, None], picks].flatten(0, 1).float()
        frames = self.bank.frames[clips[:, None], picks].flatten(0, 1)
        return tower_hidden(self.model, to_pixels(frames))


def language_logits(
    model: ToyModel,
    batch: TextBatch,
    visual: torch.Tensor,
    positions: torch.Tensor,
    grid_thw: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logits ``(M, vocab)`` at the boolean ``positions (B, N)`` of the batch, video features in place.

    Qwen2-VL needs ``grid_thw (B, 3)`` (:meth:`VisualSource.grid_thw`) for its M-RoPE positions.
    """
    video_id = int(model.config.video_token_id)
    embeds = model.get_input_embeddings()(batch.input_ids)
    slots = (batch.input_ids == video_id).unsqueeze(-1)
    embeds = embeds.masked_scatter(slots, visual.to(embeds.dtype))
    extra = {}
    if is_qwen(model):
        if grid_thw is None:
            raise ValueError("Qwen2-VL's positions need the video grid (grid_thw)")
        types = (batch.input_ids == video_id).long() * 2  # the processors' video modality type
        extra["position_ids"], _ = model.model.get_rope_index(
            batch.input_ids, mm_token_type_ids=types, video_grid_thw=grid_thw,
            attention_mask=batch.attention_mask,
        )  # fmt: skip
    hidden = model.model.language_model(
        inputs_embeds=embeds, attention_mask=batch.attention_mask, use_cache=False, **extra
    ).last_hidden_state
    return model.lm_head(hidden[positions])


def _logits_and_frame_tokens(
    model: ToyModel, batch: TextBatch, source: VisualSource, positions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    count, frames = batch.picks.shape
    per_frame = frame_tokens(model, source.hidden(batch.clips, batch.picks))
    grid = source.grid_thw(count, frames) if source.pairs else None
    return language_logits(model, batch, join_frames(model, per_frame, count), positions, grid), per_frame


def batch_logits(
    model: ToyModel, batch: TextBatch, source: VisualSource, positions: torch.Tensor
) -> torch.Tensor:
    """Logits at ``positions`` of a batch whose video features come from ``source``."""
    return _logits_and_frame_tokens(model, batch, source, positions)[0]


class CellHead(nn.Module):
    """Auxiliary training head: which cell of its frame's token grid each video token comes from.

    ``forward(tokens (M, n, D)) -> (M, n, n)`` logits over the ``n`` cells. Only the training
    stages use it (it is not part of the saved model): its loss makes each token carry its own
    place in what it says, which the 1-D positions of the LM otherwise give only as an index.
    """

    def __init__(self, hidden: int, cells: int) -> None:
        super().__init__()
        self.cells = cells
        self.norm = nn.LayerNorm(hidden)
        self.proj = nn.Linear(hidden, cells)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(tokens))

    def loss(self, tokens: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the cells of ``tokens (M, n, D)``, ``n`` the head's cell count."""
        if tokens.shape[1] != self.cells:
            raise ValueError(
                f"the cell head has {self.cells} cells, the frames have {tokens.shape[1]} tokens"
            )
        target = torch.arange(self.cells, device=tokens.device).expand(tokens.shape[0], -1)
        return F.cross_entropy(self(tokens).flatten(0, 1), target.flatten())


def lm_loss(
    model: ToyModel,
    batch: TextBatch,
    source: VisualSource,
    cells: CellHead | None = None,
    cell_weight: float = 0.0,
) -> torch.Tensor:
    """Cross-entropy of the answer tokens of a batch, plus ``cell_weight`` times the cell head's
    loss on its video tokens when a head is given."""
    supervised = batch.labels != -100
    logits, per_frame = _logits_and_frame_tokens(model, batch, source, supervised)
    loss = F.cross_entropy(logits, batch.labels[supervised])
    if cells is not None and cell_weight > 0:
        loss = loss + cell_weight * cells.loss(per_frame)
    return loss


__all__ = [
    "CellHead",
    "ToyModel",
    "VisualSource",
    "batch_logits",
    "frame_tokens",
    "is_qwen",
    "join_frames",
    "language_logits",
    "lm_loss",
    "newline_parameters",
    "projector_modules",
    "to_pixels",
    "tower_hidden",
    "tower_modules",
    "video_tokens",
]
