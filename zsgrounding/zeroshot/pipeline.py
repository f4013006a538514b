"""The training-free grounder: one config, one ``ground`` call.

The method of *Unleashing the Potential of Multimodal LLMs for Zero-Shot Spatio-Temporal Video
Grounding* (Yang et al.). ``ZeroShotConfig.preset(name)`` gives the settings of its released
code per dataset, or of the paper's text (:mod:`zsgrounding.zeroshot.presets`); the plain
``ZeroShotConfig()`` keeps this toolkit's earlier defaults.

``ZeroShotGrounder(config).ground(video, query)`` runs, in order:

1. sample ``num_frames`` frames uniformly (:mod:`zsgrounding.video`);
2. decompose the query into an attribute and an action sub-query (:mod:`zsgrounding.zeroshot.decompose`);
3. get object tracks: given by the caller, from the track store, or extracted with Grounding
   DINO + SAM2 / the IoU tracker (:mod:`zsgrounding.proposals`);
4. spatial maps: the special tokens' attention for "Is there {attribute} in this video?", with
   the LRA latent tuned on it (spatial prompt) and TAS assembling both frame orders;
5. temporal maps: the same for the action sub-query (temporal prompt), without TAS;
6. grounding-token identification on each (:mod:`zsgrounding.zeroshot.gti`);
7. the shared tube scorer: the track with the highest spatial score, its span from the temporal
   map (:class:`zsgrounding.tubes.TubeScorer`).

Each component has a flag, so the rows of the paper's Table 2 are configs:

=============================  ======  ===============  ================  =====
row                            gti     spatial_prompt   temporal_prompt   tas
=============================  ======  ===============  ================  =====
mean of special tokens         mean    off              off               off
+ GTI                          max     off              off               off
+ spatial prompt               max     on               off               off
+ temporal prompt              max     off              on                off
+ both                         max     on               on                off
+ TAS (full method)            max     on               on                on
=============================  ======  ===============  ================  =====

With a prompt off, that branch asks the full query and tunes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from transformers import AutoConfig

from zsgrounding.assets import resolve_model
from zsgrounding.errors import STVGError
from zsgrounding.mllm import MLLMAdapter, PreparedInputs, load_adapter
from zsgrounding.mllm.options import AdapterOptions
from zsgrounding.mllm.registry import entry_for_checkpoint, entry_for_family
from zsgrounding.timing import forward_clock
from zsgrounding.tubes import TubeScorer, TubeScorerConfig
from zsgrounding.types import Clip, GroundingResult, Sample, Track
from zsgrounding.video import SAMPLINGS, sample_uniform
from zsgrounding.zeroshot.decompose import (
    QUESTION_TEMPLATE,
    Decomposer,
    Decomposition,
    noun_phrase,
    reference_tidy,
    tidy,
)
from zsgrounding.zeroshot.gti import GTIMethod, select_grounding_token
from zsgrounding.zeroshot.lra import LRAConfig, lra_maps, tune_latent
from zsgrounding.zeroshot.presets import make_preset
from zsgrounding.zeroshot.tas import tas_maps

__all__ = ["ZeroShotConfig", "ZeroShotGrounder", "interrogative"]

QuestionStyle = Literal["tidy", "reference"]


def interrogative(
    sub_query: str,
    template: str = QUESTION_TEMPLATE,
    style: QuestionStyle = "tidy",
    whole_query: bool = False,
) -> str:
    """The yes/no question of a (sub-)query: ``"Is there the red circle in this video?"``.

    ``style="tidy"``: :func:`zsgrounding.zeroshot.decompose.tidy` (a leading capitalised article lowered,
    trailing punctuation dropped). ``style="reference"``: as the released code builds it: the
    whole query lower-cased (its data loader lowers sentences; sub-queries keep their case), then
    leading and trailing periods and whitespace stripped.
    """
    if style == "reference":
        return template.format(reference_tidy(sub_query.lower() if whole_query else sub_query))
    return template.format(tidy(sub_query))


@dataclass
class ZeroShotConfig:
    """Settings of the training-free grounder.

    ``ZeroShotConfig.preset(name)`` fills every field for a named preset (the released code per
    dataset, or the paper); the plain defaults are this toolkit's earlier choices.

    Attributes:
        model: checkpoint directory or hub id of the MLLM (any family of :mod:`zsgrounding.mllm`).
        family: force an adapter family instead of reading the checkpoint's ``model_type``.
        preset_name: the preset the settings came from (``None``: set by hand).
        num_frames: frames sampled uniformly from the video (the released code: 20).
        sampling: ``"centres"`` (the centres of equal segments) or ``"linspace"`` (``int`` of
            ``np.linspace(0, n - 1, num_frames)``, both ends included: the released code).
        gti: grounding-token identification: ``"max_activation"`` (the paper's GTI),
            ``"mean"`` of all special tokens (Table 2's first row) or ``"fixed"``.
        fixed_index: the special token used with ``gti="fixed"`` (negative: from the end).
        spatial_prompt: ask the attribute sub-query and tune an LRA latent on it.
        temporal_prompt: ask the action sub-query and tune an LRA latent on it.
        tas: assemble the spatial maps of the original and the frame-reversed input.
        layers: decoder-layer window ``[lo, hi)`` the attention maps are averaged over
            (``None``: all layers, as the released LRA / TAS code; its newest revision's baseline
            averages layers 6..25 inclusive, ``(6, 26)`` here).
        relative: relative attention: divide the maps by those of the generic prompt
            (``lra.generic_question``, run with the same latent), which removes what every prompt
            attends to.
        lra: the latent tuning (steps, step size, schedule, contrast with the generic prompt).
        scorer: the shared tube scorer's settings.
        question_template: how a sub-query becomes a question.
        question_style: ``"tidy"`` or ``"reference"`` (see :func:`interrogative`).
        temporal_map_question: the question the temporal maps are read with: ``"sub_query"``
            (the action question the latent was tuned on) or ``"query"`` (the whole query with
            the action-tuned latent: the released Qwen2-VL code).
        adapter: how the adapter feeds the model (:class:`AdapterOptions`).
        dtype, device: passed to the model loading.
    """

    model: str = "toy"
    family: str | None = None
    preset_name: str | None = None
    num_frames: int = 20
    sampling: Literal["centres", "linspace"] = "centres"
    gti: GTIMethod = "max_activation"
    fixed_index: int = -1
    spatial_prompt: bool = True
    temporal_prompt: bool = True
    tas: bool = True
    layers: tuple[int, int] | None = None
    relative: bool = False
    lra: LRAConfig = field(default_factory=LRAConfig)
    scorer: TubeScorerConfig = field(default_factory=TubeScorerConfig)
    question_template: str = QUESTION_TEMPLATE
    question_style: QuestionStyle = "tidy"
    temporal_map_question: Literal["sub_query", "query"] = "sub_query"
    adapter: AdapterOptions = field(default_factory=AdapterOptions)
    dtype: str | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        if self.sampling not in SAMPLINGS:
            raise STVGError(f"sampling must be one of {', '.join(SAMPLINGS)}; got {self.sampling!r}")
        if self.question_style not in ("tidy", "reference"):
            raise STVGError(f"question_style must be 'tidy' or 'reference'; got {self.question_style!r}")
        if self.temporal_map_question not in ("sub_query", "query"):
            raise STVGError(
                f"temporal_map_question must be 'sub_query' or 'query'; got {self.temporal_map_question!r}"
            )
        if self.num_frames < 1:
            raise STVGError(f"num_frames must be at least 1, got {self.num_frames}")
        if self.dtype is not None and not isinstance(getattr(torch, str(self.dtype), None), torch.dtype):
            raise STVGError(f"unknown dtype {self.dtype!r}: use a torch dtype such as bfloat16 or float32")
        if self.device is not None:
            try:
                torch.device(self.device)
            except RuntimeError:
                raise STVGError(f"unknown device {self.device!r}: use cpu, cuda, cuda:1, mps, ...") from None
        if self.layers is not None and not 0 <= self.layers[0] < self.layers[1]:
            raise STVGError(f"layers must be a window lo:hi with 0 <= lo < hi, got {self.layers}")

    @classmethod
    def preset(cls, name: str, family: str | None = None, **overrides: Any) -> ZeroShotConfig:
        """The settings of preset ``name`` (:data:`zsgrounding.zeroshot.presets.PRESETS`), then ``overrides``.

        ``family`` picks the per-family settings (query token, pooling, ...); by default it is
        ``overrides["family"]``, else read from the checkpoint ``overrides["model"]`` (default the
        toy model). Fields given in ``overrides`` win over the preset's.
        """
        base = cls(**overrides)
        family = family or base.family or entry_for_checkpoint(resolve_model(base.model)).name
        resolved = make_preset(name, entry_for_family(family).name, base)
        return replace(resolved, **overrides) if overrides else resolved

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def ablation(self, **changes: Any) -> ZeroShotConfig:
        """A copy with some flags changed (``config.ablation(tas=False)``)."""
        return replace(self, **changes)


TrackSource = Sequence[Track] | None


class ZeroShotGrounder:
    """Training-free spatio-temporal grounding with an off-the-shelf video MLLM.

    Args:
        config: the settings.
        adapter: an already loaded adapter (else loaded from ``config.model`` on first use).
        decomposer: query decomposition (default: :meth:`Decomposer.from_env`, offline rules
            when no LLM endpoint is configured).
        proposer: a callable ``(clip, noun_phrase, key) -> list[Track]`` used when ``ground`` is
            given no tracks (e.g. :class:`zsgrounding.proposals.ProposalSource`).
    """

    name = "zero-shot"

    def __init__(
        self,
        config: ZeroShotConfig | None = None,
        adapter: MLLMAdapter | None = None,
        decomposer: Decomposer | None = None,
        proposer: Any = None,
    ) -> None:
        self.config = config or ZeroShotConfig()
        self._adapter = adapter
        self.decomposer = decomposer
        self.proposer = proposer
        self.scorer = TubeScorer(self.config.scorer)

    # ------------------------------------------------------------------ components

    @property
    def adapter(self) -> MLLMAdapter:
        if self._adapter is None:
            cfg = self.config
            self._adapter = load_adapter(
                resolve_model(cfg.model),
                family=cfg.family,
                dtype=cfg.dtype,
                device=cfg.device,
                options=cfg.adapter,
            )
        elif self._adapter.options != self.config.adapter and self.config.adapter.changed():
            raise STVGError(
                f"the given adapter was loaded with {self._adapter.options.changed()}, the config "
                f"asks for {self.config.adapter.changed()}: load it with the config's adapter options"
            )
        return self._adapter

    def check(self) -> None:
        """Load the model and check the settings that depend on it, before any sample runs.

        Raises:
            STVGError: a layer window past the model's decoder layers, or a fixed grounding token
                past the template's tokens after the question (one line naming the option).
        """
        cfg = self.config
        if cfg.layers is not None:
            # From the config when the weights are not loaded yet: the error comes before the load.
            depth = self._depth()
            if cfg.layers[1] > depth:
                lo, hi = cfg.layers
                raise STVGError(
                    f"layers {lo}:{hi} is outside the model's {depth} decoder layers (0:{depth} at most)"
                )
        adapter = self.adapter
        if cfg.gti == "fixed":
            count = adapter.special_token_count()
            if not -count <= cfg.fixed_index < count:
                raise STVGError(
                    f"fixed_index {cfg.fixed_index} is outside the {count} tokens after the question "
                    f"({-count} .. {count - 1})"
                )

    def _depth(self) -> int:
        """The language model's decoder layers, from the config file while the weights are unloaded."""
        model_config = None if self._adapter is None else self._adapter.model.config
        if model_config is None:
            try:
                model_config = AutoConfig.from_pretrained(str(resolve_model(self.config.model)))
            except (OSError, ValueError):  # unreadable here: the adapter's load says why, in one line
                model_config = self.adapter.model.config
        return int(getattr(model_config, "text_config", model_config).num_hidden_layers)

    def _decomposer(self) -> Decomposer:
        if self.decomposer is None:
            self.decomposer = Decomposer.from_env()
        return self.decomposer

    def decompose(self, query: str, key: str | None = None) -> Decomposition:
        """The sub-queries of ``query``; only asked for when a prompt needs them."""
        return self._decomposer().decompose(query, key=key)

    # ------------------------------------------------------------------ grounding

    def ground(
        self,
        video: str | Path | Clip,
        query: str,
        tracks: TrackSource = None,
        key: str | None = None,
    ) -> GroundingResult:
        """Ground ``query`` in ``video``.

        Args:
            video: a video file, or an already sampled :class:`Clip`.
            query: the sentence.
            tracks: object proposals; when ``None`` the proposer makes them.
            key: the sample / video id (for the decomposition and track caches).

        Returns:
            A :class:`GroundingResult`; ``extras`` hold the sub-queries, the chosen grounding
            tokens, the per-step yes/no scores and ``timings`` in seconds. With no tracks the
            tube is empty (``extras["reason"] == "no proposals"``).
        """
        if not query or not query.strip():
            raise STVGError("empty query: give the sentence to ground")
        cfg = self.config
        timings: dict[str, float] = {}
        tick = time.perf_counter()

        clip = (
            video if isinstance(video, Clip) else sample_uniform(video, cfg.num_frames, sampling=cfg.sampling)
        )
        timings["decode"] = time.perf_counter() - tick

        tick = time.perf_counter()
        if cfg.spatial_prompt or cfg.temporal_prompt:
            parts = self.decompose(query, key)
        else:
            parts = Decomposition(query=query, attribute=query, action=query, source="query")
        timings["decompose"] = time.perf_counter() - tick

        tick = time.perf_counter()
        if tracks is None:
            if self.proposer is None:
                raise STVGError("no tracks given and no proposer configured: pass tracks= or a proposer")
            # Tracks belong to the video (one file per video), the key to the sentence.
            video_key = clip.path.name if clip.path is not None else key
            tracks = self.proposer(clip, noun_phrase(query), video_key)
        tracks = list(tracks)
        timings["proposals"] = time.perf_counter() - tick

        spatial_q = self.question(parts.attribute if cfg.spatial_prompt else query, query)
        temporal_q = self.question(parts.action if cfg.temporal_prompt else query, query)
        query_q = self.question(query, query)
        temporal_map_q = query_q if cfg.temporal_map_question == "query" else None

        adapter = self.adapter  # loaded on first use, outside the timed grounding
        with forward_clock(adapter.model) as clock:
            tick = time.perf_counter()
            cache: dict[str, PreparedInputs] = {}
            spatial = self.question_maps(
                clip, spatial_q, tune=cfg.spatial_prompt, tas=cfg.tas, prepared_cache=cache
            )
            timings["mllm_spatial"] = time.perf_counter() - tick
            tick = time.perf_counter()
            same = temporal_q == spatial_q and cfg.temporal_prompt == cfg.spatial_prompt and not cfg.tas
            if same and temporal_map_q is None:
                temporal = spatial  # same question, same tuning: the same maps
            else:
                temporal = self.question_maps(
                    clip,
                    temporal_q,
                    tune=cfg.temporal_prompt,
                    tas=False,
                    prepared_cache=cache,
                    map_question=temporal_map_q,
                )
            timings["mllm_temporal"] = time.perf_counter() - tick

        tick = time.perf_counter()
        s_pick = select_grounding_token(spatial.maps, cfg.gti, cfg.fixed_index)
        t_pick = select_grounding_token(temporal.maps, cfg.gti, cfg.fixed_index)
        s_evidence = np.asarray(s_pick.evidence, dtype=np.float64)
        t_evidence = np.asarray(t_pick.evidence, dtype=np.float64)
        # The maps' frames: the sampled ones, or one per frame pair (Qwen2-VL's temporal patches).
        grid_frames = spatial.frame_ids if spatial.frame_ids is not None else clip.frame_ids
        result = self.scorer.ground(
            s_evidence,
            tracks,
            grid_frames,
            clip.num_frames,
            clip.width,
            clip.height,
            temporal_evidence=t_evidence,
        )
        timings["scoring"] = time.perf_counter() - tick
        timings["total"] = sum(timings.values())
        # What the MLLM itself costs: its forwards (vision included) and the LRA backwards.
        timings["model_forward"] = clock.seconds
        timings["model_backward"] = spatial.backward_seconds + (
            temporal.backward_seconds if temporal is not spatial else 0.0
        )
        timings["outside_model"] = timings["total"] - timings["model_forward"] - timings["model_backward"]

        tokens = spatial.token_names
        result.extras.update(
            {
                "query": query,
                "sub_queries": {"attribute": parts.attribute, "action": parts.action, "source": parts.source},
                "questions": {"spatial": spatial_q, "temporal": temporal_q}
                | ({"temporal_maps": temporal_map_q} if temporal_map_q is not None else {}),
                "grounding_token": {
                    "spatial": _token_name(tokens, s_pick.token_index),
                    "temporal": _token_name(tokens, t_pick.token_index),
                },
                "token_activations": {
                    "spatial": np.asarray(s_pick.activations, dtype=np.float64).tolist(),
                    "temporal": np.asarray(t_pick.activations, dtype=np.float64).tolist(),
                },
                "yes_no": {"spatial": spatial.scores, "temporal": temporal.scores},
                "timings": timings,
                "num_tracks": len(tracks),
            }
        )
        if not tracks:
            result.extras["reason"] = "no proposals"
        return result

    def question(self, text: str, query: str) -> str:
        """The yes/no question of ``text`` (a sub-query, or ``query`` itself) in the config's style."""
        cfg = self.config
        whole = _same_text(text, query)
        return interrogative(text, cfg.question_template, cfg.question_style, whole_query=whole)

    def question_maps(
        self,
        clip: Clip,
        question: str,
        tune: bool,
        tas: bool,
        prepared_cache: dict[str, PreparedInputs] | None = None,
        map_question: str | None = None,
    ) -> QuestionMaps:
        """The special tokens' maps for one question, tuned with LRA (``tune``) and TAS (``tas``).

        ``prepared_cache`` (question -> inputs of this clip) lets the spatial and temporal
        branches share the generic prompt's inputs instead of running the vision tower twice.
        ``map_question``: read the maps with this question instead, using the latent tuned on
        ``question`` (the released Qwen2-VL code's temporal maps).
        """
        cfg = self.config
        adapter = self.adapter
        cache = prepared_cache if prepared_cache is not None else {}

        def prepare(text: str) -> PreparedInputs:
            if text not in cache:
                cache[text] = adapter.prepare(clip, text)
            return cache[text]

        lra = cfg.lra if tune else replace(cfg.lra, steps=0)
        prepared = prepare(question)
        mapped = prepare(map_question) if map_question is not None else prepared
        needs_generic = cfg.relative or (lra.steps > 0 and lra.contrast == "generic")
        generic = prepare(lra.generic_question) if needs_generic else None
        if tas:
            res = tas_maps(
                adapter, prepared, generic, lra, cfg.layers, relative=cfg.relative, map_input=mapped
            )
            maps, tuned = res.maps, [res.forward_lra, res.reversed_lra]
        else:
            tuned_one = tune_latent(adapter, prepared, generic if lra.contrast == "generic" else None, lra)
            latent = tuned_one.latent if lra.steps > 0 else None
            relative_to = generic if cfg.relative else None
            maps, tuned = (
                lra_maps(adapter, mapped, latent, cfg.layers, relative_to=relative_to),
                [tuned_one],
            )
        return QuestionMaps(
            maps=maps.detach().float().cpu().numpy(),
            token_names=list(prepared.special_tokens),
            scores=[_lra_summary(t) for t in tuned],
            # TAS's two latents share one batch: count its backward time once.
            backward_seconds=tuned[0].seconds["backward"],
            frame_ids=np.asarray(prepared.frame_ids.cpu(), dtype=np.int64),
        )

    def ground_sample(self, sample: Sample, tracks: TrackSource = None) -> GroundingResult:
        """:meth:`ground` on a dataset sample (the runner's protocol)."""
        return self.ground(sample.video, sample.sentence, tracks=tracks, key=sample.id)


@dataclass
class QuestionMaps:
    """The maps of one question.

    Attributes:
        maps: ``(S, T, h, w)`` float32 attention of the ``S`` special tokens on the visual grid.
        token_names: the ``S`` special tokens.
        scores: per tuned latent (two with TAS: forward, reversed), the yes/no contrast before
            and after tuning and whether the non-finite guard fired.
        backward_seconds: time of the LRA backward passes.
        frame_ids: ``(T,)`` native frame of each grid frame: the sampled frames, or the first
            frame of each frame pair for a tower with temporal patches (Qwen2-VL).
    """

    maps: np.ndarray
    token_names: list[str]
    scores: list[dict[str, Any]]
    backward_seconds: float = 0.0
    frame_ids: np.ndarray | None = None


def _lra_summary(result: Any) -> dict[str, Any]:
    sub = result.sub_scores[:, 0].tolist() if result.sub_scores.numel() else []
    gen = result.generic_scores[:, 0].tolist() if result.generic_scores is not None else None
    return {"s_sub": sub, "s_generic": gen, "stopped": bool(result.non_finite.any())}


def _same_text(a: str, b: str) -> bool:
    """Whether a sub-query is the whole query (a decomposition's fallback), spacing aside."""
    return " ".join(a.split()) == " ".join(b.split())


def _token_name(tokens: Sequence[str], index: int | None) -> str | None:
    if index is None:
        return "mean"
    return f"{index}:{tokens[index]}" if index < len(tokens) else str(index)
