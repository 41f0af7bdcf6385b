"""Uncertainty for every number a table states: bootstrap intervals, paired tests, and
corrections for the number of comparisons.

Every finding in ``docs/`` reports its sample size, a confidence interval and — where it
says "holds" — a test with its p-value corrected for the number of comparisons. These are
the few pieces all analyses share; scipy (a dependency of scikit-image) does the
distributions.

* :func:`bootstrap_ci` — percentile bootstrap interval of any statistic of rows
  (images), resampled with an explicit seed; paired when given several arrays.
* :func:`mean_ci` — the common case: the mean over axis 0, per column.
* :func:`paired_test` — two-sided sign-flip permutation test of paired differences
  (exact for n ≤ 16, Monte Carlo with the seed otherwise); no normality assumed.
* :func:`holm` and :func:`bonferroni` — adjusted p-values for a family of tests.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

__all__ = [
    "Interval",
    "bonferroni",
    "bootstrap_ci",
    "holm",
    "mean_ci",
    "paired_test",
    "t_interval",
    "t_test",
]

RESAMPLES = 10_000
EXACT_UP_TO = 16  # sign-flip test enumerates all 2^n flips up to this n


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval: ``estimate`` on all ``n`` rows,
    ``low``/``high`` the percentile bootstrap bounds at ``level``."""

    estimate: float
    low: float
    high: float
    level: float
    n: int

    def __str__(self) -> str:
        return f"{self.estimate:.2f} [{self.low:.2f}, {self.high:.2f}]"

    def format(self, digits: int = 2) -> str:
        """``"0.41 [0.37, 0.45]"`` with ``digits`` decimals."""
        return f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def excludes(self, value: float) -> bool:
        """Whether ``value`` lies outside the interval."""
        return not self.low <= value <= self.high


def _rows(arrays: Sequence[Any]) -> list[np.ndarray]:
    out = [np.asarray(a, dtype=np.float64) for a in arrays]
    if not out:
        raise ValueError("bootstrap needs at least one array")
    n = len(out[0])
    if any(len(a) != n for a in out):
        raise ValueError(
            f"paired arrays must have the same number of rows, got {[len(a) for a in out]}"
        )
    if n < 2:
        raise ValueError(f"a bootstrap interval needs at least 2 rows, got {n}")
    return out


