"""Tiny random-weight Grounding DINO and SAM2 video checkpoints, saved for offline loading.

Shared by the proposal tests and the end-to-end pipeline tests: every builder writes a directory
laid out as a real checkpoint (config, weights, tokenizer / preprocessor files), so the code under
test loads it with ``from_pretrained`` exactly as it would a downloaded one.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    BertConfig,
    GroundingDinoConfig,
    GroundingDinoForObjectDetection,
    PreTrainedTokenizerFast,
    Sam2VideoConfig,
    Sam2VideoModel,
    SwinConfig,
)

__all__ = [
    "DETECTOR_MEAN",
    "DETECTOR_STD",
    "FULL_MASK_THRESHOLD",
    "MAX_TEXT_LEN",
    "NUM_QUERIES",
    "SAM2_MEAN",
    "SAM2_SIDE",
    "SAM2_STD",
    "WORDS",
    "make_bert_like_tokenizer",
    "save_tiny_detector",
    "save_tiny_sam2",
    "tiny_detector_config",
    "tiny_sam2_config",
]

# --------------------------------------------------------------------------- Grounding DINO

NUM_QUERIES = 10
MAX_TEXT_LEN = 32
DETECTOR_MEAN = [0.5, 0.4, 0.3]
DETECTOR_STD = [0.2, 0.25, 0.3]
WORDS = ["the", "man", "in", "red", "a", "dog", "person", "car"]  # the tokenizer's words; others are [UNK]


def make_bert_like_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer whose [CLS]/[SEP]/"."/"?" carry BERT's ids, the model's phrase delimiters."""
    vocab = {f"[unused{i}]": i for i in range(1100)}
    special = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103, ".": 1012, "?": 1029}
    for token, index in special.items():
        del vocab[f"[unused{index}]"]
        vocab[token] = index
    for i, word in enumerate(WORDS):
        del vocab[f"[unused{1030 + i}]"]
        vocab[word] = 1030 + i
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")]
    )
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 101), ("[SEP]", 102)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def tiny_detector_config() -> GroundingDinoConfig:
    backbone = SwinConfig(
        image_size=64,
        patch_size=4,
        embed_dim=8,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 1, 1],
        window_size=2,
        out_indices=[2, 3, 4],
    )
    text = BertConfig(
        vocab_size=1100,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    return GroundingDinoConfig(
        backbone_config=backbone,
        text_config=text,
        use_pretrained_backbone=False,
        num_queries=NUM_QUERIES,
        encoder_layers=1,
        decoder_layers=2,
        d_model=32,  # GroupNorm(32, d_model) needs a multiple of 32
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_n_points=2,
        decoder_n_points=2,
        max_text_len=MAX_TEXT_LEN,
    )


def save_tiny_detector(directory: Path) -> Path:
    """A Grounding DINO checkpoint directory laid out as a real one (model, tokenizer, preprocessor)."""
    torch.manual_seed(0)
    GroundingDinoForObjectDetection(tiny_detector_config()).eval().save_pretrained(directory)
    make_bert_like_tokenizer().save_pretrained(directory)
    preprocessor = {
        "image_processor_type": "GroundingDinoImageProcessor",
        "image_mean": DETECTOR_MEAN,
        "image_std": DETECTOR_STD,
        "resample": 2,
        "rescale_factor": 1 / 255,
        "size": {"shortest_edge": 64, "longest_edge": 96},
        "do_rescale": True,
        "do_normalize": True,
    }
    (directory / "preprocessor_config.json").write_text(json.dumps(preprocessor), encoding="utf-8")
    return directory


# --------------------------------------------------------------------------- SAM2 video

SAM2_SIDE = 64  # the model's square input
SAM2_MEAN = [0.4, 0.4, 0.4]
SAM2_STD = [0.3, 0.3, 0.3]
# A mask threshold below every logit of a present object (absent ones are -1024): full-frame masks.
FULL_MASK_THRESHOLD = -100.0


def tiny_sam2_config() -> Sam2VideoConfig:
    side = SAM2_SIDE
    backbone = {
        "model_type": "sam2_hiera_det_model",
        "hidden_size": 16,
        "image_size": [side, side],
        "blocks_per_stage": [1, 1, 2, 1],
        "embed_dim_per_stage": [16, 32, 64, 128],
        "num_attention_heads_per_stage": [1, 1, 2, 2],
        "window_size_per_stage": [4, 4, 2, 2],
        "global_attention_blocks": [3],  # not a pooling block: those need a window
        "window_positional_embedding_background_size": [2, 2],
    }
    vision = {
        "model_type": "sam2_vision_model",
        "backbone_config": backbone,
        "backbone_channel_list": [128, 64, 32, 16],
        "backbone_feature_sizes": [[side // 4] * 2, [side // 8] * 2, [side // 16] * 2],
        "fpn_hidden_size": 128,
    }
    # transformers fixes the memory channels at 64 and needs the hidden size above them
    return Sam2VideoConfig(
        vision_config=vision,
        prompt_encoder_config={
            "hidden_size": 128,
            "image_size": side,
            "patch_size": 16,
            "mask_input_channels": 4,
        },
        mask_decoder_config={
            "hidden_size": 128,
            "mlp_dim": 64,
            "num_attention_heads": 2,
            "iou_head_hidden_dim": 32,
        },
        image_size=side,
        num_maskmem=3,
        memory_attention_hidden_size=128,
        memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=64,
        memory_attention_rope_feat_sizes=[side // 16, side // 16],
        memory_encoder_hidden_size=128,
        memory_encoder_output_channels=64,
        mask_downsampler_embed_dim=128,
        memory_fuser_embed_dim=128,
        memory_fuser_intermediate_dim=64,
    )


def save_tiny_sam2(directory: Path) -> Path:
    """A SAM2 video checkpoint directory whose object-score head calls every object present."""
    torch.manual_seed(0)
    model = Sam2VideoModel(tiny_sam2_config()).eval()
    with torch.no_grad():  # every object "present": random weights would hide them all
        head = model.mask_decoder.pred_obj_score_head.proj_out
        head.weight.zero_()
        head.bias.fill_(10.0)
    model.save_pretrained(directory)
    processor = {
        "image_mean": SAM2_MEAN,
        "image_std": SAM2_STD,
        "resample": 2,
        "size": {"height": SAM2_SIDE, "width": SAM2_SIDE},
    }
    (directory / "video_preprocessor_config.json").write_text(json.dumps(processor), encoding="utf-8")
    return directory
