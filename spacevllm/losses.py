"""SpaceVLLM's training objective (*SpaceVLLM*, arXiv 2503.13983, eq. 5-6).

``total = time_w * L_time + space_w * (l1_w * L_L1 + giou_w * L_GIoU)``:

* ``L_time``: cross-entropy of the answer tokens (the span text and its stop token), averaged
  over every answer token of the batch; all other positions are labelled -100.
* ``L_L1``, ``L_GIoU``: on normalised ``(cx, cy, w, h)`` boxes of the frames inside the GT span
  that have a GT box (the mask), DETR-style: L1 summed over the 4 coordinates and
  ``1 - GIoU``, both divided by the number of masked boxes in the batch (on this process).

A batch with no answer token or no box gives a zero part that still depends on the
predictions, so every trained parameter gets a (zero) gradient (DDP needs that).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from spacevllm.config import SpaceVLLMConfig
from spacevllm.queries import IGNORE_INDEX
from zsgrounding.boxes import cxcywh_to_xyxy_t, paired_generalized_iou_t


@dataclass
class SpaceVLLMLosses:
    """The weighted total and its parts (scalars).

    Attributes:
        total: the weighted sum that is minimised.
        lm: ``L_time``, answer-token cross-entropy.
        l1: ``L_L1`` per box.
        giou: ``L_GIoU`` per box.
        num_boxes: boxes the space loss averaged over.
        num_answer_tokens: tokens the time loss averaged over.
    """

    total: torch.Tensor
    lm: torch.Tensor
    l1: torch.Tensor
    giou: torch.Tensor
    num_boxes: int
    num_answer_tokens: int

    def as_floats(self) -> dict[str, float]:
        """Detached parts for logging."""
        return {
            "loss": float(self.total.detach()),
            "lm_loss": float(self.lm.detach()),
            "l1_loss": float(self.l1.detach()),
            "giou_loss": float(self.giou.detach()),
        }


def box_losses(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(L_L1, L_GIoU, num_boxes)`` over the masked frames.

    Args:
        pred: ``(B, T, 4)`` predicted normalised cxcywh.
        target: ``(B, T, 4)`` GT normalised cxcywh (anything where ``mask`` is False).
        mask: ``(B, T)`` bool, frames inside the GT span with a GT box.
    """
    mask = mask.to(pred.device).bool()
    num = int(mask.sum())
    if num == 0:
        zero = pred.sum() * 0.0
        return zero, zero, 0
    p, t = pred[mask], target.to(pred)[mask]
    l1 = (p - t).abs().sum() / num
    giou = (1.0 - paired_generalized_iou_t(cxcywh_to_xyxy_t(p), cxcywh_to_xyxy_t(t))).sum() / num
    return l1, giou, num


@dataclass
class AnswerTargets:
    """Where the answer tokens are predicted from.

    Attributes:
        rows, positions: ``(K,)`` long; the logits at ``(rows[k], positions[k])`` predict ``targets[k]``.
        targets: ``(K,)`` long token ids (``labels[rows, positions + 1]``).
    """

    rows: torch.Tensor
    positions: torch.Tensor
    targets: torch.Tensor


def answer_targets(labels: torch.Tensor) -> AnswerTargets:
    """The labelled tokens of ``labels (B, L)`` (-100 elsewhere), shifted: position ``i`` predicts ``i + 1``."""
    shifted = labels[:, 1:]
    rows, positions = torch.nonzero(shifted != IGNORE_INDEX, as_tuple=True)
    return AnswerTargets(rows=rows, positions=positions, targets=shifted[rows, positions])


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``logits (K, V)`` against ``targets (K,)``; ``K = 0`` gives a zero."""
    if targets.numel() == 0:
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), targets.to(logits.device))


def lm_loss_from_labels(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """:func:`lm_loss` on full ``logits (B, L, V)`` with ``labels (B, L)`` (-100 off the answer)."""
    where = answer_targets(labels.to(logits.device))
    return lm_loss(logits[where.rows, where.positions], where.targets)


def combine(lm: torch.Tensor, l1: torch.Tensor, giou: torch.Tensor, config: SpaceVLLMConfig) -> torch.Tensor:
    """The weighted total of eq. 6."""
    space = config.l1_weight * l1 + config.giou_weight * giou
    return config.time_loss_weight * lm + config.space_loss_weight * space


def spacevllm_losses(
    pred_boxes: torch.Tensor,
    target_boxes: torch.Tensor,
    box_mask: torch.Tensor,
    answer_logits: torch.Tensor,
    answer_ids: torch.Tensor,
    config: SpaceVLLMConfig,
) -> SpaceVLLMLosses:
    """All parts and the total.

    Args:
        pred_boxes, target_boxes: ``(B, T, 4)`` normalised cxcywh.
        box_mask: ``(B, T)`` bool.
        answer_logits: ``(K, V)`` logits at the positions of :func:`answer_targets`.
        answer_ids: ``(K,)`` their target ids.
    """
    lm = lm_loss(answer_logits, answer_ids)
    l1, giou, num = box_losses(pred_boxes, target_boxes, box_mask)
    return SpaceVLLMLosses(
        total=combine(lm, l1, giou, config),
        lm=lm,
        l1=l1,
        giou=giou,
        num_boxes=num,
        num_answer_tokens=int(answer_ids.numel()),
    )
