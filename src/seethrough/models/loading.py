"""Safe reading of model files and import paths.

Nothing here runs code from a file unless the caller says it trusts it: checkpoints are read with
``torch.load(weights_only=True)``, and a plain pickle raises :class:`UnsafeFileError` unless
``allow_pickle=True``. Every failure is a one-line :class:`ModelLoadError`.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import logging
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from seethrough.errors import ModelLoadError, UnsafeFileError, suggest

__all__ = [
    "build_from_import_path",
    "is_import_path",
    "load_state_dict_into",
    "read_model_file",
    "read_state_dict",
    "resolve_import_path",
]

logger = logging.getLogger(__name__)

_IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_NESTED_KEYS = ("state_dict", "model_state_dict", "model")
_SHOWN_KEYS = 5
_PICKLE_HELP = (
    "the file is a pickled Python object; loading it runs arbitrary code. If you trust it, pass "
    "allow_pickle=True (CLI: --allow-pickle); better, save a state dict or safetensors file"
)

StateDict = dict[str, torch.Tensor]


def is_import_path(spec: str) -> bool:
    """Whether ``spec`` looks like ``"package.module:object"``."""
    return bool(_IMPORT_PATH.match(spec))


def resolve_import_path(path: str) -> Any:
    """Import ``"package.module:attr.sub"`` and return the object.

    Raises
    ------
    ModelLoadError
        If the module does not import or has no such attribute.
    """
    if not is_import_path(path):
        raise ModelLoadError(f"{path!r} is not an import path; expected 'package.module:object'")
    module_name, attr_path = path.split(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except (ImportError, SyntaxError) as err:  # a syntax error names its file and line
        raise ModelLoadError(
            f"cannot import module {module_name!r} (for object {attr_path!r}): "
            f"{type(err).__name__}: {err}"
        ) from err
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            raise ModelLoadError(
                f"module {module_name!r} has no attribute {attr_path!r}"
                + suggest(part, [n for n in dir(obj) if not n.startswith("_")])
            )
        obj = getattr(obj, part)
    return obj


def build_from_import_path(path: str) -> nn.Module:
    """Return the module an import path names: an instance (copied) or a factory's result.

    An ``nn.Module`` instance is deep-copied, so that putting it in eval mode or on a device does
    not change the object its module holds. Anything else is called with no arguments.
    """
    obj = resolve_import_path(path)
    if isinstance(obj, nn.Module):
        return copy.deepcopy(obj)
    if not callable(obj):
        raise ModelLoadError(
            f"{path!r} is an object of type {type(obj).__name__}, not an nn.Module or a factory"
        )
    try:
        inspect.signature(obj).bind()
    except TypeError as err:
        raise ModelLoadError(
            f"factory {path!r} cannot be called without arguments ({err}); "
            "wrap it in a function that takes none"
        ) from err
    except ValueError:  # no signature available (some builtins): just try calling it
        pass
    try:
        module = obj()
    except Exception as err:  # the user's code: say where, keep the cause for -v / Python
        raise ModelLoadError(
            f"factory {path!r} raised {type(err).__name__}: {err} (call it in Python to see "
            "the traceback)"
        ) from err
    if not isinstance(module, nn.Module):
        raise ModelLoadError(
            f"factory {path!r} returned an object of type {type(module).__name__}, "
            "not a torch.nn.Module"
        )
    return module


def read_model_file(path: Path, *, allow_pickle: bool = False) -> nn.Module | StateDict:
    """Read a TorchScript archive, a safetensors file or a ``torch.save`` checkpoint.

    Returns
    -------
    nn.Module or dict
        A ``torch.jit.ScriptModule`` or (with ``allow_pickle``) a pickled module; otherwise the
        state dict, unwrapped from a checkpoint dict and without a ``module.`` prefix.

    Raises
    ------
    ModelLoadError
        Missing, unreadable or unsupported file.
    UnsafeFileError
        The file is a pickle of arbitrary objects and ``allow_pickle`` is False.
    """
    kind = _file_kind(path)
    if kind == "torchscript":
        try:
            with warnings.catch_warnings():
                # torch >= 2.9 deprecates TorchScript; loading users' existing files is still right.
                warnings.filterwarnings("ignore", r"`torch\.jit", FutureWarning)
                return torch.jit.load(str(path), map_location="cpu")
        except (RuntimeError, ValueError) as err:
            raise ModelLoadError(f"cannot load TorchScript file {str(path)!r}: {err}") from err
    if kind == "safetensors":
        return read_state_dict(path)
    if kind == "unknown":
        raise ModelLoadError(
            f"{str(path)!r} is not a model file (expected TorchScript, safetensors, or a "
            "torch.save checkpoint / state dict)"
        )
    obj = _torch_load(path, allow_pickle=allow_pickle)
    if isinstance(obj, nn.Module):
        return obj
    return _as_state_dict(obj, path)


def read_state_dict(path: Path, *, allow_pickle: bool = False) -> StateDict:
    """Read a state dict from a ``.safetensors`` file or a ``torch.save`` checkpoint.

    Checkpoint dicts are unwrapped (``state_dict``, ``model_state_dict``, ``model``) and a
    ``module.`` prefix on every key is removed.
    """
    kind = _file_kind(path)
    if kind == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return _strip_prefix(load_file(str(path), device="cpu"))
        except (SafetensorError, OSError) as err:
            raise ModelLoadError(f"cannot read safetensors file {str(path)!r}: {err}") from err
    if kind in ("torchscript", "unknown"):
        what = "a TorchScript model" if kind == "torchscript" else "not a weights file"
        raise ModelLoadError(
            f"{str(path)!r} is {what}; expected a state dict (.safetensors or torch.save)"
        )
    obj = _torch_load(path, allow_pickle=allow_pickle)
    if isinstance(obj, nn.Module):  # a pickled model (allow_pickle=True): take its weights
        return obj.state_dict()
    return _as_state_dict(obj, path)


def load_state_dict_into(
    module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str
) -> None:
    """Load weights with the checks of ``strict=True`` and a one-line error on mismatch.

    Loads with ``strict=False`` and then compares keys, so that modules can first upgrade old
    checkpoints (BatchNorm adds a missing ``num_batches_tracked``), exactly as ``strict=True``
    does; any mismatch raises. Only call this on a module built for the purpose: after an error
    it may hold some of the weights.
    """
    try:
        result = module.load_state_dict(state_dict, strict=False)
    except RuntimeError as err:  # shape mismatches
        problems = [line.strip() for line in str(err).splitlines()[1:] if line.strip()]
        raise ModelLoadError(f"the weights do not fit {what}: {_shorten(problems)}") from err
    missing, unexpected = sorted(result.missing_keys), sorted(result.unexpected_keys)
    if missing or unexpected:
        parts = [
            f"{label} keys {_shorten(keys)}"
            for label, keys in (("missing", missing), ("unexpected", unexpected))
            if keys
        ]
        raise ModelLoadError(f"the weights do not fit {what}: " + "; ".join(parts))


def _shorten(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN_KEYS])
    more = f", … ({len(keys)} in all)" if len(keys) > _SHOWN_KEYS else ""
    return f"[{shown}{more}]"


def _file_kind(path: Path) -> str:
    """Sniff the format: "torchscript", "checkpoint", "safetensors", "pickle" or "unknown"."""
    if not path.is_file():
        raise ModelLoadError(f"no such model file: {str(path)!r}")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        scripted = any(n.endswith("/constants.pkl") or "/code/" in n for n in names)
        return "torchscript" if scripted else "checkpoint"
    with path.open("rb") as f:
        head = f.read(9)
    if path.suffix == ".safetensors" or (len(head) == 9 and head[8:9] == b"{"):
        return "safetensors"
    # torch.save's legacy format starts with a pickled magic number (protocol 2+ opcode 0x80).
    return "pickle" if head[:1] == b"\x80" else "unknown"


def _torch_load(path: Path, *, allow_pickle: bool) -> Any:
    try:
        with warnings.catch_warnings():  # torch warns about what we refuse anyway
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if not allow_pickle:
            found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
            needs = f" (it needs {found.group(1)})" if found else ""
            raise UnsafeFileError(f"{str(path)!r}: {_PICKLE_HELP}{needs}") from err
    except (RuntimeError, EOFError, KeyError, OSError) as err:
        raise ModelLoadError(f"cannot read checkpoint {str(path)!r}: {err}") from err
    logger.warning("unpickling %s with weights_only=False (allow_pickle=True)", path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (ImportError, AttributeError) as err:
        raise ModelLoadError(
            f"{str(path)!r} refers to a class that cannot be imported ({err}); "
            "make its module importable first"
        ) from err


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def _as_state_dict(obj: Any, path: Path) -> StateDict:
    """Unwrap ``{"state_dict": {...}, "epoch": ...}`` checkpoints; strip ``module.``."""
    # The dicts are returned as loaded: their ``_metadata`` lets modules upgrade old formats.
    if _is_tensor_dict(obj) and obj:
        return _strip_prefix(obj)
    if isinstance(obj, dict):
        for key in _NESTED_KEYS:
            if _is_tensor_dict(obj.get(key)) and obj[key]:
                return _strip_prefix(obj[key])
    raise ModelLoadError(
        f"{str(path)!r} holds an object of type {type(obj).__name__}, not a model or a state dict "
        f"(looked for tensors at the top level and under {', '.join(_NESTED_KEYS)})"
    )


def _strip_prefix(state_dict: StateDict) -> StateDict:
    # nn.DataParallel / DistributedDataParallel save every key as "module.<name>".
    if state_dict and all(k.startswith("module.") for k in state_dict):
        consume_prefix_in_state_dict_if_present(state_dict, "module.")
    return state_dict
