"""Compare the two paradigms (and an ablation and a baseline) on a folder of toy clips, from Python.

Run as written (renders 12 toy clips unless ``--toy-dir`` names a folder from ``stvg toy make``)::

    python examples/compare_paradigms.py --out runs/examples/compare

Every grounder sees the same proposals (here the toy world's object tracks), goes through the
same tube scorer and is scored by the same evaluator. The run resumes: a second call only
re-scores. ``stvg compare --dataset toy --gt DIR ...`` is the same from the shell.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from spacevllm.infer import SpaceVLLMGrounder
from spacevllm.model import SpaceVLLM
from zsgrounding.assets import resolve_model, resolve_spacevllm
from zsgrounding.baselines import BASELINES, BaselineGrounder
from zsgrounding.compare import compare_paradigms
from zsgrounding.datasets import load_dataset
from zsgrounding.mllm import load_adapter
from zsgrounding.toy.world import ToyWorldConfig, load_sidecar, make_dataset, sidecar_tracks
from zsgrounding.tubes import TubeScorer
from zsgrounding.zeroshot.decompose import Decomposer
from zsgrounding.zeroshot.pipeline import ZeroShotConfig, ZeroShotGrounder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--toy-dir", type=Path, default=None, help="a folder written by `stvg toy make`")
    parser.add_argument("--clips", type=int, default=12, help="clips to render when no --toy-dir")
    parser.add_argument("--model", default="toy", help="the zero-shot MLLM ('toy': the shipped one)")
    parser.add_argument("--spacevllm", default="toy", help="a SpaceVLLM checkpoint ('toy': the shipped one)")
    parser.add_argument("--num-frames", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("runs/examples/compare"))
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (the toy models gain nothing from more)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    toy = args.toy_dir
    if toy is None:
        toy = args.out / "toy"
        make_dataset(toy, args.clips, ToyWorldConfig(seed=31), progress=False)
    samples = load_dataset("toy", toy)
    videos = load_sidecar(toy)["videos"]

    scorer = TubeScorer()  # one tube scorer for every row
    config = ZeroShotConfig(model=args.model, num_frames=args.num_frames, scorer=scorer.config)
    adapter = load_adapter(resolve_model(args.model))  # loaded once, shared by both zero-shot rows
    rules = Decomposer(llm=None)  # the toy captions follow the offline rules' grammar
    spacevllm = SpaceVLLM.from_pretrained(resolve_spacevllm(args.spacevllm)).eval()
    grounders = {
        "zero-shot": ZeroShotGrounder(config, adapter=adapter, decomposer=rules),
        "zero-shot w/o TAS": ZeroShotGrounder(config.ablation(tas=False), adapter=adapter, decomposer=rules),
        "SpaceVLLM": SpaceVLLMGrounder(spacevllm, scorer=scorer),
        "colour": BaselineGrounder("colour", BASELINES["colour"], scorer, num_frames=args.num_frames),
    }

    comparison = compare_paradigms(
        samples, grounders, args.out / "comparison", tracks_for=lambda s: sidecar_tracks(videos[s.id])
    )
    print(comparison.to_markdown())
    # Per-sample numbers are there too, e.g. where the paradigms disagree most:
    zs, svl = comparison.runs["zero-shot"], comparison.runs["SpaceVLLM"]
    worst = max(range(len(comparison.ids)), key=lambda i: abs(zs.viou[i] - svl.viou[i]))
    print(
        f"largest gap: {comparison.ids[worst]} (zero-shot vIoU {zs.viou[worst]:.2f}, SpaceVLLM {svl.viou[worst]:.2f})"
    )
    print(f"files: {args.out / 'comparison'} (comparison.md, metric_bars.png, scatter_*.png)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
