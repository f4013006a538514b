"""Annotated videos: tubes, tracks, attention and text drawn on every frame, written as GIF or video.

Boxes are pixel ``xyxy`` in the video's native size (design.md); frames may have been decoded at
another size, so every drawing call rescales boxes from the native size to the frame it draws on.
Evidence maps are ``(T, h, w)`` on the model's token grid, assumed to cover the whole frame (as in
:mod:`zsgrounding.tubes`), and are upsampled bilinearly onto the frame.

Layout of an annotated frame (:func:`annotate_frames`), top to bottom: a header with the caption
(only when a caption is given), the video scaled by an integer factor (the attention map, when
given, dims the frame where it is low and colours it where it is high; the ground truth's box is
dashed and on top), and a footer with the frame counter, the legend (a tube's swatch is filled
while the frame is inside its span, hollow outside, followed by its outline's style), the
attention colour bar (only with evidence) and one timeline strip per tube showing its span and a
cursor at the current frame.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from zsgrounding.types import Clip, Track, Tube
from zsgrounding.video import write_video
from zsgrounding.viz.common import (
    DIM,
    HEAT_CMAP,
    PANEL_COLOUR,
    RGB,
    TEXT_COLOUR,
    TRACK_COLOUR,
    Colour,
    Font,
    Norm,
    _as_numpy,
    _check_frames,
    _clamp,
    _colour_bar,
    _font,
    _line_height,
    _text_width,
    _wrap,
    is_ground_truth,
    resolve_colours,
)
from zsgrounding.viz.draw import _dash_pattern, _dash_runs, _paint_box, _pixel_box, overlay_heatmap

MIN_WIDTH = 320  # auto scale: small frames are enlarged by an integer factor to at least this width
_STRIP_H = 4  # height of a tube's timeline strip in the footer
_CURSOR_H = 3  # height of the current-frame tick above the strips
_PAD = 4  # panel padding
_MIN_GIF_MS = 20  # browsers play shorter GIF frame delays at 100 ms, so never go below this


# --------------------------------------------------------------------------- annotated frames


class _Footer:
    """The panel under the video: counter, legend with span markers and outline styles, the
    attention colour bar (with evidence), timeline strips."""

    def __init__(
        self,
        width: int,
        tubes: Mapping[str, Tube],
        colours: Mapping[str, RGB],
        total: int,
        fps: float | None,
        font: Font,
        with_tracks: bool,
        line_width: int = 2,
        heat: tuple[str, str, str] | None = None,
    ) -> None:
        self.width, self.tubes, self.colours, self.total, self.fps, self.font = (
            width,
            tubes,
            colours,
            max(int(total), 1),
            fps,
            font,
        )
        self.line_h = _line_height(font)
        self.swatch = max(6, self.line_h - 5)
        self.line_width = max(1, min(int(line_width), self.swatch // 2))
        dash, gap = _dash_pattern(self.line_width)
        self.sample = 2 * dash + gap  # length of a legend entry's outline sample: two dashes
        entries = [*tubes, *(["tracks"] if with_tracks else [])]
        widths = [_text_width(font, self._counter(self.total - 1)) + 2]
        widths += [self.swatch + 4 + _text_width(font, name) + 4 + self.sample for name in tubes]
        widths += [self.swatch + 4 + _text_width(font, "tracks")] if with_tracks else []
        self.positions: list[tuple[int, int]] = []
        x, y = _PAD, _PAD
        for w in widths:  # flow layout, wrapping to new lines
            if x > _PAD and x + w > width - _PAD:
                x, y = _PAD, y + self.line_h
            self.positions.append((x, y))
            x += w + 10
        self.bar_y = y + self.line_h if heat else None  # the colour bar's row, under the legend
        y_last = y + (self.line_h if heat else 0)
        self.strip_top = y_last + self.line_h + _CURSOR_H + 2  # the cursor runs just above the strips
        self.height = self.strip_top + len(tubes) * (_STRIP_H + 2) + _PAD
        self.template = self._template(entries, heat)

    def _counter(self, frame_id: int) -> str:
        text = f"frame {frame_id}/{self.total}"
        return f"{text}  {frame_id / self.fps:.2f}s" if self.fps else text

    def _x(self, frame: float) -> int:
        return _PAD + round(frame / self.total * (self.width - 2 * _PAD))

    def _template(self, entries: list[str], heat: tuple[str, str, str] | None) -> Image.Image:
        image = Image.new("RGB", (self.width, self.height), PANEL_COLOUR)
        draw = ImageDraw.Draw(image)
        for name, (x, y) in zip(entries, self.positions[1:], strict=True):
            draw.text((x + self.swatch + 4, y), name, fill=TEXT_COLOUR, font=self.font)
            if name in self.tubes:  # the outline's style: GT dashed, the others solid
                self._outline_sample(draw, x + self.swatch + 8 + _text_width(self.font, name), y, name)
        for i, (name, tube) in enumerate(self.tubes.items()):
            top = self.strip_top + i * (_STRIP_H + 2)
            draw.rectangle([_PAD, top, self.width - _PAD - 1, top + _STRIP_H - 1], fill=(64, 64, 64))
            if tube.end > tube.start:
                x1, x2 = self._x(tube.start), max(self._x(tube.end) - 1, self._x(tube.start))
                draw.rectangle([x1, top, x2, top + _STRIP_H - 1], fill=self.colours[name])
        if len(entries) > len(self.tubes):  # the proposal tracks' entry: a grey outline
            x, y = self.positions[-1]
            self._swatch(draw, x, y, TRACK_COLOUR, filled=False)
        if heat is not None and self.bar_y is not None:
            self._colour_bar(image, draw, self.bar_y, *heat)
        return image

    def _outline_sample(self, draw: ImageDraw.ImageDraw, x: int, y: int, name: str) -> None:
        """A short horizontal stroke drawn like the tube's box outline (dashed for the GT)."""
        top = y + (self.line_h - self.line_width) // 2
        runs = _dash_runs(self.sample, *_dash_pattern(self.line_width)) if is_ground_truth(name) else None
        for a, b in runs or [(0, self.sample)]:
            draw.rectangle([x + a, top, x + b - 1, top + self.line_width - 1], fill=self.colours[name])

    def _colour_bar(
        self, image: Image.Image, draw: ImageDraw.ImageDraw, y: int, cmap: str, low: str, high: str
    ) -> None:
        """``attention <low> [cmap from its low to its high end] <high>`` on the row at ``y``."""
        x = _PAD
        for text in ("attention", low):
            draw.text((x, y), text, fill=TEXT_COLOUR, font=self.font)
            x += _text_width(self.font, text) + 6
        right = self.width - _PAD - _text_width(self.font, high)
        draw.text((right, y), high, fill=TEXT_COLOUR, font=self.font)
        bar_h = max(4, self.line_h - 6)
        bar_w = right - 6 - x
        if bar_w > 0:
            image.paste(_colour_bar(bar_w, bar_h, cmap), (x, y + (self.line_h - bar_h) // 2))

    def _swatch(self, draw: ImageDraw.ImageDraw, x: int, y: int, colour: RGB, filled: bool) -> None:
        top = y + (self.line_h - self.swatch) // 2
        box = [x, top, x + self.swatch - 1, top + self.swatch - 1]
        draw.rectangle(box, fill=colour if filled else None, outline=colour, width=2)

    def render(self, frame_id: int) -> np.ndarray:
        image = self.template.copy()
        draw = ImageDraw.Draw(image)
        draw.text(self.positions[0], self._counter(frame_id), fill=TEXT_COLOUR, font=self.font)
        for (name, tube), (x, y) in zip(self.tubes.items(), self.positions[1:], strict=False):
            self._swatch(draw, x, y, self.colours[name], filled=tube.start <= frame_id < tube.end)
        if self.tubes:
            x1 = self._x(frame_id)
            x2 = max(self._x(frame_id + 1) - 1, x1)
            # A tick above the strips, not over them, so each span stays whole on every frame.
            draw.rectangle([x1, self.strip_top - _CURSOR_H - 1, x2, self.strip_top - 2], fill=(255, 255, 255))
        return np.array(image)


def _header(caption: str | None, width: int, font: Font) -> np.ndarray:
    """The caption panel ``(h, width, 3)``; zero rows without a caption."""
    if not caption:
        return np.zeros((0, width, 3), dtype=np.uint8)
    lines = _wrap(caption, font, width - 2 * _PAD)
    line_h = _line_height(font)
    image = Image.new("RGB", (width, 2 * _PAD + len(lines) * line_h), PANEL_COLOUR)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((_PAD, _PAD + i * line_h), line, fill=TEXT_COLOUR, font=font)
    return np.array(image)


def _nearest(ids: np.ndarray, to: np.ndarray) -> np.ndarray:
    """Index into ``to`` of the nearest entry for every value of ``ids``."""
    return np.abs(ids[:, None] - to[None, :]).argmin(axis=1)


def annotate_frames(
    clip_or_frames: Clip | np.ndarray,
    frame_ids: Sequence[int] | np.ndarray | None,
    tubes: Mapping[str, Tube],
    colours: Mapping[str, Colour] | None = None,
    evidence: Any = None,
    evidence_frame_ids: Sequence[int] | np.ndarray | None = None,
    caption: str | None = None,
    tracks: Sequence[Track] | None = None,
    *,
    native_size: tuple[int, int] | None = None,
    num_frames: int | None = None,
    fps: float | None = None,
    scale: int | None = None,
    line_width: int | None = None,
    font_size: int | None = None,
    alpha: float = 0.6,
    cmap: str = HEAT_CMAP,
    dim: float = DIM,
    evidence_norm: Norm = "global",
) -> np.ndarray:
    """Draw tubes, tracks, attention and text on every frame.

    Args:
        clip_or_frames: a :class:`Clip` (its ids, native size, frame count and fps are used) or
            ``(T, H, W, 3)`` uint8 frames.
        frame_ids: ``(T,)`` native ids of the frames; ``None``: the clip's, or ``0..T-1``.
        tubes: name -> tube; a tube's box shows on the frames inside its span where it has one.
            Names label the boxes and the legend. Boxes are solid outlines drawn in this order
            (later on top), except the ground truth's (``GT``/``ground truth``, any case): a
            dashed outline drawn last, so it stays visible over a prediction on the same pixels,
            which shows in its gaps. The legend shows each tube's outline style.
        colours: name -> colour, overriding :data:`DEFAULT_COLOURS` (``GT`` green, ``pred`` red,
            ``SpaceVLLM`` blue; other names get :data:`EXTRA_COLOURS`).
        evidence: optional ``(S, h, w)`` maps; each frame shows the map of the nearest sampled frame.
        evidence_frame_ids: ``(S,)`` native ids of the maps; default ``frame_ids`` when ``S == T``.
        caption: text wrapped in a header above the video.
        tracks: proposal tracks, drawn as thin grey boxes under the tubes.
        native_size: ``(width, height)`` the boxes are expressed in; default the clip's native
            size, or the frames' size for plain arrays.
        num_frames: frames in the whole video (counter and timeline); default the clip's, else
            one past the last frame or tube end.
        fps: native frame rate, to show seconds; default the clip's.
        scale: integer enlargement of the video (nearest neighbour); default the smallest one
            making it at least :data:`MIN_WIDTH` wide.
        line_width, font_size: default from the output width.
        alpha, cmap, dim: evidence overlay (see :func:`overlay_heatmap`): the frame is dimmed
            where the map is low and coloured where it is high. With evidence the footer gets a
            colour bar of ``cmap`` labelled with the range's min and max (``"global"``) or
            ``low``/``high`` (``"frame"``).
        evidence_norm: ``"global"``: one colour range for all maps, so weak frames look weak;
            ``"frame"``: each map stretched to its own range.

    Returns:
        ``(T, header + H * scale + footer, W * scale, 3)`` uint8. The video occupies rows
        ``[header, header + H * scale)``; ``header`` is 0 without a caption.
    """
    if isinstance(clip_or_frames, Clip):
        clip = clip_or_frames
        frames = _check_frames(clip.frames)
        ids = clip.frame_ids if frame_ids is None else frame_ids
        native_size = native_size or (clip.width, clip.height)
        num_frames = num_frames or clip.num_frames
        fps = fps or clip.fps
    else:
        frames = _check_frames(clip_or_frames)
        ids = np.arange(frames.shape[0]) if frame_ids is None else frame_ids
    fids = np.asarray(ids, dtype=np.int64).reshape(-1)
    T, H, W = frames.shape[:3]
    if fids.size != T:
        raise ValueError(f"{T} frames but {fids.size} frame ids")
    s = int(scale) if scale else max(1, math.ceil(MIN_WIDTH / W))
    if s < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    out_w, out_h = W * s, H * s
    nat_w, nat_h = native_size or (W, H)
    sx, sy = out_w / nat_w, out_h / nat_h
    font = _font(font_size or _clamp(out_w / 32, 11, 22))
    lw = line_width or _clamp(out_w / 200, 2, 4)
    palette = resolve_colours(list(tubes), colours)
    ends = [int(fids.max()) + 1 if T else 1, *(t.end for t in tubes.values())]
    total = int(num_frames) if num_frames else max(ends)

    maps, nearest, vrange = None, None, (None, None)
    if evidence is not None:
        maps = _as_numpy(evidence)
        if maps.ndim != 3:
            raise ValueError(f"evidence must be (S, h, w), got {maps.shape}")
        if evidence_frame_ids is None:
            if maps.shape[0] != T:
                raise ValueError(f"{maps.shape[0]} evidence maps for {T} frames: pass evidence_frame_ids")
            evidence_frame_ids = fids
        ev_ids = np.asarray(evidence_frame_ids, dtype=np.int64).reshape(-1)
        if ev_ids.size != maps.shape[0]:
            raise ValueError(f"{maps.shape[0]} evidence maps but {ev_ids.size} evidence frame ids")
        nearest = _nearest(fids, ev_ids)
        if evidence_norm == "global":
            finite = maps[np.isfinite(maps)]
            vrange = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        elif evidence_norm != "frame":
            raise ValueError(f"unknown evidence_norm {evidence_norm!r}: use 'global' or 'frame'")

    heat = None
    if maps is not None:
        lo, hi = vrange
        labels = (f"{lo:.3g}", f"{hi:.3g}") if lo is not None and hi is not None else ("low", "high")
        heat = (cmap, *labels)
    header = _header(caption, out_w, font)
    footer = _Footer(out_w, tubes, palette, total, fps, font, bool(tracks), lw, heat)
    # Predictions first, in order; the ground truth last and dashed, so neither hides the other.
    order = sorted(tubes, key=is_ground_truth)
    top = header.shape[0]
    out = np.empty((T, top + out_h + footer.height, out_w, 3), dtype=np.uint8)
    for t in range(T):
        fid = int(fids[t])
        img = frames[t] if s == 1 else np.repeat(np.repeat(frames[t], s, axis=0), s, axis=1)
        if maps is not None and nearest is not None:
            img = overlay_heatmap(img, maps[nearest[t]], alpha, cmap, vmin=vrange[0], vmax=vrange[1], dim=dim)
        image = Image.fromarray(np.ascontiguousarray(img))
        draw = ImageDraw.Draw(image)
        for track in tracks or ():
            box = _pixel_box(track.boxes_at([fid])[0], sx, sy)
            if box is not None:
                draw.rectangle([box[0], box[1], box[2] - 1, box[3] - 1], outline=TRACK_COLOUR, width=1)
        taken: list[tuple[int, int, int, int]] = []
        for name in order:
            tube = tubes[name]
            if not tube.start <= fid < tube.end:
                continue
            box = _pixel_box(tube.boxes_at([fid])[0], sx, sy)
            if box is not None:
                dashed = is_ground_truth(name)
                _paint_box(draw, image.size, box, palette[name], name, lw, font, taken, dashed=dashed)
        out[t, :top] = header
        out[t, top : top + out_h] = np.asarray(image)
        out[t, top + out_h :] = footer.render(fid)
    return out


# --------------------------------------------------------------------------- writing


def _stride(count: int, fps: float, max_frames: int | None, stride: int | None, gif: bool) -> int:
    if stride is not None:
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        return int(stride)
    step = 1
    if max_frames is not None:
        if max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        step = math.ceil(count / max_frames)
    if gif:
        step = max(step, math.ceil(_MIN_GIF_MS * fps / 1000.0 - 1e-9))
    return max(step, 1)


def _write_gif(path: Path, frames: np.ndarray, duration_ms: float) -> None:
    # One palette for all frames (from a few spread-out frames) keeps colours from flickering.
    picks = np.unique(np.linspace(0, frames.shape[0] - 1, min(frames.shape[0], 8)).round().astype(int))
    palette = Image.fromarray(np.concatenate(list(frames[picks]), axis=0)).quantize(
        colors=256, method=Image.Quantize.FASTOCTREE
    )
    images = [Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    images[0].save(
        path,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=max(_MIN_GIF_MS, round(duration_ms)),
        loop=0,
        optimize=False,
    )


def write_annotated(
    path: Path | str,
    frames: np.ndarray,
    fps: float,
    *,
    max_frames: int | None = None,
    stride: int | None = None,
) -> Path:
    """Write annotated frames as a GIF (``.gif``) or a video (any suffix :func:`write_video` knows).

    Every ``stride``-th frame is kept (default: the smallest stride leaving at most ``max_frames``
    frames; GIFs also keep frame delays at least 20 ms), and the timing is stretched to match, so
    playback stays at the speed ``fps`` gives. GIFs share one adaptive palette and loop forever;
    videos are padded to even sizes.

    Args:
        path: output file; its folder must exist.
        frames: ``(T, H, W, 3)`` uint8 RGB.
        fps: frame rate of ``frames``.

    Returns:
        ``path`` as a :class:`Path`.
    """
    path = Path(path)
    arr = _check_frames(frames)
    if arr.shape[0] == 0:
        raise ValueError("no frames to write")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    gif = path.suffix.lower() == ".gif"
    step = _stride(arr.shape[0], fps, max_frames, stride, gif)
    kept = arr[::step]
    if gif:
        _write_gif(path, kept, 1000.0 * step / fps)
    else:
        write_video(path, kept, fps / step, pad=True)
    return path


__all__ = ["MIN_WIDTH", "annotate_frames", "write_annotated"]
