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

Data order: each epoch is :class:`spacevllm.mix.MixedDataset`'s order for ``(seed, epoch)``.
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
                                     (Accelerate: exact weights, optimizer, RNG of every
                                     process), trainer_state.json (step, data position,
                                     scheduler)
    final/                           the trained model (SpaceVLLM.from_pretrained) + recipe.json

A checkpoint is written to a hidden temporary folder and renamed when complete, so a folder named
``step_*`` is always whole. Resume (``resume: true``, the default) restores the latest one and
continues at its step with the same data order, weights, optimizer moments and random state: the
next loss equals the loss an uninterrupted run has at that step.

The package is a recipe in modules of one job each: :mod:`~spacevllm.train.config` (the config
and its checks), :mod:`~spacevllm.train.builders` (accelerator, model, optimizer, schedule,
data), :mod:`~spacevllm.train.checkpoint` (saving, resuming, exporting),
:mod:`~spacevllm.train.metrics` (the log) and :mod:`~spacevllm.train.recipe` (:class:`TrainRecipe`
and :func:`train`). The names below are the public ones, importable from here as before.
"""

from __future__ import annotations

from spacevllm.train.builders import (
    QueryRowLR,
    TrainedParts,
    WarmupCosine,
    add_lora,
    build_model,
    enable_checkpointing,
    load_sources,
    make_optimizer,
    rank_batches,
    select_trainable,
    warmup_steps,
)
from spacevllm.train.checkpoint import (
    CHECKPOINTS,
    FINAL,
    RECIPE,
    TRAINER_STATE,
    checkpoint_dirs,
    export_model,
)
from spacevllm.train.config import (
    STRUCTURAL_KEYS,
    DataSource,
    LoraSettings,
    MixedPrecision,
    TrainConfig,
    TrainConfigError,
    WeightDtype,
)
from spacevllm.train.metrics import LOG_FILE, LOSS_KEYS
from spacevllm.train.recipe import TrainRecipe, TrainSummary, train

__all__ = [
    "CHECKPOINTS",
    "FINAL",
    "LOG_FILE",
    "LOSS_KEYS",
    "RECIPE",
    "STRUCTURAL_KEYS",
    "TRAINER_STATE",
    "DataSource",
    "LoraSettings",
    "MixedPrecision",
    "QueryRowLR",
    "TrainConfig",
    "TrainConfigError",
    "TrainRecipe",
    "TrainSummary",
    "TrainedParts",
    "WarmupCosine",
    "WeightDtype",
    "add_lora",
    "build_model",
    "checkpoint_dirs",
    "enable_checkpointing",
    "export_model",
    "load_sources",
    "make_optimizer",
    "rank_batches",
    "select_trainable",
    "train",
    "warmup_steps",
]
