"""The SpaceVLLM grounder on a toy-world video with a tiny random model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spacevllm.collate import SimpleRecord
from spacevllm.infer import SpaceVLLMGrounder, SpaceVLLMGrounderConfig, join_spelled_numbers
from spacevllm.prompt import ParsedSpan, parse_span
from zsgrounding.boxes import cxcywh_norm_to_xyxy
from zsgrounding.errors import STVGError
from zsgrounding.runner import Grounder
from zsgrounding.toy.world import ToyVideo, generate_one, make_dataset, object_tracks
from zsgrounding.video import sample_uniform

# Toy video 0: 54 frames at 10 fps, 128 x 96. Four uniform samples: native 6, 20, 33, 47 (0.6,
# 2.0, 3.3, 4.7 s); sampled frames 1..2 stand for native [13, 40).


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ToyVideo]:
    out = tmp_path_factory.mktemp("svl_toy")
    make_dataset(out, 1, progress=False)
    video = generate_one(0)
    return out / "videos" / video.key, video


def test_ground_returns_a_tube_inside_the_video(make_model, toy) -> None:
    path, video = toy
    grounder = SpaceVLLMGrounder(make_model())
    assert isinstance(grounder, Grounder)
    result = grounder.ground(path, video.caption)
    tube = result.tube
    assert 0 <= tube.start < tube.end <= video.num_frames
    assert tube.frame_ids.tolist() == list(range(tube.start, tube.end))
    assert bool((tube.boxes[:, [0, 2]] >= 0).all() and (tube.boxes[:, [0, 2]] <= video.width).all())
    assert bool((tube.boxes[:, [1, 3]] >= 0).all() and (tube.boxes[:, [1, 3]] <= video.height).all())
    assert result.evidence is not None and result.evidence.shape == (4, 4, 4)
    assert result.sampled_frame_ids.tolist() == [6, 20, 33, 47]
    extras = result.extras
    assert {"answer", "parse_ok", "parse_problem", "span_seconds", "span_sampled", "timings"} <= set(extras)
    if not extras["parse_ok"]:  # a random model rarely writes a span: the whole video
        assert (tube.start, tube.end) == (0, video.num_frames)
        assert extras["parse_problem"]


def test_answer_span_selects_the_frames_and_their_boxes(make_model, toy, monkeypatch) -> None:
    path, video = toy
    grounder = SpaceVLLMGrounder(make_model())
    seen = {}

    def answer(out, batch) -> str:
        seen["boxes"] = out.boxes[0].numpy()
        return "The event lasts from 1.95s to 3.35s."

    monkeypatch.setattr(grounder, "generate_answer", answer)
    result = grounder.ground(path, video.caption)
    assert result.extras["parse_ok"] and result.extras["span_sampled"] == (1, 2)
    assert (result.tube.start, result.tube.end) == (13, 40)
    predicted = np.clip(cxcywh_norm_to_xyxy(seen["boxes"], 128, 96), 0, [128, 96, 128, 96])
    np.testing.assert_allclose(result.tube.boxes_at([20, 33]), predicted[[1, 2]])
    np.testing.assert_allclose(result.tube.boxes_at([13]), predicted[[1]])  # held before the first
    np.testing.assert_allclose(result.tube.boxes_at([26]), (predicted[[1]] * 7 + predicted[[2]] * 6) / 13)
    # Evidence is rendered inside the span only.
    assert result.evidence is not None
    assert float(result.evidence[[0, 3]].sum()) == 0.0 and float(result.evidence[1].sum()) > 0


def test_tracks_are_followed_when_given(make_model, toy, monkeypatch) -> None:
    path, video = toy
    tracks = object_tracks(video)
    grounder = SpaceVLLMGrounder(make_model())
    monkeypatch.setattr(grounder, "generate_answer", lambda out, batch: "From 1.95 to 3.35 seconds.")
    result = grounder.ground(path, video.caption, tracks=tracks)
    assert result.track_scores is not None and result.track_scores.shape == (len(tracks),)
    assert result.extras["snapped"]
    best = int(np.argmax(result.track_scores))
    assert result.chosen_track == best
    assert (result.tube.start, result.tube.end) == (13, 40)
    inside = [f for f in range(13, 40) if f in set(tracks[best].frame_ids.tolist())]
    np.testing.assert_allclose(result.tube.boxes_at(inside), tracks[best].boxes_at(inside))
    off = SpaceVLLMGrounder(make_model(), SpaceVLLMGrounderConfig(snap_to_tracks=False))
    monkeypatch.setattr(off, "generate_answer", lambda out, batch: "From 1.95 to 3.35 seconds.")
    assert off.ground(path, video.caption, tracks=tracks).chosen_track is None


def test_cached_greedy_answer_equals_recomputing_every_step(make_model, toy) -> None:
    path, video = toy
    model = make_model()
    grounder = SpaceVLLMGrounder(model)
    clip = sample_uniform(path, 4)
    record = SimpleRecord(
        "stvg", "t", path, video.caption, clip.width, clip.height, clip.fps, clip.num_frames
    )
    batch = grounder.collate([(record, clip)])
    with torch.no_grad():
        out = model(batch, use_cache=True, next_token_logits=True)
        text = grounder.generate_answer(out, batch)
        embeds = model.embed(batch)
        table, head = model.base.get_input_embeddings(), model.base.get_output_embeddings()
        banned = list(model.adapter.query_tokens.all_ids)
        stops = {model.adapter.stop_id, model.tokenizer.eos_token_id}
        tokens: list[int] = []
        for _ in range(model.config.max_new_tokens):
            x = torch.cat([embeds, table(torch.tensor([tokens], dtype=torch.long))], dim=1)
            logits = head(model.base.model(inputs_embeds=x).last_hidden_state[:, -1])
            logits[:, banned] = float("-inf")
            token = int(logits.argmax(-1))
            if token in stops:
                break
            tokens.append(token)
    assert tokens, "the random model should say something"
    assert text == model.tokenizer.decode(tokens, skip_special_tokens=True).strip()


def test_ground_sample_is_the_runner_protocol(make_model, toy) -> None:
    path, video = toy
    grounder = SpaceVLLMGrounder(make_model())
    result = grounder.ground_sample(video.to_sample(path))
    assert 0 <= result.tube.start <= result.tube.end <= video.num_frames
    with pytest.raises(STVGError, match="empty query"):
        grounder.ground(path, "  ")


def test_spelled_numbers_are_joined_back() -> None:
    text = "from 1 . 5 0 to 1 2 . 2 5 seconds ."
    assert join_spelled_numbers(text) == "from 1.50 to 12.25 seconds ."
    assert parse_span(join_spelled_numbers(text), 20.0) == ParsedSpan(1.5, 12.25, ok=True)
    assert join_spelled_numbers("From 2.40 to 5.10 seconds.") == "From 2.40 to 5.10 seconds."
