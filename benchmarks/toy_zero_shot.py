"""The training-free method measured on the shipped toy MLLM, in one command.

    python benchmarks/toy_zero_shot.py --tune --out runs/toy_zs   # sweep on validation, then held-out
    python benchmarks/toy_zero_shot.py --out runs/toy_zs          # settings from the options below
    python benchmarks/toy_zero_shot.py --quick --out /tmp/toy_zs  # a smoke run: few clips and frames
    python benchmarks/toy_zero_shot.py --model DIR --out OUT      # any LLaVA-OneVision-like checkpoint
    python benchmarks/toy_zero_shot.py --presets reference-hcstvg-v2,paper --out OUT  # + preset rows

Two toy-world splits are made (or reused) under ``<out>/data``: a VALIDATION split (seed 3000,
60 clips), the only one ``--tune`` looks at, and a HELD-OUT split (seed 4000, 200 clips) that
every reported row runs on. The toy MLLM was trained on toy world seed 0, so neither split was
seen in training. Tracks are the toy world's object tracks (oracle proposals: every object, as
``ToyProposer`` gives them), so the numbers measure the grounding evidence, not a detector.

``--tune`` sweeps, on the validation split, first the decoder-layer window the attention maps
are averaged over (all layers, last half, last layer) on the cheap ``+ GTI`` row, then the LRA
step size (2, 8, 32 at 2 steps) and the number of steps (4 at the best size, and 0) on the full
method with that window; the best m_vIoU wins (ties: the earlier candidate, defaults first).
Without ``--tune`` the window and LRA settings come from ``--layers``, ``--lra-step-size`` and
``--lra-steps`` (defaults: :class:`ZeroShotConfig`'s).

Held-out rows, one resumable run folder each (``<out>/runs/<split>/<row>-<settings hash>``; a
killed run continues where it stopped): the zero-shot paper's Table 2 (mean of special tokens, + GTI,
+ spatial prompt, + temporal prompt, + both prompts, + TAS = full method), then two rows derived
exactly from the full method's stored results: a uniformly random track (fixed seed) and the
ground-truth ("oracle") track, each with the span the full method's temporal step gives that
track. Then diagnostics: pointing accuracy beside the any-object rate, the question-swap test
and the pilot study's hit-ratio table of the special tokens.

Frames: 12 per clip by default, not the paper's 20, to keep the default run under ~25 minutes
on a shared 2-core CPU (see ``DEFAULT_FRAMES``); ``--num-frames 20`` runs the paper's setting.

Writes ``<out>/toy_zero_shot.md`` and ``<out>/toy_zero_shot.json`` and prints the markdown.
Seconds per video are wall time on this machine; a row that reuses a question's maps computed
by an earlier row (identical inputs, so identical maps) is charged their original cost.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from zsgrounding.apps.factory import toy_proposer
from zsgrounding.assets import resolve_model
from zsgrounding.boxes import box_iou_matrix
from zsgrounding.datasets import load_dataset
from zsgrounding.metrics import evaluate
from zsgrounding.mllm import MLLMAdapter, PreparedInputs, load_adapter
from zsgrounding.predictions import tube_from_json
from zsgrounding.proposals.store import TrackStore
from zsgrounding.report import markdown_table
from zsgrounding.runner import RunConfig, is_error, load_results, run_dataset
from zsgrounding.toy.proposer import ToyProposer
from zsgrounding.toy.world import ToyWorldConfig, load_sidecar, make_dataset, sidecar_tracks
from zsgrounding.tubes import (
    TubeScorer,
    TubeScorerConfig,
    assemble,
    frame_scores,
    score_tracks,
    select_span,
    span_to_native,
)
from zsgrounding.types import Clip, GroundingResult, Sample, Track, Tube
from zsgrounding.video import sample_uniform
from zsgrounding.zeroshot.decompose import Decomposer, DecompositionWarning, RuleDecomposer
from zsgrounding.zeroshot.diagnostics import (
    SwapOutcome,
    evidence_peaks,
    pointing_counts,
    pointing_summary,
    question_swap_summary,
    swap_outcome,
    track_selection_summary,
)
from zsgrounding.zeroshot.gti import select_grounding_token
from zsgrounding.zeroshot.lra import LRAConfig
from zsgrounding.zeroshot.pilot_run import run_pilot
from zsgrounding.zeroshot.pipeline import QuestionMaps, ZeroShotConfig, ZeroShotGrounder, interrogative
from zsgrounding.zeroshot.presets import PRESETS

# The zero-shot paper ("Unleashing the Potential of Multimodal LLMs for Zero-Shot STVG") samples 20 frames. Measured here (2 cores shared with other jobs, one torch thread):
# the full method costs 1.9-2.3 s per video at 20 frames and about 1.05 s at 12; the default
# `--tune` run took 14 min at 12 frames, so 20 frames would take about 25-29 min, over the
# 25-minute budget. The toy MLLM was trained on clips of 2-8 frames, so 12 is nearer its regime.
DEFAULT_FRAMES = 12
METRICS = ("m_tIoU", "m_vIoU", "vIoU@0.3", "vIoU@0.5")
ROW_COLUMNS = (*METRICS, "track acc", "chance", "s/video")

# The zero-shot paper's Table 2 as config changes, in table order.
TABLE2: tuple[tuple[str, dict[str, Any]], ...] = (
    (
        "mean of special tokens",
        {"gti": "mean", "spatial_prompt": False, "temporal_prompt": False, "tas": False},
    ),
    ("+ GTI", {"spatial_prompt": False, "temporal_prompt": False, "tas": False}),
    ("+ spatial prompt", {"temporal_prompt": False, "tas": False}),
    ("+ temporal prompt", {"spatial_prompt": False, "tas": False}),
    ("+ both prompts", {"tas": False}),
    ("+ TAS (full method)", {}),
)
GTI_ROW, FULL_ROW = "+ GTI", "+ TAS (full method)"
RANDOM_ROW, ORACLE_ROW = "random track", "oracle track"
# Run order: the plain full-query maps first (the mean row reuses them), the full method last
# (it reuses the temporal prompt's maps).
RUN_ORDER = (1, 0, 2, 3, 4, 5)


# ----------------------------------------------------------------------------------- splits


@dataclass
class Split:
    """A toy-world split on disk.

    Attributes:
        name: ``"validation"`` or ``"held-out"``.
        seed, n: the toy world seed and the number of clips.
        folder: where ``annotations.json``, ``toyworld.json`` and ``videos/`` live.
        samples: the loaded samples (with ``meta["target_id"]``, ``meta["num_objects"]``).
        videos: the sidecar's entries by sample id (objects, caption parts, size).
        tracks: every object's track by sample id, in sidecar order (track ``i`` is object ``i``).
    """

    name: str
    seed: int
    n: int
    folder: Path
    samples: list[Sample]
    videos: dict[str, Any]
    tracks: dict[str, list[Track]]


def make_split(root: Path, name: str, seed: int, n: int) -> Split:
    """Write the split's videos once (a folder per seed and size), then load it."""
    folder = root / f"{name}_seed{seed}_n{n}"
    complete = (folder / "annotations.json").exists() and (folder / "toyworld.json").exists()
    if not complete or len(load_sidecar(folder)["videos"]) != n:
        make_dataset(folder, n, ToyWorldConfig(seed=seed), progress=True)
    videos = load_sidecar(folder)["videos"]
    samples = load_dataset("toy", folder)
    tracks = {s.id: sidecar_tracks(videos[s.id]) for s in samples}
    return Split(name, seed, n, folder, samples, videos, tracks)


