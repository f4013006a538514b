"""Uni-STG synthesis on toy-world videos with the pixel-based toy detector, checked against the GT.

Usage::

    python benchmarks/synth_toy.py --out /tmp/synth_toy               # 200 videos
    python benchmarks/synth_toy.py --out /tmp/synth_toy --quick       # 8 videos, a smoke test
    python benchmarks/synth_toy.py --out /tmp/synth_toy --analyzer attributes

Writes (or reuses, when ``toyworld.json`` there has the same config and enough videos) ``--videos``
toy videos in ``--data`` (default ``<out>/toy``; seed ``--seed``), then runs
:func:`spacevllm.synth.synthesize` over their (video, caption) pairs with
:class:`~zsgrounding.toy.detector.ToyColourDetector` twice: once on the annotated
spans (the GT tube's span, as Charades-STA-like sources give) and once on whole videos
(``span=None``, the CLI's ``--whole-videos``). The analyzer is offline:

- ``rules`` (default): :class:`~spacevllm.synth.RuleAnalyzer`, the caption's head noun; on a toy
  caption that is the shape alone ("circle"), so every circle of any colour is a candidate.
- ``attributes``: the caption's attribute phrase without the article ("big red circle"), what an
  LLM analyzer following :data:`spacevllm.synth.INSTRUCTION` would answer.

For each run it prints :meth:`SynthReport.summary` and the quality of the kept records against the
toy world's ground truth: the mean IoU of the synthesized boxes with the caption's target box on
the same frames (0 where the target is not drawn), the temporal IoU of the refined span with the
GT span, and how many records follow the target (at least ``--follow`` of their boxed frames
overlap the target with IoU >= 0.5) or, failing that, which object their boxes mostly sit on.
Everything goes to ``<out>/synth_toy.md`` and ``<out>/synth_toy.json`` too.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from spacevllm.data import Record
from spacevllm.synth import (
    REASONS,
    STAGES,
    Analysis,
    Analyzer,
    RuleAnalyzer,
    SynthConfig,
    SynthItem,
    items_from_samples,
    synthesize,
)
from zsgrounding.boxes import box_iou
from zsgrounding.datasets import load_dataset
from zsgrounding.errors import DatasetError
from zsgrounding.metrics import temporal_iou
from zsgrounding.toy.detector import ToyColourDetector
from zsgrounding.toy.world import CaptionParts, ToyWorldConfig, load_sidecar, make_dataset

DEFAULT_SEED = 4242  # this benchmark's own toy world, apart from the other benchmarks' seeds
QUICK_VIDEOS = 8
MATCH_IOU = 0.5  # a box "is on" an object when it overlaps the object's GT box this much
RUNS: dict[str, str] = {"spans": "annotated spans", "whole": "whole videos (span=None)"}


class AttributeAnalyzer:
    """The toy caption's attribute phrase without its article; other captions: the rules."""

    def __init__(self) -> None:
        self.rules = RuleAnalyzer()

    def analyze(self, caption: str) -> Analysis:
        try:
            parts = CaptionParts.parse(caption)
        except ValueError:  # not a toy caption: what the offline rules make of it
            return self.rules.analyze(caption)
        return Analysis((parts.attribute_phrase.removeprefix("the "),), "rules")


ANALYZERS: dict[str, Callable[[], Analyzer]] = {
    "rules": RuleAnalyzer,
    "attributes": AttributeAnalyzer,
}


@dataclass(frozen=True)
class RecordQuality:
    """One kept record against the toy world's ground truth.

    Attributes:
        id: the record (video key).
        object: the analyzer object the detector boxed.
        box_iou: mean IoU of the record's boxes with the target's box on the same frames (0 on
            frames where the target is not drawn).
        frames: boxed frames.
        frames_on_target: boxed frames whose box overlaps the target with IoU >= 0.5.
        tiou: temporal IoU of the refined span with the GT span (native frames).
        mostly_on: the role (``target``, ``attribute`` / ``action`` distractor) of the object most
            boxed frames overlap with IoU >= 0.5; ``none`` when most overlap nothing.
    """

    id: str
    object: str
    box_iou: float
    frames: int
    frames_on_target: int
    tiou: float
    mostly_on: str


