"""Place caption check: does the toy MLLM say where each object is?

A model trained with the ``places`` caption task is asked "where is each thing?" on held-out
videos and answers greedily; its caption is compared object by object with the true one
(:func:`~zsgrounding.toymllm.data.place_list`): is the first place right, does it say the object
moves ("... then ...") when it does, and is the last place right. The caption's token accuracy
cannot tell this apart from naming the objects; this can.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch
from tqdm.auto import tqdm

from zsgrounding.datasets.toyworld import generate_one
from zsgrounding.mllm.base import MLLMAdapter, PreparedInputs
from zsgrounding.toymllm.data import place_list, seen_objects
from zsgrounding.toymllm.evaluate import EvalConfig, _adapter, toy_clip

PLACE_PROMPT = "where is each thing?"


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
        size = (cfg.world.width, cfg.world.height)
        truth = place_list(seen_objects(video.objects, video.num_frames, clip.frame_ids, size))
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


__all__ = ["PLACE_PROMPT", "greedy_answer", "parse_places", "place_caption_check", "score_places"]
