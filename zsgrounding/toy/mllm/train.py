"""Pretrain the toy MLLM end to end and save it as a LLaVA-OneVision (or Qwen2-VL) checkpoint directory.

``pretrain(out_dir, config)`` renders the clip banks, runs the three stages of
:mod:`zsgrounding.toy.mllm.stages` and writes what ``zsgrounding.mllm.load_adapter(out_dir)``
loads: ``config.json`` + ``model.safetensors`` (``save_pretrained``), the tokenizer files, a
``preprocessor_config.json``; plus ``recipe.json`` (config, seed, command, per-stage metrics) and
``pretrain_log.jsonl`` (one JSON object per logged step or evaluation).

Each finished stage is saved under ``out_dir/stages/``; a rerun with the same config resumes after
the last finished stage. The folder is removed once the checkpoint is written.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from transformers import (
    LlavaOnevisionForConditionalGeneration,
    PreTrainedTokenizerFast,
    Qwen2VLForConditionalGeneration,
)

from zsgrounding.atomic import write_text_atomic
from zsgrounding.toy.mllm.config import QUESTION_KINDS, ToyPretrainConfig
from zsgrounding.toy.mllm.data import Sampler, build_bank, held_out_questions
from zsgrounding.toy.mllm.stages import ToyModel, VisualSource, stage1_vision, stage2_align, stage3_instruct
from zsgrounding.toy.mllm.tokenizer import build_tokenizer

STAGES = ("stage1", "stage2", "stage3")


class JsonLog:
    """Append-only JSON-lines log (one object per line, with the seconds since it was opened)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.start = time.perf_counter()

    def __call__(self, record: dict) -> None:
        line = {"elapsed": round(time.perf_counter() - self.start, 1), **record}
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")


def build_model(config: ToyPretrainConfig, tokenizer: PreTrainedTokenizerFast) -> ToyModel:
    """A freshly initialised toy model of ``config.model.family`` (seeded by ``config.seed``)."""
    torch.manual_seed(config.seed)
    if config.model.family == "qwen2_vl":
        model = Qwen2VLForConditionalGeneration(config.model.model_config(tokenizer))
        model.config.text_config._attn_implementation = "sdpa"
        return model.eval()
    model = LlavaOnevisionForConditionalGeneration(config.model.llava_config(tokenizer))
    model.config.text_config._attn_implementation = "sdpa"
    if config.vision_positions == "sincos":
        embeddings = model.model.vision_tower.embeddings
        side = config.model.patches
        with torch.no_grad():
            embeddings.position_embedding.weight.copy_(
                sincos_positions(side, side, config.model.vision_hidden)
            )
    return model.eval()


def sincos_positions(rows: int, cols: int, dim: int) -> torch.Tensor:
    """A 2-D sine-cosine position table ``(rows * cols, dim)`` in row-major patch order.

    Half the channels encode the row, half the column, each as sines and cosines of
    geometrically spaced frequencies (as MAE-style vision transformers fix their positions).
    """
    if dim % 4:
        raise ValueError(f"a 2-D sine-cosine table needs a width divisible by 4, got {dim}")
    freqs = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))

    def axis(n: int) -> torch.Tensor:
        angles = torch.arange(n, dtype=torch.float64)[:, None] * freqs[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)  # (n, dim / 2)

    row, col = axis(rows), axis(cols)
    table = torch.cat([row[:, None].expand(rows, cols, -1), col[None].expand(rows, cols, -1)], dim=-1)
    return table.reshape(rows * cols, dim).float()


