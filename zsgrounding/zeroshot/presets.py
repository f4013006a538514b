"""Named settings of the training-free grounder: the released code's, per dataset, and the paper's.

*Unleashing the Potential of Multimodal LLMs for Zero-Shot Spatio-Temporal Video Grounding*
(Yang et al.) was run with the authors' released code (``zaiquanyang/LLaVA_Next_STVG``, the
revision whose LRA / TAS code runs: ``cb741cc``). Where that code, the paper's text and this
toolkit's own defaults differ, each is a setting of :class:`~zsgrounding.zeroshot.pipeline.ZeroShotConfig`,
and the presets below fix them:

- ``reference-hcstvg-v2``, ``reference-hcstvg-v1``, ``reference-vidstg``: what the released code
  computes for that dataset; the model family decides the query token, the pooling, the frame
  size and the LRA / TAS variant;
- ``paper``: the paper's description (the grounding token by highest visual activation, the
  top-k frames for the span), everything else as ``reference-hcstvg-v2``.

The settings, per family:

====================  ==================  ==================  ==================
setting               LLaVA-NeXT-Video    LLaVA-OneVision     Qwen2-VL
====================  ==================  ==================  ==================
query token           -5 (``▁A``)         -3 (``<|im_start|>``)  -3
frames                20 (``int`` of linspace, both ends), resized to a square first
square frame size     336                 336                 224
visual tokens         pool stride 4 after the projector (6 x 6)   stride 5 bilinear (6 x 6)   8 x 8, every frame shown twice
prompt                vicuna_v1           qwen_1_5            the checkpoint's
TAS                   yes                 yes                 no (the released Qwen code has none)
temporal maps         action question     action question     whole query, latent tuned on the action
====================  ==================  ==================  ==================

Shared: relative attention over ``please describe this video`` (``+1e-4``), the mean of all
layers and heads, LRA with 2 steps of 8.0 and ``beta`` 0.5 on the released schedule, the bare
``yes`` / ``no`` pieces, the point-sampled track score, the span grown from the peak at native
resolution until ``frames_thre + 1`` frames (ties stop), ``frames_thre`` 10 on HC-STVG v2, 7 on
v1. The released scripts hold no full-method VidSTG run for these families (their VidSTG blocks
are Qwen2-VL baselines with 20 frames and ``frames_thre`` 10), so ``reference-vidstg`` is the
HC-STVG v2 method with those values.

Deliberate differences from the released code (``docs/reproducing.md`` has the full audit):

- frames are sampled over the whole video, not over the frame list of the released proposal
  files (every 10th frame on HC-STVG), so proposals of any origin line up with them;
- Qwen2-VL always gets its M-RoPE positions; the released code passed embeddings alone to
  ``generate``, which depending on its transformers version may have given 1-D positions;
- a blank last element of a decomposition list counts as a failed decomposition (the whole
  query), where the released code would ask "Is there  in this video?";
- ``paper``: the paper's k of the top-k span is not in its text, so it uses the reference window.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from zsgrounding.errors import STVGError
from zsgrounding.tubes import TubeScorerConfig

if TYPE_CHECKING:
    from zsgrounding.zeroshot.pipeline import ZeroShotConfig

__all__ = ["DATASET_PRESETS", "PRESETS", "REFERENCE_GENERIC_QUESTION", "family_settings", "make_preset"]

# The released code's generic prompt, exactly (lower case, no period).
REFERENCE_GENERIC_QUESTION = "please describe this video"

# frames_thre of the released scripts: the span holds frames_thre + 1 sampled frames.
_FRAMES_THRE = {"reference-hcstvg-v2": 10, "reference-hcstvg-v1": 7, "reference-vidstg": 10}
PRESETS = (*_FRAMES_THRE, "paper")

# The reference preset `stvg eval` uses for each dataset it knows.
DATASET_PRESETS = {
    "hcstvg-v2": "reference-hcstvg-v2",
    "hcstvg-v1": "reference-hcstvg-v1",
    "vidstg": "reference-vidstg",
}

_FAMILIES = ("llava_next_video", "llava_onevision", "qwen2_vl")


def family_settings(family: str) -> dict[str, Any]:
    """The released code's per-family settings: config fields and ``AdapterOptions``."""
    # Imported here so that the preset names load without torch (the CLI's option list).
    from zsgrounding.mllm.options import AdapterOptions

    common = {"prompt": "reference", "answer_tokens": "bare"}
    if family == "llava_next_video":
        options = AdapterOptions(frame_size=336, pool_stride=4, pool_order="project_then_pool", **common)
        return {"fixed_index": -5, "tas": True, "temporal_map_question": "sub_query", "adapter": options}
    if family == "llava_onevision":
        options = AdapterOptions(frame_size=336, pool_stride=5, latent_on_separators=True, **common)
        return {"fixed_index": -3, "tas": True, "temporal_map_question": "sub_query", "adapter": options}
    if family == "qwen2_vl":
        options = AdapterOptions(frame_size=224, repeat_frames=2, **common)
        return {"fixed_index": -3, "tas": False, "temporal_map_question": "query", "adapter": options}
    raise STVGError(f"no reference settings for the MLLM family {family!r}; known: {', '.join(_FAMILIES)}")


def make_preset(name: str, family: str, base: ZeroShotConfig) -> ZeroShotConfig:
    """``base`` (model, device, dtype kept) with every setting of preset ``name`` for ``family``."""
    from zsgrounding.zeroshot.lra import LRAConfig  # torch: imported when a preset is made, not for its name

    if name not in PRESETS:
        raise STVGError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    window = _FRAMES_THRE.get(name, _FRAMES_THRE["reference-hcstvg-v2"]) + 1
    config = replace(
        base,
        preset_name=name,
        family=base.family,
        num_frames=20,
        sampling="linspace",
        gti="fixed",
        spatial_prompt=True,
        temporal_prompt=True,
        layers=None,
        relative=True,
        question_style="reference",
        lra=LRAConfig(
            steps=2,
            step_size=8.0,
            smoothing=0.5,
            schedule="reference",
            contrast="generic",
            generic_question=REFERENCE_GENERIC_QUESTION,
        ),
        scorer=TubeScorerConfig(
            weighting="point",
            span_method="reference",
            span_frames=window,
            span_scores="native",
            span_bounds="sampled",
        ),
        **family_settings(family),
    )
    if name == "paper":
        # The paper's text: GTI picks the token of highest visual activation, the span is the
        # top-k frames; its k is not in the text, so the reference window size stands in.
        config = replace(config, gti="max_activation", scorer=replace(config.scorer, span_method="topk_hull"))
    return config
