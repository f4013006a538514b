"""The three training stages of the toy MLLM: the LLaVA recipe in miniature.

1. Vision pretraining: the SigLIP tower against short frame descriptions with the sigmoid loss
   (learnable temperature and bias); the text encoder of this stage is discarded afterwards.
2. Alignment: captions of the clip, first with only the projector (and the video newline)
   trained, then with the language model too.
3. Instruction tuning: multi-turn yes/no conversations with a curriculum and hard negatives.

The model's own modules do every step, so what is trained is what the model runs at inference:
for ``LlavaOnevisionForConditionalGeneration`` the SigLIP tower, projector, ``apply_pooling``,
newline and Qwen2 LM; for ``Qwen2VLForConditionalGeneration`` the frame-pair tower, its patch
merger (the projector) and the LM with M-RoPE positions from the model's ``get_rope_index``.
When the tower is frozen after stage 1 its outputs are computed once (:class:`VisualSource`): per
bank frame, or per training frame pair for Qwen2-VL, which makes stages 2 and 3 cheaper.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm
from transformers import (
    LlavaOnevisionForConditionalGeneration,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2VLForConditionalGeneration,
)

from zsgrounding.mllm.qwen2_vl import patchify_video
from zsgrounding.toy.mllm.config import CurriculumPhase, StageSchedule, ToyPretrainConfig
from zsgrounding.toy.mllm.data import PAIR_GAPS, ClipBank, Question, Sampler, TextBatch, collate

Log = Callable[[dict], None]
ToyModel = LlavaOnevisionForConditionalGeneration | Qwen2VLForConditionalGeneration


# ---------------------------------------------------------------------------------------- model paths


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


# ---------------------------------------------------------------------------------------- optimisation


@dataclass
class StageResult:
    """Loss curve and timing of one optimisation run."""

    losses: list[float]
    seconds: float

    def summary(self, every: int = 10) -> dict:
        tail = self.losses[-max(1, len(self.losses) // 10) :]
        return {
            "steps": len(self.losses),
            "seconds": round(self.seconds, 1),
            "first_loss": self.losses[0] if self.losses else None,
            "final_loss": float(np.mean(tail)) if tail else None,
            "loss_curve": [
                round(float(np.mean(self.losses[i : i + every])), 4)
                for i in range(0, len(self.losses), every)
            ],
        }


def _lr_factor(schedule: StageSchedule) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < schedule.warmup:
            return (step + 1) / schedule.warmup
        progress = (step - schedule.warmup) / max(1, schedule.steps - schedule.warmup)
        cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return schedule.final_lr_ratio + (1 - schedule.final_lr_ratio) * cosine

    return factor


def optimise(
    params: Iterable[nn.Parameter],
    schedule: StageSchedule,
    loss_fn: Callable[[int], torch.Tensor],
    desc: str,
    log: Log,
    progress: bool = True,
    on_step: Callable[[int], None] | None = None,
    slow: Sequence[nn.Parameter] = (),
    slow_lr_scale: float = 1.0,
) -> StageResult:
    """AdamW with linear warm-up and cosine decay over ``schedule.steps`` calls of ``loss_fn(step)``.

    ``slow`` parameters (among ``params``) train at ``slow_lr_scale`` times the learning rate.
    """
    params = [p for p in params if p.requires_grad]
    slow_ids = {id(p) for p in slow}
    groups = [
        {"params": [p for p in params if id(p) not in slow_ids], "lr": schedule.lr},
        {"params": [p for p in params if id(p) in slow_ids], "lr": schedule.lr * slow_lr_scale},
    ]
    groups = [g for g in groups if g["params"]]
    optimiser = torch.optim.AdamW(groups, lr=schedule.lr, weight_decay=schedule.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, _lr_factor(schedule))
    losses: list[float] = []
    start = time.perf_counter()
    bar = tqdm(range(schedule.steps), desc=desc, disable=not progress)
    for step in bar:
        loss = loss_fn(step)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, schedule.grad_clip)
        optimiser.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        if step % 10 == 0 or step == schedule.steps - 1:
            recent = float(np.mean(losses[-10:]))
            bar.set_postfix(loss=f"{recent:.4f}")
            if step % 50 == 0 or step == schedule.steps - 1:
                log({"stage": desc, "step": step, "loss": round(recent, 5),
                     "lr": scheduler.get_last_lr()[0], "seconds": round(time.perf_counter() - start, 1)})  # fmt: skip
        if on_step is not None:
            on_step(step)
    return StageResult(losses, time.perf_counter() - start)


def _params(modules: Sequence[nn.Module]) -> list[nn.Parameter]:
    return [p for module in modules for p in module.parameters()]


def fixed_parameters(model: ToyModel, config: ToyPretrainConfig) -> list[nn.Parameter]:
    """Parameters no stage trains: the tower's position table when it is a fixed sine-cosine one."""
    if config.vision_positions == "sincos":
        return [model.model.vision_tower.embeddings.position_embedding.weight]
    return []


