"""What one run is built from: the accelerator, the model and its trained parts, the optimizer
with its parameter groups, the learning-rate schedule and the data (sources, batches, loader).

Every builder reads a :class:`~spacevllm.train.config.TrainConfig`; none touches the disk but to
read the base model and the records.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader

from spacevllm.config import CONFIG_NAME, SpaceVLLMConfig
from spacevllm.data import read_records
from spacevllm.mix import MixedDataset
from spacevllm.model import SpaceVLLM
from spacevllm.train.config import STRUCTURAL_KEYS, LoraSettings, TrainConfig, TrainConfigError

# ------------------------------------------------------------------------------------- accelerator


def build_accelerator(config: TrainConfig) -> Any:
    """Accelerate's ``Accelerator`` for this process: mixed precision, CPU or GPU, DDP's flags."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    mixed = config.mixed_precision
    if mixed == "auto":
        gpu_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported() and not config.cpu
        mixed = "bf16" if gpu_bf16 else "no"
    # Accelerate only treats a CPU-only torchrun as distributed when told to use the CPU.
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    cpu = config.cpu or (distributed and not torch.cuda.is_available())
    ddp = DistributedDataParallelKwargs(find_unused_parameters=config.find_unused_parameters)
    return Accelerator(mixed_precision=mixed, cpu=cpu, kwargs_handlers=[ddp])


# ------------------------------------------------------------------------------------- model


def _weight_dtype(name: str) -> torch.dtype | str:
    """``config.dtype`` as ``from_pretrained`` takes it."""
    return "auto" if name == "auto" else getattr(torch, name)


def build_model(config: TrainConfig) -> SpaceVLLM:
    """A fresh SpaceVLLM on the base (decoder drawn from torch's generator: seed first), or
    the SpaceVLLM checkpoint ``base_model`` with its non-structural settings overridden."""
    overrides = config.model_overrides()
    dtype = _weight_dtype(config.dtype)
    base = Path(config.base_model)
    if (base / CONFIG_NAME).is_file():
        model = SpaceVLLM.from_pretrained(base, dtype=dtype)
        current = model.config.to_dict()
        changed = sorted(k for k in STRUCTURAL_KEYS if k in overrides and overrides[k] != current[k])
        if changed:
            raise TrainConfigError(
                f"{base} is a SpaceVLLM checkpoint: its {changed} cannot change when continuing it"
            )
        model.config = dataclasses.replace(model.config, **overrides)
        return model
    try:
        spacevllm_config = SpaceVLLMConfig(**overrides)
    except ValueError as err:
        raise TrainConfigError(f"model: {err}") from None
    return SpaceVLLM.from_base(config.base_model, spacevllm_config, dtype=dtype)


def lora_layer_type() -> type:
    """peft's LoRA layer class (imported here: peft is only needed once a run starts)."""
    from peft.tuners.lora import LoraLayer

    return LoraLayer


def add_lora(model: SpaceVLLM, settings: LoraSettings) -> nn.Module:
    """Inject LoRA adapters into the language model (in place); return the language model."""
    from peft import LoraConfig, inject_adapter_in_model

    language_model = model.base.model.language_model
    lora_config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        bias="none",
    )
    return inject_adapter_in_model(lora_config, language_model)


@dataclass
class TrainedParts:
    """Which parameters train, and the query-token rows that need special handling.

    Attributes:
        decoder: the decoder's parameters (the new-parts learning rate).
        embedding: the input embedding table (trained wholly, or only its query rows).
        rows_only: only the added rows of ``embedding`` (and ``output``) may change (LoRA mode).
        query_rows: ids of the added rows: the query tokens and any added answer tokens.
        counts: trained parameter counts by part.
        output: the LM head's table when it is not ``embedding`` (untied): an added answer
            token's output row must train too, or its logit stays tied to the other added
            tokens' and the answer can never be spelled; ``None`` when tied.
    """

    decoder: list[nn.Parameter]
    embedding: nn.Parameter
    rows_only: bool
    query_rows: list[int]
    counts: dict[str, int]
    output: nn.Parameter | None = None

    @property
    def row_tables(self) -> list[nn.Parameter]:
        """The tables whose added rows get the new-parts learning rate."""
        return [self.embedding] if self.output is None else [self.embedding, self.output]


