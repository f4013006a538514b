"""Pictures of grounding results: annotated videos and GIFs, attention overlays, temporal score plots.

Frames are drawn on with Pillow as ``(H, W, 3)`` uint8 RGB arrays. Plots use matplotlib's object API
on an explicit Agg canvas (never ``pyplot``), so nothing touches global figure state or the backend.

Boxes are pixel ``xyxy`` in the video's native size (design.md); frames may have been decoded at
another size, so every drawing call rescales boxes from the native size to the frame it draws on.
Evidence maps are ``(T, h, w)`` on the model's token grid, assumed to cover the whole frame (as in
:mod:`zsgrounding.tubes`), and are upsampled bilinearly onto the frame.

Layout of an annotated frame (:func:`annotate_frames`), top to bottom: a header with the caption
(only when a caption is given), the video scaled by an integer factor, and a footer with the frame
counter, the legend (a tube's swatch is filled while the frame is inside its span, hollow outside)
and one timeline strip per tube showing its span and a cursor at the current frame.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageColor, ImageDraw, ImageFont

from zsgrounding.types import Clip, GroundingResult, Track, Tube
from zsgrounding.video import probe, read_frames, write_video

RGB = tuple[int, int, int]
Colour = RGB | str
"""An RGB triple or any colour name Pillow knows (``"red"``, ``"#00ff00"``)."""
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
Norm = Literal["global", "frame"]

DEFAULT_COLOURS: dict[str, RGB] = {
    "gt": (0, 230, 64),
    "ground truth": (0, 230, 64),
    "pred": (255, 48, 48),
    "prediction": (255, 48, 48),
    "spacevllm": (48, 128, 255),
}
"""Colours of the usual tube names (matched case-insensitively)."""
EXTRA_COLOURS: tuple[RGB, ...] = (
    (255, 170, 0),
    (230, 0, 230),
    (0, 220, 230),
    (255, 255, 0),
    (160, 100, 255),
    (255, 255, 255),
)
"""Colours handed out, in order, to names without a default colour."""
TRACK_COLOUR: RGB = (150, 150, 150)
PANEL_COLOUR: RGB = (24, 24, 24)
TEXT_COLOUR: RGB = (240, 240, 240)
MIN_WIDTH = 320  # auto scale: small frames are enlarged by an integer factor to at least this width
SHEET_GAP = 4  # pixels between and around the tiles of an attention sheet
_STRIP_H = 4  # height of a tube's timeline strip in the footer
_CURSOR_H = 3  # height of the current-frame tick above the strips
_PAD = 4  # panel padding
_MIN_GIF_MS = 20  # browsers play shorter GIF frame delays at 100 ms, so never go below this


# --------------------------------------------------------------------------- small helpers


def _rgb(colour: Colour) -> RGB:
    if isinstance(colour, str):
        return tuple(ImageColor.getrgb(colour)[:3])  # type: ignore[return-value]
    r, g, b = (int(c) for c in tuple(colour)[:3])
    return r, g, b


def _ink_on(background: RGB) -> RGB:
    """Black or white, whichever reads better on ``background``."""
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def _as_numpy(array: Any) -> np.ndarray:
    """float64 numpy array from numpy or a torch tensor (torch is not imported here)."""
    if hasattr(array, "detach"):
        array = array.detach().float().cpu().numpy()
    return np.asarray(array, dtype=np.float64)


def _check_frames(frames: Any, what: str = "frames") -> np.ndarray:
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"{what} must be (T, H, W, 3) uint8, got {arr.shape} {arr.dtype}")
    return arr


def _font(size: int) -> Font:
    return ImageFont.load_default(size=size)


def _text_width(font: Font, text: str) -> int:
    return math.ceil(font.getlength(text))


def _line_height(font: Font) -> int:
    return int(font.getbbox("Ag|")[3]) + 2


def _clamp(value: float, lo: int, hi: int) -> int:
    return int(min(max(round(value), lo), hi))


def resolve_colours(names: Sequence[str], colours: Mapping[str, Colour] | None = None) -> dict[str, RGB]:
    """Colour of every name: ``colours`` first, then :data:`DEFAULT_COLOURS`, then unused extras."""
    given = {k: _rgb(v) for k, v in (colours or {}).items()}
    out: dict[str, RGB] = {}
    for name in names:
        if name in given:
            out[name] = given[name]
        elif name.lower() in DEFAULT_COLOURS:
            out[name] = DEFAULT_COLOURS[name.lower()]
    used = set(out.values())
    spare = [c for c in EXTRA_COLOURS if c not in used] or list(EXTRA_COLOURS)
    extra = 0
    for name in names:
        if name not in out:
            out[name] = spare[extra % len(spare)]
            extra += 1
    return out


def _wrap(text: str, font: Font, width: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels; a word longer than a line is cut."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}" if line else word
            if _text_width(font, candidate) <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            while len(word) > 1 and _text_width(font, word) > width:
                cut = 1
                while cut < len(word) and _text_width(font, word[: cut + 1]) <= width:
                    cut += 1
                lines.append(word[:cut])
                word = word[cut:]
            line = word
        lines.append(line)
    return lines


# --------------------------------------------------------------------------- heatmaps and boxes


def _normalise(heat: np.ndarray, vmin: float | None, vmax: float | None) -> np.ndarray:
    h = np.nan_to_num(heat, nan=0.0, posinf=0.0, neginf=0.0)
    lo = float(h.min()) if vmin is None else float(vmin)
    hi = float(h.max()) if vmax is None else float(vmax)
    if not hi > lo:  # a flat map carries no "where": leave the frame untouched
        return np.zeros_like(h)
    return np.clip((h - lo) / (hi - lo), 0.0, 1.0)


def _colour_table(cmap: str) -> np.ndarray:
    """``(256, 3)`` float RGB in [0, 255] of a matplotlib colormap."""
    try:
        table = matplotlib.colormaps[cmap]
    except KeyError as exc:
        raise ValueError(f"unknown colormap {cmap!r}") from exc
    return table(np.linspace(0.0, 1.0, 256))[:, :3] * 255.0


def overlay_heatmap(
    frame: np.ndarray,
    heat: Any,
    alpha: float = 0.45,
    cmap: str = "jet",
    *,
    vmin: float | None = None,
    vmax: float | None = None,
    weighted: bool = True,
) -> np.ndarray:
    """Blend a coloured heat map over a frame.

    Args:
        frame: ``(H, W, 3)`` uint8 RGB.
        heat: ``(h, w)`` map (numpy or torch), e.g. one frame of evidence on the token grid.
        alpha: opacity of the colour where the map peaks.
        cmap: matplotlib colormap name.
        vmin, vmax: the range mapped to the colormap; default: this map's min and max.
        weighted: scale the opacity by the normalised value, so weak regions stay visible and the
            change concentrates where the map is high; ``False`` blends uniformly with ``alpha``.

    Returns:
        ``(H, W, 3)`` uint8.
    """
    img = np.asarray(frame)
    if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
        raise ValueError(f"frame must be (H, W, 3) uint8, got {img.shape} {img.dtype}")
    h = _as_numpy(heat)
    if h.ndim != 2:
        raise ValueError(f"heat must be (h, w), got {h.shape}")
    value = _normalise(h, vmin, vmax).astype(np.float32)
    H, W = img.shape[:2]
    up = np.asarray(Image.fromarray(value).resize((W, H), Image.Resampling.BILINEAR), dtype=np.float64)
    up = np.clip(up, 0.0, 1.0)
    colour = _colour_table(cmap)[np.rint(up * 255).astype(np.intp)]
    a = (alpha * up if weighted else np.full_like(up, alpha))[..., None]
    return np.clip(np.rint(img * (1.0 - a) + colour * a), 0, 255).astype(np.uint8)


def _pixel_box(
    xyxy: Sequence[float] | np.ndarray, sx: float = 1.0, sy: float = 1.0
) -> tuple[int, ...] | None:
    """Integer ``(x1, y1, x2, y2)`` (exclusive right/bottom) of a box, ``None`` for a NaN box."""
    b = np.asarray(xyxy, dtype=np.float64).reshape(4)
    if not np.isfinite(b).all():
        return None
    x1, x2 = round(b[0] * sx), round(b[2] * sx)
    y1, y2 = round(b[1] * sy), round(b[3] * sy)
    return x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _paint_box(
    draw: ImageDraw.ImageDraw,
    size: tuple[int, int],
    box: tuple[int, ...],
    colour: RGB,
    label: str | None,
    width: int,
    font: Font,
    taken: list[tuple[int, int, int, int]],
) -> None:
    """Outline ``box`` and put its label in a tag that avoids tags already placed (``taken``)."""
    x1, y1, x2, y2 = box
    draw.rectangle([x1, y1, x2 - 1, y2 - 1], outline=colour, width=width)
    if not label:
        return
    tw, th = _text_width(font, label) + 4, _line_height(font) + 1
    W, H = size
    candidates = [
        (x1, y1 - th),  # above, left
        (x1, y2),  # below, left
        (x2 - tw, y1 - th),  # above, right
        (x2 - tw, y2),  # below, right
        (x1 + width, y1 + width),  # inside, top left
    ]
    rects = [(x, y, x + tw, y + th) for x, y in candidates]
    inside = [r for r in rects if r[0] >= 0 and r[1] >= 0 and r[2] <= W and r[3] <= H]
    free = [r for r in inside if not any(_overlaps(r, t) for t in taken)]
    if free:
        rect = free[0]
    else:  # nowhere clean: clamp the first choice into the frame
        x = min(max(rects[0][0], 0), max(W - tw, 0))
        y = min(max(rects[0][1], 0), max(H - th, 0))
        rect = (x, y, x + tw, y + th)
    taken.append(rect)
    draw.rectangle([rect[0], rect[1], rect[2] - 1, rect[3] - 1], fill=colour)
    draw.text((rect[0] + 2, rect[1]), label, fill=_ink_on(colour), font=font)


def draw_boxes(
    frame: np.ndarray,
    boxes: Sequence[tuple[Sequence[float] | np.ndarray, Colour, str | None]],
    *,
    width: int = 2,
    font_size: int = 12,
) -> np.ndarray:
    """Draw labelled boxes on a copy of ``frame``.

    Args:
        frame: ``(H, W, 3)`` uint8 RGB.
        boxes: ``(xyxy, colour, label)`` per box, ``xyxy`` in this frame's pixels (exclusive
            right/bottom, rounded to the nearest pixel); NaN boxes are skipped; ``label`` may be
            ``None``. The outline covers exactly the box's outermost ``width`` pixel rings.
        width: outline width in pixels.
        font_size: label size; labels sit in a filled tag of the box's colour, above the box when
            there is room and moved to avoid earlier tags.

    Returns:
        the drawn ``(H, W, 3)`` uint8 frame (the input is not modified).
    """
    img = np.asarray(frame)
    if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
        raise ValueError(f"frame must be (H, W, 3) uint8, got {img.shape} {img.dtype}")
    image = Image.fromarray(img.copy())
    draw = ImageDraw.Draw(image)
    font = _font(font_size)
    taken: list[tuple[int, int, int, int]] = []
    for xyxy, colour, label in boxes:
        box = _pixel_box(xyxy)
        if box is not None:
            _paint_box(draw, image.size, box, _rgb(colour), label, width, font, taken)
    return np.array(image)


# --------------------------------------------------------------------------- annotated frames


class _Footer:
    """The panel under the video: counter, legend with span markers, timeline strips."""

    def __init__(
        self,
        width: int,
        tubes: Mapping[str, Tube],
        colours: Mapping[str, RGB],
        total: int,
        fps: float | None,
        font: Font,
        with_tracks: bool,
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
        entries = [*tubes, *(["tracks"] if with_tracks else [])]
        widths = [_text_width(font, self._counter(self.total - 1)) + 2]
        widths += [self.swatch + 4 + _text_width(font, name) for name in entries]
        self.positions: list[tuple[int, int]] = []
        x, y = _PAD, _PAD
        for w in widths:  # flow layout, wrapping to new lines
            if x > _PAD and x + w > width - _PAD:
                x, y = _PAD, y + self.line_h
            self.positions.append((x, y))
            x += w + 10
        self.strip_top = y + self.line_h + _CURSOR_H + 2  # the cursor runs just above the strips
        self.height = self.strip_top + len(tubes) * (_STRIP_H + 2) + _PAD
        self.template = self._template(entries)

    def _counter(self, frame_id: int) -> str:
        text = f"frame {frame_id}/{self.total}"
        return f"{text}  {frame_id / self.fps:.2f}s" if self.fps else text

    def _x(self, frame: float) -> int:
        return _PAD + round(frame / self.total * (self.width - 2 * _PAD))

    def _template(self, entries: list[str]) -> Image.Image:
        image = Image.new("RGB", (self.width, self.height), PANEL_COLOUR)
        draw = ImageDraw.Draw(image)
        for name, (x, y) in zip(entries, self.positions[1:], strict=True):
            draw.text((x + self.swatch + 4, y), name, fill=TEXT_COLOUR, font=self.font)
        for i, (name, tube) in enumerate(self.tubes.items()):
            top = self.strip_top + i * (_STRIP_H + 2)
            draw.rectangle([_PAD, top, self.width - _PAD - 1, top + _STRIP_H - 1], fill=(64, 64, 64))
            if tube.end > tube.start:
                x1, x2 = self._x(tube.start), max(self._x(tube.end) - 1, self._x(tube.start))
                draw.rectangle([x1, top, x2, top + _STRIP_H - 1], fill=self.colours[name])
        if len(entries) > len(self.tubes):  # the proposal tracks' entry: a grey outline
            x, y = self.positions[-1]
            self._swatch(draw, x, y, TRACK_COLOUR, filled=False)
        return image

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
    alpha: float = 0.45,
    cmap: str = "jet",
    evidence_norm: Norm = "global",
) -> np.ndarray:
    """Draw tubes, tracks, attention and text on every frame.

    Args:
        clip_or_frames: a :class:`Clip` (its ids, native size, frame count and fps are used) or
            ``(T, H, W, 3)`` uint8 frames.
        frame_ids: ``(T,)`` native ids of the frames; ``None``: the clip's, or ``0..T-1``.
        tubes: name -> tube, drawn in this order (later on top); a tube's box shows on the frames
            inside its span where it has one. Names label the boxes and the legend.
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
        alpha, cmap: evidence overlay (see :func:`overlay_heatmap`).
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

    header = _header(caption, out_w, font)
    footer = _Footer(out_w, tubes, palette, total, fps, font, bool(tracks))
    top = header.shape[0]
    out = np.empty((T, top + out_h + footer.height, out_w, 3), dtype=np.uint8)
    for t in range(T):
        fid = int(fids[t])
        img = frames[t] if s == 1 else np.repeat(np.repeat(frames[t], s, axis=0), s, axis=1)
        if maps is not None and nearest is not None:
            img = overlay_heatmap(img, maps[nearest[t]], alpha, cmap, vmin=vrange[0], vmax=vrange[1])
        image = Image.fromarray(np.ascontiguousarray(img))
        draw = ImageDraw.Draw(image)
        for track in tracks or ():
            box = _pixel_box(track.boxes_at([fid])[0], sx, sy)
            if box is not None:
                draw.rectangle([box[0], box[1], box[2] - 1, box[3] - 1], outline=TRACK_COLOUR, width=1)
        taken: list[tuple[int, int, int, int]] = []
        for name, tube in tubes.items():
            if not tube.start <= fid < tube.end:
                continue
            box = _pixel_box(tube.boxes_at([fid])[0], sx, sy)
            if box is not None:
                _paint_box(draw, image.size, box, palette[name], name, lw, font, taken)
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


