"""Visualisation: boxes land on exactly the right pixels and frames, files round-trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zsgrounding.toy.world import generate_one, object_tracks
from zsgrounding.tubes import TubeScorer
from zsgrounding.types import Clip, GroundingResult, Track, Tube
from zsgrounding.video import probe, sample_uniform, write_video
from zsgrounding.viz import (
    DEFAULT_COLOURS,
    SHEET_GAP,
    TRACK_COLOUR,
    annotate_frames,
    attention_grid_image,
    draw_boxes,
    overlay_heatmap,
    plot_temporal_scores,
    plot_viou_scatter,
    render_result,
    write_annotated,
)
from zsgrounding.viz.common import HEAT_CMAP, PANEL_COLOUR, _colour_table
from zsgrounding.viz.plots import viou_scatter_figure

T = 20  # frames used from the toy video
GT_COLOUR = DEFAULT_COLOURS["gt"]
PRED_COLOUR = DEFAULT_COLOURS["pred"]
GT_BOX = (30.0, 20.0, 70.0, 60.0)  # native 128x96 pixels
PRED_BOX = (90.0, 10.0, 120.0, 40.0)
TRACK_BOX = (10.0, 60.0, 40.0, 90.0)


@pytest.fixture(scope="module")
def toy():
    return generate_one(0)


@pytest.fixture(scope="module")
def frames(toy) -> np.ndarray:
    assert toy.num_frames >= T and (toy.width, toy.height) == (128, 96)
    return toy.frames[:T]


def fixed_tube(start: int, end: int, box: tuple[float, ...]) -> Tube:
    ids = np.arange(start, end)
    return Tube(start, end, ids, np.tile(box, (ids.size, 1)))


def tubes() -> dict[str, Tube]:
    return {"GT": fixed_tube(5, 12, GT_BOX), "pred": fixed_tube(8, T, PRED_BOX)}


def is_colour(img: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    return (img == np.asarray(colour, dtype=np.uint8)).all(-1)


def ring(x1: int, y1: int, x2: int, y2: int, width: int) -> np.ndarray:
    """Mask of the outermost ``width`` pixel rings of the box ``[x1, x2) x [y1, y2)``."""
    mask = np.zeros((y2 + 2, x2 + 2), dtype=bool)
    mask[y1:y2, x1:x2] = True
    mask[y1 + width : y2 - width, x1 + width : x2 - width] = False
    return mask


def check_box(video: np.ndarray, box: tuple[int, int, int, int], width: int, colour) -> None:
    """The box's outline is exactly its border: ring all ``colour``, none inside or beside it."""
    x1, y1, x2, y2 = box
    hit = is_colour(video, colour)
    mask = ring(x1, y1, x2, y2, width)
    assert hit[: mask.shape[0], : mask.shape[1]][mask].all()
    assert not hit[y1 + width : y2 - width, x1 + width : x2 - width].any()  # inside
    assert not hit[y1:y2, x1 - 1].any() and not hit[y1:y2, x2].any()  # left and right neighbours
    assert not hit[y2, x1:x2].any()  # below (the label tag may sit above)


def check_dashed_box(video: np.ndarray, box: tuple[int, int, int, int], width: int, colour) -> np.ndarray:
    """The ground truth's dashed outline: ``colour`` only on the box's border ring, with dashes on
    every side, gaps between them and all four corners drawn. Returns the ring's mask."""
    x1, y1, x2, y2 = box
    hit = is_colour(video, colour)
    mask = ring(x1, y1, x2, y2, width)
    on = hit[: mask.shape[0], : mask.shape[1]]
    beside = (on & ~mask)[y1:y2, x1 - 1 : x2 + 1]
    assert (
        not beside.any()
    )  # nothing inside the ring or left/right of it (a label tag may sit above or below)
    for side in (on[y1, x1:x2], on[y2 - 1, x1:x2], on[y1:y2, x1], on[y1:y2, x2 - 1]):
        assert 0.4 < side.mean() < 0.9, side.mean()  # dashes and gaps along every side
    assert on[y1, x1] and on[y1, x2 - 1] and on[y2 - 1, x1] and on[y2 - 1, x2 - 1]  # corners
    return mask


