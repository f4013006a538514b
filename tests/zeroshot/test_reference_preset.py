"""The whole ``reference-hcstvg-v2`` path on tiny random models of the three families, against an
independent step-by-step computation written here from the released code's definitions.

The independent side runs the same weights loaded with eager attention and takes every step by
hand: the prompt tokenized as the released code does, the visual tokens (pooled after the
projector, the newline kept), the scores ``logit(yes) - logit(no)`` with the bare pieces, the LRA
latent ``-8 g0 - 2 g1`` (gradients at ``0`` and ``-4 g0``), the query token's attention rows
averaged over heads and layers, divided by the generic prompt's (``+1e-4``), TAS's reversed input
with its own latent, the track by the bilinearly resized masks, and the span grown on the
native-resolution scores. The grounder must agree on the grid, the maps, the latent, the track
and the span. Only frame preprocessing (resizing and normalising pixels, tested elsewhere) and,
for Qwen2-VL, the visual embeddings and M-RoPE positions are taken from the adapter.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny_models import WORDS, make_clip, save_tiny_llava, save_tiny_qwen_vl, tiny_llava_next_video_config
from tokenizers import Regex, Tokenizer, models, pre_tokenizers
from transformers import AutoModelForImageTextToText, AutoTokenizer, PreTrainedTokenizerFast

from zsgrounding.mllm.base import PreparedInputs, reverse_frames
from zsgrounding.mllm.options import QWEN_1_5_TEMPLATE, VICUNA_V1_TEMPLATE
from zsgrounding.types import Clip, Track
from zsgrounding.zeroshot.decompose import Decomposer, Decomposition
from zsgrounding.zeroshot.lra import tune_latent
from zsgrounding.zeroshot.pipeline import ZeroShotConfig, ZeroShotGrounder

QUERY = "The red circle moving left."
ATTRIBUTE, ACTION = "the red circle", "the red circle moving left"
GENERIC = "please describe this video"
KEY = "clip.mp4"
T = 6
SPAN = 3  # frames the span may hold: shorter than the clip, so the growth decides both ends


def _vicuna_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level, with LLaMA's five pieces of "ASSISTANT:" (the released query token is the first)."""
    vocab = [*WORDS, "A", "SS", "IST", "ANT", ":", "USER"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"[^\S\n]+"), behavior="removed"),
            pre_tokenizers.Split(Regex(r"\n"), behavior="isolated"),
            pre_tokenizers.Punctuation(behavior="isolated"),
            pre_tokenizers.Split(Regex(r"SS|IST|ANT"), behavior="isolated"),
        ]
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[UNK]")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>", "<video>"]})
    return tokenizer


def _save_llava_next_video(directory: Path) -> Path:
    from transformers import LlavaNextVideoForConditionalGeneration

    tokenizer = _vicuna_tokenizer()
    torch.manual_seed(0)
    model = LlavaNextVideoForConditionalGeneration(tiny_llava_next_video_config(tokenizer)).eval()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


FAMILIES = {
    "llava_next_video": _save_llava_next_video,
    "llava_onevision": save_tiny_llava,
    "qwen2_vl": lambda d: save_tiny_qwen_vl(d, "qwen2_vl"),
}


# ------------------------------------------------------------------------- the independent side


