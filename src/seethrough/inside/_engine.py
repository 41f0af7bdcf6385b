"""Shared machinery of the optimisation methods (:func:`~seethrough.inside.maximize`,
:func:`~seethrough.inside.dream`, :func:`~seethrough.inside.invert`): the model, its guarded
and captured forward pass, per-row generators, the Adam loop, progress, option checks and the
metadata every result records.

:class:`CapturedForward` runs the model with one :class:`~seethrough.core.LayerCapture` per
layer an objective needs, all owned by the caller's :class:`~seethrough.core.HookSet`. When
no objective reads the model's output, the pass stops right after the last needed layer
(a forward hook raises a private exception that the pass catches): optimising a channel of
``_blocks.10`` of EfficientNet-Lite0 never runs the later blocks or the head.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any, ClassVar, TypedDict

import torch
from torch import Tensor, nn

from ..core.guard import guarded, model_device
from ..core.hooks import HookSet, LayerCapture
from ..core.layers import find_layer
from ..core.targets import logits_of
from ..core.versions import library_versions
from ..errors import InvalidInputError, InvalidOptionError, LayerError
from .objectives import Captured, Objective
from .param import Normalization

__all__ = [
    "CapturedForward",
    "Options",
    "RunRecord",
    "adam_descent",
    "check_batch_size",
    "check_count",
    "check_positive",
    "check_seed",
    "freeze",
    "generators",
    "guarded_forward",
    "model_dtype",
    "progress_counter",
    "resolve_device",
    "run_record",
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


def check_batch_size(value: object) -> int | None:
    """``None`` (let the budget choose) or an integer ≥ 1."""
    return None if value is None else check_count(value, "batch_size")


def check_positive(value: object, what: str, *, zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not zero):  # type: ignore[operator]
        bound = "≥ 0" if zero else "> 0"
        raise InvalidOptionError(f"{what} must be a finite number {bound}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def freeze(settings: Mapping[str, Any]) -> Mapping[str, Any]:
    """Settings as a read-only mapping of plain values."""
    return MappingProxyType(dict(settings))


@dataclass(frozen=True)
class Options:
    """Checked options of an optimiser. Its fields, in order, are the settings its result
    records, except the normalisation (recorded last, as ``normalize``: its description) and
    the fields named in ``not_settings``."""

    normalization: Normalization
    not_settings: ClassVar[tuple[str, ...]] = ()

    @property
    def settings(self) -> dict[str, Any]:
        skip = {"normalization", *self.not_settings}
        found = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        return {**found, "normalize": self.normalization.describe()}


class RunRecord(TypedDict):
    """What every optimisation result records about its call (unpacked into its fields)."""

    settings: Mapping[str, Any]
    seed: int
    seconds: float
    versions: Mapping[str, str]


def run_record(settings: Mapping[str, Any], seed: int, started: float) -> RunRecord:
    """The call's frozen settings, its seed, the seconds since ``started``
    (``time.perf_counter()``) and the library versions."""
    return RunRecord(
        settings=freeze(settings),
        seed=seed,
        seconds=time.perf_counter() - started,
        versions=library_versions(),
    )


def progress_counter(
    progress: Callable[[int, int], None] | None, total: int
) -> Callable[[int], None]:
    """``advance(n)``: ``n`` more row-steps are done; reports ``progress(done, total)``
    (``done`` capped at ``total``: a chunk retried after running out of memory counts
    twice)."""
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(min(done, total), total)

    return advance


def adam_descent(
    tensors: Sequence[Tensor],
    loss: Callable[[int], Tensor],
    *,
    steps: int,
    lr: float,
    advance: Callable[[int], None],
    decay: bool = False,
    project: Callable[[], object] | None = None,
) -> Tensor:
    """Minimise the per-row ``loss(step)`` ``(R,)`` over ``tensors`` with Adam (Kingma & Ba
    2015); the rows' losses are summed, so each row gets its own gradient.

    ``decay`` lowers the learning rate linearly to 0 over the steps; ``project()`` runs
    without gradients after each update (e.g. clamping pixels). Returns the trace
    ``(steps, R)``: each row's loss before each update.
    """
    optimizer = torch.optim.Adam(tensors, lr=lr)
    schedule = (
        torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / steps)
        if decay
        else None
    )
    trace = []
    for step in range(steps):
        value = loss(step)
        trace.append(value.detach())
        grads = torch.autograd.grad(value.sum(), tensors)
        for tensor, grad in zip(tensors, grads):
            tensor.grad = grad
        optimizer.step()
        if schedule is not None:
            schedule.step()
        if project is not None:
            with torch.no_grad():
                project()
        advance(len(value))
    return torch.stack(trace)


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


@contextmanager
def guarded_forward(
    module: nn.Module,
    device: torch.device,
    layers: Sequence[str],
    *,
    needs_output: bool,
    example: Callable[[], Tensor],
    objectives: Sequence[Objective] = (),
) -> Iterator[CapturedForward]:
    """The model's :class:`CapturedForward` pass for one block, inside
    :func:`~seethrough.core.guarded` with one :class:`~seethrough.core.HookSet` (closed when
    the block ends or raises). ``example()`` (made inside the guard) is the probe input;
    every term of ``objectives`` is checked against the layers' shapes."""
    with guarded(module, [device]), HookSet() as hooks:
        forward = CapturedForward(
            module, layers, hooks, needs_output=needs_output, example=example()
        )
        for objective in objectives:
            for _, term in objective.terms:
                term.check(forward.shapes)
        yield forward
