"""Seeded training batches of every stage from one clip bank.

:class:`Sampler` draws the clips, frames, texts and questions of each stage and :func:`collate`
turns conversations into token ids with labels on the answers only (:class:`TextBatch`);
:func:`held_out_questions` fixes the held-out questions the recipe scores during training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedTokenizerFast

from zsgrounding.toy.mllm.config import QUESTION_KINDS, CurriculumPhase, ToyMLLMConfig
from zsgrounding.toy.mllm.data.bank import PAIR_GAPS, ClipBank, even_frames, pick_frames, pick_pairs
from zsgrounding.toy.mllm.data.facts import SeenObject, nearby_place
from zsgrounding.toy.mllm.data.questions import Question, make_question
from zsgrounding.toy.mllm.data.text import (
    CAPTION_TASKS,
    frame_description,
    motion_perturbed,
    pair_description,
    perturbed,
)
from zsgrounding.toy.mllm.tokenizer import encode_conversation
from zsgrounding.toy.world import ToyObject, ToyWorldConfig


@dataclass
class TextBatch:
    """A padded batch of conversations about clips of a bank.

    Attributes:
        clips: ``(B,)`` bank rows.
        picks: ``(B, F)`` bank frames of each clip, ascending.
        input_ids: ``(B, N)`` long, right-padded with the pad id; visual slots hold ``<video>``.
        attention_mask: ``(B, N)`` long.
        labels: ``(B, N)`` long next-token targets, ``-100`` where there is no loss.
        answer_positions: per example, the positions predicting each turn's first answer token.
        questions: per example, the :class:`Question` of each turn (empty for captions).
    """

    clips: torch.Tensor
    picks: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    answer_positions: list[list[int]]
    questions: list[list[Question]]


def collate(
    tokenizer: PreTrainedTokenizerFast,
    clips: Sequence[int],
    picks: Sequence[np.ndarray],
    conversations: Sequence[Sequence[tuple[str, str]]],
    num_visual: int,
    questions: Sequence[Sequence[Question]] | None = None,
) -> TextBatch:
    """Encode and right-pad conversations (one per clip) into a :class:`TextBatch`."""
    encoded = [encode_conversation(tokenizer, turns, num_visual) for turns in conversations]
    length = max(len(e.input_ids) for e in encoded)
    pad = int(tokenizer.pad_token_id)
    ids = torch.full((len(encoded), length), pad, dtype=torch.long)
    mask = torch.zeros((len(encoded), length), dtype=torch.long)
    labels = torch.full((len(encoded), length), -100, dtype=torch.long)
    for row, enc in enumerate(encoded):
        n = len(enc.input_ids)
        ids[row, :n] = torch.tensor(enc.input_ids)
        mask[row, :n] = 1
        labels[row, :n] = torch.tensor(enc.labels)
    return TextBatch(
        clips=torch.tensor(list(clips), dtype=torch.long),
        picks=torch.from_numpy(np.stack(picks)).long(),
        input_ids=ids,
        attention_mask=mask,
        labels=labels,
        answer_positions=[e.answer_positions for e in encoded],
        questions=[list(q) for q in questions] if questions is not None else [[] for _ in encoded],
    )


def _zoomed(frames: torch.Tensor, corners: torch.Tensor) -> torch.Tensor:
    """``frames (B, K, H, W, 3)`` uint8 with the half-size window at ``corners (B, 2)`` (fractions of
    the frame, ``x0, y0``; negative: the whole frame) bilinearly scaled up to ``(H, W)`` on every frame."""
    height, width = frames.shape[2:4]
    out = frames.clone()
    for i in torch.nonzero(corners[:, 0] >= 0).flatten().tolist():
        x0, y0 = round(float(corners[i, 0]) * width), round(float(corners[i, 1]) * height)
        crop = frames[i, :, y0 : y0 + height // 2, x0 : x0 + width // 2].movedim(-1, 1).float()
        big = torch.nn.functional.interpolate(
            crop, size=(height, width), mode="bilinear", align_corners=False
        )
        out[i] = big.movedim(1, -1).round().clamp(0, 255).to(torch.uint8)
    return out


class Sampler:
    """Seeded batches of every stage from one clip bank.

    Args:
        bank: the clips.
        tokenizer: the toy tokenizer.
        world: the toy world (its colours, shapes and actions are what questions may name).
        model_config: the model sizes (how many tokens a video expands to).
        seed: seeds the numpy generator of every draw.
    """

    def __init__(
        self,
        bank: ClipBank,
        tokenizer: PreTrainedTokenizerFast,
        world: ToyWorldConfig,
        model_config: ToyMLLMConfig,
        seed: int | Sequence[int],
    ) -> None:
        self.bank = bank
        self.tokenizer = tokenizer
        self.world = world
        self.model_config = model_config
        self.rng = np.random.default_rng(seed)
        self._counts = np.array([len(objs) for objs in bank.objects])

    def _clip(self, max_objects: int = 99) -> int:
        allowed = np.flatnonzero(self._counts <= max_objects)
        pool = allowed if allowed.size else np.arange(len(self.bank))
        return int(pool[self.rng.integers(pool.size)])

    def _zoom_view(
        self, clip: int, picks: Sequence[int]
    ) -> tuple[tuple[float, float], list[ToyObject]] | None:
        """A half-size window around a random object of bank frame ``picks[0]`` that cuts no object on
        any of the frames ``picks``: its top-left corner (fractions of the frame) and the objects
        inside it (on every frame they are drawn on); ``None`` if five draws find none."""
        fids = [int(self.bank.frame_ids[clip, p]) for p in picks]
        scale = np.array([self.world.width, self.world.height] * 2, dtype=np.float64)
        objects = self.bank.objects[clip]
        # Per object, its normalised box on each frame it is drawn on.
        boxes = [
            [o.boxes[f - o.visible[0]] / scale for f in fids if o.visible[0] <= f < o.visible[1]]
            for o in objects
        ]
        anchors = [o for o in objects if o.visible[0] <= fids[0] < o.visible[1]]
        if not anchors:
            return None
        height, width = self.bank.frames.shape[2:4]
        for _ in range(5):
            anchor = anchors[int(self.rng.integers(len(anchors)))]
            x1, y1, x2, y2 = anchor.boxes[fids[0] - anchor.visible[0]] / scale
            lo_x, hi_x = max(0.0, x2 - 0.5), min(x1, 0.5)
            lo_y, hi_y = max(0.0, y2 - 0.5), min(y1, 0.5)
            if lo_x > hi_x or lo_y > hi_y:
                continue
            # Whole pixels of the bank frame, so the crop is a plain slice.
            wx = round(self.rng.uniform(lo_x, hi_x) * width) / width
            wy = round(self.rng.uniform(lo_y, hi_y) * height) / height
            inside, fits = [], True
            for obj, seen in zip(objects, boxes, strict=True):
                if not seen:
                    continue
                ins = {
                    bool(b[0] >= wx and b[2] <= wx + 0.5 and b[1] >= wy and b[3] <= wy + 0.5) for b in seen
                }
                out = {bool(b[2] <= wx or b[0] >= wx + 0.5 or b[3] <= wy or b[1] >= wy + 0.5) for b in seen}
                if ins == {True}:
                    inside.append(obj)
                elif out != {True}:
                    fits = False  # cut by the window, or inside on one frame and outside on another
                    break
            if fits and inside:
                return (wx, wy), inside
        return None

    def frame_batch(
        self, batch: int, negatives: int = 1, p_zoom: float = 0.0, p_places: float = 0.0
    ) -> tuple[torch.Tensor, list[str], list[str]]:
        """Stage 1: ``(rows, texts, hard)``.

        ``rows (B, 4)`` float ``(clip, bank frame, x0, y0)``: ``x0, y0 >= 0`` (fractions of the
        frame) mark a zoomed view, the half-size window at that corner scaled up to the whole
        input (with probability ``p_zoom``, around an object and cutting none; its description says
        no sizes, which zooming makes meaningless); ``-1`` the whole frame. ``texts``: the views'
        descriptions. ``hard``: ``negatives * B`` descriptions with one attribute of one object
        changed (round ``r`` holds ``hard[r * B : (r + 1) * B]``; round 0 changes a shape, the
        subtlest cue, later rounds a random attribute).

        With probability ``p_places`` a view's description says where in the view each object is
        (:func:`place_phrase`), so the tower's patches must keep their place; the last of two or
        more rounds then moves one object to a nearby place instead."""
        rows, texts, hard = [], [], [[] for _ in range(negatives)]
        for _ in range(batch):
            clip = self._clip()
            pick = int(self.rng.integers(self.bank.frames.shape[1]))
            view = self._zoom_view(clip, [pick]) if p_zoom > 0 and self.rng.random() < p_zoom else None
            named = p_places > 0 and self.rng.random() < p_places
            if view is None:
                objs, sizes = self.bank.frame_objects(clip, pick), True
                places = self.bank.frame_places(clip, pick) if named else None
                rows.append((clip, pick, -1.0, -1.0))
            else:
                (wx, wy), inside = view
                objs, sizes = [(o.size, o.colour, o.shape) for o in inside], False
                places = self.bank.frame_places(clip, pick, inside, (wx, wy)) if named else None
                rows.append((clip, pick, wx, wy))
            texts.append(frame_description(self.rng, objs, sizes, places))
            for r in range(negatives):
                if places and r == negatives - 1 and r > 0:
                    moved = list(places)
                    i = int(self.rng.integers(len(moved)))
                    moved[i] = nearby_place(self.rng, moved[i])
                    hard[r].append(frame_description(self.rng, objs, sizes, moved))
                    continue
                changed = perturbed(self.rng, objs, self.world, "shape" if r == 0 else None, sizes)
                same = places if places is not None and len(changed) == len(places) else None  # "nothing"
                hard[r].append(frame_description(self.rng, changed, sizes, same))
        return torch.tensor(rows, dtype=torch.float64), texts, [t for round_ in hard for t in round_]

    def pair_batch(
        self, batch: int, negatives: int = 1, p_zoom: float = 0.0
    ) -> tuple[torch.Tensor, list[str], list[str]]:
        """Stage 1 of a temporal-patch-2 tower: ``(rows, texts, hard)`` over frame pairs.

        ``rows (B, 5)`` float ``(clip, first, second, x0, y0)``: bank frames, ``second - first`` in
        :data:`PAIR_GAPS` (the pairs training clips are cut into), and a zoomed window as in
        :meth:`frame_batch` (the same on both frames, cutting no object on either; probability
        ``p_zoom``) or ``-1``. ``texts``: what each pair shows, motions between its two frames
        included (:func:`pair_description`; no sizes in a zoomed view). ``hard``:
        ``negatives * B`` descriptions, round 0 with a motion swapped or changed
        (:func:`motion_perturbed`: the tower must bind each motion to its object), round 1 with a
        shape changed, later rounds a random attribute."""
        rows, texts, hard = [], [], [[] for _ in range(negatives)]
        bank_frames = self.bank.frames.shape[1]
        for _ in range(batch):
            clip = self._clip()
            gap = int(PAIR_GAPS[int(self.rng.integers(len(PAIR_GAPS)))])
            first = int(self.rng.integers(bank_frames - gap))
            view = None
            if p_zoom > 0 and self.rng.random() < p_zoom:
                view = self._zoom_view(clip, [first, first + gap])
            if view is None:
                objs = self.bank.pair_objects(clip, first, first + gap)
                rows.append((clip, first, first + gap, -1.0, -1.0))
                sizes = True
            else:
                (wx, wy), inside = view
                objs = self.bank.pair_objects(clip, first, first + gap, inside)
                rows.append((clip, first, first + gap, wx, wy))
                sizes = False
            texts.append(pair_description(self.rng, objs, sizes))
            for r in range(negatives):
                if r == 0:
                    changed = motion_perturbed(self.rng, objs)
                else:
                    which = "shape" if r == 1 else None  # the subtlest attribute, as for frames
                    attributes = perturbed(self.rng, [o[:3] for o in objs], self.world, which, sizes)
                    motions = [o[3] for o in objs] or [""]
                    changed = [(*a, m) for a, m in zip(attributes, motions, strict=True)]
                hard[r].append(pair_description(self.rng, changed, sizes))
        return torch.tensor(rows, dtype=torch.float64), texts, [t for round_ in hard for t in round_]

    def pair_pixels(self, rows: torch.Tensor) -> torch.Tensor:
        """``(B, 2, H, W, 3)`` uint8 frame pairs of :meth:`pair_batch` rows (zoomed ones scaled up)."""
        frames = self.bank.frames[rows[:, :1].long(), rows[:, 1:3].long()]
        return _zoomed(frames, rows[:, 3:5])

    def frame_pixels(self, rows: torch.Tensor) -> torch.Tensor:
        """``(B, S, S, 3)`` uint8 views of :meth:`frame_batch` rows (zoomed ones bilinearly scaled up)."""
        frames = self.bank.frames[rows[:, 0].long(), rows[:, 1].long()]
        return _zoomed(frames[:, None], rows[:, 2:4])[:, 0]

    def _captions(
        self, seen: list[SeenObject], weights: dict[str, float], turns: int
    ) -> list[tuple[str, str]]:
        """Up to ``turns`` different caption tasks drawn by ``weights``: ``(prompt, caption)``."""
        tasks = sorted(weights)
        p = np.array([weights[t] for t in tasks], dtype=np.float64)
        chosen = self.rng.choice(tasks, size=min(turns, len(tasks)), replace=False, p=p / p.sum())
        out = []
        for task in chosen:
            prompts, describe = CAPTION_TASKS[str(task)]
            out.append((prompts[int(self.rng.integers(len(prompts)))], describe(seen, self.world)))
        return out

    def caption_batch(self, batch: int, frames: int, weights: dict[str, float], turns: int = 1) -> TextBatch:
        """Stage 2: conversations of ``turns`` caption tasks (:data:`CAPTION_TASKS`) about a clip."""
        clips, picks, convs = [], [], []
        for _ in range(batch):
            clip = self._clip()
            pick = self._picks(frames)
            clips.append(clip)
            picks.append(pick)
            convs.append(self._captions(self.bank.seen(clip, pick), weights, turns))
        return collate(self.tokenizer, clips, picks, convs, self._num_visual(frames))

    def qa_batch(
        self,
        batch: int,
        frames: int,
        phase: CurriculumPhase,
        turns: int,
        captions: float,
        caption_weights: dict[str, float],
    ) -> TextBatch:
        """Stage 3: conversations of up to ``turns`` balanced yes/no questions; a share ``captions``
        of them are caption conversations instead (stage 2 kept alive)."""
        kinds = sorted(phase.weights)
        weights = np.array([phase.weights[k] for k in kinds], dtype=np.float64)
        weights /= weights.sum()
        clips, picks, convs, questions = [], [], [], []
        while len(clips) < batch:
            clip = self._clip(phase.max_objects)
            pick = self._picks(frames)
            seen = self.bank.seen(clip, pick)
            if self.rng.random() < captions:
                clips.append(clip)
                picks.append(pick)
                convs.append(self._captions(seen, caption_weights, 2))
                questions.append([])
                continue
            asked: list[Question] = []
            for _ in range(turns * 3):
                if len(asked) == turns:
                    break
                kind = str(self.rng.choice(kinds, p=weights))
                want = bool(self.rng.random() < 0.5)
                q = make_question(self.rng, seen, kind, want, self.world, phase.hard_negatives,
                                  reverse_actions=phase.reverse_actions)  # fmt: skip
                if q is not None and all(q.text != a.text for a in asked):
                    asked.append(q)
            if asked:
                clips.append(clip)
                picks.append(pick)
                convs.append([(q.text, "yes" if q.answer else "no") for q in asked])
                questions.append(asked)
        return collate(self.tokenizer, clips, picks, convs, self._num_visual(frames), questions)

    def _picks(self, frames: int) -> np.ndarray:
        """Bank frames of a training clip: frame pairs for a temporal-patch-2 tower."""
        if self.model_config.temporal_patch == 2:
            return pick_pairs(self.rng, self.bank.frames.shape[1], frames)
        return pick_frames(self.rng, self.bank.frames.shape[1], frames)

    def _num_visual(self, frames: int) -> int:
        return self.model_config.num_visual(frames)


def held_out_questions(
    bank: ClipBank,
    world: ToyWorldConfig,
    frames: int,
    per_kind: int,
    seed: int,
    kinds: Sequence[str] = QUESTION_KINDS,
    style: int | None = 0,
) -> list[tuple[int, np.ndarray, Question]]:
    """Fixed held-out ``(clip, picks, question)``: ``per_kind`` balanced questions of each kind,
    negatives hard whenever a hard one exists, in the grounder's phrasing by default."""
    rng = np.random.default_rng([seed, 7])
    picks = even_frames(bank.frames.shape[1], frames)
    out: list[tuple[int, np.ndarray, Question]] = []
    for kind in kinds:
        made, attempts = 0, 0
        while made < per_kind and attempts < per_kind * 50:
            attempts += 1
            clip = int(rng.integers(len(bank)))
            q = make_question(rng, bank.seen(clip, picks), kind, made % 2 == 0, world, 1.0, style)
            if q is not None:
                out.append((clip, picks, q))
                made += 1
    return out


__all__ = [
    "Sampler",
    "TextBatch",
    "collate",
    "held_out_questions",
]
