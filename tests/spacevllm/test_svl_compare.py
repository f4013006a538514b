"""`compare_paradigms` on toy clips: a tiny zero-shot MLLM, a tiny SpaceVLLM and the colour baseline.

Random weights ground nothing, so these tests check the comparison's promises with real numbers:
the same tracks reach every grounder, the table is exactly the shared evaluator on the saved
tubes, the agreement matrix is the evaluator on tube pairs, the files exist, and a second call
resumes without calling anything.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_models import save_tiny_llava

from spacevllm.config import SpaceVLLMConfig
from spacevllm.infer import SpaceVLLMGrounder
from spacevllm.model import SpaceVLLM
from zsgrounding.baselines import BaselineGrounder, colour_evidence
from zsgrounding.compare import Comparison, compare_paradigms, load_comparison, tube_agreement
from zsgrounding.datasets import load_dataset
from zsgrounding.metrics import evaluate
from zsgrounding.mllm import load_adapter
from zsgrounding.predictions import load_predictions
from zsgrounding.toy.world import ToyWorldConfig, load_sidecar, make_dataset, sidecar_tracks
from zsgrounding.tubes import TubeScorer
from zsgrounding.types import Sample, Track
from zsgrounding.zeroshot.decompose import Decomposer, RuleDecomposer
from zsgrounding.zeroshot.lra import LRAConfig
from zsgrounding.zeroshot.pipeline import ZeroShotConfig, ZeroShotGrounder

NAMES = ("zero-shot", "spacevllm", "colour")
METRICS = ("m_tIoU", "m_vIoU", "vIoU@0.3", "vIoU@0.5")


class Recording:
    """Passes calls on and remembers the tracks each sample came with."""

    def __init__(self, grounder) -> None:
        self.grounder = grounder
        self.seen: dict[str, list[Track] | None] = {}

    def ground_sample(self, sample: Sample, tracks=None):
        self.seen[sample.id] = tracks
        return self.grounder.ground_sample(sample, tracks=tracks)


class MustNotRun:
    def ground_sample(self, sample: Sample, tracks=None):
        raise AssertionError(f"a resumed comparison grounded {sample.id} again")


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("svl_compare_toy")
    make_dataset(out, 3, ToyWorldConfig(seed=21), progress=False)
    return out


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory, toy_dir: Path, svl_base_dir: Path):
    torch.manual_seed(1)  # the fresh space decoder's weights
    spacevllm = SpaceVLLM.from_base(
        svl_base_dir, SpaceVLLMConfig(num_frames=4, head_hidden=32, max_new_tokens=8)
    )
    adapter = load_adapter(save_tiny_llava(tmp_path_factory.mktemp("llava")), num_frames=3)
    zero_shot = ZeroShotGrounder(
        ZeroShotConfig(num_frames=3, lra=LRAConfig(steps=1, step_size=1.0)),
        adapter=adapter,
        decomposer=Decomposer(rules=RuleDecomposer()),
    )
    scorer = TubeScorer()
    grounders = {
        "zero-shot": Recording(zero_shot),
        "spacevllm": Recording(SpaceVLLMGrounder(spacevllm, scorer=scorer)),
        "colour": Recording(BaselineGrounder("colour", colour_evidence, scorer, num_frames=4)),
    }
    videos = load_sidecar(toy_dir)["videos"]
    calls: list[str] = []
    made: dict[str, list[Track]] = {}

    def tracks_for(sample: Sample) -> list[Track]:
        calls.append(sample.id)
        made[sample.id] = sidecar_tracks(videos[sample.id])
        return made[sample.id]

    samples = load_dataset("toy", toy_dir)
    out = tmp_path_factory.mktemp("svl_compare_out")
    with warnings.catch_warnings():
        # No LLM endpoint here: the decomposer's "using offline rules" warning is expected.
        warnings.simplefilter("ignore")
        comparison = compare_paradigms(samples, grounders, out, tracks_for, progress=False)
    return comparison, grounders, calls, made, samples, out


def test_every_grounder_gets_the_same_tracks_once_per_sample(compared) -> None:
    comparison, grounders, calls, made, samples, _ = compared
    ids = [s.id for s in samples]
    assert calls == ids  # one tracks_for call per sample, for all three grounders
    for sample_id in ids:
        expected = [id(t) for t in made[sample_id]]
        for name in NAMES:
            seen = grounders[name].seen[sample_id]
            assert seen is not None and [id(t) for t in seen] == expected, name
    assert comparison.ids == ids and comparison.names == list(NAMES)
    assert all(not run.errors for run in comparison.runs.values())


def test_table_is_the_evaluator_on_the_saved_tubes(compared) -> None:
    comparison, _, _, _, samples, out = compared
    gts = {s.id: s.gt for s in samples}
    table = comparison.to_markdown()
    for name in NAMES:
        run = comparison.runs[name]
        assert run.dir == out / name
        expected = evaluate(load_predictions(run.dir / "predictions.json"), gts)
        torch.testing.assert_close(
            torch.from_numpy(run.tiou), torch.from_numpy(expected.tiou), rtol=0, atol=0
        )
        torch.testing.assert_close(
            torch.from_numpy(run.viou), torch.from_numpy(expected.viou), rtol=0, atol=0
        )
        assert run.metrics == expected.report()
        # The markdown row: the four metrics as the evaluator gives them, then s/video and peak MB.
        row = next(line for line in table.splitlines() if line.startswith(f"| {name} "))
        cells = [c.strip() for c in row.strip("|").split("|")]
        summary = expected.summary()
        assert cells[1:5] == [f"{summary[m]:.2f}" for m in METRICS]
        cost = run.cost()
        assert cells[5] == f"{cost['seconds_mean']:.3f}" and cells[6] == f"{cost['peak_mb_max']:.1f}"
        assert cells[7] == "0"
        # Time and memory of every call were recorded in the result lines.
        assert np.all(run.seconds > 0) and np.all(run.peak_mb >= 0)
        assert run.memory == "rss"
        records = [json.loads(line) for line in (run.dir / "results.jsonl").read_text().splitlines()]
        assert [r["extras"]["compare"]["seconds"] for r in records] == run.seconds.tolist()


def test_agreement_matrix(compared) -> None:
    comparison, _, _, _, samples, _ = compared
    names = comparison.names
    matrix = torch.from_numpy(comparison.agreement)
    torch.testing.assert_close(
        torch.diagonal(matrix), torch.full((3,), 100.0, dtype=torch.float64), rtol=0, atol=1e-12
    )
    torch.testing.assert_close(matrix, matrix.T, rtol=0, atol=0)
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            forward = tube_agreement(comparison.runs[a].tubes, comparison.runs[b].tubes, samples)
            backward = tube_agreement(comparison.runs[b].tubes, comparison.runs[a].tubes, samples)
            # Symmetric when computed both ways, not only by construction of the matrix.
            np.testing.assert_allclose(forward, backward, rtol=0, atol=1e-12)
            np.testing.assert_array_equal(comparison.agreement_per_sample[i, j], forward)
            assert comparison.agreement[i, j] == pytest.approx(100.0 * forward.mean(), abs=1e-12)
            assert 0.0 <= comparison.agreement[i, j] <= 100.0


def test_files_are_written_and_read_back(compared) -> None:
    comparison, _, _, _, _, out = compared
    paths = comparison.file_paths(out)
    assert (out / "comparison.md").read_text() == comparison.to_markdown()
    data = json.loads((out / "comparison.json").read_text())
    assert data["agreement"]["names"] == list(NAMES)
    assert data["grounders"]["colour"]["metrics"] == comparison.runs["colour"].metrics
    scatters = sorted(p.name for k, p in paths.items() if k.startswith("scatter:"))
    assert scatters == [
        "scatter_spacevllm_vs_colour.png",
        "scatter_zero-shot_vs_colour.png",
        "scatter_zero-shot_vs_spacevllm.png",
    ]
    for path in [out / "metric_bars.png", *(out / name for name in scatters)]:
        with Image.open(path) as image:
            image.load()
            assert image.format == "PNG" and image.width > 100 and image.height > 100
    loaded = load_comparison(out)
    assert isinstance(loaded, Comparison) and loaded.to_markdown() == comparison.to_markdown()
    np.testing.assert_array_equal(loaded.agreement_per_sample, comparison.agreement_per_sample)


def test_a_second_call_resumes_without_grounding(compared) -> None:
    comparison, _, _, _, samples, out = compared

    def no_tracks(sample: Sample):
        raise AssertionError("tracks asked for on a finished comparison")

    # Wrapped as the first call's were: a finished run read with other settings is refused.
    again = compare_paradigms(
        samples, {name: Recording(MustNotRun()) for name in NAMES}, out, no_tracks, progress=False
    )
    assert again.to_markdown() == comparison.to_markdown()
    np.testing.assert_array_equal(again.agreement, comparison.agreement)
    for name in NAMES:
        assert len((out / name / "results.jsonl").read_text().splitlines()) == len(samples)
