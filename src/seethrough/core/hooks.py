"""Hooks that live for one call: one type owns every handle (DESIGN.md rule 2)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from ..errors import LayerError

__all__ = ["HookSet", "LayerCapture"]


class HookSet:
    """Owns hook handles and removes all of them on exit, also when the block raises."""

    def __init__(self) -> None:
        self._handles: list[RemovableHandle] = []

    def add(self, handle: RemovableHandle) -> RemovableHandle:
        self._handles.append(handle)
        return handle

    def __len__(self) -> int:
        return len(self._handles)

    def close(self) -> None:
        while self._handles:
            self._handles.pop().remove()

    def __enter__(self) -> HookSet:
        return self

    def __exit__(self, *exc_info: object) -> None:  # removes the hooks however the block ends
        self.close()


class LayerCapture:
    """Capture a module's output during one forward pass.

    The forward hook keeps the output and hands a clone downstream, so in-place
    operations after the layer (``ReLU(inplace=True)``) cannot overwrite the
    captured values. With ``cut=True`` the captured tensor is a fresh leaf: the
    backward pass stops at the layer and no graph is built below it.

    Gradients are taken with ``torch.autograd.grad(score, capture.activation)``,
    never with module backward hooks, which break on in-place ops (pytorch#61519).
    """

    def __init__(self, module: nn.Module, name: str, *, cut: bool) -> None:
        self.module = module
        self.name = name
        self.cut = cut
        self.activation: Tensor | None = None
        self.calls = 0

    def attach(self, hooks: HookSet) -> LayerCapture:
        if isinstance(self.module, torch.jit.ScriptModule):
            raise LayerError(
                f"layer {self.name!r} is TorchScript, which runs no Python hooks; "
                "load the model as an nn.Module to use layer methods"
            )
        hooks.add(self.module.register_forward_hook(self._hook))
        return self

    def _hook(self, module: nn.Module, inputs: Any, output: Any) -> Tensor:
        if not isinstance(output, Tensor):
            raise LayerError(
                f"layer {self.name!r} returns {type(output).__name__}, not a tensor; "
                "choose a layer whose output is a single tensor"
            )
        self.calls += 1
        if self.calls > 1:
            raise LayerError(
                f"layer {self.name!r} runs more than once per forward pass (a reused module), "
                "so its output is ambiguous; choose a layer that runs once, e.g. its parent block"
            )
        if self.cut:
            leaf = output.detach().requires_grad_(True)
            self.activation = leaf
            return leaf.clone()
        self.activation = output
        return output.clone()

    def reset(self) -> None:
        self.activation = None
        self.calls = 0
