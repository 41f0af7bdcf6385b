"""Verdicts: what a sanity check or a faithfulness comparison says, as a decision with its
evidence.

A **sanity verdict** (:class:`SanityVerdict`) reads one method's row of a randomization
test — model-parameter randomization (Adebayo et al., 2018, "Sanity Checks for Saliency
Maps", NeurIPS) or data randomization (the same paper, §5) — and decides:

* ``"passed"`` — the upper bound of the 95 % interval (over images) of the mean similarity
  to the trained model's maps lies *below* the threshold: the maps changed when what the
  model learned was destroyed;
* ``"failed"`` — the lower bound lies *above* the threshold: the maps stay similar
  without the model's learned parameters (the edge detector's control does this);
* ``"inconclusive"`` — the interval contains the threshold; or the method's own maps are
  not reproducible on the unchanged model (its self-check, the ceiling any step can
  reach, is not above the threshold: the ``random_noise`` control, a very noisy
  SmoothGrad), so a low similarity says nothing; or fewer than two images have a value.

**What is judged in a cascading randomization** (:func:`cascade_verdict`, the default of
:meth:`RandomizationResult.verdicts`): per image, the mean similarity over *all* the
cascade's steps (logits first, down to the input side), then the interval of that over
images. Adebayo et al.'s failure is a map that "stays similar while the top layers are
randomized" (Fig. 2: guided backprop and Guided Grad-CAM do not change until the lower
layers are reached); the last, fully randomized step alone misses it. Measured
(``docs/sanity-results.json``, Spearman's ρ of absolute maps, Student-t 95 % intervals):
on EfficientNet-Lite0 (6 photos) guided backprop keeps 0.99 after the logits and 0.77
half-way but falls to 0.09 [−0.03, 0.22] at the last step, so judging the last step
*passed* it (in all 15 four-photo subsets, the report's quick check); its cascade mean is
0.60 [0.54, 0.65] (fails in 15 of 15 subsets). On the Fashion CNN (200 test images)
guided backprop's cascade mean is 0.63 [0.63, 0.64], the gradient's 0.13 [0.13, 0.14]
(Lite0: 0.21 [0.12, 0.30]). The per-image mean over steps is Quantus's
``return_average_correlation`` of MPRT (Hedström et al., 2023); the paper itself judges
by eye and gives neither a statistic nor a threshold.

**Thresholds** (our choice; the paper gives none). One randomized step or a data
randomization: :data:`THRESHOLD` = 0.3 on Spearman's ρ of the absolute maps
(:data:`METRIC`), the claims table of ``docs/sanity-results.md`` ("the gradient loses its
similarity: ρ < 0.3 after the last step"; data randomization "ρ < 0.3": gradient 0.10
[0.09, 0.11], edge detector 1.00). The cascade mean: :data:`CASCADE_THRESHOLD` = 0.4 —
a mean over steps includes the early steps where only the top is random, so it lies above
the last step's value; 0.4 is the midpoint between the paper's passing and failing
examples on both our models (gradient 0.13 vs guided backprop 0.63 on Fashion-MNIST:
midpoint 0.38; 0.21 vs 0.60 on Lite0: 0.40). With it, on Fashion-MNIST (200 images)
gradient × input (0.29 [0.28, 0.30]) and integrated gradients (0.32 [0.31, 0.32]) pass,
as do SmoothGrad and Grad-CAM; on Lite0 (6 photos) those two stay inconclusive (0.38
[0.26, 0.50], 0.38 [0.28, 0.49]) — the paper, too, calls their maps partly
input-dominated. The edge-detector control is 1.00 everywhere and fails; ``random_noise``
has a self-check of 0.00 and is inconclusive. ``tests/test_describe_trust.py``
re-measures the controls on both models. The mean over steps depends on how the network
is cut into steps (``granularity``); pass ``step=`` to judge one step instead.

**The interval** is Student's t on the per-image values, mean ± t(n − 1) · s / √n: valid
for the few images a quick check has (3–6), where a percentile bootstrap is too narrow
(2,000 seeded draws of n = 4 normal values: the bootstrap covers the true mean in 80 %,
the t interval in 95 %; n = 3: 75 % against 95 %; ``tests/test_describe_trust.py``).
It assumes the per-image values are roughly normal (skewed Beta(2, 5) values, n = 4:
93 % coverage).

A **control comparison** (:class:`ControlComparison`) puts a faithfulness metric of a
method next to the same metric of a random ranking (the ``random_noise`` control) on the
same images and targets: per image the difference, its mean with a 95 % Student-t
interval, a two-sided paired t-test (the test dual to that interval), and ``"better"`` /
``"worse"`` only when the test's p-value — **Holm-corrected for every comparison of the
family** (:func:`holm_family`: e.g. all methods × deletion and insertion of one report) —
lies below ``alpha`` (``"indistinguishable"`` otherwise). The sign-flip permutation test
used before cannot reach p < 0.05 with fewer than six images (its smallest p is
2 / 2ⁿ), and not at all after a correction, so it is not used here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import torch
from torch import Tensor

from ..core.stats import holm, t_interval, t_test
from ..errors import InvalidInputError, InvalidOptionError
from ..words import Description
from .describe import describe_comparison

__all__ = [
    "ALPHA",
    "CASCADE_THRESHOLD",
    "LEVEL",
    "METRIC",
    "THRESHOLD",
    "VERDICTS",
    "ControlComparison",
    "SanityVerdict",
    "Scored",
    "cascade_verdict",
    "compare_with_control",
    "holm_family",
    "sanity_verdict",
]

Verdict = Literal["passed", "failed", "inconclusive"]
VERDICTS: tuple[Verdict, ...] = ("passed", "failed", "inconclusive")
"""The verdicts a sanity check can give (module docstring)."""

THRESHOLD = 0.3
"""Similarity (Spearman's ρ of absolute maps) a randomized model's maps must stay below
after one step, or a random-label model's maps, to pass; justified in the module
docstring."""

CASCADE_THRESHOLD = 0.4
"""Mean similarity over a cascade's steps a method must stay below to pass; justified in
the module docstring."""

METRIC = "spearman_abs"
"""The similarity measure of a verdict unless told otherwise."""

LEVEL = 0.95
"""Confidence level of every interval a verdict gives."""

ALPHA = 0.05
"""Family-wise error rate of the control comparisons' Holm-corrected tests."""

Reason = Literal["below", "above", "straddles", "noise_floor", "too_few"]
Statistic = Literal["step", "cascade_mean"]


@dataclass(frozen=True)
class SanityVerdict:
    """One method's verdict in a randomization test (module docstring).

    Attributes
    ----------
    method : str
        The method's label.
    test : str
        ``"model_randomization"``, ``"data_randomization"`` or ``"edge_similarity"``.
    verdict : {"passed", "failed", "inconclusive"}
    reason : {"below", "above", "straddles", "noise_floor", "too_few"}
        Why: the interval lies below / above the threshold or contains it; the method's
        self-check is not above the threshold; fewer than two images have a value.
    metric : str
        The similarity measure (one of :data:`~seethrough.trust.METRICS`).
    step : str
        What the maps were compared after: the randomization step's name (for a cascade
        mean, the last step the cascade reached), or the reference compared with.
    mean : float or None
        Mean similarity over the images that have one (None if none); for a cascade
        mean, the mean over images of each image's mean over the steps.
    ci : tuple of float, or None
        ``(low, high)`` Student-t interval of the mean at ``level`` (None for fewer than
        two images: no interval, not a non-finite number).
    threshold : float
    n : int
        Images with a value (constant maps have no rank correlation).
    self_check : float or None
        The method's mean self-check (similarity of two runs on the unchanged model),
        the ceiling of every step; None where the test has none or it was skipped.
    level : float
    seed : int
        Kept for the JSON layout (the t interval draws nothing).
    statistic : {"step", "cascade_mean"}
        One step's similarities, or each image's mean over the cascade's steps.
    steps : int
        How many steps the statistic averages (1 for one step).
    """

    method: str
    test: str
    verdict: Verdict
    reason: Reason
    metric: str
    step: str
    mean: float | None
    ci: tuple[float, float] | None
    threshold: float
    n: int
    self_check: float | None
    level: float = LEVEL
    seed: int = 0
    statistic: Statistic = "step"
    steps: int = 1


def _check_threshold(threshold: float, level: float) -> None:
    if not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise InvalidOptionError(f"threshold must be a finite number, got {threshold!r}")
    if not 0 < level < 1:
        raise InvalidOptionError(f"level must lie in (0, 1), got {level!r}")


def _decide(
    ci: tuple[float, float] | None, threshold: float, self_check: float | None
) -> tuple[Verdict, Reason]:
    if ci is None:
        return "inconclusive", "too_few"
    low, high = ci
    if self_check is not None and math.isfinite(self_check) and self_check <= threshold:
        return "inconclusive", "noise_floor"
    if high < threshold:
        return "passed", "below"
    if low > threshold:
        return "failed", "above"
    return "inconclusive", "straddles"


def _verdict(
    array: np.ndarray,
    *,
    method: str,
    test: str,
    step: str,
    metric: str,
    threshold: float,
    self_check: float | None,
    level: float,
    seed: int,
    statistic: Statistic,
    steps: int,
) -> SanityVerdict:
    _check_threshold(threshold, level)
    mean, ci, n = t_interval(array, level)
    check = None if self_check is None or not math.isfinite(self_check) else float(self_check)
    verdict, reason = _decide(ci, float(threshold), check)
    return SanityVerdict(
        method=method,
        test=test,
        verdict=verdict,
        reason=reason,
        metric=metric,
        step=step,
        mean=mean,
        ci=ci,
        threshold=float(threshold),
        n=n,
        self_check=check,
        level=level,
        seed=seed,
        statistic=statistic,
        steps=steps,
    )


def sanity_verdict(
    values: Tensor | Sequence[float],
    *,
    method: str,
    test: str,
    step: str,
    metric: str = METRIC,
    threshold: float = THRESHOLD,
    self_check: float | None = None,
    level: float = LEVEL,
    seed: int = 0,
) -> SanityVerdict:
    """The verdict on one method's per-image similarities ``values`` ``(N,)`` (NaN: no
    value) after one step, or against one reference (module docstring for the rule).

    Parameters
    ----------
    values : Tensor or sequence of float
        ``(N,)`` similarity of each image's randomized map to its original.
    method, test, step, metric
        What is judged (stored in the verdict).
    threshold : float
        Similarity a passing method's interval must lie below (default :data:`THRESHOLD`).
    self_check : float, optional
        The method's mean self-check; one not above ``threshold`` makes the verdict
        inconclusive (the maps are not reproducible). None or NaN: not used.
    level : float
        Confidence level of the Student-t interval.
    seed : int
        Stored in the verdict (the interval draws nothing).

    Returns
    -------
    SanityVerdict
    """
    array = torch.as_tensor(values, dtype=torch.float64).reshape(-1).numpy()
    return _verdict(
        array,
        method=method,
        test=test,
        step=step,
        metric=metric,
        threshold=threshold,
        self_check=self_check,
        level=level,
        seed=seed,
        statistic="step",
        steps=1,
    )


def cascade_verdict(
    values: Tensor,
    *,
    method: str,
    steps: Sequence[str],
    metric: str = METRIC,
    threshold: float = CASCADE_THRESHOLD,
    self_check: float | None = None,
    level: float = LEVEL,
    seed: int = 0,
) -> SanityVerdict:
    """The verdict on a whole cascading randomization: per image the mean similarity over
    the steps ``values`` ``(steps, N)`` (NaN steps left out), judged against
    ``threshold`` (default :data:`CASCADE_THRESHOLD`) as :func:`sanity_verdict` does.

    Deviation from Adebayo et al. (2018), who judge the cascade by eye: the statistic is
    Quantus's per-sample average correlation over layers (module docstring, with the
    calibration of the threshold).

    Parameters
    ----------
    values : Tensor
        ``(steps, N)`` similarity after each step, in the cascade's order.
    steps : sequence of str
        The steps' names (the verdict's ``step`` is the last one).
    metric, threshold, self_check, level, seed
        As :func:`sanity_verdict`.

    Returns
    -------
    SanityVerdict
        ``statistic="cascade_mean"``, ``steps=len(steps)``.
    """
    table = torch.as_tensor(values, dtype=torch.float64)
    if table.ndim != 2 or table.shape[0] != len(steps) or len(steps) == 0:
        raise InvalidInputError(
            f"cascade_verdict needs (steps, N) values with one row per step name; got shape "
            f"{tuple(table.shape)} for {len(steps)} step name(s)"
        )
    per_image = table.nanmean(dim=0).numpy()  # all-NaN columns stay NaN: left out
    return _verdict(
        per_image,
        method=method,
        test="model_randomization",
        step=steps[-1],
        metric=metric,
        threshold=threshold,
        self_check=self_check,
        level=level,
        seed=seed,
        statistic="cascade_mean",
        steps=len(steps),
    )


# ----------------------------------------------------------------- control comparison

Comparison = Literal["better", "worse", "indistinguishable"]


class Scored(Protocol):
    """What a comparison reads of a metric's result (:class:`~.faithfulness.MetricResult`;
    structural, so that this module need not import it)."""

    @property
    def metric(self) -> str: ...
    @property
    def method(self) -> str: ...
    @property
    def scores(self) -> Tensor: ...
    @property
    def higher_is_better(self) -> bool: ...


@dataclass(frozen=True)
class ControlComparison:
    """A faithfulness metric of a method against the same metric of a control (module
    docstring).

    Attributes
    ----------
    metric, method, control : str
        The metric and the two methods' names.
    higher_is_better : bool
        The metric's direction.
    mean, control_mean : float or None
        Mean score of the method and of the control over the images both have (None:
        no image has both).
    difference : float or None
        Mean of the per-image differences, method − control.
    ci : tuple of float, or None
        ``(low, high)`` Student-t interval of ``difference`` at ``level`` (None for fewer
        than two images).
    p_value : float or None
        Two-sided paired t-test of the differences (None for fewer than two images).
    n : int
        Images with both scores.
    verdict : {"better", "worse", "indistinguishable"}
        ``"better"`` / ``"worse"`` when ``p_holm`` < ``alpha`` and the mean difference
        is on the better / worse side, else ``"indistinguishable"``.
    level : float
    seed : int
        Kept for the JSON layout (the t-test draws nothing).
    p_holm : float or None
        ``p_value`` Holm-corrected over the ``family`` comparisons it was judged with
        (:func:`holm_family`); equal to ``p_value`` for a family of one.
    family : int
        How many comparisons were corrected together.
    alpha : float
        Family-wise error rate of the decision.
    """

    metric: str
    method: str
    control: str
    higher_is_better: bool
    mean: float | None
    control_mean: float | None
    difference: float | None
    ci: tuple[float, float] | None
    p_value: float | None
    n: int
    verdict: Comparison
    level: float = LEVEL
    seed: int = 0
    p_holm: float | None = None
    family: int = 1
    alpha: float = ALPHA

    def describe(self, lang: str = "en") -> Description:
        """The comparison in words (:func:`seethrough.trust.describe.describe_comparison`)."""
        return describe_comparison(self, lang)


def _same_images(result: Scored, control: Scored) -> None:
    if result.metric != control.metric:
        raise InvalidInputError(
            f"the control's metric is {control.metric!r}, the method's {result.metric!r}; "
            "compare the same metric"
        )
    if result.scores.shape != control.scores.shape:
        raise InvalidInputError(
            f"the control has {len(control.scores)} scores and the method {len(result.scores)}; "
            "measure both on the same images"
        )


def _comparison_verdict(
    difference: float | None, p: float | None, higher_is_better: bool, alpha: float
) -> Comparison:
    if difference is None or p is None or not p < alpha or difference == 0.0:
        return "indistinguishable"
    return "better" if (difference > 0) == higher_is_better else "worse"


def compare_with_control(
    result: Scored,
    control: Scored,
    *,
    level: float = LEVEL,
    alpha: float = ALPHA,
    seed: int = 0,
) -> ControlComparison:
    """``result`` (a faithfulness metric of one method) against ``control`` (the same
    metric of a random ranking, e.g. the ``random_noise`` method, on the same images).

    A family of one: correct several comparisons made together with
    :func:`holm_family` before saying any of them is better.

    Parameters
    ----------
    result, control : MetricResult
        Same metric, same images in the same order.
    level : float
        Confidence level of the interval of the mean difference.
    alpha : float
        Level of the test (family-wise after :func:`holm_family`).
    seed : int
        Stored in the comparison.

    Returns
    -------
    ControlComparison

    Raises
    ------
    InvalidInputError
        When the metrics differ or the number of images does.
    """
    _same_images(result, control)
    _check_threshold(0.0, level)
    if not 0 < alpha < 1:
        raise InvalidOptionError(f"alpha must lie in (0, 1), got {alpha!r}")
    a = result.scores.detach().double().cpu().numpy()
    b = control.scores.detach().double().cpu().numpy()
    both = np.isfinite(a) & np.isfinite(b)
    diff = a[both] - b[both]
    mean, ci, n = t_interval(diff, level)
    p = t_test(diff)
    return ControlComparison(
        metric=result.metric,
        method=result.method,
        control=control.method,
        higher_is_better=result.higher_is_better,
        mean=float(a[both].mean()) if n else None,
        control_mean=float(b[both].mean()) if n else None,
        difference=mean,
        ci=ci,
        p_value=p,
        n=n,
        verdict=_comparison_verdict(mean, p, result.higher_is_better, alpha),
        level=level,
        seed=seed,
        p_holm=p,
        family=1,
        alpha=alpha,
    )


def holm_family(comparisons: Sequence[ControlComparison]) -> tuple[ControlComparison, ...]:
    """The ``comparisons``, judged together: each ``p_value`` Holm-corrected over all of
    them that have one (:func:`seethrough.core.stats.holm`), ``family`` set to their
    number and each verdict re-decided on the corrected p-value (module docstring).

    Comparisons without a p-value (fewer than two images) stay indistinguishable and do
    not count in the family. Re-correcting an already corrected family gives the same
    result (the raw ``p_value`` is kept).
    """
    tested = [k for k, c in enumerate(comparisons) if c.p_value is not None]
    adjusted = holm([comparisons[k].p_value for k in tested]) if tested else []  # type: ignore[misc]
    out = list(comparisons)
    for k, p in zip(tested, adjusted, strict=True):
        c = comparisons[k]
        out[k] = dataclasses.replace(
            c,
            p_holm=float(p),
            family=len(tested),
            verdict=_comparison_verdict(c.difference, float(p), c.higher_is_better, c.alpha),
        )
    return tuple(out)
