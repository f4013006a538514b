"""Spatio-temporal aware query tokens: vocabulary, interleaved prompts, input embeddings.

The base model's own ``<video>`` expansion puts all frames contiguously, followed by one
``image_newline`` token. SpaceVLLM needs a query token after every frame, so the expanded ids
are built here (``interleave=True``)::

    ... <video>x(h*w) [frame 0]  q0  <video>x(h*w) [frame 1]  q1 ...  q{T-1}  <video> [newline] ...

and with ``interleave=False`` (Table 7 ablation) the model's own block stays intact and the
queries follow it: ``[frame 0 .. frame T-1, newline, q0 .. q{T-1}]``. The visual features (the
model's ``get_video_features``: ``T * h * w`` frame tokens then the newline) fill the ``<video>``
positions in order, with :func:`zsgrounding.mllm.base.embed_with_features`; the query tokens
keep their (learnable) rows of the embedding table.

An image (REC) is a one-frame video through the same path (square resize, pooling, newline),
followed by the image query; LLaVA-OneVision's anyres image path is not used, so the spatial
grid of an image is that of a video frame.

The adapter seam: :class:`QueryAdapter` is what the model, the collator and the grounder use;
:class:`LlavaOnevisionQueryAdapter` implements it. A Qwen2-VL version would differ in (1) the
preprocessing (smart resize, patches of 2 frames: one query per temporal patch, or frames
duplicated so every frame has its own), (2) the layout (each frame pair wrapped in its own
``<|vision_start|> ... <|vision_end|>`` with its own ``video_grid_thw`` row, the query after
``<|vision_end|>``), and (3) the M-RoPE ``position_ids (3, B, L)``, which the model must be given
(its ``get_rope_index`` must see the queries as text tokens between vision blocks).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from spacevllm.config import SpaceVLLMConfig
from spacevllm.prompt import ANSWER_TEMPLATE, Instruction
from zsgrounding.mllm.base import embed_with_features
from zsgrounding.mllm.errors import ModelError
from zsgrounding.mllm.llava_onevision import LlavaOnevisionAdapter
from zsgrounding.mllm.preprocess import FramePreprocessing, preprocess_frames
from zsgrounding.mllm.prompt import render_video_prompt

IGNORE_INDEX = -100


# --------------------------------------------------------------------------- vocabulary


@dataclass(frozen=True)
class QueryTokens:
    """Ids of the query tokens in the tokenizer and the embedding table.

    Attributes:
        video_ids: ``N`` per-frame query ids in frame order, or one id when shared.
        image_id: the spatial-aware image query.
        shared: one video query after every frame (``video_ids`` has one id).
        answer_ids: tokens added so that answers can be spelled (digits, template words), empty
            for every real tokenizer (they spell any number).
    """

    video_ids: tuple[int, ...]
    image_id: int
    shared: bool = False
    answer_ids: tuple[int, ...] = ()

    @property
    def all_ids(self) -> tuple[int, ...]:
        """The query tokens (never generated)."""
        return (*self.video_ids, self.image_id)

    @property
    def new_rows(self) -> tuple[int, ...]:
        """Every row this model added to the table: the queries, and the answer tokens that a
        word-level vocabulary lacked (:func:`add_answer_tokens`); they train like new parts."""
        return (*self.all_ids, *self.answer_ids)

    def for_frames(self, num_frames: int, image: bool = False) -> list[int]:
        """Query id after each of ``num_frames`` frames (``[image_id]`` for an image)."""
        if image:
            if num_frames != 1:
                raise ValueError(f"an image is one frame, got {num_frames}")
            return [self.image_id]
        if self.shared:
            return [self.video_ids[0]] * num_frames
        if num_frames > len(self.video_ids):
            raise ValueError(f"{num_frames} frames but only {len(self.video_ids)} query tokens")
        return list(self.video_ids[:num_frames])


def add_query_tokens(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, config: SpaceVLLMConfig
) -> QueryTokens:
    """Add the query tokens to ``tokenizer`` and give them rows in ``model``'s embeddings.

    Idempotent: tokens already in the tokenizer (a fine-tuned checkpoint) keep their ids and
    trained rows. New tokens are special (never split, skipped when decoding); their input (and
    untied output) embedding rows start near the mean of the rows of the tokenizer's previous
    vocabulary, each a little apart from the others (deterministically). The table grows only if
    an id falls outside it (Qwen2 checkpoints have spare rows beyond the tokenizer, which are used
    as they are).
    """
    strings = [*config.query_token_strings(), config.image_query_token]
    if len(set(strings)) != len(strings):
        raise ValueError("query token strings must be distinct (image query included)")
    vocab = tokenizer.get_vocab()
    previous = len(tokenizer)
    new = [s for s in strings if s not in vocab]
    if new:
        tokenizer.add_tokens(new, special_tokens=True)
    ids = [int(tokenizer.convert_tokens_to_ids(s)) for s in strings]
    if new:
        _init_rows(model, [ids[strings.index(s)] for s in new], previous)
    answer_ids = add_answer_tokens(model, tokenizer)
    return QueryTokens(
        video_ids=tuple(ids[:-1]),
        image_id=ids[-1],
        shared=config.query_tokens == "shared",
        answer_ids=answer_ids,
    )


# Every character a time answer may need, in the answer template's wording.
_ANSWER_PROBE = ANSWER_TEMPLATE.format(start="0123456789.5", end="1.25")


def add_answer_tokens(model: nn.Module, tokenizer: PreTrainedTokenizerBase) -> tuple[int, ...]:
    """Make sure the tokenizer can spell a time answer; return the ids of what had to be added.

    Real MLLM tokenizers (byte-level BPE) spell anything and nothing is added. A word-level
    vocabulary without numbers (the toy-world MLLM's) maps ``"1.50"`` to its unknown token, and the
    model could never say a time: the answer's words it lacks and the ten digits are added as
    plain tokens (digits one by one, so every number is spelled digit by digit), with rows at
    the vocabulary mean like the queries. Idempotent. Decoding such a tokenizer puts spaces
    between the digits; :func:`spacevllm.infer.join_spelled_numbers` undoes that.
    """
    pieces = list(dict.fromkeys([*re.findall(r"[^\W\d_]+|[^\w\s]", _ANSWER_PROBE), *"0123456789"]))
    unk = tokenizer.unk_token_id
    if unk is not None and unk in tokenizer(_ANSWER_PROBE, add_special_tokens=False)["input_ids"]:
        missing = [p for p in pieces if unk in tokenizer(p, add_special_tokens=False)["input_ids"]]
        previous = len(tokenizer)
        tokenizer.add_tokens(missing, special_tokens=False)
        if unk in tokenizer(_ANSWER_PROBE, add_special_tokens=False)["input_ids"]:
            raise ModelError(f"the tokenizer cannot spell a time answer such as {_ANSWER_PROBE!r}")
        _init_rows(model, [int(tokenizer.convert_tokens_to_ids(p)) for p in missing], previous)
    # Added now or by an earlier fine-tuning (a reloaded checkpoint): the plain added tokens.
    added = tokenizer.get_added_vocab()
    special = set(tokenizer.all_special_tokens)
    return tuple(int(added[p]) for p in pieces if p in added and p not in special)


INIT_NOISE = 1e-5**0.5  # standard deviations of an added row's start around the vocabulary mean


@torch.no_grad()
def _init_rows(model: nn.Module, rows: Sequence[int], previous: int) -> None:
    inputs = model.get_input_embeddings()
    if max(rows) >= inputs.weight.shape[0]:
        model.resize_token_embeddings(max(rows) + 1, mean_resizing=False)
        inputs = model.get_input_embeddings()
    index = torch.as_tensor(list(rows), device=inputs.weight.device)
    tables = [inputs.weight]
    outputs = model.get_output_embeddings()
    if outputs is not None and outputs.weight.data_ptr() != inputs.weight.data_ptr():
        tables.append(outputs.weight)
    for table in tables:
        old = table[:previous].float()
        mean, std = old.mean(0), old.std(0)
        # Distinct starts: rows that start equal get equal logits and equal gradients, and added
        # answer tokens would learn slowly or, with a frozen LM head, never apart. Each row is
        # mean + N(0, 1e-5 var) per dimension, transformers' mean-resizing scale with a diagonal
        # covariance, drawn from a generator seeded by the row id (deterministic, order-free).
        noise = torch.stack(
            [torch.randn(old.shape[1], generator=torch.Generator().manual_seed(int(r))) for r in rows]
        )
        start = mean + noise * std * INIT_NOISE
        table[index] = start.to(device=table.device, dtype=table.dtype)


# --------------------------------------------------------------------------- prompts


@dataclass
class InterleavedPrompt:
    """One tokenized row: prompt with the video block and queries, optionally the answer.

    Attributes:
        input_ids: ``(L,)`` long; ``<video>`` ids where visual features go, query ids after frames.
        labels: ``(L,)`` long, the answer tokens (and the stop token) where they are, -100 elsewhere.
        visual_positions: ``(T, P)`` long, sequence position of token ``p`` of frame ``t``
            (``P = h * w``, row-major).
        query_positions: ``(T,)`` long, position of frame ``t``'s query token.
        separator_positions: ``(K,)`` long, other ``<video>`` positions (the one newline).
        caption_positions: ``(C,)`` long, the tokens of the sentence inside the instruction.
        prompt_length: tokens up to and including the generation prompt; the answer (if any)
            occupies ``[prompt_length, L)``.
    """

    input_ids: torch.Tensor
    labels: torch.Tensor
    visual_positions: torch.Tensor
    query_positions: torch.Tensor
    separator_positions: torch.Tensor
    caption_positions: torch.Tensor
    prompt_length: int

    @property
    def num_frames(self) -> int:
        return int(self.query_positions.shape[0])


class QueryAdapter(Protocol):
    """What SpaceVLLM needs from an MLLM family (see the module docstring)."""

    family: str
    tokenizer: PreTrainedTokenizerBase
    query_tokens: QueryTokens
    interleave: bool
    stop_id: int

    @property
    def grid_shape(self) -> tuple[int, int]:
        """``(h, w)`` visual tokens per frame."""
        ...

    @property
    def tokens_per_frame(self) -> int: ...

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        """``(T, H, W, 3)`` uint8 -> ``(T, 3, S, S)`` float32 on the CPU."""
        ...

    def build(
        self, instruction: Instruction, num_frames: int, image: bool = False, answer: str | None = None
    ) -> InterleavedPrompt: ...

    def video_features(
        self, model: nn.Module, pixel_values: torch.Tensor, num_frames: Sequence[int]
    ) -> list[torch.Tensor]:
        """``(B, T, 3, S, S)`` pixels (``num_frames[b]`` valid in row ``b``) -> per row ``(T_b * P + K, D)``."""
        ...

    def embed(
        self, model: nn.Module, input_ids: torch.Tensor, features: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """``(B, L)`` ids + per-row features -> ``(B, L, D)`` input embeddings."""
        ...

    def save(self, directory: Path) -> None:
        """Write the tokenizer and the preprocessing / template files a reload needs."""
        ...


class LlavaOnevisionQueryAdapter:
    """Interleaved query prompts for ``LlavaOnevisionForConditionalGeneration`` (LLaVA-OV, LLaVA-Video).

    Holds the tokenizer and settings only, never the model (the collator may be pickled to
    data-loader workers); the methods that need the model take it as an argument.

    Attributes:
        tokenizer: with the query tokens added (:func:`add_query_tokens`).
        query_tokens: their ids.
        preprocessing: frames -> pixel values (the base adapter's).
        chat_template: template the prompt is rendered with (``None``: the tokenizer's).
        video_token_id, video_token: the ``<video>`` placeholder.
        stop_id: token ending an answer.
        interleave: queries after every frame, or all after the video (ablation).
        caption_first: the instruction before the video in the user turn.
    """

    family = "llava_onevision"

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        query_tokens: QueryTokens,
        preprocessing: FramePreprocessing,
        grid: tuple[int, int],
        video_token_id: int,
        chat_template: str | None = None,
        stop_token: str | None = None,
        interleave: bool = True,
        caption_first: bool = False,
    ) -> None:
        if not tokenizer.is_fast:
            raise ModelError("a fast tokenizer is needed (token offsets locate the caption)")
        self.tokenizer = tokenizer
        self.query_tokens = query_tokens
        self.preprocessing = preprocessing
        self._grid = (int(grid[0]), int(grid[1]))
        self.video_token_id = int(video_token_id)
        self.video_token = tokenizer.convert_ids_to_tokens(self.video_token_id)
        self.chat_template = chat_template
        stop = stop_token if stop_token is not None else tokenizer.eos_token
        if stop is None:
            raise ModelError("the tokenizer has no EOS token; set SpaceVLLMConfig.stop_token")
        self.stop_id = int(tokenizer.convert_tokens_to_ids(stop))
        self.interleave = interleave
        self.caption_first = caption_first

    @classmethod
    def from_adapter(
        cls, adapter: LlavaOnevisionAdapter, query_tokens: QueryTokens, config: SpaceVLLMConfig
    ) -> LlavaOnevisionQueryAdapter:
        """Take the tokenizer, preprocessing, grid and template of a loaded base adapter."""
        return cls(
            tokenizer=adapter.tokenizer,
            query_tokens=query_tokens,
            preprocessing=adapter.preprocessing,
            grid=adapter.grid_shape,
            video_token_id=adapter.video_token_id,
            chat_template=adapter.chat_template,
            stop_token=config.stop_token,
            interleave=config.interleave,
            caption_first=config.caption_first,
        )

    @property
    def grid_shape(self) -> tuple[int, int]:
        return self._grid

    @property
    def tokens_per_frame(self) -> int:
        return self._grid[0] * self._grid[1]

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        return preprocess_frames(frames, self.preprocessing)

    def _video_block(self, queries: list[int]) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
        """Ids of the expanded video block and, relative to its start, the visual ``(T, P)``,
        query ``(T,)`` and separator ``(1,)`` offsets."""
        t, p, v = len(queries), self.tokens_per_frame, self.video_token_id
        if self.interleave:
            block = [tok for q in queries for tok in [v] * p + [q]] + [v]
            visual = np.arange(t)[:, None] * (p + 1) + np.arange(p)[None, :]
            query = np.arange(t) * (p + 1) + p
            separator = np.array([t * (p + 1)])
        else:
            block = [v] * (t * p + 1) + queries
            visual = np.arange(t * p).reshape(t, p)
            separator = np.array([t * p])
            query = t * p + 1 + np.arange(t)
        return block, visual, query, separator

    def build(
        self, instruction: Instruction, num_frames: int, image: bool = False, answer: str | None = None
    ) -> InterleavedPrompt:
        """Tokenize the chat prompt of ``instruction`` with ``num_frames`` frames and queries.

        ``answer`` (training) is appended after the generation prompt, followed by the stop
        token; both are the labels.
        """
        text = render_video_prompt(
            self.tokenizer,
            instruction.text,
            self.video_token,
            self.chat_template,
            text_first=self.caption_first,
        )
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids: list[int] = list(encoded["input_ids"])
        offsets = np.asarray(encoded["offset_mapping"], dtype=np.int64).reshape(-1, 2)
        slots = [i for i, tok in enumerate(ids) if tok == self.video_token_id]
        if len(slots) != 1:
            raise ModelError(f"expected one {self.video_token!r} in the prompt, found {len(slots)}")
        slot = slots[0]
        where = text.rfind(instruction.text)
        if where < 0:
            raise ModelError("the chat template changed the instruction text: cannot locate the caption")
        lo, hi = where + instruction.caption_start, where + instruction.caption_end
        caption = np.flatnonzero((offsets[:, 0] < hi) & (offsets[:, 1] > lo))
        if caption.size == 0:
            raise ModelError("the caption has no token in the prompt")

        block, visual, query, separator = self._video_block(self.query_tokens.for_frames(num_frames, image))
        shift = len(block) - 1
        prompt = ids[:slot] + block + ids[slot + 1 :]
        answer_ids: list[int] = []
        if answer is not None:
            answer_ids = [*self.tokenizer(answer, add_special_tokens=False)["input_ids"], self.stop_id]
        input_ids = prompt + answer_ids
        labels = [IGNORE_INDEX] * len(prompt) + answer_ids

        def tensor(x: np.ndarray | list[int]) -> torch.Tensor:
            return torch.as_tensor(np.asarray(x, dtype=np.int64))

        return InterleavedPrompt(
            input_ids=tensor(input_ids),
            labels=tensor(labels),
            visual_positions=tensor(visual + slot),
            query_positions=tensor(query + slot),
            separator_positions=tensor(separator + slot),
            caption_positions=tensor(np.where(caption > slot, caption + shift, caption)),
            prompt_length=len(prompt),
        )

    def video_features(
        self, model: nn.Module, pixel_values: torch.Tensor, num_frames: Sequence[int]
    ) -> list[torch.Tensor]:
        """The model's video features per row, with autograd (the projector may be trained).

        Args:
            pixel_values: ``(B, T_max, 3, S, S)``; row ``b`` has ``num_frames[b]`` valid frames.

        Returns:
            per row ``(T_b * P + 1, D)``: frame tokens frame-major, then the newline.
        """
        counts = [int(n) for n in num_frames]
        tower = next(model.model.vision_tower.parameters())
        pixels = pixel_values.to(device=tower.device, dtype=tower.dtype)
        if len(set(counts)) == 1:  # one vision pass for the whole batch
            batches = [pixels[:, : counts[0]]]
        else:
            batches = [pixels[b : b + 1, :n] for b, n in enumerate(counts)]
        features = []
        for chunk in batches:
            out = model.get_video_features(pixel_values_videos=chunk, return_dict=True)
            features.extend(out.pooler_output.unbind(0))
        for row, n in zip(features, counts, strict=True):
            if row.shape[0] != n * self.tokens_per_frame + 1:
                raise ModelError(
                    f"the model produced {row.shape[0]} video tokens for {n} frames, expected "
                    f"{n * self.tokens_per_frame + 1}"
                )
        return features

    def embed(
        self, model: nn.Module, input_ids: torch.Tensor, features: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """Input embeddings ``(B, L, D)``: table rows (queries included), features at ``<video>``.

        Row ``b``'s features fill its ``<video>`` positions in order (rows in batch order).
        """
        flat = torch.cat(list(features), 0)
        slots = int((input_ids == self.video_token_id).sum())
        if slots != flat.shape[0]:
            raise ModelError(f"{slots} <video> positions but {flat.shape[0]} visual features")
        return embed_with_features(model, input_ids, self.video_token_id, flat)

    def save(self, directory: Path) -> None:
        """Tokenizer (with the query tokens), ``preprocessor_config.json`` with the preprocessing
        used, and ``chat_template.json`` when the template is not the tokenizer's own: what
        :meth:`LlavaOnevisionAdapter.from_pretrained` reads back."""
        directory = Path(directory)
        self.tokenizer.save_pretrained(directory)
        pre = self.preprocessing
        settings = {
            "image_mean": list(pre.image_mean),
            "image_std": list(pre.image_std),
            "rescale_factor": pre.rescale_factor,
            "resample": int(pre.resample),
            "do_rescale": pre.do_rescale,
            "do_normalize": pre.do_normalize,
            "size": {"height": pre.size, "width": pre.size},
        }
        (directory / "preprocessor_config.json").write_text(json.dumps(settings, indent=2), encoding="utf-8")
        if self.chat_template is not None:
            text = json.dumps({"chat_template": self.chat_template})
            (directory / "chat_template.json").write_text(text, encoding="utf-8")
