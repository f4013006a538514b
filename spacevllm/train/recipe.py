"""The fine-tuning recipe: :class:`TrainRecipe` sets a run up, trains it, checkpoints and exports.

:func:`train` is one whole run on one process: :meth:`TrainRecipe.setup` (accelerator, data,
resume point, model, optimizer, output folder), :meth:`TrainRecipe.train` (the optimizer steps,
their log lines and checkpoints), :meth:`TrainRecipe.cleanup` (the loader, the progress bar and
the log are closed, also after an error) and :meth:`TrainRecipe.export` (``final/`` with
``recipe.json``, and the :class:`TrainSummary`).
"""

from __future__ import annotations

import shlex
import sys
import time
import warnings
from collections.abc import Generator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from spacevllm.train.builders import (
    QueryRowLR,
    build_accelerator,
    build_model,
    enable_checkpointing,
    epoch_batches,
    load_sources,
    make_optimizer,
    make_scheduler,
    select_trainable,
)
from spacevllm.train.checkpoint import (
    checkpoint_dirs,
    data_geometry,
    load_state,
    publish_final,
    read_trainer_state,
    resume_dir,
    stage_final,
    write_checkpoint,
)
from spacevllm.train.config import TrainConfig, TrainConfigError
from spacevllm.train.metrics import LOG_FILE, LOSS_KEYS, TrainLog, learning_rates, loss_parts


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


