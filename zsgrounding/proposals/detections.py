"""Per-frame detections: what a detector hands to a tracker."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class FrameDetections:
    """The detections of one native frame.

    Attributes:
        frame_id: native frame index.
        boxes: ``(N, 4)`` float64 pixel ``xyxy`` boxes in the frame's native resolution.
        scores: ``(N,)`` float64 detector confidences in ``[0, 1]``.
        labels: ``N`` phrases (the matched part of the text prompt).
    """

    frame_id: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    labels: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.frame_id = int(self.frame_id)
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        n = self.boxes.shape[0]
        if self.scores.shape[0] != n:
            raise ValueError(f"frame {self.frame_id}: {n} boxes but {self.scores.shape[0]} scores")
        if not self.labels:
            self.labels = [""] * n
        if len(self.labels) != n:
            raise ValueError(f"frame {self.frame_id}: {n} boxes but {len(self.labels)} labels")

    def __len__(self) -> int:
        return int(self.boxes.shape[0])
