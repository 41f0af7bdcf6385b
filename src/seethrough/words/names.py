"""Names shown in the reader's language: attribution methods."""

from __future__ import annotations

from .findings import Term, Value, catalogue

__all__ = ["method_term"]


def method_term(method: str) -> Value:
    """How to show the method ``method``: a :class:`Term` (``"method.grad_cam"`` →
    "Grad-CAM", 积分梯度 …) when the catalogue names it, else the name as given (a
    method registered by the user)."""
    key = f"method.{method}"
    return Term(key) if key in catalogue("en") else method
