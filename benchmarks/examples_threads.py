"""Wall time of the examples as written: torch's default CPU threads against one thread.

Usage::

    python benchmarks/examples_threads.py --out /tmp/examples_threads
    python benchmarks/examples_threads.py --out /tmp/examples_threads --examples compare_paradigms --repeats 2

Each example runs as a user starts it (``python examples/NAME.py --out DIR``, a fresh folder each
time, so nothing resumes), once with ``--threads D`` where D is what torch picks by itself in a new
process (what the examples did before they set a thread count) and once with ``--threads 1`` (their
default since). The two alternate, the order flipping every repeat, so a slow spell of this noisy
machine falls on both. Prints one row per example: the median wall time of each setting and the
ratio default / one thread; writes the same to ``<out>/examples_threads.json``. The measured table
is in docs/commands.md ("The examples").

``--busy N`` keeps N busy-looping processes running the whole time, as on a shared machine (a test
suite, a second run): with torch's default of one thread per core, its threads then wait on each
other for the cores the other work holds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ("compare_paradigms", "finetune_spacevllm")


def torch_default_threads() -> int:
    """The intra-op thread count torch chooses in a fresh process."""
    code = "import torch; print(torch.get_num_threads())"
    return int(
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    )


def run_once(example: str, threads: int, out: Path) -> float:
    """Seconds one example takes with ``threads`` torch threads, from process start to exit."""
    argv = [
        sys.executable,
        str(ROOT / "examples" / f"{example}.py"),
        "--out",
        str(out),
        "--threads",
        str(threads),
    ]
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SystemExit(f"{example} --threads {threads} failed (exit {done.returncode}): {tail[0]}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="scratch folder for the runs and the summary")
    parser.add_argument("--examples", nargs="+", default=list(EXAMPLES), choices=EXAMPLES)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each setting (the order alternates)")
    parser.add_argument("--busy", type=int, default=0, help="busy-looping processes beside the runs")
    args = parser.parse_args(argv)
    spin = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        return _measure(args)
    finally:
        for process in spin:
            process.kill()
            process.wait()


def _measure(args: argparse.Namespace) -> int:

    default = torch_default_threads()
    settings = [default, 1]
    print(
        f"torch's default here: {default} threads; runs of each: {args.repeats}; busy processes: {args.busy}",
        flush=True,
    )
    rows = []
    for example in args.examples:
        times: dict[int, list[float]] = {t: [] for t in settings}
        for repeat in range(args.repeats):
            for threads in settings if repeat % 2 == 0 else settings[::-1]:
                folder = args.out / f"{example}-t{threads}-r{repeat}"
                seconds = run_once(example, threads, folder)
                times[threads].append(seconds)
                print(f"  {example} --threads {threads}: {seconds:.1f} s", flush=True)
        before, after = statistics.median(times[default]), statistics.median(times[1])
        rows.append(
            {
                "example": example,
                "default_threads": default,
                "before_s": before,
                "after_s": after,
                "ratio": before / after,
            }
        )
    print(f"\n| example | --threads {default} (before) | --threads 1 (now) | before / now |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['example']} | {row['before_s']:.1f} s | {row['after_s']:.1f} s | {row['ratio']:.2f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {"busy": args.busy, "repeats": args.repeats, "rows": rows}
    (args.out / "examples_threads.json").write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
