"""Research instruments for the toy MLLM: measurements the recipe does not need.

Not installed with the toolkit (``pyproject.toml`` packages only ``zsgrounding`` and
``spacevllm``): import ``research.<module>`` and run ``python -m research.<script>`` from the
repository root. See ``research/README.md``.
"""
