"""The tracking benchmark: object tracks before and after the detect–track–correct rework.

Two parts, each scored with TrackEval (the HOTA authors' implementation, package ``trackeval``):
HOTA, IDF1, ID switches (IDSW), fragmentations (Frag) and MOTA, plus two coverage figures the
grounder cares about: *covered* (the share of each object's frames that some track boxes at IoU
>= 0.5) and *one track* (the share a single track covers: the grounder picks one track, so this is
its ceiling for that object).

1. **Scripted cases** (:func:`zsgrounding.toy.scripted.scenarios`): a scripted segmenter and
   detector that lose an object for a while, let one appear late, let one leave and come back
   (found again, or not), drift, and report a false alarm. The SAM2 loop as it was
   (:meth:`LoopConfig.previous`) against the loop now (:class:`LoopConfig`).
2. **Toy clips** (the toy world's videos, real pixels): the toy colour detector, prompted with the
   target's colour and shape, against every object of that colour and shape, scored on the
   grounder's sampled frames. Rows: the IoU tracker as it was (start at 0.5, gaps in native
   frames, tracking on the sampled frames only) and now (start at the detector's threshold,
   gaps in tracking frames, tracking on ``--track-fps`` frames plus the sampled ones); and the
   SAM2 loop before / after with a scripted segmenter that follows the toy world's true boxes
   (a perfect SAM2 stand-in), fed by the toy detector's real detections.

Run: ``python benchmarks/tracking.py --out runs/tracking`` (about 15 s; ``--clips`` and
``--num-frames`` change the toy part). Writes ``tracking.md`` and ``tracking.json`` there.
Needs the ``bench`` extra (``pip install -e ".[bench]"``) for TrackEval.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zsgrounding.boxes import box_iou_matrix
from zsgrounding.datasets.toy import load_sidecar, sidecar_tracks
from zsgrounding.proposals.extract import tracking_clip
from zsgrounding.proposals.loop import LoopConfig, run_loop
from zsgrounding.proposals.tracker import IoUTracker, IoUTrackerConfig
from zsgrounding.toy.detector import ToyColourDetector
from zsgrounding.toy.scripted import Script, ScriptedSegmenter, scenarios, scripted_detections
from zsgrounding.toy.world import ToyWorldConfig, make_dataset
from zsgrounding.types import Clip, Track
from zsgrounding.video import sample_uniform

COLUMNS = ("HOTA", "IDF1", "IDSW", "Frag", "MOTA", "covered", "one track", "tracks", "objects")


def mot_sequence(gt: Sequence[Track], pred: Sequence[Track], frames: np.ndarray) -> dict[str, Any]:
    """TrackEval's per-sequence input: ids and box-IoU similarities on each of ``frames``."""
    gt_ids, pred_ids, sims = [], [], []
    for fid in np.asarray(frames, dtype=np.int64).tolist():
        g = [
            (i, t.boxes[np.flatnonzero(t.frame_ids == fid)[0]])
            for i, t in enumerate(gt)
            if fid in t.frame_ids
        ]
        p = [
            (i, t.boxes[np.flatnonzero(t.frame_ids == fid)[0]])
            for i, t in enumerate(pred)
            if fid in t.frame_ids
        ]
        gt_ids.append(np.array([i for i, _ in g], dtype=int))
        pred_ids.append(np.array([i for i, _ in p], dtype=int))
        if g and p:
            sims.append(box_iou_matrix(np.stack([b for _, b in g]), np.stack([b for _, b in p])))
        else:
            sims.append(np.zeros((len(g), len(p))))
    return {
        "num_timesteps": len(gt_ids),
        "num_gt_ids": len(gt),
        "num_tracker_ids": len(pred),
        "num_gt_dets": int(sum(len(x) for x in gt_ids)),
        "num_tracker_dets": int(sum(len(x) for x in pred_ids)),
        "gt_ids": gt_ids,
        "tracker_ids": pred_ids,
        "similarity_scores": sims,
    }


def coverage(
    gt: Sequence[Track], pred: Sequence[Track], frames: np.ndarray, iou: float = 0.5
) -> tuple[int, int, int]:
    """``(object-frames, covered by any track, covered by each object's best single track)``."""
    total = covered = single = 0
    wanted = set(np.asarray(frames, dtype=np.int64).tolist())
    for obj in gt:
        rows = []
        for fid, box in zip(obj.frame_ids.tolist(), obj.boxes, strict=True):
            if fid not in wanted:
                continue
            row = []
            for t in pred:
                at = np.flatnonzero(t.frame_ids == fid)
                row.append(bool(at.size) and box_iou_matrix(box[None], t.boxes[at[:1]])[0, 0] >= iou)
            rows.append(row)
        total += len(rows)
        if rows and pred:
            grid = np.array(rows, dtype=bool)
            covered += int(grid.any(axis=1).sum())
            single += int(grid.sum(axis=0).max())
    return total, covered, single


