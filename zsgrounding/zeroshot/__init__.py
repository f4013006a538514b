"""The training-free method: grounding with an off-the-shelf video MLLM's attention.

*Unleashing the Potential of Multimodal LLMs for Zero-Shot Spatio-Temporal Video Grounding*
(Yang et al.): the grounding token's attention (:mod:`.gti`), logit-guided re-attention on the
attribute and action sub-queries (:mod:`.lra`, :mod:`.decompose`), temporal-augmented assembling
(:mod:`.tas`), put together by :class:`~zsgrounding.zeroshot.pipeline.ZeroShotGrounder`, with the
released code's and the paper's settings as named presets (:mod:`.presets`). The pilot study and
its diagnostics (:mod:`.pilot`, :mod:`.pilot_run`, :mod:`.diagnostics`) measure the evidence.

Imports only the core (``zsgrounding`` outside its subpackages ``zeroshot``, ``toy``, ``apps``).
"""
