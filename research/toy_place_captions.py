"""Does a toy MLLM say where each object is, and read what each one does?

Usage::

    python -m research.toy_place_captions --model DIR [--clips 100] [--frames 8] [--out FILE]
    python -m research.toy_place_captions --model DIR --train 600 [--tasks places,actions] \
        [--cell-weight 1] --train-out DIR2

(from the repository root).

Asks "where is each thing?" on held-out toy videos, decodes greedily and scores the captions
object by object (:mod:`research.captions`). Chance for the first place is about 1 in 9
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
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when torch loads

import torch

from research.captions import action_word_check, place_caption_check, place_word_check, train_captions
from zsgrounding.toy.mllm.evaluate import EvalConfig


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
