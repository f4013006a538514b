"""Resumable, sharded dataset runs: one go, kill and resume, torchrun with 2 ranks, failures."""

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from zsgrounding.datasets import load_dataset
from zsgrounding.metrics import evaluate
from zsgrounding.predictions import load_predictions
from zsgrounding.runner import RunConfig, load_results, result_record, run_dataset
from zsgrounding.toy.world import ToyWorldConfig, make_dataset
from zsgrounding.types import GroundingResult, Tube

REPO = Path(__file__).resolve().parents[1]
N_SAMPLES = 6

# The grounder and entry point shared by the in-process runs, the killed subprocess and torchrun.
SCRIPT = '''
import json
import sys
import time

from zsgrounding.baselines import colour_evidence
from zsgrounding.datasets import load_dataset
from zsgrounding.toy.world import load_sidecar, sidecar_tracks
from zsgrounding.runner import RunConfig, run_dataset
from zsgrounding.tubes import TubeScorer, TubeScorerConfig
from zsgrounding.video import sample_uniform


class ToyGrounder:
    """Colour evidence on the toy world's own tracks; optionally slow, or failing on one id."""

    name = "colour-toy"

    def __init__(self, toy_dir, sleep=0.0, fail_on=None):
        self.videos = load_sidecar(toy_dir)["videos"]
        self.scorer = TubeScorer(TubeScorerConfig(span_method="grow", span_frames=8))
        self.sleep = sleep
        self.fail_on = fail_on

    def ground_sample(self, sample):
        time.sleep(self.sleep)
        if sample.id == self.fail_on:
            raise RuntimeError("boom\\non two lines")
        clip = sample_uniform(sample.video, 16)
        tracks = sidecar_tracks(self.videos[sample.id])
        evidence = colour_evidence(clip, sample.sentence, (6, 8))
        return self.scorer.ground(evidence, tracks, clip.frame_ids, clip.num_frames, clip.width, clip.height)


if __name__ == "__main__":
    toy_dir, out_dir, sleep = sys.argv[1], sys.argv[2], float(sys.argv[3])
    summary = run_dataset(
        load_dataset("toy", toy_dir), ToyGrounder(toy_dir, sleep), RunConfig(out_dir, progress=False)
    )
    print(json.dumps({"rank": summary.rank, "world": summary.world_size, "done": summary.done}))
'''


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Toy clips, the script (imported here too) and a reference run done in one go."""
    root = tmp_path_factory.mktemp("runner")
    toy_dir = root / "toy"
    make_dataset(toy_dir, N_SAMPLES, ToyWorldConfig(seed=11), progress=False)
    script = root / "toy_run_script.py"
    script.write_text(SCRIPT)
    spec = importlib.util.spec_from_file_location("toy_run_script", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    samples = load_dataset("toy", toy_dir)
    reference = root / "reference"
    summary = run_dataset(samples, module.ToyGrounder(toy_dir), RunConfig(reference, progress=False))
    return {
        "toy_dir": toy_dir,
        "script": script,
        "module": module,
        "samples": samples,
        "reference": reference,
        "summary": summary,
    }


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def without_timing(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def script_env():
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def test_one_go_writes_results_predictions_and_metrics(world):
    samples, out, summary = world["samples"], world["reference"], world["summary"]
    ids = [s.id for s in samples]
    assert (summary.done, summary.skipped, summary.failed) == (N_SAMPLES, 0, 0)
    assert [r["id"] for r in read_lines(out / "results.rank0.jsonl")] == ids
    merged = read_lines(out / "results.jsonl")
    assert [r["id"] for r in merged] == ids
    assert all(len(r["track_scores"]) >= 2 and r["chosen_track"] is not None for r in merged)
    assert all(len(r["frame_scores"]) == len(r["sampled_frame_ids"]) == 16 for r in merged)

    # The same tubes computed directly score exactly the same.
    grounder = world["module"].ToyGrounder(world["toy_dir"])
    direct = {s.id: grounder.ground_sample(s).tube for s in samples}
    saved = load_predictions(out / "predictions.json")
    assert list(saved) == ids
    for sid, tube in direct.items():
        assert (saved[sid].start, saved[sid].end) == (tube.start, tube.end)
        assert np.array_equal(saved[sid].frame_ids, tube.frame_ids)
        assert np.array_equal(saved[sid].boxes, tube.boxes)
    expected = evaluate(direct, {s.id: s.gt for s in samples}).report()
    assert summary.metrics == expected
    assert json.loads((out / "metrics.json").read_text()) == expected
    assert expected["n"] == N_SAMPLES and expected["m_vIoU"] > 0
    assert "| colour-toy" in (out / "metrics.md").read_text()

    # Running again finds everything done and changes nothing.
    before = (out / "results.rank0.jsonl").read_bytes()
    again = run_dataset(samples, grounder, RunConfig(out, progress=False))
    assert (again.done, again.skipped, again.failed) == (0, N_SAMPLES, 0)
    assert (out / "results.rank0.jsonl").read_bytes() == before
    assert again.metrics == expected


def test_killed_run_resumes_without_losing_or_repeating(world, tmp_path):
    out = tmp_path / "killed"
    rank_file = out / "results.rank0.jsonl"
    proc = subprocess.Popen(
        [sys.executable, str(world["script"]), str(world["toy_dir"]), str(out), "0.3"],
        env=script_env(),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    try:
        while not (rank_file.exists() and rank_file.read_bytes().count(b"\n") >= 2):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the run wrote no lines in 60 s"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    kept = rank_file.read_bytes().count(b"\n")
    assert 2 <= kept < N_SAMPLES
    with rank_file.open("ab") as fh:  # as if killed in the middle of the next write
        fh.write(b'{"id": "toy_000')

    summary = run_dataset(
        world["samples"], world["module"].ToyGrounder(world["toy_dir"]), RunConfig(out, progress=False)
    )
    assert (summary.skipped, summary.done, summary.failed) == (kept, N_SAMPLES - kept, 0)
    ids = [s.id for s in world["samples"]]
    assert [r["id"] for r in read_lines(rank_file)] == ids  # none lost, none repeated
    reference = world["reference"]
    assert without_timing(read_lines(out / "results.jsonl")) == without_timing(
        read_lines(reference / "results.jsonl")
    )
    assert (out / "predictions.json").read_bytes() == (reference / "predictions.json").read_bytes()
    assert (out / "metrics.json").read_bytes() == (reference / "metrics.json").read_bytes()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_torchrun_two_ranks_equal_one_process(world, tmp_path):
    out = tmp_path / "ddp"
    torchrun = Path(sys.executable).parent / "torchrun"
    launcher = [str(torchrun)] if torchrun.exists() else [sys.executable, "-m", "torch.distributed.run"]
    cmd = [
        *launcher,
        "--nnodes=1",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        str(world["script"]),
        str(world["toy_dir"]),
        str(out),
        "0",
    ]
    proc = subprocess.run(cmd, env=script_env(), cwd=REPO, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Both ranks print to one pipe and their lines may land glued together: find every object.
    summaries = re.findall(r"\{[^{}]*\}", proc.stdout)
    ranks = sorted(json.loads(text)["rank"] for text in summaries if '"rank"' in text)
    assert ranks == [0, 1]

    ids = [s.id for s in world["samples"]]
    assert [r["id"] for r in read_lines(out / "results.rank0.jsonl")] == ids[0::2]
    assert [r["id"] for r in read_lines(out / "results.rank1.jsonl")] == ids[1::2]
    reference = world["reference"]
    for name in ("predictions.json", "metrics.json", "metrics.md"):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    assert without_timing(read_lines(out / "results.jsonl")) == without_timing(
        read_lines(reference / "results.jsonl")
    )


def test_a_failing_sample_is_recorded_and_the_run_goes_on(world, tmp_path):
    samples, module, toy_dir = world["samples"], world["module"], world["toy_dir"]
    bad = samples[2].id
    out = tmp_path / "fails"
    summary = run_dataset(samples, module.ToyGrounder(toy_dir, fail_on=bad), RunConfig(out, progress=False))
    assert (summary.done, summary.failed) == (N_SAMPLES - 1, 1)
    lines = read_lines(out / "results.rank0.jsonl")
    assert len(lines) == N_SAMPLES
    assert lines[2]["id"] == bad and lines[2]["error"] == "RuntimeError: boom on two lines"
    assert bad not in load_predictions(out / "predictions.json")
    assert summary.metrics["missing"] == 1 and summary.metrics["n"] == N_SAMPLES

    # retry_errors=False keeps the error lines; by default a resume grounds them again and the
    # success wins (a fixed video then scores).
    kept = run_dataset(
        samples, module.ToyGrounder(toy_dir), RunConfig(out, progress=False, retry_errors=False)
    )
    assert (kept.done, kept.skipped, kept.failed, kept.retried) == (0, N_SAMPLES, 0, 0)
    retried = run_dataset(samples, module.ToyGrounder(toy_dir), RunConfig(out, progress=False))
    assert (retried.done, retried.skipped, retried.retried) == (1, N_SAMPLES - 1, 1)
    assert "error" not in load_results(out)[bad]
    assert (out / "predictions.json").read_bytes() == (world["reference"] / "predictions.json").read_bytes()

    # fail_fast stops at the first failure, its error line written.
    fast = tmp_path / "fast"
    with pytest.raises(RuntimeError, match="boom"):
        run_dataset(
            samples, module.ToyGrounder(toy_dir, fail_on=bad), RunConfig(fast, progress=False, fail_fast=True)
        )
    assert [r["id"] for r in read_lines(fast / "results.rank0.jsonl")] == [s.id for s in samples[:3]]


def test_result_record_keeps_only_what_json_can_hold():
    result = GroundingResult(
        tube=Tube(2, 4, [2, 3], [[0, 0, 1, 1], [0, 0, 2, 2]]),
        track_scores=np.array([0.5, np.nan], dtype=np.float32),
        chosen_track=np.int64(0),
        extras={"a": np.float32(1.5), "b": np.arange(3), "c": object(), "d": {"e": (np.int64(2), "x")}},
    )
    record = result_record("s", result, 0.123456)
    assert json.loads(json.dumps(record)) == record
    assert record["track_scores"] == [0.5, None] and record["chosen_track"] == 0
    assert record["extras"] == {"a": 1.5, "b": [0, 1, 2], "d": {"e": [2, "x"]}}
    assert record["tube"] == {"start": 2, "end": 4, "boxes": {"2": [0, 0, 1, 1], "3": [0, 0, 2, 2]}}
    assert record["frame_scores"] is None and record["seconds"] == 0.1235


def test_explicit_shard_writes_only_and_a_later_run_merges(world, tmp_path):
    samples, module, toy_dir = world["samples"], world["module"], world["toy_dir"]
    out = tmp_path / "shards"
    half = run_dataset(samples, module.ToyGrounder(toy_dir), RunConfig(out, progress=False, shard=(1, 2)))
    assert (half.done, half.rank, half.world_size, half.metrics) == (N_SAMPLES // 2, 1, 2, None)
    # Besides its hidden lock file, the shard writes its rank file only.
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["results.rank1.jsonl"]

    # An unsharded resume counts rank 1's lines as done and merges everything.
    rest = run_dataset(samples, module.ToyGrounder(toy_dir), RunConfig(out, progress=False))
    assert (rest.done, rest.skipped) == (N_SAMPLES // 2, N_SAMPLES // 2)
    reference = world["reference"]
    assert (out / "predictions.json").read_bytes() == (reference / "predictions.json").read_bytes()

    # Starting afresh removes the lines of ranks outside this world.
    fresh = run_dataset(samples, module.ToyGrounder(toy_dir), RunConfig(out, progress=False, resume=False))
    assert (fresh.done, fresh.skipped) == (N_SAMPLES, 0)
    assert not (out / "results.rank1.jsonl").exists()
    assert (out / "metrics.json").read_bytes() == (reference / "metrics.json").read_bytes()
