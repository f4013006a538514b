"""Temporal-augmented assembling (TAS): forward plus frame-reversed evidence.

Section 3.4 of *Unleashing the Potential of Multimodal LLMs for Zero-Shot Spatio-Temporal Video
Grounding* (Yang et al.).

An attribute sub-query describes a static state, so its spatial evidence should not depend on
the order of the frames; MLLMs are not that consistent. TAS runs the input twice, as it is and
with the frames' visual content reversed (:func:`zsgrounding.mllm.base.reverse_frames`), tunes
one LRA latent per direction (the reversed input's latent is its own variable, in the reversed
input's grid order), and assembles ``forward map + reversed map flipped back along T``.

Both directions run in ONE stacked batch: the tuning forwards are ``[forward sub, reversed sub,
forward generic, reversed generic]``, the capture forward ``[forward sub, reversed sub]`` (plus
the two generic rows for relative attention). The result equals two separate LRA runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from zsgrounding.mllm.base import MLLMAdapter, PreparedInputs, reverse_frames, stack_prepared
from zsgrounding.zeroshot.lra import LRAConfig, LRAResult, lra_maps, tune_latent

__all__ = ["TASResult", "tas_maps"]


@dataclass
class TASResult:
    """Assembled evidence of the forward and frame-reversed inputs.

    Attributes:
        maps: ``(S, T, h, w)`` float32, ``forward_maps + reversed_maps.flip(-3)`` (clip order).
        forward_maps: ``(S, T, h, w)`` maps of the input as it is.
        reversed_maps: ``(S, T, h, w)`` maps of the frame-reversed input, as captured (grid
            frame ``t`` shows the clip's frame ``T-1-t``; ``.flip(-3)`` puts them in clip order).
        forward_lra: the forward input's tuning (``B = 1``).
        reversed_lra: the reversed input's tuning (``B = 1``; latent in the reversed grid order).
    """

    maps: torch.Tensor
    forward_maps: torch.Tensor
    reversed_maps: torch.Tensor
    forward_lra: LRAResult
    reversed_lra: LRAResult


def tas_maps(
    adapter: MLLMAdapter,
    prepared: PreparedInputs,
    generic: PreparedInputs | None,
    lra_config: LRAConfig,
    layers: tuple[int, int] | None,
    relative: bool = False,
    map_input: PreparedInputs | None = None,
) -> TASResult:
    """TAS maps of one sub-query input.

    Args:
        adapter: the MLLM.
        prepared: the sub-query input (one row).
        generic: the generic prompt's input of the same clip (one row); needed for the contrast
            (``lra_config.contrast == "generic"`` with ``steps > 0``) and for ``relative``.
        lra_config: the tuning; ``steps == 0`` is plain attention assembly (zero latents).
        layers: the layer window ``[lo, hi)`` the maps are averaged over (``None``: all).
        relative: divide each direction's maps by its generic prompt's maps (same latent).
        map_input: read the maps with this input (one row, same clip) and the latents tuned on
            ``prepared``; ``None``: ``prepared`` itself.
    """
    if prepared.batch_size != 1:
        raise ValueError(f"tas_maps takes one input, got {prepared.batch_size} rows")
    if generic is not None and generic.batch_size != 1:
        raise ValueError(f"the generic input must be one row, got {generic.batch_size}")
    if relative and generic is None:
        raise ValueError("relative attention needs the generic prompt's input")
    sub = stack_prepared([prepared, reverse_frames(prepared)])
    generic_pair = None if generic is None else stack_prepared([generic, reverse_frames(generic)])
    tuned = tune_latent(adapter, sub, generic_pair, lra_config)
    mapped = sub if map_input is None else stack_prepared([map_input, reverse_frames(map_input)])
    maps = lra_maps(adapter, mapped, tuned.latent, layers, relative_to=generic_pair if relative else None)
    forward_maps, reversed_maps = maps[0], maps[1]
    return TASResult(
        maps=forward_maps + reversed_maps.flip(-3),
        forward_maps=forward_maps,
        reversed_maps=reversed_maps,
        forward_lra=tuned.item(0),
        reversed_lra=tuned.item(1),
    )
