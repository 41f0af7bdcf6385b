"""The versions every result records, so that a saved result says what made it."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import torch

from .._version import __version__

__all__ = ["library_versions"]


def library_versions() -> Mapping[str, str]:
    """seethrough's and torch's versions, read-only: ``{"seethrough": …, "torch": …}``."""
    return MappingProxyType({"seethrough": __version__, "torch": torch.__version__})
