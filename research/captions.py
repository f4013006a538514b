"""Caption checks: does the toy MLLM say where each object is, and what each one does?

A model trained with the ``places`` caption task is asked "where is each thing?" on held-out
videos and answers greedily; its caption is compared object by object with the true one
(:func:`~zsgrounding.toy.mllm.data.place_list`): is the first place right, does it say the object
moves ("... then ...") when it does, and is the last place right. The caption's token accuracy
cannot tell this apart from naming the objects; this can.

The teacher-forced checks score chosen words of a true caption given the words before them, once
with the clip's own video and once with a video that cannot show the answer: another clip's
(:func:`place_word_check`), or the same frames played backwards (:func:`action_word_check`), which
swap "moves left" with "moves right" and "grows" with "shrinks" and leave everything else.

:func:`train_captions` first continues stage 2 of a checkpoint on caption tasks alone: can the
model be taught to read places (or actions) at all? ``python -m research.toy_place_captions``
runs both.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import LlavaOnevisionForConditionalGeneration, PreTrainedTokenizerFast

from zsgrounding.mllm import load_adapter
from zsgrounding.mllm.base import MLLMAdapter, PreparedInputs
from zsgrounding.toy.mllm.config import StageSchedule, ToyPretrainConfig
from zsgrounding.toy.mllm.data import (
    CAPTION_TASKS,
    REVERSE_ACTIONS,
    Sampler,
    action_checklist,
    build_bank,
    place_list,
    seen_objects,
)
from zsgrounding.toy.mllm.evaluate import EvalConfig, toy_clip
from zsgrounding.toy.mllm.stages import VisualSource, stage2_align
from zsgrounding.toy.mllm.train import save_checkpoint
from zsgrounding.toy.world import ACTIONS, ToyVideo, generate_one
from zsgrounding.types import Clip

PLACE_PROMPT = "where is each thing?"
ACTION_PROMPT = "list the actions."


def _adapter(model: str | Path | MLLMAdapter) -> MLLMAdapter:
    return model if isinstance(model, MLLMAdapter) else load_adapter(model)


@torch.no_grad()
def greedy_answer(adapter: MLLMAdapter, prepared: PreparedInputs, max_tokens: int = 80) -> str:
    """The model's greedy answer to a prepared single-row prompt, up to its end-of-turn token.

    Decodes by re-running the whole sequence per token (the toy model is small); only models
    whose prepared inputs need no explicit positions (LLaVA-OneVision) are supported.
    """
    if prepared.model_kwargs:
        raise ValueError("greedy_answer takes models without explicit positions (LLaVA-OneVision)")
    tokenizer = adapter.tokenizer
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    embed = adapter.model.get_input_embeddings()
    embeds, ids = prepared.inputs_embeds, []
    for _ in range(max_tokens):
        mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
        logits = adapter.model(inputs_embeds=embeds, attention_mask=mask, logits_to_keep=1).logits
        token = int(logits[0, -1].argmax())
        if token == end:
            break
        ids.append(token)
        embeds = torch.cat([embeds, embed(torch.tensor([[token]], device=embeds.device))], dim=1)
    return tokenizer.decode(ids)


@torch.no_grad()
def teacher_forced(adapter: MLLMAdapter, prepared: PreparedInputs, ids: list[int]) -> torch.Tensor:
    """``(len(ids),)`` the model's most likely token at each step of the answer ``ids`` (given the
    prompt and the true answer so far), in one forward pass; LLaVA-OneVision as
    :func:`greedy_answer`."""
    if prepared.model_kwargs:
        raise ValueError("teacher_forced takes models without explicit positions (LLaVA-OneVision)")
    prompt = prepared.inputs_embeds
    answer = adapter.model.get_input_embeddings()(torch.tensor([ids], device=prompt.device))
    embeds = torch.cat([prompt, answer.to(prompt.dtype)], dim=1)
    mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
    logits = adapter.model(inputs_embeds=embeds, attention_mask=mask).logits[0]
    start = prompt.shape[1] - 1  # the logits at the last prompt token predict the first answer token
    return logits[start : start + len(ids)].argmax(-1).cpu()


def true_places(video: ToyVideo, clip: Clip) -> str:
    """The true places caption of ``video`` over the frames ``clip`` shows."""
    size = (video.width, video.height)
    return place_list(seen_objects(video.objects, video.num_frames, clip.frame_ids, size))


def parse_places(caption: str) -> dict[str, tuple[str, str | None]]:
    """``{"big red circle": ("at the left", "in the middle"), ...}`` from a places caption; the
    second place is ``None`` when the caption does not say the object moves. An object named twice
    keeps its last entry."""
    out: dict[str, tuple[str, str | None]] = {}
    for part in caption.strip().removesuffix(".").split(","):
        words = part.split()
        if len(words) < 4:
            continue
        first, _, last = " ".join(words[3:]).partition(" then ")
        out[" ".join(words[:3])] = (first, last or None)
    return out


def score_places(said: str, truth: str) -> Counter:
    """Counts over the objects of the true caption ``truth``: ``objects``, ``named`` (the model names
    it), ``first_right``, ``moves`` / ``moves_said`` (it moves, and the model says so),
    ``stays_said_moving`` (it does not, and the model says it does), ``last_right`` (it moves, and
    the model's last place is right)."""
    told, true = parse_places(said), parse_places(truth)
    counts: Counter = Counter()
    for name, (first, last) in true.items():
        counts["objects"] += 1
        counts["moves"] += last is not None
        if name not in told:
            continue
        said_first, said_last = told[name]
        counts["named"] += 1
        counts["first_right"] += said_first == first
        counts["moves_said"] += last is not None and said_last is not None
        counts["stays_said_moving"] += last is None and said_last is not None
        counts["last_right"] += last is not None and said_last == last
    return counts


def place_caption_check(
    model: str | Path | MLLMAdapter, config: EvalConfig | None = None, clips: int = 100, progress: bool = True
) -> dict:
    """Ask "where is each thing?" on held-out videos ``config.start ..`` (``config.frames`` frames).

    Returns ``counts`` (of :func:`score_places`, summed over the clips), ``rates`` (``named`` and
    ``first_right`` of the objects, ``moves_said`` and ``last_right`` of those that move,
    ``stays_said_moving`` of those that do not), ``examples`` (the first three captions, said and
    true), ``clips`` and ``frames``.
    """
    cfg = config or EvalConfig()
    adapter = _adapter(model)
    counts: Counter = Counter()
    examples = []
    for index in tqdm(range(cfg.start, cfg.start + clips), desc="place captions", disable=not progress):
        video = generate_one(index, cfg.world)
        clip = toy_clip(video, cfg.frames)
        truth = true_places(video, clip)
        said = greedy_answer(adapter, adapter.prepare(clip, PLACE_PROMPT))
        counts += score_places(said, truth)
        if len(examples) < 3:
            examples.append({"said": said, "true": truth})
    objects, moves = counts["objects"], counts["moves"]

    def rate(part: str, whole: int) -> float | None:
        return round(counts[part] / whole, 4) if whole else None

    return {
        "counts": dict(counts),
        "rates": {
            "named": rate("named", objects),
            "first_right": rate("first_right", objects),
            "moves_said": rate("moves_said", moves),
            "stays_said_moving": rate("stays_said_moving", objects - moves),
            "last_right": rate("last_right", moves),
        },
        "examples": examples,
        "clips": clips,
        "frames": cfg.frames,
    }


PLACE_TARGETS = ("top", "bottom", "middle", "left", "right")
"""The words of a places caption that say where: what :func:`place_word_check` scores."""


def place_word_check(
    model: str | Path | MLLMAdapter, config: EvalConfig | None = None, clips: int = 100, progress: bool = True
) -> dict:
    """Teacher-forced accuracy on the place words of true places captions of held-out videos.

    The model reads each video, the question and the true caption up to each word of
    :data:`PLACE_TARGETS`; is its most likely next word the true one? ``real`` is that rate with
    the video the caption describes, ``other_clip`` with the next held-out video in its place: the
    words the caption's own text predicts. A model that reads where things are scores ``real``
    above ``other_clip``. Returns both rates, ``words`` (scored), ``clips`` and ``frames``.
    """
    cfg = config or EvalConfig()
    adapter = _adapter(model)
    tokenizer = adapter.tokenizer
    targets = torch.tensor(tokenizer.convert_tokens_to_ids(list(PLACE_TARGETS)))
    right = {"real": 0, "other_clip": 0}
    words = 0
    video = generate_one(cfg.start, cfg.world)
    for index in tqdm(range(cfg.start, cfg.start + clips), desc="place words", disable=not progress):
        following = generate_one(index + 1, cfg.world)
        clip = toy_clip(video, cfg.frames)
        truth = true_places(video, clip)
        ids = tokenizer(truth, add_special_tokens=False)["input_ids"]
        scored = torch.isin(torch.tensor(ids), targets)
        words += int(scored.sum())
        for mode, shown in (("real", clip), ("other_clip", toy_clip(following, cfg.frames))):
            predicted = teacher_forced(adapter, adapter.prepare(shown, PLACE_PROMPT), ids)
            right[mode] += int((predicted == torch.tensor(ids))[scored].sum())
        video = following
    rates = {mode: round(count / words, 4) if words else None for mode, count in right.items()}
    return {**rates, "words": words, "clips": clips, "frames": cfg.frames}


def checklist_decisions(checklist: str) -> list[tuple[str, int]]:
    """``[(action, index), ...]``: for each entry of an actions checklist
    (:func:`~zsgrounding.toy.mllm.data.action_checklist`), the action and the index of the word
    right after its verb phrase, where the checklist says ``none`` or begins who does it."""
    words = checklist.split()
    phrases = sorted(((ACTIONS[a].split(), a) for a in ACTIONS), key=lambda p: -len(p[0]))
    out, at = [], 0
    for entry in checklist.removesuffix(" .").split(" , "):
        entry_words = entry.split()
        for phrase, action in phrases:
            if entry_words[: len(phrase)] == phrase:
                out.append((action, at + len(phrase)))
                break
        else:
            raise ValueError(f"no action starts the checklist entry {entry!r}")
        at += len(entry_words) + 1  # the entry and the comma after it
    if at != len(words) or any(words[i] in (",", ".") for _, i in out):
        raise ValueError(f"not an actions checklist: {checklist!r}")
    return out


def action_word_check(
    model: str | Path | MLLMAdapter, config: EvalConfig | None = None, clips: int = 100, progress: bool = True
) -> dict:
    """Teacher-forced: does the model read what each object does?

    The model reads each held-out video, "list the actions." and the true actions checklist up to
    the word after each action's verb phrase; is its most likely word there (``none``, or the size
    that begins who does it) the true one? Scored with the clip's video (``real``), with the same
    frames in reverse order (``reversed``, against the forward truth) and with the next held-out
    clip's video (``other_clip``). Reading the video scores ``real`` above ``other_clip``; reading
    the order of the frames, which alone tells "moves left" from "moves right", scores ``real``
    above ``reversed`` on the actions that reverse (``order_actions``). ``none`` is the share of
    true ``none`` words: what always saying "nobody does it" scores. Returns the three rates and
    ``none`` over every entry (``decisions`` of them), over the order actions and over the four
    moves (``moves``: left, right, up, down), per-action rates in ``by_action``, ``clips`` and
    ``frames``. The model's vocabulary must hold the checklist's words (its recipe trained the
    ``actions`` caption task).
    """
    cfg = config or EvalConfig()
    adapter = _adapter(model)
    tokenizer = adapter.tokenizer
    modes = ("real", "reversed", "other_clip")
    nobody = tokenizer.convert_tokens_to_ids("none")
    right: Counter = Counter()
    count: Counter = Counter()
    video = generate_one(cfg.start, cfg.world)
    for index in tqdm(range(cfg.start, cfg.start + clips), desc="action words", disable=not progress):
        following = generate_one(index + 1, cfg.world)
        clip = toy_clip(video, cfg.frames)
        size = (video.width, video.height)
        checklist = action_checklist(
            seen_objects(video.objects, video.num_frames, clip.frame_ids, size), cfg.world
        )
        ids = tokenizer(checklist, add_special_tokens=False)["input_ids"]
        if len(ids) != len(checklist.split()) or tokenizer.unk_token_id in ids:
            raise ValueError("the model's vocabulary does not hold the actions checklist's words")
        decisions = checklist_decisions(checklist)
        shown = {
            "real": clip,
            "reversed": dataclasses.replace(clip, frames=clip.frames[::-1].copy()),
            "other_clip": toy_clip(following, cfg.frames),
        }
        said = {
            m: teacher_forced(adapter, adapter.prepare(shown[m], ACTION_PROMPT), ids).tolist() for m in modes
        }
        said["none"] = [nobody] * len(ids)  # always "nobody does it": the baseline
        for mode, words in said.items():
            for action, at in decisions:
                groups = ["all", action]
                groups += ["order_actions"] if action in REVERSE_ACTIONS else []
                groups += ["moves"] if action.startswith("move_") else []
                for group in groups:
                    right[group, mode] += words[at] == ids[at]
                    count[group, mode] += 1
        video = following

    def rates(group: str) -> dict[str, float | None]:
        return {
            m: round(right[group, m] / count[group, m], 4) if count[group, m] else None
            for m in (*modes, "none")
        }

    return {
        **rates("all"),
        "decisions": count["all", "real"],
        "order_actions": {**rates("order_actions"), "decisions": count["order_actions", "real"]},
        "moves": {**rates("moves"), "decisions": count["moves", "real"]},
        "by_action": {a: rates(a) for a in cfg.world.actions if count[a, "real"]},
        "clips": clips,
        "frames": cfg.frames,
    }


def train_captions(
    model_dir: Path,
    out: Path,
    steps: int,
    cell_weight: float = 0.0,
    recipe: ToyPretrainConfig | None = None,
    progress: bool = True,
    tasks: tuple[str, ...] = ("places",),
) -> dict:
    """Continue stage 2 of the checkpoint ``model_dir`` with only the caption ``tasks`` (equal
    weights) for ``steps`` steps (tower frozen); save the copy to ``out`` and return the stage-2
    summary.

    ``recipe`` gives the data and sizes (default: the shipped recipe's); its caption tasks, stage-2
    schedules, tower training and cell loss are replaced here.
    """
    unknown = sorted(set(tasks) - set(CAPTION_TASKS))
    if unknown or not tasks:
        raise ValueError(f"caption tasks are among {sorted(CAPTION_TASKS)}, not {unknown or 'none'}")
    base = recipe or ToyPretrainConfig()
    cfg = dataclasses.replace(
        base,
        caption_tasks=dict.fromkeys(tasks, 1.0),
        stage2_projector=StageSchedule(0, 32, 1e-3, warmup=1),  # projector and LM together at once
        stage2=StageSchedule(steps, base.stage2.batch, 1e-3, warmup=min(20, steps)),
        train_vision=(),
        cell_weight=cell_weight,
        cell_stages=("stage2",),
    )
    tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)
    if tokenizer.convert_tokens_to_ids("top") == tokenizer.unk_token_id:
        raise ValueError(f"{model_dir}'s vocabulary has no place words: its recipe never said places")
    model = LlavaOnevisionForConditionalGeneration.from_pretrained(model_dir)
    if model.config.vision_config.image_size != cfg.model.image_size:
        raise ValueError(
            f"{model_dir} reads {model.config.vision_config.image_size} px frames, the recipe "
            f"{cfg.model.image_size} px"
        )
    size = cfg.model.bank_size
    banks = [
        build_bank(
            cfg.world, start, count, cfg.bank_frames, size, cfg.chroma_augment, cfg.seed, progress, name
        )
        for start, count, name in (
            (cfg.train_start, cfg.train_clips, "train clips"),
            (cfg.eval_start, cfg.eval_clips, "held-out clips"),
        )
    ]
    sources = [VisualSource.cached(model.eval(), bank, progress=progress) for bank in banks]
    samplers = [
        Sampler(bank, tokenizer, cfg.world, cfg.model, seed=[cfg.seed, stream])
        for bank, stream in zip(banks, (77, 1077), strict=True)
    ]
    torch.manual_seed(cfg.seed + 77)
    metrics = stage2_align(model, *samplers, *sources, cfg, lambda record: None, progress)
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, model, tokenizer, cfg)
    return {"steps": steps, "tasks": list(tasks), "cell_weight": cell_weight, **metrics}


__all__ = [
    "ACTION_PROMPT",
    "PLACE_PROMPT",
    "PLACE_TARGETS",
    "action_word_check",
    "checklist_decisions",
    "greedy_answer",
    "parse_places",
    "place_caption_check",
    "place_word_check",
    "score_places",
    "teacher_forced",
    "train_captions",
    "true_places",
]
