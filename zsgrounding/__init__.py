"""zsgrounding: the core of the STVG toolkit and its training-free grounder.

The core (types, video decoding, the shared tube scorer, metrics, dataset loaders, the toy world)
is used by both paradigms; ``spacevllm`` imports it, never the other way round.
"""

__version__ = "0.1.0"
