"""Pilot-study tools of *Unleashing the Potential of Multimodal LLMs for Zero-Shot
Spatio-Temporal Video Grounding* (sec. 3.2, eq. 1, Fig. 2; sec. 3.4, eq. 5).

- :func:`attention_ratio` (eq. 1): max attention inside the ground-truth box over max outside.
  Maps live on the visual token grid, so the box becomes a region of grid cells through
  :func:`zsgrounding.tubes.box_coverage` (the fraction of each cell inside the box):

  - ``region="majority"`` (default): a cell is inside when more than half of it is covered, i.e.
    the box mask downsampled by majority vote; inside and outside partition the cells. A box too
    small to cover half of any cell takes the cell(s) it covers most, so a small target still
    has an inside.
  - ``region="coverage"``: soft weights, inside ``max(A * c)`` over outside ``max(A * (1 - c))``,
    the same coverage weighting the tube scorer uses.

  The ratio is ``nan`` when it is undefined: no box on any frame, or a box that covers every
  cell (nothing is outside); ``inf`` when all attention outside is exactly zero.
- :func:`hit_ratios` (Fig. 2a): per special token, the share of samples where it has the
  highest attention ratio (the "superior" token).
- :func:`activation_rank_accuracy` (Fig. 2b): rank the special tokens of each sample by their
  max visual attention; per rank, the share of samples where that token's map picks a right
  proposal (the proposal with the highest max attention inside it, scored as the paper's eq. 2).
- :func:`temporal_consistency` (eq. 5): agreement of the spatial map of the original frame order
  with the map of the reversed order flipped back. The seed's text lost the formula; see the
  function for the form implemented.
- :func:`pilot_table`: the study's table over a dataset of :class:`PilotSample`.

Videos and images are handled alike: an image is a video of one frame (``T = 1``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from zsgrounding.boxes import box_iou
from zsgrounding.tubes import Weighting, box_coverage, score_tracks
from zsgrounding.types import Track

__all__ = [
    "ConsistencyMethod",
    "PilotSample",
    "PilotTable",
    "Region",
    "activation_rank_accuracy",
    "attention_ratio",
    "hit_ratios",
    "pilot_table",
    "proposal_choices",
    "proposals_correct",
    "temporal_consistency",
    "token_attention_ratios",
]

Region = Literal["majority", "coverage"]
ConsistencyMethod = Literal["cosine", "intersection"]


def _np(x: torch.Tensor | np.ndarray | Sequence[float]) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to(device="cpu", dtype=torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def _as_video(maps: np.ndarray, boxes: np.ndarray, map_ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """Add the frame axis to image maps ``(..., h, w)`` and boxes ``(4,)``."""
    if maps.ndim == map_ndim - 1:
        maps = maps[..., None, :, :]
    if maps.ndim != map_ndim:
        raise ValueError(f"maps have {maps.ndim} dims, expected {map_ndim} or {map_ndim - 1}")
    boxes = boxes.reshape(-1, 4)
    if boxes.shape[0] != maps.shape[-3]:
        raise ValueError(f"{boxes.shape[0]} boxes for {maps.shape[-3]} frames")
    return maps, boxes


# --------------------------------------------------------------------------- eq. 1: attention ratio


def _region_weights(
    boxes: np.ndarray, width: int, height: int, grid: tuple[int, int], region: Region
) -> tuple[np.ndarray, np.ndarray]:
    """``(inside, outside)`` cell weights ``(T, h, w)`` of per-frame boxes ``(T, 4)`` (NaN = absent)."""
    cover = box_coverage(boxes, width, height, grid)
    if region == "coverage":
        return cover, 1.0 - cover
    if region != "majority":
        raise ValueError(f"unknown region {region!r}: use 'majority' or 'coverage'")
    t = cover.shape[0]
    inside = cover > 0.5
    flat = cover.reshape(t, -1)
    frame_max = flat.max(axis=1)
    small = ~inside.reshape(t, -1).any(axis=1) & (frame_max > 0)
    # A box smaller than half a cell keeps the cell(s) it covers most.
    inside[small] = cover[small] == frame_max[small, None, None]
    weights = inside.astype(np.float64)
    return weights, 1.0 - weights


def _ratio(maps: np.ndarray, inside: np.ndarray, outside: np.ndarray) -> np.ndarray:
    """Eq. 1 for maps ``(..., T, h, w)`` and weights ``(T, h, w)`` -> ``(...)``."""
    if inside.max(initial=0.0) <= 0 or outside.max(initial=0.0) <= 0:
        return np.full(maps.shape[:-3], np.nan)
    lead = maps.shape[:-3]
    num = (maps * inside).reshape(*lead, -1).max(axis=-1)
    den = (maps * outside).reshape(*lead, -1).max(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = num / den
    # 0 / 0 (no attention anywhere) stays nan; x / 0 with x > 0 is inf.
    return np.where((den == 0) & (num > 0), np.inf, out)


def attention_ratio(
    attn_map: torch.Tensor | np.ndarray,
    box: np.ndarray | Sequence[float],
    width: int,
    height: int,
    region: Region = "majority",
) -> float:
    """The zero-shot paper's eq. 1: max attention inside the GT box over max attention outside it.

    Args:
        attn_map: ``(h, w)`` non-negative map of one token on the visual grid (attention, or
            relative attention), or ``(T, h, w)`` for a video.
        box: pixel ``xyxy`` GT box ``(4,)``, or ``(T, 4)`` per frame with NaN rows where the
            target is absent (every cell of such a frame counts as outside).
        width, height: native frame size the box is expressed in (the grid covers the frame).
        region: ``"majority"`` or ``"coverage"`` (see the module docstring).

    Returns:
        The ratio; ``nan`` if undefined (no inside or no outside cell), ``inf`` if all outside
        attention is zero.
    """
    maps, boxes = _as_video(_np(attn_map), _np(box), 3)
    inside, outside = _region_weights(boxes, width, height, maps.shape[-2:], region)
    return float(_ratio(maps, inside, outside))


def token_attention_ratios(
    maps: torch.Tensor | np.ndarray,
    boxes: np.ndarray | Sequence[float],
    width: int,
    height: int,
    region: Region = "majority",
) -> np.ndarray:
    """Eq. 1 for each of ``S`` special tokens: maps ``(S, T, h, w)`` (or ``(S, h, w)``) -> ``(S,)``."""
    m, b = _as_video(_np(maps), _np(boxes), 4)
    inside, outside = _region_weights(b, width, height, m.shape[-2:], region)
    return _ratio(m, inside, outside)


def hit_ratios(per_sample_ratios: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Fig. 2(a): per token, the share of samples where it has the highest attention ratio.

    Args:
        per_sample_ratios: ``(n, S)`` attention ratios of ``S`` tokens on ``n`` samples. Ties go
            to the first token; a ``nan`` entry never wins; samples whose ratios are all ``nan``
            are left out of the count.

    Returns:
        ``(S,)`` shares summing to 1 (all ``nan`` when no sample counts).
    """
    r = _np(per_sample_ratios)
    if r.ndim != 2:
        raise ValueError(f"per_sample_ratios must be (n, S), got shape {r.shape}")
    valid = ~np.isnan(r).all(axis=1)
    if not valid.any():
        return np.full(r.shape[1], np.nan)
    winners = np.argmax(np.where(np.isnan(r[valid]), -np.inf, r[valid]), axis=1)
    return np.bincount(winners, minlength=r.shape[1]) / winners.size


