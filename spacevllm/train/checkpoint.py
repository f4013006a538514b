"""Saving and resuming a run, and exporting its model.

A checkpoint folder ``checkpoints/step_XXXXXXXX/`` holds ``model/`` (a SpaceVLLM checkpoint, LoRA
merged), ``state/`` (Accelerate: exact weights, optimizer moments, the RNG of every process)
and ``trainer_state.json`` (step, data position, data geometry, last losses, the scheduler's
state, seconds). It is written to a hidden temporary folder and renamed when complete, so a
folder named ``step_*`` is always whole; only the newest ``keep_checkpoints`` are kept. The
final model (with ``recipe.json``) is staged in ``.tmp_final/`` and renamed ``final/`` the same way.

Nothing read from disk is unpickled: the scheduler's state is JSON, Accelerate's files are read
with ``torch.load(weights_only=True)`` and its pickled custom checkpoints are refused.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from spacevllm.mix import MixedDataset
from spacevllm.model import DECODER_FILE, SpaceVLLM
from spacevllm.train.builders import lora_layer_type
from spacevllm.train.config import TrainConfig, TrainConfigError
from zsgrounding.atomic import write_text_atomic

CHECKPOINTS = "checkpoints"
FINAL = "final"
TRAINER_STATE = "trainer_state.json"
RECIPE = "recipe.json"

# ------------------------------------------------------------------------------------- resuming


def checkpoint_dirs(output_dir: Path | str) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(output_dir) / CHECKPOINTS
    found = []
    for path in root.glob("step_*") if root.is_dir() else []:
        suffix = path.name[len("step_") :]
        if suffix.isdigit() and (path / TRAINER_STATE).is_file():
            found.append((int(suffix), path))
    return [p for _, p in sorted(found)]


def resume_dir(config: TrainConfig, out: Path) -> Path | None:
    """The checkpoint to continue from (``config.resume``), or ``None`` to start afresh.

    Raises:
        TrainConfigError: ``resume: false`` on an ``output_dir`` with checkpoints, or a ``resume``
            path that is not a complete checkpoint.
    """
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


def data_geometry(config: TrainConfig, world: int, dataset: MixedDataset) -> dict[str, Any]:
    """What must not change between a checkpoint and its resume for the data order to hold."""
    return {
        "seed": config.seed,
        "records_per_micro_batch": config.batch_size * world,
        "grad_accum": config.grad_accum,
        "epoch_length": len(dataset),
        "sources": {name: len(records) for name, records in sorted(dataset.sources.items())},
        "ratios": dict(sorted(dataset.weights.items())),
    }


def read_trainer_state(checkpoint: Path, geometry: dict[str, Any]) -> dict[str, Any]:
    """``trainer_state.json`` of ``checkpoint``, once it is known to continue this run's data order.

    Raises:
        TrainConfigError: the data geometry changed, or the checkpoint keeps its scheduler state
            in a pickle (an older version's).
    """
    saved = json.loads((checkpoint / TRAINER_STATE).read_text(encoding="utf-8"))
    if saved["geometry"] != geometry:
        raise TrainConfigError(
            f"cannot resume {checkpoint}: the data order changed (seed, batch geometry or sources): "
            f"saved {saved['geometry']}, now {geometry}"
        )
    if not isinstance(saved.get("scheduler"), dict):
        raise TrainConfigError(
            f"cannot resume {checkpoint}: it keeps its scheduler state in a pickle (an older "
            "version's checkpoint), and pickled files are never loaded; train into a new output_dir"
        )
    return saved


def load_state(accelerator: Any, checkpoint: Path) -> None:
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
    """The first line of an error's message (torch's refusals run to many lines)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ------------------------------------------------------------------------------------- saving


def write_checkpoint(
    accelerator: Any, wrapped: nn.Module, out: Path, step: int, state: dict[str, Any], keep: int | None
) -> Path:
    """Write checkpoint ``step`` (every process calls this: saving is collective); return its folder.

    ``state`` becomes ``trainer_state.json``. The folder is built under a hidden name and renamed
    when every process's files are in; then all but the newest ``keep`` checkpoints are deleted.
    """
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
        write_text_atomic(tmp / TRAINER_STATE, json.dumps(state, indent=2) + "\n")
    accelerator.wait_for_everyone()  # every process's RNG file is in
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        # A folder: zsgrounding.atomic swaps in files only, so the whole folder is renamed.
        os.replace(tmp, final)
        if keep is not None:
            for old in checkpoint_dirs(out)[:-keep]:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


# ------------------------------------------------------------------------------------- export


def _merged_base_state(model: SpaceVLLM, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The base model's state dict with every LoRA adapter merged into its layer's weight."""
    lora_type = lora_layer_type()
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
    has_lora = any(isinstance(m, lora_layer_type()) for m in model.base.modules())
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


def stage_final(accelerator: Any, wrapped: nn.Module, out: Path) -> Path:
    """Export the trained model into the hidden folder ``.tmp_final`` (collective); return it."""
    tmp_final = out / f".tmp_{FINAL}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp_final, ignore_errors=True)
    accelerator.wait_for_everyone()
    export_model(accelerator, wrapped, tmp_final)
    return tmp_final


def publish_final(accelerator: Any, out: Path, tmp_final: Path, recipe: dict[str, Any] | None) -> Path:
    """Add ``recipe.json`` to the staged model and rename it ``final/`` (main process); return ``final/``.

    ``recipe`` is the main process's (``None`` elsewhere). An older ``final/`` is replaced.
    """
    final_dir = out / FINAL
    if accelerator.is_main_process:
        write_text_atomic(tmp_final / RECIPE, json.dumps(recipe, indent=2) + "\n")
        if final_dir.exists():
            shutil.rmtree(final_dir)
        # A folder: zsgrounding.atomic swaps in files only, so the whole folder is renamed.
        os.replace(tmp_final, final_dir)
    accelerator.wait_for_everyone()
    return final_dir