def _trainable(
    model: nn.Module,
    modules: Sequence[nn.Module],
    extra: Sequence[nn.Parameter] = (),
    fixed: Sequence[nn.Parameter] = (),
) -> list:
    """Freeze ``model`` except ``modules`` and ``extra`` (but never ``fixed``); return the trainable
    parameters."""
    model.requires_grad_(False)
    params: list[nn.Parameter] = []
    for module in modules:
        module.requires_grad_(True)
        params.extend(module.parameters())
    for param in extra:
        param.requires_grad_(True)
        params.append(param)
    fixed_ids = {id(p) for p in fixed}
    for param in fixed:
        param.requires_grad_(False)
    return [p for p in params if id(p) not in fixed_ids]


def cell_head(model: ToyModel, config: ToyPretrainConfig, stage: str) -> CellHead | None:
    """A fresh :class:`CellHead` for ``stage`` if the recipe puts the cell loss there (seeded by
    the caller's torch seed), else ``None``."""
    if config.cell_weight <= 0 or stage not in config.cell_stages:
        return None
    h, w = config.model.grid
    return CellHead(model.config.text_config.hidden_size, h * w)


# ---------------------------------------------------------------------------------------- stage 1


class TextEncoder(nn.Module):
    """Stage-1 text tower: embeddings, a small transformer, masked mean pooling, a projection.

    ``forward(ids (B, L), mask (B, L)) -> (B, E)`` unit vectors.
    """

    def __init__(self, vocab: int, hidden: int, layers: int, embed_dim: int, max_len: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.position = nn.Parameter(torch.zeros(max_len, hidden))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(
            hidden, nhead=max(1, hidden // 32), dim_feedforward=2 * hidden, dropout=0.0,
            batch_first=True, norm_first=True,
        )  # fmt: skip
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)
        self.proj = nn.Linear(hidden, embed_dim)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids) + self.position[: ids.shape[1]]
        x = self.norm(self.encoder(x, src_key_padding_mask=mask == 0))
        weights = mask.unsqueeze(-1).float()
        pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return F.normalize(self.proj(pooled), dim=-1)


class ImageHead(nn.Module):
    """Stage-1 image embedding: mean of the tower's patch outputs, normalised and projected.

    ``forward(hidden (M, P * P, Dv)) -> (M, E)`` unit vectors. Mean pooling makes every patch
    carry what it shows, which is what the projector reads later.
    """

    def __init__(self, hidden: int, embed_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.proj = nn.Linear(hidden, embed_dim)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(self.norm(hidden).mean(1)), dim=-1)


