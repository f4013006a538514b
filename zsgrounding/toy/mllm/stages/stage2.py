"""Stage 2, alignment: clip captions, first with only the projector (and the video newline)
trained, then with the language model too; held-out caption loss and token accuracy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from zsgrounding.toy.mllm.config import ToyPretrainConfig
from zsgrounding.toy.mllm.data import Sampler
from zsgrounding.toy.mllm.stages.optimisation import (
    Log,
    cell_head,
    fixed_parameters,
    module_parameters,
    optimise,
    trainable_parameters,
)
from zsgrounding.toy.mllm.stages.paths import (
    ToyModel,
    VisualSource,
    batch_logits,
    lm_loss,
    newline_parameters,
    projector_modules,
    tower_modules,
)


def draw_frame_count(rng: np.random.Generator, choices: Sequence[int]) -> int:
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
            frames = draw_frame_count(rng, config.train_frames)
            captions = sampler.caption_batch(batch, frames, config.caption_tasks, config.caption_turns)
            return lm_loss(model, captions, source, cells, config.cell_weight)

        return loss_fn

    model.train()
    first, second = config.stage2_projector, config.stage2
    projector = optimise(trainable_parameters(model, projector_parts, newline) + head, first, captions(first.batch),
                         "stage 2a projector", log, progress)  # fmt: skip
    lm = [model.model.language_model, model.lm_head]
    full = optimise(trainable_parameters(model, [*projector_parts, *lm, *vision], newline, fixed_parameters(model, config)) + head, second, captions(second.batch),
                    "stage 2b projector+LM", log, progress, None, module_parameters(vision), config.vision_lr_scale)  # fmt: skip
    model.eval()
    scores = {
        task: caption_scores(model, held_out, held_out_source, config.eval_frames, {task: 1.0})
        for task in config.caption_tasks
    }
    log({"stage": "stage 2", "held_out": scores})
    return {"projector_only": projector.summary(), "projector_and_lm": full.summary(), "held_out": scores}


__all__ = [
    "caption_scores",
    "draw_frame_count",
    "stage2_align",
]
