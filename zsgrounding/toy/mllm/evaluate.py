"""Held-out evaluation of a toy MLLM checkpoint through the same path the grounder uses.

``load_adapter(dir)`` -> ``adapter.prepare(clip, question)`` -> ``adapter.forward`` ->
``adapter.yes_no_score`` (> 0 means "yes"), on toy-world videos of an index range the recipe
never trains on, with frames sampled uniformly at native resolution as the grounder samples them.

- :func:`evaluate_vqa`: accuracy overall, per question kind, on positives and on hard negatives,
  per action, and the majority-answer baseline.
- :func:`attention_check`: does the special tokens' attention over the visual tokens fall more on
  the asked object than on the others? Each object is scored as the tube scorer scores a track
  (the max of the evidence inside its boxes over the sampled frames).
- :func:`query_token_check`: the same question for every query token instead of the special
  tokens only: per decoder layer and per token of the question (its words, the special tokens),
  how often the object whose boxes hold the most attention is the asked one.
- :func:`token_order_check`: does the model use where and when its visual tokens are? The same
  questions with the visual tokens shuffled within each frame, shuffled over the whole video,
  or each frame replaced by its mean token. A model that reads the video as an unordered bag of
  tokens keeps its accuracy under the whole-video shuffle, action questions included.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from zsgrounding.attention import CaptureConfig
from zsgrounding.mllm import MLLMAdapter, load_adapter
from zsgrounding.mllm.base import PreparedInputs
from zsgrounding.toy.mllm.config import QUESTION_KINDS
from zsgrounding.toy.mllm.data import Question, SeenObject, make_question, seen_objects
from zsgrounding.toy.mllm.stages import vqa_groups, vqa_summary
from zsgrounding.toy.world import (
    COLOURS,
    SHAPES,
    SIZES,
    ToyVideo,
    ToyWorldConfig,
    generate_one,
    object_tracks,
)
from zsgrounding.tubes import score_tracks
from zsgrounding.types import Clip
from zsgrounding.video import uniform_ids

QUESTION = "Is there {} in this video?"  # the grounder's phrasing (zsgrounding.zeroshot.pipeline)


@dataclass(frozen=True)
class EvalConfig:
    """Which held-out questions to ask.

    Attributes:
        world: the toy world (the recipe's).
        start, clips: held-out world indices ``[start, start + clips)``.
        frames: frames per clip, ``uniform_ids(T, frames)`` as the grounder samples them.
        per_kind: balanced questions per kind (half "yes"); negatives are hard whenever possible.
        kinds: question kinds (:data:`zsgrounding.toy.mllm.config.QUESTION_KINDS`).
        style: phrasing (0: ``"Is there the ... in this video?"``; ``None``: a random mix).
        seed: seeds the question draw.
    """

    world: ToyWorldConfig = field(default_factory=ToyWorldConfig)
    start: int = 900_000
    clips: int = 600
    frames: int = 8
    per_kind: int = 150
    kinds: tuple[str, ...] = QUESTION_KINDS
    style: int | None = 0
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["world"] = self.world.to_json()
        data["kinds"] = list(self.kinds)
        return data


def binomial_stderr(rights: Sequence[bool]) -> float | None:
    """Standard error of an accuracy over ``rights``, as if the answers were independent."""
    if not rights:
        return None
    p = float(np.mean(rights))
    return round(float(np.sqrt(p * (1 - p) / len(rights))), 4)


def toy_clip(video: ToyVideo, frames: int) -> Clip:
    """``frames`` uniformly sampled native frames of a toy video as a :class:`Clip`."""
    ids = uniform_ids(video.num_frames, min(frames, video.num_frames))
    return Clip(
        frames=video.frames[ids],
        frame_ids=ids,
        times=ids / video.fps,
        fps=video.fps,
        num_frames=video.num_frames,
        width=video.width,
        height=video.height,
    )


def _adapter(model: str | Path | MLLMAdapter) -> MLLMAdapter:
    return model if isinstance(model, MLLMAdapter) else load_adapter(model)


def held_out_set(config: EvalConfig) -> tuple[dict[int, ToyVideo], list[tuple[int, Question]]]:
    """The videos and ``(video index, question)`` pairs of an evaluation."""
    rng = np.random.default_rng([config.seed, 11])
    videos: dict[int, ToyVideo] = {}
    pairs: list[tuple[int, Question]] = []
    for kind in config.kinds:
        made = attempts = 0
        while made < config.per_kind and attempts < 50 * config.per_kind:
            attempts += 1
            index = config.start + int(rng.integers(config.clips))
            if index not in videos:
                videos[index] = generate_one(index, config.world)
            video = videos[index]
            ids = uniform_ids(video.num_frames, min(config.frames, video.num_frames))
            seen = seen_objects(video.objects, video.num_frames, ids)
            q = make_question(rng, seen, kind, made % 2 == 0, config.world, 1.0, config.style)
            if q is not None:
                pairs.append((index, q))
                made += 1
    return videos, pairs


def question_case(question: Question, objects: Sequence[SeenObject]) -> str:
    """Which case of question this is, for the error breakdown.

    Positives by the size of the objects that fit (``positive_small``, ``positive_big``,
    ``positive_both``); negatives: ``negative_other_action`` (an object fits the attributes but
    does not do the asked action), ``negative_near_miss`` (another hard negative),
    ``negative_easy``.
    """
    visible = [o for o in objects if o.visible]
    desc = question.desc
    if question.answer:
        sizes = {
            o.size for o in visible if desc.matches(o) and (desc.action is None or desc.action in o.actions)
        }
        return "positive_both" if len(sizes) > 1 else f"positive_{next(iter(sizes), 'both')}"
    if desc.action is not None and any(desc.matches(o) for o in visible):
        return "negative_other_action"
    return "negative_near_miss" if question.hard else "negative_easy"


@torch.no_grad()
def evaluate_vqa(
    model: str | Path | MLLMAdapter, config: EvalConfig | None = None, progress: bool = True
) -> dict:
    """Held-out yes/no accuracy of a checkpoint directory (or loaded adapter).

    Returns :func:`zsgrounding.toy.mllm.stages.vqa_summary`'s numbers plus ``action/<id>``
    accuracies over the action questions, ``case/<case>`` accuracies per :func:`question_case`,
    ``stderr/overall`` and ``stderr/hard_negatives`` (binomial standard errors: recipes closer
    than about two of them are not told apart by this sample), ``frames`` and ``config``.
    """
    cfg = config or EvalConfig()
    adapter = _adapter(model)
    videos, pairs = held_out_set(cfg)
    clips = {index: toy_clip(video, cfg.frames) for index, video in videos.items()}
    records: list[tuple[Question, bool]] = []
    per_action: dict[str, list[bool]] = defaultdict(list)
    per_case: dict[str, list[bool]] = defaultdict(list)
    for index, q in tqdm(pairs, desc=f"held-out VQA ({cfg.frames} frames)", disable=not progress):
        clip = clips[index]
        score = float(adapter.yes_no_score(adapter.forward(adapter.prepare(clip, q.text)))[0])
        said = score > 0
        records.append((q, said))
        if q.desc.action is not None:
            per_action[q.desc.action].append(said == q.answer)
        video = videos[index]
        per_case[question_case(q, seen_objects(video.objects, video.num_frames, clip.frame_ids))].append(
            said == q.answer
        )
    summary = vqa_summary(records)
    summary.update({f"action/{a}": round(float(np.mean(v)), 4) for a, v in sorted(per_action.items())})
    summary.update({f"case/{c}": round(float(np.mean(v)), 4) for c, v in sorted(per_case.items())})
    groups = vqa_groups(records)
    for name in ("overall", "hard_negatives"):
        summary[f"stderr/{name}"] = binomial_stderr(groups.get(name, []))
    summary["frames"] = cfg.frames
    summary["config"] = cfg.to_json()
    return summary


@torch.no_grad()
def attention_check(
    model: str | Path | MLLMAdapter,
    config: EvalConfig | None = None,
    clips: int = 12,
    layers: tuple[int, int] | None = None,
    progress: bool = True,
) -> dict:
    """Where the special tokens look, for the caption's attribute phrase and the whole caption.

    For each held-out video and question (``attribute``: ``"Is there the big red circle in this
    video?"``, asked objects = all objects fitting the phrase; ``caption``: the whole caption,
    asked object = the target), the captured attention (mean over ``layers`` and heads) gives an
    evidence map per special token and their mean. Each object scores the max evidence inside its
    boxes; a hit is an asked object scoring above every other object.

    Returns per question type: ``hit_rate`` of the mean map, ``hit_rate_per_token``,
    ``mean_ratio`` (best asked score / best other score), ``chance`` (the hit rate of random
    object scores, ``mean(asked / objects)``), and ``clips``.
    """
    cfg = config or EvalConfig()
    adapter = _adapter(model)
    out: dict[str, Any] = {}
    stats: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for index in tqdm(range(cfg.start, cfg.start + clips), desc="attention check", disable=not progress):
        video = generate_one(index, cfg.world)
        clip = toy_clip(video, cfg.frames)
        tracks = object_tracks(video)
        questions = {
            "attribute": (
                [i for i, o in enumerate(video.objects) if video.parts.matches(o)],
                video.parts.attribute_phrase,
            ),
            "caption": ([video.target], video.caption),
        }
        for name, (asked, phrase) in questions.items():
            others = [i for i in range(len(video.objects)) if i not in asked]
            if not others:
                continue
            prepared = adapter.prepare(clip, QUESTION.format(phrase))
            result = adapter.forward(prepared, capture=prepared.capture_config(layers))
            maps = prepared.to_grid(result.attention.mean()).numpy()  # (S, T, h, w)
            per_map = [
                score_tracks(evidence, tracks, np.asarray(prepared.frame_ids), video.width, video.height)
                for evidence in [*maps, maps.mean(0)]
            ]
            hits = [bool(scores[asked].max() > scores[others].max()) for scores in per_map]
            mean_scores = per_map[-1]
            stats[name]["hit"].append(hits[-1])
            stats[name]["hit_per_token"].append(hits[:-1])
            stats[name]["ratio"].append(
                float(mean_scores[asked].max() / max(mean_scores[others].max(), 1e-12))
            )
            stats[name]["chance"].append(len(asked) / len(video.objects))
            stats[name]["yes_no_score"].append(float(adapter.yes_no_score(result)[0]))
    for name, values in stats.items():
        out[name] = {
            "clips": len(values["hit"]),
            "hit_rate": round(float(np.mean(values["hit"])), 4),
            "hit_rate_per_token": [round(float(v), 4) for v in np.mean(values["hit_per_token"], axis=0)],
            "mean_ratio": round(float(np.mean(values["ratio"])), 4),
            "median_ratio": round(float(np.median(values["ratio"])), 4),
            "chance": round(float(np.mean(values["chance"])), 4),
            "mean_yes_no_score": round(float(np.mean(values["yes_no_score"])), 4),
        }
    out["special_tokens"] = list(
        adapter.prepare(toy_clip(generate_one(cfg.start, cfg.world), 2), "is there?").special_tokens
    )
    out["frames"] = cfg.frames
    out["layers"] = list(layers) if layers is not None else None
    return out


def token_roles(words: Sequence[str], special: Sequence[bool]) -> dict[str, int]:
    """Role of each query token -> its index (first occurrence): ``special-k`` for the k-th special
    token from the end, ``colour`` / ``shape`` / ``size`` for a toy attribute word, else the word."""
    roles: dict[str, int] = {}
    n_special = sum(special)
    seen_special = 0
    for index, (word, is_special) in enumerate(zip(words, special, strict=True)):
        if is_special:
            role = f"special-{n_special - seen_special}"
            seen_special += 1
        elif word in COLOURS:
            role = "colour"
        elif word in SHAPES:
            role = "shape"
        elif word in SIZES:
            role = "size"
        else:
            role = word
        roles.setdefault(role, index)
    return roles


@torch.no_grad()
def query_token_check(
    model: str | Path | MLLMAdapter, config: EvalConfig | None = None, clips: int = 100, progress: bool = True
) -> dict:
    """Track-selection accuracy of each (decoder layer, query token)'s attention over the visual tokens.

    For held-out videos ``config.start ..`` with two or more objects, the caption is asked
    (``"Is there <caption> in this video?"``); every token after the video is a query row (head
    mean). Its map scores each object as the tube scorer scores a track; a hit is the target
    scoring highest.

    Returns ``accuracy`` (``{layer: {role: rate}}``, roles of :func:`token_roles` found in at
    least half of the clips), ``counts`` (clips per role), ``chance``
    (mean of 1 / objects), ``clips``, ``frames``, and ``best``: the highest cell, which is biased
    upwards by the choice among all cells (compare it with the spread of the cells).
    """
    cfg = config or EvalConfig()
    adapter = _adapter(model)
    hits: dict[int, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    chance: list[float] = []
    index = cfg.start
    bar = tqdm(total=clips, desc="query token check", disable=not progress)
    while len(chance) < clips and index < cfg.start + 50 * clips:
        video = generate_one(index, cfg.world)
        index += 1
        if len(video.objects) < 2:
            continue
        clip = toy_clip(video, cfg.frames)
        prepared = adapter.prepare(clip, QUESTION.format(video.caption))
        first = int(prepared.visual_positions.max()) + 1
        separators = set(prepared.separator_positions.tolist())
        queries = [q for q in range(first, prepared.input_ids.shape[1]) if q not in separators]
        words = adapter.tokenizer.convert_ids_to_tokens(prepared.input_ids[0, queries].tolist())
        special = set(prepared.special_positions.tolist())
        roles = token_roles(words, [q in special for q in queries])
        capture = CaptureConfig(query_positions=queries, key_positions=prepared.visual_positions.tolist())
        output = adapter.forward(prepared, capture=capture)
        tracks = object_tracks(video)
        for layer, maps in output.attention.maps.items():
            grid = prepared.to_grid(maps).numpy()  # (R, T, h, w)
            for role, row in roles.items():
                scores = score_tracks(
                    grid[row], tracks, np.asarray(prepared.frame_ids), video.width, video.height
                )
                hits[layer][role].append(int(np.argmax(scores)) == video.target)
        chance.append(1 / len(video.objects))
        bar.update()
    bar.close()
    # Words missing from most captions (an optional size, "that" before an action) are left out.
    accuracy = {
        layer: {
            role: round(float(np.mean(v)), 4) for role, v in per_role.items() if 2 * len(v) >= len(chance)
        }
        for layer, per_role in sorted(hits.items())
    }
    counts = {role: len(v) for role, v in next(iter(hits.values()), {}).items() if 2 * len(v) >= len(chance)}
    cells = [(rate, layer, role) for layer, row in accuracy.items() for role, rate in row.items()]
    best = max(cells) if cells else (float("nan"), -1, "")
    return {
        "accuracy": accuracy,
        "counts": counts,
        "best": {"rate": best[0], "layer": best[1], "token": best[2]},
        "chance": round(float(np.mean(chance)), 4) if chance else None,
        "clips": len(chance),
        "frames": cfg.frames,
    }


ORDER_MODES = ("plain", "shuffle_in_frame", "shuffle_video", "frame_mean")
"""Inputs of :func:`token_order_check`: as prepared; tokens permuted inside each frame; tokens
permuted over all frames; every token of a frame replaced by the frame's mean token."""


def reorder_visual(prepared: PreparedInputs, mode: str, generator: torch.Generator) -> PreparedInputs:
    """``prepared`` with its visual embeddings moved as ``mode`` (:data:`ORDER_MODES`) says.

    Only the embeddings at the grid positions change; position ids, text and separators stay.
    """
    if mode not in ORDER_MODES:
        raise ValueError(f"mode must be one of {ORDER_MODES}, got {mode!r}")
    embeds = prepared.inputs_embeds.clone()
    grid = prepared.visual_grid.reshape(prepared.visual_grid.shape[0], -1)  # (T, h * w)
    if mode == "shuffle_in_frame":
        for frame in grid:
            embeds[:, frame] = embeds[:, frame[torch.randperm(len(frame), generator=generator)]]
    elif mode == "shuffle_video":
        flat = grid.reshape(-1)
        embeds[:, flat] = embeds[:, flat[torch.randperm(len(flat), generator=generator)]]
    elif mode == "frame_mean":
        for frame in grid:
            embeds[:, frame] = embeds[:, frame].mean(dim=1, keepdim=True)
    return replace(prepared, inputs_embeds=embeds)


@torch.no_grad()
def token_order_check(
    model: str | Path | MLLMAdapter, config: EvalConfig | None = None, progress: bool = True, seed: int = 0
) -> dict:
    """Held-out VQA accuracy per input mode of :data:`ORDER_MODES` (the questions of
    :func:`evaluate_vqa`).

    Returns ``{mode: {"overall", "kind/<kind>", "action/<id>" accuracies}}`` and ``count``.
    """
    cfg = config or EvalConfig()
    adapter = _adapter(model)
    videos, pairs = held_out_set(cfg)
    generator = torch.Generator().manual_seed(seed)
    right: dict[str, dict[str, list[bool]]] = {mode: defaultdict(list) for mode in ORDER_MODES}
    for index, q in tqdm(pairs, desc="token order check", disable=not progress):
        prepared = adapter.prepare(toy_clip(videos[index], cfg.frames), q.text)
        for mode in ORDER_MODES:
            inputs = reorder_visual(prepared, mode, generator)
            said = float(adapter.yes_no_score(adapter.forward(inputs))[0]) > 0
            groups = ["overall", f"kind/{q.kind}"]
            if q.desc.action is not None:
                groups.append(f"action/{q.desc.action}")
            for group in groups:
                right[mode][group].append(said == q.answer)
    out: dict[str, Any] = {
        mode: {name: round(float(np.mean(v)), 4) for name, v in sorted(groups.items())}
        for mode, groups in right.items()
    }
    out["count"] = len(pairs)
    out["frames"] = cfg.frames
    return out


def evaluate_checkpoint(
    model: str | Path | MLLMAdapter,
    frames: Sequence[int] = (8, 20),
    config: EvalConfig | None = None,
    attention_clips: int = 12,
    progress: bool = True,
    order_check: bool = True,
    query_clips: int = 0,
    seen: EvalConfig | None = None,
) -> dict:
    """VQA accuracy at each frame count; at the first one the token order check and (``seen``) the
    same evaluation on training clips, at the last one the attention check and (``query_clips`` >
    0) the query token check.

    ``seen`` names the training clips (``start``, ``clips``); its accuracy against the held-out
    one is how much of the held-out error comes from memorising the training videos.
    """
    cfg = config or EvalConfig()
    adapter = _adapter(model)
    report: dict[str, Any] = {}
    for count in frames:
        report[f"vqa_{count}_frames"] = evaluate_vqa(adapter, _with_frames(cfg, count), progress)
    if seen is not None:
        report["seen_clips"] = evaluate_vqa(adapter, _with_frames(seen, frames[0]), progress)
    if order_check:
        report["token_order"] = token_order_check(adapter, _with_frames(cfg, frames[0]), progress)
    if query_clips:
        report["query_tokens"] = query_token_check(
            adapter, _with_frames(cfg, frames[-1]), query_clips, progress
        )
    if attention_clips:
        report["attention"] = attention_check(
            adapter, _with_frames(cfg, frames[-1]), attention_clips, progress=progress
        )
    return report


def _with_frames(config: EvalConfig, frames: int) -> EvalConfig:
    return replace(config, frames=frames)


__all__ = [
    "ORDER_MODES",
    "EvalConfig",
    "attention_check",
    "binomial_stderr",
    "evaluate_checkpoint",
    "evaluate_vqa",
    "held_out_set",
    "query_token_check",
    "question_case",
    "reorder_visual",
    "token_order_check",
    "token_roles",
    "toy_clip",
]