class SigmoidContrast(nn.Module):
    """SigLIP's pairwise sigmoid loss with learnable temperature and bias (init 10 and -10)."""

    def __init__(self) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.bias = nn.Parameter(torch.tensor(-10.0))

    def logits(self, images: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        return images @ texts.T * self.log_scale.exp() + self.bias

    def forward(self, images: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        """Images ``(B, E)`` match texts ``[:B]`` on the diagonal; every other pair (including the
        hard negatives ``texts[B:]``) is a negative."""
        logits = self.logits(images, texts)
        signs = -torch.ones_like(logits)
        signs[:, : images.shape[0]].fill_diagonal_(1.0)
        return -F.logsigmoid(signs * logits).sum() / images.shape[0]


def _encode_texts(
    tokenizer: PreTrainedTokenizerFast, texts: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    enc = tokenizer(list(texts), padding=True, return_tensors="pt", add_special_tokens=False)
    return enc["input_ids"], enc["attention_mask"]


def stage1_vision(
    model: ToyModel,
    tokenizer: PreTrainedTokenizerFast,
    sampler: Sampler,
    held_out: Sampler,
    config: ToyPretrainConfig,
    log: Log,
    progress: bool = True,
) -> dict:
    """Train the tower contrastively on single frames; return the summary with held-out scores."""
    sizes = config.model
    text = TextEncoder(len(tokenizer), sizes.clip_text_hidden, sizes.clip_text_layers, sizes.clip_embed_dim)
    head = ImageHead(sizes.vision_hidden, sizes.clip_embed_dim)
    contrast = SigmoidContrast()
    pairs = is_qwen(model)
    params = [
        *_trainable(model, tower_modules(model), fixed=fixed_parameters(model, config)),
        *text.parameters(),
        *head.parameters(),
        *contrast.parameters(),
    ]

    def views(
        source: Sampler, batch: int, negatives: int, zoom: float, places: float = config.stage1_places
    ) -> tuple[torch.Tensor, list[str], list[str]]:
        """Pixels of a batch of frames (or frame pairs), their descriptions and hard negatives."""
        if pairs:
            rows, texts, hard = source.pair_batch(batch, negatives, zoom)
            return to_pixels(source.pair_pixels(rows)), texts, hard
        rows, texts, hard = source.frame_batch(batch, negatives, zoom, places)
        return to_pixels(source.frame_pixels(rows)), texts, hard

    def loss_fn(step: int) -> torch.Tensor:
        pixels, texts, negatives = views(
            sampler, config.stage1.batch, config.stage1_negatives, config.stage1_zoom
        )
        images = head(tower_hidden(model, pixels))
        return contrast(images, text(*_encode_texts(tokenizer, texts + negatives)))

    model.train()
    result = optimise(params, config.stage1, loss_fn, "stage 1 vision", log, progress)
    model.eval()

    # Held-out views: does the true description beat the same one with a shape changed (and, for
    # frame pairs, with a motion swapped or changed; with places, with an object moved to a nearby
    # place), and is it the best of the batch's descriptions?
    with torch.no_grad():

        def scored(negatives: int, places: float) -> tuple[torch.Tensor, int]:
            pixels, texts, hard = views(held_out, 256, negatives, 0.0, places)
            images = head(tower_hidden(model, pixels))
            return contrast.logits(images, text(*_encode_texts(tokenizer, texts + hard))), pixels.shape[0]

        def beats(logits: torch.Tensor, n: int, round_: int) -> float:
            wrong = logits[:, n * (round_ + 1) : n * (round_ + 2)].diagonal()
            return float((logits.diagonal() > wrong).float().mean())

        logits, n = scored(2 if pairs else 1, 0.0)
        held = {"binding_accuracy": beats(logits, n, 1 if pairs else 0)}
        if pairs:
            held["motion_binding_accuracy"] = beats(logits, n, 0)
        held["retrieval_top1"] = float((logits[:, :n].argmax(1) == torch.arange(n)).float().mean())
        if config.stage1_places and not pairs:
            logits, n = scored(2, 1.0)
            held["place_binding_accuracy"] = beats(logits, n, 1)
    metrics = {**result.summary(), **{f"held_out_{k}": v for k, v in held.items()}}
    log({"stage": "stage 1 vision", "held_out": held})
    return metrics


# ---------------------------------------------------------------------------------------- stage 2


def _frames(rng: np.random.Generator, choices: Sequence[int]) -> int:
    return int(choices[int(rng.integers(len(choices)))])


@torch.no_grad()
def caption_scores(
    model: ToyModel,
    held_out: Sampler,
    source: VisualSource,
    frames: int,
    weights: dict[str, float],
    count: int = 64,
) -> dict:
    """Held-out caption loss and next-token accuracy (teacher forced)."""
    batch = held_out.caption_batch(count, frames, weights, 1)
    supervised = batch.labels != -100
    logits = batch_logits(model, batch, source, supervised)
    targets = batch.labels[supervised]
    return {
        "caption_loss": float(F.cross_entropy(logits, targets)),
        "caption_token_accuracy": float((logits.argmax(-1) == targets).float().mean()),
    }


def stage2_align(
    model: ToyModel,
    sampler: Sampler,
    held_out: Sampler,
    source: VisualSource,
    held_out_source: VisualSource,
    config: ToyPretrainConfig,
    log: Log,
    progress: bool = True,
) -> dict:
    """Captions: projector (and newline) alone, then with the language model."""
    rng = np.random.default_rng([config.seed, 2])
    vision = tower_modules(model) if "stage2" in config.train_vision else []
    projector_parts = projector_modules(model)
    newline = newline_parameters(model)
    cells = cell_head(model, config, "stage2")
    head = list(cells.parameters()) if cells is not None else []

    def captions(batch: int) -> Callable[[int], torch.Tensor]:
        def loss_fn(step: int) -> torch.Tensor:
            frames = _frames(rng, config.train_frames)
            captions = sampler.caption_batch(batch, frames, config.caption_tasks, config.caption_turns)
            return lm_loss(model, captions, source, cells, config.cell_weight)

        return loss_fn

    model.train()
    first, second = config.stage2_projector, config.stage2
    projector = optimise(_trainable(model, projector_parts, newline) + head, first, captions(first.batch),
                         "stage 2a projector", log, progress)  # fmt: skip
    lm = [model.model.language_model, model.lm_head]
    full = optimise(_trainable(model, [*projector_parts, *lm, *vision], newline, fixed_parameters(model, config)) + head, second, captions(second.batch),
                    "stage 2b projector+LM", log, progress, None, _params(vision), config.vision_lr_scale)  # fmt: skip
    model.eval()
    scores = {
        task: caption_scores(model, held_out, held_out_source, config.eval_frames, {task: 1.0})
        for task in config.caption_tasks
    }
    log({"stage": "stage 2", "held_out": scores})
    return {"projector_only": projector.summary(), "projector_and_lm": full.summary(), "held_out": scores}


# ---------------------------------------------------------------------------------------- stage 3


@torch.no_grad()
def quick_vqa(
    model: ToyModel,
    tokenizer: PreTrainedTokenizerFast,
    source: VisualSource,
    questions: Sequence[tuple[int, np.ndarray, Question]],
    num_visual: int,
    chunk: int = 32,
) -> dict:
    """Held-out yes/no accuracy through the training path (one question per conversation).

    The final, authoritative numbers come from :mod:`zsgrounding.toy.mllm.evaluate` through the
    adapter; this one is cheap enough to run during training.
    """
    yes_id, no_id = tokenizer.convert_tokens_to_ids(["yes", "no"])
    records = []
    for start in range(0, len(questions), chunk):
        part = questions[start : start + chunk]
        convs = [[(q.text, "yes")] for _, _, q in part]
        batch = collate(tokenizer, [c for c, _, _ in part], [p for _, p, _ in part], convs, num_visual)
        positions = torch.zeros_like(batch.input_ids, dtype=torch.bool)
        for row, answers in enumerate(batch.answer_positions):
            positions[row, answers[0]] = True
        logits = batch_logits(model, batch, source, positions)
        said = (logits[:, yes_id] > logits[:, no_id]).tolist()
        records.extend((q, bool(s)) for (_, _, q), s in zip(part, said, strict=True))
    return vqa_summary(records)


def vqa_groups(records: Sequence[tuple[Question, bool]]) -> dict[str, list[bool]]:
    """Right or wrong per answer, grouped as :func:`vqa_summary` reports them."""
    groups: dict[str, list[bool]] = defaultdict(list)
    for q, said in records:
        right = said == q.answer
        groups["overall"].append(right)
        groups[f"kind/{q.kind}"].append(right)
        if q.answer:
            groups["positives"].append(right)
        elif q.hard:
            groups["hard_negatives"].append(right)
        if q.kind in ("attr3", "action", "full"):
            groups["hard_kinds"].append(right)  # colour+shape+size, action and caption questions
    return groups


def vqa_summary(records: Sequence[tuple[Question, bool]]) -> dict:
    """Accuracy overall, per kind, on hard negatives, on positives, and the majority baseline."""
    answers = [q.answer for q, _ in records]
    out = {name: round(float(np.mean(v)), 4) for name, v in sorted(vqa_groups(records).items())}
    out["count"] = len(records)
    out["majority_baseline"] = round(max(np.mean(answers), 1 - np.mean(answers)), 4) if answers else None
    return out


def phase_at(curriculum: Sequence[CurriculumPhase], fraction: float) -> CurriculumPhase:
    """The curriculum phase covering ``fraction`` of stage 3."""
    return next((p for p in curriculum if fraction < p.until), curriculum[-1])


def stage3_instruct(
    model: ToyModel,
    tokenizer: PreTrainedTokenizerFast,
    sampler: Sampler,
    source: VisualSource,
    held_out_source: VisualSource,
    questions: Sequence[tuple[int, np.ndarray, Question]],
    config: ToyPretrainConfig,
    log: Log,
    progress: bool = True,
    evals: int = 4,
) -> dict:
    """Multi-turn yes/no instruction tuning with the curriculum; held-out accuracy ``evals`` times."""
    rng = np.random.default_rng([config.seed, 3])
    schedule = config.stage3
    num_visual = config.model.num_visual(config.eval_frames)
    history: list[dict] = []

    cells = cell_head(model, config, "stage3")
    head = list(cells.parameters()) if cells is not None else []

    def loss_fn(step: int) -> torch.Tensor:
        phase = phase_at(config.curriculum, step / schedule.steps)
        frames = _frames(rng, config.train_frames)
        batch = sampler.qa_batch(
            schedule.batch, frames, phase, config.turns, config.caption_fraction, config.caption_tasks
        )
        return lm_loss(model, batch, source, cells, config.cell_weight)

    def on_step(step: int) -> None:
        every = max(1, schedule.steps // max(1, evals))
        if evals and (step + 1) % every == 0 and step + 1 < schedule.steps:
            model.eval()
            scores = quick_vqa(model, tokenizer, held_out_source, questions, num_visual)
            model.train()
            history.append({"step": step + 1, **scores})
            log({"stage": "stage 3", "step": step + 1, "held_out": scores})

    vision = tower_modules(model) if "stage3" in config.train_vision else []
    parts = [*projector_modules(model), model.model.language_model, model.lm_head, *vision]
    model.train()
    result = optimise(_trainable(model, parts, newline_parameters(model), fixed_parameters(model, config)) + head, schedule, loss_fn,
                      "stage 3 instruct", log, progress, on_step, _params(vision), config.vision_lr_scale)  # fmt: skip
    model.eval()
    scores = quick_vqa(model, tokenizer, held_out_source, questions, num_visual)
    history.append({"step": schedule.steps, **scores})
    log({"stage": "stage 3", "step": schedule.steps, "held_out": scores})
    return {**result.summary(), "held_out": scores, "held_out_history": history}


__all__ = [
    "CellHead",
    "ImageHead",
    "SigmoidContrast",
    "StageResult",
    "TextEncoder",
    "ToyModel",
    "VisualSource",
    "batch_logits",
    "caption_scores",
    "cell_head",
    "fixed_parameters",
    "frame_tokens",
    "is_qwen",
    "join_frames",
    "language_logits",
    "lm_loss",
    "newline_parameters",
    "optimise",
    "phase_at",
    "projector_modules",
    "quick_vqa",
    "stage1_vision",
    "stage2_align",
    "stage3_instruct",
    "to_pixels",
    "tower_hidden",
    "tower_modules",
    "video_tokens",
    "vqa_groups",
    "vqa_summary",
]
