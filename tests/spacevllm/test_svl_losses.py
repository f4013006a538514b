"""Box losses on the frames inside the span, answer-token cross-entropy, the weighted total."""

from __future__ import annotations

import math

import torch

from spacevllm.config import SpaceVLLMConfig
from spacevllm.losses import (
    answer_targets,
    box_losses,
    combine,
    lm_loss,
    lm_loss_from_labels,
    spacevllm_losses,
)
from zsgrounding.boxes import paired_generalized_iou_t as paired_generalized_iou

# Frame 0: centred boxes of side 0.2 (pred) and 0.4 (GT): L1 = 0.2 + 0.2 = 0.4, IoU = GIoU =
# 0.04 / 0.16 = 0.25. Frame 1: disjoint sides 0.2 at (0.2, 0.2) and (0.7, 0.7): L1 = 1.0,
# union 0.08, hull 0.7^2 = 0.49, GIoU = -(0.49 - 0.08) / 0.49. Frame 2 is outside the span.
PRED = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.2, 0.2, 0.2, 0.2], [0.9, 0.9, 0.1, 0.1]]])
TARGET = torch.tensor([[[0.5, 0.5, 0.4, 0.4], [0.7, 0.7, 0.2, 0.2], [0.1, 0.1, 0.1, 0.1]]])
GIOU_1 = -(0.49 - 0.08) / 0.49


def test_generalized_iou_by_hand() -> None:
    a = torch.tensor([[0.4, 0.4, 0.6, 0.6], [0.1, 0.1, 0.3, 0.3]])
    b = torch.tensor([[0.3, 0.3, 0.7, 0.7], [0.6, 0.6, 0.8, 0.8]])
    torch.testing.assert_close(paired_generalized_iou(a, b), torch.tensor([0.25, GIOU_1]))


def test_box_losses_average_over_masked_frames() -> None:
    l1, giou, num = box_losses(PRED, TARGET, torch.tensor([[True, False, False]]))
    assert num == 1
    torch.testing.assert_close(l1, torch.tensor(0.4))
    torch.testing.assert_close(giou, torch.tensor(0.75))
    l1, giou, num = box_losses(PRED, TARGET, torch.tensor([[True, True, False]]))
    assert num == 2
    torch.testing.assert_close(l1, torch.tensor((0.4 + 1.0) / 2))
    torch.testing.assert_close(giou, torch.tensor((0.75 + 1 - GIOU_1) / 2))


def test_no_box_gives_a_zero_that_still_reaches_the_predictions() -> None:
    pred = PRED.clone().requires_grad_(True)
    l1, giou, num = box_losses(pred, TARGET, torch.zeros(1, 3, dtype=torch.bool))
    assert num == 0
    assert float(l1.detach()) == 0.0 and float(giou.detach()) == 0.0
    (l1 + giou).backward()
    assert pred.grad is not None
    torch.testing.assert_close(pred.grad, torch.zeros_like(pred))


def test_lm_loss_on_answer_tokens_only() -> None:
    # Position 0 predicts token 2 with logits (0, 1, 2); position 1 predicts token 0 with
    # (1, 0, 0); position 2 is the last (nothing after it) and position 0's label is ignored.
    logits = torch.tensor([[[0.0, 1.0, 2.0], [1.0, 0.0, 0.0], [5.0, -5.0, 0.0]]])
    labels = torch.tensor([[-100, 2, 0]])
    e = math.e
    expected = ((math.log(1 + e + e**2) - 2) + (math.log(e + 2) - 1)) / 2
    torch.testing.assert_close(lm_loss_from_labels(logits, labels), torch.tensor(expected))
    where = answer_targets(labels)
    assert where.rows.tolist() == [0, 0] and where.positions.tolist() == [0, 1]
    assert where.targets.tolist() == [2, 0]
    empty = lm_loss(torch.zeros(0, 3, requires_grad=True), torch.zeros(0, dtype=torch.long))
    assert float(empty.detach()) == 0.0 and empty.requires_grad


def test_weighted_total_with_default_weights() -> None:
    config = SpaceVLLMConfig(num_frames=4)
    assert (config.l1_weight, config.giou_weight, config.time_loss_weight) == (5.0, 2.0, 1.0)
    logits = torch.tensor([[0.0, 1.0, 2.0]])
    targets = torch.tensor([2])
    mask = torch.tensor([[True, False, False]])
    losses = spacevllm_losses(PRED, TARGET, mask, logits, targets, config)
    lm = math.log(1 + math.e + math.e**2) - 2
    torch.testing.assert_close(losses.lm, torch.tensor(lm))
    torch.testing.assert_close(losses.total, torch.tensor(lm + 5 * 0.4 + 2 * 0.75))
    assert (losses.num_boxes, losses.num_answer_tokens) == (1, 1)
    weighted = SpaceVLLMConfig(num_frames=4, time_loss_weight=2.0, space_loss_weight=0.5)
    total = combine(torch.tensor(1.0), torch.tensor(0.4), torch.tensor(0.75), weighted)
    torch.testing.assert_close(total, torch.tensor(2.0 + 0.5 * (5 * 0.4 + 2 * 0.75)))
    assert set(losses.as_floats()) == {"loss", "lm_loss", "l1_loss", "giou_loss"}
