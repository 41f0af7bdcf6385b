"""Randomize a model step by step — on a copy, never the user's model — and derive the
seeds of a run's independent random streams.

Each step's modules are re-initialised by :func:`~seethrough.core.reinit.reinitialize`
(``init="default"``: the modules' own ``reset_parameters()``; ``init="normal"``:
N(0, ``std``²); running statistics kept unless ``reset_running_stats``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from torch import nn

from ..core.reinit import check_init, reinitialize
from ..errors import InvalidOptionError
from .steps import RandomizationStep

__all__ = ["MODES", "Randomization", "derived_seed"]

MODES = ("cascading", "independent")
"""``"cascading"`` (from the logits down, accumulating) or ``"independent"`` (one step at a
time)."""


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


@dataclass(frozen=True)
class Randomization:
    """How a copy of a model is randomized step by step; checked when made.

    ``mode`` is one of :data:`MODES`; step ``k`` is re-initialised from seed
    ``seed + 1 + k`` by ``init`` (N(0, ``std``²) for ``"normal"``), running statistics
    kept unless ``reset_running_stats`` (:func:`~seethrough.core.reinit.reinitialize`).
    """

    mode: str
    seed: int
    init: str
    std: float
    reset_running_stats: bool

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InvalidOptionError(f"unknown mode {self.mode!r} (valid: {', '.join(MODES)})")
        check_init(self.init, self.std)

    def randomize(
        self, work: nn.Module, steps: Sequence[RandomizationStep], every_step: bool = True
    ) -> Iterator[int]:
        """Randomize ``work`` (a copy) step by step — ``"independent"`` restores the
        trained weights before each — yielding each step's index after it (only the last
        one's unless ``every_step``)."""
        trained = {k: v.detach().clone() for k, v in work.state_dict().items()}
        for k, step in enumerate(steps):
            if self.mode == "independent":
                work.load_state_dict(trained)
            reinitialize(
                work,
                step.modules,
                seed=self.seed + 1 + k,
                init=self.init,
                std=self.std,
                reset_running_stats=self.reset_running_stats,
            )
            if every_step or k == len(steps) - 1:
                yield k
