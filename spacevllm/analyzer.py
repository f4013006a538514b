"""The first stage of Uni-STG synthesis: the objects of a caption a detector can box, its subject
first (an OpenAI-compatible endpoint through :class:`~zsgrounding.llm.ChatClient`, else the
offline head noun)."""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from zsgrounding.english import EnglishError, noun_phrase
from zsgrounding.errors import STVGError
from zsgrounding.llm import ChatClient, LLMFailure

_ARTICLES = ("a ", "an ", "the ")


class SynthWarning(UserWarning):
    """The LLM analyzer failed and the offline rules were used; the message says why."""


class AnalyzerError(STVGError):
    """The LLM endpoint gave no usable object list after every attempt."""


@dataclass(frozen=True)
class Analysis:
    """The analyzer's answer: objects to localise (subject first) and where they came from.

    ``source``: ``"llm"``, ``"rules"`` (offline, by choice) or ``"fallback"`` (the LLM failed).
    """

    objects: tuple[str, ...]
    source: str


class Analyzer(Protocol):
    def analyze(self, caption: str) -> Analysis: ...


def _clean_object(text: str) -> str:
    """``"The Red Car."`` -> ``"red car"``: lower case, one space, no article or end punctuation."""
    words = " ".join(text.split()).lower().strip(" .,;:!?\"'")
    for article in _ARTICLES:
        if words.startswith(article):
            words = words[len(article) :]
    return words.strip()


def unique_objects(objects: Iterable[str], limit: int) -> tuple[str, ...]:
    """The first ``limit`` distinct objects, cleaned (lower case, no article or punctuation)."""
    out: list[str] = []
    for obj in objects:
        cleaned = _clean_object(obj)
        if cleaned and cleaned not in out:
            out.append(cleaned)
    return tuple(out[:limit])


class RuleAnalyzer:
    """Offline analyzer: the caption's head noun (:func:`zsgrounding.english.noun_phrase`)."""

    def analyze(self, caption: str) -> Analysis:
        try:
            return Analysis(unique_objects([noun_phrase(caption)], 1), "rules")
        except EnglishError:  # nothing left of the caption: no object
            return Analysis((), "rules")


INSTRUCTION = """\
You prepare training data for a video grounding model. The user gives the caption of a video \
clip. List the things in it that an object detector could draw a box around: people, animals, \
vehicles and other physical objects. Put the subject of the caption first, then the other \
objects in the order the caption mentions them. Write each as a short noun phrase of at most \
three words, without an article ("man", "red car", "dog"). Leave out places, body parts, sounds, \
events and anything that cannot be seen.
Reply with one JSON object and nothing else: {"objects": ["...", "..."]}, with an empty list when \
nothing can be boxed."""

EXAMPLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("A woman in a yellow coat opens the fridge and takes out a bottle.", ("woman", "fridge", "bottle")),
    ("the dog jumps over a low fence to catch the frisbee", ("dog", "fence", "frisbee")),
    ("person turn a light on.", ("person", "light")),
    ("It starts to rain over the quiet town.", ()),
)
"""In-context examples ``(caption, objects)``."""


def build_messages(caption: str) -> list[dict[str, str]]:
    """The chat messages for ``caption``: the instruction, the examples as turns, the caption."""
    messages = [{"role": "system", "content": INSTRUCTION}]
    for text, objects in EXAMPLES:
        messages.append({"role": "user", "content": f"Caption: {text}"})
        messages.append({"role": "assistant", "content": json.dumps({"objects": list(objects)})})
    messages.append({"role": "user", "content": f"Caption: {caption}"})
    return messages


def parse_objects(reply: str) -> list[str]:
    """The ``objects`` list of the first JSON object in ``reply``; ``ValueError`` if there is none."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", reply):
        try:
            value, _ = decoder.raw_decode(reply, match.start())
        except ValueError:
            continue
        objects = value.get("objects") if isinstance(value, dict) else None
        if isinstance(objects, list) and all(isinstance(o, str) for o in objects):
            return objects
    raise ValueError(f"no JSON object with an 'objects' list of strings in {' '.join(reply.split())[:80]!r}")


class LLMAnalyzer:
    """Object extraction through an OpenAI-compatible endpoint (:class:`~zsgrounding.llm.ChatClient`:
    its model, timeouts and retries).

    A failed request (after the client's retries of timeouts, connection errors, HTTP
    408/409/429/5xx and unparsable replies) warns :class:`SynthWarning` and falls back to
    :class:`RuleAnalyzer` (``source="fallback"``). A 400 while asking for JSON mode is retried
    once without it.
    """

    def __init__(self, llm: ChatClient, max_objects: int = 3) -> None:
        self.llm = llm
        self.max_objects = max_objects
        self.rules = RuleAnalyzer()

    def ask(self, caption: str) -> tuple[str, ...]:
        """The endpoint's objects for ``caption``; :class:`AnalyzerError` once every attempt failed."""
        try:
            objects = self.llm.ask_json(build_messages(caption), parse_objects)
        except LLMFailure as failure:
            raise AnalyzerError(
                f"LLM analyzer ({self.llm.model}) failed on {caption[:60]!r}: {failure.reason}"
            ) from None
        return unique_objects(objects, self.max_objects)

    def analyze(self, caption: str) -> Analysis:
        if not caption.strip():
            return Analysis((), "llm")
        try:
            return Analysis(self.ask(caption), "llm")
        except AnalyzerError as exc:
            warnings.warn(f"{exc}; using offline rules", SynthWarning, stacklevel=2)
            return Analysis(self.rules.analyze(caption).objects, "fallback")


def default_analyzer(max_objects: int = 3, **llm_kwargs: Any) -> Analyzer:
    """:class:`LLMAnalyzer` when an endpoint is configured (see :class:`~zsgrounding.llm.ChatClient`),
    else rules."""
    llm = ChatClient.from_env(**llm_kwargs)
    return LLMAnalyzer(llm, max_objects) if llm is not None else RuleAnalyzer()