def colour_bar_run(img: np.ndarray, cmap: str = HEAT_CMAP) -> tuple[int, int, int] | None:
    """``(row, first column, length)`` of the longest horizontal run of ``cmap``'s colours in
    ``img`` whose colormap positions never decrease, or ``None``; checks it spans the colormap."""
    table = np.rint(_colour_table(cmap)).astype(np.uint8)
    lookup = {tuple(c): i for i, c in enumerate(table.tolist())}
    best: tuple[int, int, int] | None = None
    for r, row in enumerate(img):
        idx = np.array([lookup.get(tuple(px), -1) for px in row.tolist()])
        start = None
        for c in range(len(idx) + 1):
            inside = c < len(idx) and idx[c] >= 0 and (start is None or idx[c] >= idx[c - 1])
            if inside and start is None:
                start = c
            elif not inside and start is not None:
                if best is None or c - start > best[2]:
                    best = (r, start, c - start)
                start = c if c < len(idx) and idx[c] >= 0 else None
    if best is not None:
        r, c, n = best
        run = [lookup[tuple(px)] for px in img[r, c : c + n].tolist()]
        assert run[0] <= 3 and run[-1] >= 252, (run[0], run[-1])  # from the low to the high end
    return best


# --------------------------------------------------------------------------- heatmaps and boxes


def test_overlay_marks_the_peak_and_dims_the_rest():
    frame = np.full((96, 128, 3), 100, dtype=np.uint8)
    heat = np.random.default_rng(0).uniform(0, 0.5, size=(6, 8))
    heat[4, 2] = 10.0  # cell rows [64, 80), columns [32, 48)
    out = overlay_heatmap(frame, heat)
    assert out.shape == frame.shape and out.dtype == np.uint8
    hot = _colour_table(HEAT_CMAP)[-1]
    gap = np.abs(out.astype(float) - hot).sum(-1)  # how far each pixel is from the hot colour
    y, x = np.unravel_index(gap.argmin(), gap.shape)
    assert 64 <= y < 80 and 32 <= x < 48
    assert out[64:80, 32:48].astype(int).sum(-1).mean() > 1.5 * out[:32, 80:].astype(int).sum(-1).mean()
    cold = out[:32, 80:].astype(int)
    assert (cold < 100).all()  # dimmed where the map is low ...
    assert (cold.max(-1) - cold.min(-1) <= 6).all()  # ... and the grey stays grey


def test_overlay_keeps_low_heat_colours_and_paints_hot_cells():
    """A white square under a weak map stays light grey (not tinted), a red one stays red, and a
    hot cell takes the colormap's hot colour."""
    frame = np.full((128, 128, 3), 90, dtype=np.uint8)
    frame[4:28, 4:28] = 255  # white, cell (0, 0): heat 0
    frame[4:28, 68:92] = (220, 30, 30)  # red, cell (0, 2): heat 0.2 of the peak
    heat = np.zeros((4, 4))
    heat[0, 2] = heat[0, 1] = heat[0, 3] = heat[1, 2] = 0.2
    heat[3, 3] = 1.0  # pixels [112, 128) in both axes are at the peak (edge of the bilinear map)
    out = overlay_heatmap(frame, heat).astype(int)

    white = out[8:24, 8:24]
    assert (white.max(-1) - white.min(-1) <= 4).all()  # neutral: no yellow (or any) tint
    assert (white > 120).all() and (white < 200).all()  # dimmed towards grey, still light
    red = out[8:24, 72:88]
    assert (red[..., 0] > red[..., 1] + 60).all() and (red[..., 0] > red[..., 2] + 60).all()
    assert red[..., 0].mean() > 0.5 * 220  # darker but the frame's own red

    hot = np.rint(_colour_table(HEAT_CMAP)[-1])
    expected = np.rint(0.4 * 90 + 0.6 * hot)  # undimmed frame, the hot colour at alpha 0.6
    assert (np.abs(out[112:, 112:] - expected) <= 1).all()
    full = overlay_heatmap(frame, heat, alpha=1.0).astype(int)
    assert (np.abs(full[112:, 112:] - hot) <= 1).all()  # opaque: exactly the colormap's top


