"""Tiny offline MLLM checkpoints for the adapter tests: word-level tokenizer, random weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaNextVideoConfig,
    LlavaNextVideoForConditionalGeneration,
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2Config,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
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


# --- Qwen2-VL / Qwen2.5-VL ---------------------------------------------------------------------

QWEN_VL_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]

# The Qwen2-VL processor's template shape: content parts, the video wrapped in vision start / end
# tokens and directly followed by the text, a default system turn, the assistant header last.
QWEN_VL_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if loop.first and message['role'] != 'system' %}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}"
    "{%- else %}{%- for part in message['content'] %}"
    "{%- if part['type'] == 'video' %}{{- '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{%- elif part['type'] == 'text' %}{{- part['text'] }}{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

QWEN_FACTOR = 28  # patch 14 x merge 2: pixels per visual token side
QWEN_FRAME = (56, 84)  # native frame size (a multiple of 28: smart_resize keeps it) -> 2 x 3 grid
QWEN_GRID = (2, 3)
QWEN_N_FRAMES = 4  # -> 2 frame pairs
QWEN_N_LAYERS = 2
QWEN_MIN_PIXELS = 4 * 28 * 28
QWEN_MAX_PIXELS = 12 * 28 * 28


def make_qwen_vl_tokenizer(chat_template: str | None = QWEN_VL_TEMPLATE) -> PreTrainedTokenizerFast:
    """The word-level tokenizer plus Qwen's vision tokens."""
    tokenizer = make_tokenizer(chat_template)
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:] + QWEN_VL_TOKENS})
    return tokenizer


def _qwen_token_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, int]:
    ids = tokenizer.convert_tokens_to_ids
    return {
        "image_token_id": ids("<|image_pad|>"),
        "video_token_id": ids("<|video_pad|>"),
        "vision_start_token_id": ids("<|vision_start|>"),
        "vision_end_token_id": ids("<|vision_end|>"),
    }


def _qwen_text_config(tokenizer: PreTrainedTokenizerFast) -> dict:
    # head_dim 16 -> 8 rotary frequencies, split over (temporal, row, column).
    return {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": QWEN_N_LAYERS,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": len(tokenizer),
        "max_position_embeddings": 512,
        "bos_token_id": None,
        "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
    }


def tiny_qwen2_vl_config(tokenizer: PreTrainedTokenizerFast) -> Qwen2VLConfig:
    vision = {
        "depth": 2,
        "embed_dim": 32,
        "hidden_size": 64,  # the merger's output: the text hidden size
        "mlp_ratio": 2,
        "num_heads": 2,
        "patch_size": 14,
        "temporal_patch_size": 2,
        "spatial_merge_size": 2,
    }
    return Qwen2VLConfig(
        vision_config=vision, text_config=_qwen_text_config(tokenizer), **_qwen_token_ids(tokenizer)
    )


def tiny_qwen2_5_vl_config(tokenizer: PreTrainedTokenizerFast) -> Qwen2_5_VLConfig:
    vision = {
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "out_hidden_size": 64,
        "num_heads": 2,
        "patch_size": 14,
        "temporal_patch_size": 2,
        "spatial_merge_size": 2,
        "window_size": 56,  # 2 x 2 merged tokens per attention window
        "fullatt_block_indexes": [1],
        "tokens_per_second": 10,  # 0.4 s per frame pair in make_clip -> temporal position step 4
    }
    return Qwen2_5_VLConfig(
        vision_config=vision, text_config=_qwen_text_config(tokenizer), **_qwen_token_ids(tokenizer)
    )


