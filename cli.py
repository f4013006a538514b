"""The ``stvg`` command line: thin wrappers that parse options and call the library."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import click

from zsgrounding.apps.cli_options import (
    STVG_DATASETS,
    dataset_options,
    layer_window,
    model_options,
    protocol_options,
    zero_shot_options,
)
from zsgrounding.apps.cli_spacevllm import convert_, synth, train
from zsgrounding.apps.cli_toy import toy
from zsgrounding.errors import STVGError
from zsgrounding.mllm.hub import progress_bars
from zsgrounding.zeroshot.presets import DATASET_PRESETS


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="stvg-toolkit", prog_name="stvg")
def cli() -> None:
    """Spatio-temporal video grounding: find the tube a sentence describes.

    The default world is the embedded toy world: `stvg demo` runs end to end with no download.
    """


@cli.command()
@click.option(
    "--dataset",
    type=click.Choice((*STVG_DATASETS, "charades-sta")),
    required=True,
    help="Annotation format of --gt (charades-sta: temporal grounding, R@1 and mIoU).",
)
@click.option(
    "--gt", "gt_path", type=click.Path(exists=True, path_type=Path), required=True, help="Annotation file."
)
@click.option(
    "--pred",
    "pred_path",
    type=click.Path(path_type=Path),
    required=True,
    help="Prediction JSON (charades-sta: {id: [start_s, end_s]}).",
)
@protocol_options
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
    """Score a prediction file against STVG ground truth (m_tIoU, m_vIoU, vIoU@R, in percent).

    For charades-sta: R@1 at IoU 0.3 / 0.5 / 0.7 and mIoU, in percent, of one span per query."""
    from zsgrounding.scoring import score_file

    if dataset == "charades-sta":
        ctx = click.get_current_context()
        for name in ("frames", "protocol"):
            if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT:
                raise click.UsageError(f"--{name} applies to STVG datasets, not charades-sta")
    scored = score_file(
        dataset,
        gt_path,
        pred_path,
        frames=frames,
        protocol=protocol,
        vidor_dir=vidor_dir,
        hcstvg_start=hcstvg_start,
        skip_malformed=skip_malformed,
    )
    for line in scored.warnings:
        click.echo(line, err=True)
    click.echo(json.dumps(scored.report) if as_json else scored.table)


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
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="torch CPU threads. The toy models are too small to gain from more, and on a busy "
    "machine extra threads made the demo 4x slower (measured).",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def demo(out: Path, count: int, seed: int, threads: int, quiet: bool) -> None:
    """Both paradigms on toy clips, from the shipped toy checkpoints: table, plots, one GIF per clip.

    No download, no GPU; under a minute on 2 CPU cores. Rerunning reuses what is done.
    """
    import torch

    from zsgrounding.apps.demo import run_demo

    torch.set_num_threads(threads)
    run_demo(out, count=count, seed=seed, echo=click.echo, progress=not quiet)


# --------------------------------------------------------------------------- training-free grounding


def _explicit(opts: dict) -> set[str]:
    """The options of ``opts`` the user gave on the command line (or in the environment)."""
    ctx = click.get_current_context()
    given = {click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT}
    return {name for name in opts if ctx.get_parameter_source(name) in given}


def _notify(line: str) -> None:
    click.echo(f"stvg: {line}", err=True)


def _grounder(opts: dict, out: Path | None, toy_dir: Path | None = None):
    """The grounder ``--method`` names, built from the shared options."""
    from zsgrounding.apps.factory import grounder_for

    return grounder_for(opts, out, toy_dir, explicit=_explicit(opts), notify=_notify)


@cli.command()
@click.argument("video", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=False)
@click.argument("query", required=False)
@zero_shot_options
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output folder.")
@click.option("--format", "fmt", type=click.Choice(["gif", "mp4"]), default="gif", show_default=True)
@click.option(
    "--toy-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="A toy-world folder the video comes from: its object tracks are the proposals.",
)
@click.option(
    "--batch",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help='Many clips: a JSONL of {"video", "query"[, "id"]} pairs, grounded into OUT resumably (as eval).',
)
@click.option(
    "--resume/--no-resume", default=True, show_default=True, help="With --batch: skip pairs done in OUT."
)
@click.option("--force-resume", is_flag=True, help="With --batch: resume although OUT has other settings.")
@click.option(
    "--tracks",
    "tracks_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help='Your own object tracks (JSON: {"tracks": [{"label", "boxes": {frame: [x1, y1, x2, y2]}}]}), '
    'used instead of a detector; see docs/commands.md. With --batch: a pair\'s "tracks" key.',
)
@click.option("--quiet", is_flag=True, help="No progress bars (transformers' included).")
def ground(
    video: Path | None,
    query: str | None,
    out: Path,
    fmt: str,
    toy_dir: Path | None,
    batch: Path | None,
    tracks_file: Path | None,
    resume: bool,
    force_resume: bool,
    quiet: bool,
    **opts,
) -> None:
    """Ground QUERY in VIDEO: writes the result JSON, an annotated video and plots into OUT.

    With --batch FILE instead, every pair of the file is grounded into OUT like `stvg eval` (one
    result line per pair, predictions.json, resumable, no ground truth)."""
    from zsgrounding.apps.clip import clip_summary, ground_clip
    from zsgrounding.runner import RunConfig
    from zsgrounding.video import probe

    if batch is not None:
        if video is not None or query is not None:
            raise click.UsageError("give VIDEO QUERY or --batch FILE, not both")
        if tracks_file is not None:
            raise click.UsageError('with --batch, give each pair its track file as a "tracks" key')
        _ground_batch(
            batch, out, toy_dir, RunConfig(out, resume, progress=not quiet, force_resume=force_resume), opts
        )
        return
    if video is None or query is None:
        raise click.UsageError("give VIDEO QUERY (or --batch FILE)")
    if not query.strip():
        raise click.UsageError("QUERY is empty: give the sentence to ground")
    probe(video)  # an unreadable video is one line before the model loads
    track_files = {video: tracks_file} if tracks_file is not None else None
    grounder = _grounder(
        {**opts, "default_preset": "reference-hcstvg-v2", "track_files": track_files}, out, toy_dir
    )
    result, paths = ground_clip(grounder, video, query, out, fmt, tracks_file)
    for line in clip_summary(result, video.name):
        click.echo(line)
    for name, path in paths.items():
        click.echo(f"{name + ':':14s}{path}")


def _ground_batch(batch: Path, out: Path, toy_dir: Path | None, run: Any, opts: dict) -> None:
    """Every pair of ``batch`` grounded into ``out`` as a dataset run (``run``: its RunConfig)."""
    from zsgrounding.datasets.pairs import load_pairs
    from zsgrounding.runner import run_dataset

    samples = load_pairs(batch)
    track_files = {Path(s.video): s.meta["tracks"] for s in samples if "tracks" in s.meta}
    more = {"default_preset": "reference-hcstvg-v2", "track_files": track_files, "track_fallback": True}
    grounder = _grounder({**opts, **more}, out, toy_dir)
    _echo_run(run_dataset(samples, grounder, run))


def _echo_run(summary) -> None:
    """What a dataset run did, and where its files are."""
    retried = f" ({summary.retried} of them retried after an earlier failure)" if summary.retried else ""
    click.echo(
        f"done {summary.done}, skipped (already done) {summary.skipped}, failed {summary.failed}{retried}"
    )
    for name, path in summary.paths.items():
        click.echo(f"{name + ':':14s}{path}")


@cli.command("eval")
@dataset_options
@zero_shot_options
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Run folder.")
@click.option("--max-samples", type=click.IntRange(min=1), default=None, help="Only the first N samples.")
@click.option(
    "--resume/--no-resume", default=True, show_default=True, help="Skip samples already done in OUT."
)
@click.option(
    "--force-resume",
    is_flag=True,
    help="Resume even if OUT was written with other settings or samples (the results then mix them).",
)
@click.option("--keep-errors", is_flag=True, help="On resume, keep failed samples' error lines (no retry).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def eval_(
    dataset: str,
    gt_path: Path,
    videos: Path | None,
    vidor_dir: Path | None,
    out: Path,
    max_samples: int | None,
    resume: bool,
    force_resume: bool,
    keep_errors: bool,
    quiet: bool,
    **opts,
) -> None:
    """Ground every sentence of a dataset; results stream to OUT and the run resumes when restarted.

    Under `torchrun --nproc_per_node=N` each rank takes every N-th sample; rank 0 merges and scores.
    """
    from zsgrounding.apps.factory import load_stvg
    from zsgrounding.report import markdown_table, stvg_rows
    from zsgrounding.runner import RunConfig, run_dataset

    samples, toy_dir = load_stvg(dataset, gt_path, videos, vidor_dir, max_samples)
    grounder = _grounder({**opts, "default_preset": DATASET_PRESETS.get(dataset)}, out, toy_dir)
    run = RunConfig(
        out_dir=out,
        resume=resume,
        progress=not quiet,
        force_resume=force_resume,
        retry_errors=not keep_errors,
    )
    summary = run_dataset(samples, grounder, run)
    if summary.metrics is None:
        return  # a rank other than 0: rank 0 reports
    click.echo(markdown_table(stvg_rows(summary.metrics, opts["method"])))
    _echo_run(summary)


# --------------------------------------------------------------------------- comparison


def _grounder_specs(_ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]) -> list:
    """The --grounder specs parsed, checked before anything loads."""
    from zsgrounding.apps.factory import SpecError, parse_grounder_specs

    try:
        return parse_grounder_specs(value)
    except SpecError as err:
        raise click.BadParameter(str(err)) from None


@cli.command()
@dataset_options
@click.option(
    "--grounder",
    "grounder_specs",
    multiple=True,
    callback=_grounder_specs,
    help="A row (repeatable; default: zero-shot, spacevllm, colour): zero-shot, "
    "zero-shot:<flag>=<value>,... (an ablation, e.g. zero-shot:tas=false,gti=mean), spacevllm "
    "(--checkpoint, default the shipped 'toy'), centre, colour, oracle-track (toy only).",
)
@model_options
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Comparison folder."
)
@click.option("--max-samples", type=click.IntRange(min=1), default=None, help="Only the first N samples.")
@protocol_options
@click.option(
    "--resume/--no-resume", default=True, show_default=True, help="Keep what earlier runs in OUT grounded."
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def compare(
    dataset: str,
    gt_path: Path,
    videos: Path | None,
    vidor_dir: Path | None,
    grounder_specs: list,
    out: Path,
    max_samples: int | None,
    frames: str,
    protocol: str,
    resume: bool,
    quiet: bool,
    **opts,
) -> None:
    """Compare grounders side by side: the same samples, proposals, tube scorer and evaluator.

    Each grounder runs (resumably) in OUT/<name>/; OUT gets comparison.md / .json, metric_bars.png
    and per-sample vIoU scatter plots. Every grounder receives the same tracks per sample: the toy
    world's objects for --dataset toy, else the track store (--proposals, default OUT/tracks)
    made on --num-frames frames (default 20; pass the same count the stored tracks were made with).
    --num-frames also sets every grounder's frames (SpaceVLLM: else its checkpoint's setting).
    """
    from zsgrounding.apps.factory import (
        comparison_grounders,
        decomposer_for,
        load_stvg,
        proposer_for,
        zero_shot_config,
    )
    from zsgrounding.compare import compare_paradigms, proposal_tracks
    from zsgrounding.tubes import TubeScorer

    samples, toy_dir = load_stvg(dataset, gt_path, videos, vidor_dir, max_samples)
    opts = {**opts, "default_preset": DATASET_PRESETS.get(dataset)}
    base = zero_shot_config(opts, _explicit(opts))
    zero_shot_rows = any(spec.kind == "zero-shot" for spec in grounder_specs)
    grounders = comparison_grounders(
        grounder_specs,
        base,
        TubeScorer(base.scorer),
        num_frames=opts["num_frames"],
        decomposer=decomposer_for(out, opts["decompositions"], _notify) if zero_shot_rows else None,
        checkpoint=opts["checkpoint"],
        spacevllm_frames=opts["num_frames"],
        toy=toy_dir is not None,
    )
    proposer = proposer_for(opts, out, toy_dir, _explicit(opts))
    tracks_for = proposal_tracks(proposer, opts["num_frames"] or base.num_frames, base.sampling)
    comparison = compare_paradigms(
        samples,
        grounders,
        out,
        tracks_for,
        resume=resume,
        progress=not quiet,
        frames=frames,  # type: ignore[arg-type]
        protocol=protocol,  # type: ignore[arg-type]
    )
    click.echo(comparison.to_markdown())
    for name, path in comparison.file_paths(out).items():
        click.echo(f"{name.split(':')[0] + ':':10s}{path}")
    for name, run in comparison.runs.items():
        click.echo(f"run {name}: {run.dir}")


@cli.command()
@click.argument("video", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("noun_phrase")
@click.option(
    "--detector",
    default="IDEA-Research/grounding-dino-tiny",
    show_default=True,
    help="Grounding DINO (folder or hub id), or 'toy': the toy world's colour detector with the IoU tracker.",
)
@click.option("--tracker", type=click.Choice(["sam2", "iou"]), default="sam2", show_default=True)
@click.option("--sam2", "sam2_model", default="facebook/sam2.1-hiera-tiny", show_default=True)
@click.option(
    "--track-fps",
    type=click.FloatRange(min=0, min_open=True),
    default=5.0,
    show_default=True,
    help="Tracking frames per second (the sampled frames are among them).",
)
@click.option("--num-frames", type=click.IntRange(min=1), default=20, show_default=True)
@click.option(
    "--sampling",
    type=click.Choice(["linspace", "centres"]),
    default="linspace",
    show_default=True,
    help="How the frames are spread: as the reference presets sample them (linspace, the default of "
    "`ground` and of `eval` on HC-STVG / VidSTG), or as --preset none does (centres).",
)
@click.option("--device", default=None)
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Track store folder."
)
def proposals(
    video: Path,
    noun_phrase: str,
    detector: str,
    tracker: str,
    sam2_model: str,
    track_fps: float,
    num_frames: int,
    sampling: str,
    device: str | None,
    out: Path,
) -> None:
    """Detect NOUN_PHRASE in VIDEO and link the detections into tracks (saved in the track store OUT).

    The tracks are made on --track-fps frames per second plus the frames a grounder will sample
    (--num-frames, --sampling), so that `ground` and `eval` with the same frames read them from
    the store."""
    from zsgrounding.apps.factory import TOY_DETECTOR, toy_proposer
    from zsgrounding.proposals.source import make_proposer
    from zsgrounding.video import sample_uniform

    if detector == TOY_DETECTOR:
        proposer = toy_proposer(out, track_fps)
    else:
        proposer = make_proposer(
            store_dir=out,
            detector=detector,
            tracker=tracker,
            sam2=sam2_model,
            device=device,
            track_fps=track_fps,
        )
    clip = sample_uniform(video, num_frames, sampling=sampling)
    tracks = proposer(clip, noun_phrase, video.name)
    click.echo(f"{len(tracks)} tracks of {noun_phrase!r} in {video.name}: {proposer.store.path(video.name)}")
    for track in tracks:
        click.echo(
            f"  track {track.track_id}: {track.label!r} score {track.score:.2f}, {len(track.frame_ids)} frames"
        )


@cli.command()
@click.argument("queries", nargs=-1, required=True)
@click.option("--cache", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Cache file.")
@click.option("--rules", is_flag=True, help="Offline rules only, even when an LLM endpoint is configured.")
def decompose(queries: tuple[str, ...], cache: Path | None, rules: bool) -> None:
    """Split each query into its attribute and action sub-queries (JSON lines).

    Uses the OpenAI-compatible endpoint of STVG_LLM_BASE_URL / STVG_LLM_MODEL / STVG_LLM_API_KEY
    when set, else offline rules.
    """
    from zsgrounding.zeroshot.decompose import Decomposer

    decomposer = Decomposer(None, None, None) if rules else Decomposer.from_env(cache_path=cache)
    for query in queries:
        parts = decomposer.decompose(query)
        click.echo(
            json.dumps(
                {
                    "query": query,
                    "attribute": parts.attribute,
                    "action": parts.action,
                    "questions": [parts.attribute_question, parts.action_question],
                    "source": parts.source,
                }
            )
        )


@cli.command()
@dataset_options
@click.option(
    "--model", default="toy", show_default=True, help="MLLM checkpoint (folder or hub id, or 'toy')."
)
@click.option("--family", default=None)
@click.option("--num-frames", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--layers", callback=layer_window, default=None, help="Layer window LO:HI (default all).")
@click.option(
    "--proposals",
    "proposals_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Track store for the rank accuracy, its files read as stored (toy: the dataset's own object tracks).",
)
@click.option("--consistency", is_flag=True, help="Also run reversed frames: temporal consistency (eq. 5).")
@click.option("--max-samples", type=click.IntRange(min=1), default=None)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write the table here."
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def pilot(
    dataset: str,
    gt_path: Path,
    videos: Path | None,
    vidor_dir: Path | None,
    model: str,
    family: str | None,
    num_frames: int,
    layers: tuple[int, int] | None,
    proposals_dir: Path | None,
    consistency: bool,
    max_samples: int | None,
    out: Path | None,
    quiet: bool,
) -> None:
    """The zero-shot paper's pilot study: attention ratio, hit ratio and rank accuracy per special token."""
    from zsgrounding.apps.factory import load_stvg
    from zsgrounding.assets import resolve_model
    from zsgrounding.mllm import load_adapter
    from zsgrounding.proposals.source import CachedProposer
    from zsgrounding.proposals.store import TrackStore
    from zsgrounding.toy.proposer import ToyProposer
    from zsgrounding.zeroshot.pilot_run import run_pilot

    samples, toy_dir = load_stvg(dataset, gt_path, videos, vidor_dir, max_samples)
    proposer = None
    if proposals_dir is not None:
        # the pilot studies the tracks a store holds, whatever made them: read as stored
        proposer = CachedProposer(TrackStore(proposals_dir), None)
    elif toy_dir is not None:
        proposer = ToyProposer(toy_dir)
    adapter = load_adapter(resolve_model(model), family=family, num_frames=num_frames)
    run = run_pilot(
        adapter,
        samples,
        layers=layers,
        tracks_for=(lambda s, clip: proposer(clip, "", Path(s.video).name)) if proposer else None,
        consistency=consistency,
        progress=not quiet,
    )
    text = run.to_markdown()
    click.echo(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        click.echo(f"table: {out}")


cli.add_command(toy)
for command in (convert_, synth, train):
    cli.add_command(command)


# --------------------------------------------------------------------------- report


@cli.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--dataset",
    type=click.Choice(STVG_DATASETS),
    default=None,
    help="Annotation format of --gt: the run's queries, videos and ground truth (to draw pictures).",
)
@click.option(
    "--gt", "gt_path", type=click.Path(exists=True, path_type=Path), default=None, help="Annotation file."
)
@click.option(
    "--videos",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Video folder (toy: defaults to the dataset's own videos/).",
)
@click.option("--vidor-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="HTML file [RUN/report.html].",
)
@click.option("--embed", is_flag=True, help="Inline the pictures as data URIs: one file that stands alone.")
@click.option(
    "--render/--no-render", default=True, show_default=True, help="Draw the pictures RUN does not have yet."
)
@click.option("--force-render", is_flag=True, help="Draw every picture again.")
@protocol_options
@click.option("--quiet", is_flag=True, help="No progress bar.")
def report(
    run_dir: Path,
    dataset: str | None,
    gt_path: Path | None,
    videos: Path | None,
    vidor_dir: Path | None,
    out: Path | None,
    embed: bool,
    render: bool,
    force_render: bool,
    frames: str,
    protocol: str,
    quiet: bool,
) -> None:
    """One self-contained HTML page for an `eval` run folder or a `compare` folder.

    Metrics (side by side for a comparison, with the agreement matrix and plots), one sortable
    row per sample with its status, and per sample the GIF of the tube over the video, the
    attention sheet and the temporal plot. Missing pictures are drawn into RUN/report/ (needs
    --dataset/--gt); images are relative paths inside RUN, or data URIs with --embed.
    """
    from zsgrounding.report_html import report_run

    if (dataset is None) != (gt_path is None):
        raise click.UsageError("--dataset and --gt go together (the run's annotations)")
    summary = report_run(
        run_dir,
        dataset,
        gt_path,
        videos=videos,
        vidor_dir=vidor_dir,
        out=out,
        embed=embed,
        render=render,
        force_render=force_render,
        frames=frames,  # type: ignore[arg-type]
        protocol=protocol,  # type: ignore[arg-type]
        progress=not quiet,
    )
    for note in summary.notes:
        click.echo(f"stvg: {_redact(note)}", err=True)
    click.echo(
        f"{summary.kind} report of {summary.samples} samples ({summary.failed} failed, {summary.missing} "
        f"missing); pictures drawn {summary.rendered}, reused {summary.reused}"
        + ("; embedded" if summary.embedded else "")
    )
    click.echo(f"report: {summary.path}")


def _redact(text: str) -> str:
    from zsgrounding.redact import redact

    return redact(text)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    click.echo(f"stvg: warning: {_redact(str(message))}", err=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    quiet = "--quiet" in (sys.argv[1:] if argv is None else argv)
    try:
        with warnings.catch_warnings(), progress_bars(enabled=not quiet):
            # A warning is one line for the user (e.g. "no LLM endpoint, using offline rules"),
            # not a source excerpt; the previous handler is restored on the way out.
            warnings.showwarning = _show_warning
            code = cli.main(args=argv, prog_name="stvg", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as err:
        click.echo(err.ctx.get_help() if err.ctx else "", err=False)
        sys.exit(0)
    except click.UsageError as err:
        click.echo(f"stvg: error: {_redact(err.format_message())}", err=True)
        sys.exit(2)
    except STVGError as err:
        click.echo(f"stvg: error: {_redact(str(err))}", err=True)
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
