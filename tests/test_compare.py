"""The comparison's parts with exact numbers, and `stvg compare` on toy clips.

The full comparison with a tiny zero-shot MLLM and a tiny SpaceVLLM is in
``tests/spacevllm/test_svl_compare.py`` (it needs that folder's SpaceVLLM fixtures).
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_models import save_tiny_llava

from zsgrounding import assets
from zsgrounding.baselines import BASELINES, BaselineGrounder, target_track_only
from zsgrounding.compare import compare_paradigms, tube_agreement
from zsgrounding.datasets import load_dataset
from zsgrounding.errors import STVGError
from zsgrounding.measure import PeakRSS as _PeakRSS
from zsgrounding.metrics import evaluate
from zsgrounding.predictions import load_predictions
from zsgrounding.toy.world import ToyWorldConfig, load_sidecar, make_dataset, sidecar_tracks
from zsgrounding.tubes import TubeScorer, TubeScorerConfig
from zsgrounding.types import GroundingResult, GroundTruth, Sample, Track, Tube
from zsgrounding.video import sample_uniform

FAST = ["--num-frames", "3", "--lra-steps", "1", "--lra-step-size", "1.0"]


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("compare_toy")
    make_dataset(out, 3, ToyWorldConfig(seed=7), progress=False)
    return out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_llava(tmp_path_factory.mktemp("llava"))


def _sample(sample_id: str, gt: Tube | None = None, fps: float = 5.0) -> Sample:
    truth = None if gt is None else GroundTruth(tube=gt, fps=fps, segment=(0, 10))
    return Sample(id=sample_id, video=Path(f"{sample_id}.mp4"), sentence="x", gt=truth, fps=fps)


def _tube(start: int, end: int, box: tuple[float, float, float, float]) -> Tube:
    frames = np.arange(start, end)
    return Tube(start, end, frames, np.tile(np.asarray(box, dtype=np.float64), (frames.size, 1)))


# ------------------------------------------------------------------------------- agreement


def test_tube_agreement_by_hand() -> None:
    # At 5 fps every frame of the segment [0, 10) is evaluated. A = [0, 4), B = [2, 6): union 6
    # frames, intersection {2, 3} with box IoU 100 / 200 = 0.5 each -> vIoU = 1.0 / 6.
    samples = [_sample("s0", _tube(0, 9, (0, 0, 1, 1))), _sample("s1"), _sample("s2")]
    a = {"s0": _tube(0, 4, (0, 0, 10, 10)), "s1": _tube(3, 5, (0, 0, 4, 4))}
    b = {"s0": _tube(2, 6, (0, 0, 10, 20)), "s1": _tube(3, 5, (0, 0, 2, 4))}
    forward = tube_agreement(a, b, samples)
    backward = tube_agreement(b, a, samples)
    # s1 has no ground truth: its tubes' hull [3, 5) at 5 fps, box IoU 8 / 16 on both frames.
    np.testing.assert_array_equal(forward[:2], [1.0 / 6.0, 0.5])
    np.testing.assert_array_equal(backward[:2], forward[:2])
    assert np.isnan(forward[2]) and np.isnan(backward[2])  # s2: neither grounder has a tube
    np.testing.assert_array_equal(tube_agreement(a, a, samples)[:2], [1.0, 1.0])


# ------------------------------------------------------------------------------- baseline


def test_baseline_grounder_is_the_evidence_and_the_shared_scorer(toy_dir: Path) -> None:
    sample = load_dataset("toy", toy_dir)[0]
    tracks = sidecar_tracks(load_sidecar(toy_dir)["videos"][sample.id])
    scorer = TubeScorer(TubeScorerConfig(span_frames=4))
    grounder = BaselineGrounder("colour", BASELINES["colour"], scorer, num_frames=8, grid=(6, 8))
    result = grounder.ground_sample(sample, tracks=tracks)

    clip = sample_uniform(sample.video, 8)
    evidence = BASELINES["colour"](clip, sample.sentence, (6, 8))
    expected = scorer.ground(evidence, tracks, clip.frame_ids, clip.num_frames, clip.width, clip.height)
    np.testing.assert_array_equal(result.evidence, evidence)
    assert (result.tube.start, result.tube.end) == (expected.tube.start, expected.tube.end)
    np.testing.assert_array_equal(result.tube.boxes, expected.tube.boxes)
    assert result.chosen_track == expected.chosen_track
    assert result.extras["baseline"] == "colour" and result.extras["num_tracks"] == len(tracks)

    oracle = BaselineGrounder("oracle-track", BASELINES["colour"], scorer, 8, track_filter=target_track_only)
    chosen = oracle.ground_sample(sample, tracks=tracks)
    target = next(t for t in tracks if t.track_id == sample.meta["target_id"])
    np.testing.assert_array_equal(chosen.tube.boxes, target.boxes_at(chosen.tube.frame_ids))

    with pytest.raises(STVGError, match="proposal tracks"):
        grounder.ground_sample(sample)


# ------------------------------------------------------------------------------- sharing, memory


class FirstTrack:
    """Grounds on the first track over its whole extent; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def ground_sample(self, sample: Sample, tracks: list[Track] | None = None) -> GroundingResult:
        self.calls += 1
        track = tracks[0]
        end = int(track.frame_ids[-1]) + 1
        return GroundingResult(tube=Tube(int(track.frame_ids[0]), end, track.frame_ids, track.boxes))


