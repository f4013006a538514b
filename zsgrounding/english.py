"""English rules shared by both paradigms: a sentence's subject noun phrase, its head noun and
where its predicate starts.

No model: word lists and a left-to-right scan. The zero-shot method's offline decomposer splits a
sentence at the predicate (:class:`zsgrounding.zeroshot.decompose.RuleDecomposer`); proposals and
SpaceVLLM's data synthesis ask a detector for the head noun (:func:`noun_phrase`).

The subject noun phrase starts the sentence (after an optional "There is/are"); its head noun is
the last word before the first preposition, looks participle ("wearing", "dressed"), relative
pronoun or verb. The predicate starts at the first relative pronoun, finite verb (from a verb list
plus -s/-ed inflection), -ing participle or sequencing adverb ("then") after the head that does not
follow a determiner or preposition. A "Who ...?" / "What ...?" question is first turned into a
description of its answer ("the person who ...", "the object that ...").
"""

from __future__ import annotations

from dataclasses import dataclass

from zsgrounding.errors import STVGError

ARTICLES = frozenset({"a", "an", "the"})


class EnglishError(STVGError):
    """Nothing to parse (an empty sentence)."""


def tidy(text: str) -> str:
    """A phrase as it goes into a question: surrounding whitespace and a trailing ``.``, ``?`` or
    ``!`` dropped, runs of spaces collapsed, a capitalised leading article lower-cased (it no
    longer starts a sentence); every other word keeps its casing (proper nouns, "TV")."""
    words = text.split()
    if words and words[0].lower() in ARTICLES and words[0] != words[0].lower():
        words[0] = words[0].lower()
    return " ".join(words).rstrip(".?! ")


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


DETERMINERS = _wordset(
    "a an the this that these those another one two three some any each both his her their its my your our"
)
PREPOSITIONS = _wordset(
    "in on at with without of near beside besides behind by under beneath below above over next to "
    "from inside outside between among across along towards toward into onto like for against "
    "around opposite"
)
RELATIVES = frozenset({"who", "that", "which", "whose", "whom"})
PEOPLE = frozenset(
    [
        "man",
        "men",
        "woman",
        "women",
        "person",
        "people",
        "boy",
        "boys",
        "girl",
        "girls",
        "child",
        "children",
        "kid",
        "kids",
        "baby",
        "guy",
        "guys",
        "lady",
        "ladies",
        "gentleman",
        "adult",
        "player",
        "players",
        "worker",
        "officer",
        "doctor",
        "student",
        "teacher",
        "he",
        "she",
        "someone",
    ]
)
# Participles that describe looks, not actions: they stay in the attribute.
_LOOKS = frozenset({"wearing", "dressed", "clad", "donning", "having"})
_ADVERBS = _wordset(
    "first then finally slowly quickly suddenly also again immediately later gradually eventually "
    "soon just still always never"
)
_FINITE = _wordset(
    "is are was were has have had does do did can will would could should may might must goes went "
    "came took stood sat ran held threw caught gave got fell said told brought kept began led "
    "ate drank rode drove knelt swung spun flew grew shook wore fought hung hid met became"
)  # not "left" (the side far more often than the verb) nor "rose" (the flower)
_VERBS = _wordset(
    """walk run turn stand sit go come look hold take pick put open close push pull throw catch hit kick
    jump dance talk speak say tell ask answer leave enter exit move raise lift drop hand give point wave
    nod shake hug kiss touch grab eat drink play ride drive lean lie bend kneel climb fall step stop stay
    follow chase carry watch see smile laugh cry shout yell scream write read clap pour cut wash fly swim
    roll spin grow shrink appear disappear approach reach bow sing use pass lower rise get set place show
    tap pat pet feed lead hide bump crawl rub squat fold wipe adjust return head hurry rush wander glance
    stare gaze slap punch fight help greet meet join knock hang stretch sweep smoke cook serve release
    let make keep start begin finish continue try bring fetch pay buy hear listen call wear sip hop skate
    ski bounce kneel stroll jog sprint toss swing pace lean hand shove drag lay cover sniff bite
    lick chew scratch cross squeeze nudge poke pinch shoot aim dig film clean arrive wait kneel
    type drink pretend prepare practice perform lift examine inspect search unlock lock load unload"""
)
_ING_NOUNS = _wordset(
    "thing something nothing anything everything clothing building ceiling morning evening ring "
    "earring wing king string spring railing painting drawing stocking sibling pudding bedding "
    "lighting parking ding"
)


