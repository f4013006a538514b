"""Model-free evidence baselines: what any grounder must beat.

Each returns evidence ``(T, h, w)`` in the same form the MLLM grounders produce, so the shared
tube scorer and evaluator treat them exactly alike.

* ``centre``: a Gaussian centred on the frame (objects of interest tend to be central).
* ``colour``: the colour words of the sentence, matched per pixel, pooled onto the grid. It
  reads the sentence but understands nothing else of it (no shape, size, action).

:class:`BaselineGrounder` puts one of them behind the runner's protocol (``ground_sample``), so a
baseline sits beside the MLLM grounders in :mod:`zsgrounding.runner` and :mod:`zsgrounding.compare`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from zsgrounding.errors import STVGError
from zsgrounding.tubes import TubeScorer, mask_coverage
from zsgrounding.types import Clip, GroundingResult, Sample, Track
from zsgrounding.video import sample_uniform

EvidenceFn = Callable[[Clip, str, tuple[int, int]], np.ndarray]
TrackFilter = Callable[[Sample, list[Track]], list[Track]]

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


BASELINES: dict[str, EvidenceFn] = {
    "centre": centre_evidence,
    "colour": colour_evidence,
}


def target_track_only(sample: Sample, tracks: list[Track]) -> list[Track]:
    """The annotated target's own track (``sample.meta["target_id"]``): an oracle of the spatial step.

    With it, a baseline's tube can only miss in time; the toy world's samples carry the id.
    """
    if "target_id" not in sample.meta:
        raise STVGError(f"sample {sample.id!r} names no target track (meta 'target_id'): no oracle")
    return [t for t in tracks if t.track_id == sample.meta["target_id"]]


class BaselineGrounder:
    """A model-free evidence function + the shared tube scorer, behind the runner's protocol.

    Args:
        name: the row label (e.g. ``"colour"``).
        evidence_fn: ``(clip, sentence, grid) -> (T, h, w)`` evidence, e.g. a value of :data:`BASELINES`.
        scorer: the shared tube scorer (default settings when ``None``).
        num_frames: frames sampled uniformly per video.
        grid: ``(h, w)`` of the evidence grid.
        track_filter: ``(sample, tracks) -> tracks`` applied first (e.g. :func:`target_track_only`).
        sampling: how frames are spread over the video (:func:`zsgrounding.video.uniform_ids`).

    A baseline has no proposer of its own: it grounds on the tracks it is given.
    """

    def __init__(
        self,
        name: str,
        evidence_fn: EvidenceFn,
        scorer: TubeScorer | None = None,
        num_frames: int = 16,
        grid: tuple[int, int] = (6, 8),
        track_filter: TrackFilter | None = None,
        sampling: str = "centres",
    ) -> None:
        if num_frames < 1:
            raise ValueError(f"num_frames must be positive, got {num_frames}")
        self.name = name
        self.evidence_fn = evidence_fn
        self.scorer = scorer or TubeScorer()
        self.num_frames = num_frames
        self.grid = grid
        self.track_filter = track_filter
        self.sampling = sampling

    def ground(self, video: str | Path | Clip, query: str, tracks: Sequence[Track]) -> GroundingResult:
        """Ground ``query`` in ``video`` (a file or a sampled :class:`Clip`) on ``tracks``.

        Returns:
            A :class:`GroundingResult` with the evidence ``(T, h, w)``; ``extras`` hold
            ``baseline`` (the name) and ``num_tracks``. No tracks give an empty tube.
        """
        clip = (
            video
            if isinstance(video, Clip)
            else sample_uniform(video, self.num_frames, sampling=self.sampling)
        )
        tracks = list(tracks)
        evidence = self.evidence_fn(clip, query, self.grid)
        result = self.scorer.ground(
            evidence, tracks, clip.frame_ids, clip.num_frames, clip.width, clip.height
        )
        result.extras.update(baseline=self.name, num_tracks=len(tracks))
        return result

    def ground_sample(self, sample: Sample, tracks: Sequence[Track] | None = None) -> GroundingResult:
        """:meth:`ground` on a dataset sample (the runner's protocol); ``tracks`` are required."""
        if tracks is None:
            raise STVGError(f"the {self.name} baseline grounds on proposal tracks: pass tracks=")
        tracks = list(tracks)
        if self.track_filter is not None:
            tracks = self.track_filter(sample, tracks)
        return self.ground(sample.video, sample.sentence, tracks)
