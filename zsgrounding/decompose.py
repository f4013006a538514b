"""Query decomposition: one grounding sentence -> an attribute sub-query and an action sub-query.

The training-free method (section 3.3 of *Unleashing the Potential of Multimodal LLMs for
Zero-Shot Spatio-Temporal Video Grounding*) asks the MLLM two yes/no questions built from
the sentence, one about *who or what* the target is (spatial cue) and one about *what it does*
(temporal cue)::

    "the man in the red shirt who turns around"
        attribute: "the man in the red shirt"  -> "Is there the man in the red shirt in this video?"
        action:    "the man who turns around"  -> "Is there the man who turns around in this video?"

Sources, in the order :class:`Decomposer` tries them:

- ``"reference"``: the reference code's released decomposition file, looked up by video key
  (:func:`load_reference_decompositions`).
- ``"cache"``: an earlier LLM answer stored on disk (:class:`DecompositionCache`).
- ``"llm"``: any OpenAI-compatible chat endpoint (:class:`LLMDecomposer`).
- ``"rules"``: the offline :class:`RuleDecomposer` split the sentence.
- ``"fallback"``: nothing could be split; both sub-queries are the whole sentence (a question
  such as "Who is ...?" is first turned into a description, "the person who is ...").

Sub-query conventions (:func:`as_question`): surrounding whitespace and a trailing ``.``, ``?`` or
``!`` are dropped and runs of spaces collapsed; a capitalised leading article (``A``, ``An``,
``The``) is lower-cased because it no longer starts a sentence; every other word keeps its
casing (proper nouns, "TV").
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import openai

from zsgrounding.datasets.toyworld import CaptionParts
from zsgrounding.errors import STVGError
from zsgrounding.redact import redact

QUESTION_TEMPLATE = "Is there {} in this video?"
SOURCES = ("llm", "cache", "reference", "rules", "fallback", "query")
DEFAULT_MODEL = "gpt-4o"  # the LLM named by the paper; any chat model behind the endpoint works
_ARTICLES = frozenset({"a", "an", "the"})


class DecompositionError(STVGError):
    """A query cannot be decomposed as asked (empty query, LLM failure, unreadable file)."""


class DecompositionWarning(UserWarning):
    """The decomposition fell back to the offline rules; the message says why."""


# ------------------------------------------------------------------------------------ the result


def tidy(text: str) -> str:
    """A sub-query as it goes into a question (see the module docstring for the rules)."""
    words = text.split()
    if words and words[0].lower() in _ARTICLES and words[0] != words[0].lower():
        words[0] = words[0].lower()
    return " ".join(words).rstrip(".?! ")


def as_question(sub_query: str) -> str:
    """``"Is there {sub-query} in this video?"`` with the sub-query :func:`tidy`-ed."""
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


# ------------------------------------------------------------------------------------ reference


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
        raise DecompositionError(f"{path}: unreadable decomposition file ({_one_line(exc)})") from exc
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


def _reference_entry(reference: Mapping[str, Decomposition], key: str) -> Decomposition | None:
    """Look ``key`` up as given, then without its file extension ("v1.mp4" -> "v1")."""
    if key in reference:
        return reference[key]
    stem, dot, _ = key.rpartition(".")
    return reference.get(stem) if dot and stem else None


# ------------------------------------------------------------------------------------ cache


def _normalise_query(query: str) -> str:
    return " ".join(query.split())


class DecompositionCache:
    """LLM decompositions in one JSON file, keyed by ``(model, query)``.

    File: ``{"format": "stvg-decompositions-v1", "entries": {hash: {"model", "query",
    "attribute", "action"}}}``; the hash is over the model and the whitespace-normalised query,
    the values keep both readable. Every :meth:`put` re-reads the file, merges and replaces it
    atomically (temporary file + ``os.replace``), so a crash never leaves half a file and two
    runs sharing it lose at worst an entry, which is then asked again.
    Only LLM answers belong here: rule results are cheap, and caching them would keep a
    fallback after the endpoint is back.
    """

    FORMAT = "stvg-decompositions-v1"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._entries = self._read()

    @staticmethod
    def key(model: str, query: str) -> str:
        text = json.dumps([model, _normalise_query(query)], ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, model: str | None, query: str) -> Decomposition | None:
        """The cached decomposition of ``query`` by ``model`` (``None``: by any model), or None."""
        if model is not None:
            entry = self._entries.get(self.key(model, query))
        else:
            wanted = _normalise_query(query)
            hits = sorted(
                (e for e in self._entries.values() if _normalise_query(e["query"]) == wanted),
                key=lambda e: e["model"],
            )
            entry = hits[0] if hits else None
        if entry is None or _normalise_query(entry["query"]) != _normalise_query(query):
            return None
        return Decomposition(query, entry["attribute"], entry["action"], "cache")

    def put(self, model: str, decomposition: Decomposition) -> None:
        """Store ``decomposition`` (of ``decomposition.query``) for ``model`` and save the file."""
        entry = {
            "model": model,
            "query": decomposition.query,
            "attribute": decomposition.attribute,
            "action": decomposition.action,
        }
        self._entries[self.key(model, decomposition.query)] = entry
        merged = {**self._read(), **self._entries}  # keep what another run wrote meanwhile
        self._write(merged)
        self._entries = merged

    def _read(self) -> dict[str, dict[str, str]]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DecompositionError(
                f"{self.path}: unreadable decomposition cache ({_one_line(exc)})"
            ) from exc
        entries = data.get("entries") if isinstance(data, dict) else None
        if not isinstance(entries, dict) or data.get("format") != self.FORMAT:
            raise DecompositionError(f"{self.path}: not a {self.FORMAT} cache file")
        fields = ("model", "query", "attribute", "action")
        return {
            k: {f: e[f] for f in fields}
            for k, e in entries.items()
            if isinstance(e, dict) and all(isinstance(e.get(f), str) for f in fields)
        }

    def _write(self, entries: dict[str, dict[str, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"format": self.FORMAT, "entries": entries}, indent=1, ensure_ascii=False)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


# ------------------------------------------------------------------------------------ LLM

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
        raise ValueError(f"no JSON object in the reply {_one_line(text, 80)!r}")
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


def _one_line(value: object, limit: int = 200) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _env(*names: str) -> str | None:
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


def _env_number(name: str, default: Any, kind: type) -> Any:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        return kind(text)
    except ValueError:
        raise DecompositionError(f"{name}={text!r} is not a {kind.__name__}") from None


def _reply_text(reply: Any) -> str:
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


class LLMDecomposer:
    """Decompose with any OpenAI-compatible chat endpoint (OpenAI, vLLM, llama.cpp, Ollama...).

    Arguments fall back to the environment: ``STVG_LLM_BASE_URL`` then ``OPENAI_BASE_URL``;
    ``STVG_LLM_MODEL`` (default :data:`DEFAULT_MODEL`); ``STVG_LLM_API_KEY`` then
    ``OPENAI_API_KEY`` (a local server without a key gets a placeholder); ``STVG_LLM_TIMEOUT``
    (seconds per request, default 20) and ``STVG_LLM_RETRIES`` (default 2). An endpoint is
    configured when a base URL or a key is known; otherwise the constructor raises
    :class:`DecompositionError` and :meth:`from_env` returns ``None``.

    Each attempt is one request of at most ``timeout`` seconds; transient failures (timeouts,
    connection errors, HTTP 408/409/429/5xx, replies without valid JSON) are retried up to
    ``max_retries`` times after ``min(max_backoff, backoff * 2**attempt)`` seconds. Other HTTP
    errors end at once, except a 400 while asking for JSON mode: some servers reject
    ``response_format``, so the next attempt goes without it (the instruction asks for JSON anyway).
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
        base_url = base_url or _env("STVG_LLM_BASE_URL", "OPENAI_BASE_URL")
        api_key = api_key or _env("STVG_LLM_API_KEY", "OPENAI_API_KEY")
        if not base_url and not api_key:
            raise DecompositionError(
                "no LLM endpoint configured (set STVG_LLM_BASE_URL or STVG_LLM_API_KEY / OPENAI_API_KEY)"
            )
        timeout = timeout if timeout is not None else _env_number("STVG_LLM_TIMEOUT", 20.0, float)
        max_retries = max_retries if max_retries is not None else _env_number("STVG_LLM_RETRIES", 2, int)
        if timeout <= 0 or max_retries < 0 or backoff < 0:
            raise DecompositionError("the LLM endpoint needs timeout > 0, retries >= 0 and backoff >= 0")
        self.base_url = base_url
        self.model = model or _env("STVG_LLM_MODEL") or DEFAULT_MODEL
        self.timeout, self.max_retries = timeout, max_retries
        self.backoff, self.max_backoff = backoff, max_backoff
        self.temperature, self.json_mode = temperature, json_mode
        # The client's own retries are off: the loop below owns every retry and its timing.
        self._client = openai.OpenAI(
            base_url=base_url, api_key=api_key or "not-needed", timeout=timeout, max_retries=0
        )
        self._secret = api_key  # only ever used to mask it in messages

    @classmethod
    def from_env(cls, **kwargs: Any) -> LLMDecomposer | None:
        """An LLM decomposer from arguments and the environment, or ``None`` if none is configured.

        A configured endpoint with a bad setting (``STVG_LLM_TIMEOUT=abc``) is an error, not
        ``None``: the user asked for an endpoint."""
        configured = kwargs.get("base_url") or kwargs.get("api_key")
        if not (
            configured or _env("STVG_LLM_BASE_URL", "OPENAI_BASE_URL", "STVG_LLM_API_KEY", "OPENAI_API_KEY")
        ):
            return None
        return cls(**kwargs)

    def __repr__(self) -> str:  # never shows the key
        return f"LLMDecomposer(base_url={self.base_url!r}, model={self.model!r})"

    def _ask(self, query: str, json_mode: bool) -> str:
        extra: dict[str, Any] = {"response_format": {"type": "json_object"}} if json_mode else {}
        if self.temperature is not None:  # None: leave it out (some reasoning models reject it)
            extra["temperature"] = self.temperature
        reply = self._client.chat.completions.create(
            model=self.model, messages=build_messages(query), **extra
        )
        return _reply_text(reply)

    def decompose(self, query: str) -> Decomposition:
        """Ask the endpoint; :class:`DecompositionError` (one line) once every attempt failed."""
        query = query.strip()
        if not query:
            raise DecompositionError("empty query")
        json_mode, reason, attempt = self.json_mode, "", 0
        for attempt in range(1, self.max_retries + 2):
            wait = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
            try:
                attribute, action = parse_reply(self._ask(query, json_mode))
                return Decomposition(query, attribute, action, "llm")
            except openai.APITimeoutError:
                reason = f"request timed out after {self.timeout:g} s"
            except openai.APIStatusError as exc:
                # Masked before it is cut: a cut must not leave half a key behind.
                reason = f"HTTP {exc.status_code}: {_one_line(self.redact(exc.message), 160)}"
                if exc.status_code == 400 and json_mode:
                    json_mode, wait = False, 0.0  # retry at once without response_format
                elif exc.status_code not in (408, 409, 429) and exc.status_code < 500:
                    break
            except openai.OpenAIError as exc:  # connection refused, bad response body...
                reason = f"{type(exc).__name__}: {_one_line(self.redact(str(exc)), 160)}"
            except ValueError as exc:
                reason = f"invalid reply: {exc}"
            if attempt <= self.max_retries:
                time.sleep(wait)
        raise DecompositionError(
            f"LLM decomposition ({self.model}) of {_one_line(query, 80)!r} failed after "
            f"{attempt} attempt(s): {self.redact(reason)}"
        )

    def redact(self, text: str) -> str:
        """``text`` with this endpoint's key (and anything token-like) masked."""
        return redact(text, [self._secret])


