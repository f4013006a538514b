"""ZeroShotConfig presets resolve to every setting of the released code (per family) or the paper."""

from __future__ import annotations

import pytest

from zsgrounding.errors import STVGError
from zsgrounding.mllm.options import AdapterOptions
from zsgrounding.zeroshot.pipeline import ZeroShotConfig
from zsgrounding.zeroshot.presets import DATASET_PRESETS, PRESETS

SHARED = {
    "num_frames": 20,
    "sampling": "linspace",
    "gti": "fixed",
    "spatial_prompt": True,
    "temporal_prompt": True,
    "layers": None,
    "relative": True,
    "question_style": "reference",
}
FAMILIES = {
    "llava_next_video": {
        "fixed_index": -5,
        "tas": True,
        "temporal_map_question": "sub_query",
        "adapter": AdapterOptions(
            frame_size=336,
            pool_stride=4,
            pool_order="project_then_pool",
            prompt="reference",
            answer_tokens="bare",
        ),
    },
    "llava_onevision": {
        "fixed_index": -3,
        "tas": True,
        "temporal_map_question": "sub_query",
        "adapter": AdapterOptions(
            frame_size=336, pool_stride=5, prompt="reference", answer_tokens="bare", latent_on_separators=True
        ),
    },
    "qwen2_vl": {
        "fixed_index": -3,
        "tas": False,
        "temporal_map_question": "query",
        "adapter": AdapterOptions(frame_size=224, prompt="reference", answer_tokens="bare", repeat_frames=2),
    },
}


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize(
    ("name", "window"), [("reference-hcstvg-v2", 11), ("reference-hcstvg-v1", 8), ("reference-vidstg", 11)]
)
def test_reference_presets_resolve_every_setting(family: str, name: str, window: int) -> None:
    config = ZeroShotConfig.preset(name, family=family)
    assert config.preset_name == name
    for field, value in {**SHARED, **FAMILIES[family]}.items():
        assert getattr(config, field) == value, field
    lra = config.lra
    assert (lra.steps, lra.step_size, lra.smoothing, lra.schedule, lra.contrast) == (
        2,
        8.0,
        0.5,
        "reference",
        "generic",
    )
    assert lra.generic_question == "please describe this video"
    scorer = config.scorer
    assert (scorer.weighting, scorer.span_method, scorer.span_scores, scorer.span_bounds) == (
        "point",
        "reference",
        "native",
        "sampled",
    )
    assert scorer.span_frames == window  # frames_thre + 1


def test_paper_preset_differs_in_token_choice_and_span_only() -> None:
    paper = ZeroShotConfig.preset("paper", family="llava_next_video")
    reference = ZeroShotConfig.preset("reference-hcstvg-v2", family="llava_next_video")
    assert paper.gti == "max_activation" and paper.scorer.span_method == "topk_hull"
    same = paper.ablation(gti=reference.gti, scorer=reference.scorer, preset_name=reference.preset_name)
    assert same == reference


def test_family_comes_from_the_checkpoint_and_overrides_win() -> None:
    # The shipped toy model is a LLaVA-OneVision checkpoint.
    config = ZeroShotConfig.preset("reference-hcstvg-v2", num_frames=8, tas=False)
    assert config.fixed_index == -3 and config.adapter.pool_stride == 5
    assert config.num_frames == 8 and config.tas is False
    assert ZeroShotConfig.preset("reference-hcstvg-v2", family="qwen2.5_vl").adapter.repeat_frames == 2


def test_unknown_names_are_one_line_errors() -> None:
    with pytest.raises(STVGError, match="unknown preset 'reference-hcstvg-v3'; known: "):
        ZeroShotConfig.preset("reference-hcstvg-v3")
    with pytest.raises(STVGError, match="unknown MLLM family"):
        ZeroShotConfig.preset("paper", family="gpt2")
    with pytest.raises(STVGError, match="sampling must be one of"):
        ZeroShotConfig(sampling="random")  # type: ignore[arg-type]


def test_every_dataset_preset_exists() -> None:
    assert set(DATASET_PRESETS.values()) <= set(PRESETS)
    assert set(DATASET_PRESETS) == {"hcstvg-v1", "hcstvg-v2", "vidstg"}
