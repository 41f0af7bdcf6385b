"""seethrough: explain PyTorch image classifiers, check the explanations, dissect the network.

>>> import seethrough as st
>>> net = st.load_model("efficientnet-lite0")
>>> x = net.preprocess(st.load_images(["sample:chelsea"]))
>>> ex = st.explain(net, x, "integrated_gradients", target="predicted")
"""

__version__ = "0.1.0"

from .attribution import (
    AblationCam,
    Cam,
    CamExplanation,
    Deconvnet,
    EigenCam,
    ExpectedGradients,
    Explanation,
    GradCam,
    GradCamPlusPlus,
    Gradient,
    GradientXInput,
    GuidedBackprop,
    GuidedExplanation,
    GuidedGradCam,
    GuidedGradCamExplanation,
    GuidedIntegratedGradients,
    HiResCam,
    IntegratedGradients,
    IntegratedGradientsExplanation,
    KernelShap,
    LayerCam,
    Lime,
    Method,
    MultiLayerCamExplanation,
    Occlusion,
    PathExplanation,
    Rise,
    ScoreCam,
    SmoothGrad,
    XGradCam,
    explain,
    fuse_layers,
    method_names,
)
from .data import LoadedImage, load_image, load_images
from .errors import SeethroughError
from .models import MODELS, LoadedModel, Preprocess, load_model
from .trust import RandomizationResult, model_randomization

__all__ = [
    "AblationCam",
    "Cam",
    "EigenCam",
    "GradCamPlusPlus",
    "HiResCam",
    "LayerCam",
    "ScoreCam",
    "XGradCam",
    "Occlusion",
    "Rise",
    "Lime",
    "KernelShap",
    "CamExplanation",
    "MultiLayerCamExplanation",
    "fuse_layers",
    "Deconvnet",
    "Explanation",
    "GradCam",
    "Gradient",
    "GradientXInput",
    "GuidedBackprop",
    "GuidedExplanation",
    "GuidedGradCam",
    "GuidedGradCamExplanation",
    "IntegratedGradients",
    "IntegratedGradientsExplanation",
    "ExpectedGradients",
    "GuidedIntegratedGradients",
    "PathExplanation",
    "MODELS",
    "LoadedImage",
    "LoadedModel",
    "Method",
    "Preprocess",
    "SeethroughError",
    "SmoothGrad",
    "__version__",
    "explain",
    "load_image",
    "load_images",
    "load_model",
    "method_names",
    "model_randomization",
    "RandomizationResult",
]