def test_a_failing_proposal_call_is_made_once_and_fails_every_grounder(tmp_path: Path) -> None:
    track = Track(np.arange(2, 6), np.tile([0.0, 0.0, 10.0, 10.0], (4, 1)))
    samples = [_sample("ok", _tube(2, 6, (0, 0, 10, 10))), _sample("bad", _tube(2, 6, (0, 0, 10, 10)))]
    calls: list[str] = []

    def tracks_for(sample: Sample) -> list[Track]:
        calls.append(sample.id)
        if sample.id == "bad":
            raise STVGError("no tracks for this one")
        return [track]

    grounders = {"a": FirstTrack(), "b": FirstTrack()}
    comparison = compare_paradigms(samples, grounders, tmp_path, tracks_for, progress=False)
    assert calls == ["ok", "bad"]
    assert [g.calls for g in grounders.values()] == [1, 1]  # "bad" failed before the grounder ran
    for run in comparison.runs.values():
        assert run.errors == {"bad": "STVGError: no tracks for this one"}
        np.testing.assert_array_equal(run.viou, [1.0, 0.0])
        assert run.metrics["m_vIoU"] == 50.0 and run.metrics["missing"] == 1
    np.testing.assert_array_equal(comparison.agreement, [[100.0, 100.0], [100.0, 100.0]])
    assert "| a " in comparison.to_markdown() and comparison.rows()["a"]["failed"] == 1


def test_peak_rss_sees_a_transient_allocation() -> None:
    # 64 MiB: above glibc's largest mmap threshold, so fresh pages rather than reused heap
    # (which the resident set already counts), written by np.ones so they are resident.
    with _PeakRSS() as peak:
        block = np.ones(64 << 20 >> 3)
        # Hold it until the sampler has seen it: on a loaded machine (torch's OpenMP threads still
        # spinning after an earlier test) the sampling thread can wait well past its 5 ms interval.
        deadline = time.monotonic() + 5.0
        while peak.seen_bytes < 48 << 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        del block
    assert peak.peak_bytes is not None and peak.peak_bytes >= 48 << 20


# ------------------------------------------------------------------------------- CLI