# --------------------------------------------------------------------------- Fig. 2(b): rank accuracy


def proposals_correct(proposals: np.ndarray, gt_boxes: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Which proposals count as a right answer: ``(P, T, 4)``, ``(T, 4)`` -> ``(P,)`` bool.

    A proposal is right when its box IoU with the GT, averaged over the frames that have a GT
    box (a proposal without a box there scores 0), is at least ``threshold``. For an image
    (``T = 1``) this is the REC Acc@0.5 criterion of :func:`zsgrounding.metrics.rec_accuracy`.
    """
    p = _np(proposals)
    if p.ndim == 2:
        p = p[:, None]
    g = _np(gt_boxes).reshape(-1, 4)
    if p.shape[1] != g.shape[0]:
        raise ValueError(f"proposals have {p.shape[1]} frames, the GT {g.shape[0]}")
    has_gt = ~np.isnan(g).any(axis=1)
    if not has_gt.any():
        return np.zeros(p.shape[0], dtype=bool)
    iou = np.nan_to_num(box_iou(p[:, has_gt], g[has_gt]), nan=0.0)
    return iou.mean(axis=1) >= threshold


def _tracks(proposals: np.ndarray) -> list[Track]:
    """One :class:`Track` per proposal ``(P, T, 4)``, on sampled-frame ids ``0..T-1``."""
    tracks = []
    for p, boxes in enumerate(proposals):
        present = ~np.isnan(boxes).any(axis=1)
        tracks.append(Track(frame_ids=np.nonzero(present)[0], boxes=boxes[present], track_id=p))
    return tracks


def proposal_choices(
    maps: torch.Tensor | np.ndarray,
    proposals: np.ndarray,
    width: int,
    height: int,
    weighting: Weighting = "coverage",
) -> np.ndarray:
    """The proposal each token's map picks: maps ``(S, T, h, w)``, proposals ``(P, T, 4)`` -> ``(S,)``.

    A proposal's score is the max of the map inside its boxes over the frames (the paper's eq. 2,
    :func:`zsgrounding.tubes.score_tracks`); the pick is the argmax (ties: first proposal).
    NaN boxes mark frames a proposal is absent from.
    """
    m = _np(maps)
    if m.ndim == 3:
        m = m[:, None]
    props = _np(proposals)
    if props.ndim == 2:
        props = props[:, None]
    if props.shape[0] == 0:
        raise ValueError("no proposals to choose from")
    tracks = _tracks(props)
    fids = np.arange(m.shape[1])
    scores = np.stack(
        [score_tracks(token_map, tracks, fids, width, height, weighting, use_masks=False) for token_map in m]
    )
    return scores.argmax(axis=1)


@dataclass
class PilotSample:
    """One annotated sample of the pilot study.

    Attributes:
        maps: ``(S, T, h, w)`` attention of the ``S`` special tokens on the visual grid
            (``(S, h, w)`` for an image is accepted and becomes ``T = 1``).
        gt_boxes: ``(T, 4)`` pixel xyxy GT box per sampled frame, NaN rows where the target is
            absent (``(4,)`` for an image).
        width, height: native frame size of the boxes.
        proposals: optional ``(P, T, 4)`` proposal boxes per sampled frame, NaN where absent
            (``(P, 4)`` for an image); needed for the rank accuracy.
        correct: optional ``(P,)`` bool, which proposals are right; by default
            :func:`proposals_correct` of the proposals against ``gt_boxes``.
    """

    maps: np.ndarray
    gt_boxes: np.ndarray
    width: int
    height: int
    proposals: np.ndarray | None = None
    correct: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.maps, self.gt_boxes = _as_video(_np(self.maps), _np(self.gt_boxes), 4)
        if self.proposals is not None:
            props = _np(self.proposals)
            self.proposals = props[:, None] if props.ndim == 2 else props
            if self.proposals.shape[1:] != self.gt_boxes.shape:
                raise ValueError(
                    f"proposals {self.proposals.shape} do not match GT boxes {self.gt_boxes.shape}"
                )
            if self.correct is None:
                self.correct = proposals_correct(self.proposals, self.gt_boxes)
            self.correct = np.asarray(self.correct, dtype=bool).reshape(-1)
            if self.correct.size != self.proposals.shape[0]:
                raise ValueError(
                    f"{self.correct.size} correctness flags for {self.proposals.shape[0]} proposals"
                )

    @property
    def num_tokens(self) -> int:
        return int(self.maps.shape[0])


def activation_rank_accuracy(samples: Sequence[PilotSample], weighting: Weighting = "coverage") -> np.ndarray:
    """Fig. 2(b): grounding accuracy per rank of visual activation.

    For each sample the special tokens are ranked by the max of their map (descending, ties by
    token order); entry ``r`` is the share of samples (with proposals) where the rank-``r``
    token's map picks a right proposal (:func:`proposal_choices`, ``PilotSample.correct``).

    Returns:
        ``(S,)`` accuracies in [0, 1]; all ``nan`` when no sample has proposals.
    """
    if not samples:
        raise ValueError("no samples")
    n_tokens = {s.num_tokens for s in samples}
    if len(n_tokens) != 1:
        raise ValueError(f"samples have different numbers of special tokens: {sorted(n_tokens)}")
    size = n_tokens.pop()
    hits, used = np.zeros(size), 0
    for s in samples:
        if s.proposals is None or s.correct is None:
            continue
        activation = s.maps.reshape(size, -1).max(axis=1)
        order = np.argsort(-activation, kind="stable")
        choice = proposal_choices(s.maps, s.proposals, s.width, s.height, weighting)
        hits += s.correct[choice[order]]
        used += 1
    return hits / used if used else np.full(size, np.nan)


# --------------------------------------------------------------------------- eq. 5: temporal consistency


def temporal_consistency(
    map_fwd: torch.Tensor | np.ndarray,
    map_rev: torch.Tensor | np.ndarray,
    method: ConsistencyMethod = "cosine",
    flip: bool = False,
) -> float:
    """The zero-shot paper's eq. 5: how well the spatial maps of both frame orders agree, higher is better.

    The seed's text keeps only the definition in words ("the spatial attention maps before and
    after reversing the order of input frames"), not the formula, so two bounded, scale-free
    forms are offered; both are 1 for identical maps (and for maps equal up to a positive scale)
    and lower the more the maps disagree:

    - ``"cosine"`` (default): cosine similarity of the two maps flattened over ``(T, h, w)``;
      in [0, 1] for non-negative maps.
    - ``"intersection"``: each map normalised to sum 1, then ``sum(min(p, q))`` =
      ``1 - 0.5 * sum|p - q|`` (one minus the total-variation distance); in [0, 1], needs
      non-negative maps.

    Args:
        map_fwd: ``(T, h, w)`` map of the original frame order.
        map_rev: ``(T, h, w)`` map of the reversed run, already flipped back to the original
            frame order (or pass ``flip=True`` to flip it here along T).
        method: ``"cosine"`` or ``"intersection"``.

    Returns:
        The consistency; ``nan`` when a map is all zeros.
    """
    a, b = _np(map_fwd), _np(map_rev)
    if flip:
        b = b[::-1]
    if a.shape != b.shape:
        raise ValueError(f"maps differ in shape: {a.shape} vs {b.shape}")
    a, b = a.reshape(-1), b.reshape(-1)
    if method == "cosine":
        norm = float(np.linalg.norm(a) * np.linalg.norm(b))
        return float(a @ b / norm) if norm > 0 else float("nan")
    if method != "intersection":
        raise ValueError(f"unknown consistency method {method!r}: use 'cosine' or 'intersection'")
    if (a < 0).any() or (b < 0).any():
        raise ValueError("the intersection consistency needs non-negative maps")
    sa, sb = float(a.sum()), float(b.sum())
    if sa <= 0 or sb <= 0:
        return float("nan")
    return float(np.minimum(a / sa, b / sb).sum())


# --------------------------------------------------------------------------- the table


@dataclass
class PilotTable:
    """The pilot study's numbers over a dataset.

    Attributes:
        token_names: ``S`` labels of the special tokens.
        mean_ratio: ``(S,)`` mean attention ratio (eq. 1) per token over the samples where it
            is finite.
        hit_ratio: ``(S,)`` share of samples where the token has the highest ratio (Fig. 2a).
        rank_accuracy: ``(S,)`` accuracy per activation rank, highest first (Fig. 2b), or
            ``None`` when no sample has proposals.
        n_samples: samples in the dataset.
        n_ratio_samples: samples with a defined attention ratio (the hit-ratio denominator).
        n_rank_samples: samples with proposals (the rank-accuracy denominator).
    """

    token_names: list[str]
    mean_ratio: np.ndarray
    hit_ratio: np.ndarray
    rank_accuracy: np.ndarray | None
    n_samples: int
    n_ratio_samples: int
    n_rank_samples: int

    def to_markdown(self) -> str:
        """Two markdown tables: per special token, and per activation rank."""
        lines = [
            f"Attention ratio and hit ratio per special token ({self.n_ratio_samples} of "
            f"{self.n_samples} samples with a defined ratio)",
            "",
            "| token | mean attention ratio | hit ratio (%) |",
            "|---|---:|---:|",
        ]
        for name, ratio, hit in zip(self.token_names, self.mean_ratio, self.hit_ratio, strict=True):
            # Token strings such as "<|im_end|>" hold pipes, which would split the cell, and "\n"
            # would end the row: show control characters escaped.
            cell = name.encode("unicode_escape").decode("ascii").replace("|", "\\|")
            lines.append(f"| {cell} | {ratio:.3f} | {100 * hit:.1f} |")
        if self.rank_accuracy is not None:
            lines += [
                "",
                f"Grounding accuracy per rank of visual activation ({self.n_rank_samples} samples with proposals)",
                "",
                "| activation rank | accuracy (%) |",
                "|---:|---:|",
            ]
            lines += [f"| {r + 1} | {100 * acc:.1f} |" for r, acc in enumerate(self.rank_accuracy)]
        return "\n".join(lines) + "\n"


def pilot_table(
    records: Sequence[PilotSample],
    token_names: Sequence[str] | None = None,
    region: Region = "majority",
    weighting: Weighting = "coverage",
) -> PilotTable:
    """Compute the pilot study's table (eq. 1, Fig. 2a, Fig. 2b) over annotated samples.

    Args:
        records: the samples; all must have the same number ``S`` of special tokens.
        token_names: labels of the tokens (default ``token 0`` ... ``token S-1``).
        region: how the GT box becomes grid cells for the attention ratio.
        weighting: how proposals meet the maps for the rank accuracy.
    """
    if not records:
        raise ValueError("no samples")
    sizes = {r.num_tokens for r in records}
    if len(sizes) != 1:
        raise ValueError(f"samples have different numbers of special tokens: {sorted(sizes)}")
    size = sizes.pop()
    names = list(token_names) if token_names is not None else [f"token {i}" for i in range(size)]
    if len(names) != size:
        raise ValueError(f"{len(names)} token names for {size} special tokens")
    ratios = np.stack(
        [token_attention_ratios(r.maps, r.gt_boxes, r.width, r.height, region) for r in records]
    )
    finite = np.isfinite(ratios)
    counts = finite.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_ratio = np.where(finite, ratios, 0.0).sum(axis=0) / counts
    n_rank = sum(r.proposals is not None for r in records)
    return PilotTable(
        token_names=names,
        mean_ratio=np.where(counts > 0, mean_ratio, np.nan),
        hit_ratio=hit_ratios(ratios),
        rank_accuracy=activation_rank_accuracy(records, weighting) if n_rank else None,
        n_samples=len(records),
        n_ratio_samples=int((~np.isnan(ratios).all(axis=1)).sum()),
        n_rank_samples=n_rank,
    )
