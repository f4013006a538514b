"""Video I/O: every decoded frame must be the native frame its id names, in every container."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from zsgrounding.errors import VideoError
from zsgrounding.video import (
    VideoInfo,
    fps_ids,
    output_size,
    probe,
    read_frames,
    sample_fps,
    sample_uniform,
    uniform_ids,
    write_video,
)

W, H, T, FPS = 64, 48, 40, 10.0
BITS = 6  # enough for 64 frames


def index_frame(i: int) -> np.ndarray:
    """A ``(H, W, 3)`` frame whose 8-px columns spell ``i`` in binary: survives any lossy codec."""
    frame = np.zeros((H, W, 3), dtype=np.uint8)
    for bit in range(BITS):
        if (i >> bit) & 1:
            frame[:, bit * 8 : (bit + 1) * 8] = 255
    frame[:, 56:] = (200, 30, 30)  # a colour block, to see chroma survive too
    return frame


def frame_index(frame: np.ndarray) -> int:
    """Read back the index spelled by :func:`index_frame` (frame at native size)."""
    return sum(1 << b for b in range(BITS) if frame[8:40, b * 8 + 2 : b * 8 + 6].mean() > 128)


FRAMES = np.stack([index_frame(i) for i in range(T)])


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("videos")
    return {ext: write_video(root / f"clip.{ext}", FRAMES, FPS) for ext in ("mp4", "avi", "mkv", "webm")}


def assert_video_error(excinfo: pytest.ExceptionInfo, path: Path) -> None:
    message = str(excinfo.value)
    assert path.name in message
    assert "\n" not in message


@pytest.mark.parametrize("ext", ["mp4", "avi", "mkv", "webm"])
def test_round_trip_every_container(videos: dict[str, Path], ext: str) -> None:
    info = probe(videos[ext])
    assert (info.num_frames, info.fps, info.width, info.height) == (T, FPS, W, H)
    assert info.duration == pytest.approx(T / FPS, abs=0.11)
    assert info.counted == (ext in ("mkv", "webm"))  # those containers carry no frame count
    clip = read_frames(videos[ext], range(T))
    assert [frame_index(f) for f in clip.frames] == list(range(T))
    assert np.abs(clip.frames.astype(int) - FRAMES).mean() < 3
    np.testing.assert_allclose(clip.times, np.arange(T) / FPS, atol=1e-3)  # mkv/webm: 1 ms time base
    assert (clip.num_frames, clip.fps, clip.width, clip.height) == (T, FPS, W, H)


@pytest.mark.parametrize("ext", ["mp4", "webm"])
def test_read_frames_ids_map_to_the_right_frames(videos: dict[str, Path], ext: str) -> None:
    ids = [0, 5, 17, 38, 39]
    clip = read_frames(videos[ext], ids)
    assert clip.frame_ids.tolist() == ids
    assert [frame_index(f) for f in clip.frames] == ids
    np.testing.assert_allclose(clip.times, np.asarray(ids) / FPS, atol=1e-3)
    assert clip.path == videos[ext]


def test_read_frames_rejects_unsorted_ids(videos: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="ascending"):
        read_frames(videos["mp4"], [5, 3])
    assert len(read_frames(videos["mp4"], [])) == 0


def test_uniform_ids_formula() -> None:
    assert uniform_ids(40, 8).tolist() == [2, 7, 12, 17, 22, 27, 32, 37]
    assert uniform_ids(40, 7).tolist() == [2, 8, 14, 20, 25, 31, 37]
    assert uniform_ids(5, 5).tolist() == [0, 1, 2, 3, 4]
    assert uniform_ids(1000, 3).tolist() == [166, 500, 833]


def test_sample_uniform(videos: dict[str, Path]) -> None:
    clip = sample_uniform(videos["mkv"], 7)
    assert clip.frame_ids.tolist() == [2, 8, 14, 20, 25, 31, 37]
    assert [frame_index(f) for f in clip.frames] == clip.frame_ids.tolist()
    np.testing.assert_allclose(clip.times, clip.frame_ids / FPS, atol=1e-3)
    assert sample_uniform(videos["mp4"], T).frame_ids.tolist() == list(range(T))


def test_sample_fps(videos: dict[str, Path]) -> None:
    clip = sample_fps(videos["mp4"], 4.0)  # a frame every 2.5 native frames
    expected = [0, 2, 5, 7, 10, 12, 15, 17, 20, 22, 25, 27, 30, 32, 35, 37]
    assert clip.frame_ids.tolist() == expected
    assert [frame_index(f) for f in clip.frames] == expected
    np.testing.assert_allclose(clip.times, np.asarray(expected) / FPS, atol=1e-9)
    assert sample_fps(videos["mp4"], 25.0).frame_ids.tolist() == list(range(T))  # above native: all once
    capped = sample_fps(videos["mp4"], 4.0, max_frames=5)  # too many: uniform over the whole video
    assert capped.frame_ids.tolist() == [4, 12, 20, 28, 36]
    assert fps_ids(30, 30.0, 1.0).tolist() == [0]
    assert fps_ids(31, 30.0, 1.0).tolist() == [0, 30]


def test_resize_keeps_native_size(videos: dict[str, Path]) -> None:
    native = read_frames(videos["mp4"], [3, 9])
    short = read_frames(videos["mp4"], [3, 9], size=24)
    assert short.frames.shape == (2, 24, 32, 3)
    assert (short.width, short.height) == (W, H)
    exact = read_frames(videos["mp4"], [3, 9], size=(40, 30))
    assert exact.frames.shape == (2, 30, 40, 3)
    expected = np.asarray(Image.fromarray(native.frames[0]).resize((40, 30), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(exact.frames[0], expected)
    assert output_size(48, 64, 24) == (24, 32)  # portrait: the width is the short side
    assert output_size(W, H, None) == (W, H)


def test_odd_size_errors_or_pads(tmp_path: Path) -> None:
    path = tmp_path / "odd.mp4"
    with pytest.raises(VideoError, match="even") as excinfo:
        write_video(path, FRAMES[:3, :47, :63], FPS)
    assert_video_error(excinfo, path)
    write_video(path, FRAMES[:3, :47, :63], FPS, pad=True)
    assert probe(path) == VideoInfo(3, FPS, W, H, pytest.approx(0.3), False)


def test_write_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_video(tmp_path / "a.mp4", FRAMES.astype(np.float32), FPS)
    for path, frames in [(tmp_path / "a.gif", FRAMES), (tmp_path / "empty.mp4", FRAMES[:0])]:
        with pytest.raises(VideoError) as excinfo:
            write_video(path, frames, FPS)
        assert_video_error(excinfo, path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nothing_here.mp4"
    with pytest.raises(VideoError, match="not found") as excinfo:
        sample_uniform(path, 4)
    assert_video_error(excinfo, path)


def test_not_a_video(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    audio = tmp_path / "tone.wav"
    with av.open(str(audio), "w") as container:  # a real media file without a video stream
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    for path in (text, audio, tmp_path):
        with pytest.raises(VideoError) as excinfo:
            probe(path)
        assert_video_error(excinfo, path)


@pytest.mark.parametrize("ext, codec", [("avi", "mpeg4"), ("mkv", "libx264"), ("mp4", "libx264")])
def test_zero_frame_video(tmp_path: Path, ext: str, codec: str) -> None:
    path = tmp_path / f"empty.{ext}"
    with av.open(str(path), "w") as container:  # header written, no frame ever muxed
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        container.start_encoding()
        container.mux(stream.encode())
    with pytest.raises(VideoError) as excinfo:
        sample_uniform(path, 1)
    assert_video_error(excinfo, path)


def test_truncated_mp4_is_a_video_error(videos: dict[str, Path], tmp_path: Path) -> None:
    data = videos["mp4"].read_bytes()
    for fraction in (0.5, 0.7):
        path = tmp_path / f"cut_{fraction}.mp4"
        path.write_bytes(data[: int(len(data) * fraction)])
        with pytest.raises(VideoError) as excinfo:
            read_frames(path, [0])
        assert_video_error(excinfo, path)


def test_truncated_avi_gives_the_frames_that_decode(videos: dict[str, Path], tmp_path: Path) -> None:
    data = videos["avi"].read_bytes()
    path = tmp_path / "cut.avi"
    path.write_bytes(data[: int(len(data) * 0.9)])
    assert probe(path).num_frames == T  # the header still promises every frame
    head = read_frames(path, [0, 1, 2])
    assert [frame_index(f) for f in head.frames] == [0, 1, 2]
    with pytest.raises(VideoError, match="truncated") as excinfo:
        read_frames(path, [0, T - 1])
    assert_video_error(excinfo, path)


def test_asking_for_frames_that_do_not_exist(videos: dict[str, Path]) -> None:
    path = videos["mp4"]
    for call in (
        lambda: sample_uniform(path, T + 1),
        lambda: sample_uniform(path, 0),
        lambda: read_frames(path, [3, T]),
        lambda: read_frames(path, [-1, 3]),
    ):
        with pytest.raises(VideoError) as excinfo:
            call()
        assert_video_error(excinfo, path)