def test_cli_compare_prints_the_table_and_writes_the_files(
    run_cli, toy_dir: Path, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("STVG_LLM_BASE_URL", "STVG_LLM_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "cmp"
    args = ["compare", "--dataset", "toy", "--gt", str(toy_dir), "--out", str(out), "--quiet"]
    specs = ["--grounder", "colour", "--grounder", "centre", "--grounder", "zero-shot"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code, stdout, stderr = run_cli([*args, *specs, "--model", str(model_dir), *FAST])
    assert code == 0, stderr
    samples = load_dataset("toy", toy_dir)
    gts = {s.id: s.gt for s in samples}
    data = json.loads((out / "comparison.json").read_text())
    assert list(data["grounders"]) == ["colour", "centre", "zero-shot"]
    for name in ("colour", "centre", "zero-shot"):
        expected = evaluate(load_predictions(out / name / "predictions.json"), gts).summary()
        row = next(line for line in stdout.splitlines() if line.startswith(f"| {name} "))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1:5] == [f"{expected[m]:.2f}" for m in ("m_tIoU", "m_vIoU", "vIoU@0.3", "vIoU@0.5")]
    assert (out / "comparison.md").read_text() in stdout
    for png in ("metric_bars.png", "scatter_colour_vs_centre.png", "scatter_centre_vs_zero-shot.png"):
        assert str(out / png) in stdout
        with Image.open(out / png) as image:
            assert image.format == "PNG"


def test_cli_compare_bad_spec_is_one_line_and_exit_2(
    run_cli, toy_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["compare", "--dataset", "toy", "--gt", str(toy_dir), "--out", str(tmp_path / "cmp")]
    for spec, needle in [
        ("zero-shot:tas=maybe", "tas='maybe': expected true or false"),
        ("zero-shot:bogus=1", "unknown flag 'bogus'"),
        ("yolo", "unknown grounder 'yolo'"),
        ("colour:tas=false", "only zero-shot takes flags"),
    ]:
        code, stdout, stderr = run_cli([*args, "--grounder", spec])
        assert code == 2 and stdout == ""
        assert stderr.startswith("stvg: error: ") and stderr.count("\n") == 1 and needle in stderr
    # The default rows include the shipped toy SpaceVLLM: when it is missing, say how to get one.
    monkeypatch.setitem(assets.SPACEVLLM_ALIASES, "toy", tmp_path / "no_toy_spacevllm")
    code, _, stderr = run_cli([*args, "--grounder", "colour", "--grounder", "spacevllm"])
    assert code == 2 and stderr.count("\n") == 1 and "--checkpoint DIR" in stderr
    assert not (tmp_path / "cmp").exists()


def test_cli_compare_with_a_preset_shares_its_frames_and_records_it(
    run_cli, toy_dir: Path, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("STVG_LLM_BASE_URL", "STVG_LLM_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "cmp_preset"
    args = ["compare", "--dataset", "toy", "--gt", str(toy_dir), "--out", str(out), "--quiet"]
    specs = ["--grounder", "colour", "--grounder", "zero-shot", "--grounder", "zero-shot:tas=false"]
    preset = ["--preset", "reference-hcstvg-v2", "--model", str(model_dir), *FAST]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code, _, stderr = run_cli([*args, *specs, *preset])
    assert code == 0, stderr
    settings = json.loads((out / "zero-shot" / "metrics.json").read_text())["settings"]
    assert settings["preset_name"] == "reference-hcstvg-v2" and settings["num_frames"] == 3
    ablated = json.loads((out / "zero-shot-tas-false" / "metrics.json").read_text())["settings"]
    assert ablated["tas"] is False and ablated["adapter"]["pool_stride"] == 5
    # Every row samples the preset's frames (int of linspace, both ends), the baseline too.
    from zsgrounding.video import probe, uniform_ids

    for sample in load_dataset("toy", toy_dir):
        expected = uniform_ids(probe(sample.video).num_frames, 3, "linspace").tolist()
        assert expected[0] == 0 and expected[-1] == probe(sample.video).num_frames - 1
        for row in ("colour", "zero-shot"):
            records = [json.loads(line) for line in (out / row / "results.jsonl").read_text().splitlines()]
            record = next(r for r in records if r["id"] == sample.id)
            assert record["sampled_frame_ids"] == expected, row
