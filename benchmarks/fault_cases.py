"""The fault cases of the reliability audit, run against a checkout of the toolkit.

    python benchmarks/fault_cases.py --out runs/faults/after.json
    git worktree add /tmp/before <commit>
    python benchmarks/fault_cases.py --source /tmp/before --out runs/faults/before.json
    python benchmarks/fault_cases.py --table runs/faults/before.json runs/faults/after.json

Each case builds its own bad input under a scratch folder (a malformed prediction or annotation
file, a bad train config, a bad option, a pickle payload, a misbehaving LLM endpoint on
127.0.0.1, an eval run folder resumed with other settings, ...), runs ``stvg`` as a user would
(``python -m cli`` with ``PYTHONPATH=<source>``, so any checkout can be measured with this
interpreter) and records the exit code, the stderr lines, whether a traceback was printed, the
wall time and a verdict: *ok* when the toolkit handled the case as the reliability rules ask (a
bad input: exit 2 and one ``stvg: error:`` line; a payload: not run; a resume: nothing mixed),
else what went wrong. ``--table`` prints a before / after markdown table of two runs.

Cases that need a SpaceVLLM training run (a pickled scheduler state in a resumed checkpoint, an
unreadable video in the training data) are not here: their tests train a tiny model
(``tests/spacevllm/test_svl_train.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_BAR = re.compile(r"\d+%\|.*\]\s*$", re.MULTILINE)
KEY = "sk-audit0123456789abcdef"  # a made-up key: the case checks it never reaches the output


@dataclass
class Outcome:
    """What one case did: exit code, stderr lines, traceback, seconds and the verdict."""

    rc: int | None
    seconds: float
    stderr_lines: int
    traceback: bool
    verdict: str  # "ok" or what went wrong
    detail: str = ""


@dataclass
class Case:
    id: str
    item: int  # the audit item it belongs to
    title: str
    run: Callable[[Context], Outcome]


@dataclass
class Context:
    source: Path
    scratch: Path
    toy: Path = field(init=False)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STVG_", "OPENAI_"))}
        env.update(PYTHONPATH=str(self.source), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", **extra)
        return env

    def stvg(self, args: list[str], timeout: float = 300, **env: str) -> tuple[int | None, str, str, float]:
        """Run ``stvg ARGS`` from this context's source; ``rc`` is ``None`` on a timeout."""
        t0 = time.perf_counter()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "cli", *args],
                cwd=self.scratch,
                env=self.env(**env),
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as err:
            out = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
            errs = err.stderr.decode() if isinstance(err.stderr, bytes) else (err.stderr or "")
            return None, out, errs, time.perf_counter() - t0
        return done.returncode, done.stdout, done.stderr, time.perf_counter() - t0


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _without_bars(text: str) -> str:
    """``text`` less tqdm progress-bar updates (``Loading weights: 40%|...``), which end in ``]``."""
    return "\n".join(line for line in text.replace("\r", "\n").splitlines() if not _BAR.search(line))


def one_line_error(ctx: Context, args: list[str], needle: str = "", **env: str) -> Outcome:
    """A bad input: exit 2 and exactly one ``stvg: error:`` line (naming ``needle``), no traceback."""
    rc, _, err, secs = ctx.stvg(args, **env)
    lines = _lines(err)
    tb = "Traceback" in err
    if rc == 2 and len(lines) == 1 and needle not in lines[0]:  # refused, but for another reason
        return Outcome(rc, secs, 1, tb, "accepted (a later check failed)", lines[0][:160])
    if rc == 2 and len(lines) == 1 and lines[0].startswith("stvg: error:") and not tb:
        return Outcome(rc, secs, len(lines), tb, "ok", lines[0][:160])
    bare = _lines(_without_bars(err))
    if rc == 2 and len(bare) == 1 and bare[0].startswith("stvg: error:") and not tb:
        return Outcome(rc, secs, len(lines), tb, "ok after the loading bar", bare[0][:160])
    if tb:
        verdict = f"traceback ({len(lines)} lines)"
    elif rc == 0:
        verdict = "accepted"
    else:
        verdict = f"exit {rc}, {len(lines)} lines"
    return Outcome(rc, secs, len(lines), tb, verdict, (lines[-1] if lines else "")[:160])


