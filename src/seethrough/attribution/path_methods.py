"""Path methods beyond the straight line from one baseline: Expected Gradients (a
distribution of baselines) and Guided Integrated Gradients (an adaptive path).

Both report, like integrated gradients, the completeness error of each row and the
number of path points (see :class:`~seethrough.attribution.explanation.PathExplanation`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..core.baselines import BaselineLike, make_baseline
from ..core.passes import Chunk, forward_logits, forward_scores
from ..core.targets import Target
from ..errors import InvalidOptionError, instance_of, integer, number, one_of, option
from .explanation import PathDetails, PathExplanation
from .integrated_gradients import BASELINE, BASELINES, completeness, report_dtype
from .method import Attribution, Method, register
from .run import PassContext

__all__ = [
    "REFERENCES",
    "ExpectedGradients",
    "GuidedIntegratedGradients",
    "Draws",
    "draw_samples",
    "guided_steps",
]

REFERENCES = ("uniform",)
_SEED_RANGE = 2**62


@dataclass(frozen=True)
class Draws:
    """One row's samples: the reference drawn for each (``index``, or the seed of a
    uniform-noise reference, ``seed``) and the point ``alpha`` on its path, in float64."""

    index: Tensor
    alpha: Tensor
    seed: Tensor | None


def draw_samples(generator: torch.Generator, samples: int, references: int | None) -> Draws:
    """Row draws, in this order from the row's generator: ``samples`` reference indices
    uniform over ``references`` (with replacement; or, for uniform-noise references,
    one seed each), then ``samples`` values of α uniform in [0, 1)."""
    device = generator.device
    if references is None:
        seed = torch.randint(_SEED_RANGE, (samples,), generator=generator, device=device)
        index = torch.zeros(samples, dtype=torch.long, device=device)
    else:
        seed = None
        index = torch.randint(references, (samples,), generator=generator, device=device)
    alpha = torch.rand(samples, generator=generator, dtype=torch.float64, device=device)
    return Draws(index, alpha, seed)


@register
@dataclass(frozen=True, kw_only=True)
class ExpectedGradients(Method):
    """Expected gradients: integrated gradients averaged over baselines drawn from a
    reference distribution, by Monte Carlo.

    Erion, Janizek, Sturmfels, Lundberg & Lee (2021), "Improving performance of deep
    learning models with axiomatic attribution priors and expected gradients":
    ``φ = mean_k (x − x'_k) ⊙ ∇f(x'_k + α_k (x − x'_k))``, with ``x'_k`` drawn uniformly
    from the references and ``α_k ~ U[0, 1)``.

    Parameters
    ----------
    samples : int
        Monte Carlo samples per image (default 200, as SHAP's ``GradientExplainer``,
        which implements expected gradients). Captum's ``GradientShap`` with
        ``stdevs=0`` is the same estimator.
    references : Tensor or "uniform"
        ``(M, C, H, W)`` reference images, preprocessed like the inputs — the paper
        draws them from the training data; pass some. Default ``"uniform"``: each sample
        draws a fresh noise image, every pixel uniform between the image's min and max
        (deviation: without training data the paper's distribution is unavailable; a
        uniform-noise reference is one of the baselines compared by Sturmfels et al.,
        2020). Never the batch itself.

    Row ``i`` draws everything from ``seed + i`` (:func:`draw_samples`). Completeness
    holds in expectation: ``sum(φ) → f(x) − E f(x')``. The result's ``baseline_scores``
    is the mean of ``f(x'_k)`` over the drawn references and ``baselines`` their mean
    image, so ``completeness_error = sum(φ) − (f(x) − mean_k f(x'_k))`` is the Monte
    Carlo error of the α draws alone; ``path_points`` is ``samples``.
    """

    samples: int = option(200, check=integer(at_least=1))
    references: str | Tensor = option(
        "uniform",
        check=one_of(*REFERENCES)
        | instance_of(Tensor, "a tensor (M, C, H, W) of reference images, as in the paper"),
    )

    name = "expected_gradients"
    result_type = PathExplanation

    def validate(self) -> None:
        if isinstance(self.references, Tensor) and (
            self.references.dim() < 2 or len(self.references) == 0
        ):
            raise InvalidOptionError(
                "references must be a batch (M, C, H, W) of at least one reference "
                f"image, got shape {tuple(self.references.shape)}"
            )

    def planned_rows(self, n: int) -> int:
        return n * (2 * self.samples + 1)

    def _references(self, x: Tensor) -> Tensor | None:
        if not isinstance(self.references, Tensor):
            return None
        refs = self.references.detach().to(x.device, x.dtype)
        if refs.shape[1:] != x.shape[1:]:
            raise InvalidOptionError(
                f"references have images of shape {tuple(refs.shape[1:])}, the inputs "
                f"{tuple(x.shape[1:])}; pass references shaped (M, "
                f"{', '.join(map(str, x.shape[1:]))})"
            )
        return refs

    def attribute_rows(self, ctx: PassContext, x: Tensor, target: Target) -> Attribution:
        target, scores, predicted = ctx.resolve(x, target)
        refs = self._references(x)
        samples = self.samples
        draws = [
            draw_samples(ctx.generator(i), samples, None if refs is None else len(refs))
            for i in range(len(x))
        ]
        baselines = _Baselines(x, refs, draws, samples)
        path_target = (
            target
            if target.indices is None
            else target.fixed(target.indices.repeat_interleave(samples))
        )
        work = report_dtype(x.dtype)
        alpha = torch.stack([d.alpha for d in draws]).flatten().to(x.device)

        def rows(start: int, stop: int) -> Tensor:
            b = baselines(start, stop).to(work)
            image = torch.arange(start, stop, device=x.device) // samples
            shape = (-1,) + (1,) * (x.dim() - 1)
            a = alpha[start:stop].to(work).view(shape)
            return (b + a * (x[image].to(work) - b)).to(x.dtype)

        total = torch.zeros_like(x, dtype=torch.float64)
        mean_baseline = torch.zeros_like(total)

        def accumulate(chunk: Chunk) -> None:
            assert chunk.input_grad is not None
            b = baselines(chunk.start, chunk.stop).double()
            # rows are image-major: a chunk covers a run of images
            for image in range(chunk.start // samples, (chunk.stop - 1) // samples + 1):
                first = max(chunk.start, image * samples)
                last = min(chunk.stop, (image + 1) * samples)
                part = slice(first - chunk.start, last - chunk.start)
                delta = x[image].double() - b[part]
                total[image] += (delta * chunk.input_grad[part].double()).sum(0)
                mean_baseline[image] += b[part].sum(0)

        ctx.input_gradients(
            x, path_target, rows=rows, total=len(x) * samples, consume=accumulate, step="the paths"
        )
        base_scores = self._baseline_scores(ctx, x, refs, draws, baselines, path_target)
        gap = scores.double() - base_scores
        attributions, error = completeness(total / samples, gap, x.dtype)
        details = PathDetails(
            baselines=(mean_baseline / samples).to(x.dtype),
            baseline_scores=base_scores.to(report_dtype(x.dtype)),
            completeness_error=error,
            path_points=torch.full((len(x),), samples, dtype=torch.long, device=x.device),
        )
        indices = target.indices_or_unknown(len(x), x.device)
        return Attribution(attributions, scores, indices, predicted, details)

    def _baseline_scores(
        self,
        ctx: PassContext,
        x: Tensor,
        refs: Tensor | None,
        draws: list[Draws],
        baselines: _Baselines,
        path_target: Target,
    ) -> Tensor:
        """``mean_k f(x'_k)`` per row in float64: the references' logits once when they
        are a tensor and the target a class, else one forward pass per drawn reference."""
        samples = self.samples
        if refs is not None and path_target.indices is not None:
            logits = forward_logits(ctx.model, lambda a, b: refs[a:b], len(refs), ctx.budget)
            index = torch.stack([d.index for d in draws]).to(x.device)
            classes = path_target.indices.view(len(x), samples).to(x.device)
            return logits.double()[index, classes].mean(dim=1)
        values, _ = forward_scores(ctx.model, baselines, len(x) * samples, path_target, ctx.budget)
        return values.double().view(len(x), samples).mean(dim=1)


class _Baselines:
    """The drawn reference of every row ``(image, sample)``, image-major, built on
    demand and the same for any chunking (uniform noise comes from its own seed)."""

    def __init__(self, x: Tensor, refs: Tensor | None, draws: list[Draws], samples: int) -> None:
        self.x, self.refs, self.samples = x, refs, samples
        self.index = torch.stack([d.index for d in draws]).flatten().to(x.device)
        self.seeds = [int(s) for d in draws if d.seed is not None for s in d.seed.tolist()]
        flat = x.flatten(1)
        self.low, self.high = flat.min(1).values.tolist(), flat.max(1).values.tolist()
        self._last: tuple[int, int, Tensor] | None = None

    def __call__(self, start: int, stop: int) -> Tensor:
        if self._last is not None and self._last[:2] == (start, stop):
            return self._last[2]
        if self.refs is not None:
            out = self.refs[self.index[start:stop]]
        else:
            out = self.x.new_empty((stop - start, *self.x.shape[1:]))
            for row in range(start, stop):
                image = row // self.samples
                generator = torch.Generator(device=self.x.device)
                generator.manual_seed(self.seeds[row])
                out[row - start].uniform_(self.low[image], self.high[image], generator=generator)
        self._last = (start, stop, out)
        return out


@register
@dataclass(frozen=True, kw_only=True)
class GuidedIntegratedGradients(Method):
    """Guided integrated gradients: a path that first moves the features with the
    smallest absolute gradient, staying near the straight line.

    Kapishnikov, Venugopalan, Avci, Wedin, Terry & Bolukbasi (2021), "Guided Integrated
    Gradients: an Adaptive Path Method for Removing Noise": each step moves the features
    with the smallest absolute gradient, within ``max_dist`` of the straight path, until
    the L1 distance to ``x`` has shrunk by ``1/steps``; the attribution adds up
    ``Δx ⊙ ∇f`` along the way.

    The algorithm of the authors' reference implementation (PAIR-code/saliency,
    ``saliency/core/guided_ig.py``, ``guided_ig_impl``), in float64, batched: every step
    computes the gradients of all rows in one pass. One guard is ours: a row whose
    inner loop overshoots its target through rounding (the reference asserts) or has
    no feature left to move stops that step instead of looping.

    Parameters
    ----------
    steps : int
        Steps, one gradient each (default 200, the reference's ``x_steps``).
    fraction : float
        Share of the features, those with the smallest absolute gradient, moved in each
        inner iteration (default 0.25).
    max_dist : float
        How far (as α, relative L1) a feature may lead or lag the straight path
        (default 0.02). ``0`` is integrated gradients with the left Riemann rule.
    baseline, blur_sigma
        As for :class:`~seethrough.attribution.IntegratedGradients`.

    The result reports the completeness error ``sum(attr) − (f(x) − f(x'))`` per row;
    the path ends at ``x``, so it is the discretisation error of the steps, and
    ``path_points`` is ``steps``. On a smooth model it falls as 1/steps (the test CNN
    with softplus: 8.4% of the gap at 16 steps, 0.57% at 256). On a ReLU network it
    need not: each step's gradient is taken at its start, and the guided path keeps
    crossing the same kinks, so most steps add an error (on the test CNN, 2,709 of
    4,096 steps did; three images stayed at 4.7%, 139% and 3.8% of their small score
    gaps from 256 to 4,096 steps, where ``max_dist=0`` — IG — reaches 0.1%). Read the
    reported error before trusting a sum.
    """

    steps: int = option(200, check=integer(at_least=1))
    fraction: float = option(0.25, check=number(above=0, at_most=1))
    max_dist: float = option(0.02, check=number(at_least=0, at_most=1))
    baseline: BaselineLike = option("zeros", check=BASELINE)
    blur_sigma: float = option(10.0, check=number(above=0))

    name = "guided_integrated_gradients"
    result_type = PathExplanation

    def planned_rows(self, n: int) -> int:
        return n * (self.steps + 2)

    def attribute_rows(self, ctx: PassContext, x: Tensor, target: Target) -> Attribution:
        target, scores, predicted = ctx.resolve(x, target)
        base = make_baseline(
            self.baseline, x, kinds=BASELINES, blur_sigma=self.blur_sigma, generator=ctx.generator
        )
        base_scores, _ = ctx.scores(base, target, step="the baselines")

        def gradients(points: Tensor) -> Tensor:
            def rows(start: int, stop: int) -> Tensor:
                return points[start:stop].view(-1, *x.shape[1:]).to(x.dtype)

            found = ctx.input_gradients(x, target, rows=rows, total=len(x), step="the path")
            return found.values.double().flatten(1)

        attr = guided_steps(
            gradients,
            x.double().flatten(1),
            base.double().flatten(1),
            self.steps,
            self.fraction,
            self.max_dist,
        )
        gap = scores.double() - base_scores.double()
        attributions, error = completeness(attr.view(x.shape), gap, x.dtype)
        details = PathDetails(
            baselines=base,
            baseline_scores=base_scores,
            completeness_error=error,
            path_points=torch.full((len(x),), self.steps, dtype=torch.long, device=x.device),
        )
        indices = target.indices_or_unknown(len(x), x.device)
        return Attribution(attributions, scores, indices, predicted, details)


def guided_steps(
    gradients: Callable[[Tensor], Tensor],
    x: Tensor,
    base: Tensor,
    steps: int,
    fraction: float,
    max_dist: float,
) -> Tensor:
    """Guided IG attributions ``(N, D)`` in float64 for rows ``x`` and baselines
    ``base`` ``(N, D)``; ``gradients(points)`` returns ``∇f`` at ``(N, D)`` points.

    Follows ``guided_ig_impl`` of PAIR-code/saliency step for step, for all rows at
    once (each row's inner loop runs until it is done; finished rows are masked).
    """
    diff = x - base
    l1_total = diff.abs().sum(1)
    point = base.clone()
    attr = torch.zeros_like(x)
    moving = l1_total != 0  # a row equal to its baseline has zero attribution
    rank = math.floor((x.shape[1] - 1) * fraction)  # numpy's quantile, method="lower"
    for step in range(steps):
        grad_actual = gradients(point)
        grad = grad_actual.clone()
        alpha = (step + 1.0) / steps
        alpha_min, alpha_max = max(alpha - max_dist, 0.0), min(alpha + max_dist, 1.0)
        x_min, x_max = base + diff * alpha_min, base + diff * alpha_max
        l1_target = l1_total * (1 - (step + 1) / steps)
        running = moving.clone()
        while bool(running.any()):
            old = point.clone()
            lead = torch.where(diff != 0, (point - base) / diff, alpha_max)
            point = torch.where((lead < alpha_min) & running[:, None], x_min, point)
            l1_current = (point - x).abs().sum(1)
            close = _isclose(l1_target, l1_current)
            finished = running & close
            attr += torch.where(finished[:, None], (point - old) * grad_actual, 0.0)
            running &= ~close
            grad[(point == x_max) & running[:, None]] = math.inf
            threshold = grad.abs().kthvalue(rank + 1, dim=1).values
            chosen = (grad.abs() <= threshold[:, None]) & (grad != math.inf) & running[:, None]
            l1_chosen = ((point - x_max).abs() * chosen).sum(1)
            gamma = torch.where(
                l1_chosen > 0,
                (l1_current - l1_target) / l1_chosen,
                torch.full_like(l1_current, math.inf),
            )
            active = running.clone()  # rows whose lagging features may have moved
            running &= (gamma > 0) & (chosen.sum(1) > 0)  # our guard: stop, don't loop
            chosen &= running[:, None]
            whole = chosen & (gamma > 1)[:, None]
            partly = chosen & (gamma <= 1)[:, None]
            point = torch.where(whole, x_max, point)
            point = torch.where(partly, point + (x_max - point) * gamma[:, None], point)
            attr += torch.where(active[:, None], (point - old) * grad_actual, 0.0)
            running &= gamma > 1
    return attr


def _isclose(a: Tensor, b: Tensor, tol: float = 1e-9) -> Tensor:
    """``math.isclose(a, b, rel_tol=tol, abs_tol=tol)`` elementwise."""
    return (a - b).abs() <= torch.maximum(
        tol * torch.maximum(a.abs(), b.abs()), torch.full_like(a, tol)
    )
