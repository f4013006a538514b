"""What is built on every layer: the demo that runs both paradigms side by side on the toy world.

The one place (with ``cli.py``) that imports the zero-shot method, SpaceVLLM and the toy world
together.
"""
