"""The place caption check: parsing, object-by-object scoring, greedy decoding on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cli import cli
from zsgrounding.datasets.toyworld import ToyWorldConfig, generate_one
from zsgrounding.mllm import load_adapter
from zsgrounding.toymllm.captions import (
    PLACE_PROMPT,
    greedy_answer,
    parse_places,
    place_caption_check,
    score_places,
)
from zsgrounding.toymllm.data import place_list, seen_objects
from zsgrounding.toymllm.evaluate import EvalConfig, toy_clip


def test_parse_places_reads_each_object_and_its_move() -> None:
    caption = "big red circle at the left then in the middle , small blue square at the top right ."
    assert parse_places(caption) == {
        "big red circle": ("at the left", "in the middle"),
        "small blue square": ("at the top right", None),
    }
    assert parse_places(" .") == {}


def test_score_places_counts_object_by_object() -> None:
    truth = "big red circle at the left then in the middle , small blue square at the top , big green diamond at the right ."
    said = "big red circle at the left , small blue square at the top then at the right , small white circle at the bottom ."
    counts = score_places(said, truth)
    assert counts["objects"] == 3 and counts["moves"] == 1
    assert counts["named"] == 2  # the green diamond is missing; the white circle is not in the video
    assert counts["first_right"] == 2
    assert counts["moves_said"] == 0 and counts["last_right"] == 0  # the circle's move is not said
    assert counts["stays_said_moving"] == 1  # the square is said to move
    right = score_places(truth, truth)
    assert right["first_right"] == right["named"] == 3 and right["last_right"] == right["moves_said"] == 1


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("toy_mllm_captions")
    result = CliRunner().invoke(
        cli, ["toy", "pretrain", "--quick", "--out", str(out), "--quiet", "--per-kind", "4"]
    )
    assert result.exit_code == 0, result.output
    return out


def test_greedy_answer_starts_with_the_models_most_likely_token(tiny: Path) -> None:
    adapter = load_adapter(tiny)
    world = ToyWorldConfig()
    clip = toy_clip(generate_one(900_000, world), 1)
    prepared = adapter.prepare(clip, PLACE_PROMPT)
    with torch.no_grad():
        first = int(adapter.forward(prepared).logits[0].argmax())
    said = greedy_answer(adapter, prepared, max_tokens=5)
    assert said.split()[0] == adapter.tokenizer.convert_ids_to_tokens(first)
    assert len(said.split()) <= 5


def test_place_caption_check_scores_every_object_of_every_clip(tiny: Path) -> None:
    config = EvalConfig(frames=1)
    result = place_caption_check(tiny, config, clips=3, progress=False)
    expected = 0
    for index in range(config.start, config.start + 3):
        video = generate_one(index, config.world)
        clip = toy_clip(video, 1)
        size = (config.world.width, config.world.height)
        expected += len(
            parse_places(place_list(seen_objects(video.objects, video.num_frames, clip.frame_ids, size)))
        )
    counts, rates = result["counts"], result["rates"]
    assert counts["objects"] == expected > 0
    assert counts.get("moves", 0) == 0  # one frame shows no move
    assert len(result["examples"]) == 3 and all(e["true"].endswith(" .") for e in result["examples"])
    assert rates["first_right"] == round(counts.get("first_right", 0) / expected, 4)
    assert rates["moves_said"] is None and rates["last_right"] is None


def test_place_caption_benchmark_runs_and_refuses_a_folder_without_a_model(
    tiny: Path, tmp_path: Path
) -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "toy_place_captions.py"
    spec = importlib.util.spec_from_file_location("toy_place_captions", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--model", str(tmp_path)]) == 2
    out = tmp_path / "captions.json"
    assert module.main(["--model", str(tiny), "--clips", "2", "--frames", "1", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["clips"] == 2
