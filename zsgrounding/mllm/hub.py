"""Checkpoints by hub id: look in the local cache first, and fail in one line when the hub is away.

transformers and huggingface_hub retry an unreachable hub for about a minute before they give
up, once per file. :func:`require_checkpoint` runs before any of them: a local folder passes; a
hub id passes when its ``config.json`` is in the local cache or the hub answers a connection
within a few seconds; otherwise it raises :class:`~zsgrounding.mllm.errors.ModelError` saying what
is missing, how to download it and what runs offline.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from huggingface_hub import try_to_load_from_cache

from zsgrounding.mllm.errors import ModelError

CONNECT_TIMEOUT = 3.0  # seconds: a reachable hub answers a TCP connection well within this
_OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return 1 <= len(parts) <= 2 and all(parts) and not name.startswith((".", "~", "/"))


def is_cached(repo_id: str, revision: str | None = None, cache_dir: str | Path | None = None) -> bool:
    """Whether the hub repository's ``config.json`` is in the local cache."""
    try:
        found = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache_dir, revision=revision)
    except ValueError:  # not a valid repo id
        return False
    return isinstance(found, str)


def hub_unreachable() -> str | None:
    """Why the hub cannot be reached (offline mode, no name resolution, no connection), or ``None``."""
    for name in _OFFLINE_ENV:
        if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{name} is set"
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT):
            return None
    except OSError as exc:
        return f"{host}: {exc.strerror or type(exc).__name__}"


def require_checkpoint(path_or_id: str | Path, what: str, offline: str = "", **hub_kwargs: Any) -> None:
    """Return when ``path_or_id`` can load without waiting on an unreachable hub; else one line.

    Args:
        path_or_id: a local folder or a hub id.
        what: what it is, for the message ("MLLM", "detector", ...).
        offline: what to use instead without a network, appended to the message.
        hub_kwargs: ``revision`` / ``cache_dir`` as given to ``from_pretrained``.

    Raises:
        ModelError: a hub id that is neither cached nor reachable.
    """
    name = str(path_or_id)
    if Path(name).expanduser().exists() or not _looks_like_hub_id(name):
        return  # a folder, or a name the loaders will report themselves
    if is_cached(name, hub_kwargs.get("revision"), hub_kwargs.get("cache_dir")):
        return
    reason = hub_unreachable()
    if reason is None:
        return  # it downloads
    alternative = f"; offline, use {offline}" if offline else ""
    raise ModelError(
        f"{what} {name!r} is not in the local cache and the hub cannot be reached ({reason}): download "
        f"it where there is a network (`hf download {name}`) and copy the cache, or give a local "
        f"folder{alternative}"
    )


@contextmanager
def progress_bars(enabled: bool) -> Iterator[None]:
    """transformers' own progress bars (loading weights, ...) off unless ``enabled``, restored after."""
    if enabled:
        yield
        return
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()
