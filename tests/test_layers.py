"""The import contract (tools/layers.py): the repository keeps it, and a violation is caught."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "layers.py"


def _check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), str(root)], capture_output=True, text=True)


def test_the_repository_keeps_the_layer_contract() -> None:
    done = _check(ROOT)
    assert done.returncode == 0, done.stdout


def _write(root: Path, relative: str, text: str = "") -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_core_module_importing_the_method_fails_the_check(tmp_path: Path) -> None:
    for package in (
        "zsgrounding",
        "zsgrounding/zeroshot",
        "zsgrounding/toy",
        "zsgrounding/apps",
        "spacevllm",
    ):
        _write(tmp_path, f"{package}/__init__.py")
    _write(tmp_path, "zsgrounding/zeroshot/gti.py", "from zsgrounding.types import Tube\n")
    _write(tmp_path, "zsgrounding/types.py", "class Tube: ...\n")
    _write(tmp_path, "zsgrounding/apps/demo.py", "import spacevllm\nfrom zsgrounding.zeroshot import gti\n")
    assert _check(tmp_path).returncode == 0  # method -> core and apps -> anything are allowed
    # A lazy import inside a function counts too; so do relative imports and the toy world.
    _write(tmp_path, "zsgrounding/metrics.py", "def f():\n    from zsgrounding.zeroshot.gti import x\n")
    _write(tmp_path, "zsgrounding/zeroshot/lra.py", "from ..toy import world\n")
    _write(tmp_path, "zsgrounding/toy/world.py", "")
    _write(tmp_path, "spacevllm/synth.py", "from zsgrounding.zeroshot import gti\n")
    done = _check(tmp_path)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[:-1] == [
        "zsgrounding/metrics.py:2: zsgrounding.metrics (core) imports zsgrounding.zeroshot.gti (zsgrounding.zeroshot)",
        "zsgrounding/zeroshot/lra.py:1: zsgrounding.zeroshot.lra (zsgrounding.zeroshot) imports zsgrounding.toy.world"
        " (zsgrounding.toy)",
        "spacevllm/synth.py:1: spacevllm.synth (spacevllm) imports zsgrounding.zeroshot.gti (zsgrounding.zeroshot)",
    ]
    assert lines[-1] == "3 import(s) break the layer contract (see tools/layers.py)"
