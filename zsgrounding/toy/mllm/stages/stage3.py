"""Stage 3, instruction tuning: multi-turn yes/no conversations with a curriculum and hard
negatives, and the held-out accuracy through the training path (:func:`quick_vqa`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch
from transformers import PreTrainedTokenizerFast

from zsgrounding.toy.mllm.config import CurriculumPhase, ToyPretrainConfig
from zsgrounding.toy.mllm.data import Question, Sampler, collate
from zsgrounding.toy.mllm.stages.optimisation import (
    Log,
    cell_head,
    fixed_parameters,
    module_parameters,
    optimise,
    trainable_parameters,
)
from zsgrounding.toy.mllm.stages.paths import (
    ToyModel,
    VisualSource,
    batch_logits,
    lm_loss,
    newline_parameters,
    projector_modules,
    tower_modules,
)
from zsgrounding.toy.mllm.stages.stage2 import draw_frame_count


@torch.no_grad()
def quick_vqa(
    model: ToyModel,
    tokenizer: PreTrainedTokenizerFast,
    source: VisualSource,
    questions: Sequence[tuple[int, np.ndarray, Question]],
    num_visual: int,
    chunk: int = 32,
) -> dict:
    """Held-out yes/no accuracy through the training path (one question per conversation).

    The final, authoritative numbers come from :mod:`zsgrounding.toy.mllm.evaluate` through the
    adapter; this one is cheap enough to run during training.
    """
    yes_id, no_id = tokenizer.convert_tokens_to_ids(["yes", "no"])
    records = []
    for start in range(0, len(questions), chunk):
        part = questions[start : start + chunk]
        convs = [[(q.text, "yes")] for _, _, q in part]
        batch = collate(tokenizer, [c for c, _, _ in part], [p for _, p, _ in part], convs, num_visual)
        positions = torch.zeros_like(batch.input_ids, dtype=torch.bool)
        for row, answers in enumerate(batch.answer_positions):
            positions[row, answers[0]] = True
        logits = batch_logits(model, batch, source, positions)
        said = (logits[:, yes_id] > logits[:, no_id]).tolist()
        records.extend((q, bool(s)) for (_, _, q), s in zip(part, said, strict=True))
    return vqa_summary(records)


def vqa_groups(records: Sequence[tuple[Question, bool]]) -> dict[str, list[bool]]:
    """Right or wrong per answer, grouped as :func:`vqa_summary` reports them."""
    groups: dict[str, list[bool]] = defaultdict(list)
    for q, said in records:
        right = said == q.answer
        groups["overall"].append(right)
        groups[f"kind/{q.kind}"].append(right)
        if q.answer:
            groups["positives"].append(right)
        elif q.hard:
            groups["hard_negatives"].append(right)
        if q.kind in ("attr3", "action", "full"):
            groups["hard_kinds"].append(right)  # colour+shape+size, action and caption questions
    return groups


def vqa_summary(records: Sequence[tuple[Question, bool]]) -> dict:
    """Accuracy overall, per kind, on hard negatives, on positives, and the majority baseline."""
    answers = [q.answer for q, _ in records]
    out = {name: round(float(np.mean(v)), 4) for name, v in sorted(vqa_groups(records).items())}
    out["count"] = len(records)
    out["majority_baseline"] = round(max(np.mean(answers), 1 - np.mean(answers)), 4) if answers else None
    return out


def phase_at(curriculum: Sequence[CurriculumPhase], fraction: float) -> CurriculumPhase:
    """The curriculum phase covering ``fraction`` of stage 3."""
    return next((p for p in curriculum if fraction < p.until), curriculum[-1])


def stage3_instruct(
    model: ToyModel,
    tokenizer: PreTrainedTokenizerFast,
    sampler: Sampler,
    source: VisualSource,
    held_out_source: VisualSource,
    questions: Sequence[tuple[int, np.ndarray, Question]],
    config: ToyPretrainConfig,
    log: Log,
    progress: bool = True,
    evals: int = 4,
) -> dict:
    """Multi-turn yes/no instruction tuning with the curriculum; held-out accuracy ``evals`` times."""
    rng = np.random.default_rng([config.seed, 3])
    schedule = config.stage3
    num_visual = config.model.num_visual(config.eval_frames)
    history: list[dict] = []

    cells = cell_head(model, config, "stage3")
    head = list(cells.parameters()) if cells is not None else []

    def loss_fn(step: int) -> torch.Tensor:
        phase = phase_at(config.curriculum, step / schedule.steps)
        frames = draw_frame_count(rng, config.train_frames)
        batch = sampler.qa_batch(
            schedule.batch, frames, phase, config.turns, config.caption_fraction, config.caption_tasks
        )
        return lm_loss(model, batch, source, cells, config.cell_weight)

    def on_step(step: int) -> None:
        every = max(1, schedule.steps // max(1, evals))
        if evals and (step + 1) % every == 0 and step + 1 < schedule.steps:
            model.eval()
            scores = quick_vqa(model, tokenizer, held_out_source, questions, num_visual)
            model.train()
            history.append({"step": step + 1, **scores})
            log({"stage": "stage 3", "step": step + 1, "held_out": scores})

    vision = tower_modules(model) if "stage3" in config.train_vision else []
    parts = [*projector_modules(model), model.model.language_model, model.lm_head, *vision]
    model.train()
    result = optimise(trainable_parameters(model, parts, newline_parameters(model), fixed_parameters(model, config)) + head, schedule, loss_fn,
                      "stage 3 instruct", log, progress, on_step, module_parameters(vision), config.vision_lr_scale)  # fmt: skip
    model.eval()
    scores = quick_vqa(model, tokenizer, held_out_source, questions, num_visual)
    history.append({"step": schedule.steps, **scores})
    log({"stage": "stage 3", "step": schedule.steps, "held_out": scores})
    return {**result.summary(), "held_out": scores, "held_out_history": history}


__all__ = [
    "phase_at",
    "quick_vqa",
    "stage3_instruct",
    "vqa_groups",
    "vqa_summary",
]
