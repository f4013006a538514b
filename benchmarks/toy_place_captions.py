"""Does a toy MLLM trained with the ``places`` caption task say where each object is?

Usage::

    python benchmarks/toy_place_captions.py --model DIR [--clips 100] [--frames 8] [--out FILE]

Asks "where is each thing?" on held-out toy videos, decodes greedily and scores the captions
object by object (:mod:`zsgrounding.toymllm.captions`); prints the rates and writes them as JSON
to ``--out`` when given. Chance for the first place is about 1 in 9 (a 3 x 3 grid).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when torch loads

import torch

from zsgrounding.toymllm.captions import place_caption_check
from zsgrounding.toymllm.evaluate import EvalConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a toy MLLM checkpoint folder")
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the result as JSON here")
    args = parser.parse_args(argv)
    if not (args.model / "config.json").is_file():
        print(f"error: {args.model} is not a checkpoint folder (no config.json)", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    try:
        result = place_caption_check(args.model, EvalConfig(frames=args.frames), clips=args.clips)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for example in result["examples"]:
        print(f"said: {example['said']}\ntrue: {example['true']}\n")
    print(json.dumps({"counts": result["counts"], "rates": result["rates"]}, indent=2))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
