"""The package's public names: each resolves to its defining module, loaded only on first use."""

from __future__ import annotations

import subprocess
import sys

import zsgrounding


def test_every_public_name_resolves_to_its_module() -> None:
    for name, module in zsgrounding._EXPORTS.items():
        value = getattr(zsgrounding, name)
        assert getattr(sys.modules[module], name) is value, name
    assert sorted(zsgrounding.__all__) == sorted(["__version__", *zsgrounding._EXPORTS])


def test_importing_the_core_does_not_load_the_method() -> None:
    code = (
        "import sys, zsgrounding.types, zsgrounding.metrics, zsgrounding.datasets\n"
        "print(sorted(m for m in sys.modules if m.startswith(('zsgrounding.zeroshot', 'zsgrounding.toy', 'spacevllm'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