def test_overlay_range_and_flat_maps():
    frame = np.full((20, 30, 3), 50, dtype=np.uint8)
    assert np.array_equal(overlay_heatmap(frame, np.ones((3, 4))), frame)  # nothing to show
    full = overlay_heatmap(frame, np.ones((3, 4)), alpha=1.0, cmap="gray", vmin=0, vmax=1)
    assert (full == 255).all()  # the top of the gray map, fully opaque
    uniform = overlay_heatmap(
        frame, np.zeros((3, 4)), alpha=0.5, cmap="gray", vmin=0, vmax=1, weighted=False, dim=0.0
    )
    assert (uniform == 25).all()  # without dimming: black blended at half opacity everywhere
    dark = overlay_heatmap(frame, np.zeros((3, 4)), alpha=0.0, vmin=0, vmax=1, dim=1.0)
    assert (dark == np.asarray(PANEL_COLOUR)).all()  # fully dimmed: the panel's dark grey
    with pytest.raises(ValueError):
        overlay_heatmap(frame, np.ones((2, 3, 4)))


def test_draw_boxes_outline_and_label():
    frame = np.zeros((60, 80, 3), dtype=np.uint8)
    out = draw_boxes(frame, [((10.2, 20.0, 50.0, 40.0), (255, 0, 255), "cat"), ((np.nan,) * 4, "red", "x")])
    assert not frame.any()  # the input is untouched
    check_box(out, (10, 20, 50, 40), 2, (255, 0, 255))
    tag = is_colour(out[:20], (255, 0, 255))
    assert tag.sum() > 30  # a filled tag right above the box
    ys, xs = np.nonzero(tag)
    inside_tag = out[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    assert (~is_colour(inside_tag, (255, 0, 255))).sum() > 10  # with the label's ink on it
    assert not is_colour(out, (255, 0, 0)).any()  # NaN boxes are skipped


# --------------------------------------------------------------------------- annotated frames


def test_boxes_land_on_their_border_on_span_frames_only(frames):
    out = annotate_frames(frames, np.arange(T), tubes(), scale=2, line_width=2)
    assert out.shape[0] == T and out.shape[2] == 256 and out.dtype == np.uint8
    video, footer = out[:, :192], out[:, 192:]
    for t in range(T):
        if 5 <= t < 12:
            check_dashed_box(video[t], (60, 40, 140, 120), 2, GT_COLOUR)
        else:
            assert not is_colour(video[t], GT_COLOUR).any(), t
        if t >= 8:
            check_box(video[t], (180, 20, 240, 80), 2, PRED_COLOUR)
        else:
            assert not is_colour(video[t], PRED_COLOUR).any(), t
    # The legend's span marker is filled inside the span, hollow outside it.
    assert is_colour(footer[6], GT_COLOUR).sum() > is_colour(footer[2], GT_COLOUR).sum()
    assert is_colour(footer[10], PRED_COLOUR).sum() > is_colour(footer[3], PRED_COLOUR).sum()
    assert not np.array_equal(footer[3], footer[4])  # counter and cursor move


def test_resized_clip_boxes_use_native_coordinates(frames):
    small = np.stack([np.asarray(Image.fromarray(f).resize((64, 48))) for f in frames])
    clip = Clip(small, np.arange(T), np.arange(T) / 10.0, 10.0, T, 128, 96)
    out = annotate_frames(clip, None, tubes(), scale=4, line_width=2)
    assert out.shape[2] == 256
    check_dashed_box(out[6, :192], (60, 40, 140, 120), 2, GT_COLOUR)
    assert not is_colour(out[0, :192], GT_COLOUR).any()


def test_tracks_are_thin_grey_boxes(frames):
    track = Track(np.arange(T), np.tile(TRACK_BOX, (T, 1)), "shape")
    out = annotate_frames(frames, None, tubes(), tracks=[track], scale=2, line_width=2)
    check_box(out[0, :192], (20, 120, 80, 180), 1, TRACK_COLOUR)


def test_caption_header_and_evidence_overlay(frames):
    caption = "the big red circle that moves left while the small blue square stays still"
    plain = annotate_frames(frames, None, tubes(), scale=2)
    with_caption = annotate_frames(frames, None, tubes(), caption=caption, scale=2)
    header = with_caption.shape[1] - plain.shape[1]
    assert header > 30  # wrapped over at least two lines
    assert np.array_equal(with_caption[:, header:], plain)
    assert (with_caption[:, :header] > 200).any(-1).sum() > 50  # text ink
    assert (with_caption[:, :header] == with_caption[:1, :header]).all()

    rng = np.random.default_rng(1)
    evidence = rng.uniform(0, 0.2, size=(4, 6, 8))
    peaks = [(1, 1), (4, 6), (2, 7), (5, 0)]
    for k, (i, j) in enumerate(peaks):
        evidence[k, i, j] = 5.0
    shown = annotate_frames(
        frames, None, tubes(), evidence=evidence, evidence_frame_ids=[2, 7, 12, 17], scale=2
    )
    # Same frames, with one more footer row: the colour bar.
    assert shown.shape[0] == plain.shape[0] and shown.shape[2] == plain.shape[2]
    assert shown.shape[1] > plain.shape[1]
    for t, k in ((0, 0), (8, 1), (13, 2), (19, 3)):  # nearest sampled frame's map
        diff = np.abs(shown[t, :192].astype(int) - plain[t, :192]).sum(-1)
        y, x = np.unravel_index(diff.argmax(), diff.shape)
        i, j = peaks[k]
        assert i * 32 <= y < (i + 1) * 32 and j * 32 <= x < (j + 1) * 32, (t, y, x)
    with pytest.raises(ValueError):
        annotate_frames(frames, None, tubes(), evidence=evidence)  # 4 maps, 20 frames, no ids


def test_gt_stays_visible_over_an_equal_prediction(frames):
    same = fixed_tube(0, T, GT_BOX)
    # The prediction comes after the GT, so the old order would have drawn it on top.
    out = annotate_frames(frames, None, {"GT": same, "pred": same}, scale=2, line_width=2)
    video, footer = out[3, :192], out[3, 192:]
    mask = check_dashed_box(video, (60, 40, 140, 120), 2, GT_COLOUR)
    on_ring = (is_colour(video, GT_COLOUR) | is_colour(video, PRED_COLOUR))[: mask.shape[0], : mask.shape[1]]
    assert on_ring[mask].all()  # the prediction shows in the GT's gaps: both outlines visible
    assert is_colour(video, PRED_COLOUR)[: mask.shape[0], : mask.shape[1]][mask].sum() > 50

    # The legend: a dashed stroke after "GT" (runs of exactly the 8-pixel dash), a solid one after "pred".
    def runs(row: np.ndarray) -> list[int]:
        edges = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(int), [0]])))
        return list(edges[1::2] - edges[::2])

    assert any(runs(row).count(8) >= 2 for row in is_colour(footer, GT_COLOUR))
    assert any(20 in runs(row) for row in is_colour(footer, PRED_COLOUR))
    assert not any(runs(row).count(8) >= 2 for row in is_colour(footer, PRED_COLOUR))

    drawn = draw_boxes(
        np.zeros((60, 80, 3), np.uint8),
        [((10, 10, 60, 50), GT_COLOUR, None, "dashed"), ((10, 10, 60, 50), PRED_COLOUR, None)],
    )  # dashed boxes go on top whatever the order
    check_dashed_box(drawn, (10, 10, 60, 50), 2, GT_COLOUR)
    assert is_colour(drawn, PRED_COLOUR).sum() > 50


