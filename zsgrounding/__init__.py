"""zsgrounding: spatio-temporal video grounding, training-free and supervised, in one toolkit.

The public API, in one import::

    from zsgrounding import ZeroShotConfig, ZeroShotGrounder, make_proposer

    grounder = ZeroShotGrounder(ZeroShotConfig.preset("reference-hcstvg-v2"), proposer=make_proposer("tracks"))
    result = grounder.ground("clip.mp4", "the man in the red shirt who turns around")

Layers (``tools/layers.py`` checks them): the core (this package outside its subpackages:
types, video, boxes, tubes, metrics, datasets, mllm adapters, proposals, runner, compare, viz)
is shared by both paradigms; :mod:`zsgrounding.zeroshot` is the training-free method,
:mod:`zsgrounding.toy` the toy world, ``spacevllm`` the supervised head, and
:mod:`zsgrounding.apps` the demo. The names below are loaded on first use, so importing the core
never loads the method, the toy world or a model library it does not need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    # types
    "Clip": "zsgrounding.types",
    "GroundTruth": "zsgrounding.types",
    "GroundingResult": "zsgrounding.types",
    "Sample": "zsgrounding.types",
    "Track": "zsgrounding.types",
    "Tube": "zsgrounding.types",
    # data, evaluation and runs
    "load_dataset": "zsgrounding.datasets",
    "evaluate": "zsgrounding.metrics",
    "load_predictions": "zsgrounding.predictions",
    "save_predictions": "zsgrounding.predictions",
    "RunConfig": "zsgrounding.runner",
    "run_dataset": "zsgrounding.runner",
    "TubeScorer": "zsgrounding.tubes",
    "TubeScorerConfig": "zsgrounding.tubes",
    "load_adapter": "zsgrounding.mllm",
    "make_proposer": "zsgrounding.proposals",
    "STVGError": "zsgrounding.errors",
    # the training-free method
    "ZeroShotConfig": "zsgrounding.zeroshot.pipeline",
    "ZeroShotGrounder": "zsgrounding.zeroshot.pipeline",
    "LRAConfig": "zsgrounding.zeroshot.lra",
    "PRESETS": "zsgrounding.zeroshot.presets",
    "Decomposer": "zsgrounding.zeroshot.decompose",
}

__all__ = [
    "PRESETS",
    "Clip",
    "Decomposer",
    "GroundTruth",
    "GroundingResult",
    "LRAConfig",
    "RunConfig",
    "STVGError",
    "Sample",
    "Track",
    "Tube",
    "TubeScorer",
    "TubeScorerConfig",
    "ZeroShotConfig",
    "ZeroShotGrounder",
    "__version__",
    "evaluate",
    "load_adapter",
    "load_dataset",
    "load_predictions",
    "make_proposer",
    "run_dataset",
    "save_predictions",
]

if TYPE_CHECKING:
    from zsgrounding.datasets import load_dataset
    from zsgrounding.errors import STVGError
    from zsgrounding.metrics import evaluate
    from zsgrounding.mllm import load_adapter
    from zsgrounding.predictions import load_predictions, save_predictions
    from zsgrounding.proposals import make_proposer
    from zsgrounding.runner import RunConfig, run_dataset
    from zsgrounding.tubes import TubeScorer, TubeScorerConfig
    from zsgrounding.types import Clip, GroundingResult, GroundTruth, Sample, Track, Tube
    from zsgrounding.zeroshot.decompose import Decomposer
    from zsgrounding.zeroshot.lra import LRAConfig
    from zsgrounding.zeroshot.pipeline import ZeroShotConfig, ZeroShotGrounder
    from zsgrounding.zeroshot.presets import PRESETS


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'zsgrounding' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
