"""The ``stvg`` command line: thin wrappers that parse options and call the library."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from zsgrounding.errors import STVGError

STVG_DATASETS = ("hcstvg-v1", "hcstvg-v2", "vidstg", "toy")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="stvg-toolkit", prog_name="stvg")
def cli() -> None:
    """Spatio-temporal video grounding: find the tube a sentence describes.

    The default world is the embedded toy world: `stvg demo` runs end to end with no download.
    """


@cli.command()
@click.option("--dataset", type=click.Choice(STVG_DATASETS), required=True, help="Annotation format of --gt.")
@click.option(
    "--gt", "gt_path", type=click.Path(exists=True, path_type=Path), required=True, help="Annotation file."
)
@click.option("--pred", "pred_path", type=click.Path(path_type=Path), required=True, help="Prediction JSON.")
@click.option(
    "--frames",
    type=click.Choice(["tubedetr", "all"]),
    default="tubedetr",
    show_default=True,
    help="Evaluated frames: TubeDETR's 5 fps sampling, or every native frame.",
)
@click.option(
    "--protocol",
    type=click.Choice(["tubedetr", "cgstvg"]),
    default="tubedetr",
    show_default=True,
    help="cgstvg: every native frame, interpolated boxes, GT end one frame short (CG-STVG's evaluator).",
)
@click.option(
    "--vidor-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="VidOR annotation folder (raw VidSTG files only).",
)
@click.option(
    "--hcstvg-start",
    type=click.Choice(["one_based", "tubedetr"]),
    default="one_based",
    show_default=True,
    help="Read HC-STVG st_frame as 1-based, or as TubeDETR did (0-based).",
)
@click.option("--skip-malformed", is_flag=True, help="Skip (and report) malformed annotation entries.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def score(
    dataset: str,
    gt_path: Path,
    pred_path: Path,
    frames: str,
    protocol: str,
    vidor_dir: Path | None,
    hcstvg_start: str,
    skip_malformed: bool,
    as_json: bool,
) -> None:
    """Score a prediction file against STVG ground truth (m_tIoU, m_vIoU, vIoU@R, in percent)."""
    from zsgrounding.datasets import LoadReport, load_dataset
    from zsgrounding.metrics import evaluate
    from zsgrounding.predictions import load_predictions
    from zsgrounding.report import markdown_table, stvg_rows

    kw: dict[str, object] = {"skip_malformed": skip_malformed, "report": LoadReport()}
    if dataset == "vidstg":
        kw["vidor_dir"] = vidor_dir
    elif dataset in ("hcstvg-v1", "hcstvg-v2", "toy"):
        kw["start_convention"] = hcstvg_start
    samples = load_dataset(dataset, gt_path, **kw)
    gts = {s.id: s.gt for s in samples if s.gt is not None}
    predictions = load_predictions(pred_path)
    result = evaluate(predictions, gts, frames=frames, protocol=protocol)  # type: ignore[arg-type]
    report = result.report()
    if result.missing:
        click.echo(f"missing predictions: {len(result.missing)} of {len(gts)} (scored 0)", err=True)
    extra = len(set(predictions) - set(gts))
    if extra:
        click.echo(f"ignored predictions with no ground truth: {extra}", err=True)
    if as_json:
        click.echo(json.dumps(report))
    else:
        click.echo(markdown_table(stvg_rows(report)))


@cli.group()
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
    from zsgrounding.datasets.toyworld import ToyWorldConfig, make_dataset

    path = make_dataset(out, count, ToyWorldConfig(seed=seed), progress=not quiet)
    click.echo(f"wrote {count} clips and {path}")


@cli.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/demo"),
    show_default=True,
    help="Where clips, predictions and tables go.",
)
@click.option("--n", "count", type=click.IntRange(min=1), default=12, show_default=True, help="Toy clips.")
@click.option("--seed", type=int, default=0, show_default=True)
def demo(out: Path, count: int, seed: int) -> None:
    """Render toy clips, ground them with the baselines, and score them. No download, no GPU."""
    from zsgrounding.demo import run_demo

    run_demo(out, count=count, seed=seed, echo=click.echo)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    try:
        code = cli.main(args=argv, prog_name="stvg", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as err:
        click.echo(err.ctx.get_help() if err.ctx else "", err=False)
        sys.exit(0)
    except click.UsageError as err:
        click.echo(f"stvg: error: {err.format_message()}", err=True)
        sys.exit(2)
    except STVGError as err:
        click.echo(f"stvg: error: {err}", err=True)
        sys.exit(2)
    except click.Abort:
        click.echo("stvg: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
