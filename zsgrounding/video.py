"""Video decoding and encoding with PyAV.

Frames are named by their native index: the order in which the decoder emits them from the start
of the first video stream (0-based). Times are presentation times in seconds, relative to the
stream's start time, so a constant-rate video has ``time == index / fps``.

Every failure a user can cause (missing, unreadable, truncated or empty file, frames that do not
exist) raises :class:`~zsgrounding.errors.VideoError` with a one-line message naming the file.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from zsgrounding.errors import VideoError
from zsgrounding.types import Clip

Size = int | tuple[int, int] | None
"""A target frame size: ``(width, height)``, the length of the short side, or ``None`` (native)."""

# Encoders to try per container, best first; the first one this PyAV build has wins.
_ENCODERS: dict[str, tuple[str, ...]] = {
    ".mp4": ("libx264", "mpeg4"),
    ".mov": ("libx264", "mpeg4"),
    ".mkv": ("libx264", "mpeg4"),
    ".avi": ("mpeg4",),
    ".webm": ("libvpx-vp9", "libvpx"),
}


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video's first video stream.

    Attributes:
        num_frames: number of frames (from the stream header, or counted by decoding).
        fps: native (average) frame rate.
        width, height: native frame size in pixels.
        duration: length in seconds.
        counted: ``True`` when ``num_frames`` was counted by decoding because the header had none.
    """

    num_frames: int
    fps: float
    width: int
    height: int
    duration: float
    counted: bool = False


def _fail(path: Path | str, reason: str) -> VideoError:
    # One line, always naming the file: the CLI prints the message as is.
    return VideoError(f"{path}: {' '.join(str(reason).split())}")


@contextmanager
def _open_video(path: Path | str) -> Iterator[tuple[av.container.InputContainer, av.VideoStream]]:
    """Open ``path`` for reading; yield the container and its first video stream."""
    p = Path(path)
    if not p.exists():
        raise _fail(path, "video file not found")
    if not p.is_file():
        raise _fail(path, "not a file")
    try:
        container = av.open(str(p), mode="r")
    except av.error.EOFError as exc:
        raise _fail(path, f"video has no frames or is truncated ({exc.strerror or exc})") from exc
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise _fail(path, f"not a readable video ({getattr(exc, 'strerror', None) or exc})") from exc
    try:
        if not container.streams.video:
            raise _fail(path, "no video stream")
        stream = container.streams.video[0]
        if stream.codec_context is None:  # e.g. a cut mp4 whose sample table lost the codec
            raise _fail(path, "video stream has no usable decoder (corrupt or truncated file?)")
        stream.thread_type = "AUTO"
        yield container, stream
    finally:
        container.close()


