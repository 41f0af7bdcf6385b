"""Re-initialise the modules of a randomization step — on a copy, never the user's model.

``init="default"`` calls each module's own ``reset_parameters()`` (PyTorch's
initialisation for that layer type: Kaiming-uniform for conv and linear, ones and zeros
for normalisation), drawing from a generator seeded per step; ``init="normal"`` draws
every parameter from N(0, ``std``²) — the "stated distribution" alternative. Running
statistics of normalisation layers are kept by default (as Adebayo et al. did); with
``reset_running_stats=True`` they are reset to mean 0, variance 1.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import nn

from ..errors import InvalidOptionError
from .steps import RandomizationStep

__all__ = ["INITS", "check_init", "derived_seed", "randomize_step", "randomize_steps"]

INITS = ("default", "normal")
_RUNNING = ("running_mean", "running_var", "num_batches_tracked")


def derived_seed(seed: int, *key: int) -> int:
    """A seed for the independent random stream ``key`` of a run seeded with ``seed``.

    NumPy's ``SeedSequence`` hashes ``seed`` with ``key`` (e.g. ``(stream, step)``), so
    streams of one run — the maps of each randomized model, a self-check — share no draws
    with each other or with ``seed`` itself, and the same ``(seed, key)`` always gives the
    same seed. The result is below 2**62: methods add the row index to it.
    """
    import numpy as np

    spawn = (int(seed < 0), *(int(k) for k in key))
    word = np.random.SeedSequence(abs(int(seed)), spawn_key=spawn).generate_state(1, np.uint64)[0]
    return int(word >> np.uint64(2))


def check_init(init: str, std: float) -> None:
    if init not in INITS:
        raise InvalidOptionError(f"unknown init {init!r} (valid: {', '.join(INITS)})")
    if not std > 0:
        raise InvalidOptionError(f"std must be positive, got {std!r}")


def randomize_step(
    model: nn.Module,
    step: RandomizationStep,
    *,
    seed: int,
    init: str = "default",
    std: float = 0.01,
    reset_running_stats: bool = False,
) -> None:
    """Re-initialise ``step``'s modules of ``model`` in place (``model`` must be a copy).

    The global RNG is forked, so the caller's random state is not consumed.
    """
    check_init(init, std)
    modules = dict(model.named_modules())
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), torch.no_grad():
        torch.manual_seed(seed)
        generator = torch.Generator(device=device).manual_seed(seed)
        for name in step.modules:
            module = modules[name]
            kept = {
                b: getattr(module, b).clone()
                for b in _RUNNING
                if isinstance(getattr(module, b, None), torch.Tensor)
            }
            if init == "normal":
                for p in module.parameters(recurse=False):
                    p.normal_(0.0, std, generator=generator)
            else:
                reset = getattr(module, "reset_parameters", None)
                if not callable(reset):
                    raise InvalidOptionError(
                        f"module {name!r} ({type(module).__name__}) has parameters but no "
                        "reset_parameters(); pass init='normal' to draw them from N(0, std²)"
                    )
                reset()
            if reset_running_stats and callable(getattr(module, "reset_running_stats", None)):
                module.reset_running_stats()
            elif not reset_running_stats:
                for b, value in kept.items():
                    getattr(module, b).copy_(value)


def randomize_steps(
    work: nn.Module,
    steps: Sequence[RandomizationStep],
    *,
    mode: str,
    seed: int,
    init: str,
    std: float,
    reset_running_stats: bool,
    every_step: bool = True,
) -> Iterator[int]:
    """Randomize ``work`` (a copy) step by step — step ``k`` from seed ``seed + 1 + k``;
    ``mode="independent"`` restores the trained weights before each — yielding each
    step's index after it (only the last one's unless ``every_step``)."""
    trained = {k: v.detach().clone() for k, v in work.state_dict().items()}
    for k, step in enumerate(steps):
        if mode == "independent":
            work.load_state_dict(trained)
        randomize_step(
            work,
            step,
            seed=seed + 1 + k,
            init=init,
            std=std,
            reset_running_stats=reset_running_stats,
        )
        if every_step or k == len(steps) - 1:
            yield k