def preprocessor_settings(config: ToyPretrainConfig) -> dict[str, Any]:
    """``preprocessor_config.json``: ``(x / 255 - 0.5) / 0.5`` normalisation, bicubic resizing.

    LLaVA-OneVision: frames squeezed to the tower's square size. Qwen2-VL: the pixel bounds make
    the processors' ``smart_resize`` keep a native toy frame at ``frame_size`` (what training saw).
    """
    common = {
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "resample": 3,
        "rescale_factor": 1 / 255,
        "do_resize": True,
        "do_rescale": True,
        "do_normalize": True,
        "do_convert_rgb": True,
    }
    if config.model.family == "qwen2_vl":
        height, width = config.model.frame_size
        factor = 2 * config.model.patch_size
        return {
            "image_processor_type": "Qwen2VLImageProcessor",
            "processor_class": "Qwen2VLProcessor",
            **common,
            "min_pixels": factor * factor,
            "max_pixels": height * width,
            "patch_size": config.model.patch_size,
            "temporal_patch_size": 2,
            "merge_size": 2,
        }
    size = config.model.image_size
    return {
        "image_processor_type": "LlavaOnevisionImageProcessor",
        "processor_class": "LlavaOnevisionProcessor",
        **common,
        "size": {"height": size, "width": size},
    }


def save_checkpoint(
    out_dir: Path,
    model: ToyModel,
    tokenizer: PreTrainedTokenizerFast,
    config: ToyPretrainConfig,
) -> None:
    """Model (safetensors), tokenizer files and preprocessor settings, as a real checkpoint lays them out."""
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "preprocessor_config.json").write_text(
        json.dumps(preprocessor_settings(config), indent=2) + "\n", encoding="utf-8"
    )


def _stage_files(out_dir: Path, stage: str) -> tuple[Path, Path]:
    """``(weights .safetensors, config and metrics .json)`` of a finished stage."""
    folder = out_dir / "stages"
    return folder / f"{stage}.safetensors", folder / f"{stage}.json"


def _load_stage(out_dir: Path, stage: str, config_json: dict, model: torch.nn.Module) -> dict | None:
    """Metrics of a finished stage saved with the same config (its weights loaded), else ``None``.

    Stages are safetensors and JSON; a pickled stage file (``<stage>.pt``, as older versions
    wrote) is never loaded: it is refused with a warning and the stage is trained again.
    """
    pickled = out_dir / "stages" / f"{stage}.pt"
    if pickled.is_file():
        warnings.warn(
            f"refusing {pickled}: pickled files are never loaded (they can run code); training the stage again",
            stacklevel=2,
        )
    weights, meta = _stage_files(out_dir, stage)
    if not (weights.is_file() and meta.is_file()):
        return None
    try:
        saved = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # a torn write: the stage runs again
    if not isinstance(saved, dict) or saved.get("config") != json.loads(json.dumps(config_json)):
        return None
    model.load_state_dict(load_file(str(weights)))
    return saved["metrics"]


def _save_stage(out_dir: Path, stage: str, config_json: dict, model: torch.nn.Module, metrics: dict) -> None:
    weights, meta = _stage_files(out_dir, stage)
    weights.parent.mkdir(parents=True, exist_ok=True)
    # Tied weights share storage, which safetensors refuses: store each tensor on its own.
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(weights))
    # The JSON last, written whole or not at all: a stage counts as done only once both are whole.
    write_text_atomic(meta, json.dumps({"config": config_json, "metrics": metrics}, indent=1) + "\n")


