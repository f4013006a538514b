"""LLM decompositions cached on disk, keyed by model and query."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from zsgrounding.atomic import write_text_atomic
from zsgrounding.llm import one_line
from zsgrounding.zeroshot.decompose.result import Decomposition, DecompositionError


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
                f"{self.path}: unreadable decomposition cache ({one_line(exc)})"
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
        text = json.dumps({"format": self.FORMAT, "entries": entries}, indent=1, ensure_ascii=False)
        write_text_atomic(self.path, text + "\n")
