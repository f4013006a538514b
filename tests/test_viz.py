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
    render_result,
    write_annotated,
)

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


# --------------------------------------------------------------------------- heatmaps and boxes


def test_overlay_changes_pixels_most_where_the_map_peaks():
    frame = np.full((96, 128, 3), 100, dtype=np.uint8)
    heat = np.random.default_rng(0).uniform(0, 0.5, size=(6, 8))
    heat[4, 2] = 10.0  # cell rows [64, 80), columns [32, 48)
    out = overlay_heatmap(frame, heat)
    assert out.shape == frame.shape and out.dtype == np.uint8
    diff = np.abs(out.astype(int) - frame).sum(-1)
    y, x = np.unravel_index(diff.argmax(), diff.shape)
    assert 64 <= y < 80 and 32 <= x < 48
    assert diff[64:80, 32:48].mean() > 5 * diff[:32, 80:].mean()


def test_overlay_range_and_flat_maps():
    frame = np.full((20, 30, 3), 50, dtype=np.uint8)
    assert np.array_equal(overlay_heatmap(frame, np.ones((3, 4))), frame)  # nothing to show
    full = overlay_heatmap(frame, np.ones((3, 4)), alpha=1.0, cmap="gray", vmin=0, vmax=1)
    assert (full == 255).all()  # the top of the gray map, fully opaque
    uniform = overlay_heatmap(frame, np.zeros((3, 4)), alpha=0.5, cmap="gray", vmin=0, vmax=1, weighted=False)
    assert (uniform == 25).all()  # black blended at half opacity everywhere
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
            check_box(video[t], (60, 40, 140, 120), 2, GT_COLOUR)
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
    check_box(out[6, :192], (60, 40, 140, 120), 2, GT_COLOUR)
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
    assert shown.shape == plain.shape
    for t, k in ((0, 0), (8, 1), (13, 2), (19, 3)):  # nearest sampled frame's map
        diff = np.abs(shown[t, :192].astype(int) - plain[t, :192]).sum(-1)
        y, x = np.unravel_index(diff.argmax(), diff.shape)
        i, j = peaks[k]
        assert i * 32 <= y < (i + 1) * 32 and j * 32 <= x < (j + 1) * 32, (t, y, x)
    with pytest.raises(ValueError):
        annotate_frames(frames, None, tubes(), evidence=evidence)  # 4 maps, 20 frames, no ids


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
