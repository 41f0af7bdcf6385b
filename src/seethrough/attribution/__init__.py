"""Attribution methods: why the model decided. See :func:`seethrough.explain`."""

# isort: skip_file
# Import order is registration order, which is the order `method_names()` lists.

from .base import METHODS, Attribution, Method, Run, explain, make_method, method_names, register
from .explanation import (
    CamExplanation,
    Explanation,
    GuidedExplanation,
    GuidedGradCamExplanation,
    IntegratedGradientsExplanation,
    PathExplanation,
)
from .gradient import Gradient, GradientXInput
from .integrated_gradients import IntegratedGradients
from .path_methods import ExpectedGradients, GuidedIntegratedGradients
from .smoothgrad import SmoothGrad
from .guided import Deconvnet, GuidedBackprop
from .cam import GradCam, GuidedGradCam
from .cams import (
    AblationCam,
    Cam,
    EigenCam,
    GradCamPlusPlus,
    HiResCam,
    LayerCam,
    PerturbationCamExplanation,
    ScoreCam,
    XGradCam,
)
from .perturbation import Occlusion, OcclusionExplanation, Rise
from .surrogate import KernelShap, KernelShapExplanation, Lime, LimeExplanation
from .multilayer import MultiLayerCamExplanation, fuse_layers

__all__ = [
    "METHODS",
    "AblationCam",
    "Attribution",
    "Cam",
    "EigenCam",
    "ExpectedGradients",
    "GradCamPlusPlus",
    "HiResCam",
    "LayerCam",
    "PerturbationCamExplanation",
    "ScoreCam",
    "XGradCam",
    "CamExplanation",
    "Deconvnet",
    "Explanation",
    "GradCam",
    "Gradient",
    "GradientXInput",
    "GuidedBackprop",
    "GuidedExplanation",
    "GuidedGradCam",
    "GuidedGradCamExplanation",
    "GuidedIntegratedGradients",
    "IntegratedGradients",
    "IntegratedGradientsExplanation",
    "KernelShap",
    "KernelShapExplanation",
    "Lime",
    "LimeExplanation",
    "Method",
    "MultiLayerCamExplanation",
    "Occlusion",
    "OcclusionExplanation",
    "PathExplanation",
    "Rise",
    "Run",
    "SmoothGrad",
    "explain",
    "fuse_layers",
    "make_method",
    "method_names",
    "register",
]
