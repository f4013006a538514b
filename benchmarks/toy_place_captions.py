"""Does a toy MLLM say where each object is, and read what each one does?

Usage::

    python benchmarks/toy_place_captions.py --model DIR [--clips 100] [--frames 8] [--out FILE]
    python benchmarks/toy_place_captions.py --model DIR --train 600 [--tasks places,actions] \
        [--cell-weight 1] --train-out DIR2

Asks "where is each thing?" on held-out toy videos, decodes greedily and scores the captions
object by object (:mod:`zsgrounding.toy.mllm.captions`). Chance for the first place is about 1 in 9
of the named objects (a 3 x 3 grid). Then two teacher-forced checks, given the true caption so
far: is the next place word right, with the clip's own video and with another clip's (what the
text alone predicts)? And in the actions checklist, is the word after each action (``none`` or
who does it) right, with the clip's video, with its frames played backwards, and with another
clip's? Prints them and writes them as JSON to ``--out`` when given.

``--train STEPS`` (or ``--train-places``) first asks whether the model can be taught to read
places, or actions, at all: it continues stage 2 of ``--model`` (a LLaVA-OneVision toy MLLM with
place words) for ``STEPS`` steps with nothing but the caption tasks ``--tasks`` (default
``places``; projector and language model, tower frozen, batch 32, lr 1e-3; ``--cell-weight`` adds
the recipe's cell loss), saves that copy to ``--train-out`` and checks it (``--out`` then also
holds the training summary). 600 steps of places take about 6 minutes on 2 threads.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when torch loads

import torch
from transformers import LlavaOnevisionForConditionalGeneration, PreTrainedTokenizerFast

from zsgrounding.toy.mllm.captions import action_word_check, place_caption_check, place_word_check
from zsgrounding.toy.mllm.config import StageSchedule, ToyPretrainConfig
from zsgrounding.toy.mllm.data import CAPTION_TASKS, Sampler, build_bank
from zsgrounding.toy.mllm.evaluate import EvalConfig
from zsgrounding.toy.mllm.stages import VisualSource, stage2_align
from zsgrounding.toy.mllm.train import save_checkpoint


def train_captions(
    model_dir: Path,
    out: Path,
    steps: int,
    cell_weight: float = 0.0,
    recipe: ToyPretrainConfig | None = None,
    progress: bool = True,
    tasks: tuple[str, ...] = ("places",),
) -> dict:
    """Continue stage 2 of the checkpoint ``model_dir`` with only the caption ``tasks`` (equal
    weights) for ``steps`` steps (tower frozen); save the copy to ``out`` and return the stage-2
    summary.

    ``recipe`` gives the data and sizes (default: the shipped recipe's); its caption tasks, stage-2
    schedules, tower training and cell loss are replaced here.
    """
    unknown = sorted(set(tasks) - set(CAPTION_TASKS))
    if unknown or not tasks:
        raise ValueError(f"caption tasks are among {sorted(CAPTION_TASKS)}, not {unknown or 'none'}")
    base = recipe or ToyPretrainConfig()
    cfg = replace(
        base,
        caption_tasks=dict.fromkeys(tasks, 1.0),
        stage2_projector=StageSchedule(0, 32, 1e-3, warmup=1),  # projector and LM together at once
        stage2=StageSchedule(steps, base.stage2.batch, 1e-3, warmup=min(20, steps)),
        train_vision=(),
        cell_weight=cell_weight,
        cell_stages=("stage2",),
    )
    tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)
    if tokenizer.convert_tokens_to_ids("top") == tokenizer.unk_token_id:
        raise ValueError(f"{model_dir}'s vocabulary has no place words: its recipe never said places")
    model = LlavaOnevisionForConditionalGeneration.from_pretrained(model_dir)
    if model.config.vision_config.image_size != cfg.model.image_size:
        raise ValueError(
            f"{model_dir} reads {model.config.vision_config.image_size} px frames, the recipe "
            f"{cfg.model.image_size} px"
        )
    size = cfg.model.bank_size
    banks = [
        build_bank(
            cfg.world, start, count, cfg.bank_frames, size, cfg.chroma_augment, cfg.seed, progress, name
        )
        for start, count, name in (
            (cfg.train_start, cfg.train_clips, "train clips"),
            (cfg.eval_start, cfg.eval_clips, "held-out clips"),
        )
    ]
    sources = [VisualSource.cached(model.eval(), bank, progress=progress) for bank in banks]
    samplers = [
        Sampler(bank, tokenizer, cfg.world, cfg.model, seed=[cfg.seed, stream])
        for bank, stream in zip(banks, (77, 1077), strict=True)
    ]
    torch.manual_seed(cfg.seed + 77)
    metrics = stage2_align(model, *samplers, *sources, cfg, lambda record: None, progress)
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, model, tokenizer, cfg)
    return {"steps": steps, "tasks": list(tasks), "cell_weight": cell_weight, **metrics}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a toy MLLM checkpoint folder")
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the result as JSON here")
    parser.add_argument(
        "--train", "--train-places", type=int, metavar="STEPS", help="first train a copy on captions alone"
    )
    parser.add_argument("--tasks", default="places", help="with --train: comma-separated caption tasks")
    parser.add_argument("--cell-weight", type=float, default=0.0, help="with --train: the cell loss")
    parser.add_argument("--train-out", type=Path, help="with --train: where the copy goes")
    args = parser.parse_args(argv)
    if not (args.model / "config.json").is_file():
        print(f"error: {args.model} is not a checkpoint folder (no config.json)", file=sys.stderr)
        return 2
    if args.train is not None and (args.train_out is None or args.train < 1):
        print("error: --train takes a positive step count and --train-out DIR", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    try:
        model, training = args.model, None
        if args.train is not None:
            tasks = tuple(t for t in args.tasks.split(",") if t)
            training = train_captions(args.model, args.train_out, args.train, args.cell_weight, tasks=tasks)
            model = args.train_out
            print(f"trained {args.train} steps into {model}: {json.dumps(training['held_out'])}")
        config = EvalConfig(frames=args.frames)
        result = place_caption_check(model, config, clips=args.clips)
        result["place_words"] = place_word_check(model, config, clips=args.clips)
        result["action_words"] = action_word_check(model, config, clips=args.clips)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if training is not None:
        result["training"] = training
    for example in result["examples"]:
        print(f"said: {example['said']}\ntrue: {example['true']}\n")
    print(json.dumps({"counts": result["counts"], "rates": result["rates"]}, indent=2))
    words = result["place_words"]
    print(
        f"place words, teacher forced ({words['words']}): {words['real']:.3f} with the clip's video, "
        f"{words['other_clip']:.3f} with another clip's"
    )
    actions = result["action_words"]
    groups = (("every action", actions), ("actions that reverse", actions["order_actions"]),
              ("moves", actions["moves"]))  # fmt: skip
    for name, rates in groups:
        print(
            f"action checklist, {name} ({rates['decisions']}), teacher forced: {rates['real']:.3f} with "
            f"the clip's video, {rates['reversed']:.3f} played backwards, {rates['other_clip']:.3f} "
            f"with another clip's; always none {rates['none']:.3f}"
        )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
