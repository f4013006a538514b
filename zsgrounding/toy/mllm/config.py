"""Configs of the toy MLLM: the model sizes and the pretraining schedule.

Two model families share the recipe. ``llava_onevision``: frames squeezed to ``S x S``, a SigLIP
tower per frame, ``P = S // patch`` patches per side and ``(h, w) = (ceil(P / 2), ceil(P / 2))``
tokens per frame after the 2x pooling, plus one newline token per video. ``qwen2_vl``: frames kept
at ``frame_size (H, W)`` (the native toy frame, what the Qwen2-VL resize gives it), a tower whose
patches span two consecutive frames (temporal patch 2), ``(h, w) = (H / 2p, W / 2p)`` tokens per
frame pair after the 2 x 2 patch merger, and M-RoPE positions in the language model. ``F`` frames
per training clip, ``B`` batch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from transformers import (
    LlavaOnevisionConfig,
    PretrainedConfig,
    PreTrainedTokenizerBase,
    Qwen2Config,
    Qwen2VLConfig,
    SiglipVisionConfig,
)

from zsgrounding.toy.world import ToyWorldConfig

FAMILIES = ("llava_onevision", "qwen2_vl")
"""Model classes the toy MLLM can be built as (transformers ``model_type`` names)."""

QUESTION_KINDS = ("colour", "shape", "size", "attr2", "attr3", "action", "full")
"""Stage-3 question kinds: one attribute (``colour``, ``shape``, ``size``), colour + shape
(``attr2``), size + colour + shape (``attr3``), an action with at most one attribute (``action``),
and the full caption form, attributes plus action (``full``)."""


@dataclass(frozen=True)
class ToyMLLMConfig:
    """Sizes of the toy MLLM (:data:`FAMILIES`) and of the stage-1 text encoder.

    Attributes:
        family: ``llava_onevision`` (``LlavaOnevisionForConditionalGeneration``, SigLIP tower)
            or ``qwen2_vl`` (``Qwen2VLForConditionalGeneration``).
        image_size: ``S``, LLaVA-OneVision frames are squeezed to ``(S, S)``.
        frame_size: ``(H, W)`` of Qwen2-VL frames (multiples of ``2 * patch_size``).
        patch_size: the tower's patch side.
        vision_hidden, vision_layers, vision_heads, vision_intermediate: the vision tower.
        text_hidden, text_layers, text_heads, text_kv_heads, text_intermediate: the Qwen2 LM.
        max_positions: the LM's ``max_position_embeddings`` (20 frames of 36 tokens fit).
        clip_text_hidden, clip_text_layers, clip_embed_dim: the stage-1 text encoder (a small
            transformer, not saved) and the shared embedding size of the sigmoid loss.
    """

    family: str = "llava_onevision"
    image_size: int = 96
    frame_size: tuple[int, int] = (96, 128)
    patch_size: int = 8
    vision_hidden: int = 96
    vision_layers: int = 3
    vision_heads: int = 4
    vision_intermediate: int = 192
    text_hidden: int = 128
    text_layers: int = 4
    text_heads: int = 4
    text_kv_heads: int = 4
    text_intermediate: int = 384
    max_positions: int = 2048
    clip_text_hidden: int = 64
    clip_text_layers: int = 2
    clip_embed_dim: int = 64

    def __post_init__(self) -> None:
        object.__setattr__(self, "frame_size", tuple(int(v) for v in self.frame_size))
        if self.family not in FAMILIES:
            raise ValueError(f"family is one of {FAMILIES}, not {self.family!r}")
        if self.family == "qwen2_vl" and any(side % (2 * self.patch_size) for side in self.frame_size):
            raise ValueError(f"frame_size {self.frame_size} must be multiples of {2 * self.patch_size}")

    @property
    def temporal_patch(self) -> int:
        """Frames one visual token spans: 2 for Qwen2-VL, 1 for LLaVA-OneVision."""
        return 2 if self.family == "qwen2_vl" else 1

    @property
    def bank_size(self) -> tuple[int, int]:
        """``(H, W)`` frames are rendered at for training: what the family's preprocessing gives."""
        if self.family == "qwen2_vl":
            return self.frame_size
        return self.image_size, self.image_size

    @property
    def patches(self) -> int:
        """``P``, patches per side (LLaVA-OneVision's square frames)."""
        return self.image_size // self.patch_size

    @property
    def grid(self) -> tuple[int, int]:
        """``(h, w)`` visual tokens per frame (LLaVA-OneVision, after the 2x bilinear pooling) or per
        frame pair (Qwen2-VL, after the 2 x 2 merger)."""
        if self.family == "qwen2_vl":
            return self.frame_size[0] // (2 * self.patch_size), self.frame_size[1] // (2 * self.patch_size)
        side = math.ceil(self.patches / 2)
        return side, side

    def num_visual(self, frames: int) -> int:
        """Tokens the video placeholder expands to for ``frames`` frames: ``F * h * w + 1`` (one
        newline) for LLaVA-OneVision, ``ceil(F / 2) * h * w`` for Qwen2-VL."""
        h, w = self.grid
        if self.family == "qwen2_vl":
            return -(-frames // 2) * h * w
        return frames * h * w + 1

    def model_config(self, tokenizer: PreTrainedTokenizerBase) -> PretrainedConfig:
        """The transformers config of the family."""
        if self.family == "qwen2_vl":
            return self.qwen2_vl_config(tokenizer)
        return self.llava_config(tokenizer)

    def qwen2_vl_config(self, tokenizer: PreTrainedTokenizerBase) -> Qwen2VLConfig:
        """Qwen2-VL: a tower over ``2 x p x p`` frame-pair patches (2-D rotary positions), the 2 x 2
        patch merger as projector, a Qwen2 LM with M-RoPE (rotary frequencies split 1 : 1.5 : 1.5
        over time, row and column, as Qwen2-VL-7B splits them)."""
        ids = tokenizer.convert_tokens_to_ids
        head_dim = self.text_hidden // self.text_heads
        time_freqs = head_dim // 8
        space = (head_dim // 2 - time_freqs) // 2
        section = [head_dim // 2 - 2 * space, space, space]
        vision = {
            "depth": self.vision_layers,
            "embed_dim": self.vision_hidden,
            "hidden_size": self.text_hidden,
            "mlp_ratio": self.vision_intermediate // self.vision_hidden,
            "num_heads": self.vision_heads,
            "patch_size": self.patch_size,
            "temporal_patch_size": 2,
            "spatial_merge_size": 2,
        }
        text = {
            "hidden_size": self.text_hidden,
            "intermediate_size": self.text_intermediate,
            "num_hidden_layers": self.text_layers,
            "num_attention_heads": self.text_heads,
            "num_key_value_heads": self.text_kv_heads,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": self.max_positions,
            "bos_token_id": None,
            "eos_token_id": ids("<|im_end|>"),
            "pad_token_id": tokenizer.pad_token_id,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": section},
        }
        return Qwen2VLConfig(
            vision_config=vision,
            text_config=text,
            image_token_id=ids("<|image_pad|>"),
            video_token_id=ids("<|video_pad|>"),
            vision_start_token_id=ids("<|vision_start|>"),
            vision_end_token_id=ids("<|vision_end|>"),
            tie_word_embeddings=False,
        )

    def llava_config(self, tokenizer: PreTrainedTokenizerBase) -> LlavaOnevisionConfig:
        """The transformers config: SigLIP tower, LLaVA-OneVision projector and pooling, Qwen2 LM.

        The tower's last layer feeds the projector with every patch (``"full"``: SigLIP has no
        class token).
        """
        ids = tokenizer.convert_tokens_to_ids
        vision = SiglipVisionConfig(
            hidden_size=self.vision_hidden,
            intermediate_size=self.vision_intermediate,
            num_hidden_layers=self.vision_layers,
            num_attention_heads=self.vision_heads,
            image_size=self.image_size,
            patch_size=self.patch_size,
            vision_use_head=False,
        )
        text = Qwen2Config(
            hidden_size=self.text_hidden,
            intermediate_size=self.text_intermediate,
            num_hidden_layers=self.text_layers,
            num_attention_heads=self.text_heads,
            num_key_value_heads=self.text_kv_heads,
            vocab_size=len(tokenizer),
            max_position_embeddings=self.max_positions,
            bos_token_id=None,
            eos_token_id=ids("<|im_end|>"),
            pad_token_id=tokenizer.pad_token_id,
            tie_word_embeddings=False,
        )
        return LlavaOnevisionConfig(
            vision_config=vision,
            text_config=text,
            image_token_index=ids("<image>"),
            video_token_index=ids("<video>"),
            vision_feature_layer=-1,
            vision_feature_select_strategy="full",
            tie_word_embeddings=False,
        )


@dataclass(frozen=True)
class StageSchedule:
    """Optimisation of one stage: ``steps`` AdamW steps of ``batch`` examples.

    The learning rate warms up linearly over ``warmup`` steps, then follows a cosine down to
    ``lr * final_lr_ratio``.
    """

    steps: int
    batch: int
    lr: float
    warmup: int = 20
    weight_decay: float = 0.01
    final_lr_ratio: float = 0.1
    grad_clip: float = 1.0


@dataclass(frozen=True)
class CurriculumPhase:
    """A slice of stage 3: question kinds with sampling weights, and the clips it draws from.

    Attributes:
        until: the phase covers stage-3 steps up to this fraction of them (phases in order).
        weights: ``{kind: weight}`` over :data:`QUESTION_KINDS`.
        max_objects: only clips with at most this many objects.
        hard_negatives: probability that a negative is a hard one (shares an attribute or the
            action with an object of the clip) when one exists.
        reverse_actions: share of the hard action negatives that ask for the reverse of the
            object's own action ("does the growing circle shrink?"): a model that reads the
            video as an unordered bag of tokens cannot answer them.
    """

    until: float
    weights: dict[str, float]
    max_objects: int = 4
    hard_negatives: float = 0.8
    reverse_actions: float = 0.0


def default_curriculum() -> tuple[CurriculumPhase, ...]:
    """Single attributes on clips of at most 3 objects first, then every kind, weighted to the hard ones."""
    return (
        CurriculumPhase(0.15, {"colour": 2, "shape": 2, "size": 1, "attr2": 1}, max_objects=3),
        CurriculumPhase(
            1.0, {"colour": 1, "shape": 2, "size": 1, "attr2": 1, "attr3": 2, "action": 3, "full": 3}
        ),
    )


PLACELESS_RECIPE: dict[str, Any] = {
    "vision_positions": "learned",
    "stage1_places": 0.0,
    "stage1_negatives": 2,
    "caption_tasks": {"objects": 1.0, "colours": 1.0, "shapes": 1.0, "actions": 1.0},
    "train_vision": (),
    "cell_weight": 0.0,
    "stage3": StageSchedule(2000, 32, 1e-3, warmup=30),
}
"""The recipe before places were put into words, as overrides of :class:`ToyPretrainConfig`:
SigLIP's learned position table, no place words, two negative rounds, no ``places`` captions,
the tower frozen after stage 1, no cell loss, 2,000 stage-3 steps. The README's recipe variants
change it."""

QWEN2_VL_SETTINGS: dict[str, Any] = dict(PLACELESS_RECIPE)
"""Where the Qwen2-VL recipe differs from the default one besides the model: it keeps the
placeless recipe (its tower has rotary positions, and its frame-pair descriptions say what each
object does, not where it is), with which it was measured."""


@dataclass(frozen=True)
class ToyPretrainConfig:
    """The whole recipe: data, the three stages, curriculum and evaluation.

    Attributes:
        seed: seeds torch (model init, batches) and the question generators.
        model: the model sizes.
        world: the toy world the clips come from.
        train_start, train_clips: training videos are world indices
            ``[train_start, train_start + train_clips)``.
        eval_start, eval_clips: held-out videos, a disjoint index range (never trained on).
        bank_frames: frames pre-rendered per clip (uniformly sampled, resized to ``S``); training
            clips take ``F`` of them.
        train_frames: ``F`` values drawn per step.
        eval_frames: frames per held-out clip for the in-training accuracy.
        chroma_augment: fraction of clips whose chroma is subsampled as yuv420p video does.
        stage1: vision pretraining on single frames (batch = frames).
        stage1_negatives: hard-negative descriptions per frame in stage 1 (the first changes a
            shape, the others a random attribute).
        stage1_zoom: share of stage-1 views that are a half-size window around an object, scaled
            up to the whole input (random crops, as image-text pretraining uses): a small shape
            then covers four times the patches.
        stage1_places: share of stage-1 descriptions that say where each object is in the view
            ("a red circle at the top left"; a 3 x 3 grid), with the last negative round moving
            one object to a nearby place: the tower's patches must then keep where they are.
        stage2_projector: alignment with only the projector trained.
        stage2: alignment with projector and language model trained.
        stage3: instruction tuning.
        train_vision: the stages after stage 1 (``"stage2"``, ``"stage3"``) that also train the
            tower, at ``vision_lr_scale`` times their learning rate (stage 2 only in its second
            part, with the language model), as LLaVA-OneVision's stage 1.5 trains the whole model
            on captions. Once the tower stops training its features are cached. Default: stage 2
            (400 steps at 0.2 x 1e-3, about 4 min more than a frozen tower); with places in
            words and a 1,800-step stage 3 it took the held-out VQA from 89.1 % to 90.2 %.
        vision_lr_scale: learning-rate factor of the tower after stage 1.
        cell_weight: weight of an auxiliary loss in ``cell_stages``: a linear head (discarded
            after training) tells from each video token which cell of its frame's token grid it
            comes from, so the tokens carry their place in what they say. 0 turns it off.
        cell_stages: the stages after stage 1 (``"stage2"``, ``"stage3"``) with the cell loss.
        vision_positions: the tower's position table: ``"learned"`` (SigLIP's, trained with the
            tower) or ``"sincos"`` (a fixed 2-D sine-cosine table no stage trains, so the patches
            keep saying where they are; the saved model is the same class either way).
            Default: ``"sincos"``.
        caption_tasks: ``{task: weight}`` of the stage-2 caption tasks (``objects``: every object
            with its actions; ``colours`` / ``shapes`` / ``actions``: checklists over the world's
            colours, shapes and actions with what the clip has of each; ``places``: each object
            from its first sampled frame to its last, "big red circle at the left then in the
            middle").
        caption_turns: caption tasks per stage-2 conversation.
        turns: yes/no turns per stage-3 conversation (the first one right after the video).
        caption_fraction: share of stage-3 conversations that are caption conversations instead.
        curriculum: the stage-3 phases.
        eval_questions: held-out questions per trained kind for the in-training accuracy.
        stage3_evals: in-training held-out evaluations during stage 3 (besides the final one).
        threads: torch CPU threads.
    """

    seed: int = 0
    model: ToyMLLMConfig = field(default_factory=ToyMLLMConfig)
    world: ToyWorldConfig = field(default_factory=ToyWorldConfig)
    train_start: int = 100_000
    train_clips: int = 2000
    eval_start: int = 900_000
    eval_clips: int = 120
    bank_frames: int = 12
    train_frames: tuple[int, ...] = (2, 4, 4, 8)
    eval_frames: int = 8
    chroma_augment: float = 0.5
    stage1: StageSchedule = field(default_factory=lambda: StageSchedule(1600, 64, 2e-3, warmup=30))
    stage1_negatives: int = 3
    stage1_zoom: float = 0.5
    stage1_places: float = 0.5
    stage2_projector: StageSchedule = field(default_factory=lambda: StageSchedule(30, 32, 2e-3, warmup=5))
    stage2: StageSchedule = field(default_factory=lambda: StageSchedule(400, 32, 1e-3, warmup=20))
    stage3: StageSchedule = field(default_factory=lambda: StageSchedule(1800, 32, 1e-3, warmup=30))
    train_vision: tuple[str, ...] = ("stage2",)
    vision_positions: str = "sincos"
    vision_lr_scale: float = 0.2
    cell_weight: float = 0.0
    cell_stages: tuple[str, ...] = ("stage2",)
    caption_tasks: dict[str, float] = field(
        default_factory=lambda: {"objects": 1.0, "colours": 1.0, "shapes": 1.0, "actions": 1.0, "places": 1.0}
    )
    caption_turns: int = 2
    turns: int = 6
    caption_fraction: float = 0.3
    curriculum: tuple[CurriculumPhase, ...] = field(default_factory=default_curriculum)
    eval_questions: int = 40
    stage3_evals: int = 4
    threads: int = 2

    def __post_init__(self) -> None:
        problems = []
        if not self.curriculum or self.curriculum[-1].until < 1.0:
            problems.append("the last curriculum phase must reach until=1.0")
        for phase in self.curriculum:
            if unknown := sorted(set(phase.weights) - set(QUESTION_KINDS)):
                problems.append(f"unknown question kinds {unknown}")
        if unknown := sorted(set(self.train_vision) - {"stage2", "stage3"}):
            problems.append(f"train_vision takes stage2 and stage3, not {unknown}")
        if unknown := sorted(set(self.cell_stages) - {"stage2", "stage3"}):
            problems.append(f"cell_stages takes stage2 and stage3, not {unknown}")
        if self.cell_weight < 0:
            problems.append(f"cell_weight must be >= 0, not {self.cell_weight}")
        if not 0.0 <= self.stage1_places <= 1.0:
            problems.append(f"stage1_places is a share in [0, 1], not {self.stage1_places}")
        if self.vision_positions not in ("learned", "sincos"):
            problems.append(f"vision_positions is 'learned' or 'sincos', not {self.vision_positions!r}")
        if self.model.family == "qwen2_vl":
            if self.stage1_places:
                problems.append("stage1_places describes single frames: the Qwen2-VL recipe takes 0")
            if self.vision_positions != "learned":
                problems.append("the Qwen2-VL tower has rotary positions: vision_positions must be 'learned'")
            if any(f % 2 for f in (*self.train_frames, self.eval_frames)):
                problems.append(
                    "a Qwen2-VL tower takes frame pairs: train_frames and eval_frames must be even"
                )
        if max(self.train_frames) > self.bank_frames or self.eval_frames > self.bank_frames:
            problems.append("train_frames and eval_frames must not exceed bank_frames")
        train = range(self.train_start, self.train_start + self.train_clips)
        held_out = range(self.eval_start, self.eval_start + self.eval_clips)
        if train.start < held_out.stop and held_out.start < train.stop:
            problems.append("the training and held-out index ranges overlap")
        if problems:
            raise ValueError("invalid ToyPretrainConfig: " + "; ".join(problems))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["world"] = self.world.to_json()
        data["train_frames"] = list(self.train_frames)
        data["train_vision"] = list(self.train_vision)
        data["cell_stages"] = list(self.cell_stages)
        return data

    @property
    def says_places(self) -> bool:
        """Whether the recipe's texts say where things are (its tokenizer needs the place words)."""
        return self.stage1_places > 0 or "places" in self.caption_tasks

    @classmethod
    def quick(cls, family: str = "llava_onevision", **overrides: Any) -> ToyPretrainConfig:
        """A schedule of under a minute (tests, smoke runs): a tiny model on one 48 px frame per clip
        (3 x 3 tokens; Qwen2-VL: one pair of 48 x 64 frames, 3 x 4 tokens), colour checklists and
        "is there a <colour> thing" questions only."""
        tiny = ToyMLLMConfig(
            family=family,
            frame_size=(48, 64),
            image_size=48,
            vision_hidden=32,
            vision_layers=1,
            vision_heads=2,
            vision_intermediate=64,
            text_hidden=96,
            text_layers=2,
            text_heads=2,
            text_kv_heads=2,
            text_intermediate=192,
            clip_text_hidden=32,
            clip_text_layers=1,
            clip_embed_dim=32,
        )
        settings: dict[str, Any] = {
            "model": tiny,
            "train_clips": 300,
            "eval_clips": 40,
            "bank_frames": 2,
            "train_frames": (1,),
            "eval_frames": 1,
            "stage1": StageSchedule(100, 64, 3e-3, warmup=5),
            "stage1_negatives": 1,
            "stage2_projector": StageSchedule(5, 32, 3e-3, warmup=1),
            "stage2": StageSchedule(60, 32, 3e-3, warmup=5),
            "stage3": StageSchedule(250, 32, 2e-3, warmup=10),
            "caption_tasks": {"colours": 1.0},
            "caption_turns": 1,
            "caption_fraction": 0.5,
            "curriculum": (CurriculumPhase(1.0, {"colour": 1.0}),),
            "eval_questions": 40,
            "stage3_evals": 0,
            "threads": 1,
        }
        if family == "qwen2_vl":
            settings = {**QWEN2_VL_SETTINGS, **settings}  # the short schedule's own entries win
            settings.update(bank_frames=4, train_frames=(2,), eval_frames=2)
        settings.update(overrides)
        return cls(**settings)

    @classmethod
    def qwen2_vl(cls, **overrides: Any) -> ToyPretrainConfig:
        """The recipe with a Qwen2-VL model: frame pairs from a 16-frame bank (8 frames are 4 pairs
        with one bank frame between their two frames) at the native toy frame size."""
        settings: dict[str, Any] = {
            "model": ToyMLLMConfig(family="qwen2_vl"),
            "bank_frames": 16,
            **QWEN2_VL_SETTINGS,
        }
        settings.update(overrides)
        return cls(**settings)


__all__ = [
    "FAMILIES",
    "PLACELESS_RECIPE",
    "QUESTION_KINDS",
    "CurriculumPhase",
    "StageSchedule",
    "ToyMLLMConfig",
    "ToyPretrainConfig",
    "default_curriculum",
]
