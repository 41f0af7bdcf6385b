"""Verdicts: what a sanity check or a faithfulness comparison says, as a decision with its
evidence.

A **sanity verdict** (:class:`SanityVerdict`) reads one method's row of a randomization
test — model-parameter randomization (Adebayo et al., 2018, "Sanity Checks for Saliency
Maps", NeurIPS) or data randomization (the same paper, §5) — at one step, and decides:

* ``"passed"`` — the upper bound of the 95 % bootstrap interval (over images, seeded) of
  the mean similarity to the trained model's maps lies *below* ``threshold``: the maps
  changed when what the model learned was destroyed;
* ``"failed"`` — the lower bound lies *above* ``threshold``: the maps stay similar
  without the model's learned parameters (the edge detector's control does this);
* ``"inconclusive"`` — the interval contains the threshold; or the method's own maps are
  not reproducible on the unchanged model (its self-check, the ceiling any step can
  reach, is not above the threshold: the ``random_noise`` control, a very noisy
  SmoothGrad), so a low similarity says nothing; or fewer than two images have a value.

Adebayo et al. judge by eye and give no threshold. Ours, :data:`THRESHOLD` = 0.3 on
Spearman's ρ of the absolute maps (:data:`METRIC`), is the criterion of the claims table
of ``docs/sanity-results.md`` ("the gradient loses its similarity: ρ < 0.3 after the last
step"), calibrated on our models (200 Fashion-MNIST test images; 6 photos on
EfficientNet-Lite0), fully randomized (cascading, logits first): the edge-detector
control stays at 1.00 on both, guided backprop keeps 0.38 [0.37, 0.39] on Fashion-MNIST
(it fails, as in the paper) and 0.71 half-way; the gradient falls to 0.09 [0.08, 0.10] on
Fashion-MNIST and −0.02 [−0.11, 0.07] on Lite0, gradient × input and integrated
gradients to 0.26 on Fashion-MNIST (they pass, narrowly: the input's own pattern keeps
part of their rank order); ``random_noise`` has a self-check of 0.00, so it is
inconclusive, not "passed". ``tests/test_describe_trust.py`` re-measures the controls.
The same threshold serves data randomization (the claims table's "the gradient's maps
differ, ρ < 0.3": 0.10 [0.09, 0.11]; the edge detector 1.00). A limit of judging the
last step only: on Lite0 guided backprop keeps 0.77 half-way (``_blocks.8-10``) but falls
to 0.09 when fully randomized, so it passes there; pass ``step=`` to judge another step.

A **control comparison** (:class:`ControlComparison`) puts a faithfulness metric of a
method next to the same metric of a random ranking (the ``random_noise`` control) on the
same images and targets: per image the difference, its mean with a 95 % bootstrap
interval, and ``"better"`` / ``"worse"`` only when the interval excludes zero on that
side (``"indistinguishable"`` otherwise).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import torch
from torch import Tensor

from ..core.stats import mean_ci, paired_test
from ..errors import InvalidInputError, InvalidOptionError
from ..words import Description
from .describe import describe_comparison

__all__ = [
    "LEVEL",
    "METRIC",
    "THRESHOLD",
    "VERDICTS",
    "ControlComparison",
    "SanityVerdict",
    "Scored",
    "compare_with_control",
    "sanity_verdict",
]

Verdict = Literal["passed", "failed", "inconclusive"]
VERDICTS: tuple[Verdict, ...] = ("passed", "failed", "inconclusive")
"""The verdicts a sanity check can give (module docstring)."""

THRESHOLD = 0.3
"""Similarity (Spearman's ρ of absolute maps) a randomized model's maps must stay below
to pass; justified in the module docstring."""

METRIC = "spearman_abs"
"""The similarity measure of a verdict unless told otherwise."""

LEVEL = 0.95
"""Confidence level of every interval a verdict gives."""

RESAMPLES = 10_000

Reason = Literal["below", "above", "straddles", "noise_floor", "too_few"]


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
        What the maps were compared after: the randomization step's name (the last one,
        fully randomized in cascading mode, unless told), or the reference compared with.
    mean : float or None
        Mean similarity over the images that have one (None if none).
    ci : tuple of float, or None
        ``(low, high)`` percentile bootstrap interval of the mean at ``level`` (None for
        fewer than two images: no interval, not a non-finite number).
    threshold : float
    n : int
        Images with a value (constant maps have no rank correlation).
    self_check : float or None
        The method's mean self-check (similarity of two runs on the unchanged model),
        the ceiling of every step; None where the test has none or it was skipped.
    level : float
    seed : int
        Seed of the bootstrap resampling.
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


def _check_threshold(threshold: float, level: float) -> None:
    if not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise InvalidOptionError(f"threshold must be a finite number, got {threshold!r}")
    if not 0 < level < 1:
        raise InvalidOptionError(f"level must lie in (0, 1), got {level!r}")


def _mean_interval(
    values: np.ndarray, level: float, seed: int
) -> tuple[float | None, tuple[float, float] | None]:
    """Mean and bootstrap interval of the finite ``values`` (None: no value / fewer than 2)."""
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return None, None
    if len(finite) < 2:
        return float(finite.mean()), None
    (interval,) = mean_ci(finite, level=level, resamples=RESAMPLES, seed=seed)
    return interval.estimate, (interval.low, interval.high)


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
    value) after one step (module docstring for the rule).

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
        Confidence level of the interval.
    seed : int
        Seed of the bootstrap resampling (same seed, same verdict).

    Returns
    -------
    SanityVerdict
    """
    _check_threshold(threshold, level)
    array = torch.as_tensor(values, dtype=torch.float64).reshape(-1).numpy()
    mean, ci = _mean_interval(array, level, seed)
    n = int(np.isfinite(array).sum())
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
        ``(low, high)`` percentile bootstrap interval of ``difference`` at ``level``
        (None for fewer than two images).
    p_value : float or None
        Two-sided paired sign-flip test of the differences
        (:func:`seethrough.core.stats.paired_test`).
    n : int
        Images with both scores.
    verdict : {"better", "worse", "indistinguishable"}
        ``"better"`` when the interval excludes zero on the better side, ``"worse"`` on
        the other, else ``"indistinguishable"``.
    level : float
    seed : int
        Seed of the bootstrap and of the test's random flips.
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


def compare_with_control(
    result: Scored,
    control: Scored,
    *,
    level: float = LEVEL,
    seed: int = 0,
) -> ControlComparison:
    """``result`` (a faithfulness metric of one method) against ``control`` (the same
    metric of a random ranking, e.g. the ``random_noise`` method, on the same images).

    Parameters
    ----------
    result, control : MetricResult
        Same metric, same images in the same order.
    level : float
        Confidence level of the interval of the mean difference.
    seed : int
        Seed of the bootstrap and the sign-flip test.

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
    a = result.scores.detach().double().cpu().numpy()
    b = control.scores.detach().double().cpu().numpy()
    both = np.isfinite(a) & np.isfinite(b)
    diff = a[both] - b[both]
    mean, ci = _mean_interval(diff, level, seed)
    n = int(both.sum())
    verdict: Comparison = "indistinguishable"
    if ci is not None and (ci[0] > 0 or ci[1] < 0):
        verdict = "better" if (ci[0] > 0) == result.higher_is_better else "worse"
    return ControlComparison(
        metric=result.metric,
        method=result.method,
        control=control.method,
        higher_is_better=result.higher_is_better,
        mean=float(a[both].mean()) if n else None,
        control_mean=float(b[both].mean()) if n else None,
        difference=mean,
        ci=ci,
        p_value=paired_test(diff, seed=seed) if n else None,
        n=n,
        verdict=verdict,
        level=level,
        seed=seed,
    )
