"""Wall time spent inside a model's forward passes, measured with module hooks.

The grounder reports how much of a video's time goes to the MLLM and how much to everything
else (decoding, proposals, scoring, bookkeeping). Forward hooks on the language model and the
vision modules time every forward without touching the adapters; the backward passes of the
LRA tuning are timed where they run (:class:`zsgrounding.zeroshot.lra.LRAResult`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from torch import nn

__all__ = ["VISION_MODULE_NAMES", "ForwardClock", "forward_clock"]

# Attribute names of the vision parts across the supported families (LLaVA-OneVision /
# LLaVA-NeXT-Video: tower, projector, resampler; Qwen2-VL: ``visual``).
VISION_MODULE_NAMES = frozenset({"vision_tower", "visual", "multi_modal_projector", "vision_resampler"})


@dataclass
class ForwardClock:
    """Accumulated forward time.

    Attributes:
        seconds: wall time inside the outermost timed forwards (nested ones are not double counted).
        calls: number of outermost forwards.
    """

    seconds: float = 0.0
    calls: int = 0
    _depth: int = 0
    _start: float = 0.0


@contextmanager
def forward_clock(model: nn.Module) -> Iterator[ForwardClock]:
    """Time ``model``'s forwards and those of its vision modules while the context is open."""
    clock = ForwardClock()
    modules = [model] + [
        m for name, m in model.named_modules() if name.rsplit(".", 1)[-1] in VISION_MODULE_NAMES
    ]

    def before(_module: nn.Module, _args: object) -> None:
        if clock._depth == 0:
            clock._start = time.perf_counter()
        clock._depth += 1

    def after(_module: nn.Module, _args: object, _output: object) -> None:
        clock._depth -= 1
        if clock._depth == 0:
            clock.seconds += time.perf_counter() - clock._start
            clock.calls += 1

    handles = []
    for module in modules:
        handles.append(module.register_forward_pre_hook(before))
        handles.append(module.register_forward_hook(after))
    try:
        yield clock
    finally:
        for handle in handles:
            handle.remove()