def test_annotated_frames_have_a_colour_bar(frames):
    evidence = np.random.default_rng(4).uniform(size=(T, 6, 8))
    plain = annotate_frames(frames, None, tubes(), scale=2)
    shown = annotate_frames(frames, None, tubes(), evidence=evidence, scale=2)
    assert colour_bar_run(plain[0]) is None or colour_bar_run(plain[0])[2] < 20
    r, c, n = colour_bar_run(shown[0, 192:])
    assert n > 256 // 3  # a wide strip between its two labels, low (left) to high (right)
    assert colour_bar_run(shown[7, 192:])[:2] == (r, c)  # the same place on every frame
    left, right = (
        shown[0, 192 + r - 3 : 192 + r + 4, : c - 2],
        shown[0, 192 + r - 3 : 192 + r + 4, c + n + 2 :],
    )
    assert (left > 200).all(-1).sum() > 10 and (right > 200).all(-1).sum() > 3  # its labels' ink


def test_scatter_labels_points_and_counts_coincident_ones(tmp_path: Path):
    a = np.array([0, 0.4, 0, 0.7, 0, 0.2, 0, 1, 0, 0.55, 0, np.nan])
    b = np.array([0, 0.5, 0, 0.3, 0, 0.25, 0, 1, 0, 0.6, 0, 0.5])
    ids = [f"clip_{i:02d}" for i in range(12)]
    fig = viou_scatter_figure("centre", a, "zero-shot", b, ids)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert any(t.startswith("×6 at (0, 0)") and "#0, 2, 4, 6, 8, 10" in t for t in texts)
    for k in (1, 3, 5, 7, 9):  # every other point labelled with its index; NaN sample 11 left out
        assert str(k) in texts
    assert "11" not in texts
    points = ax.collections[-1].get_offsets()
    assert len(points) == 11 and len(np.unique(np.round(points, 6), axis=0)) == 11  # none stacked
    zero = points[np.hypot(points[:, 0], points[:, 1]) < 0.05]
    assert len(zero) == 6 and np.abs(zero).max() <= 0.03  # fanned out around (0, 0), nearby
    again = viou_scatter_figure("centre", a, "zero-shot", b, ids).axes[0].collections[-1].get_offsets()
    assert np.array_equal(points, again)  # deterministic
    table = " ".join(t.get_text() for t in fig.axes[1].texts)
    assert "clip_00" in table and "clip_10" in table and "clip_11" not in table
    assert "equal 7" in ax.get_title()  # the six at (0, 0) and (1, 1)

    path = plot_viou_scatter(tmp_path / "s.png", "centre", a, "zero-shot", b)
    with Image.open(path) as png:
        assert png.format == "PNG"


