"""Nothing the toolkit reads from disk is unpickled: a guard over the package's source.

It parses every module (strings and comments are not code, so a message that tells the user how
to convert a pickle is fine) and refuses the calls that unpickle: ``pickle.load(s)``,
``torch.load`` without ``weights_only=True``, ``yaml.load`` without a safe loader, ``yaml``'s
unsafe / full loaders, ``np.load(allow_pickle=True)``, and Accelerate's ``load_custom_state`` and
``register_for_checkpointing`` (whose state Accelerate unpickles in full on resume).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = [
    *sorted((ROOT / "zsgrounding").rglob("*.py")),
    *sorted((ROOT / "spacevllm").rglob("*.py")),
    ROOT / "cli.py",
]
SAFE_YAML = {"SafeLoader", "CSafeLoader", "BaseLoader"}


def _name(node: ast.AST) -> str:
    """``a.b.c`` of a call's function, or ``""``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _name(node.value)
        return f"{inner}.{node.attr}" if inner else node.attr
    return ""


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_const(node: ast.expr | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def unpickling_calls(source: str, filename: str = "<source>") -> list[str]:
    """``file:line call`` of every call in ``source`` that may unpickle."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        name = _name(node.func)
        last = name.rsplit(".", 1)[-1]
        bad = False
        if name in {
            "pickle.load",
            "pickle.loads",
            "cPickle.load",
            "dill.load",
            "marshal.load",
            "shelve.open",
        }:
            bad = True
        elif name == "torch.load":
            bad = not _is_const(_keyword(node, "weights_only"), True)
        elif name == "yaml.load":
            loader = _keyword(node, "Loader")
            if loader is None and len(node.args) > 1:
                loader = node.args[1]
            bad = loader is None or _name(loader).rsplit(".", 1)[-1] not in SAFE_YAML
        elif name in {"yaml.unsafe_load", "yaml.full_load", "yaml.load_all", "yaml.unsafe_load_all"}:
            bad = True
        elif name in {"np.load", "numpy.load"}:
            bad = _is_const(_keyword(node, "allow_pickle"), True)
        elif last in {"load_custom_state", "register_for_checkpointing"}:
            bad = True
        if bad:
            found.append(f"{filename}:{node.lineno} {name}")
    return found


def test_the_package_never_unpickles() -> None:
    found = [hit for path in PACKAGE for hit in unpickling_calls(path.read_text(encoding="utf-8"), str(path))]
    assert found == []


def test_the_guard_catches_each_kind_and_leaves_safe_calls() -> None:
    bad = """
import pickle, torch, yaml, numpy as np
pickle.load(f)
pickle.loads(b)
torch.load(p)
torch.load(p, weights_only=False)
yaml.load(text)
yaml.load(text, Loader=yaml.FullLoader)
yaml.unsafe_load(text)
np.load(p, allow_pickle=True)
accelerator.register_for_checkpointing(scheduler)
"""
    assert len(unpickling_calls(bad)) == 9
    good = """
import torch, yaml, numpy as np
torch.load(p, weights_only=True)
yaml.load(text, Loader=yaml.SafeLoader)
yaml.safe_load(text)
np.load(p)
message = "export it: pickle.load(open(f))"
"""
    assert unpickling_calls(good) == []
