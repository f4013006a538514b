"""Where a grounder's object tracks come from: the track store or extraction.

A proposer is any callable ``(clip, noun_phrase, key) -> list[Track]``. :class:`CachedProposer`
gives tracks from a :class:`TrackStore` file when it holds tracks made with the same settings
(noun phrase and sampled frames included), else extracts them with Grounding DINO + SAM2 / the
IoU tracker and saves them, so a second run never extracts again. (The toy world's oracle
proposer is :class:`zsgrounding.toy.proposer.ToyProposer`.)

Two kinds of stored file are used whatever the settings asked for, on the nearest stored frames
(:func:`~zsgrounding.proposals.align.align_tracks`): *imported* files (their settings carry a
``"source"``, as :func:`~zsgrounding.proposals.reference.import_reference_dir` writes), which
hold tracks made elsewhere and are never re-extracted; and every file of a store read *as stored*
(``CachedProposer(store, None, settings=None)``, e.g. ``stvg pilot --proposals``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from zsgrounding.errors import DatasetError
from zsgrounding.proposals.align import align_tracks
from zsgrounding.proposals.store import TrackStore, warn_stale
from zsgrounding.types import Clip, Track

__all__ = ["IMPORTED", "CachedProposer", "make_proposer"]

# The settings key that marks a file of tracks made elsewhere (see the module docstring).
IMPORTED = "source"

Extract = Callable[[Clip, str], list[Track]]


class CachedProposer:
    """Store first, extraction second.

    Args:
        store: the track files (``None``: never cached).
        extract: ``(clip, noun_phrase) -> tracks``, e.g. a :class:`~zsgrounding.proposals.extract.Proposer`;
            ``None`` means store only (a missing file is an error).
        settings: what the tracks depend on besides the clip and noun phrase (model ids,
            thresholds); stored with the tracks, a mismatch re-extracts. ``None`` with no
            ``extract``: every stored file is used as it is (aligned to the sampled frames).
    """

    def __init__(
        self, store: TrackStore | None, extract: Extract | None, settings: Mapping[str, Any] | None = None
    ) -> None:
        if store is None and extract is None:
            raise ValueError("a proposer needs a track store, an extractor, or both")
        self.store = store
        self.extract = extract
        self.as_stored = settings is None and extract is None
        self.settings = dict(settings or {})

    def _settings(self, clip: Clip, noun_phrase: str) -> dict[str, Any]:
        return {**self.settings, "noun_phrase": noun_phrase, "frames": [int(f) for f in clip.frame_ids]}

    def _stored(self, clip: Clip, video_key: str, settings: dict[str, Any]) -> list[Track] | None:
        assert self.store is not None
        stored = self.store.read(video_key)
        if stored is None:
            return None
        if self.as_stored or IMPORTED in stored.settings:
            return align_tracks(stored.tracks, clip.frame_ids)
        if stored.made_with(settings):
            return stored.tracks
        warn_stale(stored, settings)
        return None

    def __call__(self, clip: Clip, noun_phrase: str, key: str | None = None) -> list[Track]:
        video_key = key if key is not None else (clip.path.name if clip.path is not None else None)
        settings = self._settings(clip, noun_phrase)
        if self.store is not None and video_key is not None:
            tracks = self._stored(clip, video_key, settings)
            if tracks is not None:
                return tracks
        if self.extract is None:
            where = self.store.path(video_key) if (self.store and video_key) else "the track store"
            what = "" if self.as_stored else " with these settings"
            raise DatasetError(f"no stored tracks for {video_key!r}{what} ({where})")
        tracks = self.extract(clip, noun_phrase)
        if self.store is not None and video_key is not None:
            self.store.save(video_key, tracks, settings, clip.num_frames, clip.width, clip.height)
        return tracks


def make_proposer(
    store_dir: Path | str | None = None,
    detector: str | None = None,
    tracker: str = "sam2",
    sam2: str | None = None,
    device: str | None = None,
    box_threshold: float = 0.25,
    text_threshold: float = 0.3,
    track_fps: float | None = 5.0,
) -> CachedProposer:
    """The proposer the command-line options describe.

    Tracks come from the store under ``store_dir`` and, for videos it lacks, from Grounding DINO +
    SAM2 (or the IoU tracker), loaded on first use; the models default to the reference's
    (Grounding DINO tiny, SAM2.1 tiny). Tracking runs on ``track_fps`` frames per second plus the
    sampled frames (``None``: the sampled frames only).
    """
    from zsgrounding.proposals.extract import ProposalConfig

    defaults = ProposalConfig()
    config = ProposalConfig(
        detector=detector or defaults.detector,
        tracker=tracker,  # type: ignore[arg-type]
        sam2=sam2 or defaults.sam2,
        device=device,
        box_threshold=box_threshold,
        text_threshold=text_threshold,
        track_fps=track_fps,
    )
    # Everything the tracks depend on: a change makes stored tracks stale, so they are redone.
    settings = {
        "detector": config.detector,
        "tracker": config.tracker,
        "sam2": config.sam2 if config.tracker == "sam2" else None,
        "box_threshold": box_threshold,
        "text_threshold": text_threshold,
        "track_fps": track_fps,
        "detect_every": config.detection_step,
        "loop": dataclasses.asdict(config.loop) if config.tracker == "sam2" else None,
    }
    store = TrackStore(store_dir) if store_dir is not None else None
    return CachedProposer(store, _LazyProposer(config), settings)


class _LazyProposer:
    """Loads the detector and tracker on the first video that needs them (stored tracks need neither)."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self._proposer: Any = None

    def __call__(self, clip: Clip, noun_phrase: str) -> list[Track]:
        if self._proposer is None:
            from zsgrounding.proposals.extract import Proposer

            self._proposer = Proposer.from_config(self.config)
        return self._proposer(clip, noun_phrase)
