"""Decomposition by an OpenAI-compatible chat endpoint: the instruction, its examples, the reply's parser."""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

from zsgrounding.llm import ChatClient, LLMError, LLMFailure, one_line
from zsgrounding.zeroshot.decompose.result import Decomposition, DecompositionError

INSTRUCTION = """\
You help a video grounding system. The user gives one sentence that points at a single target \
(a person, an animal or an object) in a video. Rewrite it as two short descriptions of that \
same target:

"attribute": a noun phrase saying who or what the target is, using only what the sentence tells \
about its looks and place: category, clothing, colour, size, and where it is or what it is next \
to. Leave out everything the target does.
"action": the target's noun with its article (no other appearance words), followed by \
everything the target does, in the sentence's order, e.g. "the man who picks up a cup and \
leaves". Keep the objects and people it acts on.

Rules: reuse the sentence's own words; never invent details; lower-case the leading article. \
If the sentence says nothing about actions, the action is the same as the attribute. If the \
sentence is a question ("Who ...?", "What ...?"), describe the answer as "the person" or \
"the object".
Reply with a single JSON object and nothing else: {"attribute": "...", "action": "..."}"""

EXAMPLES: tuple[tuple[str, str, str], ...] = (
    (
        "The man in the grey suit walks over to the desk and picks up the phone.",
        "the man in the grey suit",
        "the man who walks over to the desk and picks up the phone",
    ),
    (
        "A woman with a ponytail turns around and leaves the room.",
        "a woman with a ponytail",
        "a woman who turns around and leaves the room",
    ),
    (
        "the little boy on the right of the bench claps his hands twice",
        "the little boy on the right of the bench",
        "the boy who claps his hands twice",
    ),
    (
        "There is a black dog running after a ball on the beach.",
        "a black dog on the beach",
        "a dog running after a ball",
    ),
    (
        "Who is pushing the shopping cart in the supermarket?",
        "the person in the supermarket",
        "the person who is pushing the shopping cart",
    ),
    (
        "the small green triangle that moves up",
        "the small green triangle",
        "the triangle that moves up",
    ),
    (
        "An old woman in a long blue coat beside the bus stop.",
        "an old woman in a long blue coat beside the bus stop",
        "an old woman in a long blue coat beside the bus stop",
    ),
)
"""In-context examples ``(sentence, attribute, action)``: people, animals, a question, a toy caption."""


def _user_turn(sentence: str) -> str:
    return f"Sentence: {sentence}"


def build_messages(query: str) -> list[dict[str, str]]:
    """The chat messages for ``query``: the instruction, the examples as turns, then the query."""
    messages = [{"role": "system", "content": INSTRUCTION}]
    for sentence, attribute, action in EXAMPLES:
        messages.append({"role": "user", "content": _user_turn(sentence)})
        messages.append(
            {"role": "assistant", "content": json.dumps({"attribute": attribute, "action": action})}
        )
    messages.append({"role": "user", "content": _user_turn(query)})
    return messages


_FENCE = re.compile(r"```[A-Za-z]*\s*(.*?)```", re.DOTALL)


def _json_objects(text: str) -> list[Any]:
    """Every JSON value the reply may hold: the whole text, fenced blocks, each ``{...}`` in prose."""
    found = []
    decoder = json.JSONDecoder()
    for chunk in [text, *_FENCE.findall(text)]:
        with contextlib.suppress(ValueError):
            found.append(json.loads(chunk))
    for match in re.finditer(r"\{", text):
        with contextlib.suppress(ValueError):
            found.append(decoder.raw_decode(text, match.start())[0])
    return found


def parse_reply(text: str) -> tuple[str, str]:
    """``(attribute, action)`` from an LLM reply; ``ValueError`` saying what is wrong."""
    objects = [o for o in _json_objects(text) if isinstance(o, dict)]
    if not objects:
        raise ValueError(f"no JSON object in the reply {one_line(text, 80)!r}")
    problem = ""
    for obj in objects:
        fields = [obj.get("attribute"), obj.get("action")]
        if all(isinstance(f, str) and f.strip() for f in fields):
            return " ".join(fields[0].split()), " ".join(fields[1].split())
        missing = [
            n
            for n, f in zip(("attribute", "action"), fields, strict=True)
            if not (isinstance(f, str) and f.strip())
        ]
        problem = problem or f"the reply's JSON lacks a non-empty string {' and '.join(missing)}"
    raise ValueError(problem)


class LLMDecomposer:
    """Decompose with any OpenAI-compatible chat endpoint (OpenAI, vLLM, llama.cpp, Ollama...).

    Arguments and their environment fallbacks, timeouts and retries are
    :class:`~zsgrounding.llm.ChatClient`'s. An endpoint is configured when a base URL or a key is
    known; otherwise the constructor raises :class:`DecompositionError` and :meth:`from_env`
    returns ``None``.
    """

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        *,
        client: ChatClient | None = None,
        **settings: Any,
    ) -> None:
        if client is not None:  # an endpoint already set up (from_env)
            self.client = client
            return
        try:
            self.client = ChatClient(base_url, model, api_key, **settings)
        except LLMError as exc:
            raise DecompositionError(str(exc)) from None

    @classmethod
    def from_env(cls, **kwargs: Any) -> LLMDecomposer | None:
        """An LLM decomposer from arguments and the environment, or ``None`` if none is configured.

        A configured endpoint with a bad setting (``STVG_LLM_TIMEOUT=abc``) is an error, not
        ``None``: the user asked for an endpoint."""
        try:
            client = ChatClient.from_env(**kwargs)
        except LLMError as exc:
            raise DecompositionError(str(exc)) from None
        return None if client is None else cls(client=client)

    @property
    def model(self) -> str:
        return self.client.model

    @property
    def base_url(self) -> str | None:
        return self.client.base_url

    @property
    def timeout(self) -> float:
        return self.client.timeout

    @property
    def max_retries(self) -> int:
        return self.client.max_retries

    def __repr__(self) -> str:  # never shows the key
        return f"LLMDecomposer(base_url={self.base_url!r}, model={self.model!r})"

    def decompose(self, query: str) -> Decomposition:
        """Ask the endpoint; :class:`DecompositionError` (one line) once every attempt failed."""
        query = query.strip()
        if not query:
            raise DecompositionError("empty query")
        try:
            attribute, action = self.client.ask_json(build_messages(query), parse_reply)
        except LLMFailure as failure:
            raise DecompositionError(
                f"LLM decomposition ({self.model}) of {one_line(query, 80)!r} failed after "
                f"{failure.attempts} attempt(s): {failure.reason}"
            ) from None
        return Decomposition(query, attribute, action, "llm")

    def redact(self, text: str) -> str:
        """``text`` with this endpoint's key (and anything token-like) masked."""
        return self.client.redact(text)
