"""The adapter registry: family by checkpoint config or by name, and clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from tiny_models import PARTS_TEMPLATE, QUESTION, make_clip

from zsgrounding.errors import STVGError
from zsgrounding.mllm import REGISTRY, ModelError, load_adapter
from zsgrounding.mllm.llava_onevision import LlavaOnevisionAdapter
from zsgrounding.mllm.registry import entry_for_checkpoint, entry_for_family


def test_family_from_the_checkpoint_config(llava_dir: Path) -> None:
    assert entry_for_checkpoint(llava_dir) is REGISTRY["llava_onevision"]
    adapter = load_adapter(llava_dir, num_frames=8, device="cpu")
    assert isinstance(adapter, LlavaOnevisionAdapter)
    assert adapter.num_frames == 8
    assert adapter.preprocessing.source == llava_dir / "preprocessor_config.json"


@pytest.mark.parametrize("name", ["llava_onevision", "LLaVA-Video", "llava-ov"])
def test_family_by_name(llava_dir: Path, name: str) -> None:
    assert entry_for_family(name).adapter_class() is LlavaOnevisionAdapter
    adapter = load_adapter(llava_dir, family=name, dtype=torch.bfloat16)
    assert adapter.model.dtype == torch.bfloat16
    prepared = adapter.prepare(make_clip(num_frames=1), QUESTION)
    assert prepared.inputs_embeds.dtype == torch.bfloat16
    assert adapter.forward(prepared).logits.dtype == torch.bfloat16


def test_unknown_family_is_a_one_line_error(llava_dir: Path) -> None:
    with pytest.raises(ModelError) as info:
        load_adapter(llava_dir, family="gpt-video")
    assert isinstance(info.value, STVGError)
    message = str(info.value)
    assert "\n" not in message and "'gpt-video'" in message and "llava_onevision" in message


def test_unserved_model_type_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "not_a_real_mllm"}), encoding="utf-8")
    with pytest.raises(ModelError, match="model_type 'not_a_real_mllm'") as info:
        load_adapter(tmp_path)
    assert "\n" not in str(info.value)


def test_missing_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot read the model config") as info:
        load_adapter(tmp_path)
    assert "\n" not in str(info.value)


def test_processor_chat_template_is_used(llava_dir: Path, tmp_path: Path) -> None:
    # A processor's legacy chat_template.json holds the multimodal template: it wins over the tokenizer's.
    checkpoint = Path(shutil.copytree(llava_dir, tmp_path / "ckpt"))
    (checkpoint / "chat_template.json").write_text(json.dumps({"chat_template": PARTS_TEMPLATE}), "utf-8")
    adapter = load_adapter(checkpoint)
    prepared = adapter.prepare(make_clip(num_frames=2), QUESTION)
    assert prepared.special_tokens == ["<|im_end|>", "<|im_start|>", "assistant", "\n"]
    assert adapter.tokenizer.decode([adapter.yes_id]) == "yes"
