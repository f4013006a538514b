"""Errors a user can cause. The CLI prints each as one line and exits with code 2."""


class STVGError(Exception):
    """Base of every error caused by user input (paths, files, options)."""


class VideoError(STVGError):
    """A video cannot be opened, decoded, or sampled as asked."""


class DatasetError(STVGError):
    """An annotation file is missing, unreadable, or has a malformed entry."""


class PredictionError(STVGError):
    """A prediction file is missing, unreadable, or malformed."""
