"""Logit-guided re-attention on tiny LLaVA-OneVision and Qwen2-VL checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_models import QUESTION, QWEN_FRAME, make_clip, save_tiny_llava, save_tiny_qwen_vl

from zsgrounding.attention import relative_attention
from zsgrounding.mllm import MLLMAdapter, PreparedInputs, load_adapter
from zsgrounding.zeroshot.lra import LRAConfig, lra_maps, prepare_generic, tune_latent

# The tiny models' scores move little per unit of gradient: a step of 1.0 is already visible.
STEP = 1.0
GENERIC = "please describe this video."


@pytest.fixture(scope="module")
def llava(tmp_path_factory: pytest.TempPathFactory) -> MLLMAdapter:
    return load_adapter(save_tiny_llava(tmp_path_factory.mktemp("lra_llava")))


@pytest.fixture(scope="module")
def inputs(llava: MLLMAdapter) -> tuple[PreparedInputs, PreparedInputs]:
    clip = make_clip(num_frames=2)
    return llava.prepare(clip, QUESTION), llava.prepare(clip, GENERIC)


def _contrast(
    adapter: MLLMAdapter, sub: PreparedInputs, generic: PreparedInputs, latent: torch.Tensor
) -> float:
    """``s(q_sub) - s(q_0)`` with ``latent`` ``(V, D)`` added to both, from two separate forwards."""
    with torch.no_grad():
        s_sub = adapter.yes_no_score(adapter.forward(sub, visual_delta=latent))
        s_generic = adapter.yes_no_score(adapter.forward(generic, visual_delta=latent))
    return float(s_sub - s_generic)


def _gradient(
    adapter: MLLMAdapter, sub: PreparedInputs, generic: PreparedInputs, latent: torch.Tensor
) -> torch.Tensor:
    """d loss / d latent of ``1 - (s(q_sub) - s(q_0))``, from two separate forwards."""
    variable = latent.clone().requires_grad_(True)
    s_sub = adapter.yes_no_score(adapter.forward(sub, visual_delta=variable))
    s_generic = adapter.yes_no_score(adapter.forward(generic, visual_delta=variable))
    (grad,) = torch.autograd.grad((1 - (s_sub - s_generic)).sum(), variable)
    return grad


def test_lra_raises_the_contrast(llava: MLLMAdapter, inputs: tuple[PreparedInputs, PreparedInputs]) -> None:
    sub, generic = inputs
    result = tune_latent(llava, sub, generic, LRAConfig(steps=2, step_size=STEP))
    zero = torch.zeros(sub.num_visual, sub.inputs_embeds.shape[-1])
    before, after = _contrast(llava, sub, generic, zero), _contrast(llava, sub, generic, result.latent[0])
    assert after - before > 0
    # The history's first step is the zero latent, measured in the stacked forward.
    assert result.sub_scores.shape == result.losses.shape == (2, 1)
    assert result.generic_scores is not None
    torch.testing.assert_close(
        float(result.sub_scores[0, 0] - result.generic_scores[0, 0]), before, rtol=0, atol=1e-5
    )
    torch.testing.assert_close(result.losses[:, 0], 1 - (result.sub_scores - result.generic_scores)[:, 0])
    assert float(result.losses[1, 0]) < float(result.losses[0, 0])
    assert result.updates.tolist() == [2] and not result.stopped


def test_qwen2_vl_contrast_rises(tmp_path: Path) -> None:
    qwen = load_adapter(save_tiny_qwen_vl(tmp_path, "qwen2_vl"))
    clip = make_clip(num_frames=4, height=QWEN_FRAME[0], width=QWEN_FRAME[1])
    sub, generic = qwen.prepare(clip, QUESTION), qwen.prepare(clip, GENERIC)
    result = tune_latent(qwen, sub, generic, LRAConfig(steps=2, step_size=STEP))
    assert result.latent.shape == (1, sub.num_visual, sub.inputs_embeds.shape[-1])
    zero = torch.zeros_like(result.latent[0])
    assert _contrast(qwen, sub, generic, result.latent[0]) - _contrast(qwen, sub, generic, zero) > 0


def test_two_steps_follow_the_update_rule(
    llava: MLLMAdapter, inputs: tuple[PreparedInputs, PreparedInputs]
) -> None:
    # Reference: zero init, then latent <- s * (latent - step * grad) + (1 - s) * latent, twice,
    # with gradients from separate (unstacked) forwards.
    sub, generic = inputs
    config = LRAConfig(steps=2, step_size=STEP, smoothing=0.5)
    latent = torch.zeros(sub.num_visual, sub.inputs_embeds.shape[-1])
    for _ in range(2):
        stepped = latent - STEP * _gradient(llava, sub, generic, latent)
        latent = 0.5 * stepped + 0.5 * latent
    result = tune_latent(llava, sub, generic, config)
    torch.testing.assert_close(result.latent[0], latent, rtol=0, atol=1e-5)
    assert float(latent.abs().max()) > 1e-3


def test_reference_schedule_ends_at_minus_8_g0_minus_2_g1(
    llava: MLLMAdapter, inputs: tuple[PreparedInputs, PreparedInputs]
) -> None:
    # The released code, lr 8 and beta 0.5: step 0 at 0 (g0), step 1 at beta * (-8 g0) = -4 g0
    # (g1), and the maps use beta * p + (1 - beta) * p_prev = -8 g0 - 2 g1.
    sub, generic = inputs
    zero = torch.zeros(sub.num_visual, sub.inputs_embeds.shape[-1])
    g0 = _gradient(llava, sub, generic, zero)
    g1 = _gradient(llava, sub, generic, -4.0 * g0)
    result = tune_latent(llava, sub, generic, LRAConfig(steps=2, step_size=8.0, schedule="reference"))
    torch.testing.assert_close(result.latent[0], -8.0 * g0 - 2.0 * g1, rtol=0, atol=1e-5)
    # Ours evaluates at the same two points and ends at -4 g0 - 4 g1.
    ours = tune_latent(llava, sub, generic, LRAConfig(steps=2, step_size=8.0, schedule="ours"))
    torch.testing.assert_close(ours.latent[0], -4.0 * g0 - 4.0 * g1, rtol=0, atol=1e-5)
    torch.testing.assert_close(ours.losses, result.losses)


def test_reference_schedule_three_steps_and_one_step(
    llava: MLLMAdapter, inputs: tuple[PreparedInputs, PreparedInputs]
) -> None:
    # Written from the recurrence: p_prev, p = p, p - lr * (1 if k == 0 else beta) * g(beta p + (1 - beta) p_prev).
    sub, generic = inputs
    lr, beta = 2.0, 0.25
    p = p_prev = torch.zeros(sub.num_visual, sub.inputs_embeds.shape[-1])
    for k in range(3):
        g = _gradient(llava, sub, generic, beta * p + (1 - beta) * p_prev)
        p_prev, p = p, p - lr * (1.0 if k == 0 else beta) * g
    config = LRAConfig(steps=3, step_size=lr, smoothing=beta, schedule="reference")
    result = tune_latent(llava, sub, generic, config)
    torch.testing.assert_close(result.latent[0], beta * p + (1 - beta) * p_prev, rtol=0, atol=1e-5)
    # One step: p = -lr g0, p_prev = 0, so the maps' latent is -beta lr g0.
    g0 = _gradient(llava, sub, generic, torch.zeros_like(p))
    one = tune_latent(
        llava, sub, generic, LRAConfig(steps=1, step_size=lr, smoothing=beta, schedule="reference")
    )
    torch.testing.assert_close(one.latent[0], -beta * lr * g0, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="schedule"):
        LRAConfig(schedule="adam")  # type: ignore[arg-type]


def test_steps_zero_returns_a_zero_latent(
    llava: MLLMAdapter, inputs: tuple[PreparedInputs, PreparedInputs]
) -> None:
    sub, _ = inputs
    result = tune_latent(llava, sub, None, LRAConfig(steps=0))
    assert result.latent.shape == (1, sub.num_visual, llava.model.config.text_config.hidden_size)
    assert torch.equal(result.latent, torch.zeros_like(result.latent))
    assert result.losses.shape == result.sub_scores.shape == (0, 1)
    assert result.updates.tolist() == [0] and not result.stopped


def test_contrast_none_uses_the_sub_query_alone(
    llava: MLLMAdapter, inputs: tuple[PreparedInputs, PreparedInputs]
) -> None:
    sub, _ = inputs
    result = tune_latent(llava, sub, None, LRAConfig(steps=1, step_size=STEP, contrast="none"))
    assert result.generic_scores is None
    torch.testing.assert_close(result.losses, 1 - result.sub_scores)
    with pytest.raises(ValueError, match="generic"):
        tune_latent(llava, sub, None, LRAConfig(steps=1))


def test_infinite_step_size_stops_and_flags(
    llava: MLLMAdapter, inputs: tuple[PreparedInputs, PreparedInputs]
) -> None:
    sub, generic = inputs
    result = tune_latent(llava, sub, generic, LRAConfig(steps=2, step_size=float("inf")))
    assert result.stopped and result.non_finite.tolist() == [True]
    assert result.updates.tolist() == [0]
    assert torch.equal(result.latent, torch.zeros_like(result.latent))
    assert result.losses.shape == (1, 1)


def test_nan_forward_keeps_the_last_finite_latent(
    llava: MLLMAdapter, inputs: tuple[PreparedInputs, PreparedInputs]
) -> None:
    sub, generic = inputs
    one_step = tune_latent(llava, sub, generic, LRAConfig(steps=1, step_size=STEP))
    calls: list[int] = []

    def poison_second_call(module: torch.nn.Module, args: object, output: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return output * float("nan") if len(calls) == 2 else output

    handle = llava.model.model.language_model.norm.register_forward_hook(poison_second_call)
    try:
        result = tune_latent(llava, sub, generic, LRAConfig(steps=3, step_size=STEP))
    finally:
        handle.remove()
    assert len(calls) == 2 and result.stopped
    assert result.updates.tolist() == [1]
    assert bool(torch.isnan(result.losses[1]).all())
    torch.testing.assert_close(result.latent, one_step.latent, rtol=0, atol=0)


def test_model_parameters_get_no_gradient(
    llava: MLLMAdapter, inputs: tuple[PreparedInputs, PreparedInputs]
) -> None:
    sub, generic = inputs
    params = list(llava.model.parameters())
    flags = [p.requires_grad for p in params]
    tune_latent(llava, sub, generic, LRAConfig(steps=1, step_size=STEP))
    assert all(p.grad is None for p in params)
    assert [p.requires_grad for p in params] == flags


def test_max_grad_norm_bounds_the_step(
    llava: MLLMAdapter, inputs: tuple[PreparedInputs, PreparedInputs]
) -> None:
    sub, generic = inputs
    free = tune_latent(llava, sub, generic, LRAConfig(steps=1, step_size=STEP, smoothing=1.0))
    bound = float(free.latent.norm()) / 4
    clipped = tune_latent(
        llava, sub, generic, LRAConfig(steps=1, step_size=STEP, smoothing=1.0, max_grad_norm=bound)
    )
    torch.testing.assert_close(float(clipped.latent.norm()), bound * STEP, rtol=1e-4, atol=0)
    torch.testing.assert_close(clipped.latent, free.latent / 4, rtol=1e-4, atol=1e-7)


def test_relative_maps_come_from_the_same_forward(
    llava: MLLMAdapter, inputs: tuple[PreparedInputs, PreparedInputs]
) -> None:
    sub, generic = inputs
    latent = tune_latent(llava, sub, generic, LRAConfig(steps=1, step_size=STEP)).latent
    layers = (1, 3)
    plain = lra_maps(llava, sub, latent, layers)
    baseline = lra_maps(llava, generic, latent, layers)
    assert plain.shape == (len(sub.special_tokens), *sub.grid_shape)
    expected = relative_attention(plain, baseline)
    torch.testing.assert_close(
        lra_maps(llava, sub, latent, layers, relative_to=generic), expected, rtol=1e-4, atol=1e-4
    )
    torch.testing.assert_close(lra_maps(llava, sub, latent[0], layers, relative_to=baseline), expected)
    # Against a capture without the latent: the latent changes the maps.
    with torch.no_grad():
        out = llava.forward(sub, capture=sub.capture_config(layers))
    assert (sub.to_grid(out.attention.mean()) - plain).abs().max() > 1e-6


def test_prepare_generic_and_config_checks(llava: MLLMAdapter) -> None:
    clip = make_clip(num_frames=2)
    generic = prepare_generic(llava, clip, LRAConfig(generic_question=GENERIC))
    assert generic is not None and generic.input_ids.shape[0] == 1
    assert prepare_generic(llava, clip, LRAConfig(contrast="none")) is None
    for bad in ({"steps": -1}, {"smoothing": 0.0}, {"contrast": "other"}, {"max_grad_norm": 0.0}):
        with pytest.raises(ValueError):
            LRAConfig(**bad)
