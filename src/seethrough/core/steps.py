"""Which parts of a network a randomization test re-initialises, and in which order.

A *step* is a set of parametrised modules re-initialised together. Steps are ordered by
*execution* (the order their first module runs in a forward pass), not by registration
order — Quantus walks ``named_modules()``, which for models whose ``__init__`` defines the
head first randomizes the wrong layer first.

``granularity="block"`` (default) forms steps the way papers describe networks:

* a top-level container (``nn.Sequential`` / ``nn.ModuleList``) is opened one level; its
  composite children that keep their predecessor's output shape join the predecessor's
  step, so repeated blocks form one *stage* (ResNet's ``layer1``…``layer4``,
  EfficientNet-Lite0's seven MBConv stages);
* a parametrised leaf (conv, linear) is a step of its own, and a normalisation layer
  right after it joins it (``_conv_head`` + ``_bn1`` = "head conv").

``granularity="module"`` makes every parametrised module its own step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import InvalidOptionError
from .hooks import HookSet

__all__ = ["GRANULARITIES", "RandomizationStep", "randomization_steps"]

GRANULARITIES = ("block", "module")
"""Randomization steps: ``"block"`` (blocks and stages) or ``"module"`` (single parametrised
modules)."""
_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


@dataclass(frozen=True)
class RandomizationStep:
    """One step: its display name and the modules it re-initialises (dotted names)."""

    name: str
    modules: tuple[str, ...]


def _has_own_state(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False))


def _trace(model: nn.Module, example: Tensor) -> tuple[list[str], dict[str, tuple[int, ...]]]:
    """Names of all modules in the order they *start*, and each one's output shape."""
    started: list[str] = []
    shapes: dict[str, tuple[int, ...]] = {}

    def pre(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: object) -> None:
            if name not in shapes and name not in started:
                started.append(name)

        return hook

    def post(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: object, output: object) -> None:
            if isinstance(output, Tensor) and name not in shapes:
                shapes[name] = tuple(output.shape)

        return hook

    with HookSet() as hooks, torch.no_grad():
        for name, module in model.named_modules():
            if name:
                hooks.add(module.register_forward_pre_hook(pre(name)))
                hooks.add(module.register_forward_hook(post(name)))
        model(example)
    return started, shapes


def _units(model: nn.Module, granularity: str) -> list[tuple[str, list[str]]]:
    """Candidate steps before ordering: (name, member module names)."""
    stateful = [n for n, m in model.named_modules() if n and _has_own_state(m)]
    if granularity == "module":
        return [(n, [n]) for n in stateful]
    prefix, root = _root(model)
    units: list[tuple[str, list[str]]] = []
    for name, child in root.named_children():
        top = prefix + name
        if isinstance(child, (nn.Sequential, nn.ModuleList)):
            units.extend((f"{top}.{n}", [f"{top}.{n}"]) for n, _ in child.named_children())
        else:
            units.append((top, [top]))
    return units


def _root(model: nn.Module) -> tuple[str, nn.Module]:
    """Descend through wrappers: a module with no parameters of its own and a single
    child holding all the parameters (``Wrapper(backbone)``) is looked through."""
    prefix, module = "", model
    while not _has_own_state(module):
        holders = [(n, c) for n, c in module.named_children() if any(True for _ in c.parameters())]
        if len(holders) != 1 or isinstance(holders[0][1], (nn.Sequential, nn.ModuleList)):
            break
        if not any(True for _ in holders[0][1].children()):
            break
        prefix, module = f"{prefix}{holders[0][0]}.", holders[0][1]
    return prefix, module


def _members(model: nn.Module, unit: list[str]) -> list[str]:
    """The parametrised modules inside a unit's modules (the modules themselves included)."""
    modules = dict(model.named_modules())
    found: list[str] = []
    for root in unit:
        for sub, module in modules[root].named_modules():
            name = f"{root}.{sub}" if sub else root
            if _has_own_state(module):
                found.append(name)
    return found


def randomization_steps(
    model: nn.Module, example: Tensor, granularity: str = "block"
) -> list[RandomizationStep]:
    """The steps of ``model`` in execution order (input side first); see the module doc.

    ``example`` is one input batch (one row is enough); it runs one forward pass under
    ``no_grad``. Parametrised modules that never run are left out.
    """
    if granularity not in GRANULARITIES:
        raise InvalidOptionError(
            f"unknown granularity {granularity!r} (valid: {', '.join(GRANULARITIES)})"
        )
    started, shapes = _trace(model, example[:1])
    rank = {name: i for i, name in enumerate(started)}
    modules = dict(model.named_modules())
    steps: list[tuple[str, list[str], str | None]] = []  # name, members, parent container
    for unit_name, unit in sorted(
        _units(model, granularity), key=lambda u: rank.get(u[0], len(rank))
    ):
        if unit_name not in rank:
            continue
        members = [m for m in _members(model, unit) if m in rank]
        if not members:
            continue
        parent = unit_name.rsplit(".", 1)[0] if "." in unit_name else None
        leaf = not any(True for _ in modules[unit_name].children())
        if steps and granularity == "block":
            last_name, last_members, last_parent = steps[-1]
            last_leaf = (
                not any(True for _ in modules[last_members[0]].children())
                and len(last_members) <= 2
            )
            is_norm = isinstance(modules[unit_name], _NORMS)
            same_stage = (
                not leaf
                and parent is not None
                and parent == last_parent
                and shapes.get(unit_name) == shapes.get(last_name.split("-")[0])
                and shapes.get(unit_name) is not None
            )
            if (is_norm and last_leaf) or same_stage:
                merged = last_name if is_norm else _span(last_name, unit_name)
                steps[-1] = (merged, last_members + members, last_parent)
                continue
        steps.append((unit_name, members, parent))
    return [RandomizationStep(_stage_name(model, n), tuple(m)) for n, m, _ in steps]


def _span(first: str, last: str) -> str:
    """``"_blocks.1"`` + ``"_blocks.2"`` → ``"_blocks.1-2"``."""
    head = first.split("-", maxsplit=1)[0]
    return f"{head}-{last.rsplit('.', 1)[1]}"


def _stage_name(model: nn.Module, name: str) -> str:
    """``"layer1.0-1"`` becomes ``"layer1"`` when the span covers the whole container."""
    if "-" not in name:
        return name
    head, end = name.split("-")
    parent, start = head.rsplit(".", 1)
    children = [n for n, _ in dict(model.named_modules())[parent].named_children()]
    if children and children[0] == start and children[-1] == end:
        return parent
    return name
