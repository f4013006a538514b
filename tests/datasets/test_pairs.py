"""Pairs files: your own (video, sentence) pairs, read and checked line by line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zsgrounding.datasets.pairs import load_pairs
from zsgrounding.errors import DatasetError


def test_pairs_resolve_videos_and_default_ids(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "pairs.jsonl"
    path.parent.mkdir()
    lines = [
        {"video": "clips/a.mp4", "query": " the red circle "},
        {},
        {"video": str(tmp_path / "b.mp4"), "query": "the dog", "id": 7},
    ]
    path.write_text("\n".join("" if not line else json.dumps(line) for line in lines) + "\n")
    first, second = load_pairs(path)
    assert (first.id, first.video, first.sentence, first.gt) == (
        "a.mp4:1",
        path.parent / "clips" / "a.mp4",
        "the red circle",
        None,
    )
    assert (second.id, second.video) == ("7", tmp_path / "b.mp4")
    assert first.meta == {} and second.meta == {}


def test_a_pair_may_name_its_track_file_relative_to_the_pairs_file(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    lines = [
        {"video": "a.mp4", "query": "x", "tracks": "t/a.json"},
        {"video": "a.mp4", "query": "y", "tracks": "t/a.json"},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert [s.meta["tracks"] for s in load_pairs(path)] == [tmp_path / "t" / "a.json"] * 2


@pytest.mark.parametrize(
    "line, message",
    [
        ("not json", "line 1: not a JSON object"),
        ("[1, 2]", 'line 1: expected an object {"video": ..., "query": ...}'),
        ('{"video": "a.mp4"}', "line 1: 'query' must be a non-empty sentence"),
        ('{"video": 3, "query": "x"}', "line 1: 'video' must be a path"),
        ('{"video": "a.mp4", "query": "x", "id": true}', "line 1: 'id' must be a string or an integer"),
        ('{"video": "a.mp4", "query": "x", "gt": 1}', "line 1: unknown keys \\['gt'\\]"),
        (
            '{"video": "a.mp4", "query": "x", "id": "k"}\n{"video": "b.mp4", "query": "y", "id": "k"}',
            "line 2: id 'k' is given twice",
        ),
        ("\n\n", "no pairs"),
        (
            '{"video": "a.mp4", "query": "x", "tracks": 5}',
            "line 1: 'tracks' must be the path of a track file",
        ),
        (
            '{"video": "a.mp4", "query": "x", "tracks": "t.json"}\n{"video": "a.mp4", "query": "y"}',
            "pair 'a.mp4:2' has no 'tracks' but line 1 gives its video 'a.mp4' a track file",
        ),
    ],
)
def test_malformed_lines_are_one_error_naming_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text(line)
    with pytest.raises(DatasetError, match=message) as err:
        load_pairs(path)
    assert "\n" not in str(err.value)
