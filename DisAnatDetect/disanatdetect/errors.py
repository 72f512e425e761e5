"""Errors that reach the user as one clear sentence (no traceback)."""


class InputError(ValueError):
    """The input cannot be processed; the message says what was wrong and what to do."""


class ModelError(RuntimeError):
    """The model bundle is missing, damaged or of the wrong version."""
