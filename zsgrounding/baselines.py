"""Model-free evidence baselines: what any grounder must beat.

Each returns evidence ``(T, h, w)`` in the same form the MLLM grounders produce, so the shared
tube scorer and evaluator treat them exactly alike.

* ``centre``: a Gaussian centred on the frame (objects of interest tend to be central).
* ``colour``: the colour words of the sentence, matched per pixel, pooled onto the grid. It
  reads the sentence but understands nothing else of it (no shape, size, action).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from zsgrounding.tubes import mask_coverage
from zsgrounding.types import Clip

# sRGB anchors of basic colour terms; "grey"/"gray" both appear in captions.
COLOUR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 215, 40),
    "orange": (240, 140, 30),
    "purple": (140, 60, 190),
    "pink": (240, 120, 180),
    "brown": (130, 80, 40),
    "black": (20, 20, 20),
    "white": (240, 240, 240),
    "grey": (128, 128, 128),
    "gray": (128, 128, 128),
    "cyan": (40, 200, 220),
}


def colour_words(sentence: str) -> list[str]:
    """Colour terms of :data:`COLOUR_RGB` in the sentence, in order."""
    return [w for w in re.findall(r"[a-z]+", sentence.lower()) if w in COLOUR_RGB]


def centre_evidence(clip: Clip, sentence: str, grid: tuple[int, int], sigma: float = 0.35) -> np.ndarray:
    """A centred Gaussian on every frame; ``sigma`` is relative to the frame size. ``(T, h, w)``."""
    h, w = grid
    ys = (np.arange(h) + 0.5) / h - 0.5
    xs = (np.arange(w) + 0.5) / w - 0.5
    g = np.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * sigma**2))
    return np.broadcast_to(g, (len(clip), h, w)).copy()


def colour_evidence(clip: Clip, sentence: str, grid: tuple[int, int], sigma: float = 60.0) -> np.ndarray:
    """Per-pixel closeness to the sentence's first colour word, area-pooled to the grid.

    Without a colour word the evidence is uniform (every track ties). ``(T, h, w)`` in [0, 1].
    """
    words = colour_words(sentence)
    if not words:
        return np.ones((len(clip), *grid))
    target = np.asarray(COLOUR_RGB[words[0]], dtype=np.float64)
    dist2 = ((clip.frames.astype(np.float64) - target) ** 2).sum(-1)
    return mask_coverage(np.exp(-dist2 / (2 * sigma**2)), grid)


BASELINES: dict[str, Callable[[Clip, str, tuple[int, int]], np.ndarray]] = {
    "centre": centre_evidence,
    "colour": colour_evidence,
}
