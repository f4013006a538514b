"""Fixtures of the SpaceVLLM tests: a tiny LLaVA-OneVision base whose tokenizer can write times.

The shared tiny tokenizer (``tests/tiny_models.py``) has no digits; this one adds them (one token
per digit), spaces as tokens and the instruction's words, and decodes by plain concatenation, so
``decode(encode(text)) == text`` for in-vocabulary text.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import QWEN_TEMPLATE, SPECIAL_TOKENS, WORDS, tiny_llava_config
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import LlavaOnevisionForConditionalGeneration, PreTrainedTokenizerFast

from spacevllm.config import SpaceVLLMConfig
from spacevllm.model import SpaceVLLM
from zsgrounding.mllm.llava_onevision import LlavaOnevisionAdapter
from zsgrounding.types import Clip

EXTRA_WORDS = [
    " ", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", '"', "s", "This", "seconds", "long", "and",
    "frames", "were", "taken", "from", "it", "at", "equal", "intervals", "During", "which", "time",
    "does", "event", "sentence", "happen", "Answer", "with", "its", "start", "end", "From", "to",
    "Locate", "object", "that", "describes", "image", "small", "yellow", "moves",
]  # fmt: skip

NUM_FRAMES = 4
SIZE = 64  # the tiny tower's input: 8 x 8 patches pooled to a 4 x 4 grid
GRID = (4, 4)
CAPTION = "the red circle moving left"


def svl_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {w: i for i, w in enumerate(dict.fromkeys(WORDS + EXTRA_WORDS))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r" "), behavior="isolated"),
            pre_tokenizers.Split(Regex(r"\n"), behavior="isolated"),
            pre_tokenizers.Punctuation(behavior="isolated"),
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="<|endoftext|>", eos_token="<|im_end|>"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    tokenizer.chat_template = QWEN_TEMPLATE
    return tokenizer


def base_adapter(seed: int = 0) -> LlavaOnevisionAdapter:
    """A fresh tiny base (its own tokenizer: adding the query tokens mutates it)."""
    tokenizer = svl_tokenizer()
    torch.manual_seed(seed)
    model = LlavaOnevisionForConditionalGeneration(tiny_llava_config(tokenizer)).eval()
    return LlavaOnevisionAdapter(model, tokenizer)


def svl_config(**overrides: object) -> SpaceVLLMConfig:
    settings: dict[str, object] = {"num_frames": NUM_FRAMES, "head_hidden": 32, "max_new_tokens": 8}
    settings.update(overrides)
    return SpaceVLLMConfig(**settings)  # type: ignore[arg-type]


def make_model(seed: int = 0, **overrides: object) -> SpaceVLLM:
    model = SpaceVLLM.from_adapter(base_adapter(seed), svl_config(**overrides))
    torch.manual_seed(seed + 1)
    for p in model.decoder.parameters():  # a decoder that does not depend on construction order
        torch.nn.init.normal_(p, std=0.1)
    return model


def make_clip(num_frames: int = NUM_FRAMES, seed: int = 0, width: int = 80, height: int = 60) -> Clip:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, size=(num_frames, height, width, 3), dtype=np.uint8)
    fps = 10.0
    frame_ids = np.arange(num_frames, dtype=np.int64) * 10 + 5
    return Clip(frames, frame_ids, frame_ids / fps, fps, num_frames * 10, width, height)


@pytest.fixture(name="make_model")
def _make_model() -> Callable[..., SpaceVLLM]:
    """``make_model(seed=0, **config_overrides)``: a tiny SpaceVLLM (4 query tokens)."""
    return make_model


@pytest.fixture(name="make_clip")
def _make_clip() -> Callable[..., Clip]:
    """``make_clip(num_frames=4, seed=0, width=80, height=60)``: random frames at ids 5, 15, ... (10 fps)."""
    return make_clip


@pytest.fixture(name="base_adapter")
def _base_adapter() -> Callable[..., LlavaOnevisionAdapter]:
    return base_adapter


@pytest.fixture(name="svl_config")
def _svl_config() -> Callable[..., SpaceVLLMConfig]:
    return svl_config


@pytest.fixture(scope="session")
def svl_base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny base saved as a checkpoint folder (for from_base / from_pretrained)."""
    directory = tmp_path_factory.mktemp("svl_base")
    adapter = base_adapter(0)
    adapter.model.save_pretrained(directory)
    adapter.tokenizer.save_pretrained(directory)
    return directory
