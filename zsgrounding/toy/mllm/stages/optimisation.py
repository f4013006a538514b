"""How a stage trains: AdamW with warm-up and cosine decay, and which parameters train.

:func:`optimise` runs a stage's loss for its schedule and returns its loss curve
(:class:`StageResult`); :func:`trainable_parameters` freezes the model except what a stage trains;
:func:`cell_head` makes the auxiliary cell head where the recipe puts the cell loss.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from zsgrounding.toy.mllm.config import StageSchedule, ToyPretrainConfig
from zsgrounding.toy.mllm.stages.paths import CellHead, ToyModel

Log = Callable[[dict], None]


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


def module_parameters(modules: Sequence[nn.Module]) -> list[nn.Parameter]:
    return [p for module in modules for p in module.parameters()]


def fixed_parameters(model: ToyModel, config: ToyPretrainConfig) -> list[nn.Parameter]:
    """Parameters no stage trains: the tower's position table when it is a fixed sine-cosine one."""
    if config.vision_positions == "sincos":
        return [model.model.vision_tower.embeddings.position_embedding.weight]
    return []


def trainable_parameters(
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


__all__ = [
    "Log",
    "StageResult",
    "cell_head",
    "fixed_parameters",
    "module_parameters",
    "optimise",
    "trainable_parameters",
]