# --------------------------------------------------------------------------- files


def test_gif_round_trip(tmp_path: Path, frames):
    out = annotate_frames(frames, None, tubes(), scale=2)
    path = write_annotated(tmp_path / "a.gif", out, fps=10, max_frames=10)
    with Image.open(path) as gif:
        assert gif.n_frames == 10
        assert gif.size == (out.shape[2], out.shape[1])
        assert gif.info["loop"] == 0
        assert gif.info["duration"] == 200  # every 2nd frame at 10 fps
        gif.seek(4)
        back = np.asarray(gif.convert("RGB")).astype(int)
    assert np.abs(back - out[8]).mean() < 6  # the palette keeps the picture
    fast = write_annotated(tmp_path / "fast.gif", out[:10], fps=100)
    with Image.open(fast) as gif:
        assert gif.n_frames == 5 and gif.info["duration"] == 20  # no frame delay under 20 ms


def test_mp4_readable_by_probe(tmp_path: Path, frames):
    out = annotate_frames(frames, None, tubes(), scale=2)[:, :-1]  # odd height: gets padded
    path = write_annotated(tmp_path / "a.mp4", out, fps=10, stride=2)
    info = probe(path)
    assert info.num_frames == 10 and info.fps == pytest.approx(5.0)
    assert (info.width, info.height) == (out.shape[2], out.shape[1] + out.shape[1] % 2)