def refused_or_warned(ctx: Context, args: list[str], needle: str) -> Outcome:
    """A questionable input a real file could hold: exit 0 with one warning line naming it."""
    rc, _, err, secs = ctx.stvg(args)
    lines = _lines(err)
    warned = [line for line in lines if needle in line]
    tb = "Traceback" in err
    if rc == 0 and len(warned) == 1 and not tb:
        return Outcome(rc, secs, len(lines), tb, "ok", warned[0][:160])
    if rc == 2 and len(lines) == 1 and not tb:
        return Outcome(rc, secs, len(lines), tb, "ok", lines[0][:160])
    return Outcome(rc, secs, len(lines), tb, "traceback" if tb else "accepted in silence")


# ---------------------------------------------------------------- inputs


def _hcstvg(ctx: Context, name: str, **changes: object) -> Path:
    entry = {"st_frame": 11, "bbox": [[0, 0, 10, 10]] * 10, "img_num": 100}
    entry.update(width=64, height=48, caption="the red circle")
    entry.update(changes)
    path = ctx.scratch / f"{name}.json"
    path.write_text(json.dumps({"a.mp4": entry}))
    return path


def _score(ctx: Context, pred_text: str | bytes, name: str) -> list[str]:
    pred = ctx.scratch / f"{name}.pred.json"
    if isinstance(pred_text, bytes):
        pred.write_bytes(pred_text)
    else:
        pred.write_text(pred_text)
    gt = _hcstvg(ctx, "gt")
    return ["score", "--dataset", "hcstvg-v1", "--gt", str(gt), "--pred", str(pred)]


def _pred(boxes: dict[str, list[float]] | str, start: int = 10, end: int = 20) -> str:
    inner = boxes if isinstance(boxes, str) else json.dumps(boxes)
    return f'{{"a.mp4": {{"start": {start}, "end": {end}, "boxes": {inner}}}}}'


def _train_yaml(ctx: Context, name: str, extra: str | bytes) -> list[str]:
    path = ctx.scratch / f"{name}.yaml"
    body = f"base_model: {ctx.scratch / 'no_base'}\noutput_dir: {ctx.scratch / name}\ndata: [d.jsonl]\n"
    if isinstance(extra, bytes):
        path.write_bytes(body.encode() + extra)
    else:
        path.write_text(body + extra + "\n")
    return ["train", "--config", str(path)]


def _toy_video(ctx: Context) -> Path:
    return sorted((ctx.toy / "videos").iterdir())[0]


def _ground(ctx: Context, *flags: str) -> list[str]:
    video = _toy_video(ctx)
    return [
        "ground",
        str(video),
        "the red circle",
        "--toy-dir",
        str(ctx.toy),
        "--out",
        str(ctx.scratch / "g"),
        *flags,
    ]


def _eval(ctx: Context, out: Path, *flags: str, gt: Path | None = None) -> list[str]:
    gt = gt or ctx.toy
    return ["eval", "--dataset", "toy", "--gt", str(gt), "--out", str(out), "--quiet", *flags]


# ---------------------------------------------------------------- a misbehaving endpoint


