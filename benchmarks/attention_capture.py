"""Time and memory of attention capture against a plain SDPA forward and eager attentions.

    python benchmarks/attention_capture.py [--tokens 4000] [--repeats 5] [--inner 3] [--threads N]
                                           [--modes fwd fwd+bwd]

A tiny ``Qwen2ForCausalLM`` (hidden 256, 4 layers, 4 heads with 2 kv heads, intermediate 512,
vocab 1000, random weights) runs on ``inputs_embeds`` of ``--tokens`` positions: a text prefix,
20 frames of visual tokens (196 each at 4,000 tokens) and 5 query rows at the end. Variants:

- ``sdpa``: the plain forward with ``attn_implementation="sdpa"``;
- ``capture``: the same model inside :func:`zsgrounding.attention.capture_attention`, every
  layer, head mean, the 5 rows over the visual keys (entering and leaving the context is timed);
- ``eager``: ``attn_implementation="eager"`` with ``output_attentions=True``.

``fwd`` runs under ``torch.no_grad``; ``fwd+bwd`` backpropagates ``logit(yes) - logit(no)`` at
the last position to an additive delta on the visual slice (what LRA does).

Every measurement runs in a fresh subprocess; per repeat, each variant gets one timing and one
memory process, in an order that rotates between repeats so machine drift hits all variants
alike; the table holds medians over the repeats.

- Timing process: one warm-up run, then the median of ``--inner`` timed runs.
- Memory process: started with ``MALLOC_MMAP_THRESHOLD_=65536`` so glibc serves every large
  block by ``mmap`` and returns it on free; RSS then follows live memory instead of what the
  allocator happens to keep (without it, deltas of a forward wander by +-50 MB between runs).
  After a warm-up run (lazy imports, one-time initialisation), the peak RSS is reset through
  ``/proc/self/clear_refs`` and one run is measured: "peak delta" is its ``ru_maxrss`` minus the
  RSS before it (the memory the forward needs), "peak RSS" the whole process's peak (the
  interpreter, torch and transformers included).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

VARIANTS = ("sdpa", "capture", "eager")
MODES = ("fwd", "fwd+bwd")
FRAMES = 20
QUERY_ROWS = 5
TEXT_PREFIX = 75  # 4,000 = 75 text + 20 x 196 visual + 5 query rows
EXACT_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "65536"}


def layout(tokens: int) -> tuple[int, int]:
    """``(prefix, per_frame)``: text tokens before the video and visual tokens per frame."""
    per_frame = (tokens - TEXT_PREFIX - QUERY_ROWS) // FRAMES
    if per_frame < 1:
        raise SystemExit(f"--tokens {tokens} is too small for {FRAMES} frames")
    return tokens - FRAMES * per_frame - QUERY_ROWS, per_frame


# --------------------------------------------------------------------------- worker (one subprocess)


def _current_rss_kb() -> int:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() // 1024


def _peak_rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS to its current RSS (Linux >= 4.0); False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def build_run(variant: str, mode: str, tokens: int) -> Callable[[], None]:
    """The model and inputs of one variant, and a function that runs it once."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from zsgrounding.attention import CaptureConfig, capture_attention

    prefix, per_frame = layout(tokens)
    n_visual = FRAMES * per_frame
    torch.manual_seed(0)
    config = Qwen2Config(
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=1000,
        max_position_embeddings=max(8192, tokens),
    )
    impl = "eager" if variant == "eager" else "sdpa"
    model = Qwen2ForCausalLM._from_config(config, attn_implementation=impl).eval()
    model.requires_grad_(False)  # LRA tunes the input delta only
    embeds = torch.randn(1, tokens, config.hidden_size)
    lo, hi = prefix, prefix + n_visual
    capture_cfg = CaptureConfig(
        query_positions=list(range(-QUERY_ROWS, 0)), key_positions=list(range(lo, hi))
    )
    yes_id, no_id = 1, 2
    backward = mode == "fwd+bwd"

    def once() -> None:
        delta = torch.zeros(1, n_visual, config.hidden_size, requires_grad=backward)
        with torch.set_grad_enabled(backward):
            x = torch.cat([embeds[:, :lo], embeds[:, lo:hi] + delta, embeds[:, hi:]], dim=1)
            kwargs = {"inputs_embeds": x, "logits_to_keep": 1}
            if variant == "capture":
                with capture_attention(model, capture_cfg) as cap:
                    out = model(**kwargs)
                if cap.calls != config.num_hidden_layers:
                    raise RuntimeError(f"captured {cap.calls} layers, expected {config.num_hidden_layers}")
            elif variant == "eager":
                out = model(**kwargs, output_attentions=True)
                if len(out.attentions) != config.num_hidden_layers:
                    raise RuntimeError("eager returned no attentions")
            else:
                out = model(**kwargs)
            if backward:
                (out.logits[0, -1, yes_id] - out.logits[0, -1, no_id]).backward()

    return once


