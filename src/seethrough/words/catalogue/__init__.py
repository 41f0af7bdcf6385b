"""The templates, one module per subject, each holding every language (``EN``, ``ZH``).

A subject's module defines ``EN`` and ``ZH``, dicts of key → template with the same
keys; keys start with the subject (``"explanation."``, ``"sanity."``, ``"region."``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType

from . import anatomy as _anatomy
from . import common, explanation, predictions
from . import decompose as _decompose
from . import report as _report
from . import robust as _robust
from . import scale as _scale
from . import trust as _trust

__all__ = ["CATALOGUES"]

_SUBJECTS: tuple[ModuleType, ...] = (
    common,
    explanation,
    predictions,
    _report,
    _trust,
    _anatomy,
    _decompose,
    _robust,
    _scale,
)


def _merge(name: str) -> Mapping[str, str]:
    merged: dict[str, str] = {}
    for module in _SUBJECTS:
        merged.update(getattr(module, name))
    return merged


CATALOGUES: Mapping[str, Mapping[str, str]] = {"en": _merge("EN"), "zh": _merge("ZH")}