class _Endpoint:
    """An OpenAI-compatible endpoint on 127.0.0.1 that answers every request one bad way."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                self.rfile.read(length)
                if endpoint.mode == "hang":
                    time.sleep(600)
                    return
                if endpoint.mode == "echo":  # an error body that quotes the request's headers
                    said = (
                        f"upstream failed for request with Authorization: {self.headers.get('Authorization')}"
                    )
                    body, status, kind = json.dumps({"error": {"message": said}}), 500, "application/json"
                else:
                    body, status, kind = "<html><body>Bad gateway page</body></html>", 200, "text/html"
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def env(self) -> dict[str, str]:
        return {
            "STVG_LLM_BASE_URL": f"http://127.0.0.1:{self.server.server_port}/v1",
            "STVG_LLM_MODEL": "audit",
            "STVG_LLM_API_KEY": KEY,
        }

    def close(self) -> None:
        self.server.shutdown()


def case_key_echo(ctx: Context) -> Outcome:
    """``stvg ground`` against an endpoint whose 500 body echoes the request's bearer key."""
    endpoint = _Endpoint("echo")
    try:
        rc, stdout, err, secs = ctx.stvg(_ground(ctx), timeout=300, **endpoint.env)
    finally:
        endpoint.close()
    written = "".join(p.read_text(errors="replace") for p in (ctx.scratch / "g").rglob("*.json"))
    printed, stored = (stdout + err).count(KEY[3:]), written.count(KEY[3:])
    if printed or stored:
        verdict = f"key printed {printed} time(s), written {stored} time(s)"
    else:
        verdict = "ok" if rc == 0 else f"exit {rc}"
    warned = [line for line in _lines(err) if "LLM" in line]
    return Outcome(rc, secs, len(_lines(err)), "Traceback" in err, verdict, (warned or [""])[-1][:200])


def case_html_200(ctx: Context) -> Outcome:
    endpoint = _Endpoint("html")
    try:
        rc, out, err, secs = ctx.stvg(["decompose", "the man turns around"], timeout=200, **endpoint.env)
    finally:
        endpoint.close()
    answered = (rc == 0 and "attribute" in out.lower()) or (rc == 0 and out.strip().startswith("{"))
    tb = "Traceback" in err
    verdict = "ok" if answered and not tb else "traceback" if tb else f"exit {rc}"
    return Outcome(rc, secs, len(_lines(err)), tb, verdict, (_lines(err) or [""])[-1][:160])


def case_hang(ctx: Context) -> Outcome:
    """Three queries at a hanging endpoint, STVG_LLM_TIMEOUT=3: the run must finish in bounded time."""
    endpoint = _Endpoint("hang")
    limit = 120.0
    try:
        rc, out, err, secs = ctx.stvg(
            ["decompose", "the man turns", "a dog runs", "the girl sits"],
            timeout=limit,
            STVG_LLM_TIMEOUT="3",
            **endpoint.env,
        )
    finally:
        endpoint.close()
    lines = _lines(err)
    if rc is None:
        return Outcome(rc, secs, len(lines), False, f"no answer within {limit:.0f} s", "")
    ok = rc == 0 and len(_lines(out)) == 3 and lines
    return Outcome(
        rc, secs, len(lines), "Traceback" in err, "ok" if ok else f"exit {rc}", " / ".join(lines)[:200]
    )


# ---------------------------------------------------------------- pickles


def case_toy_stage_pickle(ctx: Context) -> Outcome:
    """A pickled toy-pretrain stage file whose load would create a marker file."""
    out = ctx.scratch / "toy_pretrain"
    marker = ctx.scratch / "PAYLOAD_RAN"
    (out / "stages").mkdir(parents=True)
    payload = (
        "import pickle, pathlib\n"
        "class P:\n"
        f"    def __reduce__(self): return (pathlib.Path.touch, (pathlib.Path({str(marker)!r}),))\n"
        f"pathlib.Path({str(out / 'stages' / 'stage1.pt')!r}).write_bytes(pickle.dumps({{'config': P()}}))\n"
    )
    subprocess.run([sys.executable, "-c", payload], check=True)
    t0 = time.perf_counter()
    log = ctx.scratch / "pretrain.err"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "toy", "pretrain", "--out", str(out), "--quick"],
            cwd=ctx.scratch,
            env=ctx.env(),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        # The stage file is read after the clip banks are rendered: stop once it was read or refused.
        while time.perf_counter() - t0 < 240 and proc.poll() is None and not marker.exists():
            if "stage1.pt" in log.read_text():
                break
            time.sleep(0.5)
        proc.kill()
        proc.wait()
    err = log.read_text()
    secs = time.perf_counter() - t0
    ran = marker.exists()
    refused = "stage1.pt" in err
    verdict = "payload ran" if ran else "ok" if refused else "not reached"
    return Outcome(
        proc.returncode, secs, len(_lines(err)), "Traceback" in err, verdict, (_lines(err) or [""])[0][:160]
    )


