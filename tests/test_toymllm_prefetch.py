"""The batch prefetcher: the same batches in the same order, made ahead on a worker thread."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from zsgrounding.toymllm.config import StageSchedule, ToyPretrainConfig
from zsgrounding.toymllm.prefetch import Prefetcher
from zsgrounding.toymllm.train import pretrain


class Recorder:
    """A batch maker drawing from one generator, as the samplers do; it records who calls it and
    fails if two calls ever overlap."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(7)
        self.calls: list[tuple[int, str]] = []
        self._busy = threading.Lock()

    def __call__(self, step: int) -> float:
        if not self._busy.acquire(blocking=False):
            raise AssertionError("two batches made at once")
        try:
            self.calls.append((step, threading.current_thread().name))
            return float(self.rng.random())
        finally:
            self._busy.release()


def test_prefetched_batches_are_the_plain_loops_batches() -> None:
    plain, ahead = Recorder(), Recorder()
    expected = [plain(step) for step in range(6)]
    with Prefetcher(ahead, 6) as batches:
        got = [batches(step) for step in range(6)]
    assert got == expected
    assert [step for step, _ in ahead.calls] == list(range(6))  # nothing made past the last step
    assert all(name.startswith("prefetch") for _, name in ahead.calls[1:])  # made ahead, off the loop


def test_a_step_out_of_order_is_made_after_the_pending_one() -> None:
    maker = Recorder()
    reference = Recorder()
    with Prefetcher(maker, 10) as batches:
        first = batches(0)  # starts step 1 ahead
        jumped = batches(5)  # step 1 is dropped once made; step 5 is made here, then 6 ahead
        following = batches(6)
    draws = [reference(s) for s in (0, 1, 5, 6)]
    assert [first, jumped, following] == [draws[0], draws[2], draws[3]]
    assert [step for step, _ in maker.calls] == [0, 1, 5, 6, 7]


def test_disabled_prefetcher_makes_each_batch_in_the_loop() -> None:
    maker = Recorder()
    batches = Prefetcher(maker, 3, enabled=False)
    assert [batches(s) for s in range(3)] == [float(v) for v in np.random.default_rng(7).random(3)]
    assert {name for _, name in maker.calls} == {threading.current_thread().name}


def test_an_error_in_the_maker_reaches_the_loop() -> None:
    def broken(step: int) -> int:
        if step == 1:
            raise RuntimeError("bad batch")
        return step

    with Prefetcher(broken, 3) as batches:
        assert batches(0) == 0
        with pytest.raises(RuntimeError, match="bad batch"):
            batches(1)


def test_prefetching_trains_the_same_weights_to_the_byte(tmp_path: Path) -> None:
    few = StageSchedule(4, 8, 3e-3, warmup=1)
    config = ToyPretrainConfig.quick(
        stage1=few, stage2_projector=few, stage2=few, stage3=few, train_clips=16, eval_clips=6,
        eval_questions=2, train_vision=("stage2",),
    )  # fmt: skip
    for prefetch in (True, False):
        pretrain(tmp_path / str(prefetch), config, progress=False, prefetch=prefetch)
    with_, without = (load_file(tmp_path / str(p) / "model.safetensors") for p in (True, False))
    assert with_.keys() == without.keys()
    assert all((with_[k] == without[k]).all() for k in with_)
