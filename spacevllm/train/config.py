"""The training config: :class:`TrainConfig` and its parts, read from YAML with one-line errors.

:meth:`TrainConfig.from_yaml` / :meth:`TrainConfig.from_dict` check every key and every value's
type before building, so a typo or a ``batch_size: 1.5`` is one :class:`TrainConfigError` that
names it; ranges and cross-field rules are checked when the dataclass is built.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from spacevllm.config import SpaceVLLMConfig
from zsgrounding.atomic import write_text_atomic
from zsgrounding.errors import STVGError

MixedPrecision = Literal["auto", "no", "bf16", "fp16"]
WeightDtype = Literal["float32", "bfloat16", "float16", "auto"]

# SpaceVLLMConfig fields that shape the vocabulary, the prompt layout or the decoder (its weights
# or what it computes): the reloaded model is built from them, so a checkpoint being continued
# keeps them (an override would change the config but not the model).
STRUCTURAL_KEYS = (
    "num_frames",
    "query_tokens",
    "query_token_template",
    "shared_query_token",
    "image_query_token",
    "interleave",
    "caption_first",
    "dual_cross_attention",
    "attention_residual",
    "attention_scale",
    "position_cue",
    "position_codes",
    "head_layers",
    "head_hidden",
)


class TrainConfigError(STVGError, ValueError):
    """A training config that cannot run (unknown key, bad value, data that does not fit)."""


@dataclass
class DataSource:
    """One JSONL file of records (:func:`spacevllm.data.read_records`) and its share.

    Attributes:
        path: the JSONL file.
        ratio: its weight in each epoch's mix (:class:`spacevllm.mix.MixedDataset`).
        name: the source's name in the mix and the logs; default the file's stem.
    """

    path: str
    ratio: float = 1.0
    name: str | None = None

    @property
    def key(self) -> str:
        """The source's name in the mix: ``name``, or the file's stem."""
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
        """The peak learning rate of the new parts: ``new_parts_lr``, or ``lr``."""
        return self.new_parts_lr if self.new_parts_lr is not None else self.lr

    def model_overrides(self) -> dict[str, Any]:
        """The SpaceVLLMConfig overrides, ``num_frames`` included."""
        extra = {} if self.num_frames is None else {"num_frames": self.num_frames}
        return {**self.model, **extra}

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (what :meth:`to_yaml` writes and ``recipe.json`` keeps)."""
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
        """Read a YAML file (see the :mod:`spacevllm.train` docstring for an example)."""
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
        """Write the config as YAML, atomically (a crash never leaves half a file)."""
        return write_text_atomic(path, yaml.safe_dump(self.to_dict(), sort_keys=False))


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
