"""Atomic writes: the new file whole, or the old one untouched and no temporary file left."""

from __future__ import annotations

from pathlib import Path

import pytest

from zsgrounding.atomic import write_atomic, write_bytes_atomic, write_text_atomic


def test_writes_create_the_folder_and_replace_whole(tmp_path: Path) -> None:
    path = write_text_atomic(tmp_path / "a" / "b.json", "caf\u00e9\n")
    assert path.read_bytes() == "caf\u00e9\n".encode()
    write_bytes_atomic(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in path.parent.iterdir()) == ["b.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = write_text_atomic(tmp_path / "state.json", "old")

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text("ne")  # a partial new file, then the writer dies
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, half_then_fail)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_files_get_the_mode_a_plain_write_gives(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic = write_text_atomic(tmp_path / "atomic.txt", "x")
    assert atomic.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