def record_quality(record: Record, entry: dict[str, Any]) -> RecordQuality:
    """Compare ``record`` with its ``toyworld.json`` entry (the video's objects and GT tube)."""
    objects = entry["objects"]
    target = int(entry["target"])
    ious, on_target, votes = [], 0, Counter[str]()
    for frame, box in record.boxes.items():
        key = str(frame)  # the sidecar's boxes are keyed by frame id strings
        overlaps = {
            o["id"]: float(box_iou(np.array(box), o["boxes"][key])) for o in objects if key in o["boxes"]
        }
        ious.append(overlaps.get(target, 0.0))
        on_target += ious[-1] >= MATCH_IOU
        best = max(overlaps, key=overlaps.__getitem__, default=None)  # the object the box is on
        votes[objects[best]["role"] if best is not None and overlaps[best] >= MATCH_IOU else "none"] += 1
    span = tuple(record.meta["span_frames"])
    tube = (entry["tube"]["start"], entry["tube"]["end"])
    return RecordQuality(
        record.id,
        str(record.meta["object"]),
        float(np.mean(ious)) if ious else 0.0,
        len(ious),
        int(on_target),
        temporal_iou(span, tube),
        votes.most_common(1)[0][0] if votes else "none",
    )


def summarise(qualities: Sequence[RecordQuality], follow: float) -> dict[str, Any]:
    """Means over the kept records, and the records following the target (``follow`` of frames)."""
    count = len(qualities)
    frames = sum(q.frames for q in qualities)
    follows = sum(q.frames_on_target >= follow * q.frames for q in qualities if q.frames)
    return {
        "records": count,
        "mean_box_iou": float(np.mean([q.box_iou for q in qualities])) if count else None,
        "frames": frames,
        "frames_on_target": sum(q.frames_on_target for q in qualities) / frames if frames else None,
        "mean_tiou": float(np.mean([q.tiou for q in qualities])) if count else None,
        "follow": follow,
        "follow_target": follows / count if count else None,
        "mostly_on": dict(Counter(q.mostly_on for q in qualities).most_common()),
    }


def toy_folder(folder: Path, n: int, config: ToyWorldConfig) -> Path:
    """``folder`` holding at least ``n`` videos of ``config``'s toy world (written when missing)."""
    try:
        sidecar = load_sidecar(folder)
        reusable = sidecar["config"] == config.to_json() and len(sidecar["videos"]) >= n
        reusable = reusable and all((folder / "videos" / key).is_file() for key in sidecar["videos"])
    except DatasetError:  # no (valid) sidecar yet
        reusable = False
    if not reusable:
        make_dataset(folder, n, config, progress=False)
    return folder


def _fmt(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}%" if percent else f"{value:.3f}"


def quality_lines(quality: dict[str, Any]) -> list[str]:
    if not quality["records"]:
        return ["no record kept: nothing to compare with the ground truth"]
    roles = ", ".join(f"{role} {n}" for role, n in quality["mostly_on"].items())
    return [
        f"quality of the {quality['records']} kept records against the ground truth:",
        f"  box IoU with the target on the boxed frames: mean {_fmt(quality['mean_box_iou'])}; "
        f"{_fmt(quality['frames_on_target'], True)} of {quality['frames']} frames at IoU >= {MATCH_IOU}",
        f"  temporal IoU of the refined span with the GT span: mean {_fmt(quality['mean_tiou'])}",
        f"  records following the target (>= {quality['follow']:.0%} of boxed frames): "
        f"{_fmt(quality['follow_target'], True)}; boxes mostly on: {roles}",
    ]


def markdown(args: argparse.Namespace, runs: dict[str, dict[str, Any]], header: str) -> str:
    lines = [
        "# Uni-STG synthesis on the toy world (ToyColourDetector)",
        "",
        header,
        "",
        "| | " + " | ".join(RUNS[name] for name in runs) + " |",
        "|---|" + "---:|" * len(runs),
    ]
    reports = {name: run["report"] for name, run in runs.items()}
    lines.append("| pairs in | " + " | ".join(str(r["total"]) for r in reports.values()) + " |")
    for stage in STAGES:
        for reason in REASONS[stage]:
            cells = " | ".join(str(r["removed"][stage][reason]) for r in reports.values())
            lines.append(f"| {stage}: {reason} | {cells} |")
    lines.append("| **kept** | " + " | ".join(f"**{r['kept']}**" for r in reports.values()) + " |")
    rows = [
        ("mean box IoU with the target", "mean_box_iou", False),
        (f"boxed frames at IoU >= {MATCH_IOU}", "frames_on_target", True),
        ("mean temporal IoU with the GT span", "mean_tiou", False),
        (f"records following the target (>= {args.follow:.0%} of frames)", "follow_target", True),
    ]
    for label, key, percent in rows:
        cells = " | ".join(_fmt(run["quality"][key], percent) for run in runs.values())
        lines.append(f"| {label} | {cells} |")
    lines.append(
        "| boxes mostly on | "
        + " | ".join(
            ", ".join(f"{k} {v}" for k, v in run["quality"]["mostly_on"].items()) or "-"
            for run in runs.values()
        )
        + " |"
    )
    lines.append("| seconds | " + " | ".join(f"{run['seconds']:.1f}" for run in runs.values()) + " |")
    return "\n".join(lines) + "\n"


