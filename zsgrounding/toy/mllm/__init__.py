"""A toy MLLM of a real class, trained on the toy world so the training-free grounder has something to find.

The model is a small ``LlavaOnevisionForConditionalGeneration`` (SigLIP tower, projector with 2x
pooling, Qwen2 language model) with a word-level tokenizer and a Qwen chat template, trained in
three stages (:mod:`zsgrounding.toy.mllm.stages`) with text supervision only, and saved as a
checkpoint directory that :func:`zsgrounding.mllm.load_adapter` loads like LLaVA-OneVision-7B.

- :func:`pretrain`: run the recipe and save the checkpoint (``benchmarks/toy_pretrain.py``).
- :func:`evaluate_vqa` / :func:`attention_check`: held-out numbers through the adapter.
- The shipped checkpoint is ``zsgrounding/toy/assets/toy_mllm`` (:data:`zsgrounding.assets.TOY_MLLM`);
  ``--model toy`` resolves to it through :func:`zsgrounding.assets.resolve_model`.
"""

from __future__ import annotations

from zsgrounding.toy.mllm.config import CurriculumPhase, StageSchedule, ToyMLLMConfig, ToyPretrainConfig
from zsgrounding.toy.mllm.evaluate import EvalConfig, attention_check, evaluate_checkpoint, evaluate_vqa
from zsgrounding.toy.mllm.tokenizer import build_tokenizer
from zsgrounding.toy.mllm.train import pretrain

__all__ = [
    "CurriculumPhase",
    "EvalConfig",
    "StageSchedule",
    "ToyMLLMConfig",
    "ToyPretrainConfig",
    "attention_check",
    "build_tokenizer",
    "evaluate_checkpoint",
    "evaluate_vqa",
    "pretrain",
]
