"""The checkpoints shipped inside the package, and the names that stand for them."""

from __future__ import annotations

from pathlib import Path

from zsgrounding.errors import STVGError

ASSETS = Path(__file__).resolve().parent / "toy" / "assets"
TOY_MLLM = ASSETS / "toy_mllm"
"""The toy-world LLaVA-OneVision checkpoint (recipe and command in its ``recipe.json``)."""

TOY_SPACEVLLM = ASSETS / "toy_spacevllm"
"""The SpaceVLLM fine-tuned from :data:`TOY_MLLM` on toy-world clips (its ``recipe.json``)."""

ALIASES = {"toy": TOY_MLLM}
SPACEVLLM_ALIASES = {"toy": TOY_SPACEVLLM}


def _resolve(name_or_path: str | Path, aliases: dict[str, Path], marker: str) -> str | Path:
    target = aliases.get(str(name_or_path))
    if target is None:
        return name_or_path
    if not (target / marker).is_file():
        raise STVGError(
            f"the shipped {name_or_path!r} checkpoint is missing at {target}; reinstall the package "
            "or rebuild it with the command in the README (section: the toy world)"
        )
    return target


def resolve_model(name_or_path: str | Path) -> str | Path:
    """``"toy"`` -> the shipped toy-world MLLM; anything else unchanged (a folder or hub id)."""
    return _resolve(name_or_path, ALIASES, "config.json")


def resolve_spacevllm(name_or_path: str | Path) -> str | Path:
    """``"toy"`` -> the shipped toy-world SpaceVLLM; anything else unchanged (a folder)."""
    return _resolve(name_or_path, SPACEVLLM_ALIASES, "spacevllm_config.json")
