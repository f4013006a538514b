"""Query tokens in the vocabulary, the interleaved layout, and the input embeddings."""

from __future__ import annotations

import numpy as np
import torch

from spacevllm.collate import SimpleRecord
from spacevllm.config import SpaceVLLMConfig
from spacevllm.model import SpaceVLLM
from spacevllm.prompt import answer_text
from spacevllm.queries import INIT_NOISE, add_query_tokens
from zsgrounding.assets import TOY_MLLM

CAPTION = "the red circle moving left"
P = 16  # 4 x 4 visual tokens per frame


def _record(task: str = "stvg", **kw: object) -> SimpleRecord:
    settings: dict[str, object] = {"width": 80, "height": 60, "fps": 10.0, "num_frames": 40}
    settings.update(kw)
    return SimpleRecord(task=task, id="r", media="", query=CAPTION, **settings)  # type: ignore[arg-type]


def test_query_tokens_are_added_once_near_the_vocabulary_mean_and_apart(base_adapter, svl_config) -> None:
    adapter = base_adapter()
    model, tokenizer = adapter.model, adapter.tokenizer
    previous = len(tokenizer)
    table = model.get_input_embeddings().weight
    mean = table[:previous].detach().mean(0)
    out_mean = model.get_output_embeddings().weight[:previous].detach().mean(0)  # untied here
    config = svl_config()
    tokens = add_query_tokens(model, tokenizer, config)
    assert tokenizer.convert_ids_to_tokens(list(tokens.all_ids)) == [
        "<stq_0>", "<stq_1>", "<stq_2>", "<stq_3>", "<srq>"
    ]  # fmt: skip
    assert list(tokens.all_ids) == list(range(previous, previous + 5))
    table = model.get_input_embeddings().weight
    assert table.shape[0] == previous + 5
    std = table[:previous].detach().std(0)
    out_std = model.get_output_embeddings().weight[:previous].detach().std(0)
    added = list(tokens.all_ids)
    for rows, centre, spread in (
        (table[added], mean, std),
        (model.get_output_embeddings().weight[added], out_mean, out_std),
    ):
        # near the mean: within 5 standard deviations of transformers' mean-resizing noise
        # (sqrt(1e-5) of the vocabulary's own spread per dimension) ...
        assert ((rows.detach() - centre).abs() <= 5 * INIT_NOISE * spread + 1e-7).all()
        # ... and apart: no two rows alike, so no two logits tie
        assert torch.cdist(rows.detach(), rows.detach()).fill_diagonal_(1.0).min() > 0
    # deterministic: the same start for the same row, whatever else was added
    fresh = base_adapter()
    add_query_tokens(fresh.model, fresh.tokenizer, config)
    torch.testing.assert_close(fresh.model.get_input_embeddings().weight[added], table[added], rtol=0, atol=0)
    # Trained rows survive a second call (a reload): same ids, nothing re-initialised.
    with torch.no_grad():
        table[tokens.video_ids[1]] += 1.0
    trained = table.detach().clone()
    again = add_query_tokens(model, tokenizer, config)
    assert again == tokens
    torch.testing.assert_close(model.get_input_embeddings().weight, trained)
    # The tokens are special: never split, skipped when decoding.
    ids = tokenizer("<stq_2>left", add_special_tokens=False)["input_ids"]
    assert ids[0] == tokens.video_ids[2]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "left"


def test_shared_query_token(base_adapter, svl_config, make_model, make_clip) -> None:
    adapter = base_adapter()
    tokens = add_query_tokens(adapter.model, adapter.tokenizer, svl_config(query_tokens="shared"))
    assert tokens.shared and len(tokens.video_ids) == 1
    assert adapter.tokenizer.convert_ids_to_tokens(tokens.video_ids[0]) == "<stq>"
    assert tokens.for_frames(3) == [tokens.video_ids[0]] * 3
    assert tokens.for_frames(1, image=True) == [tokens.image_id]
    # One token serves any number of frames (here more than num_frames).
    model = make_model(query_tokens="shared")
    batch = model.collator()([(_record(span=(1.0, 3.0)), make_clip(num_frames=6))])
    ids = batch.input_ids[0, batch.query_positions[0]]
    assert ids.tolist() == [model.adapter.query_tokens.video_ids[0]] * 6
    assert model(batch).boxes.shape == (1, 6, 4)


def test_interleaved_layout(make_model, make_clip) -> None:
    model = make_model()
    batch = model.collator()([(_record(span=(1.0, 3.0)), make_clip())])
    ids, visual, query = batch.input_ids[0], batch.visual_positions[0], batch.query_positions[0]
    video_id = model.adapter.video_token_id
    assert visual.shape == (4, P)
    for t in range(4):
        block = visual[t]
        assert torch.equal(block, torch.arange(int(block[0]), int(block[0]) + P))  # frame t is contiguous
        assert int(query[t]) == int(block[-1]) + 1  # its query right after it
        if t < 3:
            assert int(visual[t + 1, 0]) == int(query[t]) + 1  # then the next frame
    assert ids[visual.reshape(-1)].eq(video_id).all()
    assert ids[query].tolist() == list(model.adapter.query_tokens.video_ids)
    # One newline token after the last query, then the text.
    assert int(ids[int(query[-1]) + 1]) == video_id
    assert int((ids == video_id).sum()) == 4 * P + 1
    assert model.tokenizer.decode(ids[batch.caption_positions[0]]) == CAPTION


