"""Time per video of the training-free grounder on toy clips, and where it goes.

    python benchmarks/zero_shot_time.py                      # the shipped toy model, 10 clips
    python benchmarks/zero_shot_time.py --model DIR --n 20   # any checkpoint

For every clip the grounder reports its stages (decode, decomposition, proposals, the MLLM
branches, scoring) and, measured by module hooks and around the LRA backwards, the time inside
the model's forward and backward passes. The table gives the mean per video and the share of the
time spent outside the model (target: under 10 %). The first clip is a warm-up and not counted.
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from zsgrounding.datasets import load_dataset
from zsgrounding.toy.proposer import ToyProposer
from zsgrounding.toy.world import ToyWorldConfig, make_dataset
from zsgrounding.zeroshot.decompose import Decomposer, RuleDecomposer
from zsgrounding.zeroshot.pipeline import ZeroShotConfig, ZeroShotGrounder

STAGES = (
    "decode",
    "decompose",
    "proposals",
    "mllm_spatial",
    "mllm_temporal",
    "scoring",
    "total",
    "model_forward",
    "model_backward",
    "outside_model",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="toy", help="checkpoint folder or hub id ('toy': the shipped one)")
    parser.add_argument("--n", type=int, default=10, help="clips timed (after one warm-up clip)")
    parser.add_argument("--num-frames", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1000, help="toy world seed of the clips")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        toy = Path(tmp) / "toy"
        make_dataset(toy, args.n + 1, ToyWorldConfig(seed=args.seed), progress=False)
        samples = load_dataset("toy", toy)
        grounder = ZeroShotGrounder(
            ZeroShotConfig(model=args.model, num_frames=args.num_frames),
            decomposer=Decomposer(rules=RuleDecomposer()),
            proposer=ToyProposer(toy),
        )
        rows = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the "no LLM endpoint, using rules" notice
            for i, sample in enumerate(samples):
                timings = grounder.ground_sample(sample).extras["timings"]
                if i > 0:
                    rows.append([timings[s] for s in STAGES])
    table = np.asarray(rows)
    mean = table.mean(axis=0)
    total = mean[STAGES.index("total")]
    print(
        f"model {args.model}, {args.num_frames} frames, {len(rows)} toy clips, "
        f"{torch.get_num_threads()} torch threads (full method: GTI + both prompts + TAS)\n"
    )
    print("| stage | mean seconds per video | share of total |")
    print("|---|---:|---:|")
    for name, value in zip(STAGES, mean, strict=True):
        print(f"| {name} | {value:.3f} | {100 * value / total:.1f} % |")
    share = mean[STAGES.index("outside_model")] / total
    per_video = table[:, STAGES.index("outside_model")] / table[:, STAGES.index("total")]
    print(
        f"\noutside the model's forward/backward passes: {100 * share:.1f} % of the time per video "
        f"(per video: {100 * per_video.min():.1f}-{100 * per_video.max():.1f} %)"
    )


if __name__ == "__main__":
    main()
