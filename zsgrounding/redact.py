"""Secrets never reach a printed or written message.

An LLM endpoint that echoes the request in its error body would put the API key into the error
the toolkit reports (once per sample in a long run, and into its result files). :func:`redact`
removes, from any text: the keys configured in the environment (``STVG_LLM_API_KEY``,
``OPENAI_API_KEY``) and any given explicitly, bearer tokens, ``sk-...`` style keys, and
``api_key=...`` style assignments.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

__all__ = ["SECRET_ENV", "redact"]

SECRET_ENV = ("STVG_LLM_API_KEY", "OPENAI_API_KEY")
MASK = "***"
# Shorter "secrets" would mask ordinary words (a local server's placeholder key, say).
_MIN_SECRET = 8

_PATTERNS = (
    (re.compile(r"(?i)\b(bearer\s+)[^\s'\",;]+"), r"\1" + MASK),
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}"), "sk-" + MASK),
    (re.compile(r"(?i)\b(api[_-]?key[\"']?\s*[:=]\s*[\"']?)[^\s'\",;&]+"), r"\1" + MASK),
)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every configured or given secret and every token-looking string masked."""
    known = [s for s in (*secrets, *(os.environ.get(name) for name in SECRET_ENV)) if s]
    for secret in sorted({s for s in known if len(s) >= _MIN_SECRET}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
