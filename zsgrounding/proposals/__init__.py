"""Object proposals: Grounding DINO detections linked into tracks (SAM2 or IoU), and their store.

- :mod:`~zsgrounding.proposals.grounding_dino`: text-prompted detection per frame.
- :mod:`~zsgrounding.proposals.sam2`: box prompts propagated into mask tracks.
- :mod:`~zsgrounding.proposals.tracker`: IoU + Hungarian linking of detections, no second model.
- :mod:`~zsgrounding.proposals.extract`: detector + tracker on one clip.
- :mod:`~zsgrounding.proposals.store`: one JSON track file per video (masks as COCO RLE).
- :mod:`~zsgrounding.proposals.reference`: importer of the zero-shot paper's released proposal files.
- :mod:`~zsgrounding.proposals.source`: where a grounder's tracks come from.

Model code is imported on use, so reading stored tracks never loads transformers' detectors.
"""

from zsgrounding.proposals.detections import FrameDetections
from zsgrounding.proposals.source import CachedProposer, make_proposer
from zsgrounding.proposals.store import TrackStore

__all__ = ["CachedProposer", "FrameDetections", "TrackStore", "make_proposer"]
