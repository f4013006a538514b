"""SpaceVLLM forward: outputs, the losses against the base model's own, gradients, save / reload."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from spacevllm.collate import SimpleRecord, SpaceVLLMBatch
from spacevllm.config import SpaceVLLMConfig
from spacevllm.model import SpaceVLLM

CAPTION = "the red circle moving left"
BOX = [10.0, 10.0, 40.0, 30.0]


def _batch(model: SpaceVLLM, make_clip) -> SpaceVLLMBatch:
    record = SimpleRecord(
        task="stvg",
        id="a",
        media="",
        query=CAPTION,
        width=80,
        height=60,
        fps=10.0,
        num_frames=40,
        span=(1.0, 3.0),
        boxes={f: BOX for f in range(10, 30)},
    )
    vtg = SimpleRecord("vtg", "b", "", "the blue square", 80, 60, 10.0, 40, (0.0, 2.0))
    return model.collator()([(record, make_clip(seed=1)), (vtg, make_clip(seed=2))])


def test_forward_outputs_and_losses(make_model, make_clip) -> None:
    model = make_model()
    batch = _batch(model, make_clip)
    out = model(batch)
    assert out.boxes.shape == (2, 4, 4)
    assert out.query_states.shape == out.decoded.shape == (2, 4, 64)
    assert out.query_attention is not None and out.query_attention.shape == (2, 4, 16)
    assert out.last_hidden_state.shape == (*batch.input_ids.shape, 64)
    assert out.losses.num_boxes == 2
    assert out.losses.num_answer_tokens == int((batch.labels != -100).sum())
    assert torch.isfinite(out.loss)
    cfg = model.config
    expected = out.losses.lm + cfg.l1_weight * out.losses.l1 + cfg.giou_weight * out.losses.giou
    torch.testing.assert_close(out.loss, expected)


def test_lm_loss_equals_the_base_models_full_logit_loss(make_model, make_clip) -> None:
    model = make_model()
    batch = _batch(model, make_clip)
    with torch.no_grad():
        out = model(batch)
        embeds = model.embed(batch)
        reference = model.base(inputs_embeds=embeds, attention_mask=batch.attention_mask, labels=batch.labels)
    torch.testing.assert_close(out.lm_loss, reference.loss)


def test_decoder_reads_the_query_states_of_the_language_model(make_model, make_clip) -> None:
    model = make_model(dual_cross_attention=False)
    batch = _batch(model, make_clip)
    with torch.no_grad():
        out = model(batch)
    rows = torch.arange(2)[:, None]
    states = out.last_hidden_state[rows, batch.query_positions]
    torch.testing.assert_close(out.query_states, states)
    torch.testing.assert_close(out.boxes, model.decoder.head(states))
    assert out.query_attention is None


def test_gradients_reach_query_embeddings_and_decoder(make_model, make_clip) -> None:
    model = make_model()
    model.train()
    batch = _batch(model, make_clip)
    model(batch).loss.backward()
    grad = model.base.get_input_embeddings().weight.grad
    assert grad is not None
    tokens = model.adapter.query_tokens
    for i in tokens.video_ids:
        assert float(grad[i].abs().sum()) > 0
    assert float(grad[tokens.image_id].abs().sum()) == 0  # no image in this batch
    assert float(grad[model.tokenizer.convert_tokens_to_ids("cat")].abs().sum()) == 0
    for name, p in model.decoder.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
    projector = next(model.base.model.multi_modal_projector.parameters())
    assert projector.grad is not None and float(projector.grad.abs().sum()) > 0


def test_appended_queries_ablation_runs(make_model, make_clip) -> None:
    model = make_model(interleave=False)
    out = model(_batch(model, make_clip))
    assert out.boxes.shape == (2, 4, 4) and torch.isfinite(out.loss)


def test_save_and_reload_give_identical_outputs(svl_base_dir: Path, svl_config, make_clip, tmp_path) -> None:
    torch.manual_seed(0)
    model = SpaceVLLM.from_base(svl_base_dir, svl_config())
    assert model.config.base_model == str(svl_base_dir)
    # Stand-in for training: query rows and the head move away from their initial values.
    with torch.no_grad():
        table = model.base.get_input_embeddings().weight
        table[list(model.adapter.query_tokens.all_ids)] += torch.randn(5, table.shape[1])
        for p in model.decoder.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    batch = _batch(model, make_clip)
    with torch.no_grad():
        before = model(batch)
    model.save_pretrained(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "space_decoder.safetensors").is_file()
    assert (tmp_path / "ckpt" / "spacevllm_config.json").is_file()
    reloaded = SpaceVLLM.from_pretrained(tmp_path / "ckpt")
    assert reloaded.config == model.config
    assert reloaded.adapter.query_tokens == model.adapter.query_tokens
    assert reloaded.adapter.preprocessing == model.adapter.preprocessing
    batch_again = _batch(reloaded, make_clip)
    torch.testing.assert_close(batch_again.input_ids, batch.input_ids, rtol=0, atol=0)
    with torch.no_grad():
        after = reloaded(batch_again)
    torch.testing.assert_close(after.boxes, before.boxes, rtol=0, atol=0)
    torch.testing.assert_close(after.loss, before.loss, rtol=0, atol=0)
    torch.testing.assert_close(after.last_hidden_state, before.last_hidden_state, rtol=0, atol=0)


def test_config_json_round_trip(tmp_path) -> None:
    config = SpaceVLLMConfig(num_frames=8, num_frames_infer=6, interleave=False, l1_weight=3.0)
    config.save(tmp_path)
    assert SpaceVLLMConfig.load(tmp_path) == config
    with pytest.raises(ValueError, match="num_frame"):
        SpaceVLLMConfig.from_dict({"num_frame": 3})
    with pytest.raises(ValueError, match="query tokens"):
        SpaceVLLMConfig(num_frames=4, num_frames_infer=5)
