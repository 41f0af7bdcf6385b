"""Which modules an anatomy run describes: the network's blocks, each taken at its output.

:func:`block_outputs` turns the blocks of :func:`seethrough.core.steps.randomization_steps`
into the module whose output is the block's output (for EfficientNet-Lite0 the stem, each
MBConv stage, the head and the classifier; for a plain CNN each conv and linear layer);
:func:`output_shapes` gives every module's output shape from one traced pass.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..core.guard import guarded
from ..core.layers import find_layer, trace_layers
from ..core.steps import randomization_steps

__all__ = ["block_outputs", "chosen_modules", "output_shapes"]


def _block_end(names: dict[str, nn.Module], block: str, last: str) -> str:
    """The module whose output is ``block``'s output; ``last`` is its last module."""
    head, _, tail = block.rpartition(".")
    if "-" in tail and f"{head}.{tail.split('-')[1]}" in names:
        return f"{head}.{tail.split('-')[1]}"  # a stage ``_blocks.1-2`` ends at ``_blocks.2``
    if block in names and last.startswith(block + "."):
        return block  # a container: its own output
    return last  # a conv followed by its norm ends at the norm


def block_outputs(model: nn.Module, example: Tensor) -> list[tuple[str, str]]:
    """``(block name, module whose output is the block's output)`` in execution order:
    the blocks of :func:`seethrough.core.steps.randomization_steps` (a stage
    ``_blocks.1-2`` ends at ``_blocks.2``; a conv followed by its norm ends at the norm)."""
    names = dict(model.named_modules())
    return [
        (step.name, _block_end(names, step.name, step.modules[-1]))
        for step in randomization_steps(model, example, "block")
    ]


def chosen_modules(
    model: nn.Module, example: Tensor, modules: Sequence[str] | None
) -> list[tuple[str, str]]:
    """``(title, module)`` pairs: ``modules`` as given (each checked to exist, titled by
    its own name), or the network's blocks (:func:`block_outputs`) when ``None``."""
    if modules is None:
        return block_outputs(model, example)
    for m in modules:
        find_layer(model, m)
    return [(m, m) for m in modules]


def output_shapes(model: nn.Module, example: Tensor) -> dict[str, tuple[int, ...]]:
    """Each module's output shape (without the batch dimension), from one traced pass."""
    with guarded(model, [example.device]):
        return {info.name: info.shape[1:] for info in trace_layers(model, example)}
