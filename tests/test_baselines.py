"""The model-free baselines give evidence where the sentence's colour is."""

import numpy as np

from zsgrounding.baselines import centre_evidence, colour_evidence, colour_words
from zsgrounding.types import Clip


def clip_with_squares():
    frames = np.full((2, 40, 40, 3), 30, np.uint8)
    frames[:, 0:10, 0:10] = (220, 40, 40)  # red square, top-left cell of a 4x4 grid
    frames[:, 30:40, 30:40] = (40, 80, 220)  # blue square, bottom-right cell
    return Clip(frames, np.array([0, 1]), np.array([0.0, 0.1]), 10.0, 2, 40, 40)


def test_colour_words():
    assert colour_words("The big Red circle, then a blue one") == ["red", "blue"]
    assert colour_words("a person walks") == []


def test_colour_evidence_peaks_on_the_named_colour():
    clip = clip_with_squares()
    red = colour_evidence(clip, "the red square", (4, 4))
    blue = colour_evidence(clip, "the blue square", (4, 4))
    assert red.shape == (2, 4, 4)
    assert np.unravel_index(red[0].argmax(), (4, 4)) == (0, 0) and red[0, 0, 0] > 0.99
    assert np.unravel_index(blue[0].argmax(), (4, 4)) == (3, 3)
    assert np.all(colour_evidence(clip, "the square", (4, 4)) == 1.0)


def test_centre_evidence_is_highest_in_the_middle():
    ev = centre_evidence(clip_with_squares(), "anything", (3, 3))
    assert ev.shape == (2, 3, 3) and ev[0].argmax() == 4
