"""Charades-STA loader (temporal grounding: a span in seconds, no boxes).

File layout: one query per text line, ``VIDEO START END##sentence`` with times in seconds::

    3MSZA 24.3 30.4##person turn a light on.

Each non-blank line becomes a :class:`Sample` with ``gt=None`` and ``span_seconds=(START, END)``;
its id is ``f"{VIDEO}_{line}"`` with ``line`` the 1-based line number in the file (blank lines
count, so an id points at its line). Malformed lines are named ``"line N"``.
"""

from __future__ import annotations

import math
from pathlib import Path

from zsgrounding.datasets.common import EntryPolicy, LoadReport, MalformedEntry, read_text
from zsgrounding.types import Sample

SEPARATOR = "##"


def load_charades(
    path: Path | str,
    video_root: Path | str | None = None,
    skip_malformed: bool = False,
    report: LoadReport | None = None,
) -> list[Sample]:
    """Load a Charades-STA annotation file (e.g. ``charades_sta_test.txt``).

    Args:
        path: the text file.
        video_root: folder holding ``<VIDEO>.mp4``; without it the video is the bare file name.
        skip_malformed: skip and report malformed lines instead of raising.
        report: receives the loaded count and the skipped lines.

    Raises:
        DatasetError: unreadable file or a malformed line (unless skipped).
    """
    root = Path(video_root) if video_root is not None else None
    policy = EntryPolicy(path, skip_malformed, report)
    samples: list[Sample] = []
    for lineno, line in enumerate(read_text(path, "Charades-STA annotation file").splitlines(), start=1):
        if not line.strip():
            continue
        sample = policy.attempt(f"line {lineno}", lambda n=lineno, t=line: _parse_line(n, t, root))
        if sample is not None:
            samples.append(sample)
    return policy.finish(samples)


def _parse_line(lineno: int, line: str, root: Path | None) -> Sample:
    head, sep, sentence = line.partition(SEPARATOR)
    if not sep:
        raise MalformedEntry(f"no {SEPARATOR!r} between 'VIDEO START END' and the sentence")
    fields = head.split()
    if len(fields) != 3:
        raise MalformedEntry(f"expected 'VIDEO START END' before {SEPARATOR!r}, got {head.strip()!r}")
    vid, start_text, end_text = fields
    try:
        start, end = float(start_text), float(end_text)
    except ValueError:
        raise MalformedEntry(f"times must be numbers, got {start_text!r} and {end_text!r}") from None
    if not (math.isfinite(start) and math.isfinite(end)) or start < 0:
        raise MalformedEntry(f"times must be finite and non-negative, got {start_text!r} and {end_text!r}")
    if end < start:
        raise MalformedEntry(f"end {end} is before start {start}")
    if not sentence.strip():
        raise MalformedEntry("the sentence is empty")
    file_name = f"{vid}.mp4"
    return Sample(
        id=f"{vid}_{lineno}",
        video=root / file_name if root is not None else Path(file_name),
        sentence=sentence.strip(),
        gt=None,
        span_seconds=(start, end),
        meta={"vid": vid, "line": lineno},
    )
