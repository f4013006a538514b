"""Offline first run: the embedded toy model grounds a clip with nothing to download, and a hub id
that is neither cached nor reachable fails in one line within seconds (the hub is unreachable in
these tests by construction: its endpoint is a closed local port or offline mode is set)."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from zsgrounding.datasets import load_dataset
from zsgrounding.mllm.errors import ModelError
from zsgrounding.mllm.hub import hub_unreachable, require_checkpoint
from zsgrounding.toy.world import ToyWorldConfig, make_dataset


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens here once the socket is closed


@pytest.fixture
def no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("own")
    make_dataset(folder, 1, ToyWorldConfig(seed=13), progress=False)
    sample = load_dataset("toy", folder)[0]
    return sample.video, sample.sentence


def test_a_clip_grounds_offline_with_the_defaults_and_the_toy_warning(
    run_cli, no_hub, clip, tmp_path
) -> None:
    video, sentence = clip  # a clip of its own: no --toy-dir, so proposals come from a detector
    start = time.perf_counter()
    code, _stdout, stderr = run_cli(["ground", str(video), sentence, "--out", str(tmp_path), "--quiet"])
    assert code == 0, stderr
    assert time.perf_counter() - start < 60
    warned = [line for line in stderr.splitlines() if "know only the toy world" in line]
    assert len(warned) == 1 and "--model" in warned[0] and "Traceback" not in stderr
    result = json.loads((tmp_path / f"{video.stem}_result.json").read_text())
    assert result["tube"]["end"] > result["tube"]["start"]  # the toy detector found the shape
    assert result["settings"]["model"] == "toy"
    # the tracks went to the store with the toy detector's settings, for the next run
    stored = json.loads(next((tmp_path / "tracks").glob("*.json")).read_text())
    assert stored["settings"]["detector"] == "toy" and stored["settings"]["tracker"] == "iou"


def test_an_uncached_hub_model_fails_fast_in_one_line(run_cli, no_hub, clip, tmp_path) -> None:
    video, sentence = clip
    start = time.perf_counter()
    code, _stdout, stderr = run_cli(
        ["ground", str(video), sentence, "--model", "org/not-cached", "--out", str(tmp_path), "--quiet"]
    )
    elapsed = time.perf_counter() - start
    lines = [line for line in stderr.splitlines() if line.strip() and "warning" not in line]
    assert code == 2 and elapsed < 15, (elapsed, stderr)
    assert len(lines) == 1 and lines[0].startswith("stvg: error: model 'org/not-cached' is not in the local")
    assert "hf download org/not-cached" in lines[0] and "--model toy" in lines[0]


def test_an_uncached_detector_fails_fast_and_names_the_offline_one(run_cli, no_hub, clip, tmp_path) -> None:
    video, _ = clip
    code, _, stderr = run_cli(
        [
            "proposals",
            str(video),
            "diamond",
            "--detector",
            "org/dino",
            "--tracker",
            "iou",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 2 and stderr.count("\n") == 1
    assert "detector 'org/dino' is not in the local cache" in stderr and "--detector toy" in stderr
    code, stdout, stderr = run_cli(
        ["proposals", str(video), "diamond", "--detector", "toy", "--num-frames", "6", "--out", str(tmp_path)]
    )
    assert code == 0, stderr
    assert "tracks of 'diamond'" in stdout


class _Ok(BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


def test_the_check_lets_cached_reachable_and_local_models_through(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    assert hub_unreachable() is not None
    require_checkpoint(tmp_path, "model")  # a local folder
    # A cached repository: the hub's cache layout (refs/main -> snapshots/<rev>/config.json).
    repo = tmp_path / "cache" / "models--org--cached"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "config.json").write_text("{}")
    cache = tmp_path / "cache"  # huggingface_hub reads HF_HUB_CACHE at import: pass the folder
    require_checkpoint("org/cached", "model", cache_dir=cache)
    with pytest.raises(ModelError, match="'org/missing' is not in the local cache"):
        require_checkpoint("org/missing", "model", cache_dir=cache)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_unreachable() == "HF_HUB_OFFLINE is set"
    monkeypatch.delenv("HF_HUB_OFFLINE")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        assert hub_unreachable() is None
        require_checkpoint("org/missing", "model", cache_dir=cache)  # reachable: the loaders download it
    finally:
        server.shutdown()
        server.server_close()


def test_many_clips_ground_from_a_pairs_file_and_resume(run_cli, no_hub, tmp_path) -> None:
    folder = tmp_path / "clips"
    make_dataset(folder, 2, ToyWorldConfig(seed=17), progress=False)
    samples = load_dataset("toy", folder)
    pairs = tmp_path / "pairs.jsonl"
    lines = [{"video": f"clips/videos/{s.video.name}", "query": s.sentence} for s in samples]
    lines.append({"video": "clips/videos/missing.mp4", "query": "the red circle", "id": "gone"})
    pairs.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "batch"
    argv = ["ground", "--batch", str(pairs), "--out", str(out), "--num-frames", "4", "--quiet"]
    code, stdout, stderr = run_cli(argv)
    assert code == 0, stderr
    assert "done 2, skipped (already done) 0, failed 1" in stdout
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [f"{s.video.name}:{i}" for i, s in enumerate(samples, 1)] + ["gone"]
    assert "error" in records[2] and all("tube" in r for r in records[:2])
    assert json.loads((out / "predictions.json").read_text()).keys() == {r["id"] for r in records[:2]}
    assert not (out / "metrics.json").exists()  # no ground truth, no scores
    code, stdout, _ = run_cli(argv)  # a rerun grounds only the failed pair again
    assert code == 0 and "done 0, skipped (already done) 2, failed 1 (1 of them retried" in stdout
    code, _, stderr = run_cli([*argv[:-3], "--num-frames", "6", "--quiet"])
    errors = [line for line in stderr.splitlines() if line.startswith("stvg: error:")]
    assert code == 2 and len(errors) == 1 and "settings.num_frames" in errors[0] and "Traceback" not in stderr
    code, _, stderr = run_cli(["ground", str(samples[0].video), "--batch", str(pairs), "--out", str(out)])
    assert code == 2 and "VIDEO QUERY or --batch" in stderr


def test_own_tracks_are_used_as_given_resampled_to_the_sampled_frames(
    run_cli, no_hub, clip, tmp_path
) -> None:
    video, sentence = clip
    tracks = tmp_path / "tracks.json"
    boxes = {"10": [35, 50, 47, 62], "30": [35, 69, 47, 81], "55": [33, 67, 49, 83]}
    missed = {"label": "gone early", "boxes": {"1": [0, 0, 8, 8], "2": None}}
    tracks.write_text(
        json.dumps({"video": video.name, "tracks": [{"label": "diamond", "boxes": boxes}, missed]})
    )
    out = tmp_path / "out"
    argv = ["ground", str(video), sentence, "--tracks", str(tracks), "--num-frames", "8", "--out", str(out)]
    code, _, stderr = run_cli([*argv, "--quiet"])
    assert code == 0, stderr
    assert "1 of 2 tracks have no box on the 8 sampled frames" in stderr
    result = json.loads((out / f"{video.stem}_result.json").read_text())
    assert result["sampled_frame_ids"] == [0, 7, 15, 23, 31, 39, 47, 55]
    assert result["tracks"]["file"] == str(tracks) and len(result["tracks"]["sha256"]) == 16
    assert not (out / "tracks").exists()  # nothing was detected, so nothing stored
    tube = result["tube"]["boxes"]
    # worked by hand: frame 15 is 1/4 of the way from 10 to 30 (y: 50 + 19 / 4), 23 is 13/20 of it
    assert tube["15"] == [35.0, 54.75, 47.0, 66.75]
    assert tube["23"] == pytest.approx([35.0, 62.35, 47.0, 74.35])
    # 31 is 1/25 of the way from 30 to 55
    assert tube["31"] == pytest.approx([34.92, 68.92, 47.08, 81.08])
    for clash in (["--detector", "toy"], ["--proposals", str(tmp_path)]):
        code, _, stderr = run_cli([*argv, *clash])
        errors = [line for line in stderr.splitlines() if line.startswith("stvg: error:")]
        assert code == 2 and len(errors) == 1 and f"drop {clash[0]}" in errors[0]
    tracks.write_text('{"tracks": [{"label": "x", "boxes": {"99": [0, 0, 5, 5]}}]}')
    code, _, stderr = run_cli(argv)
    assert (
        code == 2 and "frame 99 is past the video's last frame (55)" in stderr and "Traceback" not in stderr
    )


def test_a_batch_pair_can_name_its_track_file_and_an_edit_is_a_change(run_cli, no_hub, tmp_path) -> None:
    folder = tmp_path / "clips"
    make_dataset(folder, 2, ToyWorldConfig(seed=17), progress=False)
    samples = load_dataset("toy", folder)
    own = tmp_path / "own.json"
    own.write_text(
        json.dumps({"tracks": [{"label": "box", "boxes": {"0": [1, 2, 30, 40], "40": [1, 2, 30, 40]}}]})
    )
    pairs = tmp_path / "pairs.jsonl"
    lines = [
        {
            "video": f"clips/videos/{samples[0].video.name}",
            "query": samples[0].sentence,
            "tracks": "own.json",
        },
        {"video": f"clips/videos/{samples[1].video.name}", "query": samples[1].sentence},
    ]
    pairs.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "batch"
    argv = ["ground", "--batch", str(pairs), "--out", str(out), "--num-frames", "4", "--quiet"]
    code, stdout, stderr = run_cli(argv)
    assert code == 0 and "done 2, skipped (already done) 0, failed 0" in stdout, stderr
    records = {r["id"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    first = records[f"{samples[0].video.name}:1"]
    assert {tuple(b) for b in first["tube"]["boxes"].values()} == {(1.0, 2.0, 30.0, 40.0)}  # the file's box
    stored = [p.name for p in (out / "tracks").glob("*.json")]
    assert stored == [f"{samples[1].video.name}.json"]  # only the other pair was detected
    own.write_text(own.read_text().replace("30, 40", "31, 40"))
    code, _, stderr = run_cli(argv)
    errors = [line for line in stderr.splitlines() if line.startswith("stvg: error:")]
    assert code == 2 and len(errors) == 1 and "samples (1 changed" in errors[0]
    pairs.write_text(
        pairs.read_text() + json.dumps({**lines[0], "tracks": "other.json", "id": "again"}) + "\n"
    )
    code, _, stderr = run_cli(argv)
    assert code == 2 and "was given the track file 'own.json' on line 1" in stderr
