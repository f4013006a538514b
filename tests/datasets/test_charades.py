"""Charades-STA loader on a small hand-written text file."""

from pathlib import Path

import pytest

from zsgrounding.datasets import LoadReport, MalformedEntryWarning, load_charades
from zsgrounding.errors import DatasetError

TEXT = "3MSZA 24.3 30.4##person turn a light on.\n\nAO8RW 0 6.9##a person is putting a book on a shelf.  \n"


def _write(tmp_path, text=TEXT) -> Path:
    path = tmp_path / "charades_sta_test.txt"
    path.write_text(text)
    return path


def test_parsing_by_hand(tmp_path):
    samples = load_charades(_write(tmp_path), video_root=tmp_path / "videos")
    assert [s.id for s in samples] == ["3MSZA_1", "AO8RW_3"]  # line numbers count the blank line
    s = samples[0]
    assert s.gt is None
    assert s.span_seconds == (24.3, 30.4)
    assert s.sentence == "person turn a light on."
    assert s.video == tmp_path / "videos" / "3MSZA.mp4"
    assert samples[1].span_seconds == (0.0, 6.9)
    assert samples[1].sentence == "a person is putting a book on a shelf."


def test_video_without_root(tmp_path):
    assert load_charades(_write(tmp_path))[0].video == Path("3MSZA.mp4")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("XYZ 1.0 2.0 no separator", "'##'"),
        ("XYZ a 2.0##a sentence", "numbers"),
        ("XYZ 5.0 2.0##a sentence", "before start"),
        ("XYZ 1.0##a sentence", "VIDEO START END"),
        ("XYZ 1.0 2.0##   ", "empty"),
    ],
)
def test_malformed_line(tmp_path, line, reason):
    path = _write(tmp_path, f"3MSZA 24.3 30.4##ok.\n{line}\nAO8RW 0 6.9##fine.\n")
    with pytest.raises(DatasetError, match=reason) as info:
        load_charades(path)
    assert "line 2" in str(info.value)
    report = LoadReport()
    with pytest.warns(MalformedEntryWarning, match="line 2"):
        samples = load_charades(path, skip_malformed=True, report=report)
    assert [s.id for s in samples] == ["3MSZA_1", "AO8RW_3"]
    assert report.skipped_ids == ["line 2"]


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_charades(tmp_path / "nope.txt")
