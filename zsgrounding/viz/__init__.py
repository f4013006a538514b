"""Pictures of grounding results: annotated videos and GIFs, attention overlays, temporal score plots.

Frames are drawn on with Pillow as ``(H, W, 3)`` uint8 RGB arrays. Plots use matplotlib's object API
on an explicit Agg canvas (never ``pyplot``), so nothing touches global figure state or the backend.

Boxes are pixel ``xyxy`` in the video's native size (design.md); frames may have been decoded at
another size, so every drawing call rescales boxes from the native size to the frame it draws on.
Evidence maps are ``(T, h, w)`` on the model's token grid, assumed to cover the whole frame (as in
:mod:`zsgrounding.tubes`), and are upsampled bilinearly onto the frame: the frame is dimmed where a
map is low and coloured with a perceptual colormap (:data:`HEAT_CMAP`) where it is high, with a
colour bar beside. The ground truth's box is dashed and drawn over the predictions, so an equal
prediction shows in its gaps.

Modules, one job each:

* :mod:`~zsgrounding.viz.common`: the colour scheme, fonts and text, array checks;
* :mod:`~zsgrounding.viz.draw`: heat maps and labelled boxes on one frame;
* :mod:`~zsgrounding.viz.video`: annotated frames (:func:`annotate_frames`), written as GIF or video;
* :mod:`~zsgrounding.viz.attention`: attention sheets (:func:`attention_grid_image`);
* :mod:`~zsgrounding.viz.plots`: matplotlib charts (temporal scores, a comparison's bars and scatter);
* :mod:`~zsgrounding.viz.result`: all pictures of one grounding result (:func:`render_result`).
"""

from __future__ import annotations

from zsgrounding.viz.attention import SHEET_GAP, attention_grid_image
from zsgrounding.viz.common import (
    DEFAULT_COLOURS,
    EXTRA_COLOURS,
    HEAT_CMAP,
    TRACK_COLOUR,
    Colour,
    is_ground_truth,
    resolve_colours,
)
from zsgrounding.viz.draw import draw_boxes, overlay_heatmap
from zsgrounding.viz.plots import (
    plot_metric_bars,
    plot_temporal_scores,
    plot_viou_scatter,
    viou_scatter_figure,
)
from zsgrounding.viz.result import render_result
from zsgrounding.viz.video import MIN_WIDTH, annotate_frames, write_annotated

__all__ = [
    "DEFAULT_COLOURS",
    "EXTRA_COLOURS",
    "HEAT_CMAP",
    "MIN_WIDTH",
    "SHEET_GAP",
    "TRACK_COLOUR",
    "Colour",
    "annotate_frames",
    "attention_grid_image",
    "draw_boxes",
    "is_ground_truth",
    "overlay_heatmap",
    "plot_metric_bars",
    "plot_temporal_scores",
    "plot_viou_scatter",
    "render_result",
    "resolve_colours",
    "viou_scatter_figure",
    "write_annotated",
]