def score(sequences: Mapping[str, tuple[Sequence[Track], Sequence[Track], np.ndarray]]) -> dict[str, float]:
    """The table's columns over all ``sequences`` (name -> ground truth, tracks, frames scored)."""
    from trackeval.metrics import CLEAR, HOTA, Identity

    metrics = {
        "hota": HOTA(),
        "clear": CLEAR({"PRINT_CONFIG": False}),
        "id": Identity({"PRINT_CONFIG": False}),
    }
    per: dict[str, dict[str, Any]] = {k: {} for k in metrics}
    total = covered = single = tracks = objects = 0
    for name, (gt, pred, frames) in sequences.items():
        data = mot_sequence(gt, pred, frames)
        for key, metric in metrics.items():
            per[key][name] = metric.eval_sequence(data)
        t, c, s = coverage(gt, pred, frames)
        total, covered, single = total + t, covered + c, single + s
        tracks, objects = tracks + len(pred), objects + len(gt)
    hota = metrics["hota"].combine_sequences(per["hota"])
    clear = metrics["clear"].combine_sequences(per["clear"])
    ident = metrics["id"].combine_sequences(per["id"])
    return {
        "HOTA": 100 * float(np.mean(hota["HOTA"])),
        "IDF1": 100 * float(ident["IDF1"]),
        "IDSW": int(clear["IDSW"]),
        "Frag": int(clear["Frag"]),
        "MOTA": 100 * float(clear["MOTA"]),
        "covered": 100 * covered / max(total, 1),
        "one track": 100 * single / max(total, 1),
        "tracks": tracks,
        "objects": objects,
    }


# ------------------------------------------------------------------------------ scripted cases


def _script_truth(script: Script) -> list[Track]:
    return [
        Track(
            np.array(sorted(b), dtype=np.int64), np.stack([b[i] for i in sorted(b)]), script.labels[g], 1.0, g
        )
        for g, b in enumerate(script.boxes)
    ]


def scripted_rows() -> dict[str, dict[str, dict[str, float]]]:
    """Per case (and ``all``), the loop before and after."""
    loops = {"before": LoopConfig.previous(), "after": LoopConfig()}
    cases = scenarios()
    out: dict[str, dict[str, dict[str, float]]] = {}
    runs: dict[str, dict[str, tuple]] = {k: {} for k in loops}
    for name, script in cases.items():
        frames = np.arange(script.num_frames)
        truth = _script_truth(script)
        out[name] = {}
        for label, config in loops.items():
            tracks = run_loop(
                script.frames(), frames, scripted_detections(script), ScriptedSegmenter(script), config
            )
            runs[label][name] = (truth, tracks, frames)
            out[name][label] = score({name: runs[label][name]})
    out["all"] = {label: score(runs[label]) for label in loops}
    return out


# ----------------------------------------------------------------------------------- toy clips


def _prompt(entry: Mapping[str, Any]) -> tuple[str, list[Track]]:
    """The target's colour and shape, and every object of that colour and shape (the truth)."""
    target = next(o for o in entry["objects"] if o["id"] == entry["target"])
    truth = [
        t
        for t, o in zip(sidecar_tracks(entry), entry["objects"], strict=True)
        if (o["colour"], o["shape"]) == (target["colour"], target["shape"])
    ]
    return f"{target['colour']} {target['shape']}", truth


def _scripted_from_truth(entry: Mapping[str, Any], frames: Clip) -> Script:
    """A script whose segmenter follows every toy object exactly on the tracking frames."""
    index = {int(f): i for i, f in enumerate(frames.frame_ids)}
    boxes = []
    for t in sidecar_tracks(entry):
        boxes.append({index[int(f)]: b for f, b in zip(t.frame_ids, t.boxes, strict=True) if int(f) in index})
    return Script(
        len(frames),
        (int(entry["height"]), int(entry["width"])),
        boxes,
        [t.label for t in sidecar_tracks(entry)],
    )


def _sam2_stand_in(
    clip: Clip,
    entry: Mapping[str, Any],
    prompt: str,
    detector: ToyColourDetector,
    config: LoopConfig,
    every: int,
) -> list[Track]:
    script = _scripted_from_truth(entry, clip)
    size = (clip.height, clip.width)
    picked = np.arange(0, len(clip), every)
    dets = detector.detect(clip.frames[picked], clip.frame_ids[picked], prompt, size=size)
    detections = {int(i): d for i, d in zip(picked.tolist(), dets, strict=True)}
    return run_loop(clip.frames, clip.frame_ids, detections, ScriptedSegmenter(script), config, size=size)


def _iou_tracks(
    clip: Clip, prompt: str, detector: ToyColourDetector, config: IoUTrackerConfig
) -> list[Track]:
    dets = detector.detect(clip.frames, clip.frame_ids, prompt, size=(clip.height, clip.width))
    return list(IoUTracker(config).track(dets))