def select_trainable(model: SpaceVLLM, config: TrainConfig) -> TrainedParts:
    """Set ``requires_grad`` for the run's mode (adding LoRA adapters when asked)."""
    base = model.base
    model.requires_grad_(False)
    lora = config.lora is not None
    if lora:
        add_lora(model, config.lora)  # type: ignore[arg-type]
        for name, param in base.model.language_model.named_parameters():
            param.requires_grad_("lora_" in name)
    else:
        base.model.language_model.requires_grad_(True)
        base.lm_head.requires_grad_(True)
    freeze_tower = config.freeze_vision_tower
    freeze_tower = model.config.freeze_vision_tower if freeze_tower is None else freeze_tower
    base.model.vision_tower.requires_grad_(not freeze_tower)
    train_projector = (not lora) if config.train_projector is None else config.train_projector
    base.model.multi_modal_projector.requires_grad_(train_projector)
    if getattr(base.model, "image_newline", None) is not None:
        base.model.image_newline.requires_grad_(train_projector)
    model.decoder.requires_grad_(True)
    embedding = base.get_input_embeddings().weight
    embedding.requires_grad_(True)
    head = base.get_output_embeddings()
    output = head.weight if head is not None and head.weight is not embedding else None
    rows = sorted(set(model.adapter.query_tokens.new_rows))
    if lora:
        # Only the added rows may change: the rest of each table gets a zero gradient, and with
        # no weight decay AdamW leaves a parameter with zero gradients exactly where it is.
        for table in (embedding, output):
            if table is None:
                continue
            table.requires_grad_(True)
            keep = torch.zeros(table.shape[0], 1, dtype=table.dtype, device=table.device)
            keep[rows] = 1
            table.register_hook(lambda grad, keep=keep: grad * keep.to(grad.dtype))
    counts = _trainable_counts(model, embedding, rows, lora, output)
    return TrainedParts(list(model.decoder.parameters()), embedding, lora, rows, counts, output)


def _trainable_counts(
    model: SpaceVLLM, embedding: nn.Parameter, rows: list[int], lora: bool, output: nn.Parameter | None
) -> dict[str, int]:
    """Trained parameter counts by part; the embedding table counts as its query rows with LoRA."""
    base = model.base
    counts: dict[str, int] = {}
    named = {
        "vision_tower": base.model.vision_tower,
        "projector": base.model.multi_modal_projector,
        "language_model": base.model.language_model,
        "lm_head": base.lm_head,
        "decoder": model.decoder,
    }
    seen: set[int] = {id(embedding)} | ({id(output)} if lora and output is not None else set())
    for part, module in named.items():
        for name, param in module.named_parameters():
            if id(param) in seen or not param.requires_grad:
                continue
            seen.add(id(param))
            key = "lora" if "lora_" in name else part
            counts[key] = counts.get(key, 0) + param.numel()
    newline = getattr(base.model, "image_newline", None)
    if newline is not None and newline.requires_grad:
        counts["projector"] = counts.get("projector", 0) + newline.numel()
    if lora:
        tables = 1 if output is None else 2
        counts["query_token_rows"] = tables * len(rows) * embedding.shape[1]
    else:
        counts["embeddings"] = embedding.numel()
    counts["total"] = sum(counts.values())
    return counts


def enable_checkpointing(base: nn.Module) -> None:
    """Activation checkpointing of the language model (non-reentrant: works with DDP and frozen inputs)."""
    kwargs = {"use_reentrant": False}
    if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5 renamed it
        base.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


# ------------------------------------------------------------------------------------- optimizer


