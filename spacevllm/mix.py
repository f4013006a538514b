"""Training datasets over records: one JSONL file, and several mixed by ratio (one epoch's order
fixed by the seed and the epoch)."""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from spacevllm.data import Record, read_records


class RecordDataset(Dataset):
    """A map-style torch dataset over records; items are the :class:`Record` objects themselves."""

    def __init__(self, records: Sequence[Record]) -> None:
        self.records = list(records)

    @classmethod
    def from_jsonl(cls, path: Path | str) -> RecordDataset:
        return cls(read_records(path))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Record:
        return self.records[index]


def _quotas(length: int, weights: Mapping[str, float]) -> dict[str, int]:
    """Split ``length`` slots by ``weights`` (largest remainder; ties go to the earlier name)."""
    names = sorted(weights)
    total = sum(weights.values())
    exact = {n: length * weights[n] / total for n in names}
    quotas = {n: math.floor(exact[n]) for n in names}
    leftover = length - sum(quotas.values())
    for name in sorted(names, key=lambda n: (-(exact[n] - quotas[n]), n))[:leftover]:
        quotas[name] += 1
    return quotas


class MixedDataset(Dataset):
    """Several record sources mixed by ratio in a deterministic, seedable, epoch-able order.

    Each epoch has ``length`` slots (default: the records of every source with a positive
    ratio). Source ``s`` gets ``round(length * ratio_s / sum(ratios))`` of them (largest
    remainder, so the counts are exact up to one slot), placed in an order shuffled per
    ``(seed, epoch)``. Inside a source, records are drawn without replacement from a shuffled
    pass over it; when a source runs out it is cycled: a new pass, shuffled anew, begins. The
    passes continue across epochs (epoch ``e`` of a source with quota ``q`` takes positions
    ``[e * q, (e + 1) * q)`` of its stream), so a small source is not replayed from the same
    records each epoch, and any epoch's order is computed directly, without the earlier ones.

    Same sources, ratios, seed, length and epoch -> the same order. Call :meth:`set_epoch`
    before each epoch (before a DataLoader creates its worker iterators).
    """

    def __init__(
        self,
        sources: Mapping[str, Sequence[Record]],
        ratios: Mapping[str, float],
        seed: int = 0,
        length: int | None = None,
    ) -> None:
        if set(ratios) != set(sources):
            raise ValueError(f"ratios name {sorted(ratios)} but the sources are {sorted(sources)}")
        for name, ratio in ratios.items():
            if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not ratio >= 0:
                raise ValueError(f"ratio of {name!r} must be a number >= 0, got {ratio!r}")
            if ratio > 0 and not sources[name]:
                raise ValueError(f"source {name!r} has a positive ratio but no records")
        self.weights = {n: float(r) for n, r in ratios.items() if r > 0}
        if not self.weights:
            raise ValueError("at least one ratio must be positive")
        self.sources = {n: list(sources[n]) for n in self.weights}
        self.seed = int(seed)
        self.length = sum(len(s) for s in self.sources.values()) if length is None else int(length)
        if self.length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        self.quotas = _quotas(self.length, self.weights)
        self.epoch = 0
        self._plan: list[tuple[str, int]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order :meth:`__getitem__` and :meth:`__iter__` follow."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        if epoch != self.epoch:
            self.epoch, self._plan = int(epoch), None

    def _stream(self, name: str, start: int, count: int) -> list[int]:
        """Positions ``[start, start + count)`` of the source's endless stream of shuffled passes."""
        n = len(self.sources[name])
        tag = zlib.crc32(name.encode("utf-8"))  # stable across runs, unlike hash()
        out: list[int] = []
        if count <= 0:
            return out
        for cycle in range(start // n, (start + count - 1) // n + 1):
            order = np.random.default_rng([self.seed, 1, tag, cycle]).permutation(n)
            lo = max(start - cycle * n, 0)
            hi = min(start + count - cycle * n, n)
            out.extend(int(i) for i in order[lo:hi])
        return out

    def plan(self, epoch: int | None = None) -> list[tuple[str, int]]:
        """``(source name, index in that source)`` for every slot of ``epoch`` (default: the current)."""
        epoch = self.epoch if epoch is None else int(epoch)
        if epoch == self.epoch and self._plan is not None:
            return self._plan
        names = sorted(self.quotas)
        labels = np.repeat(np.arange(len(names)), [self.quotas[n] for n in names])
        labels = np.random.default_rng([self.seed, 0, epoch]).permutation(labels)
        picks = {n: iter(self._stream(n, epoch * self.quotas[n], self.quotas[n])) for n in names}
        plan = [(names[k], next(picks[names[k]])) for k in labels.tolist()]
        if epoch == self.epoch:
            self._plan = plan
        return plan

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Record:
        name, i = self.plan()[index]
        return self.sources[name][i]

    def __iter__(self) -> Iterator[Record]:
        for name, i in self.plan():
            yield self.sources[name][i]


__all__ = ["MixedDataset", "RecordDataset"]