# --------------------------------------------------------------------------- plots and sheets


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
        colours: name -> colour, as :func:`annotate_frames`.
        size: image ``(width, height)`` in pixels, exactly.
        title: optional title (e.g. the query).

    Returns:
        ``path`` as a :class:`Path`.
    """
    path = Path(path)
    fids = np.asarray(frame_ids, dtype=np.float64).reshape(-1)
    palette = {k: tuple(c / 255 for c in v) for k, v in resolve_colours([*spans, *scores], colours).items()}
    fig = Figure(figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi)
    FigureCanvasAgg(fig)  # the Agg canvas, attached to this figure only
    ax = fig.add_subplot()
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


def _colour_bar(width: int, height: int, cmap: str) -> Image.Image:
    ramp = _colour_table(cmap)[np.rint(np.linspace(0, 255, width)).astype(np.intp)]
    return Image.fromarray(np.repeat(ramp[None].astype(np.uint8), height, axis=0))


def attention_grid_image(
    path: Path | str,
    frames: np.ndarray,
    evidence: Any,
    frame_ids: Sequence[int] | np.ndarray,
    cols: int = 5,
    *,
    tile_width: int | None = None,
    alpha: float = 0.45,
    cmap: str = "jet",
    evidence_norm: Norm = "global",
    title: str | None = None,
) -> Path:
    """A contact sheet of sampled frames with their attention overlays, saved as PNG.

    Args:
        path: the PNG to write.
        frames: ``(T, H, W, 3)`` uint8, the sampled frames the maps belong to.
        evidence: ``(T, h, w)`` maps.
        frame_ids: ``(T,)`` native ids, printed over each tile with the map's peak value.
        cols: tiles per row (at most ``T``).
        tile_width: tile width in pixels; default the frame width clamped to ``[160, 320]``.
        evidence_norm: one colour range for all maps (``"global"``) or one per map (``"frame"``).
        title: optional line above the tiles.

    Returns:
        ``path``. The sheet is ``min(cols, T) * tile_width + (min(cols, T) + 1) * SHEET_GAP``
        pixels wide, with a colour bar under the tiles.
    """
    path = Path(path)
    imgs = _check_frames(frames)
    maps = _as_numpy(evidence)
    fids = np.asarray(frame_ids, dtype=np.int64).reshape(-1)
    T, H, W = imgs.shape[:3]
    if maps.ndim != 3 or maps.shape[0] != T or fids.size != T or T == 0:
        raise ValueError(
            f"need T >= 1 frames, (T, h, w) evidence and T ids; got {T}, {maps.shape}, {fids.size}"
        )
    if cols < 1:
        raise ValueError(f"cols must be >= 1, got {cols}")
    if evidence_norm not in ("global", "frame"):
        raise ValueError(f"unknown evidence_norm {evidence_norm!r}: use 'global' or 'frame'")
    tw = int(tile_width) if tile_width else _clamp(W, 160, 320)
    th = max(1, round(H * tw / W))
    font = _font(_clamp(tw / 14, 10, 16))
    line_h = _line_height(font)
    ncols = min(cols, T)
    nrows = math.ceil(T / ncols)
    title_lines = _wrap(title, font, ncols * tw + (ncols - 1) * SHEET_GAP) if title else []
    title_h = len(title_lines) * line_h + (SHEET_GAP if title_lines else 0)
    cell_h = line_h + th + SHEET_GAP
    bar_top = SHEET_GAP + title_h + nrows * cell_h
    width = ncols * tw + (ncols + 1) * SHEET_GAP
    height = bar_top + 8 + line_h + SHEET_GAP
    sheet = Image.new("RGB", (width, height), PANEL_COLOUR)
    draw = ImageDraw.Draw(sheet)
    for i, line in enumerate(title_lines):
        draw.text((SHEET_GAP, SHEET_GAP + i * line_h), line, fill=TEXT_COLOUR, font=font)
    finite = maps[np.isfinite(maps)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    vmin, vmax = (lo, hi) if evidence_norm == "global" else (None, None)
    for i in range(T):
        row, col = divmod(i, ncols)
        x = SHEET_GAP + col * (tw + SHEET_GAP)
        y = SHEET_GAP + title_h + row * cell_h
        tile = np.array(Image.fromarray(imgs[i]).resize((tw, th), Image.Resampling.BILINEAR))
        tile = overlay_heatmap(tile, maps[i], alpha, cmap, vmin=vmin, vmax=vmax)
        sheet.paste(Image.fromarray(tile), (x, y + line_h))
        peak = float(np.nanmax(maps[i])) if np.isfinite(maps[i]).any() else float("nan")
        draw.text((x, y), f"frame {int(fids[i])}  peak {peak:.3g}", fill=TEXT_COLOUR, font=font)
    bar_w = width - 2 * SHEET_GAP
    sheet.paste(_colour_bar(bar_w, 8, cmap), (SHEET_GAP, bar_top))
    low, high = (f"{lo:.3g}", f"{hi:.3g}") if evidence_norm == "global" else ("low", "high")
    draw.text((SHEET_GAP, bar_top + 8), low, fill=TEXT_COLOUR, font=font)
    draw.text((width - SHEET_GAP - _text_width(font, high), bar_top + 8), high, fill=TEXT_COLOUR, font=font)
    sheet.save(path, format="PNG")
    return path


# --------------------------------------------------------------------------- one result


def _playback_fps(clip: Clip) -> float:
    """Real-time rate of a clip's frames, at least 1 fps so a sparse clip still plays."""
    ids = clip.frame_ids
    step = float(np.mean(np.diff(ids))) if ids.size > 1 else 1.0
    return max(1.0, clip.fps / max(step, 1.0)) if clip.fps > 0 else 1.0


