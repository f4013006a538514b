"""Locating optional files of a checkpoint, in a local directory or a hub repository."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer
from transformers.utils import cached_file

from zsgrounding.mllm.errors import ModelError, first_line
from zsgrounding.mllm.hub import require_checkpoint

# from_pretrained keywords that also locate the tokenizer and the preprocessor files.
HUB_KWARGS = ("revision", "cache_dir", "token", "local_files_only", "force_download", "proxies")


def checkpoint_file(path_or_id: str | Path, filename: str, **hub_kwargs: Any) -> Path | None:
    """The path of ``filename`` in the checkpoint, or ``None`` when it has no such file.

    A local directory is looked at directly; anything else is treated as a hub id and resolved
    through the transformers cache (``hub_kwargs``: ``revision``, ``cache_dir``, ``token``,
    ``local_files_only``, ...), which may download.
    """
    local = Path(path_or_id).expanduser()
    if local.is_dir():
        candidate = local / filename
        return candidate if candidate.is_file() else None
    # A hub id is "name" or "org/name": anything spelled like a path is a missing folder.
    if local.is_absolute() or str(path_or_id).startswith((".", "~")) or local.exists():
        raise ModelError(f"{path_or_id}: no such checkpoint folder")
    try:
        resolved = cached_file(
            str(path_or_id),
            filename,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
            **hub_kwargs,
        )
    except ValueError as exc:  # huggingface_hub's HFValidationError: not a valid repo id
        raise ModelError(f"{path_or_id}: neither a local folder nor a hub id ({first_line(exc)})") from exc
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


def load_checkpoint(
    model_class: Any,
    path_or_id: str | Path,
    dtype: Any = None,
    device: Any = None,
    device_map: Any = None,
    attn_implementation: str = "sdpa",
    **kwargs: Any,
) -> tuple[Any, Any, dict[str, Any]]:
    """Load ``(model, tokenizer, hub_kwargs)`` of a checkpoint, with a one-line error on failure.

    ``kwargs`` go to the model's ``from_pretrained``; the hub ones (:data:`HUB_KWARGS`) also to
    the tokenizer and are returned for locating the checkpoint's other files.
    """
    hub_kwargs = {k: kwargs[k] for k in HUB_KWARGS if k in kwargs}
    require_checkpoint(
        path_or_id, "model", offline="`--model toy` (it knows only the toy world)", **hub_kwargs
    )
    try:
        model = model_class.from_pretrained(
            path_or_id, dtype=dtype, device_map=device_map, attn_implementation=attn_implementation, **kwargs
        )
        tokenizer = AutoTokenizer.from_pretrained(path_or_id, **hub_kwargs)
    except OSError as exc:
        raise ModelError(f"{path_or_id}: cannot load the checkpoint ({first_line(exc)})") from exc
    if device is not None and device_map is None:
        model = model.to(device)
    return model, tokenizer, hub_kwargs
