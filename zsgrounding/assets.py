"""The checkpoints shipped inside the package, and the names that stand for them."""

from __future__ import annotations

from pathlib import Path

from zsgrounding.errors import STVGError

ASSETS = Path(__file__).resolve().parent / "assets"
TOY_MLLM = ASSETS / "toy_mllm"
"""The toy-world LLaVA-OneVision checkpoint (recipe and command in its ``recipe.json``)."""

ALIASES = {"toy": TOY_MLLM}


def resolve_model(name_or_path: str | Path) -> str | Path:
    """``"toy"`` -> the shipped toy-world checkpoint; anything else unchanged (a folder or hub id)."""
    target = ALIASES.get(str(name_or_path))
    if target is None:
        return name_or_path
    if not (target / "config.json").is_file():
        raise STVGError(
            f"the shipped {name_or_path!r} checkpoint is missing at {target}; "
            "reinstall the package or rebuild it with `python benchmarks/toy_pretrain.py --out DIR`"
        )
    return target