class TrainRecipe:
    """One process's part of a fine-tuning run (every process of a launch runs its own).

    :meth:`setup`, then :meth:`train` with :meth:`cleanup` after it (also when it fails), then
    :meth:`export`; :func:`train` does exactly that. :meth:`save_checkpoint` is called by
    :meth:`train` every ``save_every`` steps and at the last one.
    """

    def __init__(self, config: TrainConfig, progress: bool = True) -> None:
        self.config = config
        self.progress = progress
        self.out = Path(config.output_dir)
        # What cleanup() closes: None until setup() has opened it.
        self.batches: Generator[tuple[int, Any], None, None] | None = None
        self.bar: tqdm | None = None
        self.log: TrainLog | None = None

    # --------------------------------------------------------------------------------- setup

    def setup(self) -> None:
        """Build everything the loop needs, restoring a checkpoint when resuming.

        Raises:
            TrainConfigError: see :func:`train`.
        """
        from accelerate.utils import set_seed

        self.started = time.perf_counter()
        if self.out.exists() and not self.out.is_dir():
            raise TrainConfigError(f"output_dir {self.out} is a file, not a folder")
        self._setup_accelerator()
        self._setup_data()
        saved = self._setup_resume()
        # After the data and before the model: the decoder's initialisation, LoRA's and dropout
        # draw from the seeded generators.
        set_seed(self.config.seed)
        self._setup_model()
        self._setup_optimizer(saved)
        self._setup_output()
        self._setup_loop()

    def _setup_accelerator(self) -> None:
        config = self.config
        self.accelerator = build_accelerator(config)
        self.main = self.accelerator.is_main_process
        self.world = self.accelerator.num_processes
        fsdp = self.accelerator.distributed_type.name == "FSDP"
        if fsdp and config.lora is not None:
            raise TrainConfigError(
                "LoRA under FSDP is not supported: use DDP (or full fine-tuning with FSDP)"
            )
        if fsdp and config.new_lr != config.lr:
            raise TrainConfigError("new_parts_lr under FSDP is not supported (the query rows are sharded)")

    def _setup_data(self) -> None:
        """The record mix and the run's length in micro-batches and optimizer steps."""
        config, world = self.config, self.world
        self.dataset = load_sources(config)
        micro = len(self.dataset) // (config.batch_size * world)
        self.micro_per_epoch = micro // config.grad_accum * config.grad_accum  # whole steps only
        self.steps_per_epoch = self.micro_per_epoch // config.grad_accum
        if self.steps_per_epoch == 0:
            raise TrainConfigError(
                f"an epoch of {len(self.dataset)} records is less than one optimizer step of "
                f"{config.batch_size} x {world} processes x {config.grad_accum} micro-batches"
            )
        by_epochs = config.epochs * self.steps_per_epoch
        self.total = config.max_steps if config.max_steps is not None else by_epochs

    def _setup_resume(self) -> dict[str, Any] | None:
        """The checkpoint to continue (if any) and its ``trainer_state.json``."""
        self.resume_from = resume_dir(self.config, self.out)
        self.geometry = data_geometry(self.config, self.world, self.dataset)
        self.start_step, self.seconds_before, self.losses = 0, 0.0, {}
        if self.resume_from is None:
            return None
        saved = read_trainer_state(self.resume_from, self.geometry)
        self.start_step, self.seconds_before = int(saved["step"]), float(saved.get("seconds", 0.0))
        self.losses = dict(saved.get("losses", {}))
        return saved

    def _setup_model(self) -> None:
        config = self.config
        model = build_model(config)
        self.parts = select_trainable(model, config)
        if config.gradient_checkpointing:
            enable_checkpointing(model.base)
        # An unreadable video met hours into a run is reported and replaced, not fatal.
        self.collate = model.collator(with_answers=True, skip_unreadable=True)
        model.train()
        if not any(p.requires_grad for p in model.base.model.vision_tower.parameters()):
            model.base.model.vision_tower.eval()  # a frozen tower also keeps its inference behaviour
        self.wrapped = self.accelerator.prepare(model)

    def _setup_optimizer(self, saved: dict[str, Any] | None) -> None:
        accelerator, config = self.accelerator, self.config
        optimizer = make_optimizer(accelerator.unwrap_model(self.wrapped), self.parts, config)
        self.scheduler = make_scheduler(optimizer, self.total, config)
        self.optimizer = accelerator.prepare(optimizer)
        # The scheduler's state goes to trainer_state.json, not to Accelerate's custom checkpoint:
        # Accelerate unpickles that file on load, and nothing read from disk may be unpickled.
        self.row_lr = QueryRowLR(self.parts.row_tables, self.parts.query_rows, config.new_lr / config.lr)
        if saved is not None:
            load_state(accelerator, self.resume_from)
            self.scheduler.load_state_dict(saved["scheduler"])

    def _setup_output(self) -> None:
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
            self.config.to_yaml(self.out / "train_config.yaml")
        self.accelerator.wait_for_everyone()
        self.log = TrainLog(self.out, self.main, self.start_step)
        show = self.progress and self.main
        self.bar = tqdm(
            total=self.total, initial=self.start_step, desc="train", unit="step", disable=not show
        )

    def _setup_loop(self) -> None:
        """The loop's position: the start step, its micro-batch and epoch, the data from there."""
        config = self.config
        self.step = self.start_step
        self.micro = self.step * config.grad_accum
        self.sums = torch.zeros(len(LOSS_KEYS), dtype=torch.float64)
        self.epoch = self.micro // self.micro_per_epoch
        self.batches = epoch_batches(
            self.dataset, self.collate, config, self.accelerator, self.micro, self.micro_per_epoch
        )
        self.skipped_records = 0
        self.warned: set[str] = set()

    # --------------------------------------------------------------------------------- training

    def train(self) -> None:
        """Optimizer steps from the start (or resumed) step to the last: log lines, checkpoints."""
        config = self.config
        self.step_started = time.perf_counter()
        while self.step < self.total:
            self.epoch, batch = next(self.batches)
            self._count_skipped(batch)
            if not self._micro_step(batch):
                continue
            lrs, grad_norm = self._optimizer_step()
            is_last = self.step == self.total
            if self.step % config.log_every == 0 or is_last:
                self._log_step(lrs, grad_norm)
            self.sums.zero_()
            self.bar.update()
            self.step_started = time.perf_counter()
            if config.save_every is not None and (self.step % config.save_every == 0 or is_last):
                self.save_checkpoint(self.step)

    def _count_skipped(self, batch: Any) -> None:
        """Count the batch's unreadable records; warn once per record (main process)."""
        for record_id, reason in batch.skipped:
            self.skipped_records += 1
            if self.main and record_id not in self.warned:
                self.warned.add(record_id)
                # stacklevel 4: the warning names the caller of train(), past this class.
                warnings.warn(f"skipping unreadable record {record_id}: {reason}", stacklevel=4)

    def _micro_step(self, batch: Any) -> bool:
        """Forward and backward one micro-batch; ``True`` when it completes an optimizer step."""
        accelerator = self.accelerator
        last_micro = (self.micro + 1) % self.config.grad_accum == 0
        # DDP all-reduces the gradients once per optimizer step, on its last micro-batch.
        sync = nullcontext() if last_micro else accelerator.no_sync(self.wrapped)
        with sync:
            output = self.wrapped(batch.to(accelerator.device))
            accelerator.backward(output.loss / self.config.grad_accum)
        self.sums += loss_parts(output.losses)
        self.micro += 1
        return last_micro

    def _optimizer_step(self) -> tuple[dict[str, float], Any]:
        """Clip, step, schedule; the step's learning rates and gradient norm (``None``: no clipping)."""
        grad_norm = None
        if self.config.max_grad_norm is not None:
            grad_norm = self.accelerator.clip_grad_norm_(self.wrapped.parameters(), self.config.max_grad_norm)
        lrs = learning_rates(self.optimizer)  # the rates of this step, before the scheduler moves
        self.row_lr.before_step()
        self.optimizer.step()
        self.row_lr.after_step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return lrs, grad_norm

    def _log_step(self, lrs: dict[str, float], grad_norm: Any) -> None:
        """One log line: the step's loss parts averaged over micro-batches and processes."""
        accelerator, config = self.accelerator, self.config
        mean = accelerator.reduce((self.sums / config.grad_accum).to(accelerator.device), "mean").cpu()
        self.losses = {k: float(v) for k, v in zip(LOSS_KEYS, mean.tolist(), strict=True)}
        now = time.perf_counter()
        record: dict[str, Any] = {"step": self.step, "epoch": self.epoch, **self.losses}
        record.update(lrs)
        if grad_norm is not None:
            record["grad_norm"] = float(grad_norm)
        if self.skipped_records:
            record["skipped_records"] = self.skipped_records  # this process's, since the start
        record["step_seconds"] = round(now - self.step_started, 4)
        record["seconds"] = round(self.seconds_before + now - self.started, 3)  # over resumes
        self.log.write(record)
        self.bar.set_postfix(loss=f"{self.losses['loss']:.4f}")

    def save_checkpoint(self, step: int) -> Path:
        """Checkpoint the run as it is after ``step`` (every process calls this); return the folder."""
        state: dict[str, Any] = {"step": step, "micro": self.micro, "epoch": self.epoch}
        state |= {"geometry": self.geometry, "losses": self.losses}
        state["scheduler"] = self.scheduler.state_dict()
        state["seconds"] = self.seconds_before + time.perf_counter() - self.started
        keep = self.config.keep_checkpoints
        return write_checkpoint(self.accelerator, self.wrapped, self.out, step, state, keep)

    def cleanup(self) -> None:
        """Close the data loader (and its workers), the progress bar and the log."""
        if self.batches is not None:
            self.batches.close()
        if self.bar is not None:
            self.bar.close()
        if self.log is not None:
            self.log.close()

    # --------------------------------------------------------------------------------- export

    def export(self) -> TrainSummary:
        """Write ``final/`` (the model, LoRA merged, and ``recipe.json``); every process calls this."""
        tmp_final = stage_final(self.accelerator, self.wrapped, self.out)
        seconds = time.perf_counter() - self.started
        recipe = self._recipe(seconds) if self.main else None
        final_dir = publish_final(self.accelerator, self.out, tmp_final, recipe)
        return TrainSummary(
            output_dir=self.out,
            final_dir=final_dir,
            steps=self.step,
            start_step=self.start_step,
            steps_per_epoch=self.steps_per_epoch,
            final_losses=self.losses,
            seconds=seconds,
            checkpoints=checkpoint_dirs(self.out),
            log_path=self.out / LOG_FILE,
            trainable_parameters=self.parts.counts,
            world_size=self.world,
        )

    def _recipe(self, seconds: float) -> dict[str, Any]:
        """``recipe.json``: the config, how it was launched, what it did and with which versions."""
        config, accelerator = self.config, self.accelerator
        return {
            "config": config.to_dict(),
            "seed": config.seed,
            "command": shlex.join([Path(sys.executable).name, *sys.argv]),
            "steps": self.step,
            "start_step": self.start_step,
            "steps_per_epoch": self.steps_per_epoch,
            "world_size": self.world,
            "distributed_type": accelerator.distributed_type.name,
            "global_batch": config.batch_size * self.world * config.grad_accum,
            "mixed_precision": str(accelerator.mixed_precision),
            "final_losses": self.losses,
            "trainable_parameters": self.parts.counts,
            "seconds": round(seconds, 3),
            "versions": _versions(),
        }


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
    recipe = TrainRecipe(config, progress=progress)
    recipe.setup()
    try:
        recipe.train()
    finally:
        recipe.cleanup()
    return recipe.export()
