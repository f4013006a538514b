"""The clip bank: toy-world clips rendered once, and which of their frames a training clip uses.

:class:`ClipBank` keeps ``bank_frames`` uniformly sampled frames per clip resized to the tower's
input (PIL bicubic, as the adapter does) as one uint8 tensor, with each clip's objects;
:func:`pick_frames`, :func:`pick_pairs` and :func:`even_frames` choose bank frames per clip.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from zsgrounding.mllm.preprocess import resize_frames
from zsgrounding.toy.mllm.data.facts import Place, SeenObject, box_place, seen_objects
from zsgrounding.toy.mllm.data.text import PairObject, pair_motion
from zsgrounding.toy.world import ToyObject, ToyVideo, ToyWorldConfig, generate_one
from zsgrounding.video import uniform_ids


def chroma_subsample(frame: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 with its chroma halved in both directions, as yuv420p video stores it."""
    y, cb, cr = Image.fromarray(frame).convert("YCbCr").split()
    half = (max(1, frame.shape[1] // 2), max(1, frame.shape[0] // 2))
    cb, cr = (
        c.resize(half, Image.Resampling.BOX).resize(y.size, Image.Resampling.BILINEAR) for c in (cb, cr)
    )
    return np.asarray(Image.merge("YCbCr", (y, cb, cr)).convert("RGB"))


@dataclass
class ClipBank:
    """Clips rendered once.

    Attributes:
        frames: ``(N, K, H, W, 3)`` uint8: ``K`` frames per clip at native ids ``frame_ids``,
            resized to the model's input (``S x S`` for LLaVA-OneVision).
        frame_ids: ``(N, K)`` int64 native ids (``uniform_ids(T, K)``).
        num_frames: ``(N,)`` native length ``T`` of each clip.
        objects: each clip's objects (boxes, visibility, motions).
        indices: world index of each clip.
        native_size: the world's ``(width, height)``, which the objects' boxes are in.
    """

    frames: torch.Tensor
    frame_ids: np.ndarray
    num_frames: np.ndarray
    objects: list[list[ToyObject]]
    indices: list[int]
    native_size: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.objects)

    def seen(self, clip: int, picks: np.ndarray) -> list[SeenObject]:
        """What bank frames ``picks`` (ascending) of clip ``clip`` show."""
        return seen_objects(
            self.objects[clip], int(self.num_frames[clip]), self.frame_ids[clip, picks], self.native_size
        )

    def frame_objects(self, clip: int, pick: int) -> list[tuple[str, str, str]]:
        """``(size, colour, shape)`` of the objects drawn on bank frame ``pick`` of clip ``clip``."""
        fid = int(self.frame_ids[clip, pick])
        return [(o.size, o.colour, o.shape) for o in self.objects[clip] if o.visible[0] <= fid < o.visible[1]]

    def frame_places(
        self,
        clip: int,
        pick: int,
        among: Sequence[ToyObject] | None = None,
        window: tuple[float, float] | None = None,
    ) -> list[Place]:
        """The :data:`Place` of each object drawn on bank frame ``pick`` (those of ``among`` when
        given, in its order; else :meth:`frame_objects`' order), in the half-size ``window`` at that
        corner (fractions of the frame) when given, else in the whole frame."""
        if self.native_size is None:
            raise ValueError("this clip bank was built without the world's frame size")
        fid = int(self.frame_ids[clip, pick])
        return [
            box_place(o.boxes[fid - o.visible[0]], self.native_size, window)
            for o in (self.objects[clip] if among is None else among)
            if o.visible[0] <= fid < o.visible[1]
        ]

    def pair_objects(
        self, clip: int, first: int, second: int, among: Sequence[ToyObject] | None = None
    ) -> list[PairObject]:
        """``(size, colour, shape, motion)`` of the objects drawn on bank frames ``first < second``
        (only those of ``among``, e.g. inside a zoomed window, when given)."""
        ids = self.frame_ids[clip]
        out = []
        for o in self.objects[clip] if among is None else among:
            motion = pair_motion(o, int(ids[first]), int(ids[second]))
            if motion is not None:
                out.append((o.size, o.colour, o.shape, motion))
        return out


def build_bank(
    world: ToyWorldConfig,
    start: int,
    count: int,
    bank_frames: int,
    size: int | tuple[int, int],
    chroma_augment: float = 0.0,
    seed: int = 0,
    progress: bool = True,
    desc: str = "clip bank",
) -> ClipBank:
    """Render world videos ``[start, start + count)`` into a :class:`ClipBank` of frames resized to
    ``size`` (a side, or ``(H, W)``)."""
    rng = np.random.default_rng([seed, start, count])
    height, width = (size, size) if isinstance(size, int) else size
    frames = torch.empty((count, bank_frames, height, width, 3), dtype=torch.uint8)
    frame_ids = np.empty((count, bank_frames), dtype=np.int64)
    lengths = np.empty(count, dtype=np.int64)
    objects = []
    for row, index in enumerate(
        tqdm(range(start, start + count), desc=desc, unit="clip", disable=not progress)
    ):
        video: ToyVideo = generate_one(index, world)
        ids = uniform_ids(video.num_frames, bank_frames)
        picked = video.frames[ids]
        if rng.random() < chroma_augment:
            picked = np.stack([chroma_subsample(f) for f in picked])
        frames[row] = torch.from_numpy(resize_frames(picked, height, width, int(Image.Resampling.BICUBIC)))
        frame_ids[row], lengths[row] = ids, video.num_frames
        objects.append(video.objects)
    return ClipBank(
        frames, frame_ids, lengths, objects, list(range(start, start + count)), (world.width, world.height)
    )


def pick_frames(rng: np.random.Generator, bank_frames: int, count: int) -> np.ndarray:
    """``count`` ascending bank frames spread over the clip: one per equal stratum, jittered."""
    edges = np.linspace(0, bank_frames, count + 1)
    picks = np.floor(edges[:-1] + rng.random(count) * (edges[1:] - edges[:-1])).astype(np.int64)
    return np.clip(picks, 0, bank_frames - 1)


PAIR_GAPS = (1, 2)
"""Bank-frame gaps inside a training frame pair (the tower cache holds these pairs)."""


def pick_pairs(rng: np.random.Generator, bank_frames: int, count: int) -> np.ndarray:
    """``count`` (even) ascending bank frames as ``count / 2`` pairs ``(a, a + g)``, ``g`` in
    :data:`PAIR_GAPS`, one pair per equal stratum of the clip (frames for a temporal-patch-2 tower)."""
    if count % 2:
        raise ValueError(f"frame pairs need an even frame count, got {count}")
    edges = np.linspace(0, bank_frames, count // 2 + 1)
    picks = []
    for lo, hi in itertools.pairwise(edges):
        first, last = int(np.ceil(lo)), int(np.ceil(hi)) - 1  # bank frames inside the stratum
        gaps = [g for g in PAIR_GAPS if last - first >= g] or [1]
        gap = int(gaps[int(rng.integers(len(gaps)))])
        a = int(rng.integers(first, max(first, last - gap) + 1))
        picks.extend((a, min(a + gap, bank_frames - 1)))
    return np.asarray(picks, dtype=np.int64)


def even_frames(bank_frames: int, count: int) -> np.ndarray:
    """``count`` bank frames at the strata centres (deterministic, for evaluation)."""
    return uniform_ids(bank_frames, count)


__all__ = [
    "PAIR_GAPS",
    "ClipBank",
    "build_bank",
    "chroma_subsample",
    "even_frames",
    "pick_frames",
    "pick_pairs",
]
