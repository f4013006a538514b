"""The toy world's oracle proposals: every object's exact track, read from the dataset's sidecar.

The stand-in for a perfect detector and tracker (every object of the clip, not only the target),
so a toy run measures the grounding evidence, not a detector.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zsgrounding.datasets.toy import load_sidecar, sidecar_tracks
from zsgrounding.errors import DatasetError
from zsgrounding.types import Clip, Track

__all__ = ["ToyProposer"]


class ToyProposer:
    """The object tracks of the toy folder ``toy_dir``; a proposer ``(clip, noun_phrase, key) -> tracks``."""

    def __init__(self, toy_dir: Path | str) -> None:
        self.videos: dict[str, Any] = load_sidecar(Path(toy_dir))["videos"]

    def __call__(self, clip: Clip, noun_phrase: str = "", key: str | None = None) -> list[Track]:
        if key is None or key not in self.videos:
            raise DatasetError(f"the toy sidecar has no video {key!r}")
        return sidecar_tracks(self.videos[key])
