"""Speed of the toy MLLM recipe's steps with the next batch made ahead on a worker thread.

Usage::

    python benchmarks/toy_prefetch.py [--steps 60] [--rounds 2] [--clips 300] [--threads 2]

Runs ``--steps`` steps of stage 1 (tower, batch 64) and of stage 3 (the language model on cached
tower outputs, batch 32, 2 to 8 frames) of the shipped recipe, from the same fresh model, with
batches made in the loop (plain, as before) and on a worker thread (:class:`Prefetcher`),
alternating ``--rounds`` times so that both see the same machine. Prints seconds per step and
the ratio plain / prefetch (above 1: prefetch is faster), and checks that both trained the same
weights. Batch making alone is timed too: it is what prefetching can hide.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from dataclasses import replace

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when torch loads

import numpy as np
import torch

from zsgrounding.toymllm.config import ToyPretrainConfig
from zsgrounding.toymllm.data import Sampler, build_bank, held_out_questions
from zsgrounding.toymllm.stages import VisualSource, stage1_vision, stage3_instruct
from zsgrounding.toymllm.tokenizer import build_tokenizer
from zsgrounding.toymllm.train import build_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clips", type=int, default=300, help="training clips rendered")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.steps < 2 or args.rounds < 1 or args.clips < 8:
        print("error: --steps >= 2, --rounds >= 1 and --clips >= 8", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    base = ToyPretrainConfig()
    cfg = replace(
        base,
        train_clips=args.clips,
        eval_clips=16,
        stage1=replace(base.stage1, steps=args.steps, warmup=1),
        stage3=replace(base.stage3, steps=args.steps, warmup=1),
    )
    tokenizer = build_tokenizer(cfg.model.family, cfg.says_places)
    torch.manual_seed(0)
    fresh = build_model(cfg, tokenizer)
    size = cfg.model.bank_size
    bank = build_bank(
        cfg.world,
        cfg.train_start,
        cfg.train_clips,
        cfg.bank_frames,
        size,
        cfg.chroma_augment,
        cfg.seed,
        False,
    )
    eval_bank = build_bank(
        cfg.world, cfg.eval_start, cfg.eval_clips, cfg.bank_frames, size, cfg.chroma_augment, cfg.seed, False
    )
    source = VisualSource.cached(fresh, bank, progress=False)
    held_source = VisualSource.cached(fresh, eval_bank, progress=False)
    questions = held_out_questions(eval_bank, cfg.world, cfg.eval_frames, 2, cfg.seed, ("colour",))

    def sampler(stream: int) -> Sampler:
        return Sampler(bank, tokenizer, cfg.world, cfg.model, seed=[cfg.seed, stream])

    def run(stage: str, prefetch: bool) -> tuple[float, torch.nn.Module]:
        model = copy.deepcopy(fresh)
        torch.manual_seed(1)
        held = Sampler(eval_bank, tokenizer, cfg.world, cfg.model, seed=[cfg.seed, 1000])
        start = time.perf_counter()
        if stage == "stage 1":
            stage1_vision(model, tokenizer, sampler(1), held, cfg, lambda r: None, False, prefetch)
        else:
            stage3_instruct(model, tokenizer, sampler(3), source, held_source, questions, cfg,
                            lambda r: None, False, 0, prefetch)  # fmt: skip
        return (time.perf_counter() - start) / args.steps, model

    def making(stage: str) -> float:
        """Seconds a step spends making its batch (what a plain loop waits for)."""
        source_sampler, rng = sampler(1 if stage == "stage 1" else 3), np.random.default_rng(0)
        phase = cfg.curriculum[-1]
        start = time.perf_counter()
        for _ in range(args.steps):
            if stage == "stage 1":
                rows, texts, hard = source_sampler.frame_batch(
                    cfg.stage1.batch, cfg.stage1_negatives, cfg.stage1_zoom, cfg.stage1_places
                )
                source_sampler.frame_pixels(rows)
                tokenizer(texts + hard, padding=True, return_tensors="pt", add_special_tokens=False)
            else:
                frames = int(rng.choice(cfg.train_frames))
                source_sampler.qa_batch(cfg.stage3.batch, frames, phase, cfg.turns, cfg.caption_fraction,
                                        cfg.caption_tasks)  # fmt: skip
        return (time.perf_counter() - start) / args.steps

    print(f"{args.steps} steps a run, {args.rounds} rounds, {args.threads} threads, {args.clips} clips")
    print(
        "| stage | batch making s/step | plain s/step | prefetch s/step | plain / prefetch | same weights |"
    )
    print("|---|---:|---:|---:|---:|---|")
    for stage in ("stage 1", "stage 3"):
        times: dict[bool, list[float]] = {False: [], True: []}
        weights: dict[bool, dict[str, torch.Tensor]] = {}
        for _ in range(args.rounds):
            for prefetch in (False, True):
                seconds, model = run(stage, prefetch)
                times[prefetch].append(seconds)
                weights[prefetch] = model.state_dict()
        same = all(torch.equal(weights[False][k], weights[True][k]) for k in weights[False])
        plain, ahead = float(np.median(times[False])), float(np.median(times[True]))
        print(f"| {stage} | {making(stage):.3f} | {plain:.3f} | {ahead:.3f} | {plain / ahead:.2f} | {same} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