def _load_clip(
    path: Path, sampled: np.ndarray | None, max_frames: int, short_side: int | None
) -> tuple[Clip, np.ndarray | None]:
    """``(frames spread over the video, frames at the sampled ids)`` decoded in one pass."""
    info = probe(path)
    step = max(1, math.ceil(info.num_frames / max_frames))
    shown = np.arange(0, info.num_frames, step, dtype=np.int64)
    wanted = shown if sampled is None else np.union1d(shown, sampled)
    size = short_side if short_side and min(info.width, info.height) > short_side else None
    full = read_frames(path, wanted, size, info)
    pick = np.searchsorted(wanted, shown)
    clip = Clip(
        full.frames[pick], shown, full.times[pick], full.fps, full.num_frames, full.width, full.height, path
    )
    at_sampled = None if sampled is None else full.frames[np.searchsorted(wanted, sampled)]
    return clip, at_sampled


def render_result(
    out_dir: Path | str,
    video_path_or_clip: Path | str | Clip,
    result: GroundingResult,
    query: str,
    gt: Tube | None = None,
    fps: float | None = None,
    format: str = "gif",
    *,
    tracks: Sequence[Track] | None = None,
    name: str | None = None,
    max_frames: int = 120,
    short_side: int | None = 360,
) -> dict[str, Path]:
    """Write the pictures of one grounding result into ``out_dir``.

    Args:
        out_dir: folder, created if needed.
        video_path_or_clip: the video file (frames spread over the whole video are decoded) or a
            :class:`Clip` (its frames are drawn as they are).
        result: the grounder's output; its evidence needs ``sampled_frame_ids`` (or a clip whose
            frames are the sampled ones).
        query: the sentence, shown as the caption.
        gt: the ground-truth tube, drawn as ``GT`` next to the prediction ``pred``.
        fps: playback rate of the annotated video; default real time (at least 1 fps).
        format: ``"gif"`` or a video suffix such as ``"mp4"``.
        tracks: proposal tracks to draw as thin grey boxes.
        name: file name stem; default the video's stem, else ``"result"``.
        max_frames: at most this many frames are decoded from a video file.
        short_side: frames of a video file larger than this are decoded with this short side.

    Returns:
        ``{"video": ..., "attention": ..., "temporal": ...}``; ``attention`` only with evidence.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    suffix = format.lower().lstrip(".")
    maps = None if result.evidence is None else _as_numpy(result.evidence)
    sampled = None if result.sampled_frame_ids is None else np.asarray(result.sampled_frame_ids, np.int64)
    if isinstance(video_path_or_clip, Clip):
        clip = video_path_or_clip
        stem = name or (clip.path.stem if clip.path else "result")
        if maps is not None and sampled is None:
            if len(clip) != maps.shape[0]:
                raise ValueError("result.evidence has no sampled_frame_ids and does not match the clip")
            sampled = clip.frame_ids
        at_sampled = None if sampled is None else clip.frames[_nearest(sampled, clip.frame_ids)]
    else:
        path = Path(video_path_or_clip)
        stem = name or path.stem
        if maps is not None and sampled is None:
            raise ValueError("result.evidence has no sampled_frame_ids")
        clip, at_sampled = _load_clip(path, sampled, max_frames, short_side)

    tubes = {**({"GT": gt} if gt is not None else {}), "pred": result.tube}
    frames = annotate_frames(
        clip, None, tubes, evidence=maps, evidence_frame_ids=sampled, caption=query, tracks=tracks
    )
    paths = {"video": write_annotated(out / f"{stem}_grounded.{suffix}", frames, fps or _playback_fps(clip))}
    if maps is not None and at_sampled is not None and sampled is not None:
        paths["attention"] = attention_grid_image(
            out / f"{stem}_attention.png", at_sampled, maps, sampled, title=query
        )
    scores: dict[str, np.ndarray] = {}
    if result.frame_scores is not None and sampled is not None and len(result.frame_scores) == sampled.size:
        scores["chosen track"] = _as_numpy(result.frame_scores)
    if maps is not None:
        scores["evidence peak"] = maps.reshape(maps.shape[0], -1).max(axis=1)
    spans = {name_: (t.start, t.end) for name_, t in tubes.items()}
    paths["temporal"] = plot_temporal_scores(
        out / f"{stem}_temporal.png",
        sampled if sampled is not None else np.zeros(0, np.int64),
        scores,
        spans,
        clip.num_frames,
        clip.fps,
        title=query,
    )
    return paths


__all__ = [
    "DEFAULT_COLOURS",
    "EXTRA_COLOURS",
    "MIN_WIDTH",
    "SHEET_GAP",
    "TRACK_COLOUR",
    "annotate_frames",
    "attention_grid_image",
    "draw_boxes",
    "overlay_heatmap",
    "plot_temporal_scores",
    "render_result",
    "resolve_colours",
    "write_annotated",
]
