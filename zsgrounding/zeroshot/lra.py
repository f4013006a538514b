"""Logit-guided re-attention (LRA): test-time tuning of a latent visual prompt.

Section 3.3 of *Unleashing the Potential of Multimodal LLMs for Zero-Shot Spatio-Temporal Video
Grounding* (Yang et al.).

A latent with the shape of the visual tokens, zero-initialised, is added to their embeddings.
The yes/no question built from a sub-query (``"Is there {attribute} in this video?"``) should
be answered "yes": with ``s(q) = logit(yes) - logit(no)`` at the answer position, the loss
``1 - (s(q_sub) - s(q_0))`` contrasts the sub-query with a generic prompt ``q_0`` ("Please
describe this video.") run with the SAME latent, so the latent learns what is specific to the
sub-query rather than what raises "yes" for any prompt. The model stays frozen; the attention of
the special tokens with the tuned latent is the evidence (:func:`lra_maps`).

Two update schedules, both plain gradient steps (no Adam, no normalisation) with step size
``lr`` and smoothing ``beta`` (the released code's 8.0 and 0.5, 2 steps):

- ``"reference"``, what the released code computes. It keeps the latent ``p`` and its previous
  value ``p_prev``, both starting at zero; step ``k`` evaluates the loss at ``cur = beta * p +
  (1 - beta) * p_prev``, then sets ``p_prev, p = p, p - lr * c_k * g`` with ``c_0 = 1`` and
  ``c_k = beta`` after (the gradient is taken with respect to ``p`` alone, and at the first step
  ``p`` and ``p_prev`` are the same tensor). The maps use ``beta * p + (1 - beta) * p_prev``.
  With two steps: evaluated at ``0`` and ``-4 g0``, final latent ``-8 g0 - 2 g1``.
- ``"ours"``, the schedule this toolkit used before the audit: ``latent <- latent - beta * lr * g``
  after each step, the maps use the last latent. Same evaluation points, final latent
  ``-4 g0 - 4 g1`` with two steps (kept so earlier runs can be reproduced).

One optimisation step is ONE forward and backward: the sub-query and generic inputs are stacked
in one batch (:func:`zsgrounding.mllm.base.stack_prepared`). Several independent latents can be
tuned at once (the rows of a stacked ``sub`` batch, as TAS does for the forward and
frame-reversed inputs); each row's loss only reaches its own latent.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from zsgrounding.attention import relative_attention
from zsgrounding.mllm.base import MLLMAdapter, PreparedInputs, stack_prepared
from zsgrounding.types import Clip

__all__ = ["LRAConfig", "LRAResult", "lra_maps", "prepare_generic", "tune_latent"]


@dataclass(frozen=True)
class LRAConfig:
    """Settings of the latent tuning.

    Attributes:
        steps: gradient steps (one forward and backward each); 0 leaves the latent at zero.
        step_size: ``lr`` of the plain gradient step (the released code: 8.0).
        smoothing: ``beta`` of the schedule (the released code: 0.5).
        schedule: ``"reference"`` or ``"ours"`` (see the module docstring).
        contrast: ``"generic"``: loss ``1 - (s(q_sub) - s(q_0))`` with the generic prompt;
            ``"none"``: ``1 - s(q_sub)``.
        generic_question: the generic prompt ``q_0`` (see :func:`prepare_generic`); the released
            code's is ``please describe this video`` (lower case, no period).
        layers: decoder-layer window ``[lo, hi)`` the evidence maps are averaged over (``None``:
            all layers). The tuning itself does not read it (the loss is on the logits); it is
            the ``layers`` callers pass to :func:`lra_maps` / ``tas_maps``.
        max_grad_norm: if set, each latent's gradient is scaled down to at most this L2 norm.
    """

    steps: int = 2
    step_size: float = 8.0
    smoothing: float = 0.5
    schedule: Literal["reference", "ours"] = "ours"
    contrast: Literal["generic", "none"] = "generic"
    generic_question: str = "Please describe this video."
    layers: tuple[int, int] | None = None
    max_grad_norm: float | None = None

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if not 0.0 < self.smoothing <= 1.0:
            raise ValueError(f"smoothing must be in (0, 1], got {self.smoothing}")
        if self.schedule not in ("reference", "ours"):
            raise ValueError(f"schedule must be 'reference' or 'ours', got {self.schedule!r}")
        if self.contrast not in ("generic", "none"):
            raise ValueError(f"contrast must be 'generic' or 'none', got {self.contrast!r}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be positive, got {self.max_grad_norm}")


@dataclass
class LRAResult:
    """The tuned latents of ``B`` inputs and the optimisation history.

    ``K`` is the number of forwards run (``steps``, fewer when every latent stopped early);
    score and loss rows are measured at each step's forward, before that step's update.

    Attributes:
        latent: ``(B, L, D)`` float32, one latent per input, in grid order (for a
            frame-reversed input: the reversed input's grid), then the separators when the input
            covers them (``PreparedInputs.num_latent``); the last finite one.
        sub_scores: ``(K, B)`` s(q_sub) per step.
        generic_scores: ``(K, B)`` s(q_0) per step; ``None`` without contrast.
        losses: ``(K, B)`` each input's loss ``1 - (s(q_sub) - s(q_0))`` per step.
        non_finite: ``(B,)`` bool, the non-finite guard stopped this latent (a non-finite loss,
            gradient or update); the latent is the last finite one.
        updates: ``(B,)`` long, the gradient steps applied to each latent.
        seconds: wall time of the model's forwards and of the backwards, for the whole batch
            (``{"forward": ..., "backward": ...}``).
    """

    latent: torch.Tensor
    sub_scores: torch.Tensor
    generic_scores: torch.Tensor | None
    losses: torch.Tensor
    non_finite: torch.Tensor
    updates: torch.Tensor
    seconds: dict[str, float] = field(default_factory=lambda: {"forward": 0.0, "backward": 0.0})

    @property
    def stopped(self) -> bool:
        """Whether the non-finite guard fired for any latent."""
        return bool(self.non_finite.any())

    def item(self, index: int) -> LRAResult:
        """The result of input ``index`` alone (``B = 1``)."""
        i = index % self.latent.shape[0]
        keep = slice(i, i + 1)
        return LRAResult(
            latent=self.latent[keep],
            sub_scores=self.sub_scores[:, keep],
            generic_scores=None if self.generic_scores is None else self.generic_scores[:, keep],
            losses=self.losses[:, keep],
            non_finite=self.non_finite[keep],
            updates=self.updates[keep],
            seconds=dict(self.seconds),
        )


def prepare_generic(adapter: MLLMAdapter, clip: Clip, config: LRAConfig) -> PreparedInputs | None:
    """The generic prompt's input ``q_0`` of ``clip``, or ``None`` when ``config.contrast`` is ``"none"``."""
    if config.contrast == "none":
        return None
    return adapter.prepare(clip, config.generic_question)


@contextmanager
def _frozen(model: nn.Module) -> Iterator[None]:
    """No parameter requires grad inside: no weight gradients are computed or stored."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    try:
        for p in trainable:
            p.requires_grad_(False)
        yield
    finally:
        for p in trainable:
            p.requires_grad_(True)


def _broadcast(generic: PreparedInputs, rows: int) -> PreparedInputs:
    """``generic`` with ``rows`` rows: one generic input serves every sub-query row."""
    if generic.batch_size == rows:
        return generic
    if generic.batch_size == 1:
        return stack_prepared([generic] * rows)
    raise ValueError(f"generic has {generic.batch_size} rows, the sub-query batch {rows}")


def tune_latent(
    adapter: MLLMAdapter,
    sub: PreparedInputs,
    generic: PreparedInputs | None,
    config: LRAConfig,
) -> LRAResult:
    """Tune one latent per row of ``sub`` to raise ``s(q_sub) - s(q_0)``.

    Args:
        adapter: the MLLM (frozen during the tuning; parameters get no gradient).
        sub: the sub-query input, ``B >= 1`` rows (a stacked batch tunes ``B`` independent
            latents).
        generic: the generic prompt's input of the same clip(s): ``B`` rows (row ``b`` is
            contrasted with ``sub`` row ``b``) or one row (shared). Required when
            ``config.contrast == "generic"`` and ``config.steps > 0``; ignored otherwise.
        config: the settings.

    Each step runs the stacked ``[sub rows, generic rows]`` batch once, with row ``b``'s latent
    added to both its sub-query and its generic row, backpropagates the summed loss to the
    latents only, and updates each latent by a plain gradient step then smoothing. A latent
    whose loss, gradient or update is non-finite stops at its last finite value (flagged in
    ``non_finite``); the others go on.
    """
    rows, v, d = sub.batch_size, sub.num_latent, sub.inputs_embeds.shape[-1]
    device = sub.inputs_embeds.device
    # The schedule's state: p and its previous value p_prev ("ours" keeps p_prev unused).
    p = torch.zeros(rows, v, d, dtype=torch.float32, device=device)
    p_prev = torch.zeros_like(p)
    beta = config.smoothing
    reference = config.schedule == "reference"
    contrast = config.contrast == "generic" and config.steps > 0
    batch = sub
    if contrast:
        if generic is None:
            raise ValueError("contrast 'generic' needs the generic prompt's input (see prepare_generic)")
        batch = stack_prepared([sub, _broadcast(generic, rows)])

    sub_history: list[torch.Tensor] = []
    generic_history: list[torch.Tensor] = []
    loss_history: list[torch.Tensor] = []
    active = torch.ones(rows, dtype=torch.bool, device=device)
    non_finite = torch.zeros(rows, dtype=torch.bool, device=device)
    updates = torch.zeros(rows, dtype=torch.long, device=device)
    seconds = {"forward": 0.0, "backward": 0.0}
    with _frozen(adapter.model), torch.enable_grad():
        for k in range(config.steps):
            point = beta * p + (1.0 - beta) * p_prev if reference else p
            variable = point.clone().requires_grad_(True)
            # The generic rows see the same latent as their sub-query rows.
            delta = torch.cat([variable, variable]) if contrast else variable
            tick = time.perf_counter()
            scores = adapter.yes_no_score(adapter.forward(batch, visual_delta=delta)).float()
            seconds["forward"] += time.perf_counter() - tick
            s_sub = scores[:rows]
            s_generic = scores[rows:] if contrast else torch.zeros_like(s_sub)
            loss = 1.0 - (s_sub - s_generic)
            sub_history.append(s_sub.detach())
            generic_history.append(s_generic.detach())
            loss_history.append(loss.detach())

            finite = torch.isfinite(loss.detach())
            non_finite |= active & ~finite
            active &= finite
            if not bool(active.any()):
                break
            # Stopped rows are left out of the sum: their gradient stays zero and unused.
            tick = time.perf_counter()
            (grad,) = torch.autograd.grad(loss[active].sum(), variable)
            seconds["backward"] += time.perf_counter() - tick
            grad = grad.detach()
            if config.max_grad_norm is not None:
                norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12)
                grad = grad * (config.max_grad_norm / norm).clamp(max=1.0)[:, None, None]
            if reference:
                # d loss / d p is beta * g once p_prev is a separate tensor (every step but the first).
                stepped = p - config.step_size * (1.0 if k == 0 else beta) * grad
            else:
                # Written as the smoothed step it was introduced as (same floats as before).
                stepped = beta * (p - config.step_size * grad) + (1.0 - beta) * p
            ok = torch.isfinite(grad).flatten(1).all(dim=1) & torch.isfinite(stepped).flatten(1).all(dim=1)
            apply = (active & ok)[:, None, None]
            p_prev, p = torch.where(apply, p, p_prev), torch.where(apply, stepped, p)
            updates += apply.flatten().long()
            non_finite |= active & ~ok
            active &= ok
            if not bool(active.any()):
                break
    latent = beta * p + (1.0 - beta) * p_prev if reference else p

    def history(values: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(values) if values else torch.zeros(0, rows, device=device)

    return LRAResult(
        latent=latent.detach(),
        sub_scores=history(sub_history),
        generic_scores=history(generic_history) if config.contrast == "generic" else None,
        losses=history(loss_history),
        non_finite=non_finite,
        updates=updates,
        seconds=seconds,
    )


def lra_maps(
    adapter: MLLMAdapter,
    prepared: PreparedInputs,
    latent: torch.Tensor | None,
    layers: tuple[int, int] | None,
    relative_to: PreparedInputs | torch.Tensor | None = None,
    eps: float = 1e-4,
) -> torch.Tensor:
    """The special tokens' attention maps over the visual grid with the tuned latent added.

    One capture forward (no autograd); maps are the mean over heads and over the layer window
    ``layers`` (``None``: all layers).

    Args:
        adapter: the MLLM.
        prepared: the sub-query input, ``B >= 1`` rows.
        latent: ``(L, D)`` or ``(B, L, D)`` (``LRAResult.latent``); ``None``: no latent.
        layers: the layer window ``[lo, hi)``.
        relative_to: divide by the generic prompt's maps (relative attention, ``maps /
            (generic + eps)``): its input (``B`` rows or one; it runs in the SAME stacked
            forward, with the same latent) or its maps already computed (broadcastable).
        eps: the relative attention's ``eps``.

    Returns:
        ``(S, T, h, w)`` float32 maps for one row; ``(B, S, T, h, w)`` for ``B > 1`` rows.
    """
    rows = prepared.batch_size
    delta = latent
    if latent is not None and latent.ndim == 2:
        delta = latent.expand(rows, *latent.shape)
    batch = prepared
    if isinstance(relative_to, PreparedInputs):
        batch = stack_prepared([prepared, _broadcast(relative_to, rows)])
        delta = None if delta is None else torch.cat([delta, delta])
    with torch.no_grad():
        out = adapter.forward(batch, visual_delta=delta, capture=batch.capture_config(layers))
    if out.attention is None:
        raise RuntimeError("the capture forward recorded no attention")
    captured = out.attention.mean()
    maps = captured.reshape(*captured.shape[:-1], *prepared.grid_shape)  # (rows, S, T, h, w)
    if isinstance(relative_to, PreparedInputs):
        maps = relative_attention(maps[:rows], maps[rows:], eps)
    elif relative_to is not None:
        maps = relative_attention(maps, relative_to.to(maps), eps)
    return maps[0] if rows == 1 else maps
