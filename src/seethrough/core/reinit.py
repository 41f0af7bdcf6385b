"""Re-initialise a model's modules from a seed — on a copy, never the user's model.

``init="default"`` calls each module's own ``reset_parameters()`` (PyTorch's
initialisation for that layer type: Kaiming-uniform for conv and linear, ones and zeros
for normalisation); ``init="normal"`` draws every parameter from N(0, ``std``²), the
"stated distribution" alternative. Both are the randomizations of Adebayo et al. (2018),
"Sanity Checks for Saliency Maps", which keep the normalisation layers' running statistics
(the default here); with ``reset_running_stats=True`` they become mean 0, variance 1.

``reset_parameters()`` draws from torch's global generators, so they are seeded for the
call and put back afterwards — the CPU's and every CUDA device's — and the caller's random
state comes back unchanged, on the GPU too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..errors import InvalidOptionError

__all__ = ["INITS", "check_init", "reinitialize", "seeded_global_rng"]

INITS = ("default", "normal")
"""How parameters are redrawn: the modules' own ``reset_parameters()``, or N(0, std²)."""
_RUNNING = ("running_mean", "running_var", "num_batches_tracked")


def check_init(init: str, std: float) -> None:
    """Refuse an unknown ``init`` or a ``std`` that is not a positive number."""
    if init not in INITS:
        raise InvalidOptionError(f"unknown init {init!r} (valid: {', '.join(INITS)})")
    if isinstance(std, bool) or not isinstance(std, (int, float)) or not std > 0:
        raise InvalidOptionError(f"std must be a positive number, got {std!r}")


@contextmanager
def seeded_global_rng(seed: int) -> Iterator[None]:
    """Seed torch's global generators with ``seed`` inside the block; restore them after.

    Forks the CPU generator and every CUDA device's (``torch.random.fork_rng``). While
    CUDA is not initialised its generators hold no state to change, and they are left
    alone: ``torch.manual_seed`` would queue the seed for CUDA's later initialisation and
    so change the caller's first CUDA draws.
    """
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        for device in cuda:
            torch.cuda.default_generators[device].manual_seed(seed)
        yield


def reinitialize(
    model: nn.Module,
    modules: Iterable[str] | None = None,
    *,
    seed: int,
    init: str = "default",
    std: float = 0.01,
    reset_running_stats: bool = False,
) -> None:
    """Re-initialise the named ``modules`` of ``model`` in place (``model`` must be a copy).

    Parameters
    ----------
    model : nn.Module
        A copy of the user's model; its weights change.
    modules : iterable of str, optional
        Dotted names, re-initialised in this order; default every module, in
        ``named_modules()`` order (modules without parameters of their own and without
        ``reset_parameters`` are passed over).
    seed : int
        Seeds the global generators for ``reset_parameters()`` (see
        :func:`seeded_global_rng`) and the generator of ``init="normal"``.
    init : {"default", "normal"}
        The module's own ``reset_parameters()``, or N(0, ``std``²) for every parameter.
    std : float
        Standard deviation of ``init="normal"``.
    reset_running_stats : bool
        Reset normalisation statistics (mean 0, variance 1) instead of keeping them.

    Raises
    ------
    InvalidOptionError
        An unknown ``init``, a non-positive ``std``, or (``init="default"``) a module with
        parameters but no ``reset_parameters()``.
    """
    check_init(init, std)
    named = dict(model.named_modules())
    names = list(named) if modules is None else list(modules)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with seeded_global_rng(seed), torch.no_grad():
        generator = torch.Generator(device=device).manual_seed(seed)
        for name in names:
            module = named[name]
            kept = {
                b: getattr(module, b).clone()
                for b in _RUNNING
                if isinstance(getattr(module, b, None), torch.Tensor)
            }
            if init == "normal":
                for p in module.parameters(recurse=False):
                    p.normal_(0.0, std, generator=generator)
            else:
                _reset(name, module)
            if reset_running_stats and callable(getattr(module, "reset_running_stats", None)):
                module.reset_running_stats()
            elif not reset_running_stats:
                for b, value in kept.items():
                    getattr(module, b).copy_(value)


def _reset(name: str, module: nn.Module) -> None:
    reset = getattr(module, "reset_parameters", None)
    if callable(reset):
        reset()
    elif any(True for _ in module.parameters(recurse=False)):
        raise InvalidOptionError(
            f"module {name!r} ({type(module).__name__}) has parameters but no "
            "reset_parameters(); pass init='normal' to draw them from N(0, std²)"
        )
