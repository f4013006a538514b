"""The toy MLLM recipe: tokenizer, data, model paths, a short schedule that learns, and the saved dir."""

from __future__ import annotations

import json
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from cli import cli
from zsgrounding.assets import TOY_MLLM
from zsgrounding.mllm import load_adapter
from zsgrounding.mllm.preprocess import FramePreprocessing, preprocess_frames
from zsgrounding.toy.mllm.config import StageSchedule, ToyPretrainConfig
from zsgrounding.toy.mllm.data import (
    CAPTION_TASKS,
    REVERSE_ACTIONS,
    Description,
    Question,
    Sampler,
    SeenObject,
    answer,
    build_bank,
    frame_description,
    make_question,
    nearby_place,
    place_list,
    place_of,
    place_phrase,
    seen_objects,
)
from zsgrounding.toy.mllm.evaluate import (
    ORDER_MODES,
    EvalConfig,
    binomial_stderr,
    evaluate_vqa,
    query_token_check,
    question_case,
    reorder_visual,
    token_order_check,
    token_roles,
    toy_clip,
)
from zsgrounding.toy.mllm.stages import (
    CellHead,
    VisualSource,
    cell_head,
    frame_tokens,
    lm_loss,
    optimise,
    projector_modules,
    stage1_vision,
    to_pixels,
    tower_hidden,
    video_tokens,
)
from zsgrounding.toy.mllm.tokenizer import PLACE_WORDS, build_tokenizer, encode_conversation
from zsgrounding.toy.mllm.train import build_model, pretrain, sincos_positions
from zsgrounding.toy.world import (
    ACTIONS,
    COLOURS,
    SHAPES,
    SIZES,
    ToyWorldConfig,
    generate,
    generate_one,
)
from zsgrounding.video import uniform_ids

# The short schedule: a tiny model on one 48 px frame per clip (3 x 3 tokens), colour checklists
# as captions and "is there a <colour> thing" questions (the easy kind).
TINY = ToyPretrainConfig.quick().model


def tiny_recipe(**overrides) -> ToyPretrainConfig:
    return ToyPretrainConfig.quick(**overrides)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, ToyPretrainConfig]:
    # Through the command a user runs, on the short schedule.
    out = tmp_path_factory.mktemp("toy_mllm")
    result = CliRunner().invoke(cli, ["toy", "pretrain", "--quick", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "held-out VQA through load_adapter" in result.output
    recipe = json.loads((out / "recipe.json").read_text())
    return out, recipe, tiny_recipe()


# ---------------------------------------------------------------------------------------- tokenizer


def test_tokenizer_encodes_every_toy_text_without_unknowns() -> None:
    world = ToyWorldConfig(colours=tuple(COLOURS), shapes=SHAPES)
    texts = [video.caption for video in generate(40, world)]
    texts += [
        f"the {s} {c} {sh} that {verb}"
        for s in SIZES
        for c in COLOURS
        for sh in SHAPES
        for verb in ACTIONS.values()
    ]
    rng = np.random.default_rng(0)
    place_texts = []  # only a recipe that says places has these words
    for video in generate(20, world, start=500):
        ids = np.arange(0, video.num_frames, 5)
        seen = seen_objects(video.objects, video.num_frames, ids, (world.width, world.height))
        for task, (prompts, describe) in CAPTION_TASKS.items():
            (place_texts if task == "places" else texts).extend([describe(seen, world), *prompts])
        objects = [(o.size, o.colour, o.shape) for o in seen if o.visible]
        places = [o.places[0] for o in seen if o.visible]
        place_texts.append(frame_description(rng, objects, places=places))
        for kind in ("colour", "attr3", "action", "full"):
            for style in range(4):
                q = make_question(rng, seen, kind, bool(rng.random() < 0.5), world, style=style)
                if q is not None:
                    texts.append(q.text)
    texts += ["Is there the big red circle in this video?", "yes", "no", "Yes", "No"]
    plain, with_places = build_tokenizer(), build_tokenizer(places=True)
    for tokenizer, known in ((plain, texts), (with_places, texts + place_texts)):
        for text in known:
            assert tokenizer.unk_token_id not in tokenizer(text, add_special_tokens=False)["input_ids"], text
    assert any(plain.unk_token_id in plain(text)["input_ids"] for text in place_texts)
    assert len(with_places) == len(plain) + len(PLACE_WORDS)


def test_the_recipes_tokenizer_is_the_shipped_checkpoints() -> None:
    # The recipe's command reproduces the shipped model only if the ids are the same.
    shipped = json.loads((TOY_MLLM / "tokenizer.json").read_text())["model"]["vocab"]
    recipe = ToyPretrainConfig()
    assert recipe.says_places
    tokenizer = build_tokenizer(recipe.model.family, places=recipe.says_places)
    assert json.loads(tokenizer.backend_tokenizer.to_str())["model"]["vocab"] == shipped


def test_conversation_pieces_match_the_chat_template() -> None:
    tokenizer = build_tokenizer()
    question = "Is there the big red circle in this video?"
    messages = [
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]},
        {"role": "assistant", "content": "yes"},
        {"role": "user", "content": "does the red circle move left?"},
    ]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    expected = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    encoded = encode_conversation(tokenizer, [(question, "yes"), ("does the red circle move left?", "no")], 1)
    # The pieces give the template's ids up to the last generation prompt, then the last answer.
    assert encoded.input_ids[: len(expected)] == expected
    yes, no, end = tokenizer.convert_tokens_to_ids(["yes", "no", "<|im_end|>"])
    supervised = [t for t in encoded.labels if t != -100]
    assert supervised == [yes, end, no, end]
    assert encoded.labels[encoded.answer_positions[0]] == yes
    assert encoded.input_ids[encoded.answer_positions[1] + 1] == no


