"""Fine-tuning SpaceVLLM with Accelerate: one script per process, alone, DDP or FSDP.

Launch as one process (``stvg train --config run.yaml``) or several (``accelerate launch
--num_processes 8 ...`` / ``torchrun --nproc_per_node 8 ...``); every process runs
:func:`train` with the same :class:`TrainConfig`. A config file::

    base_model: checkpoints/LLaVA-Video-7B-Qwen2-hf   # or a SpaceVLLM checkpoint to continue
    output_dir: runs/spacevllm
    data:                                           # JSONL records (spacevllm.data), mixed by ratio
      - {path: data/hcstvg_v2.jsonl, ratio: 1.0}
      - {path: data/charades_sta.jsonl, ratio: 0.5, name: vtg}
    model: {l1_weight: 5.0, giou_weight: 2.0}       # SpaceVLLMConfig overrides
    num_frames: 64
    lr: 1.0e-5
    batch_size: 1                                   # per process
    grad_accum: 8
    epochs: 1
    lora: {r: 64, alpha: 128}                       # omit for full fine-tuning
    save_every: 500

What is trained: full fine-tuning trains the language model (embeddings and LM head included),
the projector and the space decoder; with ``lora`` the language model gets LoRA adapters
(peft) and only they, the query-token rows of the embedding table and the decoder are trained.
The vision tower is frozen unless asked otherwise.

Data order: each epoch is :class:`spacevllm.data.MixedDataset`'s order for ``(seed, epoch)``.
Global micro-batch ``m`` of an epoch holds its slots ``[m * B * W, (m + 1) * B * W)`` for ``B``
records per process and ``W`` processes; process ``r`` takes the ``r``-th block of ``B``. An
epoch uses whole optimizer steps (``grad_accum`` micro-batches each); the slots left over are not
used that epoch. So the records of an optimizer step depend only on the seed, the epoch and
``B * W * grad_accum``: one process with ``grad_accum = W`` sees what ``W`` processes see.

Files in ``output_dir``::

    train_config.yaml                the resolved config
    train_log.jsonl                  one line per logged step: step, epoch, loss parts, lr, lr_new,
                                     grad_norm, step_seconds, seconds (since the run began)
    tensorboard/                     the same scalars (SummaryWriter)
    checkpoints/step_00000100/       model/ (a SpaceVLLM checkpoint, LoRA merged), state/
                                     (Accelerate: exact weights, optimizer, scheduler, RNG of
                                     every process), trainer_state.json (step, data position)
    final/                           the trained model (SpaceVLLM.from_pretrained) + recipe.json

A checkpoint is written to a hidden temporary folder and renamed when complete, so a folder named
``step_*`` is always whole. Resume (``resume: true``, the default) restores the latest one and
continues at its step with the same data order, weights, optimizer moments and random state: the
next loss equals the loss an uninterrupted run has at that step.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import shlex
import shutil
import sys
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from safetensors.torch import save_file
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader
from tqdm import tqdm

from spacevllm.config import CONFIG_NAME, SpaceVLLMConfig
from spacevllm.data import MixedDataset, read_records
from spacevllm.model import DECODER_FILE, SpaceVLLM
from zsgrounding.errors import STVGError

MixedPrecision = Literal["auto", "no", "bf16", "fp16"]
WeightDtype = Literal["float32", "bfloat16", "float16", "auto"]

CHECKPOINTS = "checkpoints"
FINAL = "final"
LOG_FILE = "train_log.jsonl"
TRAINER_STATE = "trainer_state.json"
RECIPE = "recipe.json"
LOSS_KEYS = ("loss", "lm_loss", "l1_loss", "giou_loss")

# SpaceVLLMConfig fields that shape the vocabulary, the prompt layout or the decoder's weights:
# a checkpoint being continued keeps them.
STRUCTURAL_KEYS = (
    "num_frames",
    "query_tokens",
    "query_token_template",
    "shared_query_token",
    "image_query_token",
    "interleave",
    "head_layers",
    "head_hidden",
)


class TrainConfigError(STVGError, ValueError):
    """A training config that cannot run (unknown key, bad value, data that does not fit)."""


# ------------------------------------------------------------------------------------- config


@dataclass
class DataSource:
    """One JSONL file of records (:func:`spacevllm.data.read_records`) and its share.

    Attributes:
        path: the JSONL file.
        ratio: its weight in each epoch's mix (:class:`spacevllm.data.MixedDataset`).
        name: the source's name in the mix and the logs; default the file's stem.
    """

    path: str
    ratio: float = 1.0
    name: str | None = None

    @property
    def key(self) -> str:
        return self.name or Path(self.path).stem


@dataclass
class LoraSettings:
    """LoRA adapters on the language model's linear layers (peft ``LoraConfig``).

    Attributes:
        r: rank.
        alpha: scaling numerator (the update is ``alpha / r * B @ A``).
        dropout: dropout on the adapter's input.
        target_modules: names of the language model's linear layers that get adapters (the
            vision tower is never touched: adapters are injected into the language model only).
    """

    r: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


@dataclass
class TrainConfig:
    """Everything one fine-tuning run needs; :meth:`from_yaml` reads it from a file.

    Attributes:
        base_model: a base LLaVA-OneVision checkpoint (folder or hub id), or a SpaceVLLM
            checkpoint (a folder with ``spacevllm_config.json``) to continue training.
        output_dir: where logs, checkpoints and the final model go.
        data: the record sources (a YAML entry may also be a bare path: ratio 1).
        model: :class:`SpaceVLLMConfig` overrides. Continuing a SpaceVLLM checkpoint, the
            fields of :data:`STRUCTURAL_KEYS` must keep the checkpoint's values.
        num_frames: frames sampled per training video (= per-frame query tokens of a new
            model); ``None``: the model config's.
        epoch_length: slots per epoch of the mix; ``None``: every record of the sources with a
            positive ratio.
        lr: peak AdamW learning rate of the base model's trained parameters.
        new_parts_lr: peak learning rate of what SpaceVLLM adds (decoder, query-token rows of
            the embedding table); ``None``: ``lr``.
        weight_decay: AdamW decoupled weight decay of matrices (never of biases, norms or the
            embedding table).
        adam_betas, adam_eps: AdamW's.
        warmup_ratio: share of the optimizer steps with a linear warm-up; a cosine decay to 0
            follows.
        max_grad_norm: clip the global gradient norm to this; ``None``: no clipping.
        batch_size: records per process per micro-batch.
        grad_accum: micro-batches per optimizer step.
        max_steps: optimizer steps of the run; ``None``: ``epochs`` full epochs.
        epochs: epochs when ``max_steps`` is ``None``.
        mixed_precision: ``auto``: bf16 on a GPU that supports it, else fp32; or
            ``no`` / ``bf16`` / ``fp16`` (Accelerate's autocast).
        dtype: dtype the weights are loaded in (and the optimizer updates): ``float32`` keeps
            fp32 master weights; ``auto`` uses the checkpoint's.
        gradient_checkpointing: recompute the language model's activations in the backward.
        lora: LoRA settings, or ``None`` for full fine-tuning (YAML: ``lora: true`` = defaults).
        freeze_vision_tower: ``None``: the model config's ``freeze_vision_tower`` hint.
        train_projector: train the multimodal projector; ``None``: yes for full fine-tuning,
            no with LoRA.
        seed: seeds the decoder's initialisation, LoRA's, dropout and the data order.
        log_every: optimizer steps between log lines (the last step is always logged).
        save_every: optimizer steps between checkpoints; ``None``: only the final model.
        keep_checkpoints: newest checkpoints kept; ``None``: all.
        resume: ``True``: continue from the newest checkpoint in ``output_dir`` if any;
            ``False``: start afresh (an ``output_dir`` with checkpoints is then an error); a
            path: continue from that checkpoint.
        num_workers: DataLoader worker processes (video decoding).
        find_unused_parameters: DDP's flag, for setups where some trained parameter gets no
            gradient (e.g. a trained vision tower whose last layer the projector does not read).
        cpu: train on the CPU even when a GPU is there.
    """

    base_model: str
    output_dir: str
    data: list[DataSource]
    model: dict[str, Any] = field(default_factory=dict)
    num_frames: int | None = None
    epoch_length: int | None = None
    lr: float = 1e-5
    new_parts_lr: float | None = None
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    warmup_ratio: float = 0.03
    max_grad_norm: float | None = 1.0
    batch_size: int = 1
    grad_accum: int = 1
    max_steps: int | None = None
    epochs: int = 1
    mixed_precision: MixedPrecision = "auto"
    dtype: WeightDtype = "float32"
    gradient_checkpointing: bool = False
    lora: LoraSettings | None = None
    freeze_vision_tower: bool | None = None
    train_projector: bool | None = None
    seed: int = 0
    log_every: int = 1
    save_every: int | None = None
    keep_checkpoints: int | None = 2
    resume: bool | str = True
    num_workers: int = 0
    find_unused_parameters: bool = False
    cpu: bool = False

    def __post_init__(self) -> None:
        entries = [self.data] if isinstance(self.data, str | os.PathLike | Mapping) else self.data
        self.data = [_source(entry) for entry in entries]
        self.adam_betas = tuple(float(b) for b in self.adam_betas)  # type: ignore[assignment]
        if isinstance(self.lora, Mapping):
            self.lora = _build(LoraSettings, dict(self.lora), "lora")
        problems = []
        if not self.base_model:
            problems.append("base_model is empty")
        if not self.output_dir:
            problems.append("output_dir is empty")
        if not self.data:
            problems.append("data names no source")
        names = [s.key for s in self.data]
        if len(set(names)) != len(names):
            problems.append(f"data source names must be distinct, got {names} (set name: for each)")
        if self.lr <= 0 or (self.new_parts_lr is not None and self.new_parts_lr <= 0):
            problems.append("lr and new_parts_lr must be positive")
        if self.weight_decay < 0 or not 0 <= self.warmup_ratio < 1:
            problems.append("need weight_decay >= 0 and 0 <= warmup_ratio < 1")
        positive = {"batch_size": self.batch_size, "grad_accum": self.grad_accum, "epochs": self.epochs}
        positive |= {"log_every": self.log_every}
        optional = {"max_steps": self.max_steps, "save_every": self.save_every}
        optional |= {"keep_checkpoints": self.keep_checkpoints, "num_frames": self.num_frames}
        optional |= {"epoch_length": self.epoch_length}
        problems += [f"{k} must be >= 1, got {v}" for k, v in positive.items() if v < 1]
        problems += [
            f"{k} must be >= 1 or null, got {v}" for k, v in optional.items() if v is not None and v < 1
        ]
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            problems.append("max_grad_norm must be positive or null")
        if self.mixed_precision not in ("auto", "no", "bf16", "fp16"):
            problems.append(f"mixed_precision must be auto, no, bf16 or fp16, got {self.mixed_precision!r}")
        if self.dtype not in ("float32", "bfloat16", "float16", "auto"):
            problems.append(f"dtype must be float32, bfloat16, float16 or auto, got {self.dtype!r}")
        if self.num_workers < 0:
            problems.append("num_workers must be >= 0")
        known = {f.name for f in dataclasses.fields(SpaceVLLMConfig)}
        if unknown := sorted(set(self.model) - known):
            problems.append(f"unknown model (SpaceVLLMConfig) keys {unknown}")
        if self.num_frames is not None and self.model.get("num_frames", self.num_frames) != self.num_frames:
            problems.append("num_frames and model.num_frames disagree")
        elif not unknown:
            try:
                SpaceVLLMConfig(**self.model_overrides())
            except ValueError as err:
                problems.append(f"model: {err}")
        if problems:
            raise TrainConfigError("invalid TrainConfig: " + "; ".join(problems))

    @property
    def new_lr(self) -> float:
        return self.new_parts_lr if self.new_parts_lr is not None else self.lr

    def model_overrides(self) -> dict[str, Any]:
        """The SpaceVLLMConfig overrides, ``num_frames`` included."""
        extra = {} if self.num_frames is None else {"num_frames": self.num_frames}
        return {**self.model, **extra}

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["adam_betas"] = list(self.adam_betas)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "TrainConfig") -> TrainConfig:
        """Build from a mapping; an unknown key (a typo) is a one-line :class:`TrainConfigError`."""
        if not isinstance(data, Mapping):
            raise TrainConfigError(f"{where}: expected a mapping of settings, got {type(data).__name__}")
        values = dict(data)
        if values.get("lora") is True:
            values["lora"] = LoraSettings()
        elif values.get("lora") is False:
            values["lora"] = None
        return _build(cls, values, where)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        """Read a YAML file (see the module docstring for an example)."""
        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except OSError as err:
            raise TrainConfigError(f"{p}: cannot read the config ({err.strerror})") from None
        except UnicodeDecodeError as err:
            raise TrainConfigError(f"{p}: not UTF-8 text (byte {err.start})") from None
        except yaml.YAMLError as err:
            raise TrainConfigError(f"{p}: not valid YAML ({' '.join(str(err).split())})") from None
        return cls.from_dict(data if data is not None else {}, where=str(p))

    def to_yaml(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")
        return p


_FLOAT_FIELDS = {"lr", "new_parts_lr", "weight_decay", "adam_eps", "warmup_ratio", "max_grad_norm"}
_FLOAT_FIELDS |= {"ratio", "alpha", "dropout"}
_INT_FIELDS = {"batch_size", "grad_accum", "epochs", "seed", "log_every", "num_workers", "r"}
_INT_FIELDS |= {"max_steps", "save_every", "keep_checkpoints", "num_frames", "epoch_length"}
_BOOL_FIELDS = {"gradient_checkpointing", "find_unused_parameters", "cpu", "freeze_vision_tower"}
_BOOL_FIELDS |= {"train_projector"}
_STR_FIELDS = {"base_model", "output_dir", "mixed_precision", "dtype", "path", "name"}


def _check_types(values: Mapping[str, Any], where: str) -> None:
    """One line naming the key whose value has the wrong type (``batch_size: 1.5``, ``cpu: "no"``).

    ``None`` passes here: required fields and ranges are :meth:`TrainConfig.__post_init__`'s.
    """

    def fail(name: str, wanted: str) -> None:
        raise TrainConfigError(f"{where}: {name} must be {wanted}, got {values[name]!r}")

    for name, value in values.items():
        if value is None:
            continue
        if name in _INT_FIELDS and (isinstance(value, bool) or not isinstance(value, int)):
            fail(name, "a whole number")
        if name in _FLOAT_FIELDS and (isinstance(value, bool) or not isinstance(value, int | float)):
            fail(name, "a number")
        if name in _BOOL_FIELDS and not isinstance(value, bool):
            fail(name, "true or false")
        if name in _STR_FIELDS and not isinstance(value, str):
            fail(name, "a string")
        if name == "adam_betas" and (
            not isinstance(value, list | tuple)
            or len(value) != 2
            or not all(isinstance(b, int | float) and not isinstance(b, bool) for b in value)
        ):
            fail(name, "two numbers [beta1, beta2]")
        if name == "resume" and not isinstance(value, bool | str):
            fail(name, "true, false or a checkpoint path")


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    if unknown := sorted(set(values) - known):
        raise TrainConfigError(f"{where}: unknown {cls.__name__} keys {unknown}; known: {sorted(known)}")
    for name in _FLOAT_FIELDS & set(values):
        # YAML 1.1 reads "1e-5" (no dot) as a string.
        if isinstance(values[name], str):
            try:
                values[name] = float(values[name])
            except ValueError:
                raise TrainConfigError(f"{where}: {name} must be a number, got {values[name]!r}") from None
    _check_types(values, where)
    try:
        return cls(**values)
    except TrainConfigError as err:
        raise TrainConfigError(f"{where}: {err}") from None
    except TypeError as err:  # a missing required key
        raise TrainConfigError(f"{where}: {err}") from None


def _source(entry: Any) -> DataSource:
    if isinstance(entry, DataSource):
        return entry
    if isinstance(entry, str | os.PathLike):
        return DataSource(str(entry))
    if isinstance(entry, Mapping):
        return _build(DataSource, dict(entry), "data entry")
    raise TrainConfigError(f"a data entry is a path or a mapping, got {entry!r}")


# ------------------------------------------------------------------------------------- summary


@dataclass
class TrainSummary:
    """What :func:`train` did (the same on every process; paths are written by the main one).

    Attributes:
        output_dir: the run folder.
        final_dir: the final model (``SpaceVLLM.from_pretrained(final_dir)``).
        steps: optimizer steps done in total (resumed ones included).
        start_step: the step this call started at (0, or the resumed checkpoint's step).
        steps_per_epoch: optimizer steps of one epoch.
        final_losses: the last step's loss parts, averaged over its micro-batches and processes.
        seconds: wall-clock time of this call.
        checkpoints: checkpoint folders present at the end.
        log_path: the JSONL log.
        trainable_parameters: trained parameter counts by part (query-token rows counted as
            rows when only they of the embedding table train).
        world_size: processes.
    """

    output_dir: Path
    final_dir: Path
    steps: int
    start_step: int
    steps_per_epoch: int
    final_losses: dict[str, float]
    seconds: float
    checkpoints: list[Path]
    log_path: Path
    trainable_parameters: dict[str, int]
    world_size: int


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
    return round(total * ratio)


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

    See the module docstring: micro-batch ``m`` of process ``r`` is slots
    ``m * B * W + r * B + [0, B)``; only whole optimizer steps of ``accum`` micro-batches are used.
    """
    per_micro = batch_size * world
    usable = (slots // per_micro) // accum * accum
    return [
        list(range(m * per_micro + rank * batch_size, m * per_micro + (rank + 1) * batch_size))
        for m in range(start, usable)
    ]


# ------------------------------------------------------------------------------------- model


def _weight_dtype(name: str) -> torch.dtype | str:
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


def _lora_layer_type() -> type:
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
        rows_only: only the query-token rows of ``embedding`` may change (LoRA mode).
        query_rows: ids of the query tokens.
        counts: trained parameter counts by part.
    """

    decoder: list[nn.Parameter]
    embedding: nn.Parameter
    rows_only: bool
    query_rows: list[int]
    counts: dict[str, int]


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
    rows = sorted(set(model.adapter.query_tokens.new_rows))
    if lora:
        # Only the query rows may change: the rest of the table gets a zero gradient, and with
        # no weight decay AdamW leaves a parameter with zero gradients exactly where it is.
        keep = torch.zeros(embedding.shape[0], 1, dtype=embedding.dtype, device=embedding.device)
        keep[rows] = 1
        embedding.register_hook(lambda grad: grad * keep.to(grad.dtype))

    counts: dict[str, int] = {}
    named = {
        "vision_tower": base.model.vision_tower,
        "projector": base.model.multi_modal_projector,
        "language_model": base.model.language_model,
        "lm_head": base.lm_head,
        "decoder": model.decoder,
    }
    seen: set[int] = {id(embedding)}
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
        counts["query_token_rows"] = len(rows) * embedding.shape[1]
    else:
        counts["embeddings"] = embedding.numel()
    counts["total"] = sum(counts.values())
    return TrainedParts(list(model.decoder.parameters()), embedding, lora, rows, counts)


def make_optimizer(model: SpaceVLLM, parts: TrainedParts, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with four groups: (base | new parts) x (decayed matrices | the rest)."""
    new_ids = {id(p) for p in parts.decoder}
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for param in model.parameters():
        if not param.requires_grad:
            continue
        decay = param.ndim >= 2 and param is not parts.embedding
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
    """Give the query-token rows of the (base-lr) embedding table the new-parts learning rate.

    An AdamW update is proportional to the learning rate, so scaling the rows' change by
    ``new_lr / lr`` right after the step is exactly a step with ``new_lr`` on them.
    """

    def __init__(self, embedding: nn.Parameter | None, rows: list[int], ratio: float) -> None:
        self.embedding = embedding
        self.ratio = ratio
        active = embedding is not None and ratio != 1.0
        self.rows = torch.as_tensor(rows, device=embedding.device) if active else None
        self._before: torch.Tensor | None = None

    def before_step(self) -> None:
        if self.rows is not None:
            self._before = self.embedding.detach()[self.rows].clone()

    @torch.no_grad()
    def after_step(self) -> None:
        if self.rows is None or self._before is None:
            return
        table = self.embedding.data
        table[self.rows] = self._before + (table[self.rows] - self._before) * self.ratio
        self._before = None


# ------------------------------------------------------------------------------------- saving


def _merged_base_state(model: SpaceVLLM, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The base model's state dict with every LoRA adapter merged into its layer's weight."""
    lora_type = _lora_layer_type()
    merged: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if "lora_" in key:
            continue
        merged[key.replace(".base_layer.", ".")] = tensor
    for name, module in model.base.named_modules():
        if isinstance(module, lora_type):
            with torch.no_grad():
                weight = module.base_layer.weight
                delta = module.get_delta_weight("default").to(weight.dtype)
                merged[f"{name}.weight"] = (weight + delta).detach().cpu()
    return merged


def export_model(accelerator: Any, wrapped: nn.Module, directory: Path) -> None:
    """Write the trained model as a SpaceVLLM checkpoint (LoRA merged); main process writes.

    Called on every process: gathering FSDP shards is collective.
    """
    model: SpaceVLLM = accelerator.unwrap_model(wrapped)
    has_lora = any(isinstance(m, _lora_layer_type()) for m in model.base.modules())
    fsdp = accelerator.distributed_type.name == "FSDP"
    if not has_lora and not fsdp:
        if accelerator.is_main_process:
            model.save_pretrained(directory)
        return
    # The same layout as SpaceVLLM.save_pretrained, from a (gathered / merged) state dict.
    state = accelerator.get_state_dict(wrapped)
    if not accelerator.is_main_process:
        return
    base_state = {k[len("base.") :]: v for k, v in state.items() if k.startswith("base.")}
    decoder_state = {k[len("decoder.") :]: v for k, v in state.items() if k.startswith("decoder.")}
    if has_lora:
        base_state = _merged_base_state(model, base_state)
    directory.mkdir(parents=True, exist_ok=True)
    model.base.save_pretrained(directory, state_dict=base_state)
    model.adapter.save(directory)
    save_file(
        {k: v.detach().contiguous().cpu() for k, v in decoder_state.items()}, str(directory / DECODER_FILE)
    )
    model.config.save(directory)


def checkpoint_dirs(output_dir: Path | str) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(output_dir) / CHECKPOINTS
    found = []
    for path in root.glob("step_*") if root.is_dir() else []:
        suffix = path.name[len("step_") :]
        if suffix.isdigit() and (path / TRAINER_STATE).is_file():
            found.append((int(suffix), path))
    return [p for _, p in sorted(found)]


def _load_state(accelerator: Any, checkpoint: Path) -> None:
    """Accelerate's model, optimizer and RNG state of ``checkpoint``, never unpickling code.

    Accelerate reads these files with ``torch.load(weights_only=True)``, which refuses anything
    but tensors and plain containers; a refused file is one line naming it. Pickled files that
    Accelerate would unpickle in full (``custom_checkpoint_*.pkl``) are refused before it runs.
    """
    state = checkpoint / "state"
    pickled = sorted(state.glob("custom_checkpoint_*.pkl"))
    if pickled:
        raise TrainConfigError(
            f"refusing {pickled[0]}: pickled files are never loaded (they can run code); "
            "train into a new output_dir"
        )
    # Accelerate swallows a failed random-state load and goes on with other random numbers: check
    # those files first, with the same restricted loader.
    from accelerate.utils import load as restricted_load

    for path in sorted(state.glob("random_states_*.pkl")):
        try:
            restricted_load(path)
        except pickle.UnpicklingError as exc:
            raise TrainConfigError(
                f"refusing {path}: not plain tensors and arrays ({_first_line(exc)})"
            ) from exc
    try:
        accelerator.load_state(str(state))
    except pickle.UnpicklingError as exc:
        raise TrainConfigError(f"refusing a file of {state}: not plain tensors ({_first_line(exc)})") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _save_checkpoint(
    accelerator: Any, wrapped: nn.Module, out: Path, step: int, state: dict[str, Any], keep: int | None
) -> Path:
    root = out / CHECKPOINTS
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp_step_{step:08d}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp / "state"))
    export_model(accelerator, wrapped, tmp / "model")
    if accelerator.is_main_process:
        (tmp / TRAINER_STATE).write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    accelerator.wait_for_everyone()  # every process's RNG file is in
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        if keep is not None:
            for old in checkpoint_dirs(out)[:-keep]:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


# ------------------------------------------------------------------------------------- logging


class _Log:
    """JSONL + TensorBoard on the main process; nothing elsewhere."""

    def __init__(self, out: Path, enabled: bool, start_step: int) -> None:
        self.path = out / LOG_FILE
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        if self.path.exists():  # lines past the resumed step belong to lost progress
            kept = [
                line
                for line in self.path.read_text(encoding="utf-8").splitlines()
                if line.strip() and _line_step(line) is not None and _line_step(line) <= start_step
            ]
            self.path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tensorboard's own deprecation noise
            from torch.utils.tensorboard import SummaryWriter

            purge = start_step + 1 if start_step > 0 else None  # drop the events of lost steps
            self.writer = SummaryWriter(str(out / "tensorboard"), purge_step=purge)

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        for key, value in record.items():
            if key not in ("step", "epoch") and isinstance(value, int | float):
                self.writer.add_scalar(f"train/{key}", value, record["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _line_step(line: str) -> int | None:
    try:
        step = json.loads(line).get("step")
    except (ValueError, AttributeError):
        return None
    return step if isinstance(step, int) else None


# ------------------------------------------------------------------------------------- training


def enable_checkpointing(base: nn.Module) -> None:
    """Activation checkpointing of the language model (non-reentrant: works with DDP and frozen inputs)."""
    kwargs = {"use_reentrant": False}
    if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5 renamed it
        base.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _accelerator(config: TrainConfig) -> Any:
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


def _resume_dir(config: TrainConfig, out: Path) -> Path | None:
    existing = checkpoint_dirs(out)
    if config.resume is False or config.resume is None:
        if existing:
            raise TrainConfigError(
                f"{out} already has checkpoints ({existing[-1].name}); use resume: true, or another output_dir"
            )
        return None
    if config.resume is True:
        return existing[-1] if existing else None
    path = Path(config.resume)
    if not (path / TRAINER_STATE).is_file():
        raise TrainConfigError(f"resume: {path} is not a complete checkpoint (no {TRAINER_STATE})")
    return path


def _geometry(config: TrainConfig, world: int, dataset: MixedDataset) -> dict[str, Any]:
    """What must not change between a checkpoint and its resume for the data order to hold."""
    return {
        "seed": config.seed,
        "records_per_micro_batch": config.batch_size * world,
        "grad_accum": config.grad_accum,
        "epoch_length": len(dataset),
        "sources": {name: len(records) for name, records in sorted(dataset.sources.items())},
        "ratios": dict(sorted(dataset.weights.items())),
    }


def _loader(dataset: MixedDataset, batches: list[list[int]], collate: Any, config: TrainConfig) -> DataLoader:
    return DataLoader(
        dataset,
        batch_sampler=batches,
        collate_fn=collate,
        num_workers=config.num_workers,
        # Its own generator: creating an iterator must not draw from the global RNG (dropout).
        generator=torch.Generator().manual_seed(config.seed),
    )


def _epoch_batches(
    dataset: MixedDataset,
    collate: Any,
    config: TrainConfig,
    accelerator: Any,
    micro: int,
    micro_per_epoch: int,
) -> Iterator[tuple[int, Any]]:
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
        for batch in _loader(dataset, batches, collate, config):
            yield epoch, batch
        micro = (epoch + 1) * micro_per_epoch


def _loss_parts(losses: Any) -> torch.Tensor:
    """The parts of :data:`LOSS_KEYS` as a float64 vector (for averaging and reducing)."""
    values = (losses.total, losses.lm, losses.l1, losses.giou)
    return torch.tensor([float(v.detach()) for v in values], dtype=torch.float64)


def _learning_rates(optimizer: Any) -> dict[str, float]:
    """``lr`` of the base groups and ``lr_new`` of the new-parts groups (when they exist)."""
    rates: dict[str, float] = {}
    for group in optimizer.param_groups:
        key = "lr_new" if group["name"].startswith("new") else "lr"
        rates.setdefault(key, float(group["lr"]))
    return rates


def _versions() -> dict[str, str]:
    import accelerate
    import peft
    import transformers

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "peft": peft.__version__,
    }


def train(config: TrainConfig, progress: bool = True) -> TrainSummary:
    """Fine-tune SpaceVLLM as ``config`` says (every process of a launch calls this).

    Returns:
        :class:`TrainSummary`; the final model is in ``output_dir/final``.

    Raises:
        TrainConfigError: bad data, a structural override of a checkpoint, an ``output_dir``
            with checkpoints under ``resume: false``, or a resume whose data geometry changed.
    """
    from accelerate.utils import set_seed

    started = time.perf_counter()
    out = Path(config.output_dir)
    if out.exists() and not out.is_dir():
        raise TrainConfigError(f"output_dir {out} is a file, not a folder")
    accelerator = _accelerator(config)
    main = accelerator.is_main_process
    world = accelerator.num_processes
    fsdp = accelerator.distributed_type.name == "FSDP"
    if fsdp and config.lora is not None:
        raise TrainConfigError("LoRA under FSDP is not supported: use DDP (or full fine-tuning with FSDP)")
    if fsdp and config.new_lr != config.lr:
        raise TrainConfigError("new_parts_lr under FSDP is not supported (the query rows are sharded)")

    dataset = load_sources(config)
    micro_per_epoch = (len(dataset) // (config.batch_size * world)) // config.grad_accum * config.grad_accum
    steps_per_epoch = micro_per_epoch // config.grad_accum
    if steps_per_epoch == 0:
        raise TrainConfigError(
            f"an epoch of {len(dataset)} records is less than one optimizer step of "
            f"{config.batch_size} x {world} processes x {config.grad_accum} micro-batches"
        )
    total = config.max_steps if config.max_steps is not None else config.epochs * steps_per_epoch
    resume_from = _resume_dir(config, out)
    geometry = _geometry(config, world, dataset)
    start_step, seconds_before, losses = 0, 0.0, {}
    if resume_from is not None:
        saved = json.loads((resume_from / TRAINER_STATE).read_text(encoding="utf-8"))
        if saved["geometry"] != geometry:
            raise TrainConfigError(
                f"cannot resume {resume_from}: the data order changed (seed, batch geometry or sources): "
                f"saved {saved['geometry']}, now {geometry}"
            )
        if not isinstance(saved.get("scheduler"), dict):
            raise TrainConfigError(
                f"cannot resume {resume_from}: it keeps its scheduler state in a pickle (an older "
                "version's checkpoint), and pickled files are never loaded; train into a new output_dir"
            )
        start_step, seconds_before = int(saved["step"]), float(saved.get("seconds", 0.0))
        losses = dict(saved.get("losses", {}))

    set_seed(config.seed)
    model = build_model(config)
    parts = select_trainable(model, config)
    if config.gradient_checkpointing:
        enable_checkpointing(model.base)
    # An unreadable video met hours into a run is reported and replaced, not fatal.
    collate = model.collator(with_answers=True, skip_unreadable=True)
    model.train()
    if not any(p.requires_grad for p in model.base.model.vision_tower.parameters()):
        model.base.model.vision_tower.eval()  # a frozen tower also keeps its inference behaviour

    wrapped = accelerator.prepare(model)
    optimizer = make_optimizer(accelerator.unwrap_model(wrapped), parts, config)
    scheduler = LambdaLR(optimizer, WarmupCosine(total, warmup_steps(total, config.warmup_ratio)))
    optimizer = accelerator.prepare(optimizer)
    # The scheduler's state goes to trainer_state.json, not to Accelerate's custom checkpoint:
    # Accelerate unpickles that file on load, and nothing read from disk may be unpickled.
    row_lr = QueryRowLR(parts.embedding, parts.query_rows, config.new_lr / config.lr)
    if resume_from is not None:
        _load_state(accelerator, resume_from)
        scheduler.load_state_dict(saved["scheduler"])

    if main:
        out.mkdir(parents=True, exist_ok=True)
        config.to_yaml(out / "train_config.yaml")
    accelerator.wait_for_everyone()
    log = _Log(out, main, start_step)
    bar = tqdm(total=total, initial=start_step, desc="train", unit="step", disable=not (progress and main))

    step = start_step
    micro = step * config.grad_accum
    sums = torch.zeros(len(LOSS_KEYS), dtype=torch.float64)
    step_started = time.perf_counter()
    epoch = micro // micro_per_epoch
    batches = _epoch_batches(dataset, collate, config, accelerator, micro, micro_per_epoch)
    skipped_records, warned = 0, set()
    try:
        while step < total:
            epoch, batch = next(batches)
            for record_id, reason in batch.skipped:
                skipped_records += 1
                if main and record_id not in warned:
                    warned.add(record_id)
                    warnings.warn(f"skipping unreadable record {record_id}: {reason}", stacklevel=2)
            last_micro = (micro + 1) % config.grad_accum == 0
            sync = nullcontext() if last_micro else accelerator.no_sync(wrapped)
            with sync:
                output = wrapped(batch.to(accelerator.device))
                accelerator.backward(output.loss / config.grad_accum)
            sums += _loss_parts(output.losses)
            micro += 1
            if not last_micro:
                continue
            grad_norm = None
            if config.max_grad_norm is not None:
                grad_norm = accelerator.clip_grad_norm_(wrapped.parameters(), config.max_grad_norm)
            lrs = _learning_rates(optimizer)  # the rates of this step, before the scheduler moves
            row_lr.before_step()
            optimizer.step()
            row_lr.after_step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            is_last = step == total
            if step % config.log_every == 0 or is_last:
                mean = accelerator.reduce((sums / config.grad_accum).to(accelerator.device), "mean").cpu()
                losses = {k: float(v) for k, v in zip(LOSS_KEYS, mean.tolist(), strict=True)}
                now = time.perf_counter()
                record: dict[str, Any] = {"step": step, "epoch": epoch, **losses}
                record.update(lrs)
                if grad_norm is not None:
                    record["grad_norm"] = float(grad_norm)
                if skipped_records:
                    record["skipped_records"] = skipped_records  # this process's, since the start
                record["step_seconds"] = round(now - step_started, 4)
                record["seconds"] = round(seconds_before + now - started, 3)  # over resumes
                log.write(record)
                bar.set_postfix(loss=f"{losses['loss']:.4f}")
            sums.zero_()
            bar.update()
            step_started = time.perf_counter()
            if config.save_every is not None and (step % config.save_every == 0 or is_last):
                state = {"step": step, "micro": micro, "epoch": epoch, "geometry": geometry, "losses": losses}
                state["scheduler"] = scheduler.state_dict()
                state["seconds"] = seconds_before + time.perf_counter() - started
                _save_checkpoint(accelerator, wrapped, out, step, state, config.keep_checkpoints)
    finally:
        batches.close()
        bar.close()
        log.close()

    final_dir, tmp_final = out / FINAL, out / f".tmp_{FINAL}"
    if main:
        shutil.rmtree(tmp_final, ignore_errors=True)
    accelerator.wait_for_everyone()
    export_model(accelerator, wrapped, tmp_final)
    seconds = time.perf_counter() - started
    if main:
        recipe = {
            "config": config.to_dict(),
            "seed": config.seed,
            "command": shlex.join([Path(sys.executable).name, *sys.argv]),
            "steps": step,
            "start_step": start_step,
            "steps_per_epoch": steps_per_epoch,
            "world_size": world,
            "distributed_type": accelerator.distributed_type.name,
            "global_batch": config.batch_size * world * config.grad_accum,
            "mixed_precision": str(accelerator.mixed_precision),
            "final_losses": losses,
            "trainable_parameters": parts.counts,
            "seconds": round(seconds, 3),
            "versions": _versions(),
        }
        (tmp_final / RECIPE).write_text(json.dumps(recipe, indent=2) + "\n", encoding="utf-8")
        if final_dir.exists():
            shutil.rmtree(final_dir)
        os.replace(tmp_final, final_dir)
    accelerator.wait_for_everyone()
    return TrainSummary(
        output_dir=out,
        final_dir=final_dir,
        steps=step,
        start_step=start_step,
        steps_per_epoch=steps_per_epoch,
        final_losses=losses,
        seconds=seconds,
        checkpoints=checkpoint_dirs(out),
        log_path=out / LOG_FILE,
        trainable_parameters=parts.counts,
        world_size=world,
    )
