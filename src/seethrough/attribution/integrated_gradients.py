"""Integrated gradients (Sundararajan, Taly & Yan, 2017, "Axiomatic Attribution")."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.passes import Chunk
from ..core.targets import Target
from ..errors import InvalidOptionError
from .base import Attribution, Method, Run, register
from .explanation import IntegratedGradientsExplanation

__all__ = ["BASELINES", "RULES", "IntegratedGradients", "gaussian_blur", "quadrature"]

RULES = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")
BASELINES = ("zeros", "blur", "uniform")


def quadrature(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Points ``alpha`` in [0, 1] and weights (summing to 1) for integrating over the path.

    The points and weights of Captum's ``approximation_methods``, computed in float64,
    except ``riemann_trapezoid``: Captum weights its ``n`` points ``1/n`` with halved
    ends, which sum to ``1 − 1/n`` (its integral is short by ``1/n``, even for a linear
    model); here the spacing is ``1/(n − 1)``, the trapezoid rule proper.
    """
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return 0.5 * (nodes + 1), 0.5 * weights
    if steps < 2:
        raise InvalidOptionError(f"rule {rule!r} needs steps ≥ 2, got {steps}")
    if rule == "riemann_trapezoid":
        weights = np.full(steps, 1.0 / (steps - 1))
        weights[[0, -1]] /= 2
        return np.linspace(0, 1, steps), weights
    weights = np.full(steps, 1.0 / steps)
    start, stop = {
        "riemann_left": (0.0, 1 - 1 / steps),
        "riemann_right": (1 / steps, 1.0),
        "riemann_middle": (1 / (2 * steps), 1 - 1 / (2 * steps)),
    }[rule]
    return np.linspace(start, stop, steps), weights


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Blur each channel of ``(N, C, H, W)`` with a Gaussian of ``sigma`` pixels
    (separable, reflect padding, kernel radius 3σ clipped to the image)."""
    radius = max(1, min(int(math.ceil(3 * sigma)), min(x.shape[2:]) - 1))
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    rows = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    cols = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    y = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), rows, groups=channels)
    return F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="reflect"), cols, groups=channels)


@register
@dataclass(frozen=True, kw_only=True)
class IntegratedGradients(Method):
    """Integrated gradients: (x − x') times the average gradient on the straight path
    from a baseline x' to x.

    Parameters
    ----------
    steps : int
        Points on the path (default 64).
    rule : str
        Quadrature: ``"gausslegendre"`` (default) or ``"riemann_left"``,
        ``"riemann_right"``, ``"riemann_middle"``, ``"riemann_trapezoid"``.
    baseline : str, float or Tensor
        ``"zeros"``, ``"blur"`` (the input blurred by ``blur_sigma`` pixels),
        ``"uniform"`` (uniform noise between each image's min and max, seeded),
        a constant, or a tensor broadcastable to the inputs.
    blur_sigma : float
        Standard deviation in pixels of the ``"blur"`` baseline (default 10).

    The result reports the completeness error ``sum(attr) − (f(x) − f(x'))`` per row.
    """

    steps: int = 64
    rule: str = "gausslegendre"
    baseline: str | float | Tensor = "zeros"
    blur_sigma: float = 10.0

    name = "integrated_gradients"
    result_type = IntegratedGradientsExplanation

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or isinstance(self.steps, bool) or self.steps < 1:
            raise InvalidOptionError(f"steps must be a positive integer, got {self.steps!r}")
        if self.rule not in RULES:
            raise InvalidOptionError(f"unknown rule {self.rule!r} (valid: {', '.join(RULES)})")
        if isinstance(self.baseline, str) and self.baseline not in BASELINES:
            raise InvalidOptionError(
                f"unknown baseline {self.baseline!r} (valid: {', '.join(BASELINES)}, "
                "a number or a tensor)"
            )
        if not self.blur_sigma > 0:
            raise InvalidOptionError(f"blur_sigma must be positive, got {self.blur_sigma!r}")
        quadrature(self.rule, self.steps)  # validates steps for the rule

    def planned_rows(self, n: int) -> int:
        return n * (self.steps + 2)

    def baselines(self, run: Run, x: Tensor) -> Tensor:
        """The baseline of every row, shaped like ``x``."""
        if isinstance(self.baseline, Tensor):
            base = self.baseline.detach().to(x.device, x.dtype)
            try:
                return torch.broadcast_to(base, x.shape).clone()
            except RuntimeError:
                raise InvalidOptionError(
                    f"baseline of shape {tuple(base.shape)} does not broadcast to the "
                    f"inputs' shape {tuple(x.shape)}"
                ) from None
        if isinstance(self.baseline, (int, float)) and not isinstance(self.baseline, bool):
            return torch.full_like(x, float(self.baseline))
        if self.baseline == "zeros":
            return torch.zeros_like(x)
        if self.baseline == "blur":
            return gaussian_blur(x, self.blur_sigma)
        noise = torch.empty_like(x)
        for i in range(len(x)):
            lo, hi = float(x[i].min()), float(x[i].max())
            noise[i].uniform_(lo, hi, generator=run.generator(i))
        return noise

    def attribute_rows(self, run: Run, x: Tensor, target: Target) -> Attribution:
        target, scores = run.resolve(x, target)
        base = self.baselines(run, x)
        base_scores, _ = run.scores(base, target)
        alphas, weights = (torch.as_tensor(v, dtype=x.dtype, device=x.device)
                           for v in quadrature(self.rule, self.steps))
        steps = self.steps
        assert target.indices is not None or target.fn is not None
        path_target = target if target.indices is None else Target(
            "fixed", indices=target.indices.repeat_interleave(steps)
        )
        total_grad = torch.zeros_like(x)

        def rows(start: int, stop: int) -> Tensor:
            r = torch.arange(start, stop, device=x.device)
            image, step = r // steps, r % steps
            shape = (-1,) + (1,) * (x.dim() - 1)
            return base[image] + alphas[step].view(shape) * (x[image] - base[image])

        def accumulate(chunk: Chunk) -> None:
            r = torch.arange(chunk.start, chunk.stop, device=x.device)
            image, step = r // steps, r % steps
            shape = (-1,) + (1,) * (x.dim() - 1)
            weighted = chunk.input_grad * weights[step].view(shape)  # type: ignore[operator]
            for i in image.unique().tolist():  # per image: deterministic, unlike index_add_ on GPU
                total_grad[i] += weighted[image == i].sum(dim=0)

        run.input_gradients(x, path_target, rows=rows, total=len(x) * steps, consume=accumulate)
        attributions = total_grad * (x - base)
        error = attributions.flatten(1).sum(dim=1) - (scores - base_scores)
        extra = {"baselines": base, "baseline_scores": base_scores, "completeness_error": error}
        return Attribution(attributions, scores, target.indices_or_unknown(len(x), x.device), extra)
