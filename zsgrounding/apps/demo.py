"""The demo: both paradigms from the shipped toy checkpoints, side by side, on rendered toy clips.

No download and no GPU. ``run_demo`` renders toy clips, then :func:`compare_paradigms` runs

* ``zero-shot``: the training-free method (GTI, both prompts with LRA, TAS) on the shipped toy
  LLaVA-OneVision (:data:`zsgrounding.assets.TOY_MLLM`);
* ``SpaceVLLM``: the supervised head fine-tuned from it (:data:`zsgrounding.assets.TOY_SPACEVLLM`);
* ``colour``: a model-free baseline (the sentence's colour word) as the floor;
* ``oracle-track``: the target's own track with the colour evidence's span, the ceiling of the
  spatial step;

on the same proposals (the toy world's object tracks, standing in for Grounding DINO + SAM2),
through the same tube scorer and evaluator. It writes the comparison (table, plots, per-grounder
predictions) and one annotated GIF per clip: the ground truth and both paradigms' tubes over the
video, with the zero-shot grounding token's attention as an overlay. Every step resumes: clips
already rendered, samples already grounded and GIFs already written are reused.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from zsgrounding.apps.factory import GrounderSpec, comparison_grounders
from zsgrounding.assets import resolve_model, resolve_spacevllm
from zsgrounding.compare import Comparison, compare_paradigms
from zsgrounding.datasets import load_dataset
from zsgrounding.errors import STVGError
from zsgrounding.toy.world import ToyWorldConfig, load_sidecar, make_dataset, sidecar_tracks
from zsgrounding.tubes import TubeScorer
from zsgrounding.types import GroundingResult, Sample, Tube
from zsgrounding.video import probe, read_frames
from zsgrounding.viz import annotate_frames, write_annotated
from zsgrounding.zeroshot.decompose import Decomposer
from zsgrounding.zeroshot.pipeline import ZeroShotConfig, ZeroShotGrounder

NUM_FRAMES = 20  # frames the MLLM sees per clip (the zero-shot paper's setting)
ZERO_SHOT, SPACEVLLM = "zero-shot", "SpaceVLLM"


def _toy_dataset(folder: Path, count: int, seed: int, echo: Callable[[str], None], progress: bool) -> None:
    """Make the toy clips unless the folder already holds exactly these (resumable)."""
    sidecar = folder / "toyworld.json"
    if sidecar.exists():
        data = load_sidecar(folder)
        if data.get("config", {}).get("seed") == seed and len(data["videos"]) == count:
            echo(f"reusing {count} toy clips in {folder}")
            return
    make_dataset(folder, count, ToyWorldConfig(seed=seed), progress=progress)


class EvidenceKeeper:
    """A grounder that also saves each result's evidence (``<id>.npz``) for the pictures.

    The runner's result lines hold tubes and scores, not the ``(T, h, w)`` maps; keeping them on
    disk lets a resumed demo draw the attention overlay without grounding again.
    """

    def __init__(self, grounder: ZeroShotGrounder, folder: Path) -> None:
        self.grounder = grounder
        self.name = grounder.name
        self.folder = folder

    @property
    def adapter(self) -> Any:
        return self.grounder.adapter  # loaded before the timed calls (compare_paradigms warms it)

    def ground_sample(self, sample: Sample, tracks: Any = None) -> GroundingResult:
        result = self.grounder.ground_sample(sample, tracks=tracks)
        if result.evidence is not None and result.sampled_frame_ids is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(
                self.folder / f"{sample.id}.npz",
                evidence=np.asarray(result.evidence, np.float32),
                frame_ids=np.asarray(result.sampled_frame_ids, np.int64),
            )
        return result


def demo_grounders(evidence_dir: Path, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """The demo's rows, all on one tube scorer, from the shipped toy checkpoints."""
    scorer = TubeScorer()
    config = ZeroShotConfig(model=str(resolve_model("toy")), num_frames=NUM_FRAMES, scorer=scorer.config)
    specs = [GrounderSpec(ZERO_SHOT, "zero-shot"), GrounderSpec(SPACEVLLM, "spacevllm")]
    specs += [GrounderSpec("colour", "colour"), GrounderSpec("oracle-track", "oracle-track")]
    try:
        resolve_spacevllm("toy")
    except STVGError as err:  # a source checkout before the checkpoint was built
        echo(f"stvg: warning: {err}; the demo runs without SpaceVLLM")
        specs = [s for s in specs if s.kind != "spacevllm"]
    # The toy captions follow the rules' grammar exactly; no LLM endpoint is asked.
    grounders = comparison_grounders(specs, config, scorer, decomposer=Decomposer(llm=None), toy=True)
    grounders[ZERO_SHOT] = EvidenceKeeper(grounders[ZERO_SHOT], evidence_dir)
    return grounders