def run_once(
    items: list[SynthItem],
    analyzer: Analyzer,
    config: SynthConfig,
    videos: dict[str, dict[str, Any]],
    follow: float,
) -> dict[str, Any]:
    """One :func:`synthesize` pass with a fresh detector, and the quality of what it kept."""
    start = time.perf_counter()
    records, report = synthesize(items, ToyColourDetector(), analyzer, config)
    seconds = time.perf_counter() - start
    qualities = [record_quality(r, videos[r.id]) for r in records]
    return {
        "report": report.to_json(),
        "summary": report.summary(),
        "quality": summarise(qualities, follow),
        "records": [asdict(q) for q in qualities],
        "seconds": seconds,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of synth_toy.md / .json")
    parser.add_argument("--data", type=Path, default=None, help="toy dataset folder (default <out>/toy)")
    parser.add_argument("--videos", type=int, default=200, help="toy videos (default 200)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="toy world seed")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_VIDEOS} videos: a smoke test")
    parser.add_argument("--analyzer", choices=sorted(ANALYZERS), default="rules")
    parser.add_argument("--follow", type=float, default=0.9, help="frame fraction to follow the target")
    parser.add_argument("--min-seconds", type=float, default=SynthConfig.min_seconds, help="refiner")
    parser.add_argument("--search-margin", type=float, default=SynthConfig.search_margin, help="seconds")
    parser.add_argument("--box-threshold", type=float, default=SynthConfig.box_threshold)
    args = parser.parse_args(argv)
    if args.videos < 1:
        parser.error("--videos must be >= 1")
    if not 0 < args.follow <= 1:
        parser.error("--follow must be in (0, 1]")
    if args.quick:
        args.videos = min(args.videos, QUICK_VIDEOS)
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns what ``synth_toy.json`` holds."""
    args = parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    toy_config = ToyWorldConfig(seed=args.seed)
    folder = toy_folder(args.data or out / "toy", args.videos, toy_config)
    videos = load_sidecar(folder)["videos"]
    wanted = set(list(videos)[: args.videos])  # video i is the same in any bigger world of the seed
    items = [item for item in items_from_samples(load_dataset("toy", folder)) if item.id in wanted]
    config = SynthConfig(
        box_threshold=args.box_threshold, min_seconds=args.min_seconds, search_margin=args.search_margin
    )
    analyzer = ANALYZERS[args.analyzer]()
    header = (
        f"toy world: {len(items)} videos (seed {args.seed}) in {folder}; detector ToyColourDetector, "
        f"analyzer {args.analyzer}; box threshold {config.box_threshold}, refined spans "
        f"{config.min_seconds:g}-{config.max_seconds:g} s, search margin {config.search_margin:g} s"
    )
    print(header)
    runs: dict[str, dict[str, Any]] = {}
    for name, label in RUNS.items():
        run_items = items if name == "spans" else [replace(item, span=None) for item in items]
        runs[name] = run_once(run_items, analyzer, config, videos, args.follow)
        print(f"\n== {label}: {len(run_items)} pairs, {runs[name]['seconds']:.1f} s")
        print(runs[name]["summary"])
        print("\n".join(quality_lines(runs[name]["quality"])))
    result = {
        "videos": len(items),
        "seed": args.seed,
        "data": str(folder),
        "analyzer": args.analyzer,
        "synth_config": asdict(config),
        "toy_config": toy_config.to_json(),
        "runs": runs,
    }
    (out / "synth_toy.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    (out / "synth_toy.md").write_text(markdown(args, runs, header), encoding="utf-8")
    print(f"\nwrote {out / 'synth_toy.md'} and {out / 'synth_toy.json'}")
    return result


if __name__ == "__main__":
    main()
