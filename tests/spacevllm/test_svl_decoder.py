"""The query-guided space decoder: shapes, a hand-computed case, a loop reference, the ablation flag."""

from __future__ import annotations

import math

import pytest
import torch

from spacevllm.config import SpaceVLLMConfig
from spacevllm.decoder import QueryGuidedSpaceDecoder, SpaceHead, attention_position, grid_codes


def _config(**overrides: object) -> SpaceVLLMConfig:
    settings: dict[str, object] = {"num_frames": 4, "head_hidden": 8, "head_layers": 3}
    settings.update(overrides)
    return SpaceVLLMConfig(**settings)  # type: ignore[arg-type]


def _reference(
    decoder: QueryGuidedSpaceDecoder,
    hidden: torch.Tensor,
    visual: torch.Tensor,
    query: torch.Tensor,
    caption: torch.Tensor,
    caption_mask: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's equations written as loops over rows, frames and tokens: (decoded, boxes)."""
    s = decoder.scale
    b_size, t_size, p_size = visual.shape
    decoded = torch.zeros(b_size, t_size, hidden.shape[-1])
    for b in range(b_size):
        e = [hidden[b, int(c)] for c, ok in zip(caption[b], caption_mask[b], strict=True) if ok]
        for t in range(t_size):
            enhanced = []
            for p in range(p_size):
                v = hidden[b, int(visual[b, t, p])]
                scores = torch.stack([torch.dot(v, ec) * s for ec in e])
                w = torch.softmax(scores, 0)
                enhanced.append(v + sum(w[i] * e[i] for i in range(len(e))))
            q = hidden[b, int(query[b, t])]
            a = torch.softmax(torch.stack([torch.dot(q, ve) * s for ve in enhanced]), 0)
            decoded[b, t] = q + sum(a[p] * enhanced[p] for p in range(p_size))
    return decoded, decoder.head(decoded)


def _inputs(seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(2, 30, 6, generator=g)
    visual = torch.tensor(
        [[[0, 1, 2, 3], [5, 6, 7, 8], [10, 11, 12, 13]], [[1, 2, 3, 4], [6, 7, 8, 9], [11, 12, 13, 14]]]
    )
    query = torch.tensor([[4, 9, 14], [5, 10, 15]])
    caption = torch.tensor([[20, 21, 22], [25, 26, 0]])
    caption_mask = torch.tensor([[True, True, True], [True, True, False]])
    return hidden, visual, query, caption, caption_mask


def test_decoder_shapes_and_box_range() -> None:
    torch.manual_seed(0)
    decoder = QueryGuidedSpaceDecoder(6, _config())
    hidden, visual, query, caption, mask = _inputs()
    out = decoder(hidden, visual, query, caption, mask)
    assert out.boxes.shape == (2, 3, 4)
    assert out.query_states.shape == out.decoded.shape == (2, 3, 6)
    assert out.query_attention is not None and out.query_attention.shape == (2, 3, 4)
    assert bool(((out.boxes > 0) & (out.boxes < 1)).all())
    torch.testing.assert_close(out.query_attention.sum(-1), torch.ones(2, 3))
    torch.testing.assert_close(out.query_states, hidden[torch.arange(2)[:, None], query])


def test_decoder_matches_the_loop_reference() -> None:
    torch.manual_seed(0)
    decoder = QueryGuidedSpaceDecoder(6, _config())
    hidden, visual, query, caption, mask = _inputs()
    out = decoder(hidden, visual, query, caption, mask)
    decoded, boxes = _reference(decoder, hidden, visual, query, caption, mask)
    torch.testing.assert_close(out.decoded, decoded)
    torch.testing.assert_close(out.boxes, boxes)


def test_decoder_hand_computed_case() -> None:
    # D = 2, scale 1, one caption token e = (1, 1): every visual token's caption weight is 1, so
    # V' = V + e = [[2, 1], [1, 2]]; the query q = (1, 0) scores V' with (2, 1):
    # a = (e/(e+1), 1/(e+1)) and S = q + a0 (2, 1) + a1 (1, 2).
    decoder = QueryGuidedSpaceDecoder(2, _config(attention_scale=1.0, head_hidden=4))
    hidden = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]])
    out = decoder(hidden, torch.tensor([[[0, 1]]]), torch.tensor([[2]]), torch.tensor([[3]]))
    e = math.e
    expected = torch.tensor([[[1 + (2 * e + 1) / (e + 1), (e + 2) / (e + 1)]]])
    torch.testing.assert_close(out.decoded, expected)
    assert out.query_attention is not None
    torch.testing.assert_close(out.query_attention, torch.tensor([[[e / (e + 1), 1 / (e + 1)]]]))


