"""SmoothGrad and its variants, wrapping any method (Smilkov et al., 2017)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..core.passes import Chunk
from ..core.rules import RectifierRule, RuleKind
from ..core.targets import Target
from ..errors import (
    InvalidOptionError,
    instance_of,
    integer,
    number,
    one_of,
    option,
    optional,
    text,
)
from .api import make_method
from .gradient import Gradient, GradientXInput
from .guided import Deconvnet, GuidedBackprop
from .method import Attribution, Method, register
from .run import PassContext

__all__ = ["VARIANTS", "NoisyRows", "SampleMoments", "SmoothGrad"]

VARIANTS = ("smoothgrad", "smoothgrad_sq", "vargrad")

# Bases whose value for a row is its input gradient (under a rectifier rule, times the
# input): SmoothGrad runs them as one budgeted gradient pass over the noisy rows.
_GRADIENT_FORMS: dict[type[Method], tuple[RuleKind | None, bool]] = {
    Gradient: (None, False),
    GradientXInput: (None, True),
    GuidedBackprop: ("guided", False),
    Deconvnet: ("deconvnet", False),
}


def image_runs(start: int, stop: int, samples: int) -> Iterator[tuple[int, int, int]]:
    """``(image, first, last)`` for each run of rows ``first:last`` of one image within
    ``start:stop``, rows being image-major (row ``r`` is sample ``r % samples`` of image
    ``r // samples``)."""
    row = start
    while row < stop:
        image = row // samples
        last = min(stop, (image + 1) * samples)
        yield image, row, last
        row = last


class NoisyRows:
    """The noisy copies of a batch as rows ``(start, stop)``, made on demand.

    Row ``r`` is ``x[i] + σᵢ · ε`` for image ``i = r // samples``, where ``ε`` is the
    ``(r % samples)``-th draw of shape ``(C, H, W)`` from ``ctx.generator(i)``: the noise
    does not depend on the chunking. Chunks are asked for in order, so each image's
    generator simply goes on; a chunk asked for again (the budget's retry after
    out-of-memory) re-seeds the generator and skips the draws before it.
    """

    def __init__(self, ctx: PassContext, x: Tensor, sigma: Tensor, samples: int) -> None:
        self.ctx, self.x, self.sigma, self.samples = ctx, x, sigma, samples
        self._streams: dict[int, tuple[torch.Generator, int]] = {}  # image → (gen, drawn)

    def __call__(self, start: int, stop: int) -> Tensor:
        out = self.x.new_empty((stop - start, *self.x.shape[1:]))
        for image, first, last in image_runs(start, stop, self.samples):
            generator = self._stream(image, first - image * self.samples)
            for row in range(first, last):
                out[row - start] = self._draw(generator)
            # x + σ·ε as before, bit for bit: one rounding per multiply and per add
            out[first - start : last - start].mul_(self.sigma[image]).add_(self.x[image])
            drawn = last - image * self.samples
            if drawn == self.samples:
                self._streams.pop(image, None)
            else:
                self._streams[image] = (generator, drawn)
        return out

    def _draw(self, generator: torch.Generator) -> Tensor:
        x = self.x
        return torch.randn(x.shape[1:], generator=generator, device=x.device, dtype=x.dtype)

    def _stream(self, image: int, sample: int) -> torch.Generator:
        """Image ``image``'s generator, positioned before its draw number ``sample``."""
        generator, drawn = self._streams.get(image, (None, 0))
        if generator is None or drawn != sample:
            generator = self.ctx.generator(image)
            for _ in range(sample):
                self._draw(generator)
        return generator


class SampleMoments:
    """Per-image running mean over samples — of the values, or of their squares — and,
    for the variance, the sum of squared deviations, merged part by part (Chan, Golub &
    LeVeque, 1979) in at least float32. Exact to rounding for any split of the samples,
    and free of the cancellation of ``mean(v²) − mean(v)²``.
    """

    def __init__(self, images: int, samples: int, variant: str) -> None:
        self.images, self.samples, self.variant = images, samples, variant
        self.count = [0] * images
        self.mean: Tensor | None = None
        self.m2: Tensor | None = None
        self.dtype: torch.dtype | None = None

    def add_rows(self, start: int, values: Tensor) -> None:
        """Merge the values ``(b, ...)`` of rows ``start:start + b`` (image-major rows).

        All or nothing: everything that allocates runs before the first change, so a
        chunk that fails here (out of memory inside the budget) can be retried.
        """
        if self.mean is None:
            wide = torch.promote_types(values.dtype, torch.float32)
            mean = values.new_zeros((self.images, *values.shape[1:]), dtype=wide)
            m2 = torch.zeros_like(mean) if self.variant == "vargrad" else None
            self.mean, self.m2, self.dtype = mean, m2, values.dtype
        updates = [
            self._merged(image, values[first - start : last - start])
            for image, first, last in image_runs(start, start + len(values), self.samples)
        ]
        for image, count, mean, m2 in updates:
            self.mean[image] = mean
            if self.m2 is not None and m2 is not None:
                self.m2[image] = m2
            self.count[image] = count

    def _merged(self, image: int, part: Tensor) -> tuple[int, int, Tensor, Tensor | None]:
        """Image ``image``'s count, mean and m2 with ``part`` (its next samples) merged in."""
        assert self.mean is not None
        part = part.to(self.mean.dtype)
        if self.variant == "smoothgrad_sq":
            part = part * part
        before, size = self.count[image], len(part)
        total = before + size
        part_mean = part.mean(dim=0)
        delta = part_mean - self.mean[image]
        mean = self.mean[image] + delta * (size / total)
        if self.m2 is None:
            return image, total, mean, None
        spread = ((part - part_mean) ** 2).sum(dim=0)
        return image, total, mean, self.m2[image] + spread + delta * delta * (before * size / total)

    def result(self) -> Tensor:
        """smoothgrad: the mean; smoothgrad_sq: the mean of squares; vargrad: the
        (population) variance — per image, in the values' dtype."""
        assert self.mean is not None and self.dtype is not None
        assert all(c == self.samples for c in self.count), "some samples were not merged"
        value = self.m2 / self.samples if self.m2 is not None else self.mean
        return value.to(self.dtype)


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

    Memory: the ``N × samples`` noisy rows never exist at once. With a budget of ``B``
    rows per pass, a gradient-type base (gradient, gradient × input, guided backprop,
    deconvnet) runs one gradient pass whose chunks of at most ``B`` noisy rows are made
    inside the pass — an out-of-memory error halves ``B`` for the noise too — and are
    merged into per-image accumulators right away: at peak, ``B`` noisy rows, their
    gradients and the model's activations for ``B`` rows, plus ``N`` accumulated rows
    (``2N`` for vargrad). Any other base gets chunks of ``max(1, B // p)`` noisy rows,
    where ``p`` is the base's ``planned_rows(1)``: at peak, that chunk plus the base's
    own peak for it plus the accumulators; ``B`` is read again for every chunk, so a
    back-off inside the base shrinks the chunks that follow.
    """

    base: str | Method = option("gradient", check=text() | instance_of(Method, "a method object"))
    base_options: Mapping[str, Any] = option(
        factory=dict, check=instance_of(Mapping, "a mapping of the base's options")
    )
    samples: int = option(50, check=integer(at_least=1))
    noise: float = option(0.15, check=number(at_least=0))
    stdev: float | None = option(None, check=optional(number(at_least=0)))
    variant: str = option("smoothgrad", check=one_of(*VARIANTS))

    name: ClassVar[str] = "smoothgrad"

    def validate(self) -> None:
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

    def attribute_rows(self, ctx: PassContext, x: Tensor, target: Target) -> Attribution:
        target, scores, predicted = ctx.resolve(x, target)
        noisy = NoisyRows(ctx, x, self.sigmas(x), self.samples)
        moments = SampleMoments(len(x), self.samples, self.variant)
        form = _GRADIENT_FORMS.get(type(self.inner))
        if form is not None:
            self._gradient_pass(ctx, x, target, noisy, moments, *form)
        else:
            self._any_pass(ctx, x, target, noisy, moments)
        indices = target.indices_or_unknown(len(x), x.device)
        return Attribution(moments.result(), scores, indices, predicted)

    def _row_target(self, target: Target, start: int, stop: int) -> Target:
        """The target of noisy rows ``start:stop`` (image-major)."""
        if target.indices is None:
            return target
        image = torch.arange(start, stop, device=target.indices.device) // self.samples
        return target.fixed(target.indices[image])

    def _gradient_pass(
        self,
        ctx: PassContext,
        x: Tensor,
        target: Target,
        noisy: NoisyRows,
        moments: SampleMoments,
        kind: RuleKind | None,
        times_input: bool,
    ) -> None:
        """Gradient-type bases: one budgeted gradient pass over all ``N·samples`` noisy
        rows, each chunk made in the pass (so the budget's out-of-memory back-off
        covers it) and merged into ``moments`` at once."""
        rectifiers = getattr(self.inner, "rectifiers", "auto")
        rule = RectifierRule(kind, rectifiers, ctx.model) if kind is not None else None
        total = len(x) * self.samples

        def merge(chunk: Chunk) -> None:
            assert chunk.input_grad is not None
            if rule is not None and not rule.fired:
                rule.check(self.inner.name)  # raise on the first chunk, not after all
            values = chunk.input_grad * chunk.inputs if times_input else chunk.input_grad
            moments.add_rows(chunk.start, values)

        row_target = self._row_target(target, 0, total)
        ctx.input_gradients(
            x,
            row_target,
            rule=rule,
            rows=noisy,
            total=total,
            consume=merge,
            step="the pass over the noisy copies",
        )

    def _any_pass(
        self,
        ctx: PassContext,
        x: Tensor,
        target: Target,
        noisy: NoisyRows,
        moments: SampleMoments,
    ) -> None:
        """Any other base: its ``attribute_rows`` on chunks of noisy rows, each chunk
        small enough that the base's own passes fit the budget."""
        per_row = max(1, self.inner.planned_rows(1))
        total = len(x) * self.samples
        start = 0
        while start < total:
            # read each time: a back-off inside the base shrinks the next chunks too
            stop = min(total, start + max(1, ctx.budget.size // per_row))
            rows_target = self._row_target(target, start, stop)
            values = self.inner.attribute_rows(ctx, noisy(start, stop), rows_target).values
            moments.add_rows(start, values)
            start = stop
