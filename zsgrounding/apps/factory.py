"""Grounders built from options and names: what ``stvg ground`` / ``eval`` / ``compare`` and the
demo run.

:func:`zero_shot_config` turns the command line's options into a :class:`ZeroShotConfig` (a preset
with the explicitly given flags on top); :func:`decomposer_for` and :func:`proposer_for` give the
query decomposition and the object tracks; :func:`grounder_for` the grounder ``--method`` names.
A comparison row is named by a spec: ``zero-shot``, ``zero-shot:<flag>=<value>,...`` (an ablation of the
base configuration, e.g. ``zero-shot:tas=false,gti=mean``), ``spacevllm``, ``centre``,
``colour`` or ``oracle-track`` (the target's own track: toy data only). Every row of one
comparison shares one tube scorer, and the zero-shot rows share one loaded MLLM.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from zsgrounding.assets import resolve_model, resolve_spacevllm
from zsgrounding.baselines import BASELINES, BaselineGrounder, target_track_only
from zsgrounding.datasets import load_dataset
from zsgrounding.errors import STVGError
from zsgrounding.mllm import load_adapter
from zsgrounding.proposals import CachedProposer, make_proposer
from zsgrounding.proposals.trackfile import TrackFileProposer
from zsgrounding.toy.proposer import ToyProposer
from zsgrounding.tubes import TubeScorer, TubeScorerConfig
from zsgrounding.types import Sample
from zsgrounding.zeroshot.decompose import Decomposer
from zsgrounding.zeroshot.lra import LRAConfig
from zsgrounding.zeroshot.pipeline import ZeroShotConfig, ZeroShotGrounder

__all__ = [
    "ABLATION_FLAGS",
    "CONFIG_FLAGS",
    "DEFAULT_COMPARE",
    "GROUNDER_KINDS",
    "GrounderSpec",
    "SpecError",
    "ToyWorldWarning",
    "ablate",
    "comparison_grounders",
    "decomposer_for",
    "grounder_for",
    "load_stvg",
    "parse_grounder_spec",
    "parse_grounder_specs",
    "proposer_for",
    "spacevllm_grounder",
    "toy_proposer",
    "zero_shot_config",
]

DEFAULT_COMPARE = ("zero-shot", "spacevllm", "colour")
GROUNDER_KINDS = ("zero-shot", "spacevllm", "centre", "colour", "oracle-track")


class SpecError(STVGError, ValueError):
    """A grounder spec that names no grounder, or a flag or value it does not take."""


@dataclass(frozen=True)
class GrounderSpec:
    """One row: its name (the spec as written, or any label), its kind and its ablation flags."""

    name: str
    kind: str
    changes: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- options -> parts

# Options that set a ZeroShotConfig field of the same name when given explicitly.
CONFIG_FLAGS = (
    "num_frames",
    "gti",
    "fixed_index",
    "spatial_prompt",
    "temporal_prompt",
    "tas",
    "layers",
    "relative",
)


def zero_shot_config(opts: Mapping[str, Any], explicit: Iterable[str] = ()) -> ZeroShotConfig:
    """The :class:`ZeroShotConfig` of the command line's options.

    With a preset (``opts["preset"]``, else ``opts["default_preset"]``; ``"none"``: no preset) the
    preset's settings, with every option named in ``explicit`` (given on the command line) on
    top; without one, the options' own values.
    """
    preset = opts.get("preset") or opts.get("default_preset")
    if preset and preset != "none":
        given = set(explicit)
        config = ZeroShotConfig.preset(
            preset, model=opts["model"], family=opts["family"], dtype=opts["dtype"], device=opts["device"]
        )
        changes: dict[str, Any] = {name: opts[name] for name in CONFIG_FLAGS if name in given}
        if "lra_steps" in given or "lra_step_size" in given:
            changes["lra"] = replace(
                config.lra,
                steps=opts["lra_steps"] if "lra_steps" in given else config.lra.steps,
                step_size=opts["lra_step_size"] if "lra_step_size" in given else config.lra.step_size,
            )
        if "span_frames" in given:
            changes["scorer"] = replace(config.scorer, span_frames=opts["span_frames"])
        return config.ablation(**changes) if changes else config
    return ZeroShotConfig(
        model=opts["model"],
        family=opts["family"],
        num_frames=opts["num_frames"] or 20,
        gti=opts["gti"],
        fixed_index=opts["fixed_index"],
        spatial_prompt=opts["spatial_prompt"],
        temporal_prompt=opts["temporal_prompt"],
        tas=opts["tas"],
        layers=opts["layers"],
        relative=opts["relative"],
        lra=LRAConfig(steps=opts["lra_steps"], step_size=opts["lra_step_size"]),
        scorer=TubeScorerConfig(span_frames=opts["span_frames"]),
        dtype=opts["dtype"],
        device=opts["device"],
    )


def decomposer_for(
    out: Path | None, reference_path: Path | None = None, notify: Callable[[str], None] | None = None
) -> Decomposer:
    """Query decomposition: the released code's file, an LLM endpoint, or rules; cached in ``out``."""
    cache = out / "decompositions.json" if out is not None else None
    return Decomposer.from_env(cache_path=cache, reference_path=reference_path, notify=notify)


