"""SpaceVLLM: the supervised spatio-temporal grounding head (seeds 000/001).

Built on top of the ``zsgrounding`` core; see design.md.
"""