def _frame_rate(stream: av.VideoStream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    return 0.0


def _iter_decoded(
    container: av.container.InputContainer, stream: av.VideoStream
) -> Iterator[tuple[int, av.VideoFrame]]:
    """Yield ``(index, frame)`` in decoding order; stop at the first decoding error.

    A truncated or corrupt file ends the stream early instead of raising: frame indices are only
    meaningful while every frame before them decoded, so nothing after an error is trusted.
    Callers compare what they got with what they asked for.
    """
    index = 0
    frames = container.decode(stream)
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            return
        except (av.FFmpegError, OSError, ValueError):
            return
        yield index, frame
        index += 1


def probe(path: Path | str) -> VideoInfo:
    """Read the frame count, rate, size and duration of the first video stream of ``path``.

    The header's frame count is used when it has one (mp4, avi); otherwise (mkv, webm report 0)
    the frames are counted by decoding the whole stream.
    """
    with _open_video(path) as (container, stream):
        fps = _frame_rate(stream)
        width, height = int(stream.codec_context.width), int(stream.codec_context.height)
        num_frames, counted = int(stream.frames or 0), False
        if num_frames <= 0:
            num_frames, counted = sum(1 for _ in _iter_decoded(container, stream)), True
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / av.time_base
        else:
            duration = num_frames / fps if fps > 0 else 0.0
    if num_frames <= 0:
        raise _fail(path, "video has no decodable frames (empty or truncated)")
    if fps <= 0:
        if duration <= 0:
            raise _fail(path, "video has no frame rate and no duration")
        fps = num_frames / duration
    if width <= 0 or height <= 0:
        raise _fail(path, f"video has an invalid frame size {width}x{height}")
    return VideoInfo(num_frames, fps, width, height, duration, counted)


def output_size(width: int, height: int, size: Size) -> tuple[int, int]:
    """The ``(width, height)`` frames of a ``width x height`` video get resized to by ``size``.

    An int is the length of the short side (aspect ratio kept, long side rounded); a pair is taken
    as ``(width, height)``; ``None`` keeps the native size.
    """
    if size is None:
        return width, height
    if isinstance(size, int):
        if size <= 0:
            raise ValueError(f"short side must be positive, got {size}")
        scale = size / min(width, height)
        return (
            (size, max(1, round(height * scale))) if width <= height else (max(1, round(width * scale)), size)
        )
    w, h = (int(v) for v in size)
    if w <= 0 or h <= 0:
        raise ValueError(f"size must be positive, got {size}")
    return w, h


def read_frames(
    path: Path | str, frame_ids: Sequence[int] | np.ndarray, size: Size = None, info: VideoInfo | None = None
) -> Clip:
    """Decode the given native frames of ``path`` in one sequential pass from the start.

    Args:
        path: the video file.
        frame_ids: ``(T,)`` ascending, unique native frame ids (0-based).
        size: resize each frame (PIL bilinear) to this size, see :func:`output_size`.
        info: the video's :func:`probe` result, to skip probing again.

    Returns:
        a :class:`Clip` with ``frames (T, H', W', 3)`` uint8 RGB, ``frame_ids (T,)``, ``times (T,)``
        seconds; ``width``/``height`` stay the native size.

    Raises:
        VideoError: unreadable file, ids out of range, or requested frames that do not decode.
    """
    ids = np.asarray(frame_ids, dtype=np.int64).reshape(-1)
    if ids.size > 1 and np.any(np.diff(ids) <= 0):
        raise ValueError("frame_ids must be ascending and unique")
    info = info or probe(path)
    if ids.size and (ids[0] < 0 or ids[-1] >= info.num_frames):
        bad = ids[(ids < 0) | (ids >= info.num_frames)]
        raise _fail(
            path, f"frame ids {bad[:5].tolist()} out of range, the video has {info.num_frames} frames"
        )
    out_w, out_h = output_size(info.width, info.height, size)
    frames = np.zeros((ids.size, out_h, out_w, 3), dtype=np.uint8)
    times = ids / info.fps
    got = decoded = 0
    if ids.size:
        with _open_video(path) as (container, stream):
            start = stream.start_time or 0
            for index, frame in _iter_decoded(container, stream):
                decoded = index + 1
                if index != ids[got]:
                    continue
                image = frame.to_image()  # RGB PIL image at native size
                if image.size != (out_w, out_h):
                    image = image.resize((out_w, out_h), Image.Resampling.BILINEAR)
                frames[got] = np.asarray(image)
                if frame.pts is not None and frame.time_base:
                    times[got] = float((frame.pts - start) * frame.time_base)
                got += 1
                if got == ids.size:
                    break
    if got < ids.size:
        raise _fail(
            path,
            f"frame {int(ids[got])} does not decode: only {decoded} of "
            f"{info.num_frames} frames could be read (truncated or corrupt file?)",
        )
    return Clip(frames, ids, times, info.fps, info.num_frames, info.width, info.height, Path(path))


# How uniform_ids spreads frames: segment centres, or np.linspace with both ends (the released
# zero-shot STVG code's sampling).
SAMPLINGS = ("centres", "linspace")


def uniform_ids(total: int, num_frames: int, sampling: str = "centres") -> np.ndarray:
    """``num_frames`` frame ids spread over ``range(total)``.

    ``sampling="centres"``: the centres of ``num_frames`` equal segments, ``floor((i + 0.5) *
    total / N)``. ``sampling="linspace"``: ``int`` of ``np.linspace(0, total - 1, N)``, the first
    and last frames included, as the released zero-shot STVG code samples.

    Returns ``(N,)`` int64 ascending, unique when ``N <= total``.
    """
    if sampling == "linspace":
        return np.linspace(0, total - 1, num_frames).astype(np.int64)
    if sampling != "centres":
        raise ValueError(f"unknown sampling {sampling!r}: use one of {', '.join(SAMPLINGS)}")
    i = np.arange(num_frames, dtype=np.int64)
    return ((2 * i + 1) * total) // (2 * num_frames)  # integer form of the formula: no float rounding


def fps_ids(total: int, native_fps: float, fps: float) -> np.ndarray:
    """Native ids of the frames shown at times ``0, 1/fps, 2/fps, ...``: ``(K,)`` int64 ascending.

    Frame ``floor(k * native_fps / fps)`` is on screen at time ``k / fps``; when ``fps`` exceeds the
    native rate every frame is returned once.
    """
    count = math.ceil(total * fps / native_fps) + 1
    ids = np.floor(np.arange(count) * (native_fps / fps) + 1e-9).astype(np.int64)
    return np.unique(ids[ids < total])


def sample_uniform(path: Path | str, num_frames: int, size: Size = None, sampling: str = "centres") -> Clip:
    """``num_frames`` frames spread uniformly over the video (see :func:`uniform_ids`, ``sampling``).

    Returns a :class:`Clip` with ``frames (num_frames, H', W', 3)``.
    """
    info = probe(path)
    if num_frames <= 0:
        raise _fail(path, f"asked for {num_frames} frames, need at least 1")
    if num_frames > info.num_frames:
        raise _fail(path, f"asked for {num_frames} frames but the video has only {info.num_frames}")
    return read_frames(path, uniform_ids(info.num_frames, num_frames, sampling), size, info)


def sample_fps(path: Path | str, fps: float, size: Size = None, max_frames: int | None = None) -> Clip:
    """Frames at ``fps`` per second from the start (see :func:`fps_ids`).

    When that gives more than ``max_frames`` frames, ``max_frames`` uniform frames are taken over the
    whole video instead, so the clip still covers all of it. Returns ``frames (K, H', W', 3)``.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if max_frames is not None and max_frames <= 0:
        raise ValueError(f"max_frames must be positive, got {max_frames}")
    info = probe(path)
    ids = fps_ids(info.num_frames, info.fps, fps)
    if max_frames is not None and ids.size > max_frames:
        ids = uniform_ids(info.num_frames, max_frames)
    return read_frames(path, ids, size, info)


def _pick_encoder(path: Path) -> str:
    candidates = _ENCODERS.get(path.suffix.lower())
    if candidates is None:
        raise _fail(path, f"cannot write '{path.suffix}' videos; use one of {', '.join(sorted(_ENCODERS))}")
    for name in candidates:
        try:
            av.Codec(name, "w")
        except (av.FFmpegError, ValueError):
            continue
        return name
    raise _fail(path, f"this PyAV build has none of the encoders {', '.join(candidates)}")


def _encoder_options(codec: str, crf: int) -> dict[str, str]:
    if codec == "libx264":
        return {"crf": str(crf), "preset": "veryfast"}
    if codec == "libvpx-vp9":
        # crf needs a zero target bitrate to mean constant quality; realtime keeps encoding fast.
        return {"crf": str(crf + 12), "b": "0", "deadline": "realtime", "cpu-used": "8"}
    if codec == "libvpx":
        return {"crf": str(max(4, crf)), "b": "2M", "deadline": "realtime", "cpu-used": "8"}
    return {}


def write_video(
    path: Path | str, frames: np.ndarray, fps: float, *, pad: bool = False, crf: int = 18
) -> Path:
    """Encode ``frames`` to ``path``; the container is chosen by the suffix.

    ``.mp4``/``.mov``/``.mkv`` get H.264 (libx264), ``.avi`` MPEG-4 part 2, ``.webm`` VP9 (or VP8),
    all yuv420p, whose chroma subsampling needs an even width and height.

    Args:
        path: output file; its folder must exist.
        frames: ``(T, H, W, 3)`` uint8 RGB, ``T >= 1``.
        fps: frame rate.
        pad: pad an odd width/height with one replicated column/row (right/bottom, so pixel
            coordinates do not move) instead of raising.
        crf: quality for libx264 (lower is better); the VP8/9 value is derived from it.

    Returns:
        ``path`` as a :class:`Path`.
    """
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    if frames.shape[0] == 0:
        raise _fail(path, "cannot write a video with no frames")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        if not pad:
            raise _fail(path, f"frame size {width}x{height} must be even for yuv420p (pass pad=True to pad)")
        frames = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        height, width = frames.shape[1:3]
    codec = _pick_encoder(path)
    try:
        with av.open(str(path), mode="w") as container:
            stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001 * 1000))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            if codec == "mpeg4":
                stream.codec_context.bit_rate = max(400_000, int(width * height * fps * 0.5))
            stream.options = _encoder_options(codec, crf)
            for image in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            container.mux(stream.encode())
    except (av.FFmpegError, OSError) as exc:
        raise _fail(path, f"cannot write video ({getattr(exc, 'strerror', None) or exc})") from exc
    return path