# ----------------------------------------------------------------------------------- grounder


class RecordingScorer(TubeScorer):
    """The shared tube scorer, also storing what the diagnostics and derived rows need.

    Extras added to each result: ``spatial_peaks`` ``(T, 2)`` (row, col) of the spatial
    evidence's maximum per sampled frame, and ``temporal_frame_scores`` ``(P, T)``: every
    track's per-frame score under the temporal evidence, from which the scorer's span of ANY
    track follows exactly (the chosen track's row is the result's ``frame_scores``).
    """

    def ground(
        self,
        evidence: np.ndarray,
        tracks: Sequence[Track],
        frame_ids: np.ndarray,
        num_frames: int,
        width: int,
        height: int,
        temporal_evidence: np.ndarray | None = None,
    ) -> GroundingResult:
        result = super().ground(
            evidence, tracks, frame_ids, num_frames, width, height, temporal_evidence=temporal_evidence
        )
        cfg = self.config
        result.extras["spatial_peaks"] = evidence_peaks(evidence)
        if len(tracks):
            t_evidence = evidence if temporal_evidence is None else temporal_evidence
            fids = np.asarray(frame_ids, dtype=np.int64)
            result.extras["temporal_frame_scores"] = frame_scores(
                t_evidence, list(tracks), fids, width, height, cfg.weighting, cfg.use_masks
            )
        return result


@dataclass
class MapsCache:
    """Question maps by (clip, question, tuning, settings), with the seconds they first cost.

    The maps are a deterministic function of that key, so a row asking the same question of the
    same clip with the same settings reuses them instead of running the model again.
    """

    entries: dict[tuple[Any, ...], tuple[QuestionMaps, float]] = field(default_factory=dict)


class BenchGrounder(ZeroShotGrounder):
    """:class:`ZeroShotGrounder` with the recording scorer, offline rules and shared question maps."""

    def __init__(
        self, name: str, config: ZeroShotConfig, adapter: MLLMAdapter, proposer: Any, cache: MapsCache
    ) -> None:
        super().__init__(
            config, adapter=adapter, decomposer=Decomposer(rules=RuleDecomposer()), proposer=proposer
        )
        self.name = name
        self.scorer = RecordingScorer(config.scorer)
        self.cache = cache
        self._reused = 0.0

    def _key(
        self, clip: Clip, question: str, tune: bool, tas: bool, map_question: str | None
    ) -> tuple[Any, ...]:
        cfg = self.config
        lra = cfg.lra if tune else replace(cfg.lra, steps=0)
        return (
            str(clip.path),
            tuple(int(f) for f in clip.frame_ids),
            question,
            map_question,
            tune,
            tas,
            cfg.layers,
            cfg.relative,
            lra,
            cfg.adapter,
        )

    def question_maps(
        self,
        clip: Clip,
        question: str,
        tune: bool,
        tas: bool,
        prepared_cache: dict[str, PreparedInputs] | None = None,
        map_question: str | None = None,
    ) -> QuestionMaps:
        key = self._key(clip, question, tune, tas, map_question)
        hit = self.cache.entries.get(key)
        if hit is not None:
            maps, seconds = hit
            self._reused += seconds
            return replace(maps, backward_seconds=0.0)  # nothing ran backwards in this call
        tick = time.perf_counter()
        maps = super().question_maps(clip, question, tune, tas, prepared_cache, map_question)
        self.cache.entries[key] = (maps, time.perf_counter() - tick)
        return maps

    def ground_sample(self, sample: Sample, tracks: Sequence[Track] | None = None) -> GroundingResult:
        self._reused = 0.0
        result = super().ground_sample(sample, tracks)
        result.extras["reused_seconds"] = self._reused
        return result


# ----------------------------------------------------------------------------------- rows


