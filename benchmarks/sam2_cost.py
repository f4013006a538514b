"""What tracking at ``--track-fps`` costs in SAM2 time: seconds per propagated frame, measured.

SAM2's compute does not depend on its weights' values, so a randomly initialised
``Sam2VideoModel`` with the default ``Sam2VideoConfig`` (the architecture of
``facebook/sam2.1-hiera-tiny``: Hiera blocks 1-2-7-2, 38.9 M parameters, 1024 px input) times what
the real checkpoint costs on the same device, without its weights (none reach this machine).

Measured, through the toolkit's own SAM2 session (``zsgrounding.proposals.sam2``):

- ``propagate``: seconds per frame of a forward session with ``--objects`` prompted objects;
- ``segment``: seconds of one image-path call masking ``--objects`` boxes (one per detection round).

It then prints, for a 20-s video at 25 fps, the loop's SAM2 seconds on the sampled frames only
(20 frames, the loop before) and on ``--track-fps`` tracking frames (the loop now: a detection round
every 4th frame, new objects' backward passes not counted), from those two measured figures.

    python benchmarks/sam2_cost.py                        # CPU, 2 objects
    python benchmarks/sam2_cost.py --device cuda --frames 40
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from transformers import Sam2VideoConfig, Sam2VideoModel

from zsgrounding.proposals.extract import ProposalConfig
from zsgrounding.proposals.sam2 import Sam2Segmenter, sam2_preprocessing


def _frames(count: int, height: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(count, height, width, 3), dtype=np.uint8)


def measure(device: str, frames: int, objects: int, repeats: int) -> dict[str, float]:
    """Median seconds per propagated frame and per image-path call."""
    torch.manual_seed(0)
    model = Sam2VideoModel(Sam2VideoConfig()).eval().to(device)
    segmenter = Sam2Segmenter(model, sam2_preprocessing(None, int(model.config.image_size)))
    height, width = 480, 640
    clip = segmenter.bind(_frames(frames, height, width), (height, width))
    boxes = np.array([[40.0 + 120 * i, 60.0, 140.0 + 120 * i, 260.0] for i in range(objects)])
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    per_frame, per_segment = [], []
    for _ in range(repeats):
        session = clip.open(np.arange(frames))
        for i, box in enumerate(boxes):
            session.add_box(0, i, box)
        session.propagate(0)  # the prompted frame (and warm-up)
        sync()
        start = time.perf_counter()
        for k in range(1, frames):
            session.propagate(k)
        sync()
        per_frame.append((time.perf_counter() - start) / (frames - 1))
        start = time.perf_counter()
        clip.segment(frames // 2, boxes)
        sync()
        per_segment.append(time.perf_counter() - start)
    return {"propagate_s": statistics.median(per_frame), "segment_s": statistics.median(per_segment)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=12, help="frames propagated per measurement")
    parser.add_argument("--objects", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default torch's)")
    parser.add_argument("--track-fps", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cost = measure(args.device, args.frames, args.objects, args.repeats)
    seconds, fps, sampled = 20.0, 25.0, 20
    tracking = int(seconds * args.track_fps) + sampled  # at most: sampled frames not on the grid
    before = sampled * cost["propagate_s"]  # the old loop matched by box: no image-path calls
    rounds = tracking // ProposalConfig(tracker="sam2").detection_step  # the loop's detection rounds
    after = tracking * cost["propagate_s"] + rounds * cost["segment_s"]
    rows = {
        "device": args.device,
        "threads": torch.get_num_threads(),
        "objects": args.objects,
        **cost,
        "video": f"{seconds:g} s at {fps:g} fps",
        "before_frames": sampled,
        "before_s": before,
        "after_frames": tracking,
        "after_s": after,
    }
    print(
        f"SAM2 (sam2.1-hiera-tiny architecture, random weights) on {args.device}, {rows['threads']} threads, {args.objects} objects"
    )
    print(
        f"  propagate: {cost['propagate_s']:.3f} s/frame   segment (image path): {cost['segment_s']:.3f} s/call"
    )
    print(
        f"  {rows['video']}: sampled frames only {sampled} frames -> {before:.1f} s; "
        f"--track-fps {args.track_fps:g}: up to {tracking} frames, {rounds} rounds -> {after:.1f} s "
        f"({after / before:.1f}x)"
    )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
