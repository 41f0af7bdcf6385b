"""Forward and backward passes over chunks of rows: the engine under every method.

Each function takes a function ``rows(start, stop) -> Tensor`` that builds the
inputs of a chunk on demand (so integration paths and noisy copies never need to
exist all at once), runs the model inside the budget, and hands each chunk's result
to ``consume``. The caller must hold :func:`~seethrough.core.guard.guarded`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from ..errors import LayerError
from .budget import Budget
from .hooks import HookSet, LayerCapture
from .targets import Target, logits_of

__all__ = ["Chunk", "backward_chunks", "forward_logits", "forward_scores"]

RowMaker = Callable[[int, int], Tensor]


@dataclass(frozen=True)
class Chunk:
    """The result of one pass over rows ``start:stop``.

    ``input_grad`` is d(score)/d(input) when requested; ``activation`` and
    ``layer_grad`` are the captured layer's output and d(score)/d(output);
    ``predicted`` is each row's top class (None for callable targets, whose output
    need not be class scores).
    """

    start: int
    stop: int
    inputs: Tensor
    scores: Tensor
    indices: Tensor
    input_grad: Tensor | None = None
    activation: Tensor | None = None
    layer_grad: Tensor | None = None
    predicted: Tensor | None = None


def _gradients(scores: Tensor, wrt: list[Tensor]) -> list[Tensor]:
    """d(sum of scores)/d(each of wrt); zeros where the score does not depend on it."""
    if not scores.requires_grad:
        return [torch.zeros_like(w) for w in wrt]
    grads = torch.autograd.grad(scores.sum(), wrt, allow_unused=True)
    return [torch.zeros_like(w) if g is None else g for g, w in zip(grads, wrt)]


def forward_logits(model: nn.Module, rows: RowMaker, total: int, budget: Budget) -> Tensor:
    """Class scores ``(total, classes)`` under ``inference_mode`` (no autograd record)."""
    parts: list[Tensor] = []

    def step(start: int, stop: int) -> None:
        x = budget.arrange(model, rows(start, stop))
        with torch.inference_mode():
            parts.append(logits_of(model(x)).detach())

    budget.run(total, step)
    return torch.cat(parts)


def forward_scores(
    model: nn.Module, rows: RowMaker, total: int, target: Target, budget: Budget
) -> tuple[Tensor, Tensor]:
    """Target scores ``(total,)`` and class indices ``(total,)`` under ``inference_mode``.

    The chunks' results are concatenated outside it, so callers get ordinary tensors."""
    scores: list[Tensor] = []
    indices: list[Tensor] = []

    def step(start: int, stop: int) -> None:
        x = budget.arrange(model, rows(start, stop))
        with torch.inference_mode():
            s, i = target.select(model(x), slice(start, stop))
        scores.append(s.detach())
        indices.append(i)

    budget.run(total, step)
    return torch.cat(scores), torch.cat(indices)


def backward_chunks(
    model: nn.Module,
    rows: RowMaker,
    total: int,
    target: Target,
    budget: Budget,
    consume: Callable[[Chunk], None],
    *,
    input_grad: bool = True,
    layer: tuple[str, nn.Module] | None = None,
    rule: TorchFunctionMode | None = None,
) -> None:
    """One forward and one backward pass per chunk; ``consume`` gets each :class:`Chunk`.

    With ``input_grad=False`` and a ``layer``, the graph is cut at the layer: nothing
    below it is recorded or differentiated.
    """

    def step(start: int, stop: int) -> None:
        x = budget.arrange(model, rows(start, stop).detach())
        if input_grad:
            x.requires_grad_(True)
        capture = None
        with HookSet() as hooks:
            if layer is not None:
                capture = LayerCapture(layer[1], layer[0], cut=not input_grad).attach(hooks)
            with rule if rule is not None else nullcontext():
                output = model(x)
            scores, indices = target.select(output, slice(start, stop))
            predicted = None if target.fn is not None else logits_of(output).detach().argmax(1)
        activation = None
        if capture is not None:
            if capture.activation is None:
                raise LayerError(f"layer {capture.name!r} did not run in the forward pass")
            activation = capture.activation
        wrt = ([x] if input_grad else []) + ([activation] if activation is not None else [])
        grads = _gradients(scores, wrt)
        consume(
            Chunk(
                start=start,
                stop=stop,
                inputs=x.detach(),
                scores=scores.detach(),
                indices=indices,
                input_grad=grads[0].contiguous() if input_grad else None,
                activation=activation.detach() if activation is not None else None,
                layer_grad=grads[-1] if activation is not None else None,
                predicted=predicted,
            )
        )

    budget.run(total, step)