TOY_DETECTOR = "toy"  # the --detector value of the toy world's pixel-colour detector


class ToyWorldWarning(UserWarning):
    """The toy model or detector is asked about a clip from outside the toy world."""


def toy_proposer(store_dir: Path | None, track_fps: float | None = 5.0) -> CachedProposer:
    """The offline proposer: the toy world's colour detector linked by the IoU tracker on
    ``track_fps`` frames per second plus the sampled frames, stored."""
    from zsgrounding.proposals.extract import Proposer
    from zsgrounding.proposals.store import TrackStore
    from zsgrounding.proposals.tracker import IoUTracker, IoUTrackerConfig
    from zsgrounding.toy.detector import ToyColourDetector

    detector = ToyColourDetector()
    tracker = IoUTracker(IoUTrackerConfig.following(detector.config.min_score))
    # stored tracks depend on nothing else
    settings = {"detector": TOY_DETECTOR, "tracker": "iou", "track_fps": track_fps}
    store = TrackStore(store_dir) if store_dir is not None else None
    return CachedProposer(store, Proposer(detector, tracker, 1, track_fps), settings)


def proposer_for(
    opts: Mapping[str, Any], out: Path | None, toy_dir: Path | None = None, explicit: Iterable[str] = ()
) -> Any:
    """Object tracks: the user's track files (``track_files``: video -> file, ``track_fallback``:
    detect the other videos); else the toy folder's own; else the track store (``proposals_dir``,
    else ``out/tracks``) filled by the detector and tracker the options name.

    With the embedded toy model and no detector named, the detector is the offline toy detector
    with the IoU tracker (nothing to download); ``--detector toy`` asks for it explicitly.
    """
    track_files = opts.get("track_files") or {}
    if track_files and not opts.get("track_fallback"):
        # ground --tracks: the user's tracks replace detection, so options about it would be ignored
        clash = sorted({"detector", "tracker", "proposals_dir", "sam2_model"} & set(explicit))
        if clash or toy_dir is not None:
            named = ", ".join("--" + n.replace("proposals_dir", "proposals").replace("_", "-") for n in clash)
            raise STVGError(f"--tracks gives the tracks: drop {named or '--toy-dir'}")
        return TrackFileProposer(track_files)
    if track_files:  # a batch: pairs without a track file are detected as usual
        return TrackFileProposer(
            track_files, fallback=proposer_for({**opts, "track_files": None}, out, toy_dir, explicit)
        )
    if toy_dir is not None and opts["proposals_dir"] is None:
        return ToyProposer(toy_dir)
    store_dir = opts["proposals_dir"] or (out / "tracks" if out is not None else None)
    detector = opts["detector"]
    if detector is None and str(opts.get("model")) == "toy":
        detector = TOY_DETECTOR
    if detector == TOY_DETECTOR:
        if opts["tracker"] == "sam2" and "tracker" in set(explicit):
            raise STVGError(
                "--detector toy runs with the IoU tracker (--tracker iou): SAM2 needs its weights"
            )
        return toy_proposer(store_dir, opts.get("track_fps", 5.0))
    return make_proposer(
        store_dir=store_dir,
        detector=detector,
        track_fps=opts.get("track_fps", 5.0),
        tracker=opts["tracker"],
        sam2=opts["sam2_model"],
        device=opts["device"],
    )


def grounder_for(
    opts: Mapping[str, Any],
    out: Path | None,
    toy_dir: Path | None = None,
    explicit: Iterable[str] = (),
    notify: Callable[[str], None] | None = None,
) -> Any:
    """The grounder ``opts["method"]`` names: SpaceVLLM from ``opts["checkpoint"]``, or the
    training-free grounder of the options, checked against its model before any sample runs."""
    if opts["method"] == "spacevllm":
        if opts["checkpoint"] is None:
            raise STVGError("--method spacevllm needs --checkpoint DIR (a fine-tuned SpaceVLLM)")
        if opts.get("track_files") and not opts.get("track_fallback"):
            raise STVGError("--tracks is for the training-free grounder: SpaceVLLM predicts its own boxes")
        return spacevllm_grounder(
            opts["checkpoint"], num_frames=opts["num_frames"], dtype=opts["dtype"], device=opts["device"]
        )
    if str(opts.get("model")) == "toy" and toy_dir is None:
        warnings.warn(
            "the toy model (and the toy detector) know only the toy world's coloured shapes; for real "
            "video pass --model (a folder or hub id, e.g. llava-hf/llava-onevision-qwen2-7b-ov-hf) and "
            "--detector / --proposals / --tracks",
            ToyWorldWarning,
            stacklevel=2,
        )
    grounder = ZeroShotGrounder(
        zero_shot_config(opts, explicit),
        decomposer=decomposer_for(out, opts["decompositions"], notify),
        proposer=proposer_for(opts, out, toy_dir, explicit),
    )
    grounder.check()  # option errors now, not once per sample
    return grounder


