"""The released code's decomposition file (``gpt4_decompose_attr_action.json``), read as it reads it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zsgrounding.llm import one_line
from zsgrounding.zeroshot.decompose.result import Decomposition, DecompositionError

# What the released GPT-4 decompositions say when the model could not split a sentence.
FAILURE_MARKER = "please describe this video"


def _reference_text(value: Any, what: str) -> str:
    """The sub-query of one list of the released file, as the released code picks it.

    The released code walks the list and keeps the last element, and an element holding
    :data:`FAILURE_MARKER` stands for the whole query; both become ``""`` here, which
    :meth:`Decomposition.for_query` turns into the query. A blank last element is read the same
    way (the released code would ask "Is there  in this video?").
    """
    if value is None:
        return ""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{what} must be a list of strings or a string, not {type(value).__name__}")
    if not value or FAILURE_MARKER in value[-1]:
        return ""
    return value[-1].strip()


def load_reference_decompositions(path: str | Path) -> dict[str, Decomposition]:
    """Read the reference's ``gpt4_decompose_attr_action.json``.

    Format: ``{video_name: {"decompose_attribute": [str, ...], "decompose_action": [str, ...]}}``
    (a plain string is accepted for either list). Each sub-query is the list's last element, as
    the released code uses it; an empty or missing list, or a last element holding the failure
    marker ``please describe this video``, gives ``""``. ``query`` is ``""`` because the file does
    not carry the sentence: :meth:`Decomposition.for_query` (called by :class:`Decomposer`) puts
    the query in place of ``""``, which is the released code's own fallback.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DecompositionError(f"{path}: decomposition file not found") from exc
    except (OSError, ValueError) as exc:
        raise DecompositionError(f"{path}: unreadable decomposition file ({one_line(exc)})") from exc
    if not isinstance(data, dict):
        raise DecompositionError(f"{path}: expected an object keyed by video name")
    out = {}
    for video, entry in data.items():
        try:
            if not isinstance(entry, dict):
                raise ValueError("entry must be an object")
            attribute = _reference_text(entry.get("decompose_attribute"), "decompose_attribute")
            action = _reference_text(entry.get("decompose_action"), "decompose_action")
        except ValueError as exc:
            raise DecompositionError(f"{path}: video {video!r}: {exc}") from exc
        out[str(video)] = Decomposition("", attribute, action, "reference")
    return out


def reference_entry(reference: Mapping[str, Decomposition], key: str) -> Decomposition | None:
    """Look ``key`` up as given, then without its file extension ("v1.mp4" -> "v1")."""
    if key in reference:
        return reference[key]
    stem, dot, _ = key.rpartition(".")
    return reference.get(stem) if dot and stem else None