def bootstrap_ci(
    statistic: Callable[..., float],
    *arrays: Any,
    level: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of ``statistic(*arrays)`` over rows (axis 0).

    Rows are resampled together (paired) across ``arrays``; ``statistic`` receives the
    resampled arrays and returns a float. NaN rows are the statistic's to handle.

    Parameters
    ----------
    statistic : callable
        ``statistic(a, b, ...) -> float``.
    arrays : array-like
        One or more arrays with the same number of rows (the sampling unit, e.g. images).
    level : float
        Confidence level (default 0.95).
    resamples : int
        Bootstrap resamples (default 10,000).
    seed : int
        Seed of the resampling; same seed, same interval.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    data = _rows(arrays)
    n = len(data[0])
    rng = np.random.default_rng(seed)
    estimate = float(statistic(*data))
    values = np.empty(resamples)
    for k in range(resamples):
        index = rng.integers(0, n, n)
        values[k] = statistic(*(a[index] for a in data))
    tail = (1 - level) / 2
    low, high = np.nanquantile(values, [tail, 1 - tail])
    return Interval(estimate, float(low), float(high), level, n)


def mean_ci(
    values: Any, level: float = 0.95, resamples: int = RESAMPLES, seed: int = 0
) -> list[Interval]:
    """Bootstrap intervals of the mean over rows, one per column of ``values`` ``(n, k)``
    (a 1-D array is one column). NaN entries are left out of each mean (nanmean); the
    rows are resampled together for all columns. Vectorised: one index draw per resample."""
    data = np.asarray(values, dtype=np.float64)
    column = data.ndim == 1
    data = data[:, None] if column else data.reshape(len(data), -1)
    (data,) = _rows([data])
    n = len(data)
    rng = np.random.default_rng(seed)
    estimate = np.nanmean(data, axis=0)
    means = np.empty((resamples, data.shape[1]))
    for start in range(0, resamples, 1000):
        stop = min(resamples, start + 1000)
        index = rng.integers(0, n, (stop - start, n))
        means[start:stop] = np.nanmean(data[index], axis=1)
    tail = (1 - level) / 2
    low, high = np.nanquantile(means, [tail, 1 - tail], axis=0)
    return [
        Interval(float(e), float(lo), float(hi), level, n) for e, lo, hi in zip(estimate, low, high)
    ]


def paired_test(a: Any, b: Any | None = None, resamples: int = RESAMPLES, seed: int = 0) -> float:
    """Two-sided p-value that the mean of the paired differences ``a − b`` (or of ``a``
    alone) is zero: a sign-flip permutation test, exact for n ≤ 16 and Monte Carlo
    (``resamples`` flips, with the add-one correction) beyond. NaN pairs are dropped."""
    d = np.asarray(a, dtype=np.float64)
    if b is not None:
        d = d - np.asarray(b, dtype=np.float64)
    d = d[np.isfinite(d)]
    n = len(d)
    if n == 0:
        raise ValueError("paired_test needs at least one finite difference")
    observed = abs(d.mean())
    tolerance = 1e-12 * max(1.0, float(np.abs(d).max()))
    if n <= EXACT_UP_TO:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
        means = np.abs(signs @ d) / n
        return float(np.mean(means >= observed - tolerance))
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, resamples, 1000):
        stop = min(resamples, start + 1000)
        signs = rng.choice((1.0, -1.0), size=(stop - start, n))
        hits += int(np.sum(np.abs(signs @ d) / n >= observed - tolerance))
    return (hits + 1) / (resamples + 1)


def bonferroni(pvalues: Sequence[float]) -> list[float]:
    """Bonferroni-adjusted p-values: ``min(1, m p)`` for a family of ``m`` tests."""
    m = len(pvalues)
    return [min(1.0, m * float(p)) for p in pvalues]


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (step-down; controls the family-wise error
    rate like Bonferroni, never less powerful). Compare each with α."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def t_interval(
    values: Any, level: float = 0.95
) -> tuple[float | None, tuple[float, float] | None, int]:
    """Mean, Student-t interval and n of the finite ``values``.

    Used where n is small (a sanity check on 3–6 images), where a percentile bootstrap is
    too narrow: on 2,000 seeded draws of n = 4 normal values it covered the true mean 80 %
    of the time, this interval 94.8 % (``tests/test_describe_trust.py``).

    ``mean ± t_{(1+level)/2}(n − 1) · s / √n`` with ``s`` the sample standard deviation
    (ddof = 1); valid for small n when the values are roughly normal. NaN and infinite
    values are left out.

    Returns
    -------
    mean : float or None
        None when no value is finite.
    ci : tuple of float, or None
        None for fewer than two values (no interval); ``(mean, mean)`` when all are equal.
    n : int
        Finite values used.
    """
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    finite = array[np.isfinite(array)]
    n = len(finite)
    if n == 0:
        return None, None, 0
    mean = float(finite.mean())
    if n < 2:
        return mean, None, n
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * float(finite.std(ddof=1)) / math.sqrt(n)
    return mean, (mean - half, mean + half), n


def t_test(values: np.ndarray) -> float | None:
    """Two-sided one-sample t-test p-value that the mean of ``values`` is zero (None for
    fewer than two; 0 or 1 when every value is the same)."""
    finite = values[np.isfinite(values)]
    n = len(finite)
    if n < 2:
        return None
    mean, sd = float(finite.mean()), float(finite.std(ddof=1))
    if sd == 0.0:
        return 1.0 if mean == 0.0 else 0.0
    t = mean / (sd / math.sqrt(n))
    return float(2 * stats.t.sf(abs(t), n - 1))
