"""Stage 1 of the toy MLLM recipe alone, in variants, each scored by linear probes of its tower.

Usage::

    python -m research.toy_stage1 --out runs/toy_stage1                    # every row
    python -m research.toy_stage1 --out runs/toy_stage1 --rows before recipe
    python -m research.toy_stage1 --checkpoint zsgrounding/toy/assets/toy_mllm  # probe a checkpoint

(from the repository root).

Each row trains the vision tower with the sigmoid loss (the recipe's seed, 2000 training clips)
and reports the held-out shape binding (the true frame description against the same one with a
shape changed), the retrieval top-1 among 256 frames, and the probes of
:mod:`research.probe` on 120 held-out clips: can a linear classifier read each
object's shape, colour, size and place from the tower's patches at the object? Rows:

- ``before``: SigLIP's learned position table, no place words, whole frames only, 800 steps;
- ``zoom``: the same with half of the views a half-size window around an object, scaled up;
- ``learned``: zoom and 1600 steps, the stage 1 of the previous shipped recipe;
- ``input128``: whole frames at 128 px (8 x 8 tokens a frame instead of 6 x 6), 800 steps;
- ``wide``: zoom with a tower of hidden 128 and 4 layers, 800 steps;
- ``sincos``: ``learned`` with a fixed 2-D sine-cosine position table;
- ``places``: ``learned`` with half of the descriptions saying where each object is ("a red
  circle at the top left") and a third negative round moving one object to a nearby place; the
  ``place`` column is the held-out place binding (true description against the moved one);
- ``recipe``: both, the shipped recipe's stage 1.

Results go to ``<out>/stage1.md`` and ``<out>/stage1.json`` as each row finishes; a rerun skips
the rows already there. The ``projected`` probes of a stage-1-only model read an untrained
projector; they mean something for a finished checkpoint (``--checkpoint``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when torch loads

import torch
from transformers import LlavaOnevisionForConditionalGeneration

from research.probe import PROBED, tower_probe
from zsgrounding.toy.mllm.config import PLACELESS_RECIPE, StageSchedule, ToyPretrainConfig
from zsgrounding.toy.mllm.data import Sampler, build_bank
from zsgrounding.toy.mllm.stages import stage1_vision
from zsgrounding.toy.mllm.tokenizer import build_tokenizer
from zsgrounding.toy.mllm.train import build_model


def variants(quick: bool = False) -> dict[str, ToyPretrainConfig]:
    """The rows; ``quick``: the same variants of the tiny test recipe, a few steps each."""
    recipe = ToyPretrainConfig()
    short = replace(recipe.stage1, steps=800)
    if quick:
        recipe = ToyPretrainConfig.quick(
            train_clips=40, eval_clips=10, stage1=StageSchedule(4, 16, 3e-3, warmup=1)
        )
        short = replace(recipe.stage1, steps=2)
    # The rows before places keep their meaning whatever the defaults become.
    learned = replace(recipe, **PLACELESS_RECIPE)
    return {
        "before": replace(learned, stage1=short, stage1_zoom=0.0),
        "zoom": replace(learned, stage1=short),
        "learned": learned,
        "input128": replace(
            learned, stage1=short, stage1_zoom=0.0, model=replace(learned.model, image_size=128)
        ),
        "wide": replace(
            learned,
            stage1=short,
            model=replace(learned.model, vision_hidden=128, vision_layers=4, vision_intermediate=256),
        ),
        "sincos": replace(learned, vision_positions="sincos"),
        "places": replace(learned, stage1_places=0.5, stage1_negatives=3),
        "recipe": replace(recipe, stage1_places=0.5, stage1_negatives=3, vision_positions="sincos"),
    }


def run_row(
    config: ToyPretrainConfig, threads: int, progress: bool = True, probe_clips: int = 120
) -> dict[str, Any]:
    """Stage 1 of ``config`` as the recipe seeds it, then the probes."""
    torch.set_num_threads(threads)
    tokenizer = build_tokenizer(places=config.says_places)
    model = build_model(config, tokenizer)
    size = config.model.image_size
    start = time.perf_counter()
    bank = build_bank(config.world, config.train_start, config.train_clips, config.bank_frames, size,
                      config.chroma_augment, config.seed, False)  # fmt: skip
    held = build_bank(config.world, config.eval_start, config.eval_clips, config.bank_frames, size,
                      config.chroma_augment, config.seed, False)  # fmt: skip
    sampler = Sampler(bank, tokenizer, config.world, config.model, seed=[config.seed, 1])
    held_out = Sampler(held, tokenizer, config.world, config.model, seed=[config.seed, 1000])
    torch.manual_seed(config.seed + 1)
    metrics = stage1_vision(model, tokenizer, sampler, held_out, config, lambda record: None, progress)
    seconds = time.perf_counter() - start
    return {
        "seconds": round(seconds, 1),
        "final_loss": round(metrics["final_loss"], 4),
        "binding": metrics["held_out_binding_accuracy"],
        "top1": metrics["held_out_retrieval_top1"],
        "place_binding": metrics.get("held_out_place_binding_accuracy"),
        "probes": tower_probe(model, config.world, size, clips=probe_clips),
    }


def table(rows: dict[str, dict[str, Any]], where: str = "tower") -> str:
    """Markdown: per row its training numbers (if it trained) and each probe as accuracy (chance)."""
    trained = all("seconds" in row for row in rows.values())
    head = ["variant", *(["steps", "s", "loss", "binding", "place", "top-1"] if trained else []), *PROBED]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in rows.items():
        cells = [name]
        if trained:
            place = row.get("place_binding")
            cells += [str(row["steps"]), f"{row['seconds']:.0f}", f"{row['final_loss']:.3f}",
                      f"{row['binding']:.3f}", "-" if place is None else f"{place:.3f}",
                      f"{row['top1']:.3f}"]  # fmt: skip
        for probe in PROBED:
            score = row["probes"][f"{where}/{probe}"]
            cells.append(f"{score['accuracy']:.3f} ({score['chance']:.2f})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="results folder (rows resume)")
    parser.add_argument("--rows", nargs="+", choices=sorted(variants()), default=list(variants()))
    parser.add_argument("--checkpoint", type=Path, help="only probe this saved toy MLLM")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--quick", action="store_true", help="tiny recipe, a few steps, 10 probe clips (smoke test)"
    )
    args = parser.parse_args(argv)
    if args.checkpoint is not None:
        torch.set_num_threads(args.threads)
        model = LlavaOnevisionForConditionalGeneration.from_pretrained(args.checkpoint).eval()
        size = model.config.vision_config.image_size
        probes = tower_probe(model, ToyPretrainConfig().world, size)
        rows = {str(args.checkpoint): {"probes": probes}}
        print("Linear probes on 120 held-out clips: accuracy (majority-class share of the test objects).")
        print("\nTower patches at each object:\n" + table(rows, "tower"))
        print(
            "\nThe projected, pooled token at each object's centre (what the LM reads):\n"
            + table(rows, "projected")
        )
        return 0
    if args.out is None:
        parser.error("--out is required unless --checkpoint is given")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "stage1.json"
    done: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.is_file() else {}
    configs = variants(args.quick)
    probe_clips = 10 if args.quick else 120
    for name in args.rows:
        if name not in done:
            print(f"row {name} ...", flush=True)
            done[name] = {
                "steps": configs[name].stage1.steps,
                **run_row(configs[name], args.threads, not args.no_progress, probe_clips),
            }
            path.write_text(json.dumps(done, indent=2) + "\n")
    rows = {name: done[name] for name in args.rows}
    text = (
        f"Tower probes on {probe_clips} held-out clips: accuracy (majority-class share of the test objects).\n"
        "binding: held-out true description beats the shape-changed one; place: beats the one with an\n"
        "object moved to a nearby place (rows whose descriptions say places); top-1: retrieval in 256.\n\n"
        + table(rows)
        + "\n"
    )
    (args.out / "stage1.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
