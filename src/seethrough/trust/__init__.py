"""Can this explanation be trusted? Sanity checks, similarity measures, faithfulness.

sMPRT and eMPRT (Hedström et al., 2023) are in :mod:`seethrough.trust.mprt`.
Localisation metrics (pointing game, energy-based pointing, relevance mass and rank
accuracy against a mask or box) are in :mod:`seethrough.trust.localisation`.
Importing this package registers the control explainers ``edge_detector`` and
``random_noise`` (:mod:`seethrough.trust.controls`).
"""

from ..core.reinit import INITS
from .controls import EdgeDetector, RandomNoise, sobel_edges
from .localisation import (
    energy_pointing_game,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
)
from .mprt import EfficientMprtResult, SmoothMprtResult, efficient_mprt, smooth_mprt
from .randomize import MODES
from .roar import RoarComparison, RoarResult, roar
from .sanity import (
    METRICS,
    ComparisonResult,
    RandomizationResult,
    Similarities,
    data_randomization,
    edge_similarity,
    edge_similarity_of,
    method_label,
    model_randomization,
)
from .similarity import constant_maps, hog_similarity, reduce_maps, spearman, ssim
from .steps import GRANULARITIES, RandomizationStep, randomization_steps
from .verdict import (
    CASCADE_THRESHOLD,
    THRESHOLD,
    VERDICTS,
    ControlComparison,
    SanityVerdict,
    cascade_verdict,
    compare_with_control,
    holm_family,
    sanity_verdict,
)

__all__ = [
    "CASCADE_THRESHOLD",
    "GRANULARITIES",
    "INITS",
    "METRICS",
    "MODES",
    "THRESHOLD",
    "VERDICTS",
    "ComparisonResult",
    "ControlComparison",
    "EdgeDetector",
    "EfficientMprtResult",
    "RandomNoise",
    "RandomizationResult",
    "RandomizationStep",
    "SanityVerdict",
    "RoarComparison",
    "RoarResult",
    "Similarities",
    "SmoothMprtResult",
    "cascade_verdict",
    "compare_with_control",
    "constant_maps",
    "data_randomization",
    "edge_similarity",
    "edge_similarity_of",
    "efficient_mprt",
    "energy_pointing_game",
    "hog_similarity",
    "holm_family",
    "method_label",
    "model_randomization",
    "pointing_game",
    "randomization_steps",
    "reduce_maps",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "smooth_mprt",
    "roar",
    "sanity_verdict",
    "sobel_edges",
    "spearman",
    "ssim",
]
