"""Configuration of SpaceVLLM: query tokens, decoder, space head, losses, prompts, sampling.

The paper (*SpaceVLLM*, arXiv 2503.13983) leaves many details open. Every such decision is a field here, with
the default this implementation picked and why; the Table 7 ablations are flags:

=============================  ===================================================
Table 7 row                    config
=============================  ===================================================
w/o interleaved design         ``interleave=False`` (all queries after the video)
w/o dual cross attention       ``dual_cross_attention=False`` (head reads queries)
SpaceVLLM                      defaults
=============================  ===================================================

(The "w/o queries and decoder" row, boxes written as text, is a different model and not built.)
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

CONFIG_NAME = "spacevllm_config.json"

QueryTokenMode = Literal["per_frame", "shared"]


@dataclass
class SpaceVLLMConfig:
    """Everything SpaceVLLM adds to a base video MLLM.

    Attributes:
        base_model: path or hub id of the base ``LlavaOnevisionForConditionalGeneration``
            checkpoint (informational once fine-tuned: the saved checkpoint holds the base).
        num_frames: ``N``, frames sampled per video for training, and the number of
            spatio-temporal aware query tokens (paper: 64).
        num_frames_infer: frames sampled at inference; ``None``: ``num_frames``. With
            ``query_tokens="per_frame"`` it must not exceed ``num_frames`` (frame ``t`` uses
            query ``t``).
        query_tokens: ``"per_frame"``: ``N`` distinct learnable tokens ``<stq_0> ..
            <stq_{N-1}>``, frame ``t`` followed by token ``t`` (the paper's ``N`` learnable
            queries); ``"shared"``: one token after every frame, told apart only by its position
            in the sequence (RoPE). Default ``per_frame``, as the paper describes distinct tokens.
        query_token_template: string of per-frame query ``i`` (``{i}`` is replaced).
        shared_query_token: the one token of ``query_tokens="shared"``.
        image_query_token: the spatial-aware query that follows an image (REC), distinct from
            the video queries as in the paper (its ``(N+1)``-th token).
        interleave: ``True``: ``[frame 0, q0, frame 1, q1, ..., newline]``; ``False`` (Table 7
            ablation): ``[frame 0, ..., frame N-1, newline, q0, ..., q{N-1}]``, the base model's
            own video block untouched and the queries appended after it.
        caption_first: put the instruction (with the caption) before the video in the user turn.
            The paper feeds the video with its queries first and the instruction after; under
            causal attention the queries then cannot see which object is asked, and only the
            decoder's parameter-free text enhancement tells them. ``True`` lets every query read
            the caption inside the LLM. Our option; off by default (the paper's order).
        dual_cross_attention: run the parameter-free dual cross attention before the head;
            ``False`` (Table 7 ablation): the head reads each query's hidden state directly.
        attention_residual: add each attention's input to its output (``v + attn(v, c, c)``,
            ``q + attn(q, v', v')``). The paper gives no formula in the text we have; without
            the residual the text-enhanced visual tokens would be pure mixtures of caption
            states and the frame's own content would vanish, so it is on by default.
        attention_scale: softmax temperature of both attentions; ``None``: ``1 / sqrt(D)``.
        position_cue: also give the head where each query looked: the centroid and spread
            ``(cx, cy, sx, sy)`` of its attention over the frame's ``h x w`` grid (cell centres
            in ``[0, 1]``), appended to what it reads. Our addition, not the paper's: a 7B model's
            last-layer visual states carry their position, a small one's may not, and then the
            head can only learn the mean box. Still no parameter in the attention. Needs
            ``dual_cross_attention``. Off by default (the paper's decoder).
        position_codes: add fixed 2-D sinusoidal codes of each visual token's grid cell to the
            keys and values of the query's attention (step 2 of the dual cross attention), so
            what the query reads says where it looked. Our addition, not the paper's (the same
            reason as ``position_cue``, as codes inside the attention rather than numbers beside
            it); no parameter. Needs ``dual_cross_attention``. Off by default.
        head_layers: linear layers of the MLP space head (DETR's box head: 3).
        head_hidden: hidden width of the head; ``None``: the LLM hidden size ``D``.
        time_loss_weight, space_loss_weight: ``lambda_time``, ``lambda_space`` of the total
            loss (paper: weights not given; 1 and 1).
        l1_weight, giou_weight: weights inside the space loss (paper: not given; DETR's 5, 2).
        time_decimals: decimals of the seconds in the time instruction and the answers (the
            paper's example writes ``0.28s``: 2).
        time_instruction: ``"llava-video"``: LLaVA-Video's own time instruction, verbatim (the
            sentence the base was trained with, which the paper quotes), then the question;
            ``"toolkit-v1"``: this toolkit's earlier paraphrase. A checkpoint config saved before
            this field existed loads as ``"toolkit-v1"``, the instruction it was trained with.
        max_new_tokens: budget of the greedy answer at inference.
        stop_token: token that ends an answer (trained as its last label); ``None``: the
            tokenizer's EOS (``<|im_end|>`` for Qwen2-based checkpoints).
        freeze_vision_tower: a hint for training scripts (the model does not enforce it): the
            paper does not say; LLaVA-Video's fine-tuning keeps the SigLIP tower frozen.
    """

    base_model: str = ""
    num_frames: int = 64
    num_frames_infer: int | None = None
    query_tokens: QueryTokenMode = "per_frame"
    query_token_template: str = "<stq_{i}>"
    shared_query_token: str = "<stq>"
    image_query_token: str = "<srq>"
    interleave: bool = True
    caption_first: bool = False
    dual_cross_attention: bool = True
    attention_residual: bool = True
    attention_scale: float | None = None
    position_cue: bool = False
    position_codes: bool = False
    head_layers: int = 3
    head_hidden: int | None = None
    time_loss_weight: float = 1.0
    space_loss_weight: float = 1.0
    l1_weight: float = 5.0
    giou_weight: float = 2.0
    time_decimals: int = 2
    time_instruction: Literal["llava-video", "toolkit-v1"] = "llava-video"
    max_new_tokens: int = 32
    stop_token: str | None = None
    freeze_vision_tower: bool = True

    def __post_init__(self) -> None:
        problems = []
        if self.num_frames < 1:
            problems.append(f"num_frames must be positive, got {self.num_frames}")
        if self.num_frames_infer is not None:
            if self.num_frames_infer < 1:
                problems.append(f"num_frames_infer must be positive, got {self.num_frames_infer}")
            elif self.query_tokens == "per_frame" and self.num_frames_infer > self.num_frames:
                problems.append(
                    f"num_frames_infer {self.num_frames_infer} exceeds the {self.num_frames} per-frame "
                    "query tokens"
                )
        if self.query_tokens not in ("per_frame", "shared"):
            problems.append(f"query_tokens must be 'per_frame' or 'shared', got {self.query_tokens!r}")
        if "{i}" not in self.query_token_template:
            problems.append(f"query_token_template {self.query_token_template!r} lacks '{{i}}'")
        if self.position_cue and not self.dual_cross_attention:
            problems.append("position_cue needs dual_cross_attention (it reads the query's attention)")
        if self.position_codes and not self.dual_cross_attention:
            problems.append("position_codes needs dual_cross_attention (they enter its attention)")
        if self.head_layers < 1:
            problems.append(f"head_layers must be at least 1, got {self.head_layers}")
        if self.head_hidden is not None and self.head_hidden < 1:
            problems.append(f"head_hidden must be positive, got {self.head_hidden}")
        if self.time_decimals < 0:
            problems.append(f"time_decimals must be >= 0, got {self.time_decimals}")
        if self.time_instruction not in ("llava-video", "toolkit-v1"):
            problems.append(
                f"time_instruction must be 'llava-video' or 'toolkit-v1', got {self.time_instruction!r}"
            )
        weights = ("time_loss_weight", "space_loss_weight", "l1_weight", "giou_weight")
        problems += [f"{name} must be >= 0" for name in weights if getattr(self, name) < 0]
        if problems:
            raise ValueError("invalid SpaceVLLMConfig: " + "; ".join(problems))

    @property
    def frames_at_inference(self) -> int:
        """Frames sampled by the grounder."""
        return self.num_frames_infer if self.num_frames_infer is not None else self.num_frames

    def query_token_strings(self) -> list[str]:
        """The video query tokens to add to the tokenizer, in frame order (one when shared)."""
        if self.query_tokens == "shared":
            return [self.shared_query_token]
        return [self.query_token_template.format(i=i) for i in range(self.num_frames)]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpaceVLLMConfig:
        """Build from :meth:`to_dict` output; unknown keys are an error (a typo must not pass)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown SpaceVLLMConfig keys: {unknown}")
        return cls(**data)

    def save(self, directory: str | Path) -> Path:
        """Write ``directory/spacevllm_config.json``; return its path."""
        path = Path(directory) / CONFIG_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> SpaceVLLMConfig:
        """Read ``directory/spacevllm_config.json`` (or that file itself)."""
        path = Path(directory)
        path = path / CONFIG_NAME if path.is_dir() else path
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            # saved before the field existed: trained with the earlier paraphrase
            data.setdefault("time_instruction", "toolkit-v1")
        return cls.from_dict(data)
