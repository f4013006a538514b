"""MLLM adapters: one per model family behind one protocol (see ``base``), and a registry.

Load with :func:`load_adapter` (by checkpoint ``model_type`` or ``family=``); an adapter's
``prepare(clip, question)`` gives :class:`PreparedInputs`, its ``forward`` an :class:`MLLMOutput`.
"""

from zsgrounding.mllm.base import MLLMAdapter, MLLMOutput, PreparedInputs, add_visual_delta
from zsgrounding.mllm.errors import ModelError
from zsgrounding.mllm.preprocess import FramePreprocessing, preprocess_frames
from zsgrounding.mllm.registry import REGISTRY, AdapterEntry, load_adapter

__all__ = [
    "REGISTRY",
    "AdapterEntry",
    "FramePreprocessing",
    "MLLMAdapter",
    "MLLMOutput",
    "ModelError",
    "PreparedInputs",
    "add_visual_delta",
    "load_adapter",
    "preprocess_frames",
]
