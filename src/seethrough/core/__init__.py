"""The one place that touches the user's model: guard, hooks, rules, targets, passes."""

from .budget import Budget
from .guard import guarded
from .hooks import HookSet, LayerCapture
from .layers import find_layer, trace_layers
from .rules import RectifierRule
from .targets import Target, logits_of

__all__ = [
    "Budget",
    "HookSet",
    "LayerCapture",
    "RectifierRule",
    "Target",
    "find_layer",
    "guarded",
    "logits_of",
    "trace_layers",
]