def test_appended_layout_puts_all_queries_after_the_video(make_model, make_clip) -> None:
    model = make_model(interleave=False)
    batch = model.collator()([(_record(span=(1.0, 3.0)), make_clip())])
    ids, visual, query = batch.input_ids[0], batch.visual_positions[0], batch.query_positions[0]
    start = int(visual[0, 0])
    torch.testing.assert_close(visual, torch.arange(start, start + 4 * P).reshape(4, P))
    newline = start + 4 * P
    assert int(ids[newline]) == model.adapter.video_token_id
    torch.testing.assert_close(query, torch.arange(newline + 1, newline + 5))
    assert ids[query].tolist() == list(model.adapter.query_tokens.video_ids)


def test_caption_first_puts_the_instruction_before_the_video(make_model, make_clip) -> None:
    model = make_model(caption_first=True)
    batch = model.collator()([(_record(span=(1.0, 3.0)), make_clip())])
    ids, visual, query = batch.input_ids[0], batch.visual_positions[0], batch.query_positions[0]
    caption = batch.caption_positions[0]
    assert model.tokenizer.decode(ids[caption]) == CAPTION
    assert int(caption.max()) < int(visual.min())  # every query can attend to the caption
    assert int(query[0]) == int(visual[0, -1]) + 1  # still interleaved
    out = model(batch)
    assert out.boxes.shape == (1, 4, 4) and torch.isfinite(out.loss)


def test_perturbing_one_frame_changes_only_its_visual_positions(make_model, make_clip) -> None:
    model = make_model()
    clip = make_clip()
    collate = model.collator()
    batch = collate([(_record(span=(1.0, 3.0)), clip)])
    frames = clip.frames.copy()
    frames[2] = 255 - frames[2]
    other = collate([(_record(span=(1.0, 3.0)), type(clip)(frames, *_rest(clip)))])
    with torch.no_grad():
        a, b = model.embed(batch)[0], model.embed(other)[0]
    changed = (a - b).abs().amax(-1) > 0
    expected = torch.zeros_like(changed)
    expected[batch.visual_positions[0, 2]] = True
    assert torch.equal(changed, expected)
    # Query positions hold their own embedding rows; frames hold the model's video features.
    table = model.base.get_input_embeddings().weight
    torch.testing.assert_close(a[batch.query_positions[0]], table[list(model.adapter.query_tokens.video_ids)])
    with torch.no_grad():
        pixels = model.adapter.preprocess(clip.frames)[None]
        features = model.base.get_video_features(pixel_values_videos=pixels, return_dict=True)
    features = features.pooler_output[0]
    torch.testing.assert_close(a[batch.visual_positions[0].reshape(-1)], features[:-1])


def _rest(clip):  # the Clip fields after frames
    return clip.frame_ids, clip.times, clip.fps, clip.num_frames, clip.width, clip.height


def test_an_image_is_one_frame_followed_by_the_image_query(make_model, make_clip) -> None:
    model = make_model()
    clip = make_clip(num_frames=1)
    clip.frame_ids = np.array([0])
    clip.times = np.array([0.0])
    batch = model.collator()([(_record("rec", boxes={0: [10, 10, 30, 40]}), clip)])
    assert batch.query_positions.shape == (1, 1)
    q = int(batch.query_positions[0, 0])
    assert int(batch.input_ids[0, q]) == model.adapter.query_tokens.image_id
    assert q == int(batch.visual_positions[0, 0, -1]) + 1


def test_a_word_level_vocabulary_gets_the_answer_tokens_it_lacks(make_model, tmp_path) -> None:
    # The shipped toy MLLM's word-level tokenizer has no numbers: "1.50" was its unknown token.
    model = SpaceVLLM.from_base(TOY_MLLM, SpaceVLLMConfig(num_frames=4))
    tokenizer, tokens = model.adapter.tokenizer, model.adapter.query_tokens
    added = tokenizer.convert_ids_to_tokens(list(tokens.answer_ids))
    assert set("0123456789") <= set(added) and "seconds" in added
    ids = tokenizer(answer_text(1.5, 12.25), add_special_tokens=False)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    table = model.base.get_input_embeddings().weight
    # near the queries' start (both near the vocabulary mean), and no two alike: distinct logits
    answer_rows = table[list(tokens.answer_ids)].detach()
    torch.testing.assert_close(
        answer_rows, table[list(tokens.all_ids)][:1].detach().expand(12, -1), rtol=0, atol=0.05
    )
    assert torch.cdist(answer_rows, answer_rows).fill_diagonal_(1.0).min() > 0
    assert set(tokens.new_rows) == {*tokens.all_ids, *tokens.answer_ids}
    model.save_pretrained(tmp_path / "svl")
    again = SpaceVLLM.from_pretrained(tmp_path / "svl")
    assert again.adapter.query_tokens.answer_ids == tokens.answer_ids  # recognised, not re-added
    # A tokenizer that spells numbers (the test fixture's, like every real one) gets nothing.
    assert make_model().adapter.query_tokens.answer_ids == ()
