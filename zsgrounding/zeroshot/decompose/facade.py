"""The pipeline's entry point: reference file, then cache, then LLM, then the offline rules."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from zsgrounding.llm import LLMError, env_number
from zsgrounding.zeroshot.decompose.cache import DecompositionCache
from zsgrounding.zeroshot.decompose.llm import LLMDecomposer
from zsgrounding.zeroshot.decompose.reference import load_reference_decompositions, reference_entry
from zsgrounding.zeroshot.decompose.result import Decomposition, DecompositionError, DecompositionWarning
from zsgrounding.zeroshot.decompose.rules import RuleDecomposer


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
        self.max_failures = max_failures if max_failures is not None else _max_failures()
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
            entry = reference_entry(self.reference, key)
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


def _max_failures() -> int:
    try:
        return int(env_number("STVG_LLM_MAX_FAILURES", 3, int))
    except LLMError as exc:
        raise DecompositionError(str(exc)) from None
