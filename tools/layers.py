"""The import contract: the core, the zero-shot method, the toy world, SpaceVLLM and the apps.

    python tools/layers.py            # exit 1 and one line per import that breaks the contract

Layers (a module may import its own layer and the ones its row allows):

    zsgrounding (core: outside the subpackages below)  -> core
    zsgrounding.zeroshot                               -> core
    zsgrounding.toy                                    -> core
    spacevllm                                          -> core
    zsgrounding.apps, cli                              -> anything

Every ``import`` and ``from ... import`` counts, also inside functions: a lazy import is still a
dependency. ``zsgrounding/__init__.py`` is the public facade and may name any layer's objects, but
only lazily (module ``__getattr__``), so importing the core never loads the others.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("zsgrounding.zeroshot", "zsgrounding.toy", "zsgrounding.apps", "spacevllm", "cli")
ALLOWED = {
    "core": {"core"},
    "zsgrounding.zeroshot": {"core", "zsgrounding.zeroshot"},
    "zsgrounding.toy": {"core", "zsgrounding.toy"},
    "spacevllm": {"core", "spacevllm"},
    "zsgrounding.apps": {"core", "zsgrounding.zeroshot", "zsgrounding.toy", "spacevllm", "zsgrounding.apps"},
    "cli": {"core", "zsgrounding.zeroshot", "zsgrounding.toy", "spacevllm", "zsgrounding.apps", "cli"},
}
FACADE = "zsgrounding"


def layer_of(module: str) -> str | None:
    """The layer of a first-party module name, ``None`` for anything else."""
    for layer in LAYERS:
        if module == layer or module.startswith(layer + "."):
            return layer
    if module == "zsgrounding" or module.startswith("zsgrounding."):
        return "core"
    return None


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(
    tree: ast.AST, module: str, is_package: bool, root: Path = ROOT
) -> Iterator[tuple[int, str, bool]]:
    """``(line, imported module, at module level)`` for every import in ``tree``."""
    top_level = {id(node) for node in getattr(tree, "body", [])}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, id(node) in top_level
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:
                # "from zsgrounding import toy" imports a subpackage, not a name of the core
                yield (
                    node.lineno,
                    f"{target}.{alias.name}" if _is_module(f"{target}.{alias.name}", root) else target,
                    (id(node) in top_level),
                )


def _is_module(name: str, root: Path) -> bool:
    path = root.joinpath(*name.split("."))
    return path.is_dir() or path.with_suffix(".py").is_file()


def violations(root: Path = ROOT) -> list[str]:
    """One line per import that breaks the contract, in the packages under ``root``."""
    found = []
    files = [
        root / "cli.py",
        *sorted((root / "zsgrounding").rglob("*.py")),
        *sorted((root / "spacevllm").rglob("*.py")),
    ]
    for path in files:
        if not path.is_file():
            continue
        module = module_name(path, root)
        source = layer_of(module)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, target, top in sorted(set(imports(tree, module, path.name == "__init__.py", root))):
            layer = layer_of(target)
            if layer is None or source is None:
                continue
            if module == FACADE and not top:
                continue  # the facade's lazy exports
            if layer not in ALLOWED[source]:
                where = path.relative_to(root)
                found.append(f"{where}:{line}: {module} ({source}) imports {target} ({layer})")
    return found


def main() -> int:
    found = violations(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
    for line in found:
        print(line)
    if found:
        print(f"{len(found)} import(s) break the layer contract (see tools/layers.py)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
