"""Train the shipped toy MLLM with the full recipe and report time, loss and held-out accuracy.

Usage::

    python benchmarks/toy_pretrain.py --out zsgrounding/assets/toy_mllm
    python benchmarks/toy_pretrain.py --out /tmp/toy --quick          # a smoke run of a minute or two

Prints per stage: seconds, first and final training loss, held-out scores; then the held-out VQA
accuracy through ``load_adapter(out)`` at 8 and 20 frames, the attention check and the size of
the checkpoint. Everything is also written to ``<out>/recipe.json`` (training) and
``<out>/evaluation.json`` (evaluation).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: on a shared CPU spinning threads make each step
# several times slower. Read when torch loads, so it must be set before the import below.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from zsgrounding.toymllm.config import ToyPretrainConfig
from zsgrounding.toymllm.evaluate import EvalConfig, evaluate_checkpoint
from zsgrounding.toymllm.train import pretrain


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def _stage_line(name: str, metrics: dict) -> str:
    parts = [
        f"{metrics.get('seconds', 0):7.1f} s",
        f"loss {metrics.get('first_loss', 0):.3f} -> {metrics.get('final_loss', 0):.3f}",
    ]
    return f"  {name:<24}" + "  ".join(parts)


def print_recipe(recipe: dict) -> None:
    """Per-stage time, loss and held-out scores of a ``recipe.json``."""
    metrics = recipe["metrics"]
    print(f"trained in {recipe['seconds']['total']:.0f} s ({recipe['parameters'] / 1e6:.2f} M parameters)")
    print(f"  {'render clips':<24}{recipe['seconds']['render']:7.1f} s")
    print(_stage_line("stage 1 vision", metrics["stage1"]))
    print(
        f"  {'':<24}held-out shape binding {metrics['stage1']['held_out_binding_accuracy']:.3f}, "
        f"retrieval top-1 {metrics['stage1']['held_out_retrieval_top1']:.3f}"
    )
    print(f"  {'tower cache':<24}{recipe['seconds']['tower_cache']:7.1f} s")
    print(_stage_line("stage 2a projector", metrics["stage2"]["projector_only"]))
    print(_stage_line("stage 2b projector+LM", metrics["stage2"]["projector_and_lm"]))
    for task, held in metrics["stage2"]["held_out"].items():
        print(
            f"  {'':<24}held-out {task} captions: loss {held['caption_loss']:.3f}, "
            f"token accuracy {held['caption_token_accuracy']:.3f}"
        )
    print(_stage_line("stage 3 instruct", metrics["stage3"]))
    print(f"  {'':<24}held-out (training path): {json.dumps(metrics['stage3']['held_out'])}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")
    parser.add_argument(
        "--quick", action="store_true", help="the short test schedule instead of the full one"
    )
    parser.add_argument("--eval-only", action="store_true", help="evaluate an already trained --out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--eval-clips", type=int, default=120, help="held-out videos for the final evaluation"
    )
    parser.add_argument("--per-kind", type=int, default=60, help="held-out questions per kind")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    config = ToyPretrainConfig.quick(seed=args.seed) if args.quick else ToyPretrainConfig(seed=args.seed)
    command = " ".join([Path(sys.executable).name, *sys.argv])
    start = time.perf_counter()
    if args.eval_only:
        recipe = json.loads((args.out / "recipe.json").read_text(encoding="utf-8"))
    else:
        recipe = pretrain(args.out, config, progress=not args.no_progress, command=command)
    print_recipe(recipe)

    eval_config = EvalConfig(
        world=config.world,
        start=config.eval_start,
        clips=min(args.eval_clips, config.eval_clips) if args.quick else args.eval_clips,
        per_kind=args.per_kind,
        seed=args.seed,
    )
    frames = (config.eval_frames, 20) if not args.quick else (config.eval_frames,)
    report = evaluate_checkpoint(args.out, frames, eval_config, attention_clips=0 if args.quick else 16,
                                 progress=not args.no_progress)  # fmt: skip
    report["checkpoint_mb"] = round(_size_mb(args.out), 2)
    report["seconds"] = round(time.perf_counter() - start, 1)
    (args.out / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for key, value in report.items():
        if key.startswith("vqa_"):
            shown = {k: v for k, v in value.items() if k != "config"}
            print(f"held-out VQA through load_adapter, {value['frames']} frames: {json.dumps(shown)}")
    if "attention" in report:
        print(f"attention check: {json.dumps(report['attention'])}")
    print(f"checkpoint {report['checkpoint_mb']:.2f} MB; wall time {report['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
