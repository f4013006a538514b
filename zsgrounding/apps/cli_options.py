"""The command line's shared option groups: an annotated dataset, a grounder's model and method
options, the evaluation protocol. ``cli.py`` puts them on its commands."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import click

from zsgrounding.zeroshot.presets import PRESETS as PRESET_NAMES

F = TypeVar("F")

STVG_DATASETS = ("hcstvg-v1", "hcstvg-v2", "vidstg", "toy")


def protocol_options(fn: F) -> F:
    """--frames and --protocol: how the evaluator scores (shared by `score` and `compare`)."""
    frames = click.option(
        "--frames",
        type=click.Choice(["tubedetr", "all"]),
        default="tubedetr",
        show_default=True,
        help="Evaluated frames: TubeDETR's 5 fps sampling, or every native frame.",
    )
    protocol = click.option(
        "--protocol",
        type=click.Choice(["tubedetr", "cgstvg"]),
        default="tubedetr",
        show_default=True,
        help="cgstvg: every native frame, interpolated boxes, GT end one frame short (CG-STVG's evaluator).",
    )
    return frames(protocol(fn))


def layer_window(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    """``--layers LO:HI`` as ``(lo, hi)``; ``None`` when not given."""
    if value is None:
        return None
    try:
        lo, hi = (int(v) for v in value.split(":"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not LO:HI (e.g. 6:25)") from None
    if not 0 <= lo < hi:
        raise click.BadParameter(f"{value!r}: need 0 <= LO < HI")
    return lo, hi


def dataset_options(fn: F) -> F:
    """--dataset, --gt, --videos, --vidor-dir: an annotated dataset (shared by `eval` and `compare`)."""
    options = [
        click.option(
            "--dataset", type=click.Choice(STVG_DATASETS), required=True, help="Annotation format of --gt."
        ),
        click.option(
            "--gt",
            "gt_path",
            type=click.Path(exists=True, path_type=Path),
            required=True,
            help="Annotation file.",
        ),
        click.option(
            "--videos",
            type=click.Path(exists=True, file_okay=False, path_type=Path),
            default=None,
            help="Video folder (toy: defaults to the dataset's own videos/).",
        ),
        click.option(
            "--vidor-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def zero_shot_options(fn: F) -> F:
    """Options of the training-free grounder and ``--method``, shared by `ground` and `eval`."""
    method = click.option(
        "--method",
        type=click.Choice(["zero-shot", "spacevllm"]),
        default="zero-shot",
        show_default=True,
        help="Training-free grounding with --model, or a fine-tuned SpaceVLLM --checkpoint.",
    )
    return method(model_options(fn))


def model_options(fn: F) -> F:
    """The grounders' model, frame, proposal and decomposition options (`compare` has no --method)."""
    options = [
        click.option(
            "--checkpoint",
            type=click.Path(exists=True, file_okay=False, path_type=Path),
            default=None,
            help="SpaceVLLM checkpoint folder (with --method spacevllm).",
        ),
        click.option(
            "--model",
            default="toy",
            show_default=True,
            help="MLLM checkpoint: local folder or hub id ('toy': the shipped toy-world model).",
        ),
        click.option("--family", default=None, help="Force the adapter family (else read from the config)."),
        click.option(
            "--preset",
            type=click.Choice([*PRESET_NAMES, "none"]),
            default=None,
            help="Zero-shot settings: the released code's for a dataset, or the paper's; 'none': this "
            "toolkit's own defaults. Flags given explicitly override the preset. [ground: "
            "reference-hcstvg-v2; eval / compare: the dataset's reference preset, none for toy]",
        ),
        click.option(
            "--num-frames",
            type=click.IntRange(min=1),
            default=None,
            help="Frames sampled per video [zero-shot: 20; spacevllm: its checkpoint's setting].",
        ),
        click.option(
            "--gti",
            type=click.Choice(["max_activation", "mean", "fixed"]),
            default="max_activation",
            show_default=True,
            help="Grounding token: highest visual activation, mean of all, or a fixed one.",
        ),
        click.option("--fixed-index", type=int, default=-1, show_default=True, help="Token for --gti fixed."),
        click.option("--spatial-prompt/--no-spatial-prompt", default=True, show_default=True),
        click.option("--temporal-prompt/--no-temporal-prompt", default=True, show_default=True),
        click.option(
            "--tas/--no-tas", default=True, show_default=True, help="Temporal-augmented assembling."
        ),
        click.option(
            "--relative/--no-relative",
            default=False,
            show_default=True,
            help="Divide maps by those of the prompt 'please describe this video'.",
        ),
        click.option(
            "--layers", callback=layer_window, default=None, help="Layer window LO:HI (default all)."
        ),
        click.option("--lra-steps", type=click.IntRange(min=0), default=2, show_default=True),
        click.option("--lra-step-size", type=float, default=8.0, show_default=True),
        click.option(
            "--span-frames",
            type=click.IntRange(min=1),
            default=None,
            help="Frames of the temporal window (default half the sampled frames).",
        ),
        click.option("--device", default=None, help="torch device of the MLLM (default CPU)."),
        click.option("--dtype", default=None, help="torch dtype of the MLLM, e.g. bfloat16."),
        click.option(
            "--proposals",
            "proposals_dir",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="Track store folder: tracks are read from it, or extracted and saved into it.",
        ),
        click.option(
            "--detector",
            default=None,
            help="Grounding DINO checkpoint (folder or hub id), or 'toy': the toy world's colour detector "
            "with the IoU tracker [default: toy with --model toy, else IDEA-Research/grounding-dino-tiny].",
        ),
        click.option("--tracker", type=click.Choice(["sam2", "iou"]), default="sam2", show_default=True),
        click.option("--sam2", "sam2_model", default=None, help="SAM2 video checkpoint (folder or hub id)."),
        click.option(
            "--track-fps",
            type=click.FloatRange(min=0, min_open=True),
            default=5.0,
            show_default=True,
            help="Tracking frames per second (the sampled frames are among them); see docs/tracking.md.",
        ),
        click.option(
            "--decompositions",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            default=None,
            help="The reference's gpt4_decompose_attr_action.json (else LLM endpoint, else rules).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn
