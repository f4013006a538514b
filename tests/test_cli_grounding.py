"""`stvg ground`, `eval`, `decompose`, `pilot` on toy clips with a tiny random-weight LLaVA-OneVision."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from PIL import Image
from tiny_models import save_tiny_llava

from zsgrounding.datasets import load_dataset
from zsgrounding.metrics import evaluate
from zsgrounding.predictions import load_predictions
from zsgrounding.toy.world import ToyWorldConfig, make_dataset

FAST = ["--num-frames", "3", "--lra-steps", "1", "--lra-step-size", "1.0"]


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("toy")
    make_dataset(out, 3, ToyWorldConfig(seed=5), progress=False)
    return out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_llava(tmp_path_factory.mktemp("llava"))


@pytest.fixture(autouse=True)
def _no_endpoint(monkeypatch: pytest.MonkeyPatch):
    # No LLM endpoint here: make sure a developer's environment does not point at one.
    for name in ("STVG_LLM_BASE_URL", "STVG_LLM_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def test_ground_writes_result_video_and_plots(
    run_cli, toy_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    sample = load_dataset("toy", toy_dir)[0]
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(
        [
            "ground",
            str(sample.video),
            sample.sentence,
            "--model",
            str(model_dir),
            "--toy-dir",
            str(toy_dir),
            *FAST,
            "--out",
            str(out),
        ]
    )
    assert code == 0, stderr
    stem = sample.video.stem
    record = json.loads((out / f"{stem}_result.json").read_text())
    assert record["id"] == sample.video.name
    assert 0 <= record["tube"]["start"] < record["tube"]["end"]
    assert record["extras"]["sub_queries"]["source"] == "rules"
    with Image.open(out / f"{stem}_grounded.gif") as gif:
        assert gif.n_frames > 1
    assert (out / f"{stem}_temporal.png").stat().st_size > 0
    assert (out / f"{stem}_attention.png").stat().st_size > 0
    assert "tube: frames [" in stdout and f"{stem}_grounded.gif" in stdout


def test_eval_streams_resumes_and_scores(run_cli, toy_dir: Path, model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [
        "eval",
        "--dataset",
        "toy",
        "--gt",
        str(toy_dir),
        "--model",
        str(model_dir),
        *FAST,
        "--out",
        str(out),
    ]
    code, stdout, stderr = run_cli([*args, "--max-samples", "2", "--quiet"])
    assert code == 0, stderr
    assert "done 2, skipped (already done) 0, failed 0" in stdout
    code, stdout, stderr = run_cli([*args, "--quiet"])
    assert code == 0, stderr
    assert "done 1, skipped (already done) 2, failed 0" in stdout

    lines = (out / "results.jsonl").read_text().splitlines()
    samples = load_dataset("toy", toy_dir)
    assert [json.loads(line)["id"] for line in lines] == [s.id for s in samples]
    predictions = load_predictions(out / "predictions.json")
    expected = evaluate(predictions, {s.id: s.gt for s in samples}).report()
    stored = json.loads((out / "metrics.json").read_text())
    settings = stored.pop("settings")
    assert stored == json.loads(json.dumps(expected))
    # The resolved settings go with the scores; toy data has no reference preset.
    assert settings["preset_name"] is None and settings["model"] == str(model_dir)


def test_preset_flags_override_and_settings_are_recorded(
    run_cli, toy_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "preset"
    args = ["eval", "--dataset", "toy", "--gt", str(toy_dir), "--model", str(model_dir), "--out", str(out)]
    code, _, stderr = run_cli(
        [*args, "--preset", "reference-hcstvg-v2", *FAST, "--max-samples", "1", "--quiet"]
    )
    assert code == 0, stderr
    settings = json.loads((out / "metrics.json").read_text())["settings"]
    assert settings["preset_name"] == "reference-hcstvg-v2"
    # Explicit flags win; everything else is the preset's.
    assert (
        settings["num_frames"] == 3 and settings["lra"]["steps"] == 1 and settings["lra"]["step_size"] == 1.0
    )
    assert settings["lra"]["schedule"] == "reference" and settings["gti"] == "fixed"
    assert settings["adapter"]["pool_stride"] == 5 and settings["scorer"]["weighting"] == "point"

    # `ground` defaults to reference-hcstvg-v2 and writes the settings beside the result.
    sample = load_dataset("toy", toy_dir)[0]
    one = tmp_path / "one"
    code, _, stderr = run_cli(
        ["ground", str(sample.video), sample.sentence, "--model", str(model_dir), "--toy-dir", str(toy_dir),
         *FAST, "--out", str(one)]
    )  # fmt: skip
    assert code == 0, stderr
    record = json.loads((one / f"{sample.video.stem}_result.json").read_text())
    assert record["settings"]["preset_name"] == "reference-hcstvg-v2"
    code, _, stderr = run_cli(
        ["ground", str(sample.video), sample.sentence, "--model", str(model_dir), "--toy-dir", str(toy_dir),
         "--preset", "none", *FAST, "--out", str(one)]
    )  # fmt: skip
    assert code == 0, stderr
    record = json.loads((one / f"{sample.video.stem}_result.json").read_text())
    assert record["settings"]["preset_name"] is None and record["settings"]["sampling"] == "centres"
    code, _, stderr = run_cli([*args, "--preset", "reference-hcstvg-v9"])
    assert code == 2 and "reference-hcstvg-v9" in stderr


def test_a_resume_with_other_settings_is_refused_unless_forced(
    run_cli, toy_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "mixed"
    base = ["eval", "--dataset", "toy", "--gt", str(toy_dir), "--model", str(model_dir), "--out", str(out)]
    fast = ["--lra-steps", "1", "--lra-step-size", "1.0", "--quiet"]
    code, _, stderr = run_cli([*base, "--num-frames", "3", *fast, "--max-samples", "2"])
    assert code == 0, stderr
    before = (out / "results.rank0.jsonl").read_bytes()
    code, stdout, stderr = run_cli([*base, "--num-frames", "4", *fast])
    assert code == 2 and stdout == "" and stderr.count("\n") == 1
    assert "settings.num_frames" in stderr and "--force-resume" in stderr
    assert (out / "results.rank0.jsonl").read_bytes() == before  # nothing was added or lost
    warnings.simplefilter("default")  # this module silences warnings; this one is the point
    code, stdout, stderr = run_cli([*base, "--num-frames", "4", *fast, "--force-resume"])
    assert code == 0 and "settings.num_frames changed (forced)" in stderr
    assert "done 1, skipped (already done) 2, failed 0" in stdout
    # A finished run read again with other settings is refused too: its table would stand for
    # settings it was not made with.
    finished = (out / "metrics.json").read_bytes()
    code, stdout, stderr = run_cli([*base, "--num-frames", "5", *fast])
    assert code == 2 and stdout == "" and "settings.num_frames" in stderr and stderr.count("\n") == 1
    assert (out / "metrics.json").read_bytes() == finished


def test_a_second_process_into_the_same_folder_is_refused(
    run_cli, toy_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    # Another process holds the folder's lock, as a running `stvg eval` does.
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from zsgrounding.runfolder import RunLock\n"
         f"with RunLock(Path({str(out)!r}), 0):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        code, _, stderr = run_cli(
            ["eval", "--dataset", "toy", "--gt", str(toy_dir), "--model", str(model_dir), *FAST,
             "--out", str(out), "--quiet"]
        )  # fmt: skip
        assert code == 2 and f"in use by another run (pid {holder.pid})" in stderr and stderr.count("\n") == 1
        assert not (out / "results.rank0.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    code, _, stderr = run_cli(
        ["eval", "--dataset", "toy", "--gt", str(toy_dir), "--model", str(model_dir), *FAST, "--out", str(out),
         "--quiet", "--max-samples", "1"]
    )  # fmt: skip
    assert code == 0, stderr  # the lock went with its process


def test_option_errors_are_found_before_the_first_sample(
    run_cli, toy_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    base = ["eval", "--dataset", "toy", "--gt", str(toy_dir), "--model", str(model_dir), *FAST, "--quiet"]
    cases = [
        (
            ["--gti", "fixed", "--fixed-index", "9999"],
            "fixed_index 9999 is outside the 5 tokens after the question",
        ),
        (["--layers", "0:999"], "layers 0:999 is outside the model's 3 decoder layers"),
        (["--dtype", "float99"], "unknown dtype 'float99'"),
        (["--device", "tpu9"], "unknown device 'tpu9'"),
    ]
    for i, (flags, needle) in enumerate(cases):
        out = tmp_path / f"bad{i}"
        code, stdout, stderr = run_cli([*base, *flags, "--out", str(out)])
        assert code == 2 and stdout == "", flags
        assert stderr.startswith("stvg: error: ") and stderr.count("\n") == 1 and needle in stderr, stderr
        assert not (out / "results.rank0.jsonl").exists()  # no sample ran


def test_quiet_hides_transformers_progress_bars(
    run_cli, toy_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "quiet"
    args = ["eval", "--dataset", "toy", "--gt", str(toy_dir), "--model", str(model_dir), *FAST]
    code, _, stderr = run_cli([*args, "--out", str(out), "--max-samples", "1", "--quiet"])
    assert code == 0 and "Loading weights" not in stderr and "%|" not in stderr, stderr
    video = sorted((toy_dir / "videos").iterdir())[0]
    ground = ["ground", str(video), "the red circle", "--model", str(model_dir), "--toy-dir", str(toy_dir)]
    code, _, stderr = run_cli([*ground, *FAST, "--out", str(tmp_path / "g"), "--quiet"])
    assert code == 0 and "Loading weights" not in stderr and "%|" not in stderr, stderr


def test_a_layer_window_past_the_model_is_refused_before_the_weights_load(
    run_cli, toy_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    video = sorted((toy_dir / "videos").iterdir())[0]
    argv = ["ground", str(video), "the red circle", "--model", str(model_dir), "--layers", "1:4"]
    code, _, stderr = run_cli([*argv, "--out", str(tmp_path)])  # no --quiet: no bar either
    assert (
        code == 2
        and stderr == "stvg: error: layers 1:4 is outside the model's 3 decoder layers (0:3 at most)\n"
    )


def test_decompose_rules_prints_json_lines(run_cli) -> None:
    code, stdout, _ = run_cli(
        [
            "decompose",
            "--rules",
            "the big red circle that moves left",
            "the man in the red shirt who turns around",
        ]
    )
    assert code == 0
    first, second = (json.loads(line) for line in stdout.splitlines())
    assert first["attribute"] == "the big red circle" and first["action"] == "the circle that moves left"
    assert second["attribute"] == "the man in the red shirt"
    assert second["questions"][0] == "Is there the man in the red shirt in this video?"


def test_pilot_prints_the_table(run_cli, toy_dir: Path, model_dir: Path, tmp_path: Path) -> None:
    table = tmp_path / "pilot.md"
    code, stdout, stderr = run_cli(
        [
            "pilot",
            "--dataset",
            "toy",
            "--gt",
            str(toy_dir),
            "--model",
            str(model_dir),
            "--num-frames",
            "3",
            "--consistency",
            "--quiet",
            "--out",
            str(table),
        ]
    )
    assert code == 0, stderr
    text = table.read_text()
    assert "| token | mean attention ratio | hit ratio (%) |" in text
    assert "Grounding accuracy per rank of visual activation (3 samples with proposals)" in text
    assert "Temporal consistency" in text and text in stdout
    # The hit ratios over the special tokens add up to 100 %.
    hits = [float(row.split("|")[-2]) for row in text.split("\n\n")[1].splitlines()[2:]]
    assert sum(hits) == pytest.approx(100.0, abs=0.2)


def test_pilot_reads_a_track_store_as_stored(run_cli, toy_dir: Path, model_dir: Path, tmp_path: Path) -> None:
    """A store holding the toy world's own tracks (made "by hand", not with the settings a
    detector run would ask for) gives the same table as the toy default; before, the pilot asked
    the store with an empty noun phrase, found it stale and had the detector refuse."""
    from zsgrounding.datasets.toy import load_sidecar, sidecar_tracks
    from zsgrounding.proposals.store import TrackStore

    store = TrackStore(tmp_path / "store")
    for name, video in load_sidecar(toy_dir)["videos"].items():
        store.save(name, sidecar_tracks(video), {"made": "by hand"}, 48, 64, 48)
    base = ["pilot", "--dataset", "toy", "--gt", str(toy_dir), "--model", str(model_dir), "--quiet"]
    code, default, stderr = run_cli([*base, "--num-frames", "3"])
    assert code == 0, stderr
    code, stored, stderr = run_cli([*base, "--num-frames", "3", "--proposals", str(tmp_path / "store")])
    assert code == 0, stderr
    assert "(3 samples with proposals)" in stored
    assert stored == default


def test_bad_input_is_one_line_and_exit_2(run_cli, toy_dir: Path, model_dir: Path, tmp_path: Path) -> None:
    video = next((toy_dir / "videos").iterdir())
    code, _, stderr = run_cli(["ground", str(video), "  ", "--model", str(model_dir), "--out", str(tmp_path)])
    assert code == 2 and stderr.startswith("stvg: error:") and len(stderr.strip().splitlines()) == 1
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"not a video at all")
    code, _, stderr = run_cli(
        [
            "ground",
            str(corrupt),
            "the red circle",
            "--model",
            str(model_dir),
            "--toy-dir",
            str(toy_dir),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2 and "corrupt.mp4" in stderr and len(stderr.strip().splitlines()) == 1
    code, _, stderr = run_cli(
        [
            "ground",
            str(video),
            "the red circle",
            "--model",
            str(tmp_path / "nowhere"),
            "--toy-dir",
            str(toy_dir),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2 and len(stderr.strip().splitlines()) == 1
    code, _, stderr = run_cli(["ground", str(video), "x", "--layers", "5:2", "--out", str(tmp_path)])
    assert code == 2 and "LO < HI" in stderr
