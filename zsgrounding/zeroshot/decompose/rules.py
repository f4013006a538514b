"""Offline decomposition by English rules: no model, no endpoint."""

from __future__ import annotations

from zsgrounding.english import DETERMINERS, PEOPLE, RELATIVES, EnglishError, bare, declarative, parse, tidy
from zsgrounding.english import noun_phrase as _head_noun
from zsgrounding.zeroshot.decompose.result import Decomposition, DecompositionError


class RuleDecomposer:
    """Offline decomposition by rules; no model.

    The subject noun phrase starts the sentence (after an optional
    "There is/are"); its head noun is the last word before the first preposition, looks
    participle ("wearing", "dressed"), relative pronoun or verb. The predicate starts at the first
    relative pronoun, finite verb (from a verb list plus -s/-ed inflection), -ing participle
    or sequencing adverb ("then") after the head that does not follow a determiner or
    preposition. Attribute = everything before the predicate; action = article + head noun +
    predicate ("the man in the red shirt who turns around" -> "the man in the red shirt" /
    "the man who turns around"). Without a predicate both sub-queries are the whole sentence
    (source ``"fallback"``); so are they for a "Who ...?" / "What ...?" question, first turned
    into "the person who ..." / "the object that ...", since it names no attribute of its answer.
    """

    def decompose(self, query: str) -> Decomposition:
        query = query.strip()
        text = tidy(query)
        if not text:
            raise DecompositionError("empty query")
        described = declarative(text)
        parsed = parse(described)
        if described != text or parsed is None or parsed.cut is None:
            # A question names no attribute of its answer, so its description serves both cues.
            whole = tidy(" ".join(parsed.tokens[parsed.start :])) if parsed else described
            return Decomposition(query, whole, whole, "fallback")
        tokens = parsed.tokens
        attribute = " ".join(tokens[parsed.start : parsed.cut]).rstrip(",;: ")
        det = [tokens[parsed.start]] if bare(tokens[parsed.start]) in DETERMINERS else []
        head, first = bare(tokens[parsed.head]), bare(tokens[parsed.cut])
        # "the man turns around" is a clause; "the man who turns around" is the noun phrase the
        # question "Is there ... in this video?" needs. Participles ("walking") already read well.
        link = [] if first in RELATIVES or first.endswith("ing") else ["who" if head in PEOPLE else "that"]
        action = " ".join([*det, head, *link, *tokens[parsed.cut :]])
        return Decomposition(query, tidy(attribute), tidy(action), "rules")

    def noun_phrase(self, query: str) -> str:
        """The target's noun for a detector prompt (:func:`zsgrounding.english.noun_phrase`)."""
        try:
            return _head_noun(query)
        except EnglishError as exc:
            raise DecompositionError(str(exc)) from None


def noun_phrase(query: str) -> str:
    """:meth:`RuleDecomposer.noun_phrase` of ``query``."""
    return RuleDecomposer().noun_phrase(query)