def toy_rows(
    folder: Path, num_frames: int, track_fps: float, progress: bool
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Rows on the toy clips of ``folder`` and the seconds each row's tracking took per clip."""
    detector = ToyColourDetector()
    videos = load_sidecar(folder)["videos"]
    threshold = detector.config.min_score
    # name -> (tracking frames, tracks from a clip and its entry)
    rows: dict[str, tuple[float | None, Callable[[Clip, Mapping[str, Any], str], list[Track]]]] = {
        "IoU tracker, before": (
            None,
            lambda c, e, p: _iou_tracks(c, p, detector, IoUTrackerConfig.previous()),
        ),
        "IoU tracker, after": (
            track_fps,
            lambda c, e, p: _iou_tracks(c, p, detector, IoUTrackerConfig.following(threshold)),
        ),
        "SAM2 loop (scripted SAM2), before": (
            None,
            lambda c, e, p: _sam2_stand_in(c, e, p, detector, LoopConfig.previous(), 1),
        ),
        "SAM2 loop (scripted SAM2), after": (
            track_fps,
            lambda c, e, p: _sam2_stand_in(c, e, p, detector, LoopConfig(), 4),
        ),
    }
    sequences: dict[str, dict[str, tuple]] = {k: {} for k in rows}
    seconds = dict.fromkeys(rows, 0.0)
    for n, (name, entry) in enumerate(sorted(videos.items())):
        if progress:
            print(f"\r[toy clips] {n + 1}/{len(videos)}", end="", file=sys.stderr, flush=True)
        clip = sample_uniform(folder / "videos" / name, num_frames, sampling="linspace")
        prompt, truth = _prompt(entry)
        for row, (fps, make) in rows.items():
            start = time.perf_counter()
            frames = tracking_clip(clip, fps)
            tracks = make(frames, entry, prompt)
            seconds[row] += time.perf_counter() - start
            sequences[row][name] = (truth, tracks, clip.frame_ids)
    if progress:
        print(file=sys.stderr)
    table = {row: score(seqs) for row, seqs in sequences.items()}
    return table, {row: s / max(len(videos), 1) for row, s in seconds.items()}


# --------------------------------------------------------------------------------------- report


def _cell(value: float | int) -> str:
    return str(value) if isinstance(value, int) else f"{value:.1f}"


def render(
    scripted: Mapping[str, Mapping[str, Mapping[str, float]]],
    toy: Mapping[str, Any],
    args: argparse.Namespace,
) -> str:
    head = "| case | loop | " + " | ".join(COLUMNS) + " |\n|---|---|" + "---:|" * len(COLUMNS) + "\n"
    lines = ["# Tracking benchmark", "", "## Scripted cases", "", head.rstrip("\n")]
    for case, loops in scripted.items():
        for loop, row in loops.items():
            lines.append(f"| {case} | {loop} | " + " | ".join(_cell(row[c]) for c in COLUMNS) + " |")
    lines += [
        "",
        f"## Toy clips ({toy['clips']} clips, {args.num_frames} sampled frames, tracking at "
        f"{args.track_fps:g} fps after; scored on the sampled frames)",
        "",
        "| row | " + " | ".join(COLUMNS) + " | s/clip |",
        "|---|" + "---:|" * (len(COLUMNS) + 1),
    ]
    for row, values in toy["rows"].items():
        lines.append(
            f"| {row} | " + " | ".join(_cell(values[c]) for c in COLUMNS) + f" | {toy['seconds'][row]:.3f} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/tracking"), help="output folder")
    parser.add_argument("--clips", type=int, default=40, help="toy clips (made once under OUT/toy)")
    parser.add_argument("--seed", type=int, default=7000, help="seed of the toy clips")
    parser.add_argument("--num-frames", type=int, default=20, help="the grounder's sampled frames")
    parser.add_argument("--track-fps", type=float, default=5.0, help="tracking frames per second (after)")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import trackeval  # noqa: F401
    except ImportError:
        print("tracking.py: needs TrackEval: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    folder = args.out / f"toy-{args.clips}-{args.seed}"
    if not (folder / "toyworld.json").exists():
        make_dataset(folder, args.clips, ToyWorldConfig(seed=args.seed), progress=not args.no_progress)
    scripted = scripted_rows()
    rows, seconds = toy_rows(folder, args.num_frames, args.track_fps, not args.no_progress)
    toy = {"clips": args.clips, "rows": rows, "seconds": seconds}
    text = render(scripted, toy, args)
    (args.out / "tracking.md").write_text(text)
    (args.out / "tracking.json").write_text(
        json.dumps(
            {"scripted": scripted, "toy": toy, "settings": {k: str(v) for k, v in vars(args).items()}},
            indent=2,
        )
        + "\n"
    )
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