@dataclass
class Row:
    """One evaluated configuration: metrics in percent, track selection, cost, and its records."""

    name: str
    metrics: dict[str, float]
    track_acc: float
    chance: float
    seconds_per_video: float | None
    n: int
    failed: int
    folder: Path | None = None
    records: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    def table_cells(self) -> dict[str, object]:
        seconds = "= full" if self.seconds_per_video is None else f"{self.seconds_per_video:.2f}"
        return {**self.metrics, "track acc": self.track_acc, "chance": self.chance, "s/video": seconds}

    def to_json(self) -> dict[str, Any]:
        return {
            "metrics": self.metrics,
            "track_acc": self.track_acc,
            "chance": self.chance,
            "seconds_per_video": self.seconds_per_video,
            "n": self.n,
            "failed": self.failed,
            "folder": None if self.folder is None else str(self.folder),
        }


def _selection(split: Split, chosen: Mapping[str, int | None]) -> tuple[float, float]:
    """Track-selection accuracy and chance in percent over every sample of the split."""
    summary = track_selection_summary(
        [chosen.get(s.id) for s in split.samples],
        [int(s.meta["target_id"]) for s in split.samples],
        [len(split.tracks[s.id]) for s in split.samples],
    )
    return 100.0 * summary.accuracy, 100.0 * summary.chance


