"""One OpenAI-compatible chat endpoint (OpenAI, vLLM, llama.cpp, Ollama...) asked for JSON.

Both paradigms ask an LLM for small JSON answers: the zero-shot method for a query's sub-queries,
SpaceVLLM's data synthesis for a caption's objects. :class:`ChatClient` owns what they share: the
settings (arguments, else the environment), bounded time, retries, and keys kept out of every
message.

Environment: ``STVG_LLM_BASE_URL`` then ``OPENAI_BASE_URL``; ``STVG_LLM_MODEL`` (default
:data:`DEFAULT_MODEL`); ``STVG_LLM_API_KEY`` then ``OPENAI_API_KEY`` (a local server without a key
gets a placeholder); ``STVG_LLM_TIMEOUT`` (seconds per request, default 20) and
``STVG_LLM_RETRIES`` (default 2). An endpoint is configured when a base URL or a key is known.

Each attempt is one request of at most ``timeout`` seconds; transient failures (timeouts,
connection errors, HTTP 408/409/429/5xx, replies that are not a chat completion or that the
caller's parser rejects) are retried up to ``max_retries`` times after
``min(max_backoff, backoff * 2**attempt)`` seconds. Other HTTP errors end at once, except a 400
while asking for JSON mode: some servers reject ``response_format``, so the next attempt goes
without it (the instructions ask for JSON anyway).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import openai

from zsgrounding.errors import STVGError
from zsgrounding.redact import redact

T = TypeVar("T")

DEFAULT_MODEL = "gpt-4o"  # the LLM the zero-shot paper names; any chat model behind the endpoint works
_BASE_URL_ENV = ("STVG_LLM_BASE_URL", "OPENAI_BASE_URL")
_KEY_ENV = ("STVG_LLM_API_KEY", "OPENAI_API_KEY")


class LLMError(STVGError):
    """The endpoint is not configured as asked, or every attempt failed (the message says why)."""


class LLMFailure(LLMError):
    """Every attempt of one request failed.

    Attributes:
        attempts: requests made.
        reason: the last attempt's failure, one line, keys masked.
    """

    def __init__(self, attempts: int, reason: str) -> None:
        super().__init__(f"failed after {attempts} attempt(s): {reason}")
        self.attempts = attempts
        self.reason = reason


def one_line(value: object, limit: int = 200) -> str:
    """``value`` as one line of at most ``limit`` characters."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _env(*names: str) -> str | None:
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


def env_number(name: str, default: Any, kind: type) -> Any:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        return kind(text)
    except ValueError:
        raise LLMError(f"{name}={text!r} is not a {kind.__name__}") from None


def endpoint_configured() -> bool:
    """Whether the environment names an endpoint (a base URL or a key)."""
    return _env(*_BASE_URL_ENV, *_KEY_ENV) is not None


def reply_text(reply: Any) -> str:
    """The assistant's text of a chat completion; anything else is a ``ValueError`` saying what came.

    An endpoint that answers 200 with an HTML page or other non-JSON body gives the client a
    plain string, and a JSON body without the expected fields gives objects without them.
    """
    if isinstance(reply, str | bytes):
        start = " ".join(str(reply[:60]).split())
        raise ValueError(f"the endpoint answered with a non-JSON body ({start!r}...), not a chat completion")
    choices = getattr(reply, "choices", None)
    if not isinstance(choices, list):
        raise ValueError(f"the endpoint's reply has no choices ({type(reply).__name__})")
    if not choices:
        raise ValueError("empty reply (no choices)")
    content = getattr(getattr(choices[0], "message", None), "content", None)
    if not isinstance(content, str) or not content.strip():
        raise ValueError("empty reply")
    return content