def make_optimizer(model: SpaceVLLM, parts: TrainedParts, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with four groups: (base | new parts) x (decayed matrices | the rest)."""
    new_ids = {id(p) for p in parts.decoder}
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for param in model.parameters():
        if not param.requires_grad:
            continue
        masked = param is parts.embedding or (parts.rows_only and param is parts.output)
        decay = param.ndim >= 2 and not masked  # decay would move the rows a mask holds still
        groups.setdefault((id(param) in new_ids, decay), []).append(param)
    param_groups = [
        {
            "params": params,
            "lr": config.new_lr if is_new else config.lr,
            "weight_decay": config.weight_decay if decay else 0.0,
            "name": f"{'new' if is_new else 'base'}{'' if decay else '_no_decay'}",
        }
        for (is_new, decay), params in sorted(groups.items())
    ]
    return torch.optim.AdamW(param_groups, lr=config.lr, betas=config.adam_betas, eps=config.adam_eps)


class QueryRowLR:
    """Give the added rows (queries, answer tokens) of the base-lr tables the new-parts learning rate.

    An AdamW update is proportional to the learning rate, so scaling the rows' change by
    ``new_lr / lr`` right after the step is exactly a step with ``new_lr`` on them.
    """

    def __init__(
        self, tables: nn.Parameter | list[nn.Parameter] | None, rows: list[int], ratio: float
    ) -> None:
        self.tables = [tables] if isinstance(tables, nn.Parameter) else list(tables or [])
        self.ratio = ratio
        active = bool(self.tables) and ratio != 1.0 and bool(rows)
        self.rows = torch.as_tensor(rows, device=self.tables[0].device) if active else None
        self._before: list[torch.Tensor] | None = None

    def before_step(self) -> None:
        if self.rows is not None:
            self._before = [t.detach()[self.rows].clone() for t in self.tables]

    @torch.no_grad()
    def after_step(self) -> None:
        if self.rows is None or self._before is None:
            return
        for table, before in zip(self.tables, self._before, strict=True):
            data = table.data
            data[self.rows] = before + (data[self.rows] - before) * self.ratio
        self._before = None


# ------------------------------------------------------------------------------------- schedule


@dataclass
class WarmupCosine:
    """LR multiplier of step ``s`` (0-based): ``(s + 1) / w`` during the ``w`` warm-up steps,
    then a cosine from 1 down to 0 at step ``total`` (the last step still has a positive lr)."""

    total: int
    warmup: int

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        span = max(self.total - self.warmup, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(step - self.warmup, span) / span))


def warmup_steps(total: int, ratio: float) -> int:
    """Warm-up steps of a run of ``total`` optimizer steps: ``ratio`` of them, rounded."""
    return round(total * ratio)


def make_scheduler(optimizer: torch.optim.Optimizer, total: int, config: TrainConfig) -> LambdaLR:
    """Linear warm-up over ``warmup_ratio`` of the ``total`` steps, then a cosine decay to 0."""
    return LambdaLR(optimizer, WarmupCosine(total, warmup_steps(total, config.warmup_ratio)))


# ------------------------------------------------------------------------------------- data


def load_sources(config: TrainConfig) -> MixedDataset:
    """The configured sources as one :class:`MixedDataset` seeded by ``config.seed``."""
    sources = {s.key: read_records(s.path) for s in config.data}
    ratios = {s.key: s.ratio for s in config.data}
    try:
        return MixedDataset(sources, ratios, seed=config.seed, length=config.epoch_length)
    except ValueError as err:
        raise TrainConfigError(f"data: {err}") from None


def rank_batches(
    slots: int, batch_size: int, world: int, rank: int, accum: int, start: int = 0
) -> list[list[int]]:
    """This process's micro-batches of one epoch (slot indices), from global micro-batch ``start``.

    See the :mod:`spacevllm.train` docstring: micro-batch ``m`` of process ``r`` is slots
    ``m * B * W + r * B + [0, B)``; only whole optimizer steps of ``accum`` micro-batches are used.
    """
    per_micro = batch_size * world
    usable = (slots // per_micro) // accum * accum
    return [
        list(range(m * per_micro + rank * batch_size, m * per_micro + (rank + 1) * batch_size))
        for m in range(start, usable)
    ]


def make_loader(
    dataset: MixedDataset, batches: list[list[int]], collate: Any, config: TrainConfig
) -> DataLoader:
    """A loader of the given micro-batches (slot indices) of ``dataset``, in that order."""
    return DataLoader(
        dataset,
        batch_sampler=batches,
        collate_fn=collate,
        num_workers=config.num_workers,
        # Its own generator: creating an iterator must not draw from the global RNG (dropout).
        generator=torch.Generator().manual_seed(config.seed),
    )


def epoch_batches(
    dataset: MixedDataset,
    collate: Any,
    config: TrainConfig,
    accelerator: Any,
    micro: int,
    micro_per_epoch: int,
) -> Generator[tuple[int, Any], None, None]:
    """``(epoch, batch)`` from global micro-batch ``micro`` on, epoch after epoch."""
    while True:
        epoch, offset = divmod(micro, micro_per_epoch)
        dataset.set_epoch(epoch)
        batches = rank_batches(
            len(dataset),
            config.batch_size,
            accelerator.num_processes,
            accelerator.process_index,
            config.grad_accum,
            offset,
        )
        for batch in make_loader(dataset, batches, collate, config):
            yield epoch, batch
        micro = (epoch + 1) * micro_per_epoch