def test_temporal_plot_png(tmp_path: Path):
    ids = np.array([1, 4, 7, 10, 13, 16])
    scores = {"chosen track": np.linspace(0, 1, 6), "evidence peak": np.linspace(0.2, 1, 6)}
    spans = {"GT": (5, 12), "pred": (8, 20)}
    path = plot_temporal_scores(tmp_path / "t.png", ids, scores, spans, 20, fps=10, size=(640, 240))
    with Image.open(path) as png:
        assert png.format == "PNG" and png.size == (640, 240)
        px = np.asarray(png.convert("RGB")).astype(int)
    greenish = (px[..., 1] > px[..., 0] + 20) & (px[..., 1] > px[..., 2] + 10)
    reddish = (px[..., 0] > px[..., 1] + 20) & (px[..., 0] > px[..., 2] + 20)
    assert greenish.sum() > 100 and reddish.sum() > 100  # the shaded spans
    with pytest.raises(ValueError):
        plot_temporal_scores(tmp_path / "bad.png", ids, {"x": np.zeros(3)}, {}, 20)


def test_attention_sheet_png(tmp_path: Path, frames):
    evidence = np.random.default_rng(2).uniform(size=(7, 6, 8))
    ids = np.arange(0, 14, 2)
    path = attention_grid_image(tmp_path / "s.png", frames[ids], evidence, ids, cols=3, tile_width=160)
    with Image.open(path) as png:
        assert png.format == "PNG"
        assert png.size[0] == 3 * 160 + 4 * SHEET_GAP
        assert png.size[1] > 3 * 120  # three rows of 160x120 tiles
        px = np.asarray(png.convert("RGB"))
    r, c, n = colour_bar_run(px)
    assert r > 3 * 120 and c == SHEET_GAP and n == px.shape[1] - 2 * SHEET_GAP  # under the tiles
    with pytest.raises(ValueError):
        attention_grid_image(tmp_path / "x.png", frames[:3], evidence, ids)


def test_render_result_writes_every_file(tmp_path: Path, toy):
    video = write_video(tmp_path / toy.key, toy.frames, toy.fps)
    clip = sample_uniform(video, 8)
    evidence = np.random.default_rng(3).uniform(size=(8, 6, 8))
    tracks = object_tracks(toy)
    result = TubeScorer().ground(evidence, tracks, clip.frame_ids, clip.num_frames, clip.width, clip.height)

    paths = render_result(tmp_path / "out", video, result, toy.caption, gt=toy.tube, tracks=tracks)
    assert set(paths) == {"video", "attention", "temporal"}
    assert all(p.is_file() and p.parent == tmp_path / "out" for p in paths.values())
    with Image.open(paths["video"]) as gif:
        assert gif.n_frames == toy.num_frames and gif.info["loop"] == 0
        assert gif.info["duration"] == 100  # real time at 10 fps
    for key in ("attention", "temporal"):
        with Image.open(paths[key]) as png:
            assert png.format == "PNG"

    paths = render_result(tmp_path / "out", clip, result, toy.caption, format="mp4", name="clip")
    assert probe(paths["video"]).num_frames == len(clip)

    bare = GroundingResult(tube=toy.tube)
    paths = render_result(tmp_path / "bare", clip, bare, toy.caption, gt=toy.tube)
    assert set(paths) == {"video", "temporal"}
