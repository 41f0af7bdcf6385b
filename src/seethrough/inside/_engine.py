"""Shared machinery of the optimisation methods: the model, its captured forward pass,
per-row generators and option checks.

:class:`CapturedForward` runs the model with one :class:`~seethrough.core.LayerCapture` per
layer an objective needs, all owned by the caller's :class:`~seethrough.core.HookSet`. When
no objective reads the model's output, the pass stops right after the last needed layer
(a forward hook raises a private exception that the pass catches): optimising a channel of
``_blocks.10`` of EfficientNet-Lite0 never runs the later blocks or the head.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor, nn

from ..core.guard import model_device
from ..core.hooks import HookSet, LayerCapture
from ..core.layers import find_layer
from ..core.targets import logits_of
from ..errors import InvalidInputError, InvalidOptionError, LayerError
from .objectives import Captured

__all__ = [
    "CapturedForward",
    "check_count",
    "check_positive",
    "check_seed",
    "freeze",
    "generators",
    "model_dtype",
    "resolve_device",
    "unwrap",
]


def unwrap(model: Any) -> tuple[nn.Module, Any]:
    """``(module, preprocess)`` of an ``nn.Module`` or a seethrough ``LoadedModel``."""
    if isinstance(model, nn.Module):
        return model, None
    module = getattr(model, "module", None)
    if isinstance(module, nn.Module):
        return module, getattr(model, "preprocess", None)
    raise InvalidInputError(
        f"model must be a torch.nn.Module or a seethrough LoadedModel, got {type(model).__name__}"
    )


def model_dtype(module: nn.Module) -> torch.dtype:
    """The dtype of the model's first floating-point parameter or buffer (float32 if none)."""
    for tensor in [*module.parameters(), *module.buffers()]:
        if tensor.dtype.is_floating_point:
            return tensor.dtype
    return torch.float32


def resolve_device(module: nn.Module, device: str | torch.device | None) -> torch.device:
    """The model's device; an explicit ``device`` must match it (the model is never moved)."""
    found = model_device(module) or torch.device("cpu")
    if device is None:
        return found
    wanted = torch.device(device)
    same = wanted.type == found.type and (wanted.index is None or wanted.index == found.index)
    if not same:
        raise InvalidOptionError(
            f"device {wanted} differs from the model's device {found}; move the model with "
            f"model.to('{wanted}') first (seethrough never moves it)"
        )
    return found


def generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per row, seeded with that row's seed."""
    return [torch.Generator().manual_seed(int(s)) for s in seeds]


def check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidOptionError(f"seed must be an integer, got {seed!r}")
    return seed


def check_count(value: object, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidOptionError(f"{what} must be an integer ≥ {minimum}, got {value!r}")
    return value


def check_positive(value: object, what: str, *, zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not zero):  # type: ignore[operator]
        bound = "≥ 0" if zero else "> 0"
        raise InvalidOptionError(f"{what} must be a finite number {bound}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def freeze(settings: Mapping[str, Any]) -> Mapping[str, Any]:
    """Settings as a read-only mapping of plain values."""
    return MappingProxyType(dict(settings))


class _Stop(Exception):  # noqa: N818 - control flow, not an error
    """Raised by the stop hook after the last needed layer; caught by the pass."""


class CapturedForward:
    """The model's forward pass with the layers a set of objectives needs captured.

    Parameters
    ----------
    module : nn.Module
        The (guarded) model.
    layers : iterable of str
        Layers to capture (checked with :func:`~seethrough.core.find_layer`).
    hooks : HookSet
        Owns the hook handles (the caller closes it).
    needs_output : bool
        Whether the model's class scores are needed; if not, the pass stops after the last
        captured layer.
    example : Tensor
        One model input ``(1, C, H, W)`` of the size the passes will use: a probe pass on it
        learns the layers' shapes and execution order.
    """

    def __init__(
        self,
        module: nn.Module,
        layers: Sequence[str],
        hooks: HookSet,
        *,
        needs_output: bool,
        example: Tensor,
    ) -> None:
        self.module = module
        self.captures = {
            name: LayerCapture(find_layer(module, name), name, cut=False) for name in layers
        }
        for capture in self.captures.values():
            capture.attach(hooks)
        self.needs_output = needs_output or not self.captures
        self.shapes, order = self._probe(example)
        if not self.needs_output:
            last = self.captures[order[-1]].module
            hooks.add(last.register_forward_hook(_raise_stop))

    def _probe(self, example: Tensor) -> tuple[dict[str, tuple[int, ...]], list[str]]:
        """One no-grad pass on ``example``: the layers' shapes and execution order. When the
        output is not needed it stops once every captured layer has run, so layers of a
        fixed-size head do not limit the image size."""
        order: list[str] = []
        for capture in self.captures.values():
            capture.reset()
        with HookSet() as probe:
            for name, capture in self.captures.items():
                probe.add(capture.module.register_forward_hook(self._recorder(order, name)))
            try:
                with torch.no_grad():
                    output = self.module(example)
            except _Stop:
                output = None
            except RuntimeError as error:  # what torch raises for mismatched shapes
                raise InvalidOptionError(
                    f"the model failed on an input of shape {tuple(example.shape)} ({error}); "
                    "if the size is the problem, choose an image size the model accepts "
                    "(size=, input_size=) or fewer octaves"
                ) from error
        shapes: dict[str, tuple[int, ...]] = {}
        if self.needs_output:
            shapes[""] = tuple(logits_of(output).shape[1:])
        for name, capture in self.captures.items():
            if capture.activation is None:
                raise LayerError(
                    f"layer {name!r} did not run in the model's forward pass; choose a layer "
                    "that does"
                )
            shapes[name] = tuple(capture.activation.shape[1:])
            capture.reset()
        return shapes, order

    def _recorder(self, order: list[str], name: str) -> Any:
        def record(module: nn.Module, inputs: object, output: object) -> None:
            if name not in order:
                order.append(name)
            if not self.needs_output and len(order) == len(self.captures):
                raise _Stop

        return record

    def __call__(self, inputs: Tensor, image: Tensor) -> Captured:
        """Run the model on ``inputs``; ``image`` is what the regularisers read."""
        for capture in self.captures.values():
            capture.reset()
        output: Tensor | None = None
        try:
            output = logits_of(self.module(inputs))
        except _Stop:
            output = None
        layers = {}
        for name, capture in self.captures.items():
            assert capture.activation is not None
            layers[name] = capture.activation
        return Captured(layers, output if self.needs_output else None, image)


def _raise_stop(module: nn.Module, inputs: object, output: object) -> None:
    raise _Stop