# ---------------------------------------------------------------- the spec grammar

_BOOL_WORDS = dict.fromkeys(("true", "on", "yes", "1"), True) | dict.fromkeys(
    ("false", "off", "no", "0"), False
)


def _flag_bool(text: str) -> bool:
    if text.lower() not in _BOOL_WORDS:
        raise ValueError("expected true or false")
    return _BOOL_WORDS[text.lower()]


def _flag_int(lowest: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < lowest:
            raise ValueError(f"expected an integer >= {lowest}")
        return value

    return parse


def _flag_choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return text

    return parse


def _flag_layers(text: str) -> tuple[int, int] | None:
    if text.lower() in ("all", "none"):
        return None
    lo, hi = (int(v) for v in text.split(":"))
    if not 0 <= lo < hi:
        raise ValueError("need 0 <= LO < HI")
    return lo, hi


# The ablation flags of `zero-shot:<flag>=<value>,...`: the zero-shot options, spelt with _ or -.
ABLATION_FLAGS: dict[str, Callable[[str], Any]] = {
    "gti": _flag_choice("max_activation", "mean", "fixed"),
    "fixed_index": int,
    "spatial_prompt": _flag_bool,
    "temporal_prompt": _flag_bool,
    "tas": _flag_bool,
    "relative": _flag_bool,
    "layers": _flag_layers,
    "num_frames": _flag_int(1),
    "lra_steps": _flag_int(0),
    "lra_step_size": float,
    "span_frames": _flag_int(1),
}


def parse_grounder_spec(spec: str) -> GrounderSpec:
    """``"zero-shot:tas=false,gti=mean"`` -> ``GrounderSpec(spec, "zero-shot", {"tas": False, "gti": "mean"})``.

    Raises:
        SpecError: an unknown kind or flag, a value the flag does not take, flags on a row
            other than zero-shot.
    """
    name = spec.strip()
    kind, _, flags = name.partition(":")
    if kind not in GROUNDER_KINDS:
        raise SpecError(f"{spec!r}: unknown grounder {kind!r}; use one of {', '.join(GROUNDER_KINDS)}")
    if not flags:
        return GrounderSpec(name, kind)
    if kind != "zero-shot":
        raise SpecError(f"{spec!r}: only zero-shot takes flags (zero-shot:<flag>=<value>,...)")
    changes: dict[str, Any] = {}
    for item in flags.split(","):
        key, eq, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or not value.strip():
            raise SpecError(f"{spec!r}: {item!r} is not <flag>=<value>")
        if key not in ABLATION_FLAGS:
            raise SpecError(f"{spec!r}: unknown flag {key!r}; flags: {', '.join(ABLATION_FLAGS)}")
        try:
            changes[key] = ABLATION_FLAGS[key](value.strip())
        except ValueError as err:
            raise SpecError(f"{spec!r}: {key}={value.strip()!r}: {err}") from None
    return GrounderSpec(name, kind, changes)


def parse_grounder_specs(specs: Iterable[str]) -> list[GrounderSpec]:
    """Every spec parsed (:data:`DEFAULT_COMPARE` when none is given); a name given twice is an error."""
    parsed: list[GrounderSpec] = []
    for spec in list(specs) or DEFAULT_COMPARE:
        row = parse_grounder_spec(spec)
        if any(p.name == row.name for p in parsed):
            raise SpecError(f"{row.name!r} is given twice")
        parsed.append(row)
    return parsed


def ablate(config: ZeroShotConfig, changes: dict[str, Any]) -> ZeroShotConfig:
    """``config`` with the flags of one ``zero-shot:...`` spec changed."""
    fields = dict(changes)
    if "lra_steps" in fields or "lra_step_size" in fields:
        lra = config.lra
        fields["lra"] = replace(
            lra,
            steps=fields.pop("lra_steps", lra.steps),
            step_size=fields.pop("lra_step_size", lra.step_size),
        )
    if "span_frames" in fields:
        fields["scorer"] = replace(config.scorer, span_frames=fields.pop("span_frames"))
    return config.ablation(**fields)


# ---------------------------------------------------------------- rows


def spacevllm_grounder(
    checkpoint: str | Path,
    scorer: TubeScorer | None = None,
    num_frames: int | None = None,
    sampling: str = "centres",
    dtype: str | None = None,
    device: str | None = None,
) -> Any:
    """A SpaceVLLM grounder from a checkpoint folder (``num_frames=None``: the checkpoint's)."""
    from spacevllm.infer import SpaceVLLMGrounder, SpaceVLLMGrounderConfig
    from spacevllm.model import SpaceVLLM

    model = SpaceVLLM.from_pretrained(checkpoint, dtype=dtype, device=device).eval()
    config = SpaceVLLMGrounderConfig(num_frames=num_frames, sampling=sampling)
    return SpaceVLLMGrounder(model, config, scorer=scorer)


def _shipped_spacevllm(missing: str) -> Path:
    try:
        return Path(resolve_spacevllm("toy"))
    except STVGError as err:
        raise STVGError(f"{err}; {missing}") from None


def comparison_grounders(
    specs: Sequence[GrounderSpec],
    base: ZeroShotConfig,
    scorer: TubeScorer,
    *,
    num_frames: int | None = None,
    decomposer: Decomposer | None = None,
    checkpoint: str | Path | None = None,
    spacevllm_frames: int | None = None,
    toy: bool = False,
) -> dict[str, Any]:
    """The grounders of ``specs``, all on ``scorer``; the MLLM loaded once for every zero-shot row.

    Args:
        specs: the rows (:func:`parse_grounder_specs`).
        base: the zero-shot configuration the zero-shot rows ablate.
        scorer: the one tube scorer of every row.
        num_frames: frames of the baseline rows (default ``base.num_frames``).
        decomposer: the zero-shot rows' query decomposition (default: from the environment).
        checkpoint: SpaceVLLM's folder (default: the shipped toy SpaceVLLM).
        spacevllm_frames: SpaceVLLM's frames (``None``: its checkpoint's setting).
        toy: the samples are toy clips (``oracle-track`` needs the target's own track).

    Raises:
        STVGError: ``oracle-track`` on other data, or no SpaceVLLM checkpoint.
    """
    frames = num_frames or base.num_frames
    zero_shot_rows = [s for s in specs if s.kind == "zero-shot"]
    if zero_shot_rows:
        resolve_model(base.model)  # a missing shipped model is one error now, not one per sample
    adapter = None
    if len(zero_shot_rows) > 1:  # ablation rows differ in flags, not in the model
        adapter = load_adapter(
            resolve_model(base.model),
            family=base.family,
            dtype=base.dtype,
            device=base.device,
            options=base.adapter,
        )
    grounders: dict[str, Any] = {}
    for spec in specs:
        if spec.kind == "zero-shot":
            grounder = ZeroShotGrounder(ablate(base, spec.changes), adapter=adapter, decomposer=decomposer)
            grounder.check()
            grounders[spec.name] = grounder
        elif spec.kind == "spacevllm":
            folder = checkpoint or _shipped_spacevllm(
                "or give --checkpoint DIR (a SpaceVLLM fine-tuned with `stvg train`), or leave spacevllm out "
                "of --grounder"
            )
            grounders[spec.name] = spacevllm_grounder(
                folder, scorer, spacevllm_frames, base.sampling, base.dtype, base.device
            )
        elif spec.kind == "oracle-track":
            if not toy:
                raise STVGError("--grounder oracle-track needs --dataset toy (it knows the target's track)")
            grounders[spec.name] = BaselineGrounder(
                spec.name,
                BASELINES["colour"],
                scorer,
                num_frames=frames,
                track_filter=target_track_only,
                sampling=base.sampling,
            )
        else:
            grounders[spec.name] = BaselineGrounder(
                spec.name, BASELINES[spec.kind], scorer, num_frames=frames, sampling=base.sampling
            )
    return grounders


def load_stvg(
    dataset: str, gt_path: Path, videos: Path | None, vidor_dir: Path | None, max_samples: int | None
) -> tuple[list[Sample], Path | None]:
    """``(samples, toy_dir)``: the first ``max_samples`` samples of an STVG dataset, and its toy
    folder when ``dataset`` is the toy world (its object tracks are the proposals)."""
    kw: dict[str, Any] = {}
    if videos is not None:
        kw["video_root"] = videos
    if dataset == "vidstg":
        kw["vidor_dir"] = vidor_dir
    samples = load_dataset(dataset, gt_path, **kw)
    if max_samples is not None:
        samples = samples[:max_samples]
    toy_dir = (gt_path if gt_path.is_dir() else gt_path.parent) if dataset == "toy" else None
    return samples, toy_dir
