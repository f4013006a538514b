"""The toy world: a small synthetic STVG world that every code path runs on without downloads.

:mod:`.world` simulates and renders clips of coloured shapes that move, with captions and exact
tubes, and writes them as a dataset folder (HC-STVG v1 annotations plus a ``toyworld.json``
sidecar that the core's ``load_dataset("toy", ...)`` reads). :mod:`.detector` and
:mod:`.proposer` stand in for Grounding DINO and for a perfect tracker; :mod:`.mllm` is the recipe
that trains the shipped toy MLLM (``assets/toy_mllm``); ``assets/toy_spacevllm`` is the SpaceVLLM
fine-tuned from it. The toy models are fixtures that exercise the real model classes: they are
not meant to ground real video.

Imports only the core.
"""
