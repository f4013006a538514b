"""A decomposition: the two sub-queries of a sentence and where they came from; the question template."""

from __future__ import annotations

from dataclasses import dataclass, replace

from zsgrounding.english import tidy
from zsgrounding.errors import STVGError

QUESTION_TEMPLATE = "Is there {} in this video?"
SOURCES = ("llm", "cache", "reference", "rules", "fallback", "query")


class DecompositionError(STVGError):
    """A query cannot be decomposed as asked (empty query, LLM failure, unreadable file)."""


class DecompositionWarning(UserWarning):
    """The decomposition fell back to the offline rules; the message says why."""


def as_question(sub_query: str) -> str:
    """``"Is there {sub-query} in this video?"`` with the sub-query :func:`~zsgrounding.english.tidy`-ed."""
    return QUESTION_TEMPLATE.format(tidy(sub_query))


def reference_tidy(text: str) -> str:
    """A sub-query as the released code puts it in a question: leading and trailing ``.`` stripped,
    then surrounding whitespace, nothing else (``"The man goes to the car."`` keeps its ``The``)."""
    return text.strip(".").strip()


@dataclass(frozen=True)
class Decomposition:
    """A query split into two sub-queries that both name the target.

    Attributes:
        query: the original sentence (empty for an entry of a reference file before
            :meth:`for_query` fills it: those files are keyed by video, not by sentence).
        attribute: who / what the target is, as a noun phrase ("the man in the red shirt").
        action: the target and what it does ("the man who turns around").
        source: where it came from, one of :data:`SOURCES` (``"query"``: not decomposed, both
            sub-queries are the whole query, as the grounder does with both prompts off).
    """

    query: str
    attribute: str
    action: str
    source: str

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"unknown decomposition source {self.source!r}; expected one of {SOURCES}")

    @property
    def attribute_question(self) -> str:
        return as_question(self.attribute)

    @property
    def action_question(self) -> str:
        return as_question(self.action)

    def questions(self) -> tuple[str, str]:
        """``(attribute question, action question)``."""
        return self.attribute_question, self.action_question

    def for_query(self, query: str) -> Decomposition:
        """This decomposition for ``query``; an empty sub-query becomes the whole query."""
        return replace(self, query=query, attribute=self.attribute or query, action=self.action or query)

    def to_json(self) -> dict[str, str]:
        return {
            "query": self.query,
            "attribute": self.attribute,
            "action": self.action,
            "source": self.source,
        }
