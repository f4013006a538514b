"""`stvg toy ...`: the toy world's commands (clips in the HC-STVG v1 format, the toy-MLLM recipe)."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def toy() -> None:
    """The toy world: procedurally rendered clips of coloured shapes with ground-truth tubes."""


@toy.command("make")
@click.option(
    "--n", "count", type=click.IntRange(min=1), default=100, show_default=True, help="Clips to make."
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output folder.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def toy_make(count: int, out: Path, seed: int, quiet: bool) -> None:
    """Render N toy clips (mp4) and their HC-STVG v1 annotation file into OUT."""
    from zsgrounding.toy.world import ToyWorldConfig, make_dataset

    path = make_dataset(out, count, ToyWorldConfig(seed=seed), progress=not quiet)
    click.echo(f"wrote {count} clips and {path}")


@toy.command("pretrain")
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Checkpoint folder."
)
@click.option(
    "--quick", is_flag=True, help="The short test schedule (a minute or two) instead of the full one."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--family",
    type=click.Choice(["llava_onevision", "qwen2_vl"]),
    default="llava_onevision",
    show_default=True,
    help="Model class: LLaVA-OneVision (a SigLIP tower per frame) or Qwen2-VL (a tower over frame "
    "pairs, M-RoPE positions).",
)
@click.option("--eval-only", is_flag=True, help="Only evaluate an already trained OUT.")
@click.option("--eval-clips", type=click.IntRange(min=1), default=600, show_default=True)
@click.option(
    "--per-kind",
    type=click.IntRange(min=1),
    default=None,
    help="Questions per kind (default 150, 1,050 in all; 60 with --quick).",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def toy_pretrain(
    out: Path,
    quick: bool,
    seed: int,
    family: str,
    eval_only: bool,
    eval_clips: int,
    per_kind: int | None,
    quiet: bool,
) -> None:
    """Train the toy-world MLLM (vision, alignment, instruction stages) into OUT and evaluate it.

    The full schedule is the recipe of the shipped checkpoint (about 46 minutes on 2 CPU cores);
    a killed run resumes at the last finished stage.
    """
    from zsgrounding.toy.mllm.build import build_toy_mllm

    if eval_only and not (out / "recipe.json").is_file():
        raise click.UsageError(f"--eval-only: {out} has no recipe.json (train it first)")
    build_toy_mllm(
        out,
        quick=quick,
        seed=seed,
        family=family,
        eval_clips=eval_clips,
        per_kind=per_kind,
        eval_only=eval_only,
        progress=not quiet,
        command=f"stvg toy pretrain --out {out}"
        + (" --quick" if quick else "")
        + f" --seed {seed}"
        + ("" if family == "llava_onevision" else f" --family {family}"),
        echo=click.echo,
    )
