"""The run's log: one JSON line per logged step in ``train_log.jsonl`` and the same scalars in
TensorBoard, written by the main process; and the values a step logs (loss parts, learning rates).

A resumed run first drops the lines (and TensorBoard events) of the steps after its checkpoint:
they belong to progress that was lost.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch

from zsgrounding.atomic import write_text_atomic

LOG_FILE = "train_log.jsonl"
LOSS_KEYS = ("loss", "lm_loss", "l1_loss", "giou_loss")


def loss_parts(losses: Any) -> torch.Tensor:
    """The parts of :data:`LOSS_KEYS` as a float64 vector (for averaging and reducing)."""
    values = (losses.total, losses.lm, losses.l1, losses.giou)
    return torch.tensor([float(v.detach()) for v in values], dtype=torch.float64)


def learning_rates(optimizer: Any) -> dict[str, float]:
    """``lr`` of the base groups and ``lr_new`` of the new-parts groups (when they exist)."""
    rates: dict[str, float] = {}
    for group in optimizer.param_groups:
        key = "lr_new" if group["name"].startswith("new") else "lr"
        rates.setdefault(key, float(group["lr"]))
    return rates


class TrainLog:
    """JSONL + TensorBoard on the main process; nothing elsewhere."""

    def __init__(self, out: Path, enabled: bool, start_step: int) -> None:
        self.path = out / LOG_FILE
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        if self.path.exists():  # lines past the resumed step belong to lost progress
            kept = [
                line
                for line in self.path.read_text(encoding="utf-8").splitlines()
                if line.strip() and _line_step(line) is not None and _line_step(line) <= start_step
            ]
            write_text_atomic(self.path, "".join(line + "\n" for line in kept))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tensorboard's own deprecation noise
            from torch.utils.tensorboard import SummaryWriter

            purge = start_step + 1 if start_step > 0 else None  # drop the events of lost steps
            self.writer = SummaryWriter(str(out / "tensorboard"), purge_step=purge)

    def write(self, record: dict[str, Any]) -> None:
        """Append one step's line; its numbers (but step and epoch) become ``train/<key>`` scalars."""
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        for key, value in record.items():
            if key not in ("step", "epoch") and isinstance(value, int | float):
                self.writer.add_scalar(f"train/{key}", value, record["step"])

    def close(self) -> None:
        """Flush and close TensorBoard's writer."""
        if self.writer is not None:
            self.writer.close()


def _line_step(line: str) -> int | None:
    """The step of a log line; ``None`` for a line that is not a step's JSON (a torn last line)."""
    try:
        step = json.loads(line).get("step")
    except (ValueError, AttributeError):
        return None
    return step if isinstance(step, int) else None
