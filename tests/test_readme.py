"""The README's Python API example runs as written (on a small toy dataset where it expects one)."""

import re
from pathlib import Path

from zsgrounding.toy.world import ToyWorldConfig, make_dataset

README = Path(__file__).resolve().parents[1] / "README.md"


def test_python_api_example_runs(tmp_path, monkeypatch, capsys):
    section = README.read_text().split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    make_dataset(tmp_path / "runs" / "demo" / "toy", 3, ToyWorldConfig(seed=0), progress=False)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {})
    printed = capsys.readouterr().out
    assert "| zero-shot" in printed and "| colour" in printed and "m_vIoU" in printed
    assert (tmp_path / "runs" / "api_compare" / "comparison.md").is_file()