def test_padded_caption_tokens_are_ignored() -> None:
    torch.manual_seed(0)
    decoder = QueryGuidedSpaceDecoder(6, _config())
    hidden, visual, query, caption, mask = _inputs()
    before = decoder(hidden, visual, query, caption, mask)
    changed = hidden.clone()
    changed[1, 0] = 1e3  # row 1's padded caption slot points at position 0, used by nothing else in row 1
    after = decoder(changed, visual, query, caption, mask)
    torch.testing.assert_close(after.decoded[1], before.decoded[1])


def test_without_dual_cross_attention_the_head_reads_the_queries() -> None:
    torch.manual_seed(0)
    decoder = QueryGuidedSpaceDecoder(6, _config(dual_cross_attention=False))
    hidden, visual, query, caption, mask = _inputs()
    out = decoder(hidden, visual, query, caption, mask)
    states = hidden[torch.arange(2)[:, None], query]
    torch.testing.assert_close(out.decoded, states)
    torch.testing.assert_close(out.boxes, decoder.head(states))
    assert out.query_attention is None


def test_space_head_is_a_relu_mlp_with_sigmoid() -> None:
    torch.manual_seed(0)
    head = SpaceHead(3, 5, 2)
    x = torch.randn(7, 3)
    first, second = head.layers
    torch.testing.assert_close(head(x), torch.sigmoid(second(torch.relu(first(x)))))
    assert len(SpaceHead(3, 5, 1).layers) == 1


def test_attention_position_of_one_hot_and_uniform_rows() -> None:
    grid = (2, 3)
    one_hot = torch.zeros(6)
    one_hot[5] = 1.0  # row 1, column 2
    torch.testing.assert_close(attention_position(one_hot, grid), torch.tensor([5 / 6, 3 / 4, 1e-3, 1e-3]))
    # A one-hot row is where attention ends up when it is sharp: its gradient must stay finite.
    logits = torch.zeros(6, requires_grad=True)
    attention_position((logits + 50.0 * one_hot).softmax(-1), grid).sum().backward()
    assert torch.isfinite(logits.grad).all()
    uniform = torch.full((6,), 1 / 6)
    cx, cy, sx, sy = attention_position(uniform, grid).tolist()
    xs, ys = torch.tensor([1 / 6, 3 / 6, 5 / 6]), torch.tensor([1 / 4, 3 / 4])
    assert cx == pytest.approx(0.5) and cy == pytest.approx(0.5)
    assert sx == pytest.approx((((xs - 0.5) ** 2).mean() + 1e-6).sqrt().item())
    assert sy == pytest.approx((((ys - 0.5) ** 2).mean() + 1e-6).sqrt().item())
    with pytest.raises(ValueError, match="does not fit"):
        attention_position(uniform, (4, 4))


