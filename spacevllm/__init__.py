"""SpaceVLLM: the supervised spatio-temporal grounding head.

*SpaceVLLM: Endowing Multimodal Large Language Model with Spatio-Temporal Video Grounding
Capability* (arXiv 2503.13983). Built on the ``zsgrounding`` core only, never on the zero-shot
method or the toy world (docs/design.md).
"""
