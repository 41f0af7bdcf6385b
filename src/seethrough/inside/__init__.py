"""Inside the network: filters, feature maps, activation maximization, DeepDream, feature
inversion and top-activating dataset examples."""

from __future__ import annotations

from .dream import DreamResult, dream
from .feature_maps import FeatureMaps, feature_maps
from .filters import Filters, filters
from .inversion import InversionResult, LayerInversions, invert, invert_layers
from .maximize import StabilityResult, Visualization, evaluate, maximize, stability
from .objectives import (
    Objective,
    blur,
    channel,
    channels,
    class_logit,
    direction,
    diversity,
    l2,
    layer_objective,
    neuron,
    total_variation,
)
from .receptive_field import ReceptiveField, receptive_field
from .top_examples import TopExamples, top_examples

__all__: list[str] = [
    "DreamResult",
    "FeatureMaps",
    "Filters",
    "ReceptiveField",
    "TopExamples",
    "InversionResult",
    "LayerInversions",
    "Objective",
    "StabilityResult",
    "Visualization",
    "blur",
    "channel",
    "channels",
    "class_logit",
    "direction",
    "diversity",
    "dream",
    "evaluate",
    "feature_maps",
    "filters",
    "invert",
    "invert_layers",
    "l2",
    "layer_objective",
    "maximize",
    "neuron",
    "receptive_field",
    "stability",
    "top_examples",
    "total_variation",
]
