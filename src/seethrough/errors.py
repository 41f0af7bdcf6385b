"""Errors that seethrough raises for problems the user can fix.

Every error says what is wrong and how to fix it, in one line. The CLI prints
``str(error)`` for any :class:`SeethroughError` and exits with code 2; other
exceptions are bugs and keep their traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "DatasetNotFoundError",
    "ImageError",
    "InvalidInputError",
    "InvalidOptionError",
    "LayerError",
    "ModelLoadError",
    "ModelStateError",
    "RuleNotAppliedError",
    "SeethroughError",
    "TargetError",
    "UnsafeFileError",
    "suggest",
]


class SeethroughError(Exception):
    """Base class of every error caused by input the user can correct."""


class InvalidInputError(SeethroughError, ValueError):
    """The input tensor (shape, dtype, values, device) cannot be explained."""


class ImageError(SeethroughError, ValueError):
    """An image file or source could not be read as an image."""


class InvalidOptionError(SeethroughError, ValueError):
    """An unknown method, option name or option value."""


class TargetError(SeethroughError, ValueError):
    """A target class is unknown or out of range."""


class LayerError(SeethroughError, ValueError):
    """A layer name does not exist in the model or cannot be used."""


class DatasetNotFoundError(SeethroughError, FileNotFoundError):
    """A dataset's files are not on this machine (the message says how to get them)."""


class ModelLoadError(SeethroughError):
    """A model specification could not be turned into a model."""


class UnsafeFileError(ModelLoadError):
    """Loading the file would execute untrusted code (a plain pickle)."""


class ModelStateError(SeethroughError, RuntimeError):
    """The model is in a state that would make the explanation wrong (e.g. training mode)."""


class RuleNotAppliedError(SeethroughError, RuntimeError):
    """A backward rule (guided backprop, deconvnet) never reached the model's nonlinearities."""


def suggest(word: str, candidates: Iterable[str], n: int = 3) -> str:
    """Return ``"; did you mean 'a', 'b'?"`` for close matches of ``word``, or ``""``."""
    close = difflib.get_close_matches(word, list(candidates), n=n, cutoff=0.6)
    if not close:
        return ""
    return "; did you mean " + ", ".join(repr(c) for c in close) + "?"
