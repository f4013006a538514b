"""SpaceVLLM's commands: `stvg convert` (training records), `stvg synth` (Uni-STG synthesis),
`stvg train` (fine-tuning from a YAML)."""

from __future__ import annotations

import warnings
from pathlib import Path

import click

from zsgrounding.apps.cli_options import STVG_DATASETS
from zsgrounding.redact import redact


@click.command("convert")
@click.option(
    "--dataset",
    type=click.Choice([*STVG_DATASETS, "charades-sta", "refcoco", "refcoco+", "refcocog"]),
    required=True,
)
@click.option("--gt", "gt_path", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--videos", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None)
@click.option("--refs", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
@click.option(
    "--task", type=click.Choice(["stvg", "vtg", "rec"]), default=None, help="Default: from the data."
)
@click.option(
    "--vidor-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
    help="VidOR annotation folder (raw VidSTG annotations).",
)  # fmt: skip
@click.option(
    "--check-videos/--no-check-videos",
    default=True,
    show_default=True,
    help="Open every video and leave out the records whose video is unreadable or too short.",
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="JSONL file.")
def convert_(
    dataset: str,
    gt_path: Path,
    videos: Path | None,
    refs: Path | None,
    task: str | None,
    vidor_dir: Path | None,
    check_videos: bool,
    out: Path,
) -> None:
    """Convert a dataset to the SpaceVLLM training format (one JSON record per line)."""
    from spacevllm.convert import convert
    from spacevllm.data import RecordWarning

    kw: dict[str, object] = {}
    if videos is not None:
        kw["image_root" if dataset.startswith("refcoco") else "video_root"] = videos
    if refs is not None:
        kw["refs"] = refs
    if vidor_dir is not None:
        kw["vidor_dir"] = vidor_dir
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RecordWarning)
        records = convert(dataset, gt_path, out, task=task, check_videos=check_videos, **kw)
    for caught_warning in caught:  # every warning still reaches the user, one line each
        click.echo(f"stvg: warning: {redact(str(caught_warning.message))}", err=True)
    left_out = [w for w in caught if issubclass(w.category, RecordWarning) and "left out" in str(w.message)]
    dropped = f"; left out {len(left_out)} whose video is unreadable or too short" if left_out else ""
    click.echo(f"wrote {len(records)} records to {out}{dropped}")


@click.command()
@click.option("--dataset", type=click.Choice([*STVG_DATASETS, "charades-sta"]), required=True)
@click.option("--gt", "gt_path", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--videos", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None)
@click.option(
    "--detector",
    default="IDEA-Research/grounding-dino-tiny",
    show_default=True,
    help="Grounding DINO (folder or hub id), or 'toy': the toy world's pixel colour detector.",
)
@click.option("--whole-videos", is_flag=True, help="Annotate whole videos instead of the annotated spans.")
@click.option("--max-samples", type=click.IntRange(min=1), default=None)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="JSONL file.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def synth(
    dataset: str,
    gt_path: Path,
    videos: Path | None,
    detector: str,
    whole_videos: bool,
    max_samples: int | None,
    out: Path,
    quiet: bool,
) -> None:
    """Uni-STG synthesis: (video, caption) pairs -> STVG records with Grounding DINO boxes.

    Analyzer (objects from the caption), annotator (boxes, confidence >= 0.3), refiner (span
    snapped to the frames with the object; 2-120 s kept), filter (crowded frames, area jumps).
    Prints how many samples each stage removed.
    """
    from dataclasses import replace

    from spacevllm.synth import default_analyzer, items_from_samples, synthesize
    from zsgrounding.datasets import load_dataset
    from zsgrounding.proposals.grounding_dino import GroundingDinoDetector

    kw: dict[str, object] = {"video_root": videos} if videos is not None else {}
    samples = load_dataset(dataset, gt_path, **kw)[:max_samples]
    items = items_from_samples(samples)
    if whole_videos:
        items = [replace(item, span=None) for item in items]
    if detector == "toy":  # offline stand-in: palette colours and shapes, read from the pixels
        from zsgrounding.toy.detector import ToyColourDetector

        boxer = ToyColourDetector()
    else:
        boxer = GroundingDinoDetector.from_pretrained(detector)
    records, report = synthesize(
        items,
        boxer,
        default_analyzer(),
        out=out,
        progress=not quiet,
    )
    click.echo(report.summary())
    click.echo(f"wrote {len(records)} records to {out}")


@click.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="Training YAML (see spacevllm/train/config.py, TrainConfig).",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(config_path: Path, quiet: bool) -> None:
    """Fine-tune SpaceVLLM (one process here; `accelerate launch` / `torchrun` for DDP or FSDP).

    Checkpoints are written atomically; rerunning the same command resumes at the same step.
    """
    from spacevllm.train import TrainConfig
    from spacevllm.train import train as run_training

    summary = run_training(TrainConfig.from_yaml(config_path), progress=not quiet)
    losses = ", ".join(f"{k} {v:.4f}" for k, v in summary.final_losses.items())
    click.echo(f"trained {summary.steps} steps (from step {summary.start_step}); last losses: {losses}")
    click.echo(f"final model: {summary.final_dir}  (stvg ground --method spacevllm --checkpoint ...)")
