"""Locating optional files of a checkpoint, in a local directory or a hub repository."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers.utils import cached_file

from zsgrounding.mllm.errors import ModelError

# from_pretrained keywords that also locate the tokenizer and the preprocessor files.
HUB_KWARGS = ("revision", "cache_dir", "token", "local_files_only", "force_download", "proxies")


def checkpoint_file(path_or_id: str | Path, filename: str, **hub_kwargs: Any) -> Path | None:
    """The path of ``filename`` in the checkpoint, or ``None`` when it has no such file.

    A local directory is looked at directly; anything else is treated as a hub id and resolved
    through the transformers cache (``hub_kwargs``: ``revision``, ``cache_dir``, ``token``,
    ``local_files_only``, ...), which may download.
    """
    local = Path(path_or_id)
    if local.is_dir():
        candidate = local / filename
        return candidate if candidate.is_file() else None
    resolved = cached_file(
        str(path_or_id),
        filename,
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
        **hub_kwargs,
    )
    return Path(resolved) if resolved is not None else None


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; a malformed file raises :class:`ModelError` naming it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: not a readable JSON file ({exc})") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return data


def processor_chat_template(path_or_id: str | Path, **hub_kwargs: Any) -> str | None:
    """The multimodal template of a processor saved in the legacy ``chat_template.json``.

    Newer checkpoints save it as ``chat_template.jinja``, which the tokenizer loads itself.
    """
    path = checkpoint_file(path_or_id, "chat_template.json", **hub_kwargs)
    if path is None:
        return None
    template = read_json(path).get("chat_template")
    if not isinstance(template, str):
        raise ModelError(f"{path}: no 'chat_template' string")
    return template