# ---------------------------------------------------------------------------------------- data


def test_seen_objects_only_claim_what_the_frames_show() -> None:
    world = ToyWorldConfig()
    checked = 0
    for index in range(60):
        video = generate_one(index, world)
        ids = np.arange(video.num_frames)  # every frame: everything is shown
        for obj, seen in zip(video.objects, seen_objects(video.objects, video.num_frames, ids), strict=True):
            assert seen.visible and not seen.unsure
            assert seen.actions == set(obj.action_spans(video.num_frames))
            checked += 1
        # A single frame cannot show an appearance, a departure or a motion.
        one = seen_objects(video.objects, video.num_frames, np.array([video.num_frames // 2]))
        for seen in one:
            assert not (seen.actions & {"appear", "leave", "move_left", "grow"})
    assert checked > 100


def test_questions_have_the_answer_they_claim() -> None:
    world = ToyWorldConfig()
    rng = np.random.default_rng(3)
    hard = 0
    for index in range(40):
        video = generate_one(index, world)
        seen = seen_objects(
            video.objects, video.num_frames, np.linspace(0, video.num_frames - 1, 8).astype(int)
        )
        for kind in ("colour", "shape", "attr2", "attr3", "action", "full"):
            for want in (True, False):
                q = make_question(rng, seen, kind, want, world, hard_negatives=1.0)
                if q is None:
                    continue
                assert answer(seen, q.desc) is want
                if q.hard:
                    hard += 1
                    assert not q.answer
                    visible = [o for o in seen if o.visible]
                    named = q.desc.named
                    near_miss = len(named) >= 2 and any(
                        sum(getattr(q.desc, n) == o.attribute(n) for n in named) == len(named) - 1
                        for o in visible
                    )
                    shares_action = q.desc.action is not None and any(
                        q.desc.action in o.actions or q.desc.matches(o) for o in visible
                    )
                    assert near_miss or shares_action
    assert hard > 50
    assert answer(seen, Description(colour="no-such-colour")) is False


def test_reverse_action_negatives_ask_what_the_object_does_backwards() -> None:
    world = ToyWorldConfig()
    rng = np.random.default_rng(5)
    reverse = total = 0
    for index in range(200):
        video = generate_one(index, world)
        seen = seen_objects(video.objects, video.num_frames, uniform_ids(video.num_frames, 8))
        q = make_question(rng, seen, "action", False, world, hard_negatives=1.0, reverse_actions=1.0)
        if q is None:
            continue
        assert answer(seen, q.desc) is False and q.hard
        total += 1
        fits = [o for o in seen if o.visible and q.desc.matches(o)]
        reverse += any(REVERSE_ACTIONS.get(a) == q.desc.action for o in fits for a in o.actions)
    # Whenever the object does a reversible action (most clips), the question asks its reverse.
    assert total > 150 and reverse / total > 0.7, (reverse, total)
    assert all(REVERSE_ACTIONS[REVERSE_ACTIONS[a]] == a for a in REVERSE_ACTIONS)


def test_zoomed_stage1_views_describe_only_whole_objects() -> None:
    world = ToyWorldConfig()
    bank = build_bank(world, 0, 30, 3, 96, progress=False)
    sampler = Sampler(bank, build_tokenizer(), world, TINY, seed=[0, 1])
    rows, texts, hard = sampler.frame_batch(48, 2, p_zoom=0.7)
    zoomed = torch.nonzero(rows[:, 2] >= 0).flatten().tolist()
    assert 20 <= len(zoomed) < 48  # some frames have no window that cuts no object
    pixels = sampler.frame_pixels(rows)
    scale = np.array([world.width, world.height, world.width, world.height])
    for i in range(48):
        clip, pick, x0, y0 = rows[i].tolist()
        frame = bank.frames[int(clip), int(pick)]
        words = texts[i].split()
        if x0 < 0:
            torch.testing.assert_close(pixels[i], frame, rtol=0, atol=0)
            continue
        assert "small" not in words and "big" not in words  # a zoomed view has no size
        assert "small" not in hard[i].split() and "big" not in hard[48 + i].split()
        fid = int(bank.frame_ids[int(clip), int(pick)])
        inside = []
        for obj in bank.objects[int(clip)]:
            if not obj.visible[0] <= fid < obj.visible[1]:
                continue
            x1, y1, x2, y2 = obj.boxes[fid - obj.visible[0]] / scale
            whole = x1 >= x0 and y1 >= y0 and x2 <= x0 + 0.5 and y2 <= y0 + 0.5
            apart = x2 <= x0 or x1 >= x0 + 0.5 or y2 <= y0 or y1 >= y0 + 0.5
            assert whole or apart  # the window cuts no object
            inside += [obj.colour, obj.shape] if whole else []
        assert sorted(w for w in words if w not in ("a", "an", "and")) == sorted(inside)
        # The view is the window's pixels scaled up to the whole input.
        px, py = round(x0 * 96), round(y0 * 96)
        window = frame[py : py + 48, px : px + 48].movedim(-1, 0)[None].float()
        expected = torch.nn.functional.interpolate(window, size=(96, 96), mode="bilinear")
        torch.testing.assert_close(
            pixels[i], expected[0].movedim(0, -1).round().to(torch.uint8), rtol=0, atol=0
        )

    # Round 0 of the hard negatives changes the shape of exactly one object.
    def objects(text: str) -> Counter:
        return Counter(tuple(phrase.split()[-2:]) for phrase in text.split(" and "))

    for i in zoomed:
        lost, gained = objects(texts[i]) - objects(hard[i]), objects(hard[i]) - objects(texts[i])
        assert len(lost) == len(gained) == 1
        (colour, shape), (new_colour, new_shape) = next(iter(lost)), next(iter(gained))
        assert colour == new_colour and shape != new_shape


def test_place_phrases_name_the_third_of_the_view() -> None:
    assert place_phrase(place_of(0.1, 0.1)) == "at the top left"
    assert place_phrase(place_of(0.9, 0.5)) == "at the right"
    assert place_phrase(place_of(0.5, 0.95)) == "at the bottom"
    assert place_phrase(place_of(0.5, 0.5)) == "in the middle"
    assert place_of(-0.2, 1.3) == (2, 0)  # a centre outside the view: the nearest cell
    rng = np.random.default_rng(0)
    for place in [(0, 0), (1, 1), (2, 1)]:
        moved = {nearby_place(rng, place) for _ in range(200)}
        assert place not in moved
        assert all(max(abs(r - place[0]), abs(c - place[1])) == 1 for r, c in moved)
        assert len(moved) == (3 if place == (0, 0) else 8 if place == (1, 1) else 5)  # every neighbour


def _described(text: str) -> Counter:
    """``{(colour, shape, place words)}`` of a description with places."""
    out: Counter = Counter()
    for phrase in text.split(" and "):
        words = phrase.split()
        at = words.index("at") if "at" in words else words.index("in")
        out[(words[at - 2], words[at - 1], " ".join(words[at:]))] += 1
    return out


def test_stage1_places_say_where_each_object_is_in_the_view() -> None:
    world = ToyWorldConfig()
    bank = build_bank(world, 0, 30, 3, 96, progress=False)
    sampler = Sampler(bank, build_tokenizer(), world, TINY, seed=[0, 1])
    rows, texts, hard = sampler.frame_batch(48, 3, p_zoom=0.5, p_places=1.0)
    scale = np.array([world.width, world.height, world.width, world.height])
    checked = 0
    for i in range(48):
        clip, pick, x0, y0 = rows[i].tolist()
        if texts[i] == "nothing":
            continue
        fid = int(bank.frame_ids[int(clip), int(pick)])
        x0, y0, side = (0.0, 0.0, 1.0) if x0 < 0 else (x0, y0, 0.5)
        expected: Counter = Counter()
        for obj in bank.objects[int(clip)]:
            if not obj.visible[0] <= fid < obj.visible[1]:
                continue
            x1, y1, x2, y2 = obj.boxes[fid - obj.visible[0]] / scale
            cx, cy = ((x1 + x2) / 2 - x0) / side, ((y1 + y2) / 2 - y0) / side
            if side == 1.0 or (0 <= cx <= 1 and 0 <= cy <= 1):
                expected[(obj.colour, obj.shape, place_phrase(place_of(cx, cy)))] += 1
        assert _described(texts[i]) == expected
        # The last round moves exactly one object to a neighbouring place; the others keep theirs.
        lost = _described(texts[i]) - _described(hard[96 + i])
        gained = _described(hard[96 + i]) - _described(texts[i])
        assert len(lost) == len(gained) == 1
        (colour, shape, _), (new_colour, new_shape, _) = next(iter(lost)), next(iter(gained))
        assert (colour, shape) == (new_colour, new_shape)
        checked += 1
    assert checked > 40
    # Without places the descriptions say none.
    _, texts, _ = sampler.frame_batch(16, 2, p_zoom=0.5)
    assert not any(w in t.split() for t in texts for w in ("at", "middle"))


def test_place_captions_follow_each_object_from_its_first_to_its_last_frame() -> None:
    world = ToyWorldConfig()
    bank = build_bank(world, 0, 20, 8, 96, progress=False)
    moved = 0
    for clip in range(len(bank)):
        picks = np.arange(8)
        seen = bank.seen(clip, picks)
        text = place_list(seen, world)
        visible = [o for o in seen if o.visible]
        assert text.count(" , ") == len(visible) - 1
        ids = bank.frame_ids[clip]
        plain = seen_objects(bank.objects[clip], int(bank.num_frames[clip]), ids)
        for source, obj, bare in zip(bank.objects[clip], seen, plain, strict=True):
            assert bare.places == ()  # no frame size, no places
            assert len(obj.places) == sum(source.visible[0] <= f < source.visible[1] for f in ids)
            if obj.visible and obj.places[0] != obj.places[-1]:
                assert f"{place_phrase(obj.places[0])} then {place_phrase(obj.places[-1])}" in text
                moved += 1
    assert moved > 5
    assert CAPTION_TASKS["places"][1] is place_list


# ---------------------------------------------------------------------------------------- model paths


def test_training_path_matches_the_model_and_the_adapter_preprocessing() -> None:
    config = tiny_recipe()
    tokenizer = build_tokenizer()
    model = build_model(config, tokenizer)
    bank = build_bank(config.world, 0, 2, 2, TINY.image_size, progress=False)
    frames = bank.frames[0]  # (2, S, S, 3)
    settings = FramePreprocessing(size=TINY.image_size)
    torch.testing.assert_close(to_pixels(frames), preprocess_frames(frames.numpy(), settings))
    with torch.no_grad():
        ours = video_tokens(model, tower_hidden(model, to_pixels(frames)), 1, 2)
        stock = model.get_video_features(
            pixel_values_videos=to_pixels(frames)[None], return_dict=True
        ).pooler_output
    assert ours.shape == (1, TINY.num_visual(2), TINY.text_hidden)
    torch.testing.assert_close(ours, stock.reshape(ours.shape))


def test_same_seed_gives_the_same_first_stage_loss() -> None:
    def first_losses() -> list[float]:
        config = tiny_recipe(stage1=StageSchedule(3, 16, 3e-3, warmup=1))
        torch.set_num_threads(1)
        tokenizer = build_tokenizer()
        model = build_model(config, tokenizer)
        bank = build_bank(config.world, 0, 12, 2, TINY.image_size, progress=False)
        sampler = Sampler(bank, tokenizer, config.world, config.model, seed=[0, 1])
        held_out = Sampler(bank, tokenizer, config.world, config.model, seed=[0, 2])
        torch.manual_seed(1)
        metrics = stage1_vision(
            model, tokenizer, sampler, held_out, config, lambda record: None, progress=False
        )
        return [metrics["first_loss"], metrics["final_loss"]]

    first, second = first_losses(), first_losses()
    assert first == second
    assert np.isfinite(first).all()


# ---------------------------------------------------------------------------------------- the recipe


@pytest.mark.parametrize("train_vision", [(), ("stage2",), ("stage3",)])
def test_the_tower_trains_in_the_stages_train_vision_names(
    train_vision: tuple[str, ...], tmp_path: Path
) -> None:
    few = StageSchedule(3, 8, 3e-3, warmup=1)
    config = tiny_recipe(
        stage1=few, stage2_projector=few, stage2=few, stage3=few, train_vision=train_vision,
        train_clips=12, eval_clips=6, eval_questions=2,
    )  # fmt: skip
    pretrain(tmp_path, config, progress=False, keep_stages=True)

    def tower(stage: str) -> dict[str, torch.Tensor]:
        state = load_file(str(tmp_path / "stages" / f"{stage}.safetensors"))
        return {k: v for k, v in state.items() if ".vision_tower." in k}

    after = {stage: tower(stage) for stage in ("stage1", "stage2", "stage3")}
    for before, stage in (("stage1", "stage2"), ("stage2", "stage3")):
        moved = any(not torch.equal(after[before][k], after[stage][k]) for k in after[stage])
        assert moved == (stage in train_vision), (stage, train_vision)


class _Payload:
    """Unpickling this creates ``path``: the marker that code from a file ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_stages_resume_from_safetensors_and_a_pickled_stage_is_refused(tmp_path: Path) -> None:
    few = StageSchedule(2, 8, 3e-3, warmup=1)
    config = tiny_recipe(
        stage1=few, stage2_projector=few, stage2=few, stage3=few, train_clips=12, eval_clips=6, eval_questions=2,
    )  # fmt: skip
    first = pretrain(tmp_path, config, progress=False, keep_stages=True)
    stages = tmp_path / "stages"
    assert sorted(p.name for p in stages.iterdir()) == [
        f"{s}.{ext}" for s in ("stage1", "stage2", "stage3") for ext in ("json", "safetensors")
    ]
    weights = load_file(str(tmp_path / "model.safetensors"))
    marker = tmp_path / "ran"
    (stages / "stage1.pt").write_bytes(pickle.dumps({"model": _Payload(marker)}))
    with pytest.warns(UserWarning, match=r"refusing .*stage1\.pt: pickled files are never loaded"):
        again = pretrain(tmp_path, config, progress=False, keep_stages=True)
    assert not marker.exists()
    # Every stage resumed from its safetensors: the same metrics and the same weights.
    assert again["metrics"] == json.loads(json.dumps(first["metrics"]))
    for key, value in load_file(str(tmp_path / "model.safetensors")).items():
        assert torch.equal(value, weights[key]), key


def test_sincos_positions_encode_row_and_column_in_separate_halves() -> None:
    table = sincos_positions(3, 4, 8).reshape(3, 4, 8)
    torch.testing.assert_close(table[:, :1, :4].expand(3, 4, 4), table[..., :4])  # rows: not by column
    torch.testing.assert_close(table[:1, :, 4:].expand(3, 4, 4), table[..., 4:])  # columns: not by row
    torch.testing.assert_close(table[0, 0], torch.tensor([0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0]))
    assert torch.unique(table.reshape(12, 8), dim=0).shape[0] == 12
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_positions(2, 2, 6)


def test_a_sincos_position_table_is_never_trained(tmp_path: Path) -> None:
    few = StageSchedule(3, 8, 3e-3, warmup=1)
    config = tiny_recipe(
        stage1=few, stage2_projector=few, stage2=few, stage3=few, train_vision=("stage2", "stage3"),
        vision_positions="sincos", train_clips=12, eval_clips=6, eval_questions=2,
    )  # fmt: skip
    pretrain(tmp_path, config, progress=False)
    tower = load_adapter(tmp_path).model.model.vision_tower
    side = TINY.patches
    torch.testing.assert_close(
        tower.embeddings.position_embedding.weight, sincos_positions(side, side, TINY.vision_hidden)
    )
    fresh = build_model(tiny_recipe(), build_tokenizer()).model.vision_tower
    assert not torch.equal(tower.embeddings.patch_embedding.weight, fresh.embeddings.patch_embedding.weight)


def test_the_cell_loss_adds_to_the_caption_loss_and_teaches_tokens_their_cell() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    config = tiny_recipe(cell_weight=0.5)
    tokenizer = build_tokenizer()
    model = build_model(config, tokenizer)
    bank = build_bank(config.world, 0, 16, 2, TINY.image_size, progress=False)
    source = VisualSource(model, bank, None)
    sampler = Sampler(bank, tokenizer, config.world, config.model, seed=[0, 2])
    cells = cell_head(model, config, "stage2")
    assert isinstance(cells, CellHead) and cells.cells == TINY.grid[0] * TINY.grid[1] == 9
    assert cell_head(model, tiny_recipe(cell_weight=0.0), "stage2") is None  # no head, no extra draws
    assert cell_head(model, tiny_recipe(cell_weight=0.5, cell_stages=("stage3",)), "stage2") is None

    batch = sampler.caption_batch(4, 1, {"colours": 1.0}, 1)
    with torch.no_grad():
        plain = lm_loss(model, batch, source)
        per_frame = frame_tokens(model, source.hidden(batch.clips, batch.picks))  # (4, 9, D)
        torch.testing.assert_close(
            lm_loss(model, batch, source, cells, 0.5), plain + 0.5 * cells.loss(per_frame)
        )
        first = float(cells.loss(per_frame))
    assert abs(first - np.log(9)) < 0.5  # a fresh head: about chance

    # The projector alone can learn to say which cell each token is (the tower's patches know it).
    frames = torch.from_numpy(np.arange(16))

    def cell_loss(step: int) -> torch.Tensor:
        picks = torch.zeros(8, 1, dtype=torch.long)
        clips = frames[(step * 8 + torch.arange(8)) % 16]
        return cells.loss(frame_tokens(model, source.hidden(clips, picks)))

    model.requires_grad_(False)
    projector = [p for m in projector_modules(model) for p in m.parameters()]
    for param in projector:
        param.requires_grad_(True)
    result = optimise([*projector, *cells.parameters()], StageSchedule(60, 8, 1e-2, warmup=1), cell_loss,
                      "cells", lambda record: None, progress=False)  # fmt: skip
    assert np.mean(result.losses[-5:]) < 0.25 * first


def test_train_vision_refuses_unknown_stages() -> None:
    with pytest.raises(ValueError, match="train_vision takes stage2 and stage3"):
        tiny_recipe(train_vision=("stage1",))
    with pytest.raises(ValueError, match="vision_positions is 'learned' or 'sincos'"):
        tiny_recipe(vision_positions="rope")
    with pytest.raises(ValueError, match=r"stage1_places is a share in \[0, 1\]"):
        tiny_recipe(stage1_places=1.5)
    with pytest.raises(ValueError, match="cell_stages takes stage2 and stage3"):
        tiny_recipe(cell_stages=("stage1",))
    with pytest.raises(ValueError, match="cell_weight must be >= 0"):
        tiny_recipe(cell_weight=-1.0)


def test_short_recipe_learns_colour_questions(trained: tuple[Path, dict, ToyPretrainConfig]) -> None:
    out, recipe, config = trained
    assert recipe["seed"] == 0 and recipe["command"].startswith("stvg toy pretrain --out")
    assert json.loads((out / "evaluation.json").read_text())["checkpoint_mb"] > 0
    assert recipe["metrics"]["stage1"]["final_loss"] < recipe["metrics"]["stage1"]["first_loss"]
    held_out = EvalConfig(
        world=config.world, start=config.eval_start, clips=40, frames=1, per_kind=80, kinds=("colour",)
    )
    scores = evaluate_vqa(out, held_out, progress=False)
    assert scores["count"] == 80
    assert scores["majority_baseline"] == 0.5
    # Clearly above the majority answer, on clips never trained on, through load_adapter.
    assert scores["overall"] >= 0.7, scores
    p = scores["overall"]
    assert scores["stderr/overall"] == pytest.approx(np.sqrt(p * (1 - p) / 80), abs=1e-4)
    assert scores["stderr/hard_negatives"] is None  # colour questions have no hard negatives


def test_binomial_stderr_of_an_accuracy() -> None:
    assert binomial_stderr([True, True, True, False]) == pytest.approx(np.sqrt(0.75 * 0.25 / 4), abs=1e-4)
    assert binomial_stderr([True] * 10) == 0.0
    assert binomial_stderr([]) is None


def test_build_scores_the_same_questions_on_the_training_clips(
    trained: tuple[Path, dict, ToyPretrainConfig],
) -> None:
    out, recipe, _ = trained
    report = json.loads((out / "evaluation.json").read_text())
    held_out = report[f"vqa_{recipe['config']['eval_frames']}_frames"]
    seen = report["seen_clips"]
    trained_on = recipe["config"]
    assert (seen["config"]["start"], seen["config"]["clips"]) == (
        trained_on["train_start"],
        trained_on["train_clips"],
    )
    assert held_out["config"]["start"] == trained_on["eval_start"]
    assert (seen["count"], seen["frames"]) == (held_out["count"], held_out["frames"])
    assert 0.0 <= seen["overall"] <= 1.0


def test_saved_checkpoint_loads_and_runs_on_twenty_frames(
    trained: tuple[Path, dict, ToyPretrainConfig],
) -> None:
    out, _, config = trained
    names = {p.name for p in out.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "preprocessor_config.json",
        "recipe.json",
    } <= names
    assert "stages" not in names and "evaluation.json" in names
    assert json.loads((out / "recipe.json").read_text())["config"]["seed"] == 0
    adapter = load_adapter(out)
    assert adapter.family == "llava_onevision"
    assert adapter.grid_shape == TINY.grid
    clip = toy_clip(generate_one(config.eval_start, config.world), 20)
    prepared = adapter.prepare(clip, "Is there the big red circle in this video?")
    assert prepared.grid_shape == (20, *TINY.grid)
    assert prepared.special_tokens == ["<|im_end|>", "\n", "<|im_start|>", "assistant", "\n"]
    output = adapter.forward(prepared, capture=prepared.capture_config())
    score = adapter.yes_no_score(output)
    assert score.shape == (1,) and torch.isfinite(score).all()
    maps = prepared.to_grid(output.attention.mean())
    assert maps.shape == (5, 20, *TINY.grid)
    assert torch.all(maps >= 0)


# ---------------------------------------------------------------------------------------- token order


def test_reorder_visual_moves_only_the_visual_embeddings(
    trained: tuple[Path, dict, ToyPretrainConfig],
) -> None:
    out, _, config = trained
    adapter = load_adapter(out)
    prepared = adapter.prepare(
        toy_clip(generate_one(config.eval_start, config.world), 4), "Is there a red thing?"
    )
    frames = prepared.visual_grid.reshape(4, -1)  # (T, h * w) sequence positions
    text = torch.ones(prepared.input_ids.shape[1], dtype=torch.bool)
    text[frames.reshape(-1)] = False
    original = prepared.inputs_embeds[0]

    def rows_sorted(x: torch.Tensor) -> torch.Tensor:
        return x[torch.argsort(x[:, 0])]

    generator = torch.Generator().manual_seed(0)
    for mode in ORDER_MODES:
        moved = reorder_visual(prepared, mode, generator).inputs_embeds[0]
        torch.testing.assert_close(moved[text], original[text])
        if mode == "plain":
            torch.testing.assert_close(moved, original)
        elif mode == "shuffle_in_frame":
            for frame in frames:  # the same tokens in each frame, in another order
                torch.testing.assert_close(rows_sorted(moved[frame]), rows_sorted(original[frame]))
            assert not torch.equal(moved, original)
        elif mode == "shuffle_video":
            flat = frames.reshape(-1)
            torch.testing.assert_close(rows_sorted(moved[flat]), rows_sorted(original[flat]))
            assert any(not torch.equal(rows_sorted(moved[f]), rows_sorted(original[f])) for f in frames)
        else:
            for frame in frames:
                mean = original[frame].mean(0, keepdim=True)
                torch.testing.assert_close(moved[frame], mean.expand(len(frame), -1))
    with pytest.raises(ValueError, match="mode must be one of"):
        reorder_visual(prepared, "reverse", generator)


def test_token_order_check_plain_row_is_the_vqa_accuracy(
    trained: tuple[Path, dict, ToyPretrainConfig],
) -> None:
    out, _, config = trained
    held_out = EvalConfig(
        world=config.world, start=config.eval_start, clips=20, frames=1, per_kind=30, kinds=("colour",)
    )
    report = token_order_check(out, held_out, progress=False)
    assert report["count"] == 30 and set(ORDER_MODES) <= set(report)
    assert report["plain"]["overall"] == evaluate_vqa(out, held_out, progress=False)["overall"]
    for mode in ORDER_MODES:
        assert set(report[mode]) == {"overall", "kind/colour"}
        assert 0.0 <= report[mode]["overall"] <= 1.0


def test_token_roles_name_attribute_words_and_count_special_tokens_from_the_end() -> None:
    words = ["is", "there", "the", "big", "red", "circle", "that", "grows", "?", "<|im_end|>", "\n"]
    special = [False] * 9 + [True, True]
    roles = token_roles(words, special)
    assert roles == {
        "is": 0, "there": 1, "the": 2, "size": 3, "colour": 4, "shape": 5, "that": 6, "grows": 7,
        "?": 8, "special-2": 9, "special-1": 10,
    }  # fmt: skip


def test_query_token_check_scores_every_layer_and_token(
    trained: tuple[Path, dict, ToyPretrainConfig],
) -> None:
    out, _, config = trained
    held_out = EvalConfig(world=config.world, start=config.eval_start, frames=2)
    report = query_token_check(out, held_out, clips=6, progress=False)
    assert report["clips"] == 6
    videos = [generate_one(config.eval_start + i, config.world) for i in range(40)]
    used = [v for v in videos if len(v.objects) >= 2][:6]
    assert report["chance"] == pytest.approx(np.mean([1 / len(v.objects) for v in used]), abs=1e-4)
    assert sorted(report["accuracy"]) == list(range(TINY.text_layers))
    for row in report["accuracy"].values():
        assert {"shape", "colour", "special-1", "special-5", "?"} <= set(row)
        assert all(0 <= rate <= 1 for rate in row.values())
        for role in ("shape", "special-1"):  # asked in all 6 clips: hits / 6
            assert row[role] == pytest.approx(round(row[role] * 6) / 6, abs=1e-4)
    best = report["best"]
    assert best["rate"] == report["accuracy"][best["layer"]][best["token"]]


def test_question_case_names_the_error_breakdown() -> None:
    def seen(colour: str, shape: str, size: str, *actions: str) -> SeenObject:
        return SeenObject(colour, shape, size, True, frozenset(actions), frozenset())

    objects = [
        seen("red", "circle", "small", "grow"),
        seen("blue", "square", "big"),
        seen("red", "square", "big"),
    ]

    def case(answer: bool, hard: bool, **desc: str) -> str:
        return question_case(Question("?", answer, "attr2", hard, Description(**desc)), objects)

    assert case(True, False, colour="red", shape="circle") == "positive_small"
    assert case(True, False, shape="square") == "positive_big"
    assert case(True, False, colour="red") == "positive_both"
    assert case(True, False, colour="red", action="grow") == "positive_small"
    assert case(False, True, colour="red", shape="circle", action="shrink") == "negative_other_action"
    assert case(False, True, colour="blue", shape="circle") == "negative_near_miss"
    assert case(False, False, colour="white", shape="diamond") == "negative_easy"
