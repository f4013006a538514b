"""Grounding with a SpaceVLLM model (*SpaceVLLM*, arXiv 2503.13983, sec. 3.1.5), through the shared tube scorer.

``SpaceVLLMGrounder(model).ground(video, query)``:

1. sample the frames uniformly, build the prompt (time instruction, interleaved queries);
2. ONE forward of the prompt gives the decoder's box for every sampled frame (the queries,
   frames and caption all precede the answer, so their hidden states do not depend on it),
   the logits of the first answer token and the KV cache;
3. greedy decoding continues the answer from the cache for a few tokens (query tokens are never
   generated); :func:`spacevllm.prompt.parse_span` reads it; an unparseable answer means the
   whole video (``extras["parse_ok"] = False``);
4. the sampled frames inside the span (:func:`spacevllm.prompt.frames_in_span`) keep their
   boxes; these are rendered as evidence maps (:func:`zsgrounding.tubes.render_box_evidence`,
   zero outside the span) on the visual grid;
5. the tube: over the native span the sampled frames stand for
   (:func:`zsgrounding.tubes.span_to_native`), either the predicted boxes as a track, or, when
   proposal tracks are given and ``snap_to_tracks``, the track the evidence scores highest
   (:func:`zsgrounding.tubes.score_tracks` with the scorer's weighting), assembled with
   :func:`zsgrounding.tubes.assemble` and the scorer's settings. The span always comes from
   the answer, never from the scorer's own span selection.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spacevllm.collate import SimpleRecord, SpaceVLLMBatch
from spacevllm.model import SpaceVLLM, SpaceVLLMOutput
from spacevllm.prompt import ParsedSpan, frames_in_span, parse_span
from zsgrounding.boxes import cxcywh_norm_to_xyxy
from zsgrounding.errors import STVGError
from zsgrounding.tubes import (
    TubeScorer,
    assemble,
    frame_scores,
    render_box_evidence,
    score_tracks,
    span_to_native,
)
from zsgrounding.types import Clip, GroundingResult, Sample, Track
from zsgrounding.video import sample_uniform

_SPELLED = re.compile(r"(?<=[\d.]) (?=[\d.])")


def join_spelled_numbers(text: str) -> str:
    """``"From 1 . 5 0 to 2 . 2 5 seconds ."`` -> ``"From 1.50 to 2.25 seconds ."``.

    Only for tokenizers whose digits were added one by one (:func:`add_answer_tokens`): their
    decoding joins tokens with spaces, which would split every number.
    """
    return _SPELLED.sub("", text)


@dataclass
class SpaceVLLMGrounderConfig:
    """Inference settings.

    Attributes:
        num_frames: frames to sample; ``None``: the model config's ``frames_at_inference``.
        max_new_tokens: answer budget; ``None``: the model config's ``max_new_tokens``.
        evidence_grid: ``(h, w)`` of the rendered evidence; ``None``: the model's visual grid.
        snap_to_tracks: follow the best proposal track when tracks are given.
        min_track_score: a track must score above this to be followed (else the predicted boxes).
        sampling: how frames are spread over the video (:func:`zsgrounding.video.uniform_ids`).
    """

    num_frames: int | None = None
    max_new_tokens: int | None = None
    evidence_grid: tuple[int, int] | None = None
    snap_to_tracks: bool = True
    min_track_score: float = 0.0
    sampling: str = "centres"


class SpaceVLLMGrounder:
    """SpaceVLLM behind the runner's protocol (``ground_sample``)."""

    name = "spacevllm"

    def __init__(
        self,
        model: SpaceVLLM,
        config: SpaceVLLMGrounderConfig | None = None,
        scorer: TubeScorer | None = None,
    ) -> None:
        self.model = model
        self.config = config or SpaceVLLMGrounderConfig()
        self.scorer = scorer or TubeScorer()
        self.collate = model.collator(with_answers=False)

    @property
    def num_frames(self) -> int:
        n = self.config.num_frames
        return int(n) if n is not None else self.model.config.frames_at_inference

    def ground(
        self, video: str | Path | Clip, query: str, tracks: list[Track] | None = None, key: str | None = None
    ) -> GroundingResult:
        """Ground ``query`` in ``video`` (a file or a sampled :class:`Clip`).

        Returns:
            :class:`GroundingResult` with the tube, the evidence ``(T, h, w)``, the sampled frame
            ids, per-frame scores (the chosen track's, or 1 inside the span without tracks) and
            ``extras``: ``answer``, ``parse_ok``, ``parse_problem``, ``span_seconds``,
            ``span_sampled`` (first, last), ``snapped``, ``timings`` (seconds).
        """
        if not query or not query.strip():
            raise STVGError("empty query: give the sentence to ground")
        timings: dict[str, float] = {}
        tick = time.perf_counter()
        clip = (
            video
            if isinstance(video, Clip)
            else sample_uniform(video, self.num_frames, sampling=self.config.sampling)
        )
        timings["decode"] = time.perf_counter() - tick

        record = SimpleRecord(
            task="stvg",
            id=key or (str(clip.path) if clip.path else ""),
            media=clip.path or "",
            query=query,
            width=clip.width,
            height=clip.height,
            fps=clip.fps,
            num_frames=clip.num_frames,
        )
        batch = self.collate([(record, clip)])
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                tick = time.perf_counter()
                out = self.model(batch, use_cache=True, next_token_logits=True)
                timings["forward"] = time.perf_counter() - tick
                tick = time.perf_counter()
                answer = self.generate_answer(out, batch)
                timings["generate"] = time.perf_counter() - tick
        finally:
            self.model.train(was_training)

        tick = time.perf_counter()
        if clip.duration > 0:
            parsed = parse_span(answer, clip.duration)
        else:  # no frame rate: nothing to read seconds against
            parsed = ParsedSpan(0.0, 0.0, ok=False, problem="the video has no duration")
        result = self._tube(clip, out.boxes[0].float().cpu().numpy(), parsed, tracks)
        timings["assemble"] = time.perf_counter() - tick
        timings["total"] = sum(timings.values())
        result.extras.update(
            answer=answer,
            parse_ok=parsed.ok,
            parse_problem=parsed.problem,
            span_seconds=(parsed.start, parsed.end),
            timings=timings,
        )
        return result

    def ground_sample(self, sample: Sample, tracks: list[Track] | None = None) -> GroundingResult:
        """:meth:`ground` on a dataset sample (the runner's protocol)."""
        return self.ground(sample.video, sample.sentence, tracks=tracks, key=sample.id)

    def generate_answer(self, out: SpaceVLLMOutput, batch: SpaceVLLMBatch) -> str:
        """Greedy continuation of the prompt from ``out``'s cache (one row), decoded to text."""
        if out.next_token_logits is None or out.past_key_values is None:
            raise ValueError("the forward must be run with use_cache=True, next_token_logits=True")
        adapter = self.model.adapter
        stops = {adapter.stop_id}
        eos = adapter.tokenizer.eos_token_id
        if eos is not None:
            stops.add(int(eos))
        banned = torch.tensor(adapter.query_tokens.all_ids, device=out.next_token_logits.device)
        budget = self.config.max_new_tokens or self.model.config.max_new_tokens
        logits, cache = out.next_token_logits[:1], out.past_key_values
        mask = batch.attention_mask[:1].to(logits.device)
        tokens: list[int] = []
        for _ in range(budget):
            logits = logits.index_fill(-1, banned, float("-inf"))
            token = int(logits.argmax(-1)[0])
            if token in stops:
                break
            tokens.append(token)
            mask = torch.cat([mask, mask.new_ones(1, 1)], dim=1)
            logits, cache = self.model.step(torch.tensor([[token]]), cache, mask)
        text = adapter.tokenizer.decode(tokens, skip_special_tokens=True).strip()
        if adapter.query_tokens.answer_ids:  # digits added one by one decode with spaces between
            text = join_spelled_numbers(text)
        return text

    def _tube(
        self, clip: Clip, boxes_norm: np.ndarray, parsed: ParsedSpan, tracks: list[Track] | None
    ) -> GroundingResult:
        """Span -> sampled frames -> evidence -> tube (see the module docstring)."""
        fids = np.asarray(clip.frame_ids, dtype=np.int64)
        T = fids.size
        first, last = frames_in_span(clip.times, parsed.start, parsed.end, self.model.config.time_decimals)
        span = span_to_native(first, last, fids, clip.num_frames)
        xyxy = cxcywh_norm_to_xyxy(boxes_norm[:T], clip.width, clip.height)
        xyxy = np.clip(xyxy, 0, [clip.width, clip.height, clip.width, clip.height])
        inside = np.zeros(T, dtype=bool)
        inside[first : last + 1] = True
        grid = self.config.evidence_grid or self.model.adapter.grid_shape
        evidence = render_box_evidence(np.where(inside[:, None], xyxy, np.nan), clip.width, clip.height, grid)

        cfg = self.scorer.config
        extras: dict[str, Any] = {"span_sampled": (first, last), "snapped": False}
        scores = None
        if tracks and self.config.snap_to_tracks:
            scores = score_tracks(
                evidence, tracks, fids, clip.width, clip.height, cfg.weighting, cfg.use_masks
            )
            best = int(np.argmax(scores))
            if scores[best] > self.config.min_track_score:
                per_frame = frame_scores(
                    evidence, tracks[best], fids, clip.width, clip.height, cfg.weighting, cfg.use_masks
                )
                extras["snapped"] = True
                return GroundingResult(
                    tube=assemble(tracks[best], span, cfg.extrapolate),
                    track_scores=scores,
                    chosen_track=best,
                    frame_scores=per_frame,
                    evidence=evidence,
                    sampled_frame_ids=fids,
                    extras=extras,
                )
        own = Track(fids[inside], xyxy[inside], label="spacevllm")
        return GroundingResult(
            tube=assemble(own, span, cfg.extrapolate),
            track_scores=scores,
            frame_scores=inside.astype(np.float64),
            evidence=evidence,
            sampled_frame_ids=fids,
            extras=extras,
        )