# ---------------------------------------------------------------- run folders


def case_resume_other_settings(ctx: Context) -> Outcome:
    out = ctx.scratch / "eval_mix"
    rc, _, err, s1 = ctx.stvg(_eval(ctx, out, "--num-frames", "4"))
    if rc != 0:
        return Outcome(
            rc, s1, len(_lines(err)), "Traceback" in err, "first run failed", _lines(err)[-1][:160]
        )
    rc, _out_text, err, s2 = ctx.stvg(_eval(ctx, out, "--num-frames", "8"))
    lines = _lines(err)
    if rc == 2 and len(lines) == 1 and "num_frames" in lines[0]:
        return Outcome(rc, s2, 1, False, "ok", lines[0][:160])
    return Outcome(
        rc, s2, len(lines), "Traceback" in err, "resumed and mixed in silence" if rc == 0 else f"exit {rc}"
    )


def case_failed_retried(ctx: Context) -> Outcome:
    import shutil

    data = ctx.scratch / "toy_broken"
    shutil.copytree(ctx.toy, data)
    video = sorted((data / "videos").iterdir())[0]
    good = video.read_bytes()
    video.write_bytes(b"not a video")
    out = ctx.scratch / "eval_retry"
    ctx.stvg(_eval(ctx, out, gt=data))
    video.write_bytes(good)
    rc, _stdout, err, secs = ctx.stvg(_eval(ctx, out, gt=data))
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
    errors = [r for r in results if r.get("error")]
    mine = [r for r in results if r.get("id") == video.stem or video.stem in str(r.get("id"))]
    verdict = (
        "ok"
        if rc == 0 and mine and not any(r.get("error") for r in mine[-1:])
        else "failed sample not retried"
    )
    return Outcome(rc, secs, len(_lines(err)), "Traceback" in err, verdict, f"{len(errors)} error lines kept")


