"""Secrets are masked in every message: configured keys, bearer tokens, sk- keys, api_key=..."""

from __future__ import annotations

import pytest

from zsgrounding.redact import redact
from zsgrounding.runner import error_record


def test_redact_masks_each_kind_and_leaves_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "opaque-token-without-prefix")
    text = (
        "HTTP 500: headers {'Authorization': 'Bearer abc.def-123'} key sk-proj-ABCDEF123456 "
        "url ?api_key=zzz999&x=1 and opaque-token-without-prefix; given given-secret-42 too"
    )
    out = redact(text, ["given-secret-42"])
    assert out == (
        "HTTP 500: headers {'Authorization': 'Bearer ***'} key sk-*** "
        "url ?api_key=***&x=1 and ***; given *** too"
    )
    # Short "keys" (a local server's placeholder) are not secrets worth masking words for.
    assert redact("local server", ["local"]) == "local server"


def test_error_lines_in_result_files_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STVG_LLM_API_KEY", "my-private-key-123")
    record = error_record("v1", RuntimeError("endpoint said: my-private-key-123 is invalid"), 0.5)
    assert record["error"] == "RuntimeError: endpoint said: *** is invalid"
