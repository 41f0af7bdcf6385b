"""The one place that touches the user's model: guard, hooks, rules, targets, passes."""

from .budget import Budget
from .guard import check_inputs, guarded
from .hooks import HookSet, LayerCapture
from .layers import default_cam_layer, find_layer, trace_layers
from .rules import RectifierRule
from .targets import Target, logits_of, parse_target

__all__ = [
    "Budget",
    "HookSet",
    "LayerCapture",
    "RectifierRule",
    "Target",
    "check_inputs",
    "default_cam_layer",
    "find_layer",
    "guarded",
    "logits_of",
    "parse_target",
    "trace_layers",
]
