"""The README's Python API example runs as written (on a small toy dataset where it expects one)."""

import re
from pathlib import Path

from zsgrounding.toy.world import ToyWorldConfig, make_dataset

README = Path(__file__).resolve().parents[1] / "README.md"


def test_python_api_example_runs(tmp_path, monkeypatch, capsys):
    section = README.read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    for block in blocks:  # every example at least compiles; the comparison one runs
        compile(block, str(README), "exec")
    code = next(block for block in blocks if "compare_paradigms" in block)
    make_dataset(tmp_path / "runs" / "demo" / "toy", 3, ToyWorldConfig(seed=0), progress=False)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {})
    printed = capsys.readouterr().out
    assert "| zero-shot" in printed and "| colour" in printed and "m_vIoU" in printed
    assert (tmp_path / "runs" / "api_compare" / "comparison.md").is_file()
