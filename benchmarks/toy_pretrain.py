"""Train the shipped toy MLLM with the full recipe and report time, loss and held-out accuracy.

Usage::

    python benchmarks/toy_pretrain.py --out zsgrounding/toy/assets/toy_mllm
    python benchmarks/toy_pretrain.py --out /tmp/toy --quick          # a smoke run of a minute or two
    python benchmarks/toy_pretrain.py --out /tmp/toy_qwen --family qwen2_vl   # the Qwen2-VL model

The same as ``stvg toy pretrain --out DIR``. Prints per stage: seconds, first and final training
loss, held-out scores; then the held-out VQA accuracy through ``load_adapter(out)`` at 8 and 20
frames (1,050 questions on 600 held-out videos, per question kind and case, with binomial
standard errors), the same questions on training videos, the token order check, the query token
check, the attention check and the size of the checkpoint. Everything is also written to
``<out>/recipe.json`` (training) and ``<out>/evaluation.json`` (evaluation).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: on a shared CPU spinning threads make each step
# several times slower. Read when torch loads, so it must be set before the import below.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from zsgrounding.toy.mllm.build import build_toy_mllm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")
    parser.add_argument(
        "--quick", action="store_true", help="the short test schedule instead of the full one"
    )
    parser.add_argument("--eval-only", action="store_true", help="evaluate an already trained --out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--family",
        choices=("llava_onevision", "qwen2_vl"),
        default="llava_onevision",
        help="model class (qwen2_vl: a tower over frame pairs, M-RoPE positions)",
    )
    parser.add_argument(
        "--eval-clips", type=int, default=600, help="held-out videos for the final evaluation"
    )
    parser.add_argument(
        "--per-kind", type=int, default=None, help="held-out questions per kind (150; 60 with --quick)"
    )
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    build_toy_mllm(
        args.out,
        quick=args.quick,
        seed=args.seed,
        family=args.family,
        eval_clips=args.eval_clips,
        per_kind=args.per_kind,
        eval_only=args.eval_only,
        progress=not args.no_progress,
        command=" ".join([Path(sys.executable).name, *sys.argv]),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
