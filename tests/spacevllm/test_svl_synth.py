"""Uni-STG synthesis on toy videos with a toy detector built from the toy world's object tracks,
with injected noise, and the LLM analyzer against a real OpenAI-compatible server on loopback."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from spacevllm.convert import convert
from spacevllm.data import read_records
from spacevllm.synth import (
    Analysis,
    LLMAnalyzer,
    RuleAnalyzer,
    SynthConfig,
    SynthItem,
    SynthWarning,
    build_messages,
    items_from_records,
    items_from_samples,
    parse_objects,
    synthesize,
)
from zsgrounding.datasets import load_dataset
from zsgrounding.llm import ChatClient
from zsgrounding.proposals.detections import FrameDetections
from zsgrounding.toy.world import MOTIONS, ToyWorldConfig, load_sidecar, make_dataset, sidecar_tracks
from zsgrounding.video import read_frames

# Two objects per video, all visible from start to end: the refined span of a clean video is the
# whole video, so every expected value below follows from the noise alone.
TOY = ToyWorldConfig(
    seed=7,
    min_objects=2,
    max_objects=2,
    p_appear_leave=0.0,
    actions=(*MOTIONS, "stay_still"),
    min_seconds=3.0,
    max_seconds=5.0,
)
# video key -> (num_frames, caption) of the six toy videos of TOY
VIDEOS = {
    "toy_00001.mp4": (49, "the big purple diamond that grows"),
    "toy_00002.mp4": (48, "the small white circle that shrinks"),
    "toy_00003.mp4": (35, "the green square that moves right"),
    "toy_00004.mp4": (45, "the yellow diamond that stays still"),
    "toy_00005.mp4": (41, "the orange square that moves right"),
    "toy_00006.mp4": (41, "the small white triangle that moves left"),
}
TARGET_SCORE, OTHER_SCORE = 0.9, 0.6


class ToyDetector:
    """Finds every object whose label holds the prompt word, from the toy world's tracks.

    It recognises a frame by the hash of its decoded pixels (plus its frame id), so it sees
    exactly what the pipeline decoded. The caption's target scores 0.9, other matches 0.6.
    ``noise`` maps a video key to one injected fault:

    - ``low``: three extra boxes per frame scoring 0.1, 0.2 and 0.29 (below the 0.3 threshold);
    - ``crowd_start``: frames 0-4 get extra 0.4 boxes up to 4 confident boxes (complex scenes);
    - ``crowd_all``: every frame gets 4 confident boxes;
    - ``jump``: on frame 20 the target's box is scaled to 3x its area about its centre;
    - ``faint``: every score is 0.25, so nothing passes the threshold.
    """

    def __init__(self, folder: Path, noise: dict[str, str]) -> None:
        self.noise = noise
        self.videos = load_sidecar(folder)["videos"]
        self.index: dict[tuple[str, int], str] = {}
        for key, entry in self.videos.items():
            clip = read_frames(folder / "videos" / key, range(entry["num_frames"]))
            for fid, frame in zip(clip.frame_ids, clip.frames, strict=True):
                self.index[(hashlib.sha1(frame.tobytes()).hexdigest(), int(fid))] = key
        self.calls: list[tuple[str, str, int]] = []

    def detect(
        self, frames: np.ndarray, frame_ids: Sequence[int], text: str, size: tuple[int, int] | None = None
    ) -> list[FrameDetections]:
        out = []
        for frame, fid in zip(frames, frame_ids, strict=True):
            key = self.index[(hashlib.sha1(frame.tobytes()).hexdigest(), int(fid))]
            out.append(self._frame(key, int(fid), text))
        self.calls.append((key, text, len(out)))
        return out

    def _frame(self, key: str, fid: int, text: str) -> FrameDetections:
        entry, noise = self.videos[key], self.noise.get(key)
        boxes, scores = [], []
        for track in sidecar_tracks(entry):
            if text in track.label.split() and fid in track.frame_ids:
                box = track.boxes_at([fid])[0]
                target = track.track_id == entry["target"]
                if noise == "jump" and target and fid == 20:
                    centre, half = (box[:2] + box[2:]) / 2, (box[2:] - box[:2]) * np.sqrt(3) / 2
                    box = np.concatenate([centre - half, centre + half])
                boxes.append(box)
                scores.append(TARGET_SCORE if target else OTHER_SCORE)
        if boxes and noise == "low":
            boxes += [[1, 1, 5, 5], [2, 2, 6, 6], [3, 3, 7, 7]]
            scores += [0.1, 0.2, 0.29]
        if boxes and (noise == "crowd_all" or (noise == "crowd_start" and fid < 5)):
            extra = 4 - len(boxes)
            boxes += [[10 * k, 0, 10 * k + 8, 8] for k in range(extra)]
            scores += [0.4] * extra
        if noise == "faint":
            scores = [0.25] * len(scores)
        order = np.argsort(scores, kind="stable")[::-1]  # best first, as Grounding DINO
        return FrameDetections(fid, np.asarray(boxes).reshape(-1, 4)[order], np.asarray(scores)[order])


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("toy")
    make_dataset(folder, len(VIDEOS), TOY, progress=False)
    return folder


def _items(toy: Path) -> list[SynthItem]:
    items = items_from_samples(load_dataset("toy", toy))
    return [SynthItem(i.id, i.video, i.caption, None, {"source": "toy"}) for i in items]


NOISE = {
    "toy_00002.mp4": "low",
    "toy_00003.mp4": "crowd_start",
    "toy_00004.mp4": "crowd_all",
    "toy_00005.mp4": "jump",
    "toy_00006.mp4": "faint",
}


def test_toy_world_is_as_expected(toy: Path) -> None:
    entries = load_sidecar(toy)["videos"]
    assert {k: (e["num_frames"], e["caption"]) for k, e in entries.items()} == VIDEOS
    assert all(o["visible"] == [0, e["num_frames"]] for e in entries.values() for o in e["objects"])


def test_pipeline_counts_every_stage(toy: Path) -> None:
    items = _items(toy)
    first = items[0]
    items += [
        SynthItem("short", first.video, first.caption, (1.0, 2.5)),  # 15 frames: 1.5 s
        SynthItem("outside", first.video, first.caption, (100.0, 105.0)),
        SynthItem("missing", toy / "videos" / "nope.mp4", first.caption),
        SynthItem("wordless", first.video, "?!"),
    ]
    detector = ToyDetector(toy, NOISE)
    out = toy / "synth" / "stvg.jsonl"
    records, report = synthesize(items, detector, RuleAnalyzer(), SynthConfig(), out=out)

    assert [r.id for r in records] == ["toy_00001.mp4", "toy_00002.mp4", "toy_00003.mp4"]
    assert (report.total, report.kept) == (10, 3)
    assert report.removed == {
        "analyzer": {"no_object": 1},
        "annotator": {"video_error": 1, "empty_span": 1, "not_found": 1},
        "refiner": {"too_short": 1, "too_long": 0},
        "filter": {"complex_scene": 1, "area_jump": 1},
    }
    assert [(d.id, d.stage, d.reason) for d in report.dropped] == [
        ("toy_00004.mp4", "filter", "complex_scene"),
        ("toy_00005.mp4", "filter", "area_jump"),
        ("toy_00006.mp4", "annotator", "not_found"),
        ("short", "refiner", "too_short"),
        ("outside", "annotator", "empty_span"),
        ("missing", "annotator", "video_error"),
        ("wordless", "analyzer", "no_object"),
    ]
    assert report.dropped[1].detail == "box area jumps between frames 19 and 20"
    assert report.frames_annotated == 49 + 48 + 35 + 45 + 41 + 41 + 15
    # toy_00002: 3 low boxes on each of its 48 frames; toy_00006: its one triangle (the other
    # object is a square) is faint on each of its 41 frames
    assert report.boxes_below_threshold == 3 * 48 + 1 * 41
    assert report.frames_complex == 5 + 45
    assert report.analyzer_fallbacks == 0
    assert report.removed_by("annotator") == 3
    assert report.summary().splitlines()[0] == "kept 3 of 10"

    sidecar = load_sidecar(toy)["videos"]
    for record in records:
        entry = sidecar[record.id]
        target = sidecar_tracks(entry)[entry["target"]]
        # the refined span is the whole video: the target is found on every frame
        assert record.span == (0.0, entry["num_frames"] / 10.0)
        assert record.meta["span_frames"] == [0, entry["num_frames"]]
        assert (record.task, record.query, record.fps, record.num_frames) == (
            "stvg",
            entry["caption"],
            10.0,
            entry["num_frames"],
        )
        kept = sorted(record.boxes)
        assert kept == list(range(5 if record.id == "toy_00003.mp4" else 0, entry["num_frames"]))
        # the most confident box per frame is the target's
        assert np.array_equal(np.array([record.boxes[f] for f in kept]), target.boxes_at(kept))
        assert record.meta["box_scores"] == [TARGET_SCORE] * len(kept)
        assert record.meta["source"] == "toy"
        assert record.meta["analyzer"] == "rules"
    assert [r.meta["object"] for r in records] == ["diamond", "circle", "square"]
    assert read_records(out) == records


def test_refiner_too_long_and_frame_sampling(toy: Path) -> None:
    items = _items(toy)[:2]
    detector = ToyDetector(toy, {})
    records, report = synthesize(items, detector, RuleAnalyzer(), SynthConfig(max_seconds=4.85))
    assert [r.id for r in records] == ["toy_00002.mp4"]  # 4.8 s; the first video is 4.9 s
    assert report.removed["refiner"] == {"too_short": 0, "too_long": 1}
    # 2 fps over [1, 4) s: frames 10, 15, ..., 35; the span snaps to the first and last of them
    config = SynthConfig(sample_fps=2.0)
    (record,), report = synthesize(
        [SynthItem("a", items[0].video, items[0].caption, (1.0, 4.0))], detector, RuleAnalyzer(), config
    )
    assert sorted(record.boxes) == [10, 15, 20, 25, 30, 35]
    assert record.span == (1.0, 3.6) and record.meta["span_frames"] == [10, 36]
    assert report.frames_annotated == 6
    (record,), _ = synthesize([items[0]], detector, RuleAnalyzer(), SynthConfig(max_frames=4))
    assert sorted(record.boxes) == [6, 18, 30, 42]  # uniform: centres of 4 equal parts of 49 frames
    # search_margin widens the window, so the refiner can widen a span that was too tight
    (record,), _ = synthesize(
        [SynthItem("m", items[0].video, items[0].caption, (1.0, 2.0))],
        detector,
        RuleAnalyzer(),
        SynthConfig(search_margin=1.0, min_seconds=1.0),
    )
    assert record.meta["span_frames"] == [0, 30]


def test_objects_are_tried_subject_first(toy: Path) -> None:
    class Fixed:
        def analyze(self, caption: str) -> Analysis:
            return Analysis(("Hexagon.", "the Diamond", "hexagon", "man"), "llm")

    detector = ToyDetector(toy, {})
    (record,), _ = synthesize(_items(toy)[:1], detector, Fixed(), SynthConfig(max_objects=2))
    assert (record.meta["object"], record.meta["object_rank"], record.meta["objects"]) == (
        "diamond",
        1,
        ["hexagon", "diamond"],
    )
    assert [(text, n) for _, text, n in detector.calls] == [("hexagon", 49), ("diamond", 49)]


def test_config_and_reply_parsing() -> None:
    with pytest.raises(ValueError, match=r"box_threshold 1\.5 is not in"):
        SynthConfig(box_threshold=1.5)
    with pytest.raises(ValueError, match="need 0 <= min_seconds <= max_seconds"):
        SynthConfig(min_seconds=5, max_seconds=2)
    assert parse_objects('Sure: {"objects": ["man", "cup"]} done') == ["man", "cup"]
    assert parse_objects('{"x": 1} {"objects": []}') == []
    with pytest.raises(ValueError, match="no JSON object with an 'objects' list"):
        parse_objects('{"objects": "man"}')
    messages = build_messages("a dog runs")
    assert messages[-1] == {"role": "user", "content": "Caption: a dog runs"}
    assert json.loads(messages[2]["content"]) == {"objects": ["woman", "fridge", "bottle"]}
    assert RuleAnalyzer().analyze("The man in the red shirt turns around.") == Analysis(("man",), "rules")
    assert RuleAnalyzer().analyze("  ") == Analysis((), "rules")


def test_items_from_records(tmp_path: Path) -> None:
    ann = tmp_path / "c.txt"
    ann.write_text("3MSZA 24.3 30.4##person turn a light on.\n", encoding="utf-8")
    records = convert("charades-sta", ann, tmp_path / "c.jsonl", video_root=tmp_path)
    (item,) = items_from_records(records)
    assert (item.id, item.video, item.caption, item.span) == (
        "3MSZA_1",
        tmp_path / "3MSZA.mp4",
        "person turn a light on.",
        (24.3, 30.4),
    )


# ------------------------------------------------------------------------------------ LLM analyzer


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        status, content = self.server.next_reply(body)
        if status == 200:
            payload: dict[str, Any] = {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", ""),
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": content},
                    }
                ],
            }
        else:
            payload = {"error": {"message": "scripted failure"}}
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    """A chat-completions endpoint answering ``(status, content)`` replies in order (the last repeats)."""

    daemon_threads = True

    def __init__(self, replies: list[tuple[int, str]]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.replies, self.requests = replies, []
        self._lock = threading.Lock()

    def next_reply(self, body: dict[str, Any]) -> tuple[int, str]:
        with self._lock:
            self.requests.append(body)
            return self.replies[min(len(self.requests), len(self.replies)) - 1]


@pytest.fixture
def serve() -> Iterator[Any]:
    """``serve(*replies)`` -> ``(LLMDecomposer on the server, server)``; servers stop at teardown."""
    servers: list[_Server] = []

    def start(*replies: tuple[int, str]) -> tuple[ChatClient, _Server]:
        server = _Server(list(replies))
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
        servers.append(server)
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        llm = ChatClient(url, model="test-model", api_key="k", timeout=2.0, max_retries=1, backoff=0.0)
        return llm, server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_llm_analyzer_through_the_chat_client(toy: Path, serve: Any) -> None:
    reply = json.dumps({"objects": ["Hexagon", "the Diamond", "hexagon"]})
    llm, server = serve((200, "not json"), (200, reply))  # an unparsable reply is retried
    detector = ToyDetector(toy, {})
    (record,), report = synthesize(_items(toy)[:1], detector, LLMAnalyzer(llm))
    assert (record.meta["object"], record.meta["object_rank"], record.meta["analyzer"]) == (
        "diamond",
        1,
        "llm",
    )
    assert record.meta["objects"] == ["hexagon", "diamond"]
    assert report.analyzer_fallbacks == 0
    assert len(server.requests) == 2
    request = server.requests[1]
    assert request["model"] == "test-model"
    assert request["messages"] == build_messages("the big purple diamond that grows")
    assert request["response_format"] == {"type": "json_object"}


def test_llm_failure_falls_back_to_rules(toy: Path, serve: Any) -> None:
    llm, server = serve((500, ""))
    detector = ToyDetector(toy, {})
    with pytest.warns(
        SynthWarning, match=r"LLM analyzer \(test-model\) failed .*HTTP 500.*; using offline rules"
    ):
        (record,), report = synthesize(_items(toy)[:1], detector, LLMAnalyzer(llm))
    assert (record.meta["object"], record.meta["analyzer"]) == ("diamond", "fallback")
    assert report.analyzer_fallbacks == 1
    assert len(server.requests) == 2  # one retry