def test_position_cue_is_appended_to_what_the_head_reads() -> None:
    torch.manual_seed(0)
    b, t, h, w, d = 2, 3, 2, 2, 8
    config = SpaceVLLMConfig(position_cue=True)
    decoder = QueryGuidedSpaceDecoder(d, config, grid=(h, w))
    assert decoder.head.layers[0].in_features == d + 4
    hidden = torch.randn(b, 30, d)
    visual = torch.arange(t * h * w).view(1, t, h * w).expand(b, -1, -1)
    queries = torch.tensor([[12, 13, 14]]).expand(b, -1)
    caption = torch.tensor([[20, 21, 22]]).expand(b, -1)
    out = decoder(hidden, visual, queries, caption)
    assert out.decoded.shape == (b, t, d + 4) and out.boxes.shape == (b, t, 4)
    torch.testing.assert_close(out.decoded[..., d:], attention_position(out.query_attention, (h, w)))
    with pytest.raises(ValueError, match="grid"):
        QueryGuidedSpaceDecoder(d, config)
    with pytest.raises(ValueError, match="position_cue needs dual_cross_attention"):
        SpaceVLLMConfig(position_cue=True, dual_cross_attention=False)


def test_grid_codes_are_fixed_distinct_and_unit_size() -> None:
    codes = grid_codes((6, 6), 128)
    assert codes.shape == (36, 128) and codes.dtype == torch.float32
    assert codes.pow(2).mean().item() == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(codes, grid_codes((6, 6), 128))  # no randomness
    distance = torch.cdist(codes, codes) + torch.eye(36) * 1e9
    assert distance.min().item() > 1.0  # every cell has its own code
    # x in the first half, y in the second: cells of one column share the x half
    torch.testing.assert_close(codes[0, :64], codes[6, :64])
    assert not torch.allclose(codes[0, 64:], codes[6, 64:])
    # a width that is not a multiple of 4 pads with zeros
    odd = grid_codes((2, 3), 10)
    assert odd.shape == (6, 10) and torch.count_nonzero(odd[:, 8:]) == 0


def test_position_codes_enter_the_keys_and_values_and_add_no_parameter() -> None:
    torch.manual_seed(0)
    b, t, h, w, d = 2, 3, 2, 2, 8
    plain = QueryGuidedSpaceDecoder(d, SpaceVLLMConfig(), grid=(h, w))
    coded = QueryGuidedSpaceDecoder(d, SpaceVLLMConfig(position_codes=True), grid=(h, w))
    assert sum(p.numel() for p in coded.parameters()) == sum(p.numel() for p in plain.parameters())
    assert "codes" not in coded.state_dict()  # rebuilt from the grid, never saved
    coded.load_state_dict(plain.state_dict())
    hidden = torch.randn(b, 30, d)
    visual = torch.arange(t * h * w).view(1, t, h * w).expand(b, -1, -1)
    queries = torch.tensor([[12, 13, 14]]).expand(b, -1)
    caption = torch.tensor([[20, 21, 22]]).expand(b, -1)
    out = coded(hidden, visual, queries, caption)

    # by hand: step 1 as without codes, then keys and values V' + rms(V') * P
    v = hidden[:, :12].view(b, t, h * w, d)
    c = hidden[:, 20:23]
    scale = 1 / d**0.5
    enhanced = v + torch.softmax(v @ c.transpose(-1, -2)[:, None] * scale, -1) @ c[:, None]
    rms = enhanced.pow(2).mean(dim=(-2, -1), keepdim=True).sqrt()
    keys = enhanced + grid_codes((h, w), d) * rms
    q = hidden[:, 12:15]
    weights = torch.softmax((q.unsqueeze(-2) @ keys.transpose(-1, -2)).squeeze(-2) * scale, -1)
    expected = q + (weights.unsqueeze(-2) @ keys).squeeze(-2)
    torch.testing.assert_close(out.decoded, expected)
    torch.testing.assert_close(out.query_attention, weights)
    assert not torch.allclose(out.boxes, plain(hidden, visual, queries, caption).boxes)
    with pytest.raises(ValueError, match="position_codes needs dual_cross_attention"):
        SpaceVLLMConfig(position_codes=True, dual_cross_attention=False)
    with pytest.raises(ValueError, match="grid"):
        QueryGuidedSpaceDecoder(d, SpaceVLLMConfig(position_codes=True))
