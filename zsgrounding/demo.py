"""The demo: toy clips -> evidence -> the shared tube scorer -> the shared evaluator.

It needs no download and no GPU. At this stage it grounds with the model-free baselines of
:mod:`zsgrounding.baselines` on the toy world's object tracks (standing in for Grounding DINO +
SAM2 proposals); the MLLM grounders plug into the same steps.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from zsgrounding.baselines import BASELINES
from zsgrounding.datasets import load_dataset
from zsgrounding.datasets.toyworld import ToyWorldConfig, load_sidecar, make_dataset, sidecar_tracks
from zsgrounding.metrics import evaluate
from zsgrounding.predictions import save_predictions
from zsgrounding.report import markdown_table
from zsgrounding.tubes import TubeScorer, TubeScorerConfig
from zsgrounding.types import Tube
from zsgrounding.video import sample_uniform

NUM_FRAMES = 16  # frames sampled per clip, as an MLLM would see them
GRID = (6, 8)  # evidence grid (rows, columns): 16 px cells on the toy world's 128x96 frames


def _toy_dataset(folder: Path, count: int, seed: int, echo: Callable[[str], None]) -> None:
    """Make the toy clips unless the folder already holds exactly these (resumable)."""
    sidecar = folder / "toyworld.json"
    if sidecar.exists():
        data = load_sidecar(folder)
        if data.get("config", {}).get("seed") == seed and len(data["videos"]) == count:
            echo(f"reusing {count} toy clips in {folder}")
            return
    make_dataset(folder, count, ToyWorldConfig(seed=seed), progress=True)


def run_demo(
    out: Path, count: int = 12, seed: int = 0, echo: Callable[[str], None] = print
) -> dict[str, dict]:
    """Render ``count`` toy clips into ``out``, ground them, score them, and write the results.

    Returns:
        ``{grounder name: metrics summary}`` in percent.
    """
    out = Path(out)
    toy_dir = out / "toy"
    _toy_dataset(toy_dir, count, seed, echo)
    samples = load_dataset("toy", toy_dir)
    videos = load_sidecar(toy_dir)["videos"]
    scorer = TubeScorer(TubeScorerConfig(span_method="grow", span_frames=NUM_FRAMES // 2))

    names = [*BASELINES, "oracle-track"]
    predictions: dict[str, dict[str, Tube]] = {name: {} for name in names}
    for sample in tqdm(samples, desc="grounding", unit="clip"):
        clip = sample_uniform(sample.video, NUM_FRAMES)
        tracks = sidecar_tracks(videos[sample.id])
        for name, evidence_fn in BASELINES.items():
            evidence = evidence_fn(clip, sample.sentence, GRID)
            result = scorer.ground(evidence, tracks, clip.frame_ids, clip.num_frames, clip.width, clip.height)
            predictions[name][sample.id] = result.tube
        # Upper bound of the spatial step: the target's own track, span from the colour evidence.
        target = [t for t in tracks if t.track_id == sample.meta["target_id"]]
        evidence = BASELINES["colour"](clip, sample.sentence, GRID)
        result = scorer.ground(evidence, target, clip.frame_ids, clip.num_frames, clip.width, clip.height)
        predictions["oracle-track"][sample.id] = result.tube

    gts = {s.id: s.gt for s in samples if s.gt is not None}
    rows: dict[str, dict] = {}
    for name in names:
        save_predictions(predictions[name], out / "predictions" / f"{name}.json")
        rows[name] = evaluate(predictions[name], gts).summary()
    table = markdown_table(rows)
    (out / "metrics.md").write_text(
        f"Toy world, {len(gts)} clips (seed {seed}), TubeDETR protocol, percent.\n\n{table}\n"
    )
    (out / "metrics.json").write_text(json.dumps(rows, indent=2))

    echo("")
    echo(table)
    echo("")
    echo(f"clips:        {toy_dir / 'videos'}  (annotations: {toy_dir / 'annotations.json'})")
    echo(f"predictions:  {out / 'predictions'}")
    echo(f"metrics:      {out / 'metrics.md'}")
    echo(
        f"re-score one: stvg score --dataset toy --gt {toy_dir} --pred {out / 'predictions' / 'colour.json'}"
    )
    return rows
