"""Errors of the MLLM adapter layer."""

from zsgrounding.errors import STVGError


class ModelError(STVGError):
    """A model cannot be loaded or used as asked: unknown family, missing files, mismatched inputs."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (transformers' messages span several lines)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
