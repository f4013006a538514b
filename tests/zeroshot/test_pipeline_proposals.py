"""The whole grounder with real proposal models: tiny random Grounding DINO + SAM2 / IoU tracker.

A toy-world clip, a tiny random LLaVA-OneVision and tiny random Grounding DINO and SAM2
checkpoints, all saved and loaded offline the way real ones are. Random weights ground nothing,
so the tests check the wiring: the detector prompt, the track store being written and then read
back without running a model, the tube following the chosen track, the IoU tracker path, the
documented empty result when nothing is detected, and the ``stvg proposals`` / ``stvg ground``
commands on the same path.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from tiny_models import save_tiny_llava
from tiny_proposals import save_tiny_detector, save_tiny_sam2

from zsgrounding.datasets import load_dataset
from zsgrounding.mllm import load_adapter
from zsgrounding.predictions import tube_from_json
from zsgrounding.proposals.extract import ProposalConfig, Proposer
from zsgrounding.proposals.source import CachedProposer, make_proposer
from zsgrounding.proposals.store import TrackStore
from zsgrounding.toy.world import ToyWorldConfig, make_dataset
from zsgrounding.types import Sample, Track, Tube
from zsgrounding.video import fps_ids, probe
from zsgrounding.zeroshot.decompose import Decomposer, RuleDecomposer, noun_phrase
from zsgrounding.zeroshot.lra import LRAConfig
from zsgrounding.zeroshot.pipeline import ZeroShotConfig, ZeroShotGrounder

NUM_FRAMES = 3
TOY = ToyWorldConfig(seed=5, max_seconds=2.0)  # one 2 s clip (20 frames, 128 x 96): "the orange circle ..."
FAST = ["--num-frames", str(NUM_FRAMES), "--lra-steps", "1", "--lra-step-size", "1.0"]


class Checkpoints(NamedTuple):
    llava: Path
    detector: Path
    sam2: Path


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    out = tmp_path_factory.mktemp("toy")
    make_dataset(out, 1, TOY, progress=False)
    return load_dataset("toy", out)[0]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Checkpoints:
    return Checkpoints(
        save_tiny_llava(tmp_path_factory.mktemp("llava")),
        save_tiny_detector(tmp_path_factory.mktemp("gdino")),
        save_tiny_sam2(tmp_path_factory.mktemp("sam2")),
    )


@pytest.fixture(scope="module")
def adapter(checkpoints: Checkpoints):
    return load_adapter(checkpoints.llava, num_frames=NUM_FRAMES)


@pytest.fixture(autouse=True)
def _no_endpoint(monkeypatch: pytest.MonkeyPatch):
    # No LLM endpoint here: the decomposer uses its offline rules (and warns about it).
    for name in ("STVG_LLM_BASE_URL", "STVG_LLM_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _grounder(adapter, proposer) -> ZeroShotGrounder:
    config = ZeroShotConfig(num_frames=NUM_FRAMES, lra=LRAConfig(steps=1, step_size=1.0))
    return ZeroShotGrounder(
        config, adapter=adapter, decomposer=Decomposer(rules=RuleDecomposer()), proposer=proposer
    )


def _must_not_extract(clip, phrase):
    raise AssertionError("the stored tracks must be used: no detector or tracker may run")


def assert_follows(tube: Tube, track: Track, width: int, height: int) -> None:
    """The tube has a box on every frame of its span: the track's own, interpolated between its
    frames and held past its ends."""
    assert len(tube) > 0 and tube.frame_ids.size == len(tube)
    np.testing.assert_array_equal(tube.frame_ids, np.arange(tube.start, tube.end))
    expected = np.stack(
        [np.interp(tube.frame_ids, track.frame_ids, track.boxes[:, c]) for c in range(4)], axis=1
    )
    np.testing.assert_allclose(tube.boxes, expected)
    on_track = np.isin(tube.frame_ids, track.frame_ids)
    np.testing.assert_array_equal(tube.boxes[on_track], track.boxes_at(tube.frame_ids[on_track]))
    assert np.all(tube.boxes >= 0) and np.all(tube.boxes[:, [0, 2]] <= width)
    assert np.all(tube.boxes[:, [1, 3]] <= height)


def test_sam2_proposals_are_grounded_stored_and_reused(
    adapter, checkpoints: Checkpoints, sample: Sample, tmp_path: Path
):
    store_dir = tmp_path / "tracks"
    args = {"detector": str(checkpoints.detector), "tracker": "sam2", "sam2": str(checkpoints.sam2)}
    proposer = make_proposer(store_dir=store_dir, **args)
    result = _grounder(adapter, proposer).ground(sample.video, sample.sentence, key=sample.id)

    # The store file of the video was written, with what made the tracks.
    path = store_dir / f"{sample.video.name}.json"
    assert path.is_file() and proposer.store.path(sample.video.name) == path
    stored = json.loads(path.read_text(encoding="utf-8"))
    assert stored["video"] == sample.video.name
    assert (stored["width"], stored["height"]) == (TOY.width, TOY.height)
    assert stored["settings"]["noun_phrase"] == noun_phrase(sample.sentence) == "circle"
    assert stored["settings"]["frames"] == result.sampled_frame_ids.tolist()
    assert len(result.sampled_frame_ids) == NUM_FRAMES
    assert {k: stored["settings"][k] for k in args} == args

    tracks = TrackStore(store_dir).load(sample.video.name)
    assert tracks and result.extras["num_tracks"] == len(tracks)
    assert result.track_scores.shape == (len(tracks),)
    assert "reason" not in result.extras
    # SAM2 tracks on 5 frames per second plus the sampled frames, masks at native size
    video = probe(sample.video)
    tracking = set(fps_ids(video.num_frames, video.fps, 5.0).tolist()) | set(
        result.sampled_frame_ids.tolist()
    )
    assert stored["settings"]["track_fps"] == 5.0
    for track in tracks:
        assert track.masks is not None and track.masks.shape == (len(track.frame_ids), TOY.height, TOY.width)
        assert set(track.frame_ids.tolist()) <= tracking
    assert (
        len(set().union(*(t.frame_ids.tolist() for t in tracks)) - set(result.sampled_frame_ids.tolist())) > 0
    )
    assert result.chosen_track == int(np.argmax(result.track_scores))
    assert_follows(result.tube, tracks[result.chosen_track], TOY.width, TOY.height)

    # A second run reads the file: not rewritten (same inode, same mtime), and the same answer.
    before = path.stat()
    again = _grounder(adapter, make_proposer(store_dir=store_dir, **args)).ground(
        sample.video, sample.sentence
    )
    stored_only = CachedProposer(TrackStore(store_dir), _must_not_extract, proposer.settings)
    third = _grounder(adapter, stored_only).ground(sample.video, sample.sentence)
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (
        before.st_ino,
        before.st_mtime_ns,
        before.st_size,
    )
    for other in (again, third):
        assert other.extras["num_tracks"] == len(tracks)
        assert other.chosen_track == result.chosen_track
        assert (other.tube.start, other.tube.end) == (result.tube.start, result.tube.end)
        np.testing.assert_array_equal(other.tube.boxes, result.tube.boxes)


def test_iou_tracker_path(adapter, checkpoints: Checkpoints, sample: Sample, tmp_path: Path):
    # No SAM2 checkpoint given: the IoU tracker needs none (the default hub id is never loaded).
    proposer = make_proposer(store_dir=tmp_path / "iou", detector=str(checkpoints.detector), tracker="iou")
    result = _grounder(adapter, proposer).ground(sample.video, sample.sentence)
    tracks = TrackStore(tmp_path / "iou").load(sample.video.name, None)
    assert tracks and result.extras["num_tracks"] == len(tracks)
    assert all(track.masks is None for track in tracks)  # boxes only
    assert json.loads(proposer.store.path(sample.video.name).read_text())["settings"]["tracker"] == "iou"
    assert_follows(result.tube, tracks[result.chosen_track], TOY.width, TOY.height)


def test_no_detections_give_the_documented_empty_result(
    adapter, checkpoints: Checkpoints, sample: Sample, tmp_path: Path
):
    # Box threshold 1.0: no sigmoid score is above it, so the detector keeps nothing.
    config = ProposalConfig(detector=str(checkpoints.detector), sam2=str(checkpoints.sam2), box_threshold=1.0)
    store = TrackStore(tmp_path / "none")
    proposer = CachedProposer(store, Proposer.from_config(config), {"box_threshold": 1.0})
    result = _grounder(adapter, proposer).ground(sample.video, sample.sentence)
    assert len(result.tube) == 0 and result.tube.frame_ids.size == 0
    assert result.chosen_track is None
    assert result.extras["reason"] == "no proposals" and result.extras["num_tracks"] == 0
    # "nothing detected" is stored too, and a second run reads it instead of detecting again
    assert json.loads(store.path(sample.video.name).read_text())["tracks"] == []
    stored_only = CachedProposer(store, _must_not_extract, {"box_threshold": 1.0})
    again = _grounder(adapter, stored_only).ground(sample.video, sample.sentence)
    assert len(again.tube) == 0 and again.extras["reason"] == "no proposals"


# --------------------------------------------------------------------------- command line


def _proposals_cli(run_cli, video: Path, checkpoints: Checkpoints, store: Path) -> tuple[int, str, str]:
    return run_cli(
        [
            "proposals",
            str(video),
            "circle",
            "--detector",
            str(checkpoints.detector),
            "--sam2",
            str(checkpoints.sam2),
            "--num-frames",
            str(NUM_FRAMES),
            "--out",
            str(store),
        ]
    )


def test_cli_proposals_prints_the_tracks_and_writes_the_store(
    run_cli, checkpoints: Checkpoints, sample: Sample, tmp_path: Path
):
    store = tmp_path / "tracks"
    code, stdout, stderr = _proposals_cli(run_cli, sample.video, checkpoints, store)
    assert code == 0, stderr
    path = store / f"{sample.video.name}.json"
    stored = json.loads(path.read_text(encoding="utf-8"))
    count = len(stored["tracks"])
    assert count > 0
    lines = stdout.splitlines()
    assert lines[0] == f"{count} tracks of 'circle' in {sample.video.name}: {path}"
    assert len(lines) == 1 + count and all(line.startswith("  track ") for line in lines[1:])
    assert stored["settings"]["noun_phrase"] == "circle" and len(stored["settings"]["frames"]) == NUM_FRAMES


def test_cli_ground_with_detector_sam2_and_store(
    run_cli, checkpoints: Checkpoints, sample: Sample, tmp_path: Path
):
    store = tmp_path / "tracks"
    code, _, stderr = _proposals_cli(run_cli, sample.video, checkpoints, store)
    assert code == 0, stderr
    path = store / f"{sample.video.name}.json"
    before = path.stat()
    tracks = TrackStore(store).load(sample.video.name)

    out = tmp_path / "out"
    code, stdout, stderr = run_cli(
        [
            "ground",
            str(sample.video),
            sample.sentence,
            "--model",
            str(checkpoints.llava),
            "--detector",
            str(checkpoints.detector),
            "--sam2",
            str(checkpoints.sam2),
            "--proposals",
            str(store),
            *FAST,
            "--out",
            str(out),
        ]
    )
    assert code == 0, stderr
    record = json.loads((out / f"{sample.video.stem}_result.json").read_text(encoding="utf-8"))
    assert record["id"] == sample.video.name
    # Same noun phrase ("circle") and frames as `stvg proposals`: the stored tracks were used as is.
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert record["extras"]["num_tracks"] == len(tracks)
    tube = tube_from_json(record["id"], record["tube"])
    assert_follows(tube, tracks[record["chosen_track"]], TOY.width, TOY.height)
    assert "tube: frames [" in stdout
