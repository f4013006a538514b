"""The cost of a grounder's calls: wall time and peak memory growth of each, kept in its result.

:class:`MeasuredGrounder` wraps a grounder for :func:`zsgrounding.runner.run_dataset` and records,
per sample, in the result line's ``extras["compare"]`` (so a resumed run still knows them):

* ``seconds``: wall time of the grounder's ``ground_sample`` call. Tracks handed in from outside
  (a comparison's shared proposals) are fetched before the clock starts, so their cost is charged
  to no grounder; a model a grounder loads lazily (``ZeroShotGrounder``'s ``adapter``) is loaded
  before the first call, outside the clock.
* ``peak_mb``: how far memory rose above its level at the call's start, in MiB. On CUDA (when
  torch has initialised it): ``torch.cuda.max_memory_allocated()`` after a
  ``reset_peak_memory_stats()``, minus the memory allocated at the start (current device only).
  On CPU: the peak growth of the process's resident set, sampled from ``/proc/self/statm`` by a
  background thread every ~5 ms; approximate (a spike shorter than the interval can be missed,
  and memory the allocator keeps from earlier calls is not counted again). ``tracemalloc`` is
  not used because torch's CPU tensors are not allocated through Python's allocator, so it
  would miss nearly all of a model's memory. Without ``/proc`` the value is ``None``.
* ``memory``: how ``peak_mb`` was measured (``"cuda"``, ``"rss"`` or ``None``), with the raw
  ``rss_peak_mb`` and, on CUDA, ``cuda_peak_mb`` and ``cuda_peak_total_mb``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from zsgrounding.runner import Grounder
from zsgrounding.types import GroundingResult, Sample, Track

__all__ = ["EXTRAS_KEY", "MeasuredGrounder", "PeakRSS", "cuda_in_use"]

EXTRAS_KEY = "compare"
"""The key of the cost in a result's ``extras`` (the comparison reads it back from there)."""
_MIB = float(1 << 20)


class PeakRSS:
    """Approximate peak growth of the resident set during a ``with`` block (see the module docstring)."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak_bytes: int | None = None
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = 0
        self._max = 0

    def _rss(self) -> int | None:
        try:
            with open("/proc/self/statm", "rb") as fh:
                return int(fh.read().split()[1]) * self._page
        except (OSError, ValueError, IndexError):
            return None

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            rss = self._rss()
            if rss is not None and rss > self._max:
                self._max = rss

    def __enter__(self) -> PeakRSS:
        start = self._rss()
        if start is not None:
            self._start = self._max = start
            self._thread = threading.Thread(target=self._watch, name="peak-rss", daemon=True)
            self._thread.start()
        return self

    @property
    def seen_bytes(self) -> int:
        """The largest growth sampled so far (0 before the first sample or where unsupported)."""
        return self._max - self._start

    def __exit__(self, *exc: object) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        end = self._rss()
        self.peak_bytes = max(self._max, end or 0) - self._start


def cuda_in_use() -> Any:
    """``torch.cuda`` when torch is loaded and CUDA initialised, else ``None`` (torch is not imported here)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return torch.cuda


class MeasuredGrounder:
    """A grounder seen by :func:`~zsgrounding.runner.run_dataset`: tracks in, time and peak memory out.

    Args:
        name: the run's grounder name (``run.json`` records it, and the wrapped grounder's kind
            through :attr:`grounder`).
        grounder: the grounder measured.
        tracks: ``sample -> tracks`` passed as ``tracks=`` to ``ground_sample``, called before the
            clock starts; ``None``: the grounder is called as ``ground_sample(sample)``.
    """

    def __init__(
        self, name: str, grounder: Grounder, tracks: Callable[[Sample], list[Track] | None] | None = None
    ) -> None:
        self.name = name
        self.grounder = grounder
        self.tracks = tracks
        self._warm = False

    @property
    def config(self) -> Any:
        """The wrapped grounder's settings (recorded in the run's ``metrics.json``)."""
        return getattr(self.grounder, "config", None)

    def _warm_up(self) -> None:
        # A lazily loaded model would otherwise put its loading into the first sample's time.
        if not self._warm:
            getattr(self.grounder, "adapter", None)
            self._warm = True

    def ground_sample(self, sample: Sample) -> GroundingResult:
        """The wrapped call, its cost in ``result.extras[EXTRAS_KEY]``."""
        kwargs: dict[str, Any] = {}
        if self.tracks is not None:
            kwargs["tracks"] = self.tracks(sample)
        self._warm_up()
        cuda = cuda_in_use()
        if cuda is not None:
            cuda.synchronize()
            before = cuda.memory_allocated()
            cuda.reset_peak_memory_stats()
        with PeakRSS() as rss:
            tick = time.perf_counter()
            result = self.grounder.ground_sample(sample, **kwargs)
            if cuda is not None:
                cuda.synchronize()  # the kernels belong to this call
            seconds = time.perf_counter() - tick
        rss_mb = None if rss.peak_bytes is None else rss.peak_bytes / _MIB
        cost: dict[str, Any] = {"seconds": seconds, "rss_peak_mb": rss_mb}
        if cuda is not None:
            cost.update(
                cuda_peak_mb=(cuda.max_memory_allocated() - before) / _MIB,
                cuda_peak_total_mb=cuda.max_memory_allocated() / _MIB,
                peak_mb=(cuda.max_memory_allocated() - before) / _MIB,
                memory="cuda",
            )
        else:
            cost.update(peak_mb=rss_mb, memory="rss" if rss_mb is not None else None)
        result.extras[EXTRAS_KEY] = cost
        return result
