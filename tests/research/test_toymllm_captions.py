"""The place caption check: parsing, object-by-object scoring, greedy decoding on a tiny model,
and ``python -m research.toy_place_captions`` run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cli import cli
from research.captions import (
    PLACE_PROMPT,
    PLACE_TARGETS,
    action_word_check,
    checklist_decisions,
    greedy_answer,
    parse_places,
    place_caption_check,
    place_word_check,
    score_places,
    teacher_forced,
    train_captions,
)
from zsgrounding.mllm import load_adapter
from zsgrounding.toy.mllm.data import action_checklist, place_list, seen_objects
from zsgrounding.toy.mllm.evaluate import EvalConfig, toy_clip
from zsgrounding.toy.world import ToyWorldConfig, generate_one

ROOT = Path(__file__).resolve().parents[2]


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


def test_checklist_decisions_point_at_the_word_after_each_verb_phrase() -> None:
    checklist = "moves left big red circle , stays still none , grows small blue square big red circle ."
    words = checklist.split()
    decisions = checklist_decisions(checklist)
    assert decisions == [("move_left", 2), ("stay_still", 8), ("grow", 11)]
    assert [words[i] for _, i in decisions] == ["big", "none", "small"]
    world = ToyWorldConfig()
    for index in range(900_000, 900_010):  # real checklists: one decision per entry, on none or a size
        video = generate_one(index, world)
        seen = seen_objects(
            video.objects, video.num_frames, toy_clip(video, 8).frame_ids, (world.width, world.height)
        )
        checklist = action_checklist(seen, world)
        words = checklist.split()
        decisions = checklist_decisions(checklist)
        assert len(decisions) == checklist.count(" , ") + 1
        assert all(words[i] in ("none", "small", "big") for _, i in decisions)
    with pytest.raises(ValueError, match="no action starts"):
        checklist_decisions("flies away none .")


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


def test_teacher_forcing_predicts_each_word_from_the_words_before_it(tiny: Path) -> None:
    adapter = load_adapter(tiny)
    world = ToyWorldConfig()
    video = generate_one(900_001, world)
    clip = toy_clip(video, 1)
    caption = place_list(
        seen_objects(video.objects, video.num_frames, clip.frame_ids, (world.width, world.height))
    )
    ids = adapter.tokenizer(caption, add_special_tokens=False)["input_ids"][:6]
    prepared = adapter.prepare(clip, PLACE_PROMPT)
    predicted = teacher_forced(adapter, prepared, ids)
    # One pass over the whole answer against one decoding step per prefix of it.
    embed = adapter.model.get_input_embeddings()
    expected = []
    with torch.no_grad():
        for k in range(len(ids)):
            prefix = torch.cat(
                [prepared.inputs_embeds, embed(torch.tensor([ids[:k]], dtype=torch.long))], dim=1
            )
            expected.append(int(adapter.model(inputs_embeds=prefix).logits[0, -1].argmax()))
    assert len(ids) == 6 and predicted.tolist() == expected


def test_place_word_check_scores_every_place_word_with_both_videos(tiny: Path) -> None:
    config = EvalConfig(frames=1)
    result = place_word_check(tiny, config, clips=3, progress=False)
    size = (config.world.width, config.world.height)
    expected = 0
    for index in range(config.start, config.start + 3):
        video = generate_one(index, config.world)
        caption = place_list(
            seen_objects(video.objects, video.num_frames, toy_clip(video, 1).frame_ids, size)
        )
        expected += sum(word in PLACE_TARGETS for word in caption.split())
    assert result["words"] == expected > 0
    for mode in ("real", "other_clip"):
        assert 0.0 <= result[mode] <= 1.0
        assert round(result[mode] * expected) == pytest.approx(result[mode] * expected, abs=1e-3)


def test_action_word_check_scores_every_entry_and_one_frame_has_no_order(tiny: Path) -> None:
    config = EvalConfig(frames=1)
    result = action_word_check(tiny, config, clips=3, progress=False)
    size = (config.world.width, config.world.height)
    expected, nobody = 0, 0
    for index in range(config.start, config.start + 3):
        video = generate_one(index, config.world)
        seen = seen_objects(video.objects, video.num_frames, toy_clip(video, 1).frame_ids, size)
        checklist = action_checklist(seen, config.world)
        decisions = checklist_decisions(checklist)
        expected += len(decisions)
        nobody += sum(checklist.split()[at] == "none" for _, at in decisions)
    assert result["decisions"] == expected > 0
    assert result["none"] == round(nobody / expected, 4)
    # One frame played backwards is the same frame: the same words, to the last one.
    assert result["reversed"] == result["real"]
    assert all(rates["reversed"] == rates["real"] for rates in result["by_action"].values())
    assert 0.0 <= result["other_clip"] <= 1.0
    assert result["order_actions"]["decisions"] <= expected
    assert result["moves"]["decisions"] <= result["order_actions"]["decisions"]


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


def _script(*args: str) -> int:
    """Exit code of ``python -m research.toy_place_captions ARGS`` run from the repository root."""
    done = subprocess.run(
        [sys.executable, "-m", "research.toy_place_captions", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode in (0, 2), done.stderr
    return done.returncode


def test_place_caption_script_runs_and_refuses_a_folder_without_a_model(tiny: Path, tmp_path: Path) -> None:
    assert _script("--model", str(tmp_path)) == 2
    assert _script("--model", str(tiny), "--train-places", "5") == 2  # no --train-out
    # The shipped recipe reads 64 px frames, the tiny model 48 px: a clear refusal.
    assert _script("--model", str(tiny), "--train-places", "2", "--train-out", str(tmp_path / "c")) == 2
    out = tmp_path / "captions.json"
    assert _script("--model", str(tiny), "--clips", "2", "--frames", "1", "--out", str(out)) == 0
    written = json.loads(out.read_text())
    assert written["clips"] == 2 and written["place_words"]["clips"] == 2
    assert written["action_words"]["clips"] == 2
    assert (
        _script("--model", str(tiny), "--train", "2", "--tasks", "dance", "--train-out", str(tmp_path / "d"))
        == 2
    )


def test_train_captions_moves_the_projector_and_lm_and_keeps_the_tower(tiny: Path, tmp_path: Path) -> None:
    from transformers import LlavaOnevisionForConditionalGeneration

    from zsgrounding.toy.mllm.config import ToyPretrainConfig

    torch.set_num_threads(1)
    recipe = ToyPretrainConfig.quick(train_clips=12, eval_clips=6)
    summary = train_captions(tiny, tmp_path / "copy", 3, 1.0, recipe, progress=False)
    assert summary["projector_and_lm"]["steps"] == 3 and summary["projector_only"]["steps"] == 0
    assert set(summary["held_out"]) == {"places"}
    before = LlavaOnevisionForConditionalGeneration.from_pretrained(tiny).state_dict()
    after = LlavaOnevisionForConditionalGeneration.from_pretrained(tmp_path / "copy").state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(".vision_tower." not in k for k in moved)
    assert any(".multi_modal_projector." in k for k in moved) and any(".language_model." in k for k in moved)