def render_clip(
    path: Path, sample: Sample, tubes: dict[str, Tube], evidence_file: Path | None, tracks: list
) -> Path:
    """One annotated GIF: the ground truth, each tube, the proposals and the attention overlay."""
    clip = read_frames(sample.video, range(probe(sample.video).num_frames))
    evidence = frame_ids = None
    if evidence_file is not None and evidence_file.is_file():
        with np.load(evidence_file) as saved:
            evidence, frame_ids = saved["evidence"], saved["frame_ids"]
    drawn = {"GT": sample.gt.tube, **tubes} if sample.gt is not None else dict(tubes)
    frames = annotate_frames(
        clip,
        None,
        drawn,
        evidence=evidence,
        evidence_frame_ids=frame_ids,
        caption=sample.sentence,
        tracks=tracks,
    )
    return write_annotated(path, frames, clip.fps)


def run_demo(
    out: Path, count: int = 12, seed: int = 0, echo: Callable[[str], None] = print, progress: bool = True
) -> Comparison:
    """Render ``count`` toy clips into ``out``, ground them with both paradigms, write the comparison.

    Returns:
        The :class:`Comparison` (also saved in ``out/compare``).
    """
    out = Path(out)
    toy_dir = out / "toy"
    _toy_dataset(toy_dir, count, seed, echo, progress)
    samples = load_dataset("toy", toy_dir)
    videos = load_sidecar(toy_dir)["videos"]

    def tracks_for(sample: Sample) -> list:
        return sidecar_tracks(videos[sample.id])

    evidence_dir = out / "evidence"
    comparison = compare_paradigms(
        samples, demo_grounders(evidence_dir, echo), out / "compare", tracks_for, progress=progress
    )
    gif_dir = out / "gifs"
    gif_dir.mkdir(parents=True, exist_ok=True)
    drawn_names = [n for n in (ZERO_SHOT, SPACEVLLM) if n in comparison.names]
    for sample in tqdm(samples, desc="GIFs", unit="clip", disable=not progress):
        path = gif_dir / f"{Path(sample.id).stem}.gif"
        if path.is_file():
            continue
        tubes = {
            name: comparison.runs[name].tubes[sample.id]
            for name in drawn_names
            if sample.id in comparison.runs[name].tubes
        }
        render_clip(path, sample, tubes, evidence_dir / f"{sample.id}.npz", tracks_for(sample))

    echo("")
    echo(f"Toy world, {len(samples)} clips (seed {seed}); same proposals, tube scorer and evaluator:")
    echo("")
    echo(comparison.to_markdown())
    echo("")
    compare_dir = out / "compare"
    echo(f"clips:        {toy_dir / 'videos'}  (annotations: {toy_dir / 'annotations.json'})")
    echo(f"GIFs:         {gif_dir}  (GT green; {', '.join(drawn_names)}; attention of the grounding token)")
    echo(f"table:        {compare_dir / 'comparison.md'}")
    echo(f"plots:        {compare_dir / 'metric_bars.png'}, {compare_dir}/scatter_*.png")
    echo(f"predictions:  {compare_dir}/<grounder>/predictions.json")
    first = comparison.names[0]
    echo(
        f"re-score one: stvg score --dataset toy --gt {toy_dir} "
        f"--pred {comparison.runs[first].dir / 'predictions.json'}"
    )
    return comparison
