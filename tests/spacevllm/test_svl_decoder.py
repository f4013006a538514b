"""The query-guided space decoder: shapes, a hand-computed case, a loop reference, the ablation flag."""

from __future__ import annotations

import math

import torch

from spacevllm.config import SpaceVLLMConfig
from spacevllm.decoder import QueryGuidedSpaceDecoder, SpaceHead


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
