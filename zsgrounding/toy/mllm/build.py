"""Build the toy MLLM end to end: train every stage, evaluate, write the report.

Shared by ``stvg toy pretrain`` and ``benchmarks/toy_pretrain.py``. The training resumes per
stage (:func:`zsgrounding.toy.mllm.train.pretrain`), so a killed build loses at most one stage.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from zsgrounding.toy.mllm.config import ToyPretrainConfig
from zsgrounding.toy.mllm.evaluate import ORDER_MODES, EvalConfig, evaluate_checkpoint
from zsgrounding.toy.mllm.train import pretrain

__all__ = ["build_toy_mllm", "recipe_lines", "report_lines"]


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def _stage_line(name: str, metrics: dict) -> str:
    return (
        f"  {name:<24}{metrics.get('seconds', 0):7.1f} s  "
        f"loss {metrics.get('first_loss', 0):.3f} -> {metrics.get('final_loss', 0):.3f}"
    )


def recipe_lines(recipe: dict) -> list[str]:
    """Per-stage time, loss and held-out scores of a ``recipe.json``, as printable lines."""
    metrics = recipe["metrics"]
    stage1, stage2 = metrics["stage1"], metrics["stage2"]
    lines = [
        f"trained in {recipe['seconds']['total']:.0f} s ({recipe['parameters'] / 1e6:.2f} M parameters)",
        f"  {'render clips':<24}{recipe['seconds']['render']:7.1f} s",
        _stage_line("stage 1 vision", stage1),
        f"  {'':<24}held-out shape binding {stage1['held_out_binding_accuracy']:.3f}, "
        + (
            f"motion binding {stage1['held_out_motion_binding_accuracy']:.3f}, "
            if "held_out_motion_binding_accuracy" in stage1
            else ""
        )
        + f"retrieval top-1 {stage1['held_out_retrieval_top1']:.3f}",
        f"  {'tower cache':<24}{recipe['seconds']['tower_cache']:7.1f} s",
        _stage_line("stage 2a projector", stage2["projector_only"]),
        _stage_line("stage 2b projector+LM", stage2["projector_and_lm"]),
    ]
    for task, held in stage2["held_out"].items():
        lines.append(
            f"  {'':<24}held-out {task} captions: loss {held['caption_loss']:.3f}, "
            f"token accuracy {held['caption_token_accuracy']:.3f}"
        )
    lines.append(_stage_line("stage 3 instruct", metrics["stage3"]))
    lines.append(f"  {'':<24}held-out (training path): {json.dumps(metrics['stage3']['held_out'])}")
    return lines


def report_lines(report: dict) -> list[str]:
    """The evaluation report of :func:`build_toy_mllm`, as printable lines."""
    lines = []
    for key, value in report.items():
        if key.startswith("vqa_") or key == "seen_clips":
            what = (
                "the same questions on training clips"
                if key == "seen_clips"
                else "held-out VQA through load_adapter"
            )
            shown = {k: v for k, v in value.items() if k != "config"}
            lines.append(f"{what}, {value['frames']} frames: {json.dumps(shown)}")
    if "token_order" in report:
        order = report["token_order"]
        lines.append(f"token order check, {order['frames']} frames, {order['count']} questions (accuracy):")
        kinds = sorted(k for k in order["plain"] if k.startswith("kind/"))
        lines.append(f"  {'input':<18}{'overall':>8}" + "".join(f"{k[5:]:>8}" for k in kinds))
        for mode in ORDER_MODES:
            row = order[mode]
            lines.append(f"  {mode:<18}{row['overall']:8.3f}" + "".join(f"{row[k]:8.3f}" for k in kinds))
    if "query_tokens" in report:
        check = report["query_tokens"]
        lines.append(
            f"query token check, {check['frames']} frames, {check['clips']} clips: track-selection "
            f"accuracy of each query token's attention (chance {check['chance']:.3f}):"
        )
        for layer, row in check["accuracy"].items():
            low, high = min(row, key=row.get), max(row, key=row.get)
            lines.append(f"  layer {layer}: {row[low]:.3f} ({low!r}) to {row[high]:.3f} ({high!r})")
    if "attention" in report:
        lines.append(f"attention check: {json.dumps(report['attention'])}")
    lines.append(f"checkpoint {report['checkpoint_mb']:.2f} MB; wall time {report['seconds']:.0f} s")
    return lines


def build_toy_mllm(
    out: Path | str,
    quick: bool = False,
    seed: int = 0,
    family: str = "llava_onevision",
    eval_clips: int = 600,
    per_kind: int | None = None,
    eval_only: bool = False,
    progress: bool = True,
    command: str | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train (unless ``eval_only``) and evaluate the toy MLLM in ``out``.

    Args:
        out: checkpoint folder (``save_pretrained`` layout plus ``recipe.json``).
        quick: the short test schedule (:meth:`ToyPretrainConfig.quick`) instead of the full one.
        seed: the recipe's seed.
        family: the model class, ``llava_onevision`` or ``qwen2_vl``
            (:meth:`ToyPretrainConfig.qwen2_vl`); with ``eval_only`` the checkpoint's own.
        eval_clips: held-out videos of the final evaluation.
        per_kind: held-out questions per question kind; by default 150 (1,050 questions, a
            standard error of about 1 point), 60 on the short schedule.
        eval_only: evaluate an already trained ``out``.
        progress: tqdm bars.
        command: recorded in ``recipe.json``.
        echo: where the report lines go.

    Returns:
        The evaluation report, also written to ``out/evaluation.json``: ``vqa_<F>_frames``
        (accuracy per question kind); ``seen_clips``: the same at the first frame count on
        training clips, whose gap to the held-out accuracy is memorisation; full schedule only:
        ``token_order`` (:func:`~zsgrounding.toy.mllm.evaluate.token_order_check`), ``query_tokens``
        (:func:`~zsgrounding.toy.mllm.evaluate.query_token_check`) and ``attention``
        (special-token hit rates); ``checkpoint_mb`` and ``seconds``.
    """
    out = Path(out)
    start = time.perf_counter()
    recipe = json.loads((out / "recipe.json").read_text(encoding="utf-8")) if eval_only else None
    if recipe is not None:  # evaluate the checkpoint's own family
        family = recipe["config"]["model"].get("family", "llava_onevision")
    if quick:
        config = ToyPretrainConfig.quick(family, seed=seed)
    elif family == "qwen2_vl":
        config = ToyPretrainConfig.qwen2_vl(seed=seed)
    else:
        config = ToyPretrainConfig(seed=seed)
    if recipe is None:
        recipe = pretrain(out, config, progress=progress, command=command)
    for line in recipe_lines(recipe):
        echo(line)

    eval_config = EvalConfig(
        world=config.world,
        start=config.eval_start,
        clips=min(eval_clips, config.eval_clips) if quick else eval_clips,
        per_kind=per_kind or (60 if quick else 150),
        seed=seed,
    )
    trained_on = recipe["config"]  # the checkpoint's own training range, also for --eval-only
    seen = replace(eval_config, start=trained_on["train_start"], clips=trained_on["train_clips"])
    frames = (config.eval_frames,) if quick else (config.eval_frames, 20)
    report = evaluate_checkpoint(
        out, frames, eval_config, attention_clips=0 if quick else 16, progress=progress, order_check=not quick,
        query_clips=0 if quick else 150, seen=seen,
    )  # fmt: skip
    report["checkpoint_mb"] = round(_size_mb(out), 2)
    report["seconds"] = round(time.perf_counter() - start, 1)
    (out / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for line in report_lines(report):
        echo(line)
    return report
