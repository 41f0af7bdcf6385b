"""Attribution methods: why the model decided. See :func:`seethrough.explain`."""

# isort: skip_file
# Import order is registration order, which is the order `method_names()` lists.

from .run import PassContext
from .method import Attribution, Method, method_names, register
from .api import explain, make_method
from .explanation import (
    CamExplanation,
    Details,
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
from .lrp import Lrp, LrpExplanation
from .deeplift import DeepLift, DeepLiftExplanation, DeepShap
from .perturbation import Occlusion, OcclusionExplanation, Rise
from .cams import (
    AblationCam,
    Cam,
    EigenCam,
    GradCam,
    GradCamPlusPlus,
    GuidedGradCam,
    HiResCam,
    LayerCam,
    MultiLayerCamExplanation,
    PerturbationCamExplanation,
    ScoreCam,
    XGradCam,
    fuse_layers,
)
from .surrogate import KernelShap, KernelShapExplanation, Lime, LimeExplanation

__all__ = [
    "AblationCam",
    "Attribution",
    "Cam",
    "Details",
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
    "DeepLift",
    "DeepLiftExplanation",
    "DeepShap",
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
    "Lrp",
    "LrpExplanation",
    "Method",
    "MultiLayerCamExplanation",
    "Occlusion",
    "OcclusionExplanation",
    "PassContext",
    "PathExplanation",
    "Rise",
    "SmoothGrad",
    "explain",
    "fuse_layers",
    "make_method",
    "method_names",
    "register",
]
