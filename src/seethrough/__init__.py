"""seethrough: explain PyTorch image classifiers, check the explanations, dissect the network.

>>> import seethrough as st
>>> net = st.load_model("efficientnet-lite0")
>>> x = net.preprocess(st.load_images(["sample:chelsea"]))
>>> ex = st.explain(net, x, "integrated_gradients", target="predicted")

The names below are imported on first use (PEP 562), so that ``import seethrough`` and
``seethrough --help`` do not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
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

#: Where each public name lives (the subpackage is imported when the name is first used).
_HOMES: dict[str, tuple[str, ...]] = {
    "attribution": (
        "AblationCam",
        "Cam",
        "CamExplanation",
        "Deconvnet",
        "EigenCam",
        "ExpectedGradients",
        "Explanation",
        "GradCam",
        "GradCamPlusPlus",
        "Gradient",
        "GradientXInput",
        "GuidedBackprop",
        "GuidedExplanation",
        "GuidedGradCam",
        "GuidedGradCamExplanation",
        "GuidedIntegratedGradients",
        "HiResCam",
        "IntegratedGradients",
        "IntegratedGradientsExplanation",
        "KernelShap",
        "LayerCam",
        "Lime",
        "Method",
        "MultiLayerCamExplanation",
        "Occlusion",
        "PathExplanation",
        "Rise",
        "ScoreCam",
        "SmoothGrad",
        "XGradCam",
        "explain",
        "fuse_layers",
        "method_names",
    ),
    "data": ("LoadedImage", "load_image", "load_images"),
    "errors": ("SeethroughError",),
    "models": ("MODELS", "LoadedModel", "Preprocess", "load_model"),
    "trust": ("RandomizationResult", "model_randomization"),
}
_HOME_OF = {name: package for package, names in _HOMES.items() for name in names}
_SUBPACKAGES = frozenset(
    {"anatomy", "attribution", "cli", "core", "data", "errors", "inside", "jobs", "models"}
    | {"report", "trust", "viz"}
)

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


def __getattr__(name: str) -> Any:
    """Import a public name's subpackage on first use (and ``seethrough.<subpackage>``)."""
    if name in _HOME_OF:
        if _HOME_OF[name] == "attribution":  # the sanity controls register as methods too
            importlib.import_module(".trust.controls", __name__)
        value = getattr(importlib.import_module(f".{_HOME_OF[name]}", __name__), name)
        globals()[name] = value  # later uses skip this function
        return value
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_SUBPACKAGES})