def time_worker(variant: str, mode: str, tokens: int, inner: int, threads: int) -> dict[str, float]:
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    once = build_run(variant, mode, tokens)
    once()  # warm-up
    times = []
    for _ in range(inner):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    return {"time": statistics.median(times), "threads": torch.get_num_threads()}


def memory_worker(variant: str, mode: str, tokens: int, threads: int) -> dict[str, float]:
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    once = build_run(variant, mode, tokens)
    once()  # warm-up: lazy imports and one-time initialisation are not the forward's memory
    if not _reset_peak_rss():
        raise RuntimeError("cannot reset the peak RSS (/proc/self/clear_refs not writable)")
    base = _current_rss_kb()
    once()
    peak = _peak_rss_kb()
    return {"peak_delta_mb": max(0, peak - base) / 1024, "peak_rss_mb": peak / 1024}


# --------------------------------------------------------------------------- driver


def measure(what: str, variant: str, mode: str, args: argparse.Namespace) -> dict[str, float]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", what, "--variant", variant]
    cmd += ["--mode", mode, "--tokens", str(args.tokens), "--inner", str(args.inner)]
    cmd += ["--threads", str(args.threads)]
    env = {**os.environ, **EXACT_MALLOC} if what == "memory" else dict(os.environ)
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{what} {variant} {mode} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(args: argparse.Namespace, results: dict[tuple[str, str], list[dict[str, float]]]) -> None:
    prefix, per_frame = layout(args.tokens)
    threads = int(next(iter(results.values()))[0]["threads"])
    print(
        f"Qwen2ForCausalLM hidden 256, 4 layers, 4 heads (2 kv); {args.tokens} tokens = {prefix} text + "
        f"{FRAMES} frames x {per_frame} visual + {QUERY_ROWS} query rows; torch threads {threads}; "
        f"medians over {args.repeats} repeats (time: median of {args.inner} runs per process); "
        f"load average at the end {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs\n"
    )
    print(
        "| mode | variant | time (s) | time ratio | peak delta (MB) | delta ratio | peak RSS (MB) | RSS ratio |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    ratios: dict[tuple[str, str], tuple[float, float, float]] = {}
    for mode in args.modes:
        med = {
            v: [
                statistics.median(m[k] for m in results[(v, mode)] if k in m)
                for k in ("time", "peak_delta_mb", "peak_rss_mb")
            ]
            for v in VARIANTS
        }
        base = med["sdpa"]
        for v in VARIANTS:
            t, d, p = med[v]
            ratios[(v, mode)] = (t / base[0], d / base[1], p / base[2])
            print(
                f"| {mode} | {v} | {t:.3f} | {t / base[0]:.2f}x | {d:.1f} | {d / base[1]:.2f}x | "
                f"{p:.0f} | {p / base[2]:.2f}x |"
            )
    print("\nTargets vs plain SDPA: capture time <= 1.15x, peak memory <= 1.1x; eager >= 3x the capture time")
    for mode in args.modes:
        ct, cd, cp = ratios[("capture", mode)]
        et = ratios[("eager", mode)][0]

        def verdict(ok: bool) -> str:
            return "ok" if ok else "MISSED"

        print(
            f"- {mode}: capture time {ct:.2f}x ({verdict(ct <= 1.15)}), peak delta {cd:.2f}x "
            f"({verdict(cd <= 1.1)}), peak RSS {cp:.2f}x ({verdict(cp <= 1.1)}); "
            f"eager / capture time {et / ct:.2f}x ({verdict(et / ct >= 3)})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4000, help="sequence length (default 4000)")
    parser.add_argument(
        "--repeats", type=int, default=5, help="timing and memory processes per variant and mode"
    )
    parser.add_argument("--inner", type=int, default=3, help="timed runs per timing process after a warm-up")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--worker", choices=("time", "memory"), help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=VARIANTS, default="sdpa", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=MODES, default="fwd", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker == "time":
        print(json.dumps(time_worker(args.variant, args.mode, args.tokens, args.inner, args.threads)))
        return
    if args.worker == "memory":
        print(json.dumps(memory_worker(args.variant, args.mode, args.tokens, args.threads)))
        return

    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    for r in range(args.repeats):
        # Rotate the order each repeat so no variant always runs first or last.
        order = VARIANTS[r % 3 :] + VARIANTS[: r % 3]
        for mode in args.modes:
            for variant in order:
                timing = measure("time", variant, mode, args)
                memory = measure("memory", variant, mode, args)
                results.setdefault((variant, mode), []).append({**timing, **memory})
        print(f"repeat {r + 1}/{args.repeats} done", file=sys.stderr, flush=True)
    report(args, results)


if __name__ == "__main__":
    main()