def case_two_processes(ctx: Context) -> Outcome:
    data = ctx.scratch / "toy10"
    ctx.stvg(["toy", "make", "--n", "10", "--out", str(data), "--seed", "8", "--quiet"])
    out = ctx.scratch / "eval_twice"
    first = subprocess.Popen(
        [sys.executable, "-m", "cli", *_eval(ctx, out, gt=data)],
        cwd=ctx.scratch,
        env=ctx.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    t0 = time.perf_counter()
    while (
        not (out / "results.rank0.jsonl").exists() and first.poll() is None and time.perf_counter() - t0 < 120
    ):
        time.sleep(0.2)  # the first run holds the folder once it writes results
    started_while_running = first.poll() is None
    rc, out_text, err, secs = ctx.stvg(_eval(ctx, out, gt=data))
    first.wait()
    lines = _lines(err)
    if not started_while_running:
        return Outcome(rc, secs, len(lines), "Traceback" in err, "first run ended too early to test")
    if rc == 2 and len(lines) == 1:
        return Outcome(rc, secs, 1, False, "ok", lines[0][:160])
    done = re.search(r"done (\d+)", out_text)
    grounded = int(done.group(1)) if done else 0
    verdict = f"both processes grounded ({grounded} twice)" if rc == 0 and grounded else f"exit {rc}"
    return Outcome(rc, secs, len(lines), "Traceback" in err, verdict)


# ---------------------------------------------------------------- the case list


def _cases() -> list[Case]:
    def err(item: int, title: str, args: Callable[[Context], list[str]], needle: str = "") -> Case:
        return Case(f"{item}:{title}", item, title, lambda ctx: one_line_error(ctx, args(ctx), needle))

    big = "1" + "0" * 11
    return [
        Case("2:toy-stage-pickle", 2, "toy pretrain resumes a pickled stage file", case_toy_stage_pickle),
        Case("3:key-echo", 3, "LLM 500 body echoes the API key", case_key_echo),
        Case("4:resume-settings", 4, "eval resumed with --num-frames 8 over 4", case_resume_other_settings),
        Case("5:retry-errors", 5, "failed sample retried after the video is fixed", case_failed_retried),
        Case("6:two-processes", 6, "two evals into one --out", case_two_processes),
        Case("8:html-200", 8, "LLM answers 200 with an HTML page", case_html_200),
        Case("9:hang", 9, "LLM endpoint hangs (3 queries)", case_hang),
        err(10, "pred frame key '²'", lambda c: _score(c, _pred('{"\u00b2": [0, 0, 1, 1]}'), "sup")),
        err(
            10,
            "pred keys '0' and '00'",
            lambda c: _score(c, _pred('{"0": [0,0,1,1], "00": [0,0,1,1]}'), "dup"),
        ),
        err(10, "pred huge frame id", lambda c: _score(c, _pred({big: [0, 0, 1, 1]}), "hugeframe")),
        err(10, "pred huge end", lambda c: _score(c, _pred({}, end=int(big)), "hugeend")),
        err(10, "pred file not UTF-8", lambda c: _score(c, '{"caf\xe9": 1}'.encode("latin-1"), "latin")),
        err(10, "pred JSON 100,000 deep", lambda c: _score(c, "[" * 100_000 + "]" * 100_000, "deep")),
        err(
            10,
            "annotation img_num 10**12",
            lambda c: _score_gt(c, _hcstvg(c, "hugeimg", img_num=10**12)),
        ),
        err(
            10,
            "train YAML not UTF-8",
            lambda c: _train_yaml(c, "latin", "lr: caf\xe9".encode("latin-1")),
            "UTF-8",
        ),
        err(
            10,
            "train adam_betas: [a, b]",
            lambda c: _train_yaml(c, "betas_ab", "adam_betas: [a, b]"),
            "adam_betas",
        ),
        err(
            10,
            "train adam_betas: [0.9]",
            lambda c: _train_yaml(c, "betas_one", "adam_betas: [0.9]"),
            "adam_betas",
        ),
        err(10, "train lora: {r: big}", lambda c: _train_yaml(c, "lora_big", "lora: {r: big}"), "lora"),
        err(10, "train batch_size: 1.5", lambda c: _train_yaml(c, "bs15", "batch_size: 1.5"), "batch_size"),
        err(10, "train output_dir is a file", lambda c: _train_out_file(c), "output_dir"),
        err(
            10,
            "ground --gti fixed --fixed-index 9999",
            lambda c: _ground(c, "--gti", "fixed", "--fixed-index", "9999"),
        ),
        err(10, "ground --dtype float99", lambda c: _ground(c, "--dtype", "float99")),
        err(10, "ground --device tpu9", lambda c: _ground(c, "--device", "tpu9")),
        err(10, "ground --layers 0:999", lambda c: _ground(c, "--layers", "0:999")),
        err(10, "ground --layers 6:25", lambda c: _ground(c, "--layers", "6:25")),
        err(11, "pred negative start", lambda c: _score(c, _pred({}, start=-3), "negstart")),
        err(11, "pred negative frame key", lambda c: _score(c, _pred({"-3": [0, 0, 1, 1]}), "negkey")),
        err(11, "pred box x2 < x1", lambda c: _score(c, _pred({"12": [5, 0, 1, 1]}), "x2")),
        err(11, "pred box y2 < y1", lambda c: _score(c, _pred({"12": [0, 5, 1, 1]}), "y2")),
        err(11, "pred boolean coordinate", lambda c: _score(c, _pred('{"12": [true, 0, 1, 1]}'), "bool")),
        Case(
            "11:pred box outside span",
            11,
            "pred box outside the tube's span",
            lambda c: refused_or_warned(c, _score(c, _pred({"25": [0, 0, 1, 1]}), "outside"), "outside"),
        ),
        err(11, "annotation st_frame 0", lambda c: _score_gt(c, _hcstvg(c, "st0", st_frame=0))),
        err(11, "VidSTG video_id: true", lambda c: _score_vidstg(c, video_id=True)),
        err(
            11, "train batch_size: true", lambda c: _train_yaml(c, "bstrue", "batch_size: true"), "batch_size"
        ),
        err(11, "train max_steps: 1.5", lambda c: _train_yaml(c, "ms15", "max_steps: 1.5"), "max_steps"),
        err(11, "train cpu: 'no'", lambda c: _train_yaml(c, "cpuno", "cpu: 'no'"), "cpu"),
        err(
            11,
            "eval --gti fixed --fixed-index 9999",
            lambda c: _eval(c, c.scratch / "eval_fixed", "--gti", "fixed", "--fixed-index", "9999"),
        ),
        Case(
            "12:convert raw VidSTG", 12, "convert raw VidSTG with --vidor-dir", lambda c: _convert_vidstg(c)
        ),
        Case("13:quiet", 13, "--quiet hides transformers' bars", lambda c: _quiet(c)),
    ]


def _train_out_file(ctx: Context) -> list[str]:
    target = ctx.scratch / "a_file"
    target.write_text("not a folder")
    path = ctx.scratch / "outfile.yaml"
    path.write_text(f"base_model: {ctx.scratch / 'no_base'}\noutput_dir: {target}\ndata: [d.jsonl]\n")
    return ["train", "--config", str(path)]


def _score_gt(ctx: Context, gt: Path) -> list[str]:
    pred = ctx.scratch / "empty.pred.json"
    pred.write_text("{}")
    return ["score", "--dataset", "hcstvg-v1", "--gt", str(gt), "--pred", str(pred)]


def _score_vidstg(ctx: Context, video_id: object) -> list[str]:
    sentence = {
        "original_video_id": "v1", "frame_count": 20, "fps": 10.0, "width": 32, "height": 24,
        "start_frame": 0, "end_frame": 20, "tube_start_frame": 5, "tube_end_frame": 15,
        "video_path": "0000/v1.mp4", "caption": "a dog runs.", "target_id": 0,
        "video_id": video_id, "qtype": "declarative",
    }  # fmt: skip
    trajectories = {"v1": {"0": {str(f): {"bbox": [0, 0, 5, 5]} for f in range(20)}}}
    gt = ctx.scratch / "vidstg_pre.json"
    gt.write_text(json.dumps({"videos": [sentence], "trajectories": trajectories}))
    pred = ctx.scratch / "empty.pred.json"
    pred.write_text("{}")
    return ["score", "--dataset", "vidstg", "--gt", str(gt), "--pred", str(pred)]


def _convert_vidstg(ctx: Context) -> Outcome:
    record = {
        "vid": "v1", "fps": 10.0, "frame_count": 20, "width": 32, "height": 24,
        "subject/objects": [{"tid": 0, "category": "dog"}],
        "used_segment": {"begin_fid": 0, "end_fid": 20}, "temporal_gt": {"begin_fid": 5, "end_fid": 15},
        "captions": [{"description": "a dog runs.", "type": "subject", "target_id": 0}],
        "questions": [],
    }  # fmt: skip
    ann = ctx.scratch / "raw_vidstg.json"
    ann.write_text(json.dumps([record]))
    vidor = ctx.scratch / "vidor" / "0000"
    vidor.mkdir(parents=True)
    box = {"xmin": 0, "ymin": 0, "xmax": 5, "ymax": 5}
    (vidor / "v1.json").write_text(json.dumps({"trajectories": [[{"tid": 0, "bbox": box}]] * 20}))
    out = ctx.scratch / "vidstg.jsonl"
    args = ["convert", "--dataset", "vidstg", "--gt", str(ann), "--vidor-dir", str(ctx.scratch / "vidor")]
    rc, stdout, err, secs = ctx.stvg([*args, "--no-check-videos", "--out", str(out)])
    ok = rc == 0 and out.is_file() and len(out.read_text().splitlines()) == 1
    lines = _lines(err)
    verdict = "ok" if ok else "no such option" if "vidor-dir" in err else f"exit {rc}"
    return Outcome(rc, secs, len(lines), "Traceback" in err, verdict, (lines or [stdout.strip()])[-1][:160])


def _quiet(ctx: Context) -> Outcome:
    rc, _, err, secs = ctx.stvg(_eval(ctx, ctx.scratch / "eval_quiet"))  # _eval passes --quiet
    bars = len(_BAR.findall(err.replace("\r", "\n")))
    verdict = "ok" if rc == 0 and bars == 0 else f"{bars} progress bar updates" if rc == 0 else f"exit {rc}"
    return Outcome(rc, secs, len(_lines(err)), "Traceback" in err, verdict)


# ---------------------------------------------------------------- driver


def run(source: Path, out: Path, only: list[str] | None) -> list[dict[str, object]]:
    import tempfile

    rows: list[dict[str, object]] = []
    if only and out.is_file():  # rerun some cases: the others' rows stay
        rows = [r for r in json.loads(out.read_text())["cases"] if not any(o in r["id"] for o in only)]
    with tempfile.TemporaryDirectory(prefix="stvg_faults_") as tmp:
        scratch = Path(tmp)
        base = Context(source, scratch)
        base.toy = scratch / "toy"
        rc, _, err, _ = base.stvg(["toy", "make", "--n", "2", "--out", str(base.toy), "--seed", "7"])
        if rc != 0:
            raise SystemExit(f"cannot make the toy data: {err.strip()[-300:]}")
        order = {case.id: i for i, case in enumerate(_cases())}
        for case in _cases():
            if only and not any(o in case.id for o in only):
                continue
            folder = scratch / f"case{len(rows)}"
            folder.mkdir()
            ctx = Context(source, folder)
            ctx.toy = base.toy
            outcome = case.run(ctx)
            rows.append({"id": case.id, "item": case.item, "title": case.title, **asdict(outcome)})
            rows.sort(key=lambda r: order.get(str(r["id"]), len(order)))
            print(f"{outcome.verdict:>32}  {outcome.seconds:6.1f} s  {case.id}", flush=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"source": str(source), "cases": rows}, indent=1))
    return rows


