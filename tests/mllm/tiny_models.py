"""Tiny offline MLLM checkpoints for the adapter tests: word-level tokenizer, random weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tokenizers import Regex, Tokenizer, models, pre_tokenizers
from transformers import (
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    PreTrainedTokenizerFast,
    Qwen2Config,
    SiglipVisionConfig,
)

from zsgrounding.types import Clip

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
WORDS = [
    "[UNK]", "\n", "system", "user", "assistant", "You", "are", "a", "helpful", ".", "?", ",",
    "is", "there", "the", "red", "blue", "circle", "square", "moving", "left", "in", "this",
    "video", "please", "describe", "yes", "no", "Yes", "No", "cat",
]  # fmt: skip

# Qwen2's template shape: string content, a default system turn, the assistant header last.
QWEN_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if loop.first and message['role'] != 'system' %}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Processor-style template (content parts, visual parts first), here without a line break after
# the end of turn: the special tokens must follow the template, not fixed offsets.
PARTS_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + ' ' }}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>' }}{% endfor %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ '\\n' + part['text'] }}{% endfor %}{{ '<|im_end|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

IMAGE_SIZE = 64
PATCH = 8  # 8 x 8 patches per frame, pooled to 4 x 4
GRID = (4, 4)
N_FRAMES = 3
N_LAYERS = 3
N_HEADS = 4
QUESTION = "is there a red circle moving left in this video?"


def make_tokenizer(chat_template: str | None = QWEN_TEMPLATE) -> PreTrainedTokenizerFast:
    """Word-level tokenizer: spaces dropped, newlines and punctuation kept as tokens."""
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"[^\S\n]+"), behavior="removed"),
            pre_tokenizers.Split(Regex(r"\n"), behavior="isolated"),
            pre_tokenizers.Punctuation(behavior="isolated"),
        ]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    tokenizer.chat_template = chat_template
    return tokenizer


def tiny_llava_config(tokenizer: PreTrainedTokenizerFast) -> LlavaOnevisionConfig:
    vision = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH,
        vision_use_head=False,
    )
    text = Qwen2Config(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=N_LAYERS,
        num_attention_heads=N_HEADS,
        num_key_value_heads=2,
        vocab_size=len(tokenizer),
        max_position_embeddings=256,
    )
    return LlavaOnevisionConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
    )


def save_tiny_llava(directory: Path) -> Path:
    """A LLaVA-OneVision checkpoint directory as a real one is laid out (model, tokenizer, preprocessor)."""
    tokenizer = make_tokenizer()
    torch.manual_seed(0)
    model = LlavaOnevisionForConditionalGeneration(tiny_llava_config(tokenizer)).eval()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    preprocessor = {
        "image_processor_type": "LlavaOnevisionImageProcessor",
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "resample": 3,
        "rescale_factor": 1 / 255,
        "size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        "do_rescale": True,
        "do_normalize": True,
    }
    (directory / "preprocessor_config.json").write_text(json.dumps(preprocessor), encoding="utf-8")
    return directory


def make_clip(
    num_frames: int = N_FRAMES, height: int = IMAGE_SIZE, width: int = IMAGE_SIZE, seed: int = 0
) -> Clip:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, size=(num_frames, height, width, 3), dtype=np.uint8)
    frame_ids = np.arange(num_frames, dtype=np.int64) * 5 + 2
    return Clip(
        frames=frames,
        frame_ids=frame_ids,
        times=frame_ids / 25.0,
        fps=25.0,
        num_frames=int(frame_ids[-1]) + 1,
        width=width,
        height=height,
    )
