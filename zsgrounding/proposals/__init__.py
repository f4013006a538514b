"""Object proposals: Grounding DINO detections linked into tracks (SAM2 or IoU), and their store.

- :mod:`~zsgrounding.proposals.grounding_dino`: text-prompted detection per frame.
- :mod:`~zsgrounding.proposals.segmenter`: what the tracking loop needs of a promptable video
  segmenter (SAM2 or a scripted stand-in).
- :mod:`~zsgrounding.proposals.loop`: the detect–track–correct loop (match, re-prompt, run new
  objects backwards, end, merge) with continuous ids.
- :mod:`~zsgrounding.proposals.sam2`: SAM2 as that segmenter, and the SAM2 tracker.
- :mod:`~zsgrounding.proposals.tracker`: IoU + Hungarian linking of detections, no second model.
- :mod:`~zsgrounding.proposals.extract`: detector + tracker on one clip's tracking frames.
- :mod:`~zsgrounding.proposals.store`: one JSON track file per video (masks as COCO RLE).
- :mod:`~zsgrounding.proposals.align`: stored tracks onto other sampled frames (nearest stored frame).
- :mod:`~zsgrounding.proposals.reference`: importer of the zero-shot paper's released proposal files.
- :mod:`~zsgrounding.proposals.trackfile`: the user's own track file (``stvg ground --tracks``).
- :mod:`~zsgrounding.proposals.source`: where a grounder's tracks come from.

docs/tracking.md explains the loop, the tracking frames and the benchmark.

Model code is imported on use, so reading stored tracks never loads transformers' detectors.
"""

from zsgrounding.proposals.detections import FrameDetections
from zsgrounding.proposals.source import CachedProposer, make_proposer
from zsgrounding.proposals.store import TrackStore

__all__ = ["CachedProposer", "FrameDetections", "TrackStore", "make_proposer"]
