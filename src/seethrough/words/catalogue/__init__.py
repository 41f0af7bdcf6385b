"""The templates, one module per subject, each holding every language (``EN``, ``ZH``).

A subject's module defines ``EN`` and ``ZH``, dicts of key → template with the same
keys; keys start with the subject (``"explanation."``, ``"sanity."``, ``"region."``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType

from . import common

__all__ = ["CATALOGUES"]

_SUBJECTS: tuple[ModuleType, ...] = (common,)


def _merge(name: str) -> Mapping[str, str]:
    merged: dict[str, str] = {}
    for module in _SUBJECTS:
        merged.update(getattr(module, name))
    return merged


CATALOGUES: Mapping[str, Mapping[str, str]] = {"en": _merge("EN"), "zh": _merge("ZH")}
