"""Records + sampled clips -> one padded batch for :meth:`spacevllm.model.SpaceVLLM.forward`.

A record (``spacevllm/data.py`` defines the real one; anything with the attributes of
:class:`RecordLike` works) is one training example of a task:

* ``stvg``: video, sentence, span in seconds, GT boxes on the tube's frames;
* ``vtg``: video, sentence, span; no boxes;
* ``rec``: image (its clip has one frame, id 0), sentence, ``{0: box}``; no span, no answer.

Per item: the task instruction (:mod:`spacevllm.prompt`), the interleaved prompt
(:mod:`spacevllm.queries`), the answer text with the span snapped to the sampled frames (video
tasks with a span), the pixel values, and per sampled frame the GT box (normalised cxcywh) with
a mask that is True on frames inside the span that have a box. A sampled frame without an
annotated box but between two annotated ones gets their linear interpolation (sparse GT).
Sequences are right-padded; frames are padded to the batch's longest clip.

Items are ``(record, clip)`` pairs, or bare records when the collator knows how many frames to
sample: :func:`load_clip` then reads them (uniform frames of a video, the image as one frame),
so a ``DataLoader`` over records can use the collator as its ``collate_fn`` directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from spacevllm.prompt import VIDEO_TASKS, answer_text, build_instruction, snap_span
from spacevllm.queries import IGNORE_INDEX, InterleavedPrompt, QueryAdapter
from zsgrounding.boxes import xyxy_to_cxcywh_norm
from zsgrounding.errors import STVGError, VideoError
from zsgrounding.types import Clip
from zsgrounding.video import probe, sample_uniform

TASKS = ("stvg", "vtg", "rec")


class RecordLike(Protocol):
    """The fields the collator reads (see the module docstring for their meaning per task).

    ``span`` is half-open ``(start, end)`` seconds; ``boxes`` maps native frame ids to pixel
    ``xyxy`` in the ``width`` x ``height`` frame.
    """

    task: str
    id: str
    media: str | Path
    query: str
    width: int | None
    height: int | None
    fps: float | None
    num_frames: int | None
    span: tuple[float, float] | None
    boxes: Mapping[int, Sequence[float]]
    meta: Mapping[str, Any]


def load_clip(record: RecordLike, num_frames: int) -> Clip:
    """The frames of a record: ``num_frames`` uniform frames of a video (all of them when it
    has fewer), or a ``rec`` image as a one-frame clip (frame id 0, time 0)."""
    path = Path(record.media)
    if record.task == "rec":
        with Image.open(path) as image:
            frame = np.asarray(image.convert("RGB"))
        height, width = frame.shape[:2]
        return Clip(frame[None], np.zeros(1, dtype=np.int64), np.zeros(1), 1.0, 1, width, height, path)
    total = probe(path).num_frames
    return sample_uniform(path, min(int(num_frames), total))


@dataclass
class SimpleRecord:
    """A minimal :class:`RecordLike` (tests, inference requests)."""

    task: str
    id: str
    media: str | Path
    query: str
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    num_frames: int | None = None
    span: tuple[float, float] | None = None
    boxes: Mapping[int, Sequence[float]] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class SpaceVLLMBatch:
    """A padded batch (``B`` rows, ``L`` tokens, ``T`` frames, ``P`` tokens per frame, ``C`` caption tokens).

    Attributes:
        input_ids: ``(B, L)`` long, right-padded with the pad id.
        attention_mask: ``(B, L)`` long, 1 on real tokens.
        labels: ``(B, L)`` long, answer and stop tokens, -100 elsewhere.
        pixel_values: ``(B, T, 3, S, S)`` float32, zeros on padded frames.
        num_frames: ``(B,)`` long, valid frames per row.
        frame_mask: ``(B, T)`` bool, valid frames.
        visual_positions: ``(B, T, P)`` long (0 on padded frames).
        query_positions: ``(B, T)`` long (0 on padded frames).
        caption_positions: ``(B, C)`` long; ``caption_mask`` ``(B, C)`` bool.
        target_boxes: ``(B, T, 4)`` float32 normalised cxcywh GT (zeros where no target).
        box_mask: ``(B, T)`` bool, frames inside the GT span with a GT box.
        frame_ids: ``(B, T)`` long native ids of the sampled frames (-1 on padding).
        frame_times: ``(B, T)`` float64 seconds of the sampled frames.
        prompt_lengths: ``(B,)`` long, tokens before the answer.
        tasks, ids: per row.
        answers: per row the answer text (``None`` when there is none).
        skipped: ``(id, reason)`` of the records whose media could not be read; each row of
            theirs holds another record of the batch instead (a collator with
            ``skip_unreadable``).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    pixel_values: torch.Tensor
    num_frames: torch.Tensor
    frame_mask: torch.Tensor
    visual_positions: torch.Tensor
    query_positions: torch.Tensor
    caption_positions: torch.Tensor
    caption_mask: torch.Tensor
    target_boxes: torch.Tensor
    box_mask: torch.Tensor
    frame_ids: torch.Tensor
    frame_times: torch.Tensor
    prompt_lengths: torch.Tensor
    tasks: list[str]
    ids: list[str]
    answers: list[str | None]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def batch_size(self) -> int:
        return int(self.input_ids.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> SpaceVLLMBatch:
        """A copy with every tensor on ``device`` (Accelerate's ``send_to_device`` calls this)."""
        moved = {
            f.name: getattr(self, f.name).to(device, non_blocking=non_blocking)
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return replace(self, **moved)


@dataclass
class EncodedItem:
    """One record and clip, encoded (what the collator pads)."""

    prompt: InterleavedPrompt
    pixel_values: torch.Tensor
    target_boxes: np.ndarray
    box_mask: np.ndarray
    frame_ids: np.ndarray
    frame_times: np.ndarray
    task: str
    id: str
    answer: str | None


def box_at(boxes: Mapping[int, Sequence[float]], frame: int) -> np.ndarray | None:
    """The annotated pixel xyxy box at native ``frame``, interpolated between the nearest
    annotated frames around it; ``None`` outside the annotated range."""
    if not boxes:
        return None
    keys = np.array(sorted(int(k) for k in boxes), dtype=np.int64)
    table = {int(k): v for k, v in boxes.items()}
    if frame in table:
        return np.asarray(table[frame], dtype=np.float64)
    pos = int(np.searchsorted(keys, frame))
    if pos == 0 or pos == keys.size:
        return None
    lo, hi = int(keys[pos - 1]), int(keys[pos])
    w = (frame - lo) / (hi - lo)
    return (1 - w) * np.asarray(table[lo], dtype=np.float64) + w * np.asarray(table[hi], dtype=np.float64)


def _normalised_target(box: np.ndarray | None, width: int, height: int) -> np.ndarray | None:
    """Clip to the frame; a box with no area left is no target."""
    if box is None:
        return None
    x1, y1, x2, y2 = np.clip(box, 0, [width, height, width, height])
    if x2 <= x1 or y2 <= y1:
        return None
    return xyxy_to_cxcywh_norm([x1, y1, x2, y2], width, height)


class SpaceVLLMCollator:
    """``collate(items)`` with ``items`` a sequence of ``(record, clip)`` or records: a :class:`SpaceVLLMBatch`.

    Args:
        adapter: the query adapter (tokenizer, layout, preprocessing); holds no model.
        num_frames: frames :func:`load_clip` samples for bare records (``None``: pairs only).
        decimals: decimals of the seconds in instructions and answers.
        templates: task -> instruction template (default: those of ``time_style``).
        time_style: the time instruction, a key of :data:`spacevllm.prompt.TIME_STYLES`.
        with_answers: append the answer (training); ``False`` for inference prompts.
        pad_id: the padding id; ``None``: the tokenizer's pad id, else its stop id.
        skip_unreadable: a record whose video or image cannot be read is replaced by another
            record of the same batch (the batch keeps its size, so every process keeps its step
            count) and reported in ``batch.skipped``; without it the error is raised.
    """

    def __init__(
        self,
        adapter: QueryAdapter,
        num_frames: int | None = None,
        decimals: int = 2,
        templates: dict[str, str] | None = None,
        time_style: str = "llava-video",
        with_answers: bool = True,
        pad_id: int | None = None,
        skip_unreadable: bool = False,
    ) -> None:
        self.skip_unreadable = skip_unreadable
        self.adapter = adapter
        self.num_frames = num_frames
        self.decimals = int(decimals)
        self.templates = templates
        self.time_style = time_style
        self.with_answers = with_answers
        tokenizer_pad = getattr(getattr(adapter, "tokenizer", None), "pad_token_id", None)
        fallback = tokenizer_pad if tokenizer_pad is not None else getattr(adapter, "stop_id", 0)
        self.pad_id = int(pad_id if pad_id is not None else fallback)

    def encode(self, record: RecordLike, clip: Clip) -> EncodedItem:
        """Encode one record with its sampled clip (an image is a one-frame clip, frame id 0)."""
        task = record.task
        if task not in TASKS:
            raise ValueError(f"{record.id}: unknown task {task!r}, expected one of {TASKS}")
        times = np.asarray(clip.times, dtype=np.float64).reshape(-1)
        frame_ids = np.asarray(clip.frame_ids, dtype=np.int64).reshape(-1)
        image = task == "rec"
        if image and frame_ids.size != 1:
            raise ValueError(f"{record.id}: a rec item has one frame, its clip has {frame_ids.size}")
        duration = self._duration(record, clip)
        instruction = build_instruction(
            task, record.query, duration, times, self.decimals, self.templates, self.time_style
        )

        answer = None
        inside = np.ones(frame_ids.size, dtype=bool)
        if task in VIDEO_TASKS and record.span is not None:
            start, end = float(record.span[0]), float(record.span[1])
            inside = (times >= start) & (times < end)
            snapped = snap_span((start, end), times)
            answer = answer_text(snapped.start, snapped.end, self.decimals)
        prompt = self.adapter.build(
            instruction, int(frame_ids.size), image=image, answer=answer if self.with_answers else None
        )

        targets = np.zeros((frame_ids.size, 4), dtype=np.float32)
        mask = np.zeros(frame_ids.size, dtype=bool)
        if task != "vtg":
            for t, frame in enumerate(frame_ids):
                if not inside[t]:
                    continue
                target = _normalised_target(
                    box_at(record.boxes, int(frame)), record.width or clip.width, record.height or clip.height
                )
                if target is not None:
                    targets[t], mask[t] = target, True
        return EncodedItem(
            prompt=prompt,
            pixel_values=self.adapter.preprocess(clip.frames),
            target_boxes=targets,
            box_mask=mask,
            frame_ids=frame_ids,
            frame_times=times,
            task=task,
            id=str(record.id),
            answer=answer,
        )

    @staticmethod
    def _duration(record: RecordLike, clip: Clip) -> float:
        if record.num_frames and record.fps:
            return float(record.num_frames) / float(record.fps)
        return float(clip.duration)

    def __call__(self, items: Sequence[tuple[RecordLike, Clip] | RecordLike]) -> SpaceVLLMBatch:
        pairs: list[tuple[RecordLike, Clip] | None] = []
        skipped: list[tuple[str, str]] = []
        for item in items:
            if isinstance(item, tuple):
                pairs.append(item)
            elif self.num_frames is None:
                raise ValueError(
                    "bare records need a collator with num_frames (or give (record, clip) pairs)"
                )
            else:
                try:
                    pairs.append((item, load_clip(item, self.num_frames)))
                except (STVGError, OSError, UnidentifiedImageError) as err:
                    if not self.skip_unreadable:
                        raise
                    skipped.append((str(item.id), " ".join(str(err).split())))
                    pairs.append(None)
        good = [p for p in pairs if p is not None]
        if not good:
            raise VideoError(f"no record of a batch could be read ({skipped[0][0]}: {skipped[0][1]})")
        # A skipped record's row holds the batch's next readable record (a fixed, seeded choice).
        filled = [p if p is not None else good[i % len(good)] for i, p in enumerate(pairs)]
        batch = self.pad([self.encode(record, clip) for record, clip in filled])
        batch.skipped = skipped
        return batch

    def pad(self, encoded: Sequence[EncodedItem]) -> SpaceVLLMBatch:
        """Pad encoded items into one batch."""
        if not encoded:
            raise ValueError("no items to collate")
        b = len(encoded)
        seq = max(int(e.prompt.input_ids.shape[0]) for e in encoded)
        frames = max(e.prompt.num_frames for e in encoded)
        cap = max(int(e.prompt.caption_positions.shape[0]) for e in encoded)
        per_frame = int(encoded[0].prompt.visual_positions.shape[1])
        size = encoded[0].pixel_values.shape[1:]

        input_ids = torch.full((b, seq), self.pad_id, dtype=torch.long)
        attention = torch.zeros((b, seq), dtype=torch.long)
        labels = torch.full((b, seq), IGNORE_INDEX, dtype=torch.long)
        pixels = torch.zeros((b, frames, *size), dtype=torch.float32)
        num_frames = torch.zeros(b, dtype=torch.long)
        visual = torch.zeros((b, frames, per_frame), dtype=torch.long)
        query = torch.zeros((b, frames), dtype=torch.long)
        caption = torch.zeros((b, cap), dtype=torch.long)
        caption_mask = torch.zeros((b, cap), dtype=torch.bool)
        targets = torch.zeros((b, frames, 4), dtype=torch.float32)
        box_mask = torch.zeros((b, frames), dtype=torch.bool)
        frame_ids = torch.full((b, frames), -1, dtype=torch.long)
        frame_times = torch.zeros((b, frames), dtype=torch.float64)
        prompt_lengths = torch.zeros(b, dtype=torch.long)
        for i, e in enumerate(encoded):
            p, n, t = e.prompt, int(e.prompt.input_ids.shape[0]), e.prompt.num_frames
            input_ids[i, :n], attention[i, :n], labels[i, :n] = p.input_ids, 1, p.labels
            pixels[i, :t] = e.pixel_values
            num_frames[i] = t
            visual[i, :t], query[i, :t] = p.visual_positions, p.query_positions
            c = int(p.caption_positions.shape[0])
            caption[i, :c], caption_mask[i, :c] = p.caption_positions, True
            targets[i, :t] = torch.from_numpy(e.target_boxes)
            box_mask[i, :t] = torch.from_numpy(e.box_mask)
            frame_ids[i, :t] = torch.from_numpy(e.frame_ids)
            frame_times[i, :t] = torch.from_numpy(e.frame_times)
            prompt_lengths[i] = p.prompt_length
        return SpaceVLLMBatch(
            input_ids=input_ids,
            attention_mask=attention,
            labels=labels,
            pixel_values=pixels,
            num_frames=num_frames,
            frame_mask=torch.arange(frames)[None, :] < num_frames[:, None],
            visual_positions=visual,
            query_positions=query,
            caption_positions=caption,
            caption_mask=caption_mask,
            target_boxes=targets,
            box_mask=box_mask,
            frame_ids=frame_ids,
            frame_times=frame_times,
            prompt_lengths=prompt_lengths,
            tasks=[e.task for e in encoded],
            ids=[e.id for e in encoded],
            answers=[e.answer for e in encoded],
        )
