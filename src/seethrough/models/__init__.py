"""Models: the built-in EfficientNet-Lite0, safe loading of other models, preprocessing."""

from seethrough.models.efficientnet_lite import EfficientNetLite, efficientnet_lite0
from seethrough.models.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from seethrough.models.zoo import (
    EFFICIENTNET_LITE0_PREPROCESS,
    FASHION_CNN_VARIANTS,
    MODELS,
    LoadedModel,
    imagenet_labels,
    load_model,
)

__all__ = [
    "EFFICIENTNET_LITE0_PREPROCESS",
    "FASHION_CNN_VARIANTS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MODELS",
    "EfficientNetLite",
    "LoadedModel",
    "Preprocess",
    "efficientnet_lite0",
    "imagenet_labels",
    "load_model",
]
