"""Charts drawn with matplotlib: a result's temporal scores, a comparison's metric bars and scatter
(points labelled, coincident ones fanned out and counted).

matplotlib's object API on an explicit Agg canvas (never ``pyplot``), so nothing touches global
figure state or the backend.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from zsgrounding.viz.common import Colour, _as_numpy, resolve_colours


def _figure(size: tuple[float, float], dpi: int = 100) -> tuple[Figure, Axes]:
    """A figure of ``size`` inches with one axes."""
    fig = Figure(figsize=size, dpi=dpi)
    FigureCanvasAgg(fig)  # the Agg canvas, attached to this figure only
    return fig, fig.add_subplot()


def plot_temporal_scores(
    path: Path | str,
    frame_ids: Sequence[int] | np.ndarray,
    scores: Mapping[str, Any],
    spans: Mapping[str, tuple[int, int]],
    num_frames: int,
    fps: float | None = None,
    *,
    colours: Mapping[str, Colour] | None = None,
    size: tuple[int, int] = (800, 300),
    dpi: int = 100,
    title: str | None = None,
) -> Path:
    """Per-frame score curves over the native timeline, with spans shaded; saved as PNG.

    Args:
        path: the PNG to write.
        frame_ids: ``(T,)`` native ids the scores refer to (the sampled frames).
        scores: name -> ``(T,)`` scores (e.g. the chosen track's frame scores, the evidence peak).
        spans: name -> half-open native ``(start, end)``, e.g. ``{"GT": ..., "pred": ...}``.
        num_frames: frames in the video (the x range).
        fps: native frame rate; adds a seconds axis on top.
        colours: name -> colour, as :func:`zsgrounding.viz.annotate_frames`.
        size: image ``(width, height)`` in pixels, exactly.
        title: optional title (e.g. the query).

    Returns:
        ``path`` as a :class:`Path`.
    """
    path = Path(path)
    fids = np.asarray(frame_ids, dtype=np.float64).reshape(-1)
    palette = {k: tuple(c / 255 for c in v) for k, v in resolve_colours([*spans, *scores], colours).items()}
    fig, ax = _figure((size[0] / dpi, size[1] / dpi), dpi)
    for name, (start, end) in spans.items():
        if end > start:
            ax.axvspan(
                start, end, color=palette[name], alpha=0.2, lw=0, label=f"{name} span [{start}, {end})"
            )
            for edge in (start, end):
                ax.axvline(edge, color=palette[name], lw=0.8, ls="--")
    styles = ("-", "--", ":", "-.")  # curves that coincide stay distinguishable
    for i, (name, values) in enumerate(scores.items()):
        y = _as_numpy(values).reshape(-1)
        if y.shape != fids.shape:
            raise ValueError(f"scores {name!r} have {y.size} values for {fids.size} frame ids")
        style = styles[i % len(styles)]
        ax.plot(fids, y, style, marker="o", ms=3, lw=2.5 - 0.5 * min(i, 2), color=palette[name], label=name)
    ax.set_xlim(0, max(int(num_frames), 1))
    ax.set_xlabel("native frame")
    ax.set_ylabel("score")
    ax.grid(alpha=0.3)
    if spans or scores:
        ax.legend(loc="upper right", fontsize=8, framealpha=0.85)
    if fps:
        rate = float(fps)
        top = ax.secondary_xaxis("top", functions=(lambda f: f / rate, lambda sec: sec * rate))
        top.set_xlabel("seconds")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=dpi)  # no tight bbox: the size stays as asked
    return path


def plot_metric_bars(
    path: Path | str, metrics: Mapping[str, Mapping[str, Any]], columns: Sequence[str], title: str
) -> Path:
    """Grouped bars, one group per metric and one bar per row of ``metrics``; saved as PNG.

    Args:
        path: the PNG to write.
        metrics: row name (e.g. a grounder) -> metric -> value in percent; a missing or ``None``
            value is drawn as 0.
        columns: the metrics shown, in this order.
        title: the line above the bars.

    Returns:
        ``path`` as a :class:`Path`.
    """
    path = Path(path)
    fig, ax = _figure((1.2 * len(columns) + 0.3 * len(metrics) + 2, 3.6))
    width = 0.8 / max(len(metrics), 1)
    x = np.arange(len(columns))
    for k, (name, row) in enumerate(metrics.items()):
        values = [float(row.get(c, 0.0) or 0.0) for c in columns]
        bars = ax.bar(x - 0.4 + (k + 0.5) * width, values, width, label=name)
        ax.bar_label(bars, fmt="%.1f", fontsize=6, padding=1)
    ax.set_xticks(x, columns)
    ax.set_ylabel("percent")
    ax.set_ylim(0, 105)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper right", framealpha=0.85)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


MAX_POINT_LABELS = 60
"""A scatter plot labels every point (and lists the sample ids) up to this many samples."""
_SAME = 1e-3  # points closer than this in both vIoUs are drawn as one coincident group
_SPREAD = 0.025  # radius (in vIoU) over which a coincident group's points are fanned out
_GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))


def _fan_out(count: int, radius: float) -> np.ndarray:
    """``(count, 2)`` offsets spreading ``count`` coincident points on a small sunflower disc.

    Deterministic (no random numbers): the ``k``-th point sits at angle ``k`` golden angles and
    radius ``radius * sqrt((k + 0.5) / count)``, so the points are evenly spaced and never stack.
    """
    k = np.arange(count, dtype=np.float64)
    r = radius * np.sqrt((k + 0.5) / max(count, 1))
    return np.stack([r * np.cos(k * _GOLDEN_ANGLE), r * np.sin(k * _GOLDEN_ANGLE)], axis=1)


def _groups(x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    """Indices of the points that coincide (within :data:`_SAME`), one array per position, in the
    order of their first point."""
    keys = np.stack([np.rint(x / _SAME), np.rint(y / _SAME)], axis=1)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    return [np.flatnonzero(inverse == g) for g in np.argsort(first)]


def _short(text: str, n: int = 28) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _index_list(indices: Sequence[int], n: int = 8) -> str:
    shown = ", ".join(f"{i}" for i in indices[:n])
    return f"#{shown}" + (f" +{len(indices) - n}" if len(indices) > n else "")


def viou_scatter_figure(
    a: str,
    viou_a: np.ndarray,
    b: str,
    viou_b: np.ndarray,
    ids: Sequence[str] | None = None,
) -> Figure:
    """The figure of :func:`plot_viou_scatter` (not saved), for callers and tests to inspect.

    Every sample is labelled with its short index ``#k`` (its position in ``viou_a``); with
    ``ids`` a table beside the axes lists ``k: id``. Points that coincide (the usual case at
    ``(0, 0)`` and ``(1, 1)``) are fanned out deterministically on a small disc around their
    position and annotated once with their count and indices, e.g. ``×6 at (0, 0)`` and
    ``#0, 2, 5, ...``. Above :data:`MAX_POINT_LABELS` samples only the groups are annotated and
    the table is left out.

    Args:
        a, b: the names on the x and y axes.
        viou_a, viou_b: ``(n,)`` vIoU in [0, 1] of the same samples; a sample NaN in either is left out.
        ids: ``(n,)`` sample ids, optional.

    Returns:
        the figure, on its own Agg canvas.
    """
    xa, yb = (
        np.asarray(viou_a, dtype=np.float64).reshape(-1),
        np.asarray(viou_b, dtype=np.float64).reshape(-1),
    )
    if xa.shape != yb.shape:
        raise ValueError(f"{xa.size} vIoUs of {a!r} but {yb.size} of {b!r}")
    if ids is not None and len(ids) != xa.size:
        raise ValueError(f"{len(ids)} ids for {xa.size} samples")
    ok = np.isfinite(xa) & np.isfinite(yb)
    index = np.flatnonzero(ok)  # sample positions of the points drawn
    x, y = xa[ok], yb[ok]
    labelled = index.size <= MAX_POINT_LABELS
    table = ids is not None and index.size > 0 and labelled
    fig = Figure(figsize=(6.6 if table else 4.4, 4.4), dpi=100)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(1, 2, width_ratios=(4.4, 2.2)) if table else fig.add_gridspec(1, 1)
    ax = fig.add_subplot(grid[0, 0])
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="equal")
    px, py = x.copy(), y.copy()
    for members in _groups(x, y):
        cx, cy = float(x[members[0]]), float(y[members[0]])
        if members.size > 1:
            offsets = _fan_out(members.size, _SPREAD)
            px[members], py[members] = cx + offsets[:, 0], cy + offsets[:, 1]
            ha = "left" if cx < 0.5 else "right"
            va = "bottom" if cy < 0.5 else "top"
            dx, dy = (8 if ha == "left" else -8), (8 if va == "bottom" else -8)
            text = f"×{members.size} at ({cx:.2g}, {cy:.2g})\n{_index_list(index[members].tolist())}"
            ax.annotate(
                text,
                (cx, cy),
                xytext=(dx, dy),
                textcoords="offset points",
                ha=ha,
                va=va,
                fontsize=6.5,
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "0.6", "alpha": 0.85},
            )
        elif labelled:
            ax.annotate(
                f"{index[members[0]]}",
                (cx, cy),
                xytext=(3, 3),
                textcoords="offset points",
                fontsize=6,
                color="0.25",
            )
    ax.scatter(px, py, s=16, alpha=0.75, edgecolors="white", linewidths=0.5, zorder=3)
    above, below = int((y > x).sum()), int((y < x).sum())
    pad = _SPREAD + 0.02
    ax.set_xlim(-pad, 1 + pad)
    ax.set_ylim(-pad, 1 + pad)
    ax.set_aspect("equal")
    ax.set_xlabel(f"{a}: vIoU")
    ax.set_ylabel(f"{b}: vIoU")
    ax.grid(alpha=0.3)
    ties = int(index.size) - above - below
    ax.set_title(
        f"per sample ({int(index.size)}): {b} better {above}, {a} better {below}, equal {ties}", fontsize=8
    )
    if table and ids is not None:
        side = fig.add_subplot(grid[0, 1])
        side.axis("off")
        lines = [f"{k:>3}  {_short(str(ids[k]))}" for k in index.tolist()]
        side.text(
            0.0,
            1.0,
            "\n".join(["  #  sample", *lines]),
            va="top",
            ha="left",
            family="monospace",
            fontsize=max(3.5, min(6.5, 300 / (len(lines) + 1))),
            transform=side.transAxes,
        )
    fig.tight_layout()
    return fig


def plot_viou_scatter(
    path: Path | str,
    a: str,
    viou_a: np.ndarray,
    b: str,
    viou_b: np.ndarray,
    *,
    ids: Sequence[str] | None = None,
) -> Path:
    """Per-sample vIoU of ``b`` against ``a``, one dot per sample, with the diagonal; saved as PNG.

    Points are labelled with their sample index (and ``ids`` listed beside the axes when given);
    coincident points are fanned out and annotated with their count: see :func:`viou_scatter_figure`.

    Args:
        path: the PNG to write.
        a, b: the names on the x and y axes.
        viou_a, viou_b: ``(n,)`` vIoU in [0, 1] of the same samples; a sample NaN in either is left out.
        ids: ``(n,)`` sample ids, optional.

    Returns:
        ``path`` as a :class:`Path`.
    """
    path = Path(path)
    viou_scatter_figure(a, viou_a, b, viou_b, ids).savefig(path, format="png")
    return path


__all__ = [
    "MAX_POINT_LABELS",
    "plot_metric_bars",
    "plot_temporal_scores",
    "plot_viou_scatter",
    "viou_scatter_figure",
]
