"""COCO run-length encoding of binary masks, in numpy (no pycocotools needed at run time).

A mask ``(H, W)`` is read in column-major order (down the first column, then the next) and cut
into runs that alternate zeros and ones, starting with zeros (so ``counts[0]`` may be 0). The
compressed string form is COCO maskApi's: each count is written as a signed number in groups of
5 bits, least significant first, one character per group (``chr(48 + bits)``, bit 0x20 set when
another group follows, bit 0x10 of the last group being the sign); from the fourth count on
(index 3) the count is written as the difference to the count two places before it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

RLE = dict[str, Any]
"""``{"size": [H, W], "counts": str | bytes | list[int]}``."""


def _counts_of(mask: np.ndarray) -> np.ndarray:
    """Run lengths of a column-major flattened mask, starting with a (possibly empty) zero run."""
    flat = mask.ravel(order="F")
    if flat.size == 0:
        return np.zeros(1, dtype=np.int64)  # maskApi writes a single zero count for an empty frame
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(edges)
    if flat[0]:
        counts = np.concatenate([[0], counts])
    return counts.astype(np.int64)


def counts_to_string(counts: Sequence[int] | np.ndarray) -> str:
    """Run lengths -> COCO's compressed string."""
    values = [int(c) for c in counts]
    chars: list[str] = []
    for i, value in enumerate(values):
        x = value - values[i - 2] if i > 2 else value
        more = True
        while more:
            c = x & 0x1F
            x >>= 5  # arithmetic shift, as on C's signed long
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            chars.append(chr(c + 48))
    return "".join(chars)


def string_to_counts(text: str | bytes) -> list[int]:
    """COCO's compressed string -> run lengths. Raises ``ValueError`` on a malformed string."""
    if isinstance(text, bytes):
        text = text.decode("ascii")
    counts: list[int] = []
    pos, n = 0, len(text)
    while pos < n:
        x, shift, more = 0, 0, True
        while more:
            if pos >= n:
                raise ValueError("RLE string ends inside a count")
            c = ord(text[pos]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"RLE string has a character outside '0'..'o': {text[pos]!r}")
            x |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            pos += 1
            shift += 5
            if not more and c & 0x10:
                x -= 1 << shift  # sign-extend the last group
        if len(counts) > 2:
            x += counts[-2]
        if x < 0:
            raise ValueError(f"RLE string decodes to a negative count {x}")
        counts.append(x)
    return counts


def encode(mask: np.ndarray) -> RLE:
    """``(H, W)`` mask (anything truthy is foreground) -> ``{"size": [H, W], "counts": str}``."""
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {arr.shape}")
    return {"size": [int(arr.shape[0]), int(arr.shape[1])], "counts": counts_to_string(_counts_of(arr != 0))}


def _parse(rle: Mapping[str, Any]) -> tuple[int, int, np.ndarray]:
    """``(H, W, counts (M,) int64)`` of an RLE dict with compressed or uncompressed counts."""
    if not isinstance(rle, Mapping) or "size" not in rle or "counts" not in rle:
        raise ValueError("RLE must be a dict with 'size' and 'counts'")
    size = rle["size"]
    if not isinstance(size, Sequence) or isinstance(size, str | bytes) or len(size) != 2:
        raise ValueError(f"RLE size must be [H, W], got {size!r}")
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"RLE size must be two integers, got {size!r}") from exc
    if h < 0 or w < 0:
        raise ValueError(f"RLE size must not be negative, got {size!r}")
    raw = rle["counts"]
    if isinstance(raw, str | bytes):
        counts = np.asarray(string_to_counts(raw), dtype=np.int64)
    else:
        try:
            counts = np.asarray(raw, dtype=np.int64).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise ValueError("RLE counts must be a string or a list of integers") from exc
        if np.any(counts < 0):
            raise ValueError("RLE counts must not be negative")
    total = int(counts.sum())
    if total != h * w:
        raise ValueError(f"RLE counts sum to {total}, but size {h}x{w} has {h * w} pixels")
    return h, w, counts


def decode(rle: Mapping[str, Any]) -> np.ndarray:
    """An RLE (compressed-string, bytes, or list-of-ints counts) -> ``(H, W)`` bool mask."""
    h, w, counts = _parse(rle)
    values = np.arange(counts.size) % 2 == 1  # runs alternate, zeros first
    flat = np.repeat(values, counts)
    return flat.reshape((w, h)).T.copy()  # column-major order, returned C-contiguous


def area(rle: Mapping[str, Any]) -> int:
    """Number of foreground pixels."""
    return int(_parse(rle)[2][1::2].sum())


def to_bbox(rle: Mapping[str, Any]) -> np.ndarray:
    """Tight box of the foreground, pixel ``xyxy`` (right and bottom exclusive); zeros when empty. ``(4,)``."""
    h, _, counts = _parse(rle)
    ends = np.cumsum(counts)
    starts = ends - counts
    ones = (np.arange(counts.size) % 2 == 1) & (counts > 0)
    if not ones.any():
        return np.zeros(4, dtype=np.float64)
    first, last = starts[ones], ends[ones] - 1  # flat column-major index of each run's ends
    col0, col1 = first // h, last // h
    row0, row1 = first % h, last % h
    # A run that crosses a column boundary covers the bottom row of one column and the top of the next.
    wraps = col1 > col0
    y1 = 0 if wraps.any() else int(row0.min())
    y2 = h - 1 if wraps.any() else int(row1.max())
    return np.array([col0.min(), y1, col1.max() + 1, y2 + 1], dtype=np.float64)


__all__ = ["RLE", "area", "counts_to_string", "decode", "encode", "string_to_counts", "to_bbox"]
