"""Fine-tune SpaceVLLM on toy-world data from Python, then ground a held-out clip with it.

Run as written (a short run from the shipped toy MLLM; minutes on a CPU)::

    python examples/finetune_spacevllm.py --out runs/examples/finetune

The same run from the shell is ``stvg train --config FILE.yaml`` (the YAML holds the fields of
:class:`spacevllm.train.TrainConfig`); on several GPUs, ``accelerate launch .venv/bin/stvg train --config
FILE.yaml``. For a real model, ``--base`` takes a LLaVA-OneVision checkpoint (folder or hub id)
and the data a JSONL converted with ``stvg convert`` from HC-STVG / VidSTG annotations.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from spacevllm.convert import convert
from spacevllm.infer import SpaceVLLMGrounder
from spacevllm.model import SpaceVLLM
from spacevllm.train import TrainConfig, train
from zsgrounding.assets import resolve_model
from zsgrounding.datasets import load_dataset
from zsgrounding.metrics import evaluate
from zsgrounding.toy.world import ToyWorldConfig, make_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="toy", help="base MLLM ('toy': the shipped toy-world model)")
    parser.add_argument("--train-clips", type=int, default=64)
    parser.add_argument("--eval-clips", type=int, default=8)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("runs/examples/finetune"))
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (the toy models gain nothing from more)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    # 1. Data: toy clips -> one JSONL of `stvg` records (the format every source converts to).
    make_dataset(args.out / "train_clips", args.train_clips, ToyWorldConfig(seed=21), progress=False)
    records = convert("toy", args.out / "train_clips", args.out / "train.jsonl")
    print(f"{len(records)} training records in {args.out / 'train.jsonl'}")

    # 2. Fine-tune: new query tokens, decoder and head at a higher rate than the base weights.
    config = TrainConfig(
        base_model=str(resolve_model(args.base)),
        output_dir=str(args.out / "run"),
        data=[{"path": str(args.out / "train.jsonl")}],
        num_frames=args.frames,
        lr=1e-4,
        new_parts_lr=1e-3,
        batch_size=4,
        max_steps=args.steps,
        cpu=True,
    )
    summary = train(config)  # resumable: run it again after a kill and it continues
    print(f"trained {summary.steps} steps, final loss {summary.final_losses['loss']:.3f}")

    # 3. Ground held-out clips and score them with the shared evaluator.
    model = SpaceVLLM.from_pretrained(summary.final_dir).eval()
    grounder = SpaceVLLMGrounder(model)
    make_dataset(args.out / "eval_clips", args.eval_clips, ToyWorldConfig(seed=22), progress=False)
    samples = load_dataset("toy", args.out / "eval_clips")
    tubes = {s.id: grounder.ground_sample(s).tube for s in samples}
    print(evaluate(tubes, {s.id: s.gt for s in samples}).summary())
    print(f"checkpoint: {summary.final_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