def pretrain(
    out_dir: Path | str,
    config: ToyPretrainConfig | None = None,
    progress: bool = True,
    command: str | None = None,
    keep_stages: bool = False,
) -> dict:
    """Run every stage, save the checkpoint and ``recipe.json``; return the recipe dict.

    Args:
        out_dir: the checkpoint directory (created).
        config: the recipe (default: :class:`ToyPretrainConfig`'s defaults).
        progress: tqdm bars.
        command: recorded in the recipe (default: this process's command line).
        keep_stages: keep the per-stage resume files after saving.
    """
    cfg = config or ToyPretrainConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    config_json = cfg.to_json()
    log = JsonLog(out / "pretrain_log.jsonl")
    started = time.perf_counter()
    log({"event": "start", "config": config_json})

    tokenizer = build_tokenizer(cfg.model.family, cfg.says_places)
    model = build_model(cfg, tokenizer)
    size = cfg.model.bank_size
    t0 = time.perf_counter()
    train_bank = build_bank(cfg.world, cfg.train_start, cfg.train_clips, cfg.bank_frames, size,
                            cfg.chroma_augment, cfg.seed, progress, "train clips")  # fmt: skip
    eval_bank = build_bank(cfg.world, cfg.eval_start, cfg.eval_clips, cfg.bank_frames, size,
                           cfg.chroma_augment, cfg.seed, progress, "held-out clips")  # fmt: skip
    timings: dict[str, float] = {"render": round(time.perf_counter() - t0, 1)}

    def sampler(stage: int) -> Sampler:
        return Sampler(train_bank, tokenizer, cfg.world, cfg.model, seed=[cfg.seed, stage])

    held_out = Sampler(eval_bank, tokenizer, cfg.world, cfg.model, seed=[cfg.seed, 1000])
    metrics: dict[str, Any] = {}

    t0 = time.perf_counter()
    metrics["stage1"] = _load_stage(out, "stage1", config_json, model)
    if metrics["stage1"] is None:
        torch.manual_seed(cfg.seed + 1)
        metrics["stage1"] = stage1_vision(model, tokenizer, sampler(1), held_out, cfg, log, progress)
        _save_stage(out, "stage1", config_json, model, metrics["stage1"])
    timings["stage1"] = round(time.perf_counter() - t0, 1)

    timings["tower_cache"] = 0.0

    def sources(stage: str) -> tuple[VisualSource, VisualSource]:
        """Tower outputs for a stage: computed if it trains the tower, else cached once (timed)."""
        if stage in cfg.train_vision:
            return VisualSource(model, train_bank, None), VisualSource(model, eval_bank, None)
        t0 = time.perf_counter()
        cached = (VisualSource.cached(model, train_bank, progress=progress),
                  VisualSource.cached(model, eval_bank, progress=progress))  # fmt: skip
        timings["tower_cache"] += round(time.perf_counter() - t0, 1)
        return cached

    source, held_out_source = sources("stage2")
    t0 = time.perf_counter()
    metrics["stage2"] = _load_stage(out, "stage2", config_json, model)
    if metrics["stage2"] is None:
        torch.manual_seed(cfg.seed + 2)
        metrics["stage2"] = stage2_align(
            model, sampler(2), held_out, source, held_out_source, cfg, log, progress
        )
        _save_stage(out, "stage2", config_json, model, metrics["stage2"])
    timings["stage2"] = round(time.perf_counter() - t0, 1)
    if cfg.train_vision:
        source, held_out_source = sources("stage3")  # the cache, if the tower stops training here

    t0 = time.perf_counter()
    questions = held_out_questions(
        eval_bank, cfg.world, cfg.eval_frames, cfg.eval_questions, cfg.seed, QUESTION_KINDS
    )
    metrics["stage3"] = _load_stage(out, "stage3", config_json, model)
    if metrics["stage3"] is None:
        torch.manual_seed(cfg.seed + 3)
        metrics["stage3"] = stage3_instruct(model, tokenizer, sampler(3), source, held_out_source, questions,
                                            cfg, log, progress, cfg.stage3_evals)  # fmt: skip
        _save_stage(out, "stage3", config_json, model, metrics["stage3"])
    timings["stage3"] = round(time.perf_counter() - t0, 1)

    save_checkpoint(out, model, tokenizer, cfg)
    timings["total"] = round(time.perf_counter() - started, 1)
    recipe = {
        "format": "toymllm-recipe-v1",
        "seed": cfg.seed,
        "command": command if command is not None else " ".join(sys.argv),
        "config": config_json,
        "parameters": sum(p.numel() for p in model.parameters()),
        "torch_threads": torch.get_num_threads(),
        "seconds": timings,
        "metrics": metrics,
    }
    (out / "recipe.json").write_text(json.dumps(recipe, indent=2) + "\n", encoding="utf-8")
    log({"event": "saved", "seconds": timings})
    if not keep_stages:
        shutil.rmtree(out / "stages", ignore_errors=True)
    return recipe


__all__ = [
    "JsonLog",
    "build_model",
    "preprocessor_settings",
    "pretrain",
    "save_checkpoint",
    "sincos_positions",
]