def _settings_hash(config: ZeroShotConfig, model: str, split: Split) -> str:
    text = json.dumps(
        {"config": config.to_json(), "model": model, "split": [split.name, split.seed, split.n]},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def run_row(
    name: str,
    config: ZeroShotConfig,
    split: Split,
    adapter: MLLMAdapter,
    cache: MapsCache,
    out: Path,
    model: str,
    progress: bool,
    proposer: Any = None,
) -> Row:
    """Run (or resume) one configuration on a split and score it (tracks: ``proposer``, default
    the toy world's own)."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    folder = out / "runs" / split.name / f"{slug}-{_settings_hash(config, model, split)}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config.to_json(), indent=2, default=str) + "\n")
    proposer = proposer if proposer is not None else ToyProposer(split.folder)
    grounder = BenchGrounder(name, config, adapter, proposer, cache)
    if progress:
        print(f"[{split.name}] {name}", file=sys.stderr, flush=True)
    summary = run_dataset(split.samples, grounder, RunConfig(out_dir=folder, progress=progress))
    records = load_results(folder)
    ok = [r for r in records.values() if not is_error(r)]
    report = summary.metrics or {}
    acc, chance = _selection(split, {i: r.get("chosen_track") for i, r in records.items() if not is_error(r)})
    cost = [r["seconds"] + float(r["extras"].get("reused_seconds", 0.0)) for r in ok]
    return Row(
        name=name,
        metrics={m: float(report.get(m, 0.0)) for m in METRICS},
        track_acc=acc,
        chance=chance,
        seconds_per_video=float(np.mean(cost)) if cost else float("nan"),
        n=len(split.samples),
        failed=len(records) - len(ok) + (len(split.samples) - len(records)),
        folder=folder,
        records=records,
    )


def tube_for_track(
    record: Mapping[str, Any], track: Track, index: int, scorer: TubeScorerConfig, num_frames: int
) -> Tube:
    """The tube the full method outputs had it chosen track ``index``: that track's temporal
    frame scores -> the scorer's span rule -> assembled on the track (as ``TubeScorer.ground``)."""
    fids = np.asarray(record["sampled_frame_ids"], dtype=np.int64)
    per_frame = np.asarray(record["extras"]["temporal_frame_scores"][index], dtype=np.float64)
    k = scorer.span_frames if scorer.span_frames is not None else max(1, fids.size // 2)
    first, last = select_span(per_frame, k, scorer.span_method)
    return assemble(track, span_to_native(first, last, fids, num_frames), scorer.extrapolate)


def _same_tube(a: Tube, b: Tube) -> bool:
    return (
        (a.start, a.end) == (b.start, b.end)
        and np.array_equal(a.frame_ids, b.frame_ids)
        and np.allclose(a.boxes, b.boxes, rtol=0.0, atol=1e-9)
    )


def derived_rows(full: Row, split: Split, scorer: TubeScorerConfig, seed: int) -> tuple[Row, Row, int]:
    """The random-track and oracle-track rows from the full method's stored results.

    Both take the span the full method's temporal evidence gives the track (:func:`tube_for_track`).
    Returns ``(random row, oracle row, samples where re-deriving the chosen track's tube
    reproduced the stored tube exactly)``.
    """
    rng = np.random.default_rng(seed)
    random_tubes: dict[str, Tube] = {}
    oracle_tubes: dict[str, Tube] = {}
    random_pick: dict[str, int | None] = {}
    exact = 0
    for sample in split.samples:
        tracks = split.tracks[sample.id]
        pick = int(rng.integers(len(tracks)))  # drawn for every sample: picks do not depend on failures
        record = full.records.get(sample.id)
        if record is None or is_error(record):
            continue
        num_frames = int(split.videos[sample.id]["num_frames"])
        chosen = record["chosen_track"]
        stored = tube_from_json(sample.id, record["tube"])
        exact += _same_tube(tube_for_track(record, tracks[chosen], chosen, scorer, num_frames), stored)
        random_pick[sample.id] = pick
        random_tubes[sample.id] = tube_for_track(record, tracks[pick], pick, scorer, num_frames)
        target = int(sample.meta["target_id"])
        oracle_tubes[sample.id] = tube_for_track(record, tracks[target], target, scorer, num_frames)
    oracle_pick = {s.id: int(s.meta["target_id"]) for s in split.samples if s.id in oracle_tubes}
    gts = {s.id: s.gt for s in split.samples if s.gt is not None}
    rows = []
    for name, tubes, chosen in (
        (RANDOM_ROW, random_tubes, random_pick),
        (ORACLE_ROW, oracle_tubes, oracle_pick),
    ):
        report = evaluate(tubes, gts).report()
        acc, chance = _selection(split, chosen)
        rows.append(
            Row(
                name,
                {m: float(report[m]) for m in METRICS},
                acc,
                chance,
                None,
                len(split.samples),
                len(split.samples) - len(tubes),
            )
        )
    return rows[0], rows[1], exact


DETECTOR_ROWS = (
    "full method, toy-detector tracks",
    "random track, toy-detector tracks",
    "oracle track, toy-detector tracks",
)


def best_track(sample: Sample, tracks: Sequence[Track], frame_ids: np.ndarray) -> tuple[int, float]:
    """The track closest to the target on the sampled frames inside its tube, and that mean IoU."""
    assert sample.gt is not None
    tube = sample.gt.tube
    annotated = set(tube.frame_ids.tolist())
    gt_frames = [int(f) for f in frame_ids if int(f) in annotated]
    best, best_iou = 0, -1.0
    for i, track in enumerate(tracks):
        ious = []
        for fid in gt_frames:
            at = np.flatnonzero(track.frame_ids == fid)
            box = tube.boxes[np.flatnonzero(tube.frame_ids == fid)[0]]
            ious.append(float(box_iou_matrix(box[None], track.boxes[at[:1]])[0, 0]) if at.size else 0.0)
        mean = float(np.mean(ious)) if ious else 0.0
        if mean > best_iou:
            best, best_iou = i, mean
    return best, best_iou


def detector_rows(
    config: ZeroShotConfig,
    split: Split,
    adapter: MLLMAdapter,
    cache: MapsCache,
    out: Path,
    model: str,
    progress: bool,
    seed: int,
) -> tuple[dict[str, Row], dict[str, float]]:
    """The full method and its derived rows on tracks from the toy detector (IoU tracker, 5 fps).

    The oracle here is the detector track closest to the target (mean IoU over the sampled frames
    of the ground-truth tube): the scorer's ceiling with tracks a detector made, where the toy
    world's own tracks give the ceiling with perfect tracks. Returns the rows and how often the
    closest track reaches IoU 0.5 / 0.3.
    """
    store_dir = out / "tracks" / split.name
    full = run_row(
        DETECTOR_ROWS[0], config, split, adapter, cache, out, model, progress, toy_proposer(store_dir, 5.0)
    )
    store = TrackStore(store_dir)
    tracks: dict[str, list[Track]] = {}
    samples: list[Sample] = []
    closest: list[float] = []
    for sample in split.samples:
        record = full.records.get(sample.id)
        stored = store.load(Path(sample.video).name)
        if record is None or is_error(record) or not stored:
            tracks[sample.id] = stored or []
            samples.append(replace(sample, meta={**sample.meta, "target_id": -1}))
            continue
        target, iou = best_track(sample, stored, np.asarray(record["sampled_frame_ids"], dtype=np.int64))
        closest.append(iou)
        tracks[sample.id] = stored
        samples.append(replace(sample, meta={**sample.meta, "target_id": target}))
    detected = replace(split, samples=[s for s in samples if tracks[s.id]], tracks=tracks)
    random_row, oracle_row, _ = derived_rows(full, detected, config.scorer, seed)
    # run_row scored the choice against the toy world's track ids: score it against the closest track
    chosen = {i: r.get("chosen_track") for i, r in full.records.items() if not is_error(r)}
    full.track_acc, full.chance = _selection(detected, chosen)
    rows = {DETECTOR_ROWS[0]: full, DETECTOR_ROWS[1]: random_row, DETECTOR_ROWS[2]: oracle_row}
    for row in rows.values():
        row.n = len(split.samples)
    reach = {
        "clips": len(split.samples),
        "with tracks": len(detected.samples),
        "closest >= 0.5": 100 * float(np.mean(np.asarray(closest) >= 0.5)) if closest else 0.0,
        "closest >= 0.3": 100 * float(np.mean(np.asarray(closest) >= 0.3)) if closest else 0.0,
    }
    return rows, reach


# ----------------------------------------------------------------------------------- diagnostics


def lra_effect(row: Row) -> dict[str, dict[str, float | int | None]]:
    """How far the first LRA update moved the yes/no contrast, per branch of a row.

    ``s_sub`` is recorded before each update, so with at least 2 steps ``s_sub[1] - s_sub[0]``
    is the first update's effect on ``s(q_sub) = logit(yes) - logit(no)``. Returns, per branch,
    the number of tuned latents, the mean ``s(q_sub)`` before tuning and the mean change.
    """
    out: dict[str, dict[str, float | int | None]] = {}
    for branch in ("spatial", "temporal"):
        before, delta = [], []
        for record in row.records.values():
            if is_error(record):
                continue
            for latent in record["extras"].get("yes_no", {}).get(branch, []):
                history = latent.get("s_sub") or []
                if len(history) >= 2:
                    before.append(history[0])
                    delta.append(history[1] - history[0])
        out[branch] = {
            "latents": len(delta),
            "s_sub_before": float(np.mean(before)) if before else None,
            "first_update_change": float(np.mean(delta)) if delta else None,
        }
    return out


def pointing_table(rows: Sequence[Row], split: Split, grid: tuple[int, int]) -> dict[str, dict[str, float]]:
    """Pointing accuracy beside the any-object rate (percent) of each row's spatial evidence."""
    out: dict[str, dict[str, float]] = {}
    for row in rows:
        cells: dict[str, float] = {}
        for rule in ("centre", "overlap"):
            counts = []
            for sample in split.samples:
                record = row.records.get(sample.id)
                if record is None or is_error(record) or sample.gt is None:
                    continue
                fids = np.asarray(record["sampled_frame_ids"], dtype=np.int64)
                objects = np.stack([t.boxes_at(fids) for t in split.tracks[sample.id]])
                entry = split.videos[sample.id]
                counts.append(
                    pointing_counts(
                        np.asarray(record["extras"]["spatial_peaks"]),
                        sample.gt.tube.boxes_at(fids),
                        objects,
                        grid,
                        entry["width"],
                        entry["height"],
                        rule=rule,
                    )
                )
            summary = pointing_summary(counts)
            cells["frames"] = summary.frames
            cells[f"target ({rule})"] = 100.0 * summary.target
            cells[f"any object ({rule})"] = 100.0 * summary.any_object
            cells[f"random cell: target ({rule})"] = 100.0 * summary.target_chance
            cells[f"random cell: any ({rule})"] = 100.0 * summary.any_chance
        out[row.name] = cells
    return out


def swap_pairs(split: Split) -> list[tuple[Sample, int, str, int, str]]:
    """One pair per clip: ``(sample, A, question A, B, question B)``.

    A is the target, asked with its caption's attribute phrase (the method's own spatial
    question); B is the first other object that phrase does not describe, asked with its full
    label (``"the big red square"``), so each description fits its object and not the other.
    """
    pairs = []
    for sample in split.samples:
        entry = split.videos[sample.id]
        parts = entry["caption_parts"]
        target = int(entry["target"])
        for obj in entry["objects"]:
            fits = obj["colour"] == parts["colour"] and obj["shape"] == parts["shape"]
            fits = fits and parts["size"] in (None, obj["size"])
            if int(obj["id"]) != target and not fits:
                question_b = interrogative(f"the {obj['size']} {obj['colour']} {obj['shape']}")
                pairs.append(
                    (sample, target, interrogative(parts["attribute_phrase"]), int(obj["id"]), question_b)
                )
                break
    return pairs


def question_swap(
    pairs: Sequence[tuple[Sample, int, str, int, str]],
    split: Split,
    grounder: BenchGrounder,
    tune: bool,
    tas: bool,
    label: str,
    progress: bool,
) -> list[SwapOutcome]:
    """Ask each pair's two questions of its clip; outcomes of the chosen tracks and map peaks."""
    cfg = grounder.config
    scorer = cfg.scorer
    outcomes = []
    for sample, index_a, question_a, index_b, question_b in tqdm(
        pairs, desc=f"swap: {label}", unit="pair", disable=not progress
    ):
        clip = sample_uniform(sample.video, cfg.num_frames)
        tracks = split.tracks[sample.id]
        evidence, scores = [], []
        for question in (question_a, question_b):
            maps = grounder.question_maps(clip, question, tune=tune, tas=tas)
            ev = np.asarray(
                select_grounding_token(maps.maps, cfg.gti, cfg.fixed_index).evidence, dtype=np.float64
            )
            evidence.append(ev)
            scores.append(
                score_tracks(
                    ev, tracks, maps.frame_ids, clip.width, clip.height, scorer.weighting, scorer.use_masks
                )
            )
        outcomes.append(swap_outcome(scores[0], scores[1], index_a, index_b, evidence[0], evidence[1]))
    return outcomes


# ----------------------------------------------------------------------------------- tuning


def layer_windows(num_layers: int) -> list[tuple[str, tuple[int, int] | None]]:
    """All layers, the last half, the last layer (duplicates dropped for shallow models)."""
    candidates = [
        ("all layers", None),
        (f"last half [{num_layers // 2}, {num_layers})", (num_layers // 2, num_layers)),
        (f"last layer [{num_layers - 1}, {num_layers})", (num_layers - 1, num_layers)),
    ]
    seen: set[tuple[int, int]] = {(0, num_layers)}
    out: list[tuple[str, tuple[int, int] | None]] = [candidates[0]]
    for label, window in candidates[1:]:
        if window is not None and window not in seen and window[0] < window[1]:
            seen.add(window)
            out.append((label, window))
    return out


def _best(rows: Sequence[Row]) -> int:
    """Index of the highest m_vIoU, the first of ties."""
    return int(np.argmax([r.metrics["m_vIoU"] for r in rows]))


def tune(
    base: ZeroShotConfig,
    split: Split,
    adapter: MLLMAdapter,
    cache: MapsCache,
    out: Path,
    model: str,
    num_layers: int,
    progress: bool,
) -> tuple[tuple[int, int] | None, LRAConfig, dict[str, Any]]:
    """The sweep on the validation split: layer window on ``+ GTI``, then LRA on the full row."""
    gti_changes = dict(TABLE2)[GTI_ROW]
    windows = layer_windows(num_layers)
    window_rows = [
        run_row(
            f"+ GTI, {label}",
            base.ablation(layers=w, **gti_changes),
            split,
            adapter,
            cache,
            out,
            model,
            progress,
        )
        for label, w in windows
    ]
    best_window = windows[_best(window_rows)][1]

    def lra_row(step_size: float, steps: int) -> Row:
        lra = replace(base.lra, step_size=step_size, steps=steps)
        label = f"full, LRA {steps} steps" + (f" of {step_size:g}" if steps else "")
        return run_row(
            label, base.ablation(layers=best_window, lra=lra), split, adapter, cache, out, model, progress
        )

    # The default step size first, so a tie keeps it.
    sizes = [base.lra.step_size, *[s for s in (2.0, 8.0, 32.0) if s != base.lra.step_size]]
    size_rows = [lra_row(s, 2) for s in sizes]
    best_size = sizes[_best(size_rows)]
    more_steps = lra_row(best_size, 4)
    no_steps = lra_row(best_size, 0)
    lra_rows = [*size_rows, more_steps, no_steps]
    lra_settings = [(s, 2) for s in sizes] + [(best_size, 4), (best_size, 0)]
    step_size, steps = lra_settings[_best(lra_rows)]
    chosen = replace(base.lra, step_size=step_size, steps=steps)
    tables = {
        "layer_window": {r.name: r for r in window_rows},
        "lra": {r.name: r for r in lra_rows},
        "chosen": {"layers": best_window, "lra_step_size": step_size, "lra_steps": steps},
    }
    return best_window, chosen, tables


# ----------------------------------------------------------------------------------- output


def _clean(value: Any) -> Any:
    """JSON-safe: NaN / inf -> None, tuples -> lists, numpy -> Python."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, np.generic):
        return _clean(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _window_text(window: tuple[int, int] | None) -> str:
    return "all layers" if window is None else f"layers [{window[0]}, {window[1]})"


def _parse_layers(text: str) -> tuple[int, int] | None:
    if text == "all":
        return None
    match = re.fullmatch(r"(\d+):(\d+)", text)
    if match is None or int(match[1]) >= int(match[2]):
        raise argparse.ArgumentTypeError(f"--layers must be 'all' or 'lo:hi' with lo < hi, got {text!r}")
    return int(match[1]), int(match[2])


def _parse_presets(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in PRESETS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown preset(s) {', '.join(unknown)}; known: {', '.join(PRESETS)}"
        )
    return names


def preset_rows(
    names: Sequence[str],
    split: Split,
    model: str,
    model_name: str,
    num_frames: int,
    out: Path,
    progress: bool,
) -> dict[str, Row]:
    """One held-out row per preset, each with an adapter loaded with the preset's options."""
    rows = {}
    for name in names:
        config = ZeroShotConfig.preset(name, model=model_name, num_frames=num_frames)
        adapter = load_adapter(model, num_frames=num_frames, options=config.adapter)
        rows[f"preset {name}"] = run_row(
            f"preset {name}", config, split, adapter, MapsCache(), out, model, progress
        )
    return rows


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="toy", help="checkpoint folder or hub id ('toy': the shipped one)")
    parser.add_argument("--out", type=Path, default=Path("runs/toy_zero_shot"), help="output folder")
    parser.add_argument(
        "--tune", action="store_true", help="sweep layer window and LRA on the validation split"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 6 validation / 8 held-out clips, 4 frames"
    )
    parser.add_argument(
        "--num-frames", type=int, default=None, help="frames per clip (default 12; --quick: 4)"
    )
    parser.add_argument("--val-n", type=int, default=None, help="validation clips (default 60; --quick: 6)")
    parser.add_argument(
        "--heldout-n", type=int, default=None, help="held-out clips (default 200; --quick: 8)"
    )
    parser.add_argument("--val-seed", type=int, default=3000)
    parser.add_argument("--heldout-seed", type=int, default=4000)
    defaults = ZeroShotConfig()
    parser.add_argument(
        "--layers",
        type=_parse_layers,
        default=defaults.layers,
        help="layer window 'lo:hi' or 'all' (without --tune)",
    )
    parser.add_argument("--lra-step-size", type=float, default=defaults.lra.step_size)
    parser.add_argument("--lra-steps", type=int, default=defaults.lra.steps)
    parser.add_argument(
        "--swap-tuned-pairs",
        type=int,
        default=100,
        help="pairs of the question-swap test also run with the full method's tuned spatial maps",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random-track row")
    parser.add_argument(
        "--presets",
        type=_parse_presets,
        default=(),
        help="comma-separated ZeroShotConfig presets run on the held-out split beside the full method "
        "(e.g. reference-hcstvg-v2,paper), at --num-frames frames",
    )
    parser.add_argument(
        "--detector-tracks",
        action="store_true",
        help="also run the full method on tracks from the toy detector (IoU tracker, 5 fps) and derive "
        "its random and oracle rows there",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.val_seed == args.heldout_seed:
        parser.error("the validation and held-out seeds must differ (the same seed gives the same clips)")
    args.num_frames = args.num_frames or (4 if args.quick else DEFAULT_FRAMES)
    args.val_n = args.val_n or (6 if args.quick else 60)
    args.heldout_n = args.heldout_n or (8 if args.quick else 200)
    return args


def _rows_markdown(rows: Mapping[str, Row]) -> str:
    return markdown_table({name: row.table_cells() for name, row in rows.items()}, ROW_COLUMNS)


def _lra_line(effect: Mapping[str, Mapping[str, Any]], steps: int) -> str:
    if steps < 2:
        return f"LRA effect: not measurable with {steps} step(s) (the score is recorded before each update)."
    parts = []
    for branch, v in effect.items():
        if v["latents"]:
            parts.append(
                f"{branch} branch: s(q_sub) = logit(yes) - logit(no) {v['s_sub_before']:.3f} before tuning, "
                f"mean change {v['first_update_change']:+.4f} after the first update ({v['latents']} latents)"
            )
    return "LRA effect on the full method: " + "; ".join(parts) + "."


def render_markdown(
    result: Mapping[str, Any],
    rows: Mapping[str, Row],
    tuning: Mapping[str, Any] | None,
    pilot_md: str,
    presets: Mapping[str, Row] | None = None,
    detected: Mapping[str, Row] | None = None,
) -> str:
    """The report: settings, sweep, rows, diagnostics."""
    s = result["settings"]
    lines = [
        "# Training-free grounding on the toy world",
        "",
        f"- model: `{result['model']}` ({result['model_name']}); {s['num_layers']} LM layers, "
        f"{s['grid'][0]}x{s['grid'][1]} visual tokens per frame, {s['num_frames']} frames per clip",
        f"- validation split: seed {s['val_seed']}, {s['val_n']} clips (tuning only); "
        f"held-out split: seed {s['heldout_seed']}, {s['heldout_n']} clips (every table below)",
        "- tracks: the toy world's object tracks (oracle proposals, every object of the clip)",
        f"- settings ({'chosen by --tune on the validation split' if tuning else 'from the command line'}): "
        f"{_window_text(s['layers'])}, LRA {s['lra_steps']} steps of size {s['lra_step_size']:g} "
        f"(smoothing {s['lra_smoothing']:g}, contrast {s['lra_contrast']}), span rule {s['span_method']} "
        f"with k = {s['span_frames']}, GTI = max activation",
        f"- wall time: {result['seconds']['total']:.0f} s ({result['seconds']['total'] / 60:.1f} min) "
        f"on {s['threads']} torch thread(s)",
        "",
    ]
    if tuning:
        lines += [
            "## Tuning sweep (validation split; percent; best m_vIoU chosen)",
            "",
            "Layer window, on the `+ GTI` row:",
            "",
            _rows_markdown(tuning["layer_window"]),
            "",
            f"LRA, on the full method with {_window_text(tuning['chosen']['layers'])}:",
            "",
            _rows_markdown(tuning["lra"]),
            "",
        ]
    lines += [
        f"## Held-out split: the paper's Table 2 rows ({s['heldout_n']} clips; percent)",
        "",
        _rows_markdown(rows),
        "",
        "`track acc`: the chosen track is the target's; `chance`: mean of 1 / number of tracks over the "
        "same clips. `random track` (seed {seed}) and `oracle track` (the target's own track) are "
        "derived from the full method's stored results: each takes the span the full method's temporal "
        "step gives that track (its temporal-evidence frame scores -> the same span rule), so only the "
        "track choice differs. Re-deriving the full method's own choice this way reproduced its stored "
        "tube on {exact}/{done} clips. `s/video` counts maps reused from an earlier row at their "
        "original cost.".format(
            seed=s["random_seed"], exact=result["derived_exact"], done=result["full_done"]
        ),
        "",
        _lra_line(result["lra_effect"], s["lra_steps"]),
        "",
    ]
    if detected:
        reach = result["detector_tracks"]["reach"]
        lines += [
            f"## Held-out split: tracks from the toy detector ({s['heldout_n']} clips; percent)",
            "",
            _rows_markdown({FULL_ROW: rows[FULL_ROW], ORACLE_ROW: rows[ORACLE_ROW], **detected}),
            "",
            "The toy colour detector prompted with the sentence's noun phrase, its boxes linked by the IoU "
            "tracker on 5 frames per second plus the sampled frames (`stvg ground`'s offline default). "
            "Its `oracle track` is the detector track closest to the target (mean IoU on the sampled frames "
            "of the ground-truth tube), with the span the full method's temporal step gives it: the "
            "scorer's ceiling on detector tracks. The derived rows cover the {n} of {clips} clips with a "
            "track; the closest track reaches IoU 0.5 on {r5:.1f} % of them and 0.3 on {r3:.1f} %.".format(
                n=reach["with tracks"],
                clips=reach["clips"],
                r5=reach["closest >= 0.5"],
                r3=reach["closest >= 0.3"],
            ),
            "",
        ]
    if presets:
        lines += [
            f"## Held-out split: presets beside this run's full method ({s['heldout_n']} clips; percent)",
            "",
            _rows_markdown({FULL_ROW: rows[FULL_ROW], **presets}),
            "",
            "Each preset row runs `ZeroShotConfig.preset(name)` (the released code's settings, or the "
            "paper's) at this run's frame count, with an adapter loaded with the preset's options.",
            "",
        ]
    lines += [
        "## Pointing: argmax cell of the spatial evidence on each ground-truth frame (held-out; percent)",
        "",
        "`centre`: the cell's centre lies in the box; `overlap`: the box covers part of the cell (the "
        "cells the tube scorer lets a track see). `random cell`: the rate of a uniformly random cell.",
        "",
    ]
    pointing = result["pointing"]
    for rule in ("centre", "overlap"):
        cols = (
            "frames",
            f"target ({rule})",
            f"any object ({rule})",
            f"random cell: target ({rule})",
            f"random cell: any ({rule})",
        )
        lines += [markdown_table(pointing, cols), ""]
    swap = result["question_swap"]
    swap_rows = {
        label: {
            "pairs": v["n"],
            "follows both": v["follows"],
            "chance follows": v["chance_follows"],
            "track moves": v["track_moves"],
            "chance moves": v["chance_moves"],
            "peak moves": v["peak_moves"],
        }
        for label, v in swap.items()
    }
    lines += [
        "## Question swap (held-out; percent)",
        "",
        "One pair per clip: A = the target asked with its caption's attribute phrase, B = another object "
        "that phrase does not describe, asked with its full label. `follows both`: the chosen track is A's "
        "when asked about A and B's when asked about B; `track moves` / `peak moves`: the chosen track / "
        "the map's argmax over (T, h, w) differs between the two questions. Chance: independent uniform "
        "picks (mean 1/P^2 and 1 - 1/P).",
        "",
        markdown_table(
            swap_rows,
            ("pairs", "follows both", "chance follows", "track moves", "chance moves", "peak moves"),
        ),
        "",
        "## Pilot study: special tokens, full query as the question (held-out)",
        "",
        pilot_md.rstrip(),
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns what ``toy_zero_shot.json`` holds."""
    import torch

    args = parse_args(argv)
    started = time.perf_counter()
    progress = not args.no_progress
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    model_path = str(resolve_model(args.model))
    seconds: dict[str, float] = {}

    with warnings.catch_warnings():
        # No LLM endpoint here: the offline rules split toy captions exactly.
        warnings.simplefilter("ignore", DecompositionWarning)
        tick = time.perf_counter()
        val = make_split(out / "data", "validation", args.val_seed, args.val_n)
        heldout = make_split(out / "data", "held-out", args.heldout_seed, args.heldout_n)
        adapter = load_adapter(model_path, num_frames=args.num_frames)
        text_config = getattr(adapter.model.config, "text_config", adapter.model.config)
        num_layers = int(text_config.num_hidden_layers)
        world = ToyWorldConfig()
        # Qwen2-VL's grid follows the frame size (one token grid per frame pair); the others' is fixed.
        by_size = getattr(adapter, "grid_shape_for", None)
        shape = by_size(world.height, world.width) if by_size is not None else adapter.grid_shape
        grid = tuple(int(v) for v in shape)
        seconds["setup"] = time.perf_counter() - tick
        cache = MapsCache()
        base = ZeroShotConfig(model=args.model, num_frames=args.num_frames)

        tuning = None
        tick = time.perf_counter()
        if args.tune:
            layers, lra, tuning = tune(base, val, adapter, cache, out, model_path, num_layers, progress)
        else:
            layers = args.layers
            lra = replace(base.lra, step_size=args.lra_step_size, steps=args.lra_steps)
        seconds["tuning"] = time.perf_counter() - tick
        cache.entries.clear()  # validation maps are never asked again
        chosen = base.ablation(layers=layers, lra=lra)

        tick = time.perf_counter()
        table2 = dict(TABLE2)
        ran: dict[str, Row] = {}
        for index in RUN_ORDER:
            name = TABLE2[index][0]
            ran[name] = run_row(
                name, chosen.ablation(**table2[name]), heldout, adapter, cache, out, model_path, progress
            )
        rows = {name: ran[name] for name, _ in TABLE2}
        random_row, oracle_row, exact = derived_rows(rows[FULL_ROW], heldout, chosen.scorer, args.seed)
        rows[RANDOM_ROW], rows[ORACLE_ROW] = random_row, oracle_row
        seconds["rows"] = time.perf_counter() - tick

        tick = time.perf_counter()
        detected: dict[str, Row] = {}
        reach: dict[str, float] = {}
        if args.detector_tracks:
            detected, reach = detector_rows(
                chosen, heldout, adapter, cache, out, model_path, progress, args.seed
            )
        seconds["detector_tracks"] = time.perf_counter() - tick

        tick = time.perf_counter()
        presets = preset_rows(args.presets, heldout, model_path, args.model, args.num_frames, out, progress)
        seconds["presets"] = time.perf_counter() - tick

        tick = time.perf_counter()
        pointing = pointing_table([rows[name] for name, _ in TABLE2], heldout, grid)  # type: ignore[arg-type]
        pairs = swap_pairs(heldout)
        plain = BenchGrounder(GTI_ROW, chosen.ablation(**table2[GTI_ROW]), adapter, None, cache)
        full = BenchGrounder(FULL_ROW, chosen, adapter, None, cache)
        swap = {
            f"attention (+ GTI), {len(pairs)} pairs": question_swap(
                pairs, heldout, plain, tune=False, tas=False, label="attention", progress=progress
            ),
        }
        tuned_pairs = pairs[: max(0, args.swap_tuned_pairs)]
        if tuned_pairs:
            swap[f"full method's spatial maps (LRA + TAS), {len(tuned_pairs)} pairs"] = question_swap(
                tuned_pairs,
                heldout,
                full,
                tune=chosen.spatial_prompt,
                tas=chosen.tas,
                label="LRA + TAS",
                progress=progress,
            )
        swap_summary = {label: question_swap_summary(o) for label, o in swap.items()}
        seconds["swap"] = time.perf_counter() - tick
        cache.entries.clear()

        tick = time.perf_counter()
        pilot = run_pilot(
            adapter,
            heldout.samples,
            layers=layers,
            tracks_for=lambda sample, clip: heldout.tracks[sample.id],
            progress=progress,
        )
        seconds["pilot"] = time.perf_counter() - tick
    seconds["total"] = time.perf_counter() - started

    full_done = sum(not is_error(r) for r in rows[FULL_ROW].records.values())
    settings = {
        "num_frames": args.num_frames,
        "num_layers": num_layers,
        "grid": list(grid),
        "layers": layers,
        "lra_step_size": lra.step_size,
        "lra_steps": lra.steps,
        "lra_smoothing": lra.smoothing,
        "lra_contrast": lra.contrast,
        "span_method": chosen.scorer.span_method,
        "span_frames": chosen.scorer.span_frames
        if chosen.scorer.span_frames is not None
        else max(1, args.num_frames // 2),
        "val_seed": args.val_seed,
        "val_n": args.val_n,
        "heldout_seed": args.heldout_seed,
        "heldout_n": args.heldout_n,
        "random_seed": args.seed,
        "tuned": bool(args.tune),
        "quick": bool(args.quick),
        "threads": torch.get_num_threads(),
        "config": chosen.to_json(),
    }
    pilot_json = {
        "token_names": pilot.table.token_names,
        "mean_attention_ratio": pilot.table.mean_ratio,
        "hit_ratio": pilot.table.hit_ratio,
        "rank_accuracy": pilot.table.rank_accuracy,
        "n_samples": pilot.table.n_samples,
        "n_ratio_samples": pilot.table.n_ratio_samples,
    }
    result: dict[str, Any] = {
        "model": model_path,
        "model_name": args.model,
        "settings": settings,
        "splits": {
            "validation": {"seed": val.seed, "n": val.n, "folder": str(val.folder)},
            "held-out": {"seed": heldout.seed, "n": heldout.n, "folder": str(heldout.folder)},
        },
        "tuning": None
        if tuning is None
        else {
            "layer_window": {k: r.to_json() for k, r in tuning["layer_window"].items()},
            "lra": {k: r.to_json() for k, r in tuning["lra"].items()},
            "chosen": tuning["chosen"],
        },
        "rows": {name: row.to_json() for name, row in rows.items()},
        "presets": {name: row.to_json() for name, row in presets.items()},
        "detector_tracks": {"rows": {name: row.to_json() for name, row in detected.items()}, "reach": reach},
        "derived_exact": exact,
        "lra_effect": lra_effect(rows[FULL_ROW]),
        "full_done": full_done,
        "pointing": pointing,
        "question_swap": {
            label: {k: (100.0 * v if isinstance(v, float) else v) for k, v in asdict(summary).items()}
            for label, summary in swap_summary.items()
        },
        "pilot": pilot_json,
        "seconds": seconds,
    }
    markdown = render_markdown(result, rows, tuning, pilot.to_markdown(), presets, detected)
    (out / "toy_zero_shot.md").write_text(markdown)
    (out / "toy_zero_shot.json").write_text(json.dumps(_clean(result), indent=2) + "\n")
    print(markdown)
    return _clean(result)


if __name__ == "__main__":
    main()
