"""Training data of the toy MLLM: a pre-rendered clip bank and the text of each stage.

- :mod:`.facts`: what a set of sampled frames shows of each object (:func:`seen_objects`): its
  attributes, the actions those frames show it doing, the actions it does that they may not show
  (never asked), and where it is.
- :mod:`.text`: text per stage: descriptions of whole frames and of zoomed views around an object,
  with hard negatives (stage 1; for a tower over frame pairs, descriptions of the pair that say
  what each object does between its two frames, with motion-swapped negatives); clip captions
  (stage 2).
- :mod:`.questions`: yes/no questions with hard negatives (stage 3).
- :mod:`.bank`: :class:`ClipBank`, toy-world clips rendered once, ``bank_frames`` uniformly
  sampled frames per clip resized to the tower's input (PIL bicubic, as the adapter does), kept
  as one uint8 tensor.
- :mod:`.batches`: :class:`Sampler`, seeded batches of token ids with labels on the answers only,
  and a curriculum.

Supervision is text only: boxes and spans are read to decide what is true of the sampled frames
(and where a zoomed view may be cut), never given to the model. This package re-exports every
name of its modules.
"""

from __future__ import annotations

from zsgrounding.toy.mllm.data.bank import (
    PAIR_GAPS,
    ClipBank,
    build_bank,
    chroma_subsample,
    even_frames,
    pick_frames,
    pick_pairs,
)
from zsgrounding.toy.mllm.data.batches import Sampler, TextBatch, collate, held_out_questions
from zsgrounding.toy.mllm.data.facts import (
    ATTRIBUTES,
    MIN_SEEN_MOTION,
    Description,
    Place,
    SeenObject,
    answer,
    box_place,
    nearby_place,
    place_of,
    place_phrase,
    seen_objects,
)
from zsgrounding.toy.mllm.data.questions import REVERSE_ACTIONS, Question, make_question, shares_with_clip
from zsgrounding.toy.mllm.data.text import (
    BASE_VERBS,
    CAPTION_TASKS,
    PAIR_MOTIONS,
    PairObject,
    action_checklist,
    caption,
    colour_checklist,
    frame_description,
    motion_perturbed,
    pair_description,
    pair_motion,
    perturbed,
    place_list,
    question_text,
    shape_checklist,
)

__all__ = [
    "ATTRIBUTES",
    "BASE_VERBS",
    "CAPTION_TASKS",
    "MIN_SEEN_MOTION",
    "PAIR_GAPS",
    "PAIR_MOTIONS",
    "REVERSE_ACTIONS",
    "ClipBank",
    "Description",
    "PairObject",
    "Place",
    "Question",
    "Sampler",
    "SeenObject",
    "TextBatch",
    "action_checklist",
    "answer",
    "box_place",
    "build_bank",
    "caption",
    "chroma_subsample",
    "collate",
    "colour_checklist",
    "even_frames",
    "frame_description",
    "held_out_questions",
    "make_question",
    "motion_perturbed",
    "nearby_place",
    "pair_description",
    "pair_motion",
    "perturbed",
    "pick_frames",
    "pick_pairs",
    "place_list",
    "place_of",
    "place_phrase",
    "question_text",
    "seen_objects",
    "shape_checklist",
    "shares_with_clip",
]
