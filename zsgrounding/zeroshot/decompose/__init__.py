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

from zsgrounding.english import tidy
from zsgrounding.llm import DEFAULT_MODEL
from zsgrounding.zeroshot.decompose.cache import DecompositionCache
from zsgrounding.zeroshot.decompose.facade import Decomposer
from zsgrounding.zeroshot.decompose.llm import (
    EXAMPLES,
    INSTRUCTION,
    LLMDecomposer,
    build_messages,
    parse_reply,
)
from zsgrounding.zeroshot.decompose.reference import FAILURE_MARKER, load_reference_decompositions
from zsgrounding.zeroshot.decompose.result import (
    QUESTION_TEMPLATE,
    SOURCES,
    Decomposition,
    DecompositionError,
    DecompositionWarning,
    as_question,
    reference_tidy,
)
from zsgrounding.zeroshot.decompose.rules import RuleDecomposer, noun_phrase

__all__ = [
    "DEFAULT_MODEL",
    "EXAMPLES",
    "FAILURE_MARKER",
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
    "reference_tidy",
    "tidy",
]
