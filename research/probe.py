"""Linear probes: what the toy MLLM's visual features say about each object.

For every object drawn on a bank frame, the features at the object are read out twice: the
tower's patch outputs averaged over the patches whose centres lie in its box (``tower``), and the
pooled, projected token of the cell holding its centre, what the language model receives
(``projected``). A linear classifier per attribute (shape, colour, size, and the third of the
frame the centre is in, horizontally and vertically) is fitted on the objects of the first clips
and scored on the rest. Boxes are read here only to decide where to look; nothing is trained on
them but the probe. ``python -m research.toy_stage1`` runs the probes on stage-1 variants or on
a saved checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from transformers import LlavaOnevisionForConditionalGeneration

from zsgrounding.toy.mllm.data import ClipBank, build_bank
from zsgrounding.toy.mllm.stages import to_pixels, tower_hidden
from zsgrounding.toy.world import ToyWorldConfig

PROBED = ("shape", "colour", "size", "column", "row")
"""Probed labels: the three attributes, and the third of the frame (``column`` left to right,
``row`` top to bottom) holding the object's centre."""


@dataclass
class ObjectFeatures:
    """Features and labels of every object of a clip bank.

    Attributes:
        tower: ``(N, Dv)`` tower outputs averaged over the object's patches.
        projected: ``(N, D)`` the pooled, projected token at the object's centre.
        labels: ``{name: (N,) str}`` for :data:`PROBED`.
        clips: ``(N,)`` the bank clip of each object (the train / test split is by clip).
    """

    tower: torch.Tensor
    projected: torch.Tensor
    labels: dict[str, np.ndarray]
    clips: np.ndarray


def box_patches(box: np.ndarray, width: int, height: int, patches: int) -> np.ndarray:
    """``(P * P,)`` bool: patches of a ``P x P`` grid over the squeezed frame whose centres lie in
    ``box`` (pixel xyxy of a ``width x height`` frame); the patch holding the centre if none does."""
    centres = (np.arange(patches) + 0.5) / patches
    x1, y1, x2, y2 = box / np.array([width, height, width, height])
    cols = (centres >= x1) & (centres <= x2)
    rows = (centres >= y1) & (centres <= y2)
    mask = np.outer(rows, cols).reshape(-1)
    if not mask.any():
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        mask[min(patches - 1, int(cy * patches)) * patches + min(patches - 1, int(cx * patches))] = True
    return mask


@torch.no_grad()
def object_features(
    model: LlavaOnevisionForConditionalGeneration, bank: ClipBank, world: ToyWorldConfig
) -> ObjectFeatures:
    """Read the features of every object drawn on every frame of ``bank``."""
    tower, projected, clips = [], [], []
    labels: dict[str, list[str]] = {name: [] for name in PROBED}
    thirds = ("0", "1", "2")
    for clip in range(len(bank)):
        hidden = tower_hidden(model, to_pixels(bank.frames[clip]))  # (K, P * P, Dv)
        pooled = model.model.apply_pooling(model.model.multi_modal_projector(hidden))  # (K, h * w, D)
        patches = round(hidden.shape[1] ** 0.5)
        cells = round(pooled.shape[1] ** 0.5)
        for pick, fid in enumerate(bank.frame_ids[clip].tolist()):
            for obj in bank.objects[clip]:
                if not obj.visible[0] <= fid < obj.visible[1]:
                    continue
                box = obj.boxes[fid - obj.visible[0]]
                cx = (box[0] + box[2]) / 2 / world.width
                cy = (box[1] + box[3]) / 2 / world.height
                if not (0 <= cx < 1 and 0 <= cy < 1):
                    continue  # centre outside the frame (entering or leaving)
                mask = torch.from_numpy(box_patches(box, world.width, world.height, patches))
                tower.append(hidden[pick][mask].mean(0))
                projected.append(pooled[pick, int(cy * cells) * cells + int(cx * cells)])
                clips.append(clip)
                labels["shape"].append(obj.shape)
                labels["colour"].append(obj.colour)
                labels["size"].append(obj.size)
                labels["column"].append(thirds[min(2, int(cx * 3))])
                labels["row"].append(thirds[min(2, int(cy * 3))])
    return ObjectFeatures(
        torch.stack(tower).float(),
        torch.stack(projected).float(),
        {name: np.array(values) for name, values in labels.items()},
        np.array(clips),
    )


def linear_probe(
    features: torch.Tensor, labels: np.ndarray, train: np.ndarray, steps: int = 300, seed: int = 0
) -> float:
    """Test accuracy of a linear classifier (standardised inputs, Adam, full batch) fitted on the
    rows ``train`` (bool) and scored on the others."""
    classes = sorted(set(labels.tolist()))
    target = torch.tensor([classes.index(label) for label in labels.tolist()])
    mask = torch.from_numpy(train)
    mean, std = features[mask].mean(0), features[mask].std(0) + 1e-5
    x = (features - mean) / std
    generator = torch.Generator().manual_seed(seed)
    weight = (torch.randn(x.shape[1], len(classes), generator=generator) * 0.01).requires_grad_(True)
    bias = torch.zeros(len(classes), requires_grad=True)
    optimiser = torch.optim.Adam([weight, bias], lr=1e-2, weight_decay=1e-4)
    for _ in range(steps):
        optimiser.zero_grad()
        F.cross_entropy(x[mask] @ weight + bias, target[mask]).backward()
        optimiser.step()
    with torch.no_grad():
        predicted = (x[~mask] @ weight + bias).argmax(1)
    return float((predicted == target[~mask]).float().mean())


def tower_probe(
    model: LlavaOnevisionForConditionalGeneration,
    world: ToyWorldConfig,
    size: int,
    start: int = 900_000,
    clips: int = 120,
    frames: int = 4,
    train_share: float = 0.7,
) -> dict[str, dict[str, float]]:
    """Probe accuracies ``{"tower/shape": {"accuracy", "chance"}, ...}`` on world videos
    ``[start, start + clips)``, ``frames`` frames each resized to ``size``; the first
    ``train_share`` of the clips fit the probes. ``chance`` is the majority class's share of the
    test objects."""
    bank = build_bank(world, start, clips, frames, size, progress=False)
    data = object_features(model, bank, world)
    train = data.clips < int(clips * train_share)
    out: dict[str, dict[str, float]] = {}
    for where, features in (("tower", data.tower), ("projected", data.projected)):
        for name in PROBED:
            labels = data.labels[name]
            _, counts = np.unique(labels[~train], return_counts=True)
            out[f"{where}/{name}"] = {
                "accuracy": round(linear_probe(features, labels, train), 4),
                "chance": round(float(counts.max() / counts.sum()), 4),
            }
    out["objects"] = {"train": int(train.sum()), "test": int((~train).sum())}
    return out


__all__ = ["PROBED", "ObjectFeatures", "box_patches", "linear_probe", "object_features", "tower_probe"]
