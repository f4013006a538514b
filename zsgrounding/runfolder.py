"""What a run folder knows about the run that writes it: its settings, its data, its owner.

``run.json`` records the grounder's resolved settings and a fingerprint of every sample it was
asked (id, video file name, sentence). A resume compares: other settings, or a sample id whose
video or sentence changed, is refused with one line that names the differing keys, since its
results would silently mix two configurations; ``force=True`` accepts it and says so. New
sample ids are fine (a run over the first N samples may go on over all of them).

:class:`RunLock` keeps two processes of the same rank out of one folder (``torchrun`` ranks
have different rank files and share the folder as before).
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from zsgrounding.atomic import write_text_atomic
from zsgrounding.errors import STVGError
from zsgrounding.proposals.trackfile import file_digest
from zsgrounding.types import Sample

__all__ = ["RUN_FILE", "RunChangedError", "RunLock", "check_run", "run_record"]

RUN_FILE = "run.json"
FORMAT = "stvg-run-v1"


class RunChangedError(STVGError):
    """A resume into a folder written with other settings or other data."""


def _settings(grounder: Any) -> dict[str, Any]:
    config = getattr(grounder, "config", None)
    to_json = getattr(config, "to_json", None)
    if callable(to_json):
        return json.loads(json.dumps(to_json(), default=str))
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return json.loads(json.dumps(dataclasses.asdict(config), default=str))
    return {}


def _sample_hash(sample: Sample) -> str:
    parts = [Path(str(sample.video)).name, sample.sentence]
    if sample.meta.get("tracks") is not None:  # the user's own tracks: an edited file is a change
        parts.append(file_digest(sample.meta["tracks"]))
    text = json.dumps(parts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def run_record(grounder: Any, samples: Iterable[Sample]) -> dict[str, Any]:
    """``run.json``'s content for ``grounder`` on ``samples``."""
    return {
        "format": FORMAT,
        "grounder": str(getattr(grounder, "name", type(grounder).__name__)),
        "kind": type(getattr(grounder, "grounder", grounder)).__name__,
        "settings": _settings(grounder),
        "samples": {s.id: _sample_hash(s) for s in samples},
    }


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _differences(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    keys = []
    for part in ("grounder", "kind"):
        if saved.get(part) != now.get(part):
            keys.append(part)
    old, new = _flatten(saved.get("settings", {})), _flatten(now.get("settings", {}))
    keys += [f"settings.{k}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    old_samples, new_samples = saved.get("samples", {}), now.get("samples", {})
    changed = [i for i in new_samples if i in old_samples and old_samples[i] != new_samples[i]]
    if changed:
        keys.append(f"samples ({len(changed)} changed, e.g. {changed[0]!r})")
    return keys


def check_run(out: Path, record: dict[str, Any], resume: bool, force: bool, write: bool) -> None:
    """Compare ``record`` with the folder's ``run.json`` on resume, then store it (``write``).

    Raises:
        RunChangedError: a resume with other settings or changed samples, unless ``force``.
    """
    path = out / RUN_FILE
    saved: dict[str, Any] | None = None
    if resume and path.is_file():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RunChangedError(
                f"{path}: unreadable run record ({exc}); use another output folder"
            ) from exc
        saved = loaded if isinstance(loaded, dict) else None
    if saved is not None:
        keys = _differences(saved, record)
        if keys and not force:
            shown = ", ".join(keys[:6]) + (f" and {len(keys) - 6} more" if len(keys) > 6 else "")
            raise RunChangedError(
                f"{out} holds results made with other settings or data ({shown}); resuming would mix "
                "them: use --no-resume, another --out, or --force-resume to accept the mix"
            )
        if keys:
            warnings.warn(f"resuming {out} although {', '.join(keys[:6])} changed (forced)", stacklevel=3)
        record = {**record, "samples": {**saved.get("samples", {}), **record["samples"]}}
    if write:
        write_text_atomic(path, json.dumps(record, indent=1) + "\n")


class RunLock:
    """An exclusive lock on ``out/.lock.rank{r}`` for the run's lifetime (released on exit or crash)."""

    def __init__(self, out: Path, rank: int) -> None:
        self.path = out / f".lock.rank{rank}"
        self._file: IO[str] | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            handle.close()
            raise STVGError(
                f"{self.path.parent} is in use by another run (pid {owner}); wait for it or use another --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
