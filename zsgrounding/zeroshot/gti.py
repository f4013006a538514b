"""Grounding-token identification (GTI): which special token's attention map is the evidence.

The special tokens that follow the user instruction (end-of-turn, assistant header, ...) each
attend to the visual tokens; *Unleashing the Potential of Multimodal LLMs for Zero-Shot
Spatio-Temporal Video Grounding* (sec. 3.2) finds that the one with the highest visual
activation (the max of its map) tends to ground best, and that which token that is varies by
sample and model. Three selections are offered:

- ``"max_activation"``: the token whose map has the highest max (the paper's GTI);
- ``"mean"``: the average of all special tokens' maps (the paper's Table 2 baseline row);
- ``"fixed"``: the token at a fixed index among the special tokens (the released code's fixed
  offset from the end of the prompt, -5 or -3; negative indices count from the last token).

Maps come from :mod:`zsgrounding.attention`: capture with the special-token positions as query
rows and the visual grid positions (flattened in ``(T, h, w)`` order) as key columns, then
:func:`rows_to_grid` turns the captured ``(R, K)`` rows into ``(R, T, h, w)`` maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

__all__ = ["GTIMethod", "GTIResult", "rows_to_grid", "select_grounding_token"]

GTIMethod = Literal["max_activation", "mean", "fixed"]
Array = torch.Tensor | np.ndarray


@dataclass
class GTIResult:
    """The evidence chosen among the special tokens' maps.

    Attributes:
        evidence: ``(T, h, w)`` map of the chosen token (or the mean map), same array type
            (torch / numpy) and dtype as the input maps.
        token_index: index in ``[0, S)`` of the chosen special token; ``None`` for ``"mean"``.
        activations: ``(S,)`` visual activation of each token, the max of its map (same array
            type as the input).
    """

    evidence: Array
    token_index: int | None
    activations: Array


def rows_to_grid(rows: Array, grid: tuple[int, int, int]) -> Array:
    """Reshape captured rows ``(..., R, K)`` with ``K = T * h * w`` to maps ``(..., R, T, h, w)``.

    The key columns must have been captured in the grid's row-major ``(T, h, w)`` order, as
    ``grid_positions.flatten()`` gives them.
    """
    t, h, w = grid
    if rows.shape[-1] != t * h * w:
        raise ValueError(f"{rows.shape[-1]} key columns do not fill a {t}x{h}x{w} grid")
    return rows.reshape(*rows.shape[:-1], t, h, w)


def _token_max(maps: Array) -> Array:
    """``(S, ...)`` -> ``(S,)`` max of each token's map."""
    if isinstance(maps, torch.Tensor):
        return maps.reshape(maps.shape[0], -1).amax(dim=1)
    return maps.reshape(maps.shape[0], -1).max(axis=1)


def select_grounding_token(
    maps: Array, method: GTIMethod = "max_activation", fixed_index: int = 0
) -> GTIResult:
    """Pick the grounding evidence among the maps of ``S`` special tokens.

    Args:
        maps: ``(S, T, h, w)`` attention of each special token over the visual tokens (torch
            tensor or numpy array); ``(S, h, w)`` for an image works the same way.
        method: ``"max_activation"``, ``"mean"`` or ``"fixed"`` (see the module docstring).
            Ties in ``"max_activation"`` go to the first token.
        fixed_index: the token for ``"fixed"``; negative values count from the last token.

    Returns:
        A :class:`GTIResult`.
    """
    if maps.ndim < 2 or maps.shape[0] == 0:
        raise ValueError(f"maps must be (S, T, h, w) with S >= 1, got shape {tuple(maps.shape)}")
    s = int(maps.shape[0])
    activations = _token_max(maps)
    if method == "mean":
        evidence = maps.mean(dim=0) if isinstance(maps, torch.Tensor) else maps.mean(axis=0)
        return GTIResult(evidence=evidence, token_index=None, activations=activations)
    if method == "max_activation":
        # torch.argmax and np.argmax both return the first of tied maxima.
        index = int(activations.argmax())
    elif method == "fixed":
        if not -s <= fixed_index < s:
            raise IndexError(f"fixed_index {fixed_index} out of range for {s} special tokens")
        index = fixed_index % s
    else:
        raise ValueError(f"unknown GTI method {method!r}: use 'max_activation', 'mean' or 'fixed'")
    return GTIResult(evidence=maps[index], token_index=index, activations=activations)