def table(before: Path, after: Path) -> str:
    b = {r["id"]: r for r in json.loads(before.read_text())["cases"]}
    a = {r["id"]: r for r in json.loads(after.read_text())["cases"]}
    lines = ["| # | case | before | after |", "|---|---|---|---|"]
    for case_id, row in a.items():
        old = b.get(case_id)
        was = f"{old['verdict']} (exit {old['rc']}, {old['seconds']:.0f} s)" if old else "not run"
        now = f"{row['verdict']} (exit {row['rc']}, {row['seconds']:.0f} s)"
        lines.append(f"| {row['item']} | {row['title']} | {was} | {now} |")
    ok_b = sum(1 for r in b.values() if str(r["verdict"]).startswith("ok"))
    ok_a = sum(1 for r in a.values() if str(r["verdict"]).startswith("ok"))
    lines.append(f"\nhandled: before {ok_b} of {len(b)}, after {ok_a} of {len(a)}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=ROOT, help="checkout to run (default: this one)")
    parser.add_argument("--out", type=Path, default=Path("runs/faults/cases.json"))
    parser.add_argument("--only", nargs="*", help="run the cases whose id contains one of these")
    parser.add_argument("--table", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args()
    if args.table:
        print(table(*args.table))
        return
    run(args.source.resolve(), args.out, args.only)


if __name__ == "__main__":
    main()
