"""Time the vectorised STVG evaluator on 10,000 tubes of ~300 frames against the frame loop.

    python benchmarks/metrics_speed.py [--n 10000] [--loop-n 1000]

The loop (``metrics_reference``, TubeDETR's per-video logic) runs on a subset and is scaled to n;
both run in this one process, so the ratio is measured side by side on the same machine state.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from zsgrounding.metrics import evaluate
from zsgrounding.metrics_reference import reference_tiou_viou
from zsgrounding.types import GroundTruth, Tube


def make_tubes(n: int, frames: int, seed: int) -> tuple[dict[str, Tube], dict[str, GroundTruth]]:
    """Dense GT and predicted tubes of random spans and jittered boxes on ``frames``-frame videos."""
    rng = np.random.default_rng(seed)
    preds, gts = {}, {}
    for i in range(n):
        gs = int(rng.integers(0, frames // 2))
        ge = int(rng.integers(gs + 10, frames))
        ps = max(0, gs + int(rng.integers(-30, 30)))
        pe = min(frames, max(ps + 1, ge + int(rng.integers(-30, 30))))
        base = rng.uniform(0, 200, 2)
        g_ids, p_ids = np.arange(gs, ge), np.arange(ps, pe)
        g_box = np.concatenate([base, base + 100]) + rng.normal(0, 3, (g_ids.size, 4))
        p_box = np.concatenate([base, base + 100]) + rng.normal(0, 10, (p_ids.size, 4))
        gts[str(i)] = GroundTruth(Tube(gs, ge, g_ids, g_box), fps=30.0, segment=(0, frames - 1))
        preds[str(i)] = Tube(ps, pe, p_ids, p_box)
    return preds, gts


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--loop-n", type=int, default=1_000)
    args = parser.parse_args()

    preds, gts = make_tubes(args.n, args.frames, seed=0)
    print(f"{args.n} sentences, {args.frames} frames each, 30 fps")
    for frames in ("tubedetr", "all"):
        fast = best_of(lambda f=frames: evaluate(preds, gts, frames=f), repeats=3)
        subset = list(gts)[: args.loop_n]

        def loop(f=frames, keys=subset):
            return [reference_tiou_viou(preds[k], gts[k], f) for k in keys]

        slow = best_of(loop, repeats=1) * args.n / len(subset)
        check = evaluate({k: preds[k] for k in subset}, {k: gts[k] for k in subset}, frames=frames)
        ref = np.array(loop())
        assert np.allclose(check.viou, ref[:, 1]) and np.allclose(check.tiou, ref[:, 0])
        print(
            f"frames={frames:8s}  vectorised {fast:6.3f} s   frame loop {slow:7.2f} s (scaled from "
            f"{len(subset)})   speed-up x{slow / fast:5.1f}"
        )


if __name__ == "__main__":
    main()
