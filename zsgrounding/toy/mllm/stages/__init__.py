"""The three training stages of the toy MLLM: the LLaVA recipe in miniature.

1. Vision pretraining: the SigLIP tower against short frame descriptions with the sigmoid loss
   (learnable temperature and bias); the text encoder of this stage is discarded afterwards.
2. Alignment: captions of the clip, first with only the projector (and the video newline)
   trained, then with the language model too.
3. Instruction tuning: multi-turn yes/no conversations with a curriculum and hard negatives.

The model's own modules do every step, so what is trained is what the model runs at inference:
for ``LlavaOnevisionForConditionalGeneration`` the SigLIP tower, projector, ``apply_pooling``,
newline and Qwen2 LM; for ``Qwen2VLForConditionalGeneration`` the frame-pair tower, its patch
merger (the projector) and the LM with M-RoPE positions from the model's ``get_rope_index``.
When the tower is frozen after stage 1 its outputs are computed once (:class:`VisualSource`): per
bank frame, or per training frame pair for Qwen2-VL, which makes stages 2 and 3 cheaper.

Modules: :mod:`.paths` (the model's own paths from frames to logits, :class:`VisualSource`),
:mod:`.optimisation` (the optimiser, which parameters train), :mod:`.stage1`, :mod:`.stage2` and
:mod:`.stage3`; this package re-exports their names.
"""

from __future__ import annotations

from zsgrounding.toy.mllm.stages.optimisation import (
    Log,
    StageResult,
    cell_head,
    fixed_parameters,
    module_parameters,
    optimise,
    trainable_parameters,
)
from zsgrounding.toy.mllm.stages.paths import (
    CellHead,
    ToyModel,
    VisualSource,
    batch_logits,
    frame_tokens,
    is_qwen,
    join_frames,
    language_logits,
    lm_loss,
    newline_parameters,
    projector_modules,
    to_pixels,
    tower_hidden,
    tower_modules,
    video_tokens,
)
from zsgrounding.toy.mllm.stages.stage1 import ImageHead, SigmoidContrast, TextEncoder, stage1_vision
from zsgrounding.toy.mllm.stages.stage2 import caption_scores, draw_frame_count, stage2_align
from zsgrounding.toy.mllm.stages.stage3 import phase_at, quick_vqa, stage3_instruct, vqa_groups, vqa_summary

__all__ = [
    "CellHead",
    "ImageHead",
    "Log",
    "SigmoidContrast",
    "StageResult",
    "TextEncoder",
    "ToyModel",
    "VisualSource",
    "batch_logits",
    "caption_scores",
    "cell_head",
    "draw_frame_count",
    "fixed_parameters",
    "frame_tokens",
    "is_qwen",
    "join_frames",
    "language_logits",
    "lm_loss",
    "module_parameters",
    "newline_parameters",
    "optimise",
    "phase_at",
    "projector_modules",
    "quick_vqa",
    "stage1_vision",
    "stage2_align",
    "stage3_instruct",
    "to_pixels",
    "tower_hidden",
    "tower_modules",
    "trainable_parameters",
    "video_tokens",
    "vqa_groups",
    "vqa_summary",
]
