"""Which adapter serves which checkpoint: a static table, and loading by family name or config.

Families are listed once below with the ``config.model_type`` values they serve; adapter
modules are imported only when their family is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from transformers import AutoConfig

from zsgrounding.mllm.base import MLLMAdapter
from zsgrounding.mllm.errors import ModelError, first_line
from zsgrounding.mllm.files import checkpoint_file, read_json
from zsgrounding.mllm.hub import require_checkpoint


@dataclass(frozen=True)
class AdapterEntry:
    """One family of the table.

    Attributes:
        name: canonical family name (``family=`` of :func:`load_adapter`).
        target: ``"module:Class"`` of the adapter.
        model_types: ``config.model_type`` values the adapter serves.
        aliases: other accepted names (compared after lower-casing, ``-`` read as ``_``).
    """

    name: str
    target: str
    model_types: tuple[str, ...]
    aliases: tuple[str, ...] = ()

    def adapter_class(self) -> type[MLLMAdapter]:
        module_name, class_name = self.target.split(":")
        return getattr(importlib.import_module(module_name), class_name)


def register(
    name: str, target: str, model_types: tuple[str, ...], aliases: tuple[str, ...] = ()
) -> AdapterEntry:
    """An entry of the static table (adding a family = adding one ``register`` line to it)."""
    return AdapterEntry(name=name, target=target, model_types=model_types, aliases=aliases)


REGISTRY: Mapping[str, AdapterEntry] = MappingProxyType(
    {
        entry.name: entry
        for entry in (
            register(
                "llava_onevision",
                "zsgrounding.mllm.llava_onevision:LlavaOnevisionAdapter",
                model_types=("llava_onevision",),
                aliases=("llava_video", "llava_ov"),
            ),
            register(
                "llava_next_video",
                "zsgrounding.mllm.llava_next_video:LlavaNextVideoAdapter",
                model_types=("llava_next_video",),
            ),
            register(
                "qwen2_vl",
                "zsgrounding.mllm.qwen2_vl:Qwen2VLAdapter",
                model_types=("qwen2_vl", "qwen2_5_vl"),
                aliases=("qwen2_5_vl", "qwen2.5_vl", "qwen_vl"),
            ),
        )
    }
)

_BY_NAME: Mapping[str, AdapterEntry] = MappingProxyType(
    {alias: entry for entry in REGISTRY.values() for alias in (entry.name, *entry.aliases)}
)
_BY_MODEL_TYPE: Mapping[str, AdapterEntry] = MappingProxyType(
    {model_type: entry for entry in REGISTRY.values() for model_type in entry.model_types}
)


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def entry_for_family(family: str) -> AdapterEntry:
    """The entry of a family name or alias; unknown -> :class:`ModelError`."""
    entry = _BY_NAME.get(_normalise(family))
    if entry is None:
        raise ModelError(f"unknown MLLM family {family!r}; known: {', '.join(sorted(_BY_NAME))}")
    return entry


def model_type_of(path_or_id: str | Path, **hub_kwargs: Any) -> str:
    """``config.model_type`` of a checkpoint (local directory, or hub id through the cache)."""
    local = Path(path_or_id).expanduser()
    if not local.is_dir() and (
        local.is_absolute() or str(path_or_id).startswith((".", "~")) or local.exists()
    ):
        raise ModelError(f"{path_or_id}: no such checkpoint folder")
    require_checkpoint(
        path_or_id, "model", offline="`--model toy` (it knows only the toy world)", **hub_kwargs
    )
    try:
        return str(AutoConfig.from_pretrained(str(path_or_id), **hub_kwargs).model_type)
    except (OSError, ValueError, KeyError) as exc:
        # transformers does not know the type: read it raw so the message can name it.
        config_file = checkpoint_file(path_or_id, "config.json", **hub_kwargs)
        raw = read_json(config_file).get("model_type") if config_file is not None else None
        if isinstance(raw, str):
            return raw
        raise ModelError(f"{path_or_id}: cannot read the model config ({first_line(exc)})") from exc


def entry_for_checkpoint(path_or_id: str | Path, **hub_kwargs: Any) -> AdapterEntry:
    """The entry serving the checkpoint's ``model_type``; unserved -> :class:`ModelError`."""
    model_type = model_type_of(path_or_id, **hub_kwargs)
    entry = _BY_MODEL_TYPE.get(model_type)
    if entry is None:
        raise ModelError(
            f"{path_or_id}: no adapter serves model_type {model_type!r} "
            f"(served: {', '.join(sorted(_BY_MODEL_TYPE))}; pass family= to force one)"
        )
    return entry


def load_adapter(name_or_path: str | Path, family: str | None = None, **kwargs: Any) -> MLLMAdapter:
    """Load the checkpoint ``name_or_path`` with the adapter of ``family``, or of its ``model_type``.

    ``kwargs`` go to the adapter's ``from_pretrained`` (``dtype``, ``device``, ``device_map``,
    ``num_frames``, ...); hub keywords (``revision``, ``token``, ...) also to the config lookup.
    """
    if family is not None:
        entry = entry_for_family(family)
    else:
        hub_kwargs = {
            k: kwargs[k] for k in ("revision", "cache_dir", "token", "local_files_only") if k in kwargs
        }
        entry = entry_for_checkpoint(name_or_path, **hub_kwargs)
    return entry.adapter_class().from_pretrained(name_or_path, **kwargs)
