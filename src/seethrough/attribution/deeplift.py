"""DeepLIFT (rescale rule) and DeepSHAP: attributions that add up to the score difference
from a reference.

The rule and what it reaches: :mod:`seethrough.core.deeplift`.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch
from torch import Tensor

from ..core.baselines import BASELINE_KINDS, BaselineLike, make_baseline
from ..core.deeplift import DEEPLIFT_EPS, DeepLiftRule, PairChunk, rescale_chunks
from ..core.targets import Target
from ..errors import InvalidOptionError, instance_of, number, one_of, option, optional
from .explanation import Details, Explanation
from .integrated_gradients import completeness, report_dtype
from .method import Attribution, Method, register
from .run import PassContext

__all__ = [
    "SUMMATION_TOLERANCE",
    "DeepLift",
    "DeepLiftDetails",
    "DeepLiftExplanation",
    "DeepShap",
]

SUMMATION_TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-4}
"""A warning names the rows whose ``|summation_error|`` exceeds this share of
``|f(x)| + |f(x')|`` (other dtypes: 5e-2). Rounding stays far below it (float32:
≤ 4e-7 on EfficientNet-Lite0 and the Fashion-MNIST CNN; float64: ~1e-15); a nonlinearity
the rule did not see does not (``docs/deeplift.md``)."""


@dataclass(frozen=True, eq=False, kw_only=True)
class DeepLiftDetails(Details):
    """What DeepLIFT and DeepSHAP report: see :class:`DeepLiftExplanation`."""

    references: Tensor
    reference_scores: Tensor
    summation_error: Tensor
    rewritten: Mapping[str, int]


@dataclass(frozen=True, eq=False, kw_only=True)
class DeepLiftExplanation(Explanation, DeepLiftDetails):
    """DeepLIFT or DeepSHAP, with the summation-to-delta check of Shrikumar et al. (2017).

    ``references`` are each row's reference ``(N, C, H, W)`` (DeepLIFT) or the reference
    batch ``(K, C, H, W)`` shared by every row (DeepSHAP); ``reference_scores`` ``(N,)``
    the target score of the row's reference (DeepSHAP: the mean over the references).
    ``summation_error`` is ``sum(attributions) − (score − reference_score)`` per row,
    summed in float64 over the returned attributions and reported in at least float32.
    ``rewritten`` maps each rewritten op to its count per forward pass
    (``{"relu": 3, "max_pool2d": 2}``; read-only, ``dict(...)`` is JSON).
    """

    @property
    def relative_summation_error(self) -> Tensor:
        """``|summation_error| / |score − reference_score|`` per row (the difference
        taken in float64)."""
        gap = (self.scores.double() - self.reference_scores.double()).abs().clamp_min(1e-12)
        return (self.summation_error.double().abs() / gap).to(self.summation_error.dtype)

    def summation(self) -> list[dict[str, float]]:
        """The summation-to-delta check per row, as numbers: ``sum`` of the attributions
        and the ``difference`` ``score − reference_score`` (both float64), ``error``
        (:attr:`summation_error`) and ``relative_error``
        (:attr:`relative_summation_error`)."""
        sums = self.attributions.detach().double().flatten(1).sum(dim=1).tolist()
        gaps = (self.scores.double() - self.reference_scores.double()).tolist()
        errors = self.summation_error.tolist()
        relative = self.relative_summation_error.tolist()
        return [
            {"sum": s, "difference": d, "error": e, "relative_error": r}
            for s, d, e, r in zip(sums, gaps, errors, relative, strict=True)
        ]


def rescale_attributions(
    ctx: PassContext,
    x: Tensor,
    target: Target,
    references: Tensor,
    shared: bool,
    eps: float,
    method: str,
) -> Attribution:
    """DeepLIFT attributions ``(x − x') ⊙ m`` of every row of ``x``, averaged over its
    references: row ``i``'s own ``references[i]`` (``shared=False``), or every image of
    ``references`` (``shared=True``, DeepSHAP). Pairs run image-major as doubled batches
    (:func:`~seethrough.core.deeplift.rescale_chunks`); sums are float64."""
    n = len(x)
    k = len(references) if shared else 1
    rule = DeepLiftRule(ctx.model, eps)
    pair_target = (  # the same target (range check included), one class per pair
        target
        if target.indices is None or k == 1
        else dataclasses.replace(target, indices=target.indices.repeat_interleave(k))
    )
    total = torch.zeros_like(x, dtype=torch.float64)
    score_sum = torch.zeros(n, dtype=torch.float64, device=x.device)
    reference_sum = torch.zeros_like(score_sum)
    indices = torch.empty(n, dtype=torch.long, device=x.device)
    predicted: Tensor | None = torch.empty_like(indices)

    def images(start: int, stop: int) -> Tensor:
        return torch.arange(start, stop, device=x.device) // k

    def inputs(start: int, stop: int) -> Tensor:
        return x[start:stop] if k == 1 else x[images(start, stop)]

    def refs(start: int, stop: int) -> Tensor:
        if not shared:
            return references[start:stop]
        return references[torch.arange(start, stop, device=x.device) % k]

    step = f"the {method} passes"

    def keep(chunk: PairChunk) -> None:
        nonlocal predicted
        image = images(chunk.start, chunk.stop)
        for what, where, values in (
            ("the model's target score", "the clean forward pass", chunk.scores),
            ("the reference's target score", step, chunk.reference_scores),
        ):
            finite = torch.isfinite(values)
            if not bool(finite.all()):  # named by image, before a refusal of the rule
                flags = torch.zeros(n, dtype=values.dtype, device=x.device)
                flags[image[~finite]] = torch.nan
                ctx.check_finite(what, where, flags)
        delta = chunk.inputs.double() - chunk.references.double()
        total.index_add_(0, image, delta * chunk.multipliers.double())
        score_sum.index_add_(0, image, chunk.scores.double())
        reference_sum.index_add_(0, image, chunk.reference_scores.double())
        indices[image] = chunk.indices
        if chunk.predicted is None:
            predicted = None
        elif predicted is not None:
            predicted[image] = chunk.predicted

    rescale_chunks(ctx.model, inputs, refs, n * k, pair_target, ctx.budget, rule, keep)
    rule.check(method)
    scores, reference_scores = score_sum / k, reference_sum / k
    ctx.check_finite("the model's target score", "the clean forward pass", scores)
    ctx.check_finite("the reference's target score", step, reference_scores)
    attributions, error = completeness(total / k, scores - reference_scores, x.dtype)
    ctx.check_finite("the attribution", step, attributions)
    _warn_if_off(method, error, scores, reference_scores, x.dtype)
    passes = max(1, rule.passes)
    details = DeepLiftDetails(
        references=references,
        reference_scores=reference_scores.to(report_dtype(x.dtype)),
        summation_error=error,
        rewritten=MappingProxyType(
            {op: count // passes for op, count in sorted(rule.rewritten.items())}
        ),
    )
    return Attribution(attributions, scores.to(x.dtype), indices, predicted, details)


def _warn_if_off(
    method: str, error: Tensor, scores: Tensor, reference_scores: Tensor, dtype: torch.dtype
) -> None:
    """Warn when the attributions do not add up beyond rounding: the sign of an op the
    rule cannot see (a custom autograd function, a TorchScript submodule)."""
    tolerance = SUMMATION_TOLERANCE.get(dtype, 5e-2)
    scale = (scores.abs() + reference_scores.abs()).clamp_min(1e-12)
    off = (error.double().abs() > tolerance * scale) & torch.isfinite(error)
    if bool(off.any()):
        rows = off.nonzero()[:, 0].tolist()
        worst = float((error.double().abs() / scale).max())
        warnings.warn(
            f"{method}: the attributions of rows {rows[:10]} do not add up to the score "
            f"difference from the reference (error up to {worst:.2g} of the scores): the "
            "model has a nonlinearity the rescale rule did not reach — a custom autograd "
            "function or a TorchScript submodule; the result's summation_error says by how "
            "much",
            RuntimeWarning,
            stacklevel=6,
        )


_BASELINE = one_of(*BASELINE_KINDS) | number() | instance_of(Tensor, "a tensor")


@register
@dataclass(frozen=True, kw_only=True)
class DeepLift(Method):
    """DeepLIFT with the rescale rule: ``(x − x') ⊙ m``, where ``m`` is the gradient
    with every nonlinearity's local derivative replaced by ``Δy/Δz`` between the input
    and the reference.

    Shrikumar, Greenside & Kundaje (2017), "Learning Important Features Through
    Propagating Activation Differences" (ICML), §3.5.2. The attributions add up to
    ``f(x) − f(x')`` (summation-to-delta); the result reports the error per row
    (:class:`DeepLiftExplanation`) and warns when it exceeds rounding. Equals Captum
    0.9's ``DeepLift`` (``multiply_by_inputs=True``) where Captum is right: every
    nonlinearity a separate ``nn.ReLU``/``nn.Sigmoid``/… module used once, no such module
    feeding another directly (a ReLU module into a MaxPool module reads a stale gradient
    in Captum 0.9, captum#1104), max pools that do not overlap. Unlike Captum it reaches
    functional (``F.relu``), in-place and reused activations, ``ReLU6``, ``hardtanh``,
    SiLU, GELU and the other elementwise nonlinearities, and raises on gating, softmax or
    normalisation layers, where the rule is undefined (see :mod:`seethrough.core.deeplift`).

    Parameters
    ----------
    baseline : str, float or Tensor
        The reference ``x'``: ``"zeros"`` (default), ``"blur"`` (the input blurred by
        ``blur_sigma`` pixels), ``"mean"`` (each image's per-channel mean), ``"uniform"``
        (uniform noise between each image's min and max, seeded per row), a constant, or
        a tensor broadcastable to the inputs.
    blur_sigma : float
        Standard deviation in pixels of the ``"blur"`` baseline (default 10).
    eps : float
        Below this ``|Δz|`` a multiplier is the op's local derivative (default 1e-10, as
        Captum's).

    Notes
    -----
    Deviations from the paper: no RevealCancel rule (§3.5.3); max pooling follows
    Captum's rule (each window's difference split between the input's and the
    reference's argmax), with overlapping windows added up where Captum overwrites; the
    ``eps`` threshold is Captum's (the paper's implementation uses its own); and
    nonlinearities other than ReLU, sigmoid and tanh get the same rescale rule, which
    the paper defines for any elementwise nonlinearity.
    """

    baseline: BaselineLike = option("zeros", check=_BASELINE)
    blur_sigma: float = option(10.0, check=number(above=0))
    eps: float = option(DEEPLIFT_EPS, check=number(above=0))

    name = "deeplift"
    result_type = DeepLiftExplanation

    def attribute_rows(self, ctx: PassContext, x: Tensor, target: Target) -> Attribution:
        references = make_baseline(
            self.baseline,
            x,
            kinds=BASELINE_KINDS,
            blur_sigma=self.blur_sigma,
            generator=ctx.generator,
        )
        return rescale_attributions(ctx, x, target, references, False, self.eps, self.name)


@register
@dataclass(frozen=True, kw_only=True)
class DeepShap(Method):
    """DeepSHAP: DeepLIFT averaged over a batch of references.

    Lundberg & Lee (2017), "A Unified Approach to Interpreting Model Predictions"
    (NeurIPS), §4.2 (Deep SHAP), as SHAP's ``DeepExplainer`` and Captum's
    ``DeepLiftShap`` compute it: ``φ = mean_k (x − x'_k) ⊙ m(x, x'_k)``, each term a
    :class:`DeepLift` attribution against reference ``x'_k``. The attributions add up to
    ``f(x) − mean_k f(x'_k)``; the result reports the error per row.

    Parameters
    ----------
    baselines : Tensor
        Required: the reference batch ``(K, C, H, W)``, preprocessed like the inputs —
        images drawn from the training data (SHAP's documentation suggests about 100; the
        cost is ``K`` DeepLIFT passes per image).
    eps : float
        As for :class:`DeepLift`.

    Notes
    -----
    Deviations from SHAP's ``DeepExplainer``: the rules are DeepLIFT's as in
    :class:`DeepLift` (its own handles a fixed list of TensorFlow/PyTorch ops), and the
    average is over every reference, not a sample of them.
    """

    baselines: Tensor | None = option(
        None,
        check=optional(instance_of(Tensor, "a tensor (K, C, H, W) of reference images")),
    )
    eps: float = option(DEEPLIFT_EPS, check=number(above=0))

    name = "deepshap"
    result_type = DeepLiftExplanation

    def validate(self) -> None:
        if self.baselines is None:
            raise InvalidOptionError(
                "deepshap needs baselines=: a batch (K, C, H, W) of reference images, "
                "preprocessed like the inputs (e.g. 50–100 training images); for a single "
                "reference, use method 'deeplift' with baseline="
            )
        if self.baselines.dim() < 2 or len(self.baselines) == 0:
            raise InvalidOptionError(
                "deepshap: baselines must be a batch (K, C, H, W) of at least one reference "
                f"image, got shape {tuple(self.baselines.shape)}"
            )

    def planned_rows(self, n: int) -> int:
        return n * len(self._baselines)

    @property
    def _baselines(self) -> Tensor:
        assert self.baselines is not None  # validate() refused None
        return self.baselines

    def attribute_rows(self, ctx: PassContext, x: Tensor, target: Target) -> Attribution:
        references = self._baselines.detach()
        if references.shape[1:] != x.shape[1:]:
            raise InvalidOptionError(
                f"deepshap: baselines have images of shape {tuple(references.shape[1:])}, the "
                f"inputs {tuple(x.shape[1:])}; pass baselines shaped (K, "
                f"{', '.join(map(str, x.shape[1:]))})"
            )
        references = references.to(x.device, x.dtype)
        return rescale_attributions(ctx, x, target, references, True, self.eps, self.name)
