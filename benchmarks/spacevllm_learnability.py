"""Can SpaceVLLM's space decoder localise and select when its inputs allow it? (shared-code states)

Usage::

    python benchmarks/spacevllm_learnability.py --out runs/svl_learnability.json
    python benchmarks/spacevllm_learnability.py --out /tmp/l.json --train-clips 300 --steps 300  # quick

The base model is replaced by states built from shared attribute and action codes
(:mod:`research.svl_learnability`): the real decoder runs on them and only its space head
trains. Two regimes, each scored by the mean box IoU on the ground-truth span's frames of
held-out clips (toy-world seed 12; training clips seed 11):

* localisation, single-object clips, the paper's layout: no lever, the attention-position cue,
  position codes in the keys and values; at the toy base's 6 x 6 grid and at 12 x 12 (about a
  LLaVA-Video's 14 x 14 tokens per frame), with the default softmax scale ``1/sqrt(D)`` and a softer 0.03;
* selection, the toy benchmark's 2-4 object clips at 12 x 12 and the default scale: the paper's
  layout (a query knows only its frame) against the caption first (a query knows what is
  asked), without and with position codes.

Besides the IoU the table gives the mean training box's IoU, the IoU of a visible object picked
at random, and the share of the query's attention on the target's cells. Rows resume from
``--out`` (the settings must match). Run it from the repository root (``research`` is not
installed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from research.svl_learnability import LEVERS, WORLDS, code_book, coded_split, run_row

# (regime, world, grid side, layout, lever, attention scale or None for 1/sqrt(D))
ROWS: list[tuple[str, str, int, str, str, float | None]] = [
    *[("localisation", "single", 6, "paper", lever, None) for lever in LEVERS],
    ("localisation", "single", 6, "paper", "position_codes", 0.03),
    *[("localisation", "single", 12, "paper", lever, None) for lever in LEVERS],
    ("localisation", "single", 12, "paper", "position_codes", 0.03),
    *[
        ("selection", "multi", 12, layout, lever, None)
        for layout in ("paper", "caption_first")
        for lever in ("none", "position_codes")
    ],
]


def _key(row: tuple[object, ...]) -> str:
    return " ".join(str(x) for x in row)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="results JSON (rows resume from it)")
    parser.add_argument("--train-clips", type=int, default=2000)
    parser.add_argument("--eval-clips", type=int, default=200)
    parser.add_argument("--steps", type=int, default=2000, help="head training steps per row")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--dim", type=int, default=128, help="state width (the toy base's hidden size)")
    parser.add_argument(
        "--noise", type=float, default=0.5, help="std of the noise added to every state entry"
    )
    args = parser.parse_args(argv)
    settings = {k: v for k, v in vars(args).items() if k != "out"}

    done: dict[str, dict[str, object]] = {}
    if args.out.is_file():
        saved = json.loads(args.out.read_text())
        if saved.get("settings") != settings:
            raise SystemExit(
                f"error: {args.out} holds rows of other settings {saved.get('settings')}; use another --out"
            )
        done = {r["key"]: r for r in saved["rows"]}
    book = code_book(args.dim)
    splits: dict[tuple[str, int], tuple[list, list]] = {}
    rows = []
    for row in ROWS:
        regime, world, side, layout, lever, scale = row
        if _key(row) in done:
            rows.append(done[_key(row)])
            continue
        grid = (side, side)
        if (world, side) not in splits:
            tick = time.perf_counter()
            train = coded_split(WORLDS[world], args.train_clips, args.frames, grid, book, args.noise, seed=11)
            held_out = coded_split(
                WORLDS[world], args.eval_clips, args.frames, grid, book, args.noise, seed=12
            )
            splits = {(world, side): (train, held_out)}  # one split in memory at a time
            print(f"{world} clips at {side}x{side}: {time.perf_counter() - tick:.0f} s", flush=True)
        train, held_out = splits[(world, side)]
        tick = time.perf_counter()
        result = run_row(
            train, held_out, layout, lever, grid, steps=args.steps, world=world, attention_scale=scale
        )
        rows.append(
            {
                "key": _key(row),
                "regime": regime,
                "grid": side,
                "scale": scale,
                **dataclasses.asdict(result),
                "seconds": round(time.perf_counter() - tick, 1),
            }
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"settings": settings, "rows": rows}, indent=2) + "\n")
        print(_line(rows[-1]), flush=True)

    print(
        f"\n{'regime':<13}{'grid':>5} {'layout':<14}{'lever':<15}{'scale':>6}"
        + "".join(f"{h:>10}" for h in ("span IoU", "mean box", "random", "on target"))
    )
    for r in rows:
        print(_line(r))
    return 0


def _line(r: dict[str, object]) -> str:
    scale = "1/√D" if r["scale"] is None else f"{r['scale']:g}"
    cells = "".join(
        f"{100 * float(r[k]):>10.1f}"
        for k in ("span_iou", "mean_box_iou", "random_object_iou", "attention_on_target")
    )
    return f"{r['regime']:<13}{r['grid']:>5} {r['layout']:<14}{r['lever']:<15}{scale:>6}{cells}"


if __name__ == "__main__":
    raise SystemExit(main())