# ------------------------------------------------------------------------------------ rules


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


_DETERMINERS = _wordset(
    "a an the this that these those another one two three some any each both his her their its my your our"
)
_PREPOSITIONS = _wordset(
    "in on at with without of near beside besides behind by under beneath below above over next to "
    "from inside outside between among across along towards toward into onto like for against "
    "around opposite"
)
_RELATIVES = frozenset({"who", "that", "which", "whose", "whom"})
_PEOPLE = frozenset(
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


def _word(token: str) -> str:
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
    if previous in _DETERMINERS or previous in _PREPOSITIONS:
        return False  # "the left", "a walking stick", "with folded arms": a noun phrase goes on
    if word in _LOOKS:
        return False
    if word in _FINITE or word in _ADVERBS:
        return True
    if word.endswith("ing") and len(word) > 4 and word not in _ING_NOUNS:
        return True
    return word not in _VERBS and any(stem in _VERBS for stem in _verb_stems(word))


@dataclass(frozen=True)
class _Parse:
    """A sentence cut into ``det head | modifiers | predicate`` (token indices into ``tokens``)."""

    tokens: tuple[str, ...]
    start: int  # first token of the subject noun phrase (after "There is")
    head: int  # the head noun
    cut: int | None  # first token of the predicate, None when there is none


class RuleDecomposer:
    """Offline decomposition by rules; no model.

    Toy-world captions (``the [size] <colour> <shape> that <verb>``) are split exactly:
    attribute = the full noun phrase ("the big red circle"), action = article + shape + the
    action phrase ("the circle that moves left"); the detector noun is the shape.

    Other English sentences: the subject noun phrase starts the sentence (after an optional
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
        parts = _toy_parts(text)
        if parts is not None:
            action = f"the {parts.shape} {parts.action_phrase}"
            return Decomposition(query, parts.attribute_phrase, action, "rules")
        described = _declarative(text)
        parse = _parse(described)
        if described != text or parse is None or parse.cut is None:
            # A question names no attribute of its answer, so its description serves both cues.
            whole = tidy(" ".join(parse.tokens[parse.start :])) if parse else described
            return Decomposition(query, whole, whole, "fallback")
        tokens = parse.tokens
        attribute = " ".join(tokens[parse.start : parse.cut]).rstrip(",;: ")
        det = [tokens[parse.start]] if _word(tokens[parse.start]) in _DETERMINERS else []
        head, first = _word(tokens[parse.head]), _word(tokens[parse.cut])
        # "the man turns around" is a clause; "the man who turns around" is the noun phrase the
        # question "Is there ... in this video?" needs. Participles ("walking") already read well.
        link = [] if first in _RELATIVES or first.endswith("ing") else ["who" if head in _PEOPLE else "that"]
        action = " ".join([*det, head, *link, *tokens[parse.cut :]])
        return Decomposition(query, tidy(attribute), tidy(action), "rules")

    def noun_phrase(self, query: str) -> str:
        """The target's noun for a detector prompt: the toy shape or the English head noun.

        "the big red circle that moves left" -> "circle"; "the man in the red shirt who turns
        around" -> "man"; "Who is ...?" -> "person". When no head is found, the tidied query.
        """
        text = tidy(query)
        if not text:
            raise DecompositionError("empty query")
        parts = _toy_parts(text)
        if parts is not None:
            return parts.shape
        parse = _parse(_declarative(text))
        return _word(parse.tokens[parse.head]) if parse else text.lower()


def noun_phrase(query: str) -> str:
    """:meth:`RuleDecomposer.noun_phrase` of ``query``."""
    return RuleDecomposer().noun_phrase(query)


def _toy_parts(text: str) -> CaptionParts | None:
    try:
        return CaptionParts.parse(text.lower())
    except ValueError:
        return None


def _declarative(text: str) -> str:
    """Turn a "Who/What ...?" question into a description of its answer; other text unchanged."""
    words = text.split()
    first = _word(words[0]) if words else ""
    if first not in ("who", "what"):
        return text
    rest = words[1:]
    if rest and _word(rest[0]) in ("does", "do", "did"):
        rest = rest[1:]  # "What does the man hold" -> "the object that the man hold"
    subject = "the person who" if first == "who" else "the object that"
    return " ".join([subject, *rest])


def _parse(text: str) -> _Parse | None:
    tokens = tuple(text.split())
    words = [_word(t) for t in tokens]
    start = 0
    if len(words) > 2 and words[0] == "there" and words[1] in ("is", "are", "was", "were"):
        start = 2
    core = start + (1 if start < len(words) and words[start] in _DETERMINERS else 0)
    # The subject's own words: up to the first preposition, looks participle, pronoun or verb.
    end = core
    while end < len(words):
        word, previous = words[end], words[end - 1] if end > start else ""
        boundary = word in _PREPOSITIONS or word in _LOOKS or word in _RELATIVES or word == "and"
        if boundary or _starts_predicate(word, previous) or (end > core and tokens[end - 1].endswith(",")):
            break
        if word in _DETERMINERS and word != "one":  # "the one who ..." is fine
            return None  # a second determiner before any noun: not a shape this parser knows
        end += 1
    if end == core:
        return None
    head, cut = end - 1, None
    for i in range(end, len(words)):
        word, previous = words[i], words[i - 1]
        is_relative = word in _RELATIVES and not (word == "that" and previous in _PREPOSITIONS)
        if is_relative or _starts_predicate(word, previous):
            cut = i
            break
    return _Parse(tokens, start, head, cut)


# ------------------------------------------------------------------------------------ facade


class Decomposer:
    """The pipeline's entry point: reference file -> cache -> LLM -> offline rules.

    ``decompose(query, key)`` returns the reference entry for the video ``key`` if there is one,
    else the cached answer, else asks the LLM (and caches the answer). When the LLM fails or no
    endpoint is configured it warns (:class:`DecompositionWarning`, naming why) and uses the
    rules. With no LLM, the cache is looked up for any model. Rule answers are never cached, so
    a later run with a working endpoint asks it.

    After ``max_failures`` LLM failures in a row (``STVG_LLM_MAX_FAILURES``, default 3) the rest
    of the run uses the rules without asking again, which is said once. ``notify`` gets one line
    before the first request (where the toolkit waits and for how long).
    """

    def __init__(
        self,
        llm: LLMDecomposer | None = None,
        cache: DecompositionCache | None = None,
        reference: Mapping[str, Decomposition] | None = None,
        rules: RuleDecomposer | None = None,
        max_failures: int | None = None,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        self.llm, self.cache, self.reference = llm, cache, reference
        self.rules = rules or RuleDecomposer()
        self.max_failures = (
            max_failures if max_failures is not None else _env_number("STVG_LLM_MAX_FAILURES", 3, int)
        )
        if self.max_failures < 1:
            raise DecompositionError(f"max_failures must be at least 1, got {self.max_failures}")
        self.notify = notify
        self._failures = 0
        self._asked = False

    @classmethod
    def from_env(
        cls,
        cache_path: str | Path | None = None,
        reference_path: str | Path | None = None,
        notify: Callable[[str], None] | None = None,
        **llm_kwargs: Any,
    ) -> Decomposer:
        """The LLM from the environment (see :class:`LLMDecomposer`), an optional cache and reference."""
        return cls(
            llm=LLMDecomposer.from_env(**llm_kwargs),
            cache=DecompositionCache(cache_path) if cache_path is not None else None,
            reference=load_reference_decompositions(reference_path) if reference_path is not None else None,
            notify=notify,
        )

    def decompose(self, query: str, key: str | None = None) -> Decomposition:
        if not query.strip():
            raise DecompositionError("empty query")
        query = query.strip()
        if self.reference is not None and key is not None:
            entry = _reference_entry(self.reference, key)
            if entry is not None:
                return entry.for_query(query)
        model = self.llm.model if self.llm is not None else None
        if self.cache is not None:
            hit = self.cache.get(model, query)
            if hit is not None:
                return hit
        if self.llm is None:
            # No query in the message, so the default filter shows it once, not once per query.
            warnings.warn(
                "no LLM endpoint configured (STVG_LLM_BASE_URL / OPENAI_API_KEY unset); "
                "decomposing with offline rules",
                DecompositionWarning,
                stacklevel=2,
            )
            return self.rules.decompose(query)
        if self._failures >= self.max_failures:
            return self.rules.decompose(query)  # the endpoint is given up for this run (said once)
        if not self._asked and self.notify is not None:
            llm = self.llm
            self.notify(
                f"asking the LLM endpoint {llm.base_url or '(the OpenAI default)'} ({llm.model}) to decompose "
                f"queries: up to {llm.timeout:g} s x {llm.max_retries + 1} attempts each"
            )
        self._asked = True
        try:
            result = self.llm.decompose(query)
        except DecompositionError as exc:
            self._failures += 1
            given_up = self._failures >= self.max_failures
            tail = (
                f"; the endpoint failed {self._failures} times in a row, so the rest of this run uses "
                "the offline rules without asking it"
                if given_up
                else "; using offline rules"
            )
            warnings.warn(f"{exc}{tail}", DecompositionWarning, stacklevel=2)
            return self.rules.decompose(query)
        self._failures = 0
        if self.cache is not None:
            self.cache.put(self.llm.model, result)
        return result


__all__ = [
    "DEFAULT_MODEL",
    "EXAMPLES",
    "INSTRUCTION",
    "QUESTION_TEMPLATE",
    "SOURCES",
    "Decomposer",
    "Decomposition",
    "DecompositionCache",
    "DecompositionError",
    "DecompositionWarning",
    "LLMDecomposer",
    "RuleDecomposer",
    "as_question",
    "build_messages",
    "load_reference_decompositions",
    "noun_phrase",
    "parse_reply",
    "tidy",
]
