"""The grounder factory shared by `stvg compare` and the demo: the spec grammar and the rows it builds."""

from __future__ import annotations

import pytest

from zsgrounding.apps.factory import (
    DEFAULT_COMPARE,
    GrounderSpec,
    SpecError,
    ablate,
    comparison_grounders,
    parse_grounder_spec,
    parse_grounder_specs,
)
from zsgrounding.baselines import BaselineGrounder
from zsgrounding.errors import STVGError
from zsgrounding.tubes import TubeScorer
from zsgrounding.zeroshot.decompose import Decomposer
from zsgrounding.zeroshot.pipeline import ZeroShotConfig, ZeroShotGrounder


def test_specs_parse_into_kinds_and_typed_flags() -> None:
    spec = parse_grounder_spec(" zero-shot:tas=false,gti=mean,layers=1:3,lra-steps=0,span_frames=4 ")
    assert spec == GrounderSpec(
        "zero-shot:tas=false,gti=mean,layers=1:3,lra-steps=0,span_frames=4",
        "zero-shot",
        {"tas": False, "gti": "mean", "layers": (1, 3), "lra_steps": 0, "span_frames": 4},
    )
    assert parse_grounder_spec("colour") == GrounderSpec("colour", "colour")
    assert [s.name for s in parse_grounder_specs([])] == list(DEFAULT_COMPARE)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("yolo", "unknown grounder 'yolo'"),
        ("colour:tas=false", "only zero-shot takes flags"),
        ("zero-shot:tas", "'tas' is not <flag>=<value>"),
        ("zero-shot:speed=2", "unknown flag 'speed'"),
        ("zero-shot:tas=maybe", "tas='maybe': expected true or false"),
        ("zero-shot:num_frames=0", "expected an integer >= 1"),
        ("zero-shot:layers=3:1", "need 0 <= LO < HI"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_grounder_spec(spec)


def test_a_name_given_twice_is_refused() -> None:
    with pytest.raises(SpecError, match="'colour' is given twice"):
        parse_grounder_specs(["colour", "zero-shot", "colour"])


def test_ablation_reaches_the_nested_settings() -> None:
    base = ZeroShotConfig()
    changed = ablate(base, {"lra_step_size": 2.0, "span_frames": 5, "tas": False})
    assert (changed.lra.step_size, changed.lra.steps) == (2.0, base.lra.steps)
    assert changed.scorer.span_frames == 5 and changed.tas is False
    assert ablate(base, {}) == base


def test_rows_share_one_scorer_and_one_model() -> None:
    scorer = TubeScorer()
    specs = parse_grounder_specs(["zero-shot", "zero-shot:tas=false", "centre", "oracle-track"])
    rows = comparison_grounders(
        specs, ZeroShotConfig(model="toy", num_frames=4), scorer, decomposer=Decomposer(llm=None), toy=True
    )
    assert list(rows) == [s.name for s in specs]
    first, second = rows["zero-shot"], rows["zero-shot:tas=false"]
    assert isinstance(first, ZeroShotGrounder) and first.adapter is second.adapter
    assert second.config.tas is False and first.config.tas is True
    assert isinstance(rows["centre"], BaselineGrounder) and rows["centre"].scorer is scorer
    assert rows["oracle-track"].scorer is scorer and rows["oracle-track"].num_frames == 4
    with pytest.raises(STVGError, match="oracle-track needs --dataset toy"):
        comparison_grounders(parse_grounder_specs(["oracle-track"]), ZeroShotConfig(), scorer)