class ChatClient:
    """An OpenAI-compatible chat endpoint; see the module docstring for settings and retries.

    Raises:
        LLMError: no endpoint configured, or a bad setting (``STVG_LLM_TIMEOUT=abc``, ``timeout=0``).
    """

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        temperature: float | None = 0.0,
        json_mode: bool = True,
    ) -> None:
        base_url = base_url or _env(*_BASE_URL_ENV)
        api_key = api_key or _env(*_KEY_ENV)
        if not base_url and not api_key:
            raise LLMError(
                "no LLM endpoint configured (set STVG_LLM_BASE_URL or STVG_LLM_API_KEY / OPENAI_API_KEY)"
            )
        timeout = timeout if timeout is not None else env_number("STVG_LLM_TIMEOUT", 20.0, float)
        max_retries = max_retries if max_retries is not None else env_number("STVG_LLM_RETRIES", 2, int)
        if timeout <= 0 or max_retries < 0 or backoff < 0:
            raise LLMError("the LLM endpoint needs timeout > 0, retries >= 0 and backoff >= 0")
        self.base_url = base_url
        self.model = model or _env("STVG_LLM_MODEL") or DEFAULT_MODEL
        self.timeout, self.max_retries = timeout, max_retries
        self.backoff, self.max_backoff = backoff, max_backoff
        self.temperature, self.json_mode = temperature, json_mode
        # The client's own retries are off: ask_json owns every retry and its timing.
        self._client = openai.OpenAI(
            base_url=base_url, api_key=api_key or "not-needed", timeout=timeout, max_retries=0
        )
        self._secret = api_key  # only ever used to mask it in messages

    @classmethod
    def from_env(cls, **kwargs: Any) -> ChatClient | None:
        """A client from arguments and the environment, or ``None`` if no endpoint is configured.

        A configured endpoint with a bad setting is an error, not ``None``: the user asked for one.
        """
        if not (kwargs.get("base_url") or kwargs.get("api_key") or endpoint_configured()):
            return None
        return cls(**kwargs)

    def __repr__(self) -> str:  # never shows the key
        return f"ChatClient(base_url={self.base_url!r}, model={self.model!r})"

    def redact(self, text: str) -> str:
        """``text`` with this endpoint's key (and anything token-like) masked."""
        return redact(text, [self._secret])

    def _request(self, messages: Sequence[dict[str, str]], json_mode: bool) -> str:
        extra: dict[str, Any] = {"response_format": {"type": "json_object"}} if json_mode else {}
        if self.temperature is not None:  # None: leave it out (some reasoning models reject it)
            extra["temperature"] = self.temperature
        reply = self._client.chat.completions.create(model=self.model, messages=list(messages), **extra)
        return reply_text(reply)

    def ask_json(self, messages: Sequence[dict[str, str]], parse: Callable[[str], T]) -> T:
        """``parse`` of the endpoint's reply to ``messages``, retried as the module docstring says.

        ``parse`` raises ``ValueError`` for a reply it cannot use (retried like a transient error).

        Raises:
            LLMFailure: every attempt failed; its message is one line with the key masked.
        """
        json_mode, reason, attempt = self.json_mode, "", 0
        for attempt in range(1, self.max_retries + 2):
            wait = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
            try:
                return parse(self._request(messages, json_mode))
            except openai.APITimeoutError:
                reason = f"request timed out after {self.timeout:g} s"
            except openai.APIStatusError as exc:
                # Masked before it is cut: a cut must not leave half a key behind.
                reason = f"HTTP {exc.status_code}: {one_line(self.redact(exc.message), 160)}"
                if exc.status_code == 400 and json_mode:
                    json_mode, wait = False, 0.0  # retry at once without response_format
                elif exc.status_code not in (408, 409, 429) and exc.status_code < 500:
                    break
            except openai.OpenAIError as exc:  # connection refused, bad response body...
                reason = f"{type(exc).__name__}: {one_line(self.redact(str(exc)), 160)}"
            except ValueError as exc:
                reason = f"invalid reply: {exc}"
            if attempt <= self.max_retries:
                time.sleep(wait)
        raise LLMFailure(attempt, self.redact(reason))