def save_tiny_qwen_vl(directory: Path, model_type: str) -> Path:
    """A Qwen2-VL (``qwen2_vl``) or Qwen2.5-VL (``qwen2_5_vl``) checkpoint directory.

    Qwen2-VL gets the legacy ``preprocessor_config.json`` (``min_pixels`` / ``max_pixels``),
    Qwen2.5-VL a 5.x ``video_preprocessor_config.json`` (``size`` edges), as real ones have.
    """
    tokenizer = make_qwen_vl_tokenizer()
    torch.manual_seed(0)
    if model_type == "qwen2_vl":
        model = Qwen2VLForConditionalGeneration(tiny_qwen2_vl_config(tokenizer)).eval()
    elif model_type == "qwen2_5_vl":
        model = Qwen2_5_VLForConditionalGeneration(tiny_qwen2_5_vl_config(tokenizer)).eval()
    else:
        raise ValueError(f"unknown Qwen model type {model_type!r}")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    common = {
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "resample": 3,
        "rescale_factor": 1 / 255,
        "patch_size": 14,
        "temporal_patch_size": 2,
        "merge_size": 2,
    }
    if model_type == "qwen2_vl":
        name = "preprocessor_config.json"
        settings = {"image_processor_type": "Qwen2VLImageProcessor", "min_pixels": QWEN_MIN_PIXELS,
                    "max_pixels": QWEN_MAX_PIXELS, **common}  # fmt: skip
    else:
        name = "video_preprocessor_config.json"
        settings = {"video_processor_type": "Qwen2VLVideoProcessor",
                    "size": {"shortest_edge": QWEN_MIN_PIXELS, "longest_edge": QWEN_MAX_PIXELS}, **common}  # fmt: skip
    (directory / name).write_text(json.dumps(settings), encoding="utf-8")
    return directory


# --- LLaVA-NeXT-Video --------------------------------------------------------------------------

# The real geometry scaled down (24 x 24 patches per frame: stride 2 -> 12 x 12, the reference's
# stride 4 -> 6 x 6), a CLIP tower, a Llama text model, and a byte-level BPE tokenizer that, like
# Llama's, adds <s> and tells "yes" from " yes".
NV_IMAGE_SIZE = 96
NV_PATCH = 4
NV_PATCHES = NV_IMAGE_SIZE // NV_PATCH
NV_SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<image>", "<video>"]
NV_SYSTEM = "A chat between a curious human and an artificial intelligence assistant."

# Vicuna-style processor template (content parts), saved as the processor's chat_template.json.
VICUNA_TEMPLATE = (
    "{{ '" + NV_SYSTEM + " ' }}"
    "{% for message in messages %}{{ message['role'] | upper + ': ' }}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>\\n' }}{% endfor %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'text') %}{{ part['text'] + ' ' }}"
    "{% endfor %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def make_bpe_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE trained offline on the test vocabulary; its plain call prepends <s>."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    corpus = [
        NV_SYSTEM,
        "USER: <video>\n" + QUESTION + " ASSISTANT: yes",
        "USER: please describe this video. ASSISTANT: no",
        " ".join(WORDS[2:]),
        "yes\nno\nYes\nNo",
    ] * 8
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        special_tokens=NV_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(corpus, trainer)
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", backend.token_to_id("<s>"))]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<unk>"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": NV_SPECIAL_TOKENS[3:]})
    return tokenizer


def tiny_llava_next_video_config(
    tokenizer: PreTrainedTokenizerFast, spatial_pool_stride: int = 2, spatial_pool_mode: str = "average"
) -> LlavaNextVideoConfig:
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=NV_IMAGE_SIZE,
        patch_size=NV_PATCH,
    )
    text = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=N_LAYERS,
        num_attention_heads=N_HEADS,
        num_key_value_heads=2,
        vocab_size=len(tokenizer),
        max_position_embeddings=1024,
    )
    return LlavaNextVideoConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        spatial_pool_stride=spatial_pool_stride,
        spatial_pool_mode=spatial_pool_mode,
    )


def save_tiny_llava_next_video(
    directory: Path, spatial_pool_stride: int = 2, spatial_pool_mode: str = "average"
) -> Path:
    """A LLaVA-NeXT-Video checkpoint directory laid out as the hf one: the template in the processor's
    chat_template.json (none in the tokenizer), a video preprocessor config without mean and std."""
    tokenizer = make_bpe_tokenizer()
    torch.manual_seed(0)
    config = tiny_llava_next_video_config(tokenizer, spatial_pool_stride, spatial_pool_mode)
    model = LlavaNextVideoForConditionalGeneration(config).eval()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    (directory / "chat_template.json").write_text(json.dumps({"chat_template": VICUNA_TEMPLATE}), "utf-8")
    preprocessor = {
        "video_processor_type": "LlavaNextVideoVideoProcessor",
        "resample": 3,
        "rescale_factor": 1 / 255,
        "size": {"shortest_edge": NV_IMAGE_SIZE},
        "do_center_crop": True,
        "crop_size": {"height": NV_IMAGE_SIZE, "width": NV_IMAGE_SIZE},
    }
    (directory / "video_preprocessor_config.json").write_text(json.dumps(preprocessor), encoding="utf-8")
    return directory
