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
import pkgutil
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .attribution import (
        AblationCam,
        Cam,
        CamExplanation,
        Deconvnet,
        DeepLift,
        DeepLiftExplanation,
        DeepShap,
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
        Lrp,
        LrpExplanation,
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
    from .data import LoadedImage, load_image, load_images, open_run
    from .errors import SeethroughError
    from .jobs.report import report
    from .models import MODELS, LoadedModel, Preprocess, load_model
    from .scale import explain_dataset
    from .trust import RandomizationResult, model_randomization

#: The subpackages that the names of ``__all__`` come from, lowest layer first: a name is
#: looked up in their own ``__all__`` lists on first use, so each is declared once, at home.
_HOMES = ("errors", "data", "models", "attribution", "trust", "scale", "jobs.report")

__all__ = [
    "__version__",
    "AblationCam",
    "Cam",
    "CamExplanation",
    "Deconvnet",
    "DeepLift",
    "DeepLiftExplanation",
    "DeepShap",
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
    "LoadedImage",
    "LoadedModel",
    "Lrp",
    "LrpExplanation",
    "MODELS",
    "Method",
    "MultiLayerCamExplanation",
    "Occlusion",
    "PathExplanation",
    "Preprocess",
    "RandomizationResult",
    "Rise",
    "ScoreCam",
    "SeethroughError",
    "SmoothGrad",
    "XGradCam",
    "explain",
    "explain_dataset",
    "fuse_layers",
    "load_image",
    "load_images",
    "load_model",
    "method_names",
    "model_randomization",
    "open_run",
    "report",
]


def __getattr__(name: str) -> Any:
    """Import a public name's subpackage on first use (and ``seethrough.<subpackage>``)."""
    if name in __all__:
        value = getattr(_home_of(name), name)
        globals()[name] = value  # later uses skip this function
        return value
    if name in _subpackages():
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_subpackages()})


def _home_of(name: str) -> ModuleType:
    """The first of :data:`_HOMES` whose ``__all__`` lists ``name`` (imported)."""
    for package in _HOMES:
        module = importlib.import_module(f".{package}", __name__)
        if name in module.__all__:
            if package == "attribution":  # the sanity controls register as methods too
                importlib.import_module(".trust.controls", __name__)
            return module
    raise AttributeError(f"{name!r} is in {__name__}.__all__ but in no subpackage's __all__")


def _subpackages() -> set[str]:
    """The public subpackages and modules (``seethrough.inside``, ...), found on disk."""
    return {m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")}
