"""Evaluate the training-free grounder on an HC-STVG annotation file, resumably.

With real data (the HC-STVG v2 val file and its videos; proposals extracted once into a store)::

    python examples/evaluate_hcstvg.py --gt anno_v2/val_v2.json --videos hcstvg_v2/videos \
        --version 2 --model llava-hf/llava-onevision-qwen2-7b-ov-hf --out runs/hcstvg_v2

Run as written, it writes toy clips with an HC-STVG v1 annotation file and evaluates on them::

    python examples/evaluate_hcstvg.py --out runs/examples/hcstvg

The same run from the shell is ``stvg eval --dataset hcstvg-v2 --gt ... --videos ... --out ...``;
under ``torchrun --nproc_per_node N`` every rank takes every N-th sample.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from zsgrounding.datasets import load_dataset
from zsgrounding.proposals.source import make_proposer
from zsgrounding.runner import RunConfig, run_dataset
from zsgrounding.toy.proposer import ToyProposer
from zsgrounding.toy.world import ToyWorldConfig, make_dataset
from zsgrounding.zeroshot.pipeline import ZeroShotConfig, ZeroShotGrounder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gt", type=Path, default=None, help="HC-STVG annotation JSON (default: toy clips)")
    parser.add_argument("--videos", type=Path, default=None, help="folder of the annotation's videos")
    parser.add_argument("--version", type=int, choices=(1, 2), default=1)
    parser.add_argument("--model", default="toy")
    parser.add_argument("--num-frames", type=int, default=20)
    parser.add_argument("--max-samples", type=int, default=None)
    parser.add_argument("--toy-clips", type=int, default=8, help="clips written when no --gt is given")
    parser.add_argument("--out", type=Path, default=Path("runs/examples/hcstvg"))
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (the toy models gain nothing from more)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.gt is None:
        toy = args.out / "toy"  # annotations.json here is in the HC-STVG v1 format
        make_dataset(toy, args.toy_clips, ToyWorldConfig(seed=11), progress=False)
        args.gt, args.videos, args.version = toy / "annotations.json", toy / "videos", 1
        proposer = ToyProposer(toy)
    else:
        proposer = make_proposer(store_dir=args.out / "tracks")

    samples = load_dataset(f"hcstvg-v{args.version}", args.gt, video_root=args.videos)
    samples = samples[: args.max_samples]
    grounder = ZeroShotGrounder(
        ZeroShotConfig(model=args.model, num_frames=args.num_frames), proposer=proposer
    )
    # Results stream to results.rank0.jsonl; a killed run started again skips what is done.
    summary = run_dataset(samples, grounder, RunConfig(out_dir=args.out / "run"))
    print(f"grounded {summary.done}, skipped {summary.skipped}, failed {summary.failed}")
    print({k: summary.metrics[k] for k in ("m_tIoU", "m_vIoU", "vIoU@0.3", "vIoU@0.5")})
    print(f"metrics table: {summary.paths['metrics_md']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
