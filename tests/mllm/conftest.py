"""Fixtures of the adapter tests: a tiny LLaVA-OneVision checkpoint saved once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_models import save_tiny_llava

from zsgrounding.mllm import load_adapter
from zsgrounding.mllm.llava_onevision import LlavaOnevisionAdapter


@pytest.fixture(scope="session")
def llava_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_llava(tmp_path_factory.mktemp("tiny_llava_onevision"))


@pytest.fixture(scope="session")
def llava(llava_dir: Path) -> LlavaOnevisionAdapter:
    adapter = load_adapter(llava_dir)
    assert isinstance(adapter, LlavaOnevisionAdapter)
    return adapter
