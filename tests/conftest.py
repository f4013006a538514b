"""Shared test helpers."""

import pytest

from cli import main


@pytest.fixture
def run_cli(capsys):
    """Run `stvg ARGS...` in-process: returns ``(exit code, stdout, stderr)``."""

    def run(argv):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        captured = capsys.readouterr()
        return exit_info.value.code, captured.out, captured.err

    return run
