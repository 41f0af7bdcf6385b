"""Errors that seethrough raises for problems the user can fix.

Every error says what is wrong and how to fix it, in one line. The CLI prints
``str(error)`` for any :class:`SeethroughError` and exits with code 2; other
exceptions are bugs and keep their traceback.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

__all__ = [
    "DatasetNotFoundError",
    "ImageError",
    "InvalidInputError",
    "InvalidOptionError",
    "LayerError",
    "ModelLoadError",
    "ModelStateError",
    "NonFiniteError",
    "OptionCheck",
    "RuleNotAppliedError",
    "SeethroughError",
    "TargetError",
    "UnsafeFileError",
    "WeightsOnlyError",
    "boolean",
    "check_option",
    "check_options",
    "instance_of",
    "integer",
    "number",
    "one_of",
    "option",
    "optional",
    "suggest",
    "text",
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


class WeightsOnlyError(ModelLoadError):
    """A model file holds only weights (a state dict): the code that builds the model is needed."""


class ModelStateError(SeethroughError, RuntimeError):
    """The model is in a state that would make the explanation wrong (e.g. training mode)."""


class RuleNotAppliedError(SeethroughError, RuntimeError):
    """A backward rule (guided backprop, deconvnet) never reached the model's nonlinearities."""


class NonFiniteError(SeethroughError, FloatingPointError):
    """The model's output, a gradient or a map is NaN or infinite (the rows and step named)."""


def suggest(word: str, candidates: Iterable[str], n: int = 3) -> str:
    """Return ``"; did you mean 'a', 'b'?"`` for close matches of ``word``, or ``""``."""
    close = difflib.get_close_matches(word, list(candidates), n=n, cutoff=0.6)
    if not close:
        return ""
    return "; did you mean " + ", ".join(repr(c) for c in close) + "?"


# ---------------------------------------------------------------- option checks
# Each option of a method (or of any other configurable object) is a dataclass field
# declared with `option(default, check=...)`; `check_options` validates them all at once.

_CHECK = "seethrough.option_check"  # the field metadata key


@dataclass(frozen=True)
class OptionCheck:
    """What an option accepts: a test, and the words for it.

    ``expected`` completes "``name`` must be ..." (``"a positive integer"``,
    ``"in (0, 1)"``); ``names`` are the strings it accepts when they form a list (a
    wrong string is then "unknown", with close matches). ``a | b`` accepts what either
    accepts.
    """

    accepts: Callable[[Any], bool]
    expected: str = ""
    names: tuple[str, ...] = ()

    def __or__(self, other: OptionCheck) -> OptionCheck:
        return OptionCheck(
            lambda value: self.accepts(value) or other.accepts(value),
            " or ".join(e for e in (self.expected, other.expected) if e),
            self.names + other.names,
        )

    def describe(self) -> str:
        """Everything it accepts, in words."""
        listed = f"one of {', '.join(map(repr, self.names))}" if self.names else ""
        return " or ".join(e for e in (listed, self.expected) if e)


def option(
    default: Any = MISSING, *, check: OptionCheck, factory: Callable[[], Any] | None = None
) -> Any:
    """A dataclass field that is a user option: its default (or ``factory`` for a
    mutable default) and the :class:`OptionCheck` every value must pass."""
    metadata = {_CHECK: check}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def check_option(owner: str, name: str, value: Any, check: OptionCheck) -> None:
    """Raise :class:`InvalidOptionError` unless ``check`` accepts ``value``; the message
    names ``owner`` (e.g. the method), the option, what it accepts and what was given."""
    if check.accepts(value):
        return
    if isinstance(value, str) and check.names:
        valid = ", ".join([*check.names, *([check.expected] if check.expected else [])])
        raise InvalidOptionError(
            f"{owner}: unknown {name} {value!r}{suggest(value, check.names)} (valid: {valid})"
        )
    raise InvalidOptionError(
        f"{owner}: {name} must be {check.describe()}, got {value!r} ({type(value).__name__})"
    )


def check_options(owner: str, options: Any) -> None:
    """:func:`check_option` for every field of the dataclass instance ``options``
    declared with :func:`option`."""
    for f in fields(options):
        check = f.metadata.get(_CHECK)
        if check is not None:
            check_option(owner, f.name, getattr(options, f.name), check)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


MAX_INTEGER = 2**31 - 1
"""The largest count option (samples, steps, ...): beyond it, tensor sizes and indices
overflow long before any run could finish. Other integers (seeds) must fit 64 bits."""


def integer(at_least: int | None = 1) -> OptionCheck:
    """An ``int`` (not a bool), at least ``at_least`` unless that is ``None``."""
    if at_least is None:
        return OptionCheck(lambda v: _is_int(v) and abs(v) < 2**63, "a 64-bit integer")
    words = "a positive integer" if at_least == 1 else f"an integer ≥ {at_least}"
    return OptionCheck(lambda v: _is_int(v) and at_least <= v <= MAX_INTEGER, words)


def number(
    *,
    above: float | None = None,
    at_least: float | None = None,
    below: float | None = None,
    at_most: float | None = None,
) -> OptionCheck:
    """A finite ``int`` or ``float`` (not a bool, not NaN or ±inf) within the bounds
    given: ``"in (0, 1]"``, ``"positive"``, ``"non-negative"``, ``"≥ 2"``..."""

    def accepts(value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return (
            math.isfinite(value)
            and (above is None or value > above)
            and (at_least is None or value >= at_least)
            and (below is None or value < below)
            and (at_most is None or value <= at_most)
        )

    low = f"({above:g}" if above is not None else f"[{at_least:g}" if at_least is not None else ""
    high = f"{below:g})" if below is not None else f"{at_most:g}]" if at_most is not None else ""
    if low and high:
        words = f"in {low}, {high}"
    elif above == 0 and not high:
        words = "positive"
    elif at_least == 0 and not high:
        words = "non-negative"
    elif low:
        words = f"{'>' if above is not None else '≥'} {low[1:]}"
    elif high:
        words = f"{'<' if below is not None else '≤'} {high[:-1]}"
    else:
        return OptionCheck(accepts, "a finite number")
    return OptionCheck(accepts, f"{words} (a finite number)")


def one_of(*values: str) -> OptionCheck:
    """One of the strings ``values``."""
    return OptionCheck(lambda v: isinstance(v, str) and v in values, "", values)


def boolean() -> OptionCheck:
    """``True`` or ``False``."""
    return OptionCheck(lambda v: isinstance(v, bool), "True or False")


def text() -> OptionCheck:
    """Any string."""
    return OptionCheck(lambda v: isinstance(v, str), "a string")


def instance_of(kind: type | tuple[type, ...], expected: str) -> OptionCheck:
    """An instance of ``kind``, described as ``expected`` (e.g. ``"a tensor"``)."""
    return OptionCheck(lambda v: isinstance(v, kind), expected)


def optional(check: OptionCheck) -> OptionCheck:
    """What ``check`` accepts, or ``None``."""
    return check | OptionCheck(lambda v: v is None, "None")