def bare(token: str) -> str:
    """``token`` lower-cased, without the punctuation that may cling to it."""
    return token.strip(",;:.!?\"'()").lower()


def _verb_stems(word: str) -> list[str]:
    """Base forms ``word`` may inflect (3rd person -s, past -ed, -ing), most likely first."""
    stems = []
    if word.endswith("ies"):
        stems.append(word[:-3] + "y")
    elif word.endswith("s") and not word.endswith("ss"):
        stems += [word[:-1], word[:-2]] if word.endswith("es") else [word[:-1]]
    for suffix in ("ed", "ing"):
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            base = word[: -len(suffix)]
            stems += [base, base + "e", base[:-1] if base[-1] == base[-2] else base, base[:-1] + "y"]
    return stems


def _starts_predicate(word: str, previous: str) -> bool:
    """Whether ``word`` (after ``previous``) starts what the target does."""
    if previous in DETERMINERS or previous in PREPOSITIONS:
        return False  # "the left", "a walking stick", "with folded arms": a noun phrase goes on
    if word in _LOOKS:
        return False
    if word in _FINITE or word in _ADVERBS:
        return True
    if word.endswith("ing") and len(word) > 4 and word not in _ING_NOUNS:
        return True
    return word not in _VERBS and any(stem in _VERBS for stem in _verb_stems(word))


@dataclass(frozen=True)
class Parse:
    """A sentence cut into ``det head | modifiers | predicate`` (token indices into ``tokens``)."""

    tokens: tuple[str, ...]
    start: int  # first token of the subject noun phrase (after "There is")
    head: int  # the head noun
    cut: int | None  # first token of the predicate, None when there is none


def declarative(text: str) -> str:
    """Turn a "Who/What ...?" question into a description of its answer; other text unchanged."""
    words = text.split()
    first = bare(words[0]) if words else ""
    if first not in ("who", "what"):
        return text
    rest = words[1:]
    if rest and bare(rest[0]) in ("does", "do", "did"):
        rest = rest[1:]  # "What does the man hold" -> "the object that the man hold"
    subject = "the person who" if first == "who" else "the object that"
    return " ".join([subject, *rest])


def parse(text: str) -> Parse | None:
    tokens = tuple(text.split())
    words = [bare(t) for t in tokens]
    start = 0
    if len(words) > 2 and words[0] == "there" and words[1] in ("is", "are", "was", "were"):
        start = 2
    core = start + (1 if start < len(words) and words[start] in DETERMINERS else 0)
    # The subject's own words: up to the first preposition, looks participle, pronoun or verb.
    end = core
    while end < len(words):
        word, previous = words[end], words[end - 1] if end > start else ""
        boundary = word in PREPOSITIONS or word in _LOOKS or word in RELATIVES or word == "and"
        if boundary or _starts_predicate(word, previous) or (end > core and tokens[end - 1].endswith(",")):
            break
        if word in DETERMINERS and word != "one":  # "the one who ..." is fine
            return None  # a second determiner before any noun: not a shape this parser knows
        end += 1
    if end == core:
        return None
    head, cut = end - 1, None
    for i in range(end, len(words)):
        word, previous = words[i], words[i - 1]
        is_relative = word in RELATIVES and not (word == "that" and previous in PREPOSITIONS)
        if is_relative or _starts_predicate(word, previous):
            cut = i
            break
    return Parse(tokens, start, head, cut)


def noun_phrase(query: str) -> str:
    """The target's noun for a detector prompt: the English head noun of the subject.

    "the big red circle that moves left" -> "circle"; "the man in the red shirt who turns
    around" -> "man"; "Who is ...?" -> "person". When no head is found, the tidied query
    lower-cased.

    Raises:
        EnglishError: an empty query.
    """
    text = tidy(query)
    if not text:
        raise EnglishError("empty query")
    parsed = parse(declarative(text))
    return bare(parsed.tokens[parsed.head]) if parsed else text.lower()
