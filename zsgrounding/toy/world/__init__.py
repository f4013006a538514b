"""The toy world: seeded videos of coloured shapes with captions and ground-truth tubes.

No real dataset or weight can be downloaded, so the project carries this world of its own. Each
video shows 2-4 shapes; one is the target of a caption made of two separable phrases::

    "the big red circle"  +  "that moves left"  ->  "the big red circle that moves left"
     attribute phrase          action phrase

Grammar (exact, see :class:`CaptionParts`): ``the [size] <colour> <shape> that <verb>``, where the
size word is optional and every word comes from :data:`COLOURS`, :data:`SHAPES`, :data:`SIZES`
and the verbs of :data:`ACTIONS`.

Semantics of an object's actions (:meth:`ToyObject.action_spans`), half-open native frames:

- ``move_left/right/up/down``, ``grow``, ``shrink``: a motion segment ``[s, e)``; outside its
  motion segments a visible object stays where it is. An object does each motion at most once.
- ``appear``: the object pops in at frame ``v0 > 0`` and stays to the end: span ``[v0, T)``.
- ``leave``: the object is there from the start and pops out at ``v1 < T``: span ``[0, v1)``.
- ``stay_still``: visible the whole video and never moves: span ``[0, T)``.

The GT tube is the target's span for the captioned action. Every other object is a distractor
that shares either the attribute phrase (it matches it, but never does the action) or the action
(it does it, but does not match the attribute phrase), never both: only the target fits the
whole caption, so both cues are needed.

Sizes: a ``small`` object's box side stays within ``[small/f, small*f]`` and a ``big`` one within
``[big/f, big*f]`` for the grow/shrink factor ``f``; the config keeps the two ranges apart.

Modules: :mod:`.config` (the vocabulary and :class:`ToyWorldConfig`), :mod:`.videos` (caption
parts, objects, videos), :mod:`.scenes` (scene generation: :func:`generate_one`), :mod:`.render`
(drawing the frames) and :mod:`.files` (:func:`make_dataset`); this package re-exports what it
always exported, and the sidecar readers of :mod:`zsgrounding.datasets.toy`.
"""

from __future__ import annotations

from zsgrounding.datasets.toy import load_sidecar, sidecar_meta, sidecar_tracks
from zsgrounding.toy.world.config import ACTIONS, COLOURS, MOTIONS, SHAPES, SIZES, ToyWorldConfig
from zsgrounding.toy.world.files import make_dataset
from zsgrounding.toy.world.scenes import generate, generate_one, object_tracks
from zsgrounding.toy.world.videos import CaptionParts, Segment, ToyObject, ToyVideo

__all__ = [
    "ACTIONS",
    "COLOURS",
    "MOTIONS",
    "SHAPES",
    "SIZES",
    "CaptionParts",
    "Segment",
    "ToyObject",
    "ToyVideo",
    "ToyWorldConfig",
    "generate",
    "generate_one",
    "load_sidecar",
    "make_dataset",
    "object_tracks",
    "sidecar_meta",
    "sidecar_tracks",
]
