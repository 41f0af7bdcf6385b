"""Finding layers by their dotted ``named_modules`` names."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import LayerError, suggest
from .guard import guarded
from .hooks import HookSet

__all__ = ["LayerInfo", "default_cam_layer", "find_layer", "model_layers", "trace_layers"]

log = logging.getLogger(__name__)


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """Return the submodule called ``name``; a typo gets close-match suggestions."""
    modules = dict(model.named_modules())
    if not isinstance(name, str) or name not in modules or name == "":
        names = [n for n in modules if n]
        hint = suggest(str(name), names) or (
            f"; the model has {len(names)} layers, e.g. {', '.join(repr(n) for n in names[-3:])}"
            " (list them with `seethrough layers`)"
        )
        raise LayerError(f"no layer {name!r} in {type(model).__name__}{hint}")
    return modules[name]


@dataclass(frozen=True)
class LayerInfo:
    """One module's output in one forward pass, in the order modules finished."""

    name: str
    shape: tuple[int, ...]
    calls: int
    kind: str = ""
    """The module's class name, e.g. ``"Conv2d"``."""


def trace_layers(model: nn.Module, example: Tensor) -> list[LayerInfo]:
    """Run one forward pass on ``example`` and record every module's output shape.

    Modules are listed in the order their forward finished (execution order, not
    registration order); a module called several times appears once, with its count.
    Non-tensor outputs are skipped.
    """
    order: dict[str, LayerInfo] = {}

    def make_hook(name: str) -> Callable[[nn.Module, object, object], None]:
        def hook(module: nn.Module, inputs: object, output: object) -> None:
            previous = order.pop(name, None)
            calls = previous.calls + 1 if previous else 1
            if isinstance(output, Tensor):
                order[name] = LayerInfo(name, tuple(output.shape), calls, type(module).__name__)

        return hook

    with HookSet() as hooks, torch.no_grad():
        for name, module in model.named_modules():
            if name and not isinstance(module, torch.jit.ScriptModule):
                hooks.add(module.register_forward_hook(make_hook(name)))
        model(example)
    return list(order.values())


def model_layers(model: nn.Module, channels: int, size: int) -> list[LayerInfo]:
    """Every layer of ``model`` in execution order, traced on one blank image.

    The image is ``(1, channels, size, size)`` zeros on the model's device, in its dtype; the
    pass runs under :func:`~seethrough.core.guard.guarded` (the model comes back unchanged).
    See :func:`trace_layers` for the order and the call counts.
    """
    param = next(model.parameters(), None)
    example = torch.zeros(
        1,
        channels,
        size,
        size,
        device=param.device if param is not None else "cpu",
        dtype=param.dtype if param is not None else torch.float32,
    )
    with guarded(model, [example.device]):
        return trace_layers(model, example)


_DEFAULT_LAYERS: weakref.WeakKeyDictionary[nn.Module, dict[tuple[int, ...], str]] = (
    weakref.WeakKeyDictionary()
)


def default_cam_layer(model: nn.Module, example: Tensor) -> str:
    """The last layer, in execution order, whose output is a spatial map ``(N, C, h, w)``.

    Layers that run more than once per forward pass are skipped; among a container and
    its last child (same output), the container — which finishes later — is chosen.
    """
    key = tuple(example.shape[1:])
    cached = _DEFAULT_LAYERS.get(model, {}).get(key)
    if cached is not None:
        return cached
    candidates = [
        info
        for info in trace_layers(model, example[:1])
        if len(info.shape) == 4 and info.shape[2] * info.shape[3] > 1 and info.calls == 1
    ]
    if not candidates:
        raise LayerError(
            f"{type(model).__name__} has no layer with a spatial output (N, C, h, w) "
            "that runs once per forward pass; pass layer= explicitly"
        )
    name = candidates[-1].name
    _DEFAULT_LAYERS.setdefault(model, {})[key] = name
    log.info("using layer %r (output %s) as the CAM layer", name, candidates[-1].shape)
    return name