class Reference:
    """The released code's steps, by hand, on an eager-attention copy of the model."""

    def __init__(self, directory: Path, family: str, adapter) -> None:
        self.family = family
        self.model = AutoModelForImageTextToText.from_pretrained(
            directory, attn_implementation="eager"
        ).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(directory)
        self.adapter = adapter  # only for pixels (and Qwen2-VL's embeddings)
        self.yes, self.no = self.tokenizer.convert_tokens_to_ids(["yes", "no"])
        self.token = -5 if family == "llava_next_video" else -3

    # --- inputs

    def prompt_ids(self, question: str, num_visual: int) -> list[int]:
        template = {"llava_next_video": VICUNA_V1_TEMPLATE, "llava_onevision": QWEN_1_5_TEMPLATE}[self.family]
        text = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": f"<video>\n{question}"}],
            chat_template=template,
            tokenize=False,
            add_generation_prompt=True,
        )
        head, tail = text.split("<video>")
        video = self.tokenizer.convert_tokens_to_ids("<video>")
        encode = self.tokenizer
        return (
            encode(head, add_special_tokens=False)["input_ids"]
            + [video] * num_visual
            + encode(tail, add_special_tokens=False)["input_ids"]
        )

    def visual_tokens(self, clip: Clip) -> torch.Tensor:
        """Projected patch tokens pooled to the grid (LLaVA-NeXT-Video: average, stride 4;
        LLaVA-OneVision: bilinear to ceil(p / 5), then the newline)."""
        pixels = self.adapter.preprocess(clip.frames)
        config = self.model.config
        with torch.no_grad():
            hidden = self.model.model.vision_tower(pixels, output_hidden_states=True).hidden_states
            patches = hidden[config.vision_feature_layer]
            if config.vision_feature_select_strategy == "default":  # CLIP's class token
                patches = patches[:, 1:]
            projected = self.model.model.multi_modal_projector(patches)
            t, n, d = projected.shape
            side = round(n**0.5)
            grid = projected.reshape(t, side, side, d).permute(0, 3, 1, 2)
            if self.family == "llava_next_video":
                pooled = F.avg_pool2d(grid, 4)
                return pooled.permute(0, 2, 3, 1).reshape(-1, d)
            pooled = F.interpolate(grid, size=(-(-side // 5),) * 2, mode="bilinear", align_corners=False)
            return torch.cat(
                [pooled.permute(0, 2, 3, 1).reshape(-1, d), self.model.model.image_newline[None]]
            )

    def inputs(self, clip: Clip, question: str) -> dict:
        """``{"embeds", "kwargs", "grid" (T, h, w) positions, "latent_at"}`` of one question."""
        prepared = self.adapter.prepare(clip, question)
        if self.family == "qwen2_vl":
            return {
                "embeds": prepared.inputs_embeds[0],
                "kwargs": dict(prepared.model_kwargs),
                "grid": prepared.visual_grid,
                "latent_at": prepared.visual_positions,
            }
        tokens = self.visual_tokens(clip)
        ids = self.prompt_ids(question, tokens.shape[0])
        assert prepared.input_ids[0].tolist() == ids  # the prompt as the released code builds it
        video = self.tokenizer.convert_tokens_to_ids("<video>")
        start = ids.index(video)
        h = w = 6 if self.family == "llava_next_video" else 2
        grid = torch.arange(start, start + T * h * w).reshape(T, h, w)
        with torch.no_grad():
            embeds = self.model.get_input_embeddings()(torch.tensor(ids))
            embeds[start : start + tokens.shape[0]] = tokens
        latent_at = torch.arange(start, start + tokens.shape[0])  # the whole visual slice, newline too
        return {"embeds": embeds, "kwargs": {}, "grid": grid, "latent_at": latent_at}

    @staticmethod
    def reversed(inputs: dict) -> dict:
        embeds = inputs["embeds"].clone()
        grid = inputs["grid"]
        embeds[grid.reshape(-1)] = inputs["embeds"][grid.flip(0).reshape(-1)]
        return {**inputs, "embeds": embeds}

    # --- the model

    def forward(self, inputs: dict, latent: torch.Tensor, attentions: bool = False):
        embeds = inputs["embeds"].index_add(0, inputs["latent_at"], latent)
        return self.model(
            inputs_embeds=embeds[None], output_attentions=attentions, use_cache=False, **inputs["kwargs"]
        )

    def score(self, inputs: dict, latent: torch.Tensor) -> torch.Tensor:
        logits = self.forward(inputs, latent).logits[0, -1]
        return logits[self.yes] - logits[self.no]

    def grad(self, sub: dict, generic: dict, at: torch.Tensor) -> torch.Tensor:
        variable = at.clone().requires_grad_(True)
        loss = 1.0 - (self.score(sub, variable) - self.score(generic, variable))
        (g,) = torch.autograd.grad(loss, variable)
        return g

    def latent(self, sub: dict, generic: dict) -> torch.Tensor:
        zero = torch.zeros(sub["latent_at"].numel(), sub["embeds"].shape[-1])
        g0 = self.grad(sub, generic, zero)
        g1 = self.grad(sub, generic, -4.0 * g0)
        return -8.0 * g0 - 2.0 * g1

    def attention_map(self, inputs: dict, latent: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            attentions = self.forward(inputs, latent, attentions=True).attentions
        n = inputs["embeds"].shape[0]
        rows = torch.stack([a[0, :, n + self.token] for a in attentions])  # (layers, heads, N)
        return rows.mean(dim=(0, 1))[inputs["grid"].reshape(-1)].reshape(inputs["grid"].shape)

    def relative_map(self, sub: dict, generic: dict, latent: torch.Tensor) -> torch.Tensor:
        return self.attention_map(sub, latent) / (self.attention_map(generic, latent) + 1e-4)


def _rasterise(box: np.ndarray, height: int, width: int) -> torch.Tensor:
    ys, xs = np.arange(height)[:, None] + 0.5, np.arange(width)[None, :] + 0.5
    inside = (xs >= box[0]) & (xs < box[2]) & (ys >= box[1]) & (ys < box[3])
    return torch.from_numpy(inside.astype(np.float32))


def _tracks(clip: Clip) -> list[Track]:
    rng = np.random.default_rng(3)
    tracks = []
    for _ in range(3):
        x1, y1 = rng.uniform(0, 0.6 * clip.width), rng.uniform(0, 0.6 * clip.height)
        box = [x1, y1, x1 + 0.35 * clip.width, y1 + 0.35 * clip.height]
        drift = rng.uniform(-2, 2, size=(T, 1))
        tracks.append(Track(frame_ids=clip.frame_ids, boxes=np.asarray(box) + drift))
    return tracks


def _expected_track_and_span(
    spatial: torch.Tensor, temporal: torch.Tensor, tracks: list[Track], clip: Clip
) -> tuple[int, torch.Tensor, tuple[int, int]]:
    h, w = spatial.shape[1:]
    masks = torch.stack(
        [torch.stack([_rasterise(b, clip.height, clip.width) for b in track.boxes]) for track in tracks]
    )  # (P, T, H, W)
    on_grid = F.interpolate(masks, size=(h, w), mode="bilinear", align_corners=False)
    best = int(torch.argmax((spatial[None] * on_grid).reshape(len(tracks), -1).max(dim=-1).values))
    up = F.interpolate(temporal[None], size=(clip.height, clip.width), mode="bilinear", align_corners=False)[
        0
    ]
    per_frame = (up * masks[best]).reshape(T, -1).max(dim=-1).values
    centre = int(torch.max(per_frame, dim=0).indices)
    norm = per_frame / (per_frame.max() + 1e-4)
    chosen = np.zeros(T)
    chosen[centre] = 1
    left = right = 1
    for _ in range(T - 1):
        left_score = norm[centre - left] if centre - left >= 0 else -100
        right_score = norm[centre + right] if centre + right < T else -100
        if chosen.sum() > SPAN - 1:
            break
        if left_score > right_score:
            chosen[centre - left] = 1
            left += 1
        elif left_score < right_score:
            chosen[centre + right] = 1
            right += 1
        else:
            break
    first, last = int(np.argmax(chosen)), T - 1 - int(np.argmax(chosen[::-1]))
    return best, per_frame, (int(clip.frame_ids[first]), int(clip.frame_ids[last]))


# ------------------------------------------------------------------------- the test


@pytest.mark.parametrize("family", list(FAMILIES))
def test_reference_path_matches_the_step_by_step_computation(family: str, tmp_path: Path) -> None:
    directory = FAMILIES[family](tmp_path / family)
    config = ZeroShotConfig.preset("reference-hcstvg-v2", model=str(directory))
    config = replace(config, scorer=replace(config.scorer, span_frames=SPAN))
    reference_parts = {KEY: Decomposition("", ATTRIBUTE, ACTION, "reference")}
    grounder = ZeroShotGrounder(config, decomposer=Decomposer(reference=reference_parts))
    qwen = family == "qwen2_vl"
    clip = make_clip(num_frames=T, height=60, width=100, seed=5) if qwen else make_clip(num_frames=T, seed=5)
    tracks = _tracks(clip)
    result = grounder.ground(clip, QUERY, tracks=tracks, key=KEY)
    adapter = grounder.adapter
    ref = Reference(directory, family, adapter)

    # Questions: sub-queries keep their case, the whole query is lowered; periods stripped.
    spatial_q = f"Is there {ATTRIBUTE} in this video?"
    temporal_q = f"Is there {ACTION} in this video?"
    query_q = "Is there the red circle moving left in this video?"
    assert result.extras["questions"]["spatial"] == spatial_q
    assert result.extras["questions"]["temporal"] == temporal_q
    # The query token, counted from the end of the prompt: "A" of "A SS IST ANT :", or <|im_start|>.
    expected_token = "0:A" if family == "llava_next_video" else "2:<|im_start|>"
    assert result.extras["grounding_token"]["spatial"] == expected_token

    sub, generic = ref.inputs(clip, spatial_q), ref.inputs(clip, GENERIC)
    expected_grid = {"llava_next_video": (T, 6, 6), "llava_onevision": (T, 2, 2), "qwen2_vl": (T, 3, 3)}
    assert tuple(sub["grid"].shape) == expected_grid[family]

    # The latent after two steps (forward direction), against the grounder's own tuning.
    prepared: PreparedInputs = adapter.prepare(clip, spatial_q)
    prepared_generic = adapter.prepare(clip, GENERIC)
    latent = ref.latent(sub, generic)
    tuned = tune_latent(adapter, prepared, prepared_generic, config.lra)
    assert tuned.latent.shape[1] == latent.shape[0]  # LLaVA-OneVision: the newline row too
    torch.testing.assert_close(tuned.latent[0], latent, rtol=1e-3, atol=1e-5)

    # Spatial maps: relative, and for the LLaVA families TAS with the reversed input's own latent.
    spatial = ref.relative_map(sub, generic, latent)
    if not qwen:
        sub_rev, generic_rev = ref.reversed(sub), ref.reversed(generic)
        reversed_latent = ref.latent(sub_rev, generic_rev)
        spatial = spatial + ref.relative_map(sub_rev, generic_rev, reversed_latent).flip(0)
        tuned_rev = tune_latent(
            adapter, reverse_frames(prepared), reverse_frames(prepared_generic), config.lra
        )
        torch.testing.assert_close(tuned_rev.latent[0], reversed_latent, rtol=1e-3, atol=1e-5)
    ours_spatial = torch.from_numpy(np.asarray(result.evidence, dtype=np.float32))
    torch.testing.assert_close(ours_spatial, spatial, rtol=1e-3, atol=1e-4)

    # Temporal maps: latent tuned on the action question; the LLaVA families read the maps with it,
    # the released Qwen2-VL code with the whole query.
    action, action_generic = ref.inputs(clip, temporal_q), generic
    action_latent = ref.latent(action, action_generic)
    read_with = ref.inputs(clip, query_q) if qwen else action
    temporal = ref.relative_map(read_with, action_generic, action_latent)

    best, per_frame, span = _expected_track_and_span(spatial, temporal, tracks, clip)
    assert result.chosen_track == best
    # The chosen track's native-resolution frame scores on the temporal maps.
    torch.testing.assert_close(torch.from_numpy(result.frame_scores).float(), per_frame, rtol=1e-3, atol=1e-4)
    assert (result.tube.start, result.tube.end) == span
    # The grounder recorded the settings it ran with.
    assert json.loads(json.dumps(grounder.config.to_json()))["preset_name"] == "reference-hcstvg-v2"
