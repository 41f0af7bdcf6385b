"""SmoothGrad and its variants, wrapping any method (Smilkov et al., 2017)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..core.targets import Target
from ..errors import InvalidOptionError
from .base import Attribution, Method, Run, make_method, register

__all__ = ["VARIANTS", "SmoothGrad"]

VARIANTS = ("smoothgrad", "smoothgrad_sq", "vargrad")


@register
@dataclass(frozen=True, kw_only=True)
class SmoothGrad(Method):
    """Average a method's attributions over noisy copies of the input.

    ``smoothgrad``: the mean (Smilkov et al., 2017); ``smoothgrad_sq``: the mean of
    squares; ``vargrad``: the variance (Adebayo et al., 2018). Same names as Captum's
    ``NoiseTunnel``.

    Parameters
    ----------
    base : str or Method
        The method to smooth (default ``"gradient"``).
    base_options : Mapping
        Options for ``base`` when it is given by name.
    samples : int
        Noisy copies per image (default 50, as in the paper).
    noise : float
        Noise standard deviation relative to each image's value range,
        σ = noise × (max − min) (default 0.15; the paper recommends 0.10–0.20).
    stdev : float or None
        An absolute σ instead (overrides ``noise``).
    variant : str
        ``"smoothgrad"``, ``"smoothgrad_sq"`` or ``"vargrad"``.

    Row ``i`` draws its noise, sample after sample, from a generator seeded with
    ``seed + i``, so chunking never changes the result.
    """

    base: str | Method = "gradient"
    base_options: Mapping[str, Any] = field(default_factory=dict)
    samples: int = 50
    noise: float = 0.15
    stdev: float | None = None
    variant: str = "smoothgrad"

    name: ClassVar[str] = "smoothgrad"

    def __post_init__(self) -> None:
        if not isinstance(self.samples, int) or isinstance(self.samples, bool) or self.samples < 1:
            raise InvalidOptionError(f"samples must be a positive integer, got {self.samples!r}")
        if self.variant not in VARIANTS:
            raise InvalidOptionError(
                f"unknown variant {self.variant!r} (valid: {', '.join(VARIANTS)})"
            )
        if not self.noise >= 0 or (self.stdev is not None and not self.stdev >= 0):
            raise InvalidOptionError("noise and stdev must be non-negative numbers")
        if isinstance(self.base, str) and self.base == self.name:
            raise InvalidOptionError("smoothgrad cannot wrap itself")
        inner = make_method(self.base, **dict(self.base_options))
        object.__setattr__(self, "base", inner)

    @property
    def inner(self) -> Method:
        assert isinstance(self.base, Method)
        return self.base

    @property
    def resolution(self) -> str:  # type: ignore[override]
        return self.inner.resolution

    @property
    def display(self) -> str:  # type: ignore[override]
        return self.inner.display if self.variant == "smoothgrad" else "magnitude"

    @property
    def settings(self) -> Mapping[str, Any]:
        own = dict(super().settings)
        own["base"] = self.inner.name
        own["base_options"] = dict(self.inner.settings)
        return own

    def planned_rows(self, n: int) -> int:
        return n + self.samples * self.inner.planned_rows(n)

    def sigmas(self, x: Tensor) -> Tensor:
        """σ of every row: ``stdev``, or ``noise`` × the row's value range."""
        if self.stdev is not None:
            return torch.full((len(x),), float(self.stdev), dtype=x.dtype, device=x.device)
        flat = x.flatten(1)
        return self.noise * (flat.max(dim=1).values - flat.min(dim=1).values)

    def attribute_rows(self, run: Run, x: Tensor, target: Target) -> Attribution:
        target, scores = run.resolve(x, target)
        n = len(x)
        sigma = self.sigmas(x)
        generators = [run.generator(i) for i in range(n)]
        per_group = max(1, run.budget.size // max(1, self.inner.planned_rows(1)))
        total = squares = None
        for first in range(0, self.samples, per_group):
            count = min(per_group, self.samples - first)
            noisy = torch.stack([
                x[i] + sigma[i] * torch.randn(x.shape[1:], generator=generators[i],
                                              device=x.device, dtype=x.dtype)
                for i in range(n) for _ in range(count)
            ])
            rows_target = target if target.indices is None else Target(
                "fixed", indices=target.indices.repeat_interleave(count)
            )
            values = self.inner.attribute_rows(run, noisy, rows_target).values
            values = values.view(n, count, *values.shape[1:])
            part, part_sq = values.sum(dim=1), (values * values).sum(dim=1)
            total = part if total is None else total + part
            squares = part_sq if squares is None else squares + part_sq
        assert total is not None and squares is not None
        mean, mean_sq = total / self.samples, squares / self.samples
        values = {"smoothgrad": mean, "smoothgrad_sq": mean_sq, "vargrad": mean_sq - mean * mean}
        return Attribution(values[self.variant], scores, target.indices_or_unknown(n, x.device))
