"""Run the zero-shot paper's pilot study with a model over an annotated dataset.

For every sample the clip is sampled as for grounding, the model is asked the interrogative
form of the full query, and the attention of every special token after the question is captured
over the visual grid. With the ground-truth boxes on the sampled frames this gives the attention
ratio and hit ratio per token (eq. 1, Fig. 2a); with object proposals, the grounding accuracy per
rank of visual activation (Fig. 2b); with ``consistency=True`` also the temporal consistency of
eq. 5 between the original and the frame-reversed input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from zsgrounding.mllm import MLLMAdapter
from zsgrounding.types import Clip, Sample, Track
from zsgrounding.video import sample_uniform
from zsgrounding.zeroshot.pilot import PilotSample, PilotTable, pilot_table, temporal_consistency

__all__ = ["PilotRun", "run_pilot"]

TracksFor = Callable[[Sample, Clip], Sequence[Track] | None]


@dataclass
class PilotRun:
    """The pilot study's table plus what it was computed from.

    Attributes:
        table: the per-token table (:class:`zsgrounding.zeroshot.pilot.PilotTable`).
        records: one :class:`PilotSample` per sample, ``maps`` of shape ``(S, T, h, w)``.
        sample_ids: ids of the samples, aligned with ``records``.
        consistency: ``(N,)`` temporal consistency (eq. 5, cosine) of the mean special-token
            map per sample, or ``None`` when not asked for.
    """

    table: PilotTable
    records: list[PilotSample]
    sample_ids: list[str]
    consistency: np.ndarray | None = None

    def to_markdown(self) -> str:
        text = self.table.to_markdown()
        if self.consistency is not None:
            finite = self.consistency[np.isfinite(self.consistency)]
            mean = float(finite.mean()) if finite.size else float("nan")
            text += (
                f"\nTemporal consistency (eq. 5, cosine, mean special-token map): {mean:.3f} "
                f"over {finite.size} samples\n"
            )
        return text


def run_pilot(
    adapter: MLLMAdapter,
    samples: Sequence[Sample],
    layers: tuple[int, int] | None = None,
    tracks_for: TracksFor | None = None,
    consistency: bool = False,
    template: str = "Is there {} in this video?",
    progress: bool = True,
) -> PilotRun:
    """The pilot study of ``adapter`` over ``samples`` (those with a ground-truth tube).

    Args:
        adapter: the MLLM.
        samples: annotated samples; samples without ground truth are skipped.
        layers: the layer window ``[lo, hi)`` the maps are averaged over (``None``: all).
        tracks_for: ``(sample, clip) -> tracks`` giving object proposals for the rank accuracy.
        consistency: also run the frame-reversed input and report eq. 5.
        template: how the query becomes the question.
        progress: show a progress bar.
    """
    from zsgrounding.mllm.base import reverse_frames

    records: list[PilotSample] = []
    ids: list[str] = []
    scores: list[float] = []
    names: list[str] | None = None
    for sample in tqdm(
        [s for s in samples if s.gt is not None], desc="pilot", unit="clip", disable=not progress
    ):
        clip = sample_uniform(sample.video, adapter.num_frames)
        prepared = adapter.prepare(clip, template.format(sample.sentence.strip().rstrip(".?!")))
        out = adapter.forward(prepared, capture=prepared.capture_config(layers))
        maps = prepared.to_grid(out.attention.mean()).numpy()
        if names is None:
            names = list(prepared.special_tokens)
        # The maps' frames: the sampled ones, or one per frame pair (Qwen2-VL's temporal patches).
        grid_frames = np.asarray(prepared.frame_ids.cpu(), dtype=np.int64)
        proposals = None
        tracks = tracks_for(sample, clip) if tracks_for is not None else None
        if tracks:
            proposals = np.stack([t.boxes_at(grid_frames) for t in tracks])
        records.append(
            PilotSample(
                maps=maps,
                gt_boxes=sample.gt.tube.boxes_at(grid_frames),
                width=clip.width,
                height=clip.height,
                proposals=proposals,
            )
        )
        ids.append(sample.id)
        if consistency:
            rev = reverse_frames(prepared)
            rev_out = adapter.forward(rev, capture=rev.capture_config(layers))
            rev_maps = rev.to_grid(rev_out.attention.mean()).numpy()
            scores.append(temporal_consistency(maps.mean(0), rev_maps.mean(0), flip=True))
    if not records:
        raise ValueError("no sample with a ground-truth tube to run the pilot study on")
    table = pilot_table(records, token_names=names)
    return PilotRun(
        table=table,
        records=records,
        sample_ids=ids,
        consistency=np.asarray(scores) if consistency else None,
    )
