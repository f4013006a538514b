"""Shared test helpers."""

import os

# The tests run tiny models, where extra intra-op threads cost more than they give, and on a
# loaded 2-core machine they oversubscribe the cores (the suite ran 5x slower). One thread,
# set before torch is imported and inherited by the subprocesses the tests start.
os.environ.setdefault("OMP_NUM_THREADS", "1")

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
