"""Charts drawn with matplotlib: a result's temporal scores, a comparison's metric bars and scatter.

matplotlib's object API on an explicit Agg canvas (never ``pyplot``), so nothing touches global
figure state or the backend.
"""

from __future__ import annotations

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


def plot_viou_scatter(path: Path | str, a: str, viou_a: np.ndarray, b: str, viou_b: np.ndarray) -> Path:
    """Per-sample vIoU of ``b`` against ``a``, one dot per sample, with the diagonal; saved as PNG.

    Args:
        path: the PNG to write.
        a, b: the names on the x and y axes.
        viou_a, viou_b: ``(n,)`` vIoU in [0, 1] of the same samples; a sample NaN in either is left out.

    Returns:
        ``path`` as a :class:`Path`.
    """
    path = Path(path)
    fig, ax = _figure((4.2, 4.2))
    xa, yb = np.asarray(viou_a, dtype=np.float64), np.asarray(viou_b, dtype=np.float64)
    ok = np.isfinite(xa) & np.isfinite(yb)
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="equal")
    ax.scatter(xa[ok], yb[ok], s=14, alpha=0.7)
    above, below = int((yb[ok] > xa[ok]).sum()), int((yb[ok] < xa[ok]).sum())
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel(f"{a}: vIoU")
    ax.set_ylabel(f"{b}: vIoU")
    ax.grid(alpha=0.3)
    ax.set_title(f"per sample ({int(ok.sum())}): {b} better {above}, {a} better {below}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


__all__ = ["plot_metric_bars", "plot_temporal_scores", "plot_viou_scatter"]
