"""Tests of zsgrounding.attention on tiny real-class models with random weights."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import (
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    Qwen2Config,
    Qwen2ForCausalLM,
    SiglipVisionConfig,
)

from zsgrounding.attention import (
    CAPTURE_ATTN_IMPLEMENTATION,
    AttentionCapture,
    CaptureConfig,
    capture_attention,
    relative_attention,
)

SEQ_LEN = 24
PAD = 3  # left padding of the second batch element
N_LAYERS = 4
N_HEADS = 4
VIDEO_TOKEN = 99
N_FRAMES = 3
# 32 px frames, 8 px patches -> 4 x 4 grid, pooled to 2 x 2, plus one newline token per video.
N_VIDEO_TOKENS = N_FRAMES * 4 + 1
VIDEO_START = 6
VISUAL = list(range(VIDEO_START, VIDEO_START + N_VIDEO_TOKENS))
QUERY_ROWS = [-2, -1, 20]  # negative rows count from the end (left padding keeps ends aligned)


def _text_config() -> Qwen2Config:
    return Qwen2Config(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=N_LAYERS,
        num_attention_heads=N_HEADS,
        num_key_value_heads=2,  # GQA: two query heads per kv head
        vocab_size=100,
        max_position_embeddings=128,
    )


@pytest.fixture(scope="module")
def qwen2() -> Qwen2ForCausalLM:
    torch.manual_seed(0)
    return Qwen2ForCausalLM._from_config(_text_config(), attn_implementation="sdpa").eval()


@pytest.fixture(scope="module")
def llava() -> LlavaOnevisionForConditionalGeneration:
    vision = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
        vision_use_head=False,
    )
    config = LlavaOnevisionConfig(
        vision_config=vision,
        text_config=_text_config(),
        image_token_index=98,
        video_token_index=VIDEO_TOKEN,
    )
    torch.manual_seed(0)
    return LlavaOnevisionForConditionalGeneration._from_config(config, attn_implementation="sdpa").eval()


def _inputs(model_name: str, padded: bool) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    input_ids = torch.randint(0, 90, (2, SEQ_LEN), generator=gen)
    attention_mask = torch.ones(2, SEQ_LEN, dtype=torch.long)
    if padded:
        attention_mask[1, :PAD] = 0
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if model_name == "llava":
        input_ids[:, VISUAL] = VIDEO_TOKEN
        inputs["pixel_values_videos"] = torch.randn(2, N_FRAMES, 3, 32, 32, generator=gen)
    return inputs


def _text_attn(model: torch.nn.Module) -> str:
    config = model.config
    return (
        config.text_config._attn_implementation
        if hasattr(config, "text_config")
        else config._attn_implementation
    )


def _set_text_attn(model: torch.nn.Module, implementation: str) -> None:
    if hasattr(model.config, "text_config"):
        model.set_attn_implementation({"text_config": implementation})
    else:
        model.set_attn_implementation(implementation)


def _eager_rows(
    model: torch.nn.Module, inputs: dict, rows: list[int], cols: list[int] | None
) -> list[torch.Tensor]:
    """Per layer (B, heads, R, K) rows of the full eager attention maps of the same model."""
    _set_text_attn(model, "eager")
    try:
        with torch.no_grad():
            out = model(**inputs, output_attentions=True)
    finally:
        _set_text_attn(model, "sdpa")
    maps = []
    for layer_map in out.attentions:
        picked = layer_map[:, :, rows, :]
        maps.append(picked if cols is None else picked[..., cols])
    return maps


@pytest.mark.parametrize("model_name", ["qwen2", "llava"])
@pytest.mark.parametrize("padded", [False, True], ids=["no_pad", "left_pad"])
@pytest.mark.parametrize("per_head", [False, True], ids=["head_mean", "per_head"])
@pytest.mark.parametrize("key_subset", [False, True], ids=["all_keys", "visual_keys"])
def test_rows_match_eager(request, model_name: str, padded: bool, per_head: bool, key_subset: bool) -> None:
    model = request.getfixturevalue(model_name)
    inputs = _inputs(model_name, padded)
    cols = VISUAL if key_subset else None
    window = (1, 3) if per_head else None
    config = CaptureConfig(query_positions=QUERY_ROWS, key_positions=cols, layers=window, per_head=per_head)
    with torch.no_grad(), capture_attention(model, config) as cap:
        model(**inputs)

    expected_layers = list(range(*window)) if window else list(range(N_LAYERS))
    assert sorted(cap.maps) == expected_layers
    reference = _eager_rows(model, inputs, [SEQ_LEN + r if r < 0 else r for r in QUERY_ROWS], cols)
    n_keys = len(cols) if cols else SEQ_LEN
    for layer in expected_layers:
        got = cap.maps[layer]
        want = reference[layer] if per_head else reference[layer].mean(dim=1)
        expected_shape = (2, N_HEADS, len(QUERY_ROWS), n_keys) if per_head else (2, len(QUERY_ROWS), n_keys)
        assert got.shape == expected_shape
        assert got.dtype == torch.float32 and got.device.type == "cpu"
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    torch.testing.assert_close(cap.mean(), torch.stack([cap.maps[i] for i in expected_layers]).mean(0))


@pytest.mark.parametrize("model_name", ["qwen2", "llava"])
def test_capture_does_not_change_logits(request, model_name: str) -> None:
    model = request.getfixturevalue(model_name)
    inputs = _inputs(model_name, padded=True)
    with torch.no_grad():
        plain = model(**inputs).logits
        with capture_attention(model, CaptureConfig(query_positions=[-1])):
            captured = model(**inputs).logits
    torch.testing.assert_close(captured, plain, rtol=0, atol=0)


@pytest.mark.parametrize("model_name", ["qwen2", "llava"])
def test_gradient_flows_to_visual_delta(request, model_name: str) -> None:
    model = request.getfixturevalue(model_name)
    input_ids = _inputs(model_name, padded=False)["input_ids"][:1]
    embeds = model.get_input_embeddings()(input_ids).detach()
    delta = torch.zeros(1, len(VISUAL), embeds.shape[-1], requires_grad=True)
    shifted = torch.cat([embeds[:, :VIDEO_START], embeds[:, VISUAL] + delta, embeds[:, VISUAL[-1] + 1 :]], 1)
    yes, no = 5, 7

    config = CaptureConfig(query_positions=[-1], key_positions=VISUAL)
    with capture_attention(model, config) as cap:
        logits = model(inputs_embeds=shifted).logits[0, -1]
    score = logits[yes] - logits[no]
    (grad,) = torch.autograd.grad(score, delta)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert not any(m.requires_grad for m in cap.maps.values())

    with capture_attention(
        model, CaptureConfig(query_positions=[-1], key_positions=VISUAL, keep_graph=True)
    ) as cap:
        model(inputs_embeds=shifted)
    (grad,) = torch.autograd.grad(cap.mean().sum(), delta)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_only_language_model_is_switched(llava: LlavaOnevisionForConditionalGeneration) -> None:
    vision_before = llava.config.vision_config._attn_implementation
    with torch.no_grad(), capture_attention(llava, CaptureConfig(query_positions=[-1])) as cap:
        assert llava.config.text_config._attn_implementation == CAPTURE_ATTN_IMPLEMENTATION
        assert llava.config.vision_config._attn_implementation == vision_before
        llava(**_inputs("llava", padded=False))
    # One call per decoder layer of the language model; the vision tower's layers add none.
    assert cap.calls == N_LAYERS and sorted(cap.maps) == list(range(N_LAYERS))


@pytest.mark.parametrize("model_name", ["qwen2", "llava"])
def test_previous_implementation_restored(request, model_name: str) -> None:
    model = request.getfixturevalue(model_name)
    inputs = _inputs(model_name, padded=False)
    config = CaptureConfig(query_positions=[-1])
    with capture_attention(model, config):
        pass
    assert _text_attn(model) == "sdpa"

    with pytest.raises(RuntimeError, match="inside"), capture_attention(model, config) as cap:
        raise RuntimeError("failure inside the context")
    assert _text_attn(model) == "sdpa"
    with torch.no_grad():
        model(**inputs)
    assert cap.calls == 0 and not cap.maps  # the hooks are gone too

    _set_text_attn(model, "eager")
    try:
        with capture_attention(model, config):
            assert _text_attn(model) == CAPTURE_ATTN_IMPLEMENTATION
        assert _text_attn(model) == "eager"
    finally:
        _set_text_attn(model, "sdpa")


def test_out_of_range_position_raises_and_restores(qwen2: Qwen2ForCausalLM) -> None:
    config = CaptureConfig(query_positions=[SEQ_LEN])
    with pytest.raises(IndexError, match="out of range"), torch.no_grad(), capture_attention(qwen2, config):
        qwen2(**_inputs("qwen2", padded=False))
    assert _text_attn(qwen2) == "sdpa"


def test_nested_capture_is_refused(qwen2: Qwen2ForCausalLM) -> None:
    config = CaptureConfig(query_positions=[-1])
    with (
        capture_attention(qwen2, config),
        pytest.raises(RuntimeError, match="already active"),
        capture_attention(qwen2, config),
    ):
        pass
    assert _text_attn(qwen2) == "sdpa"


def test_decoding_with_cache_is_skipped(qwen2: Qwen2ForCausalLM) -> None:
    inputs = _inputs("qwen2", padded=False)
    with torch.no_grad():
        prefix = qwen2(input_ids=inputs["input_ids"][:, :-1], use_cache=True)
        with capture_attention(qwen2, CaptureConfig(query_positions=[-1], layers=(0, 2))) as cap:
            qwen2(input_ids=inputs["input_ids"][:, -1:], cache=prefix.cache)
    assert cap.skipped_calls == 2 and cap.calls == 0 and not cap.maps


class _PerHeadSquareMaps(TorchDispatchMode):
    """Records every op output shaped like a per-head N x N attention map: (..., heads, N, N)."""

    def __init__(self, heads: int, n: int) -> None:
        super().__init__()
        self.heads, self.n = heads, n
        self.hits: list[tuple[str, tuple[int, ...]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if (
                isinstance(t, torch.Tensor)
                and t.dim() >= 3
                and tuple(t.shape[-3:]) == (self.heads, self.n, self.n)
            ):
                self.hits.append((str(func), tuple(t.shape)))
        return out


def test_no_per_head_square_maps(qwen2: Qwen2ForCausalLM) -> None:
    inputs = _inputs("qwen2", padded=True)
    config = CaptureConfig(query_positions=QUERY_ROWS, per_head=True)
    with (
        torch.no_grad(),
        capture_attention(qwen2, config) as cap,
        _PerHeadSquareMaps(N_HEADS, SEQ_LEN) as probe,
    ):
        qwen2(**inputs)
    assert probe.hits == []
    assert all(m.shape == (2, N_HEADS, len(QUERY_ROWS), SEQ_LEN) for m in cap.maps.values())

    # The probe does see the maps of eager attention, so its silence above means something.
    _set_text_attn(qwen2, "eager")
    try:
        with torch.no_grad(), _PerHeadSquareMaps(N_HEADS, SEQ_LEN) as probe:
            qwen2(**inputs)
    finally:
        _set_text_attn(qwen2, "sdpa")
    assert probe.hits


def test_capture_config_validation() -> None:
    with pytest.raises(ValueError):
        CaptureConfig(query_positions=[])
    with pytest.raises(ValueError):
        CaptureConfig(query_positions=[0], key_positions=[])
    with pytest.raises(ValueError):
        CaptureConfig(query_positions=[0], layers=(3, 3))
    with pytest.raises(RuntimeError):
        AttentionCapture(config=CaptureConfig(query_positions=[0])).mean()


def test_relative_attention() -> None:
    maps = torch.tensor([[0.2, 0.6, 0.2]])
    baseline = torch.tensor([[0.1, 0.3, 0.6]])
    torch.testing.assert_close(relative_attention(maps, baseline), maps / (baseline + 1e-4))
    torch.testing.assert_close(relative_attention(maps, baseline, eps=0.0), torch.tensor([[2.0, 2.0, 1 / 3]]))
    by_layer = relative_attention({0: maps, 1: 2 * maps}, {0: baseline, 1: baseline, 2: baseline})
    assert sorted(by_layer) == [0, 1]
    torch.testing.assert_close(by_layer[1], 2 * maps / (baseline + 1e-4))
    with pytest.raises(KeyError):
        relative_attention({3: maps}, {0: baseline})
