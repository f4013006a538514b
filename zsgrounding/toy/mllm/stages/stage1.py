"""Stage 1, vision pretraining: the tower against short frame descriptions with SigLIP's loss.

A stage-only text encoder and image head (discarded afterwards) and the sigmoid loss with
learnable temperature and bias; hard negatives change one attribute of one object (or, for a
tower over frame pairs, swap a motion). Held-out: binding and retrieval accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedTokenizerFast

from zsgrounding.toy.mllm.config import ToyPretrainConfig
from zsgrounding.toy.mllm.data import Sampler
from zsgrounding.toy.mllm.stages.optimisation import (
    Log,
    fixed_parameters,
    optimise,
    trainable_parameters,
)
from zsgrounding.toy.mllm.stages.paths import ToyModel, is_qwen, to_pixels, tower_hidden, tower_modules


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
        *trainable_parameters(model, tower_modules(model), fixed=fixed_parameters(model, config)),
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


__all__ = [
    "ImageHead",
    "SigmoidContrast",
    "TextEncoder",
    "stage1_vision",
]
