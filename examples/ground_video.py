"""Ground one sentence in one video from Python, with the training-free method.

Run as written (it renders a toy clip, grounds its caption with the shipped toy MLLM and writes
an annotated GIF)::

    python examples/ground_video.py --out runs/examples/ground

On your own clip, with a real MLLM and Grounding DINO + SAM2 proposals (GPU advised)::

    python examples/ground_video.py --video clip.mp4 --query "the man in the red shirt who turns around" \
        --model llava-hf/llava-onevision-qwen2-7b-ov-hf --out runs/mine
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from zsgrounding.datasets import load_dataset
from zsgrounding.proposals.source import make_proposer
from zsgrounding.toy.proposer import ToyProposer
from zsgrounding.toy.world import ToyWorldConfig, make_dataset
from zsgrounding.viz import render_result
from zsgrounding.zeroshot.pipeline import ZeroShotConfig, ZeroShotGrounder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=None, help="a video file (default: a toy clip)")
    parser.add_argument("--query", default=None, help="the sentence (default: the toy clip's caption)")
    parser.add_argument("--model", default="toy", help="MLLM folder or hub id ('toy': the shipped one)")
    parser.add_argument("--num-frames", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("runs/examples/ground"))
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (the toy models gain nothing from more)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    gt = None
    if args.video is None:  # a toy clip: its objects' tracks stand in for Grounding DINO + SAM2
        toy = args.out / "toy"
        make_dataset(toy, 1, ToyWorldConfig(seed=7), progress=False)
        sample = load_dataset("toy", toy)[0]
        video, query, gt = sample.video, args.query or sample.sentence, sample.gt.tube
        proposer = ToyProposer(toy)
    else:
        if not args.query:
            parser.error("--query is needed with --video")
        video, query = args.video, args.query
        proposer = make_proposer(store_dir=args.out / "tracks")  # extracted once, then reused

    grounder = ZeroShotGrounder(
        ZeroShotConfig(model=args.model, num_frames=args.num_frames), proposer=proposer
    )
    result = grounder.ground(video, query)

    tube = result.tube
    print(f"query: {query!r}")
    print(f"sub-queries: {result.extras['sub_queries']}")
    print(
        f"tube: frames [{tube.start}, {tube.end}), {len(tube)} boxes; first box {tube.boxes[:1].round(1).tolist()}"
    )
    print(f"grounding tokens: {result.extras['grounding_token']}")
    paths = render_result(args.out, video, result, query, gt=gt)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
