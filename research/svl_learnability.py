"""Can SpaceVLLM's space decoder localise and select its target when its inputs allow it?

The toy base's states do not carry where an object is or which one the caption names (see
``docs/toy_world.md``), so a toy SpaceVLLM that misses tells nothing about the decoder itself.
Here the base model is replaced by states built from **shared codes**: one fixed random vector
per colour, shape, size and action word. A visual cell holds the codes of the objects covering
it (weighted by the covered fraction, plus a background code for the rest, plus noise); a
caption word holds its word's code, so visual and caption states live in one space, as a large
base model's are meant to. The real :class:`spacevllm.decoder.QueryGuidedSpaceDecoder` runs on
them, and only its space head (the decoder's only parameters) is trained.

What the query token holds depends on the layout; it stands in for the base model, and each is
the best a query could hold with what it can see:

* ``"paper"``: the queries come right after their frame and before the caption, so under causal
  attention a query knows its frame only: it holds the codes of every object on its frame
  (summed, the background left out), not which of them is asked.
* ``"caption_first"``: the caption comes first, so a query knows what is asked: it holds the
  codes of the caption's content words (size, colour, shape, action).

Two regimes: *localisation* on single-object clips (is there a box to regress?) and *selection*
on the toy benchmark's clips (2 to 4 objects, distractors sharing the attributes or the action).
The score is the mean box IoU on the frames inside the ground-truth span, per clip then over
clips, against the mean training box and against picking a visible object at random.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch

from spacevllm.config import SpaceVLLMConfig
from spacevllm.decoder import QueryGuidedSpaceDecoder
from spacevllm.losses import box_losses
from zsgrounding.boxes import box_iou, cxcywh_norm_to_xyxy, xyxy_to_cxcywh_norm
from zsgrounding.toy.world import ToyVideo, ToyWorldConfig, generate
from zsgrounding.toy.world.config import ACTIONS, COLOURS, SHAPES, SIZES
from zsgrounding.tubes import box_coverage
from zsgrounding.video import uniform_ids

Layout = Literal["paper", "caption_first"]
LAYOUTS: tuple[str, ...] = ("paper", "caption_first")
# The position levers: none (the paper's decoder), the attention-position cue, codes in the keys.
LEVERS: dict[str, dict[str, bool]] = {
    "none": {},
    "position_cue": {"position_cue": True},
    "position_codes": {"position_codes": True},
}
WORLDS: dict[str, ToyWorldConfig] = {
    "single": ToyWorldConfig(min_objects=1, max_objects=1),
    "multi": ToyWorldConfig(),  # the toy benchmark's world
}


def code_book(dim: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """One ``(dim,)`` standard-normal code per toy-world word, plus ``background``, ``the``, ``that``."""
    generator = torch.Generator().manual_seed(seed)
    names = [*COLOURS, *SHAPES, *SIZES, *ACTIONS, "background", "the", "that"]
    return {name: torch.randn(dim, generator=generator) for name in names}


@dataclass
class CodedClip:
    """One toy clip as code states (``T`` sampled frames, ``P`` cells, ``C`` caption words).

    Attributes:
        visual: ``(T, P, D)`` cell states, row-major on the grid.
        caption: ``(C, D)`` caption word states.
        targets: ``(T, 4)`` normalised cxcywh GT boxes (zeros outside the span).
        mask: ``(T,)`` bool, frames inside the GT span.
        chance: ``(T,)`` IoU with the target of a visible object picked at random (0 off-span).
        objects: ``(T, D)`` the summed codes of the objects on each frame.
        asked: ``(D,)`` the summed codes of the caption's content words.
    """

    visual: torch.Tensor
    caption: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor
    chance: torch.Tensor
    objects: torch.Tensor
    asked: torch.Tensor


def coded_clip(
    video: ToyVideo,
    num_frames: int,
    grid: tuple[int, int],
    book: dict[str, torch.Tensor],
    noise: float,
    generator: torch.Generator,
) -> CodedClip:
    """The code states of ``video`` at ``num_frames`` uniformly sampled frames.

    A cell's state is ``sum_o coverage_o * (colour + shape + size + actions under way)`` plus
    ``(1 - covered) * background`` plus ``N(0, noise^2)`` per entry; the caption is
    ``the [size] colour shape that <action>``, the verb phrase as one state (its action's code).
    """
    dim = next(iter(book.values())).numel()
    ids = uniform_ids(video.num_frames, num_frames)
    width, height = video.width, video.height
    visual = torch.zeros(num_frames, grid[0] * grid[1], dim)
    objects = torch.zeros(num_frames, dim)
    targets, mask, chance = (
        torch.zeros(num_frames, 4),
        torch.zeros(num_frames, dtype=torch.bool),
        torch.zeros(num_frames),
    )
    tube = {int(f): b for f, b in zip(video.tube.frame_ids, video.tube.boxes, strict=True)}
    for t, frame in enumerate(ids.tolist()):
        covered = np.zeros(grid[0] * grid[1])
        seen = []
        for obj in video.objects:
            v0, v1 = obj.visible
            if not v0 <= frame < v1:
                continue
            box = obj.boxes[frame - v0]
            seen.append(box)
            doing = [
                a
                for a, spans in obj.action_spans(video.num_frames).items()
                if any(s <= frame < e for s, e in spans)
            ]
            code = (
                book[obj.colour]
                + book[obj.shape]
                + book[obj.size]
                + sum((book[a] for a in doing), torch.zeros(dim))
            )
            cov = box_coverage(box, width, height, grid).reshape(-1)
            visual[t] += torch.from_numpy(cov).float()[:, None] * code
            objects[t] += code
            covered += cov
        visual[t] += torch.from_numpy(np.clip(1 - covered, 0, None)).float()[:, None] * book["background"]
        if frame in tube:
            gt = tube[frame]
            targets[t] = torch.from_numpy(xyxy_to_cxcywh_norm(gt[None], width, height)[0]).float()
            mask[t] = True
            chance[t] = float(box_iou(np.asarray(seen, dtype=np.float64), gt[None]).mean())
    visual += noise * torch.randn(visual.shape, generator=generator)
    parts = video.parts
    content = [*([parts.size] if parts.size else []), parts.colour, parts.shape, parts.action]
    words = ["the", *content[:-1], "that", parts.action]
    caption = torch.stack([book[word] for word in words])
    caption += noise * torch.randn(caption.shape, generator=generator)
    asked = torch.stack([book[word] for word in content]).sum(dim=0)
    return CodedClip(visual, caption, targets, mask, chance, objects, asked)


def query_states(clip: CodedClip, layout: Layout) -> torch.Tensor:
    """``(T, D)``: what each frame's query token holds in ``layout`` (see the module docstring)."""
    if layout == "paper":
        return clip.objects
    if layout == "caption_first":
        return clip.asked.expand_as(clip.objects)
    raise ValueError(f"unknown layout {layout!r}: use one of {', '.join(LAYOUTS)}")


def decoder_inputs(clips: Sequence[CodedClip], layout: Layout) -> dict[str, torch.Tensor]:
    """The clips as one padded hidden-state batch and the decoder's position arguments.

    Each row is ``[cells of frame 0 .. T-1, queries, caption (padded)]``.
    """
    t, p, d = clips[0].visual.shape
    longest = max(c.caption.shape[0] for c in clips)
    hidden = torch.zeros(len(clips), t * p + t + longest, d)
    caption_mask = torch.zeros(len(clips), longest, dtype=torch.bool)
    for i, clip in enumerate(clips):
        n = clip.caption.shape[0]
        hidden[i, : t * p] = clip.visual.reshape(t * p, d)
        hidden[i, t * p : t * p + t] = query_states(clip, layout)
        hidden[i, t * p + t : t * p + t + n] = clip.caption
        caption_mask[i, :n] = True
    b = len(clips)
    return {
        "hidden": hidden,
        "visual_positions": torch.arange(t * p).view(1, t, p).expand(b, -1, -1),
        "query_positions": torch.arange(t * p, t * p + t).view(1, t).expand(b, -1),
        "caption_positions": torch.arange(t * p + t, t * p + t + longest).view(1, -1).expand(b, -1),
        "caption_mask": caption_mask,
    }


def span_iou(boxes: torch.Tensor, clips: Sequence[CodedClip]) -> float:
    """Mean over clips of the mean IoU of ``boxes (N, T, 4)`` with the GT on the span's frames."""
    per_clip = []
    for pred, clip in zip(boxes, clips, strict=True):
        m = clip.mask.numpy()
        if not m.any():
            continue
        a = cxcywh_norm_to_xyxy(pred.detach().numpy()[m], 1.0, 1.0)
        b = cxcywh_norm_to_xyxy(clip.targets.numpy()[m], 1.0, 1.0)
        per_clip.append(float(box_iou(a, b).mean()))
    return float(np.mean(per_clip))


@dataclass
class LearnabilityRow:
    """One trained head's held-out figures (IoU in ``[0, 1]``)."""

    world: str
    layout: str
    lever: str
    span_iou: float
    mean_box_iou: float
    random_object_iou: float
    attention_on_target: float


def _attention_on_target(weights: torch.Tensor, clips: Sequence[CodedClip], grid: tuple[int, int]) -> float:
    """Mean share of each span frame's query attention on the cells the GT box overlaps."""
    shares = []
    for w, clip in zip(weights, clips, strict=True):
        for t in torch.nonzero(clip.mask).flatten().tolist():
            cov = box_coverage(
                cxcywh_norm_to_xyxy(clip.targets[t].numpy()[None], 1.0, 1.0)[0], 1, 1, grid
            ).reshape(-1)
            shares.append(float((w[t].numpy() * (cov > 0)).sum()))
    return float(np.mean(shares))


def run_row(
    train: Sequence[CodedClip],
    held_out: Sequence[CodedClip],
    layout: Layout,
    lever: str,
    grid: tuple[int, int],
    steps: int = 300,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    world: str = "",
    attention_scale: float | None = None,
) -> LearnabilityRow:
    """Train the space head of a fresh decoder on ``train`` and score it on ``held_out``.

    The dual cross attention has no parameters, so its output is computed once and only the
    head trains on it (the same losses as :func:`spacevllm.losses.spacevllm_losses`).
    ``attention_scale``: the decoder's softmax scale (``None``: ``1 / sqrt(D)``).
    """
    dim = train[0].visual.shape[-1]
    torch.manual_seed(seed)
    config = SpaceVLLMConfig(**LEVERS[lever], attention_scale=attention_scale)
    decoder = QueryGuidedSpaceDecoder(dim, config, grid=grid)
    if any(not name.startswith("head.") for name, _ in decoder.named_parameters()):
        raise AssertionError("the dual cross attention grew parameters: it can no longer be run once")

    def decoded(clips: Sequence[CodedClip]) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            out = decoder(**decoder_inputs(clips, layout))
        return out.decoded, out.query_attention

    x_train, _ = decoded(train)
    x_test, weights = decoded(held_out)
    targets = torch.stack([c.targets for c in train])
    masks = torch.stack([c.mask for c in train])
    optimizer = torch.optim.Adam(decoder.head.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        pick = torch.randint(len(train), (batch_size,), generator=generator)
        l1, giou, _ = box_losses(decoder.head(x_train[pick]), targets[pick], masks[pick])
        loss = config.l1_weight * l1 + config.giou_weight * giou
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        boxes = decoder.head(x_test)
    mean_box = targets[masks].mean(dim=0)
    chance = [float(c.chance[c.mask].mean()) for c in held_out if c.mask.any()]
    return LearnabilityRow(
        world=world,
        layout=layout,
        lever=lever,
        span_iou=span_iou(boxes, held_out),
        mean_box_iou=span_iou(mean_box.expand(len(held_out), boxes.shape[1], 4), held_out),
        random_object_iou=float(np.mean(chance)),
        attention_on_target=_attention_on_target(weights, held_out, grid),
    )


def coded_split(
    world: ToyWorldConfig,
    count: int,
    num_frames: int,
    grid: tuple[int, int],
    book: dict[str, torch.Tensor],
    noise: float,
    seed: int,
) -> list[CodedClip]:
    """``count`` toy videos of ``world`` at toy-world seed ``seed``, as code states."""
    generator = torch.Generator().manual_seed(seed)
    videos = generate(count, replace(world, seed=seed))
    return [coded_clip(v, num_frames, grid, book, noise, generator) for v in videos]
