"""core.stats: bootstrap intervals, the sign-flip test and multiple-comparison corrections,
against hand computations, scipy, and coverage on data with a known mean."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from seethrough.core.stats import (
    bonferroni,
    bootstrap_ci,
    holm,
    mean_ci,
    paired_test,
    t_interval,
    t_test,
)


def test_holm_and_bonferroni_by_hand() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 → max(0.06, 0.04)
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02], rtol=1e-12)
    np.testing.assert_allclose(bonferroni(p), [0.04, 0.16, 0.12, 0.02], rtol=1e-12)
    assert holm([0.6, 0.7]) == [1.0, 1.0]


def test_paired_test_exact_by_hand() -> None:
    # all 8 sign patterns of [1, 2, 3]: |mean| ≥ 2 only for +++ and −−−
    assert paired_test([1.0, 2.0, 3.0]) == pytest.approx(0.25, abs=1e-12)
    assert paired_test([2.0, 3.0, 4.0], [1.0, 1.0, 1.0]) == pytest.approx(0.25, abs=1e-12)
    assert paired_test([1.0, -1.0]) == pytest.approx(1.0)


def test_paired_test_matches_scipy_permutation_test() -> None:
    rng = np.random.default_rng(3)
    d = rng.normal(0.4, 1.0, 30)
    ours = paired_test(d, resamples=20_000, seed=1)
    theirs = sps.permutation_test(
        (d,),
        np.mean,
        permutation_type="samples",
        n_resamples=20_000,
        alternative="two-sided",
        random_state=2,
    ).pvalue
    # two Monte Carlo estimates of the same p: binomial s.e. ≈ sqrt(p(1−p)/20000) ≈ 0.002
    assert abs(ours - theirs) < 0.01
    assert paired_test(d, resamples=2000, seed=5) == paired_test(d, resamples=2000, seed=5)


def test_mean_ci_matches_scipy_percentile_bootstrap() -> None:
    rng = np.random.default_rng(0)
    x = rng.exponential(1.0, 80)
    (ours,) = mean_ci(x, resamples=20_000, seed=0)
    theirs = sps.bootstrap(
        (x,), np.mean, n_resamples=20_000, method="percentile", random_state=1
    ).confidence_interval
    assert ours.estimate == pytest.approx(x.mean(), rel=1e-12)
    assert ours.n == 80
    assert ours.low == pytest.approx(theirs.low, abs=0.02)
    assert ours.high == pytest.approx(theirs.high, abs=0.02)
    general = bootstrap_ci(np.mean, x, resamples=20_000, seed=4)
    assert general.low == pytest.approx(theirs.low, abs=0.02)


def test_mean_ci_covers_the_true_mean_at_its_level() -> None:
    rng = np.random.default_rng(7)
    data = rng.normal(1.5, 2.0, (400, 60))  # 400 experiments of 60 rows, as columns
    intervals = mean_ci(data.T, resamples=2000, seed=1)
    covered = sum(not i.excludes(1.5) for i in intervals)
    # percentile bootstrap at n = 60 under-covers a little (≈ 0.94); binomial s.d. of the
    # count at p = 0.94 is ≈ 4.7, so 400·0.94 ± 4 s.d. ≈ [357, 395]
    assert 357 <= covered <= 395


def test_paired_columns_resampled_together() -> None:
    # identical columns: every resample gives identical means, so identical intervals
    x = np.random.default_rng(1).normal(size=50)
    a, b = mean_ci(np.stack([x, x], axis=1), resamples=500)
    assert (a.low, a.high) == (b.low, b.high)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2 rows"):
        mean_ci([1.0])
    with pytest.raises(ValueError, match="same number of rows"):
        bootstrap_ci(lambda a, b: 0.0, [1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(np.mean, [1.0, 2.0], level=1.5)


def test_t_interval_and_t_test_by_hand_and_against_scipy() -> None:
    values = np.array([1.0, 2.0, 3.0, 4.0, np.nan])  # the NaN is left out
    mean, ci, n = t_interval(values)
    # mean 2.5, s = sqrt(5/3), t(0.975, 3) = 3.182446305...: half-width 2.0542603...
    assert (mean, n) == (2.5, 4)
    assert ci is not None
    np.testing.assert_allclose(ci, (2.5 - 2.0542603, 2.5 + 2.0542603), rtol=1e-7)
    np.testing.assert_allclose(
        ci, sps.t.interval(0.95, 3, loc=2.5, scale=sps.sem(values[:4])), rtol=1e-12
    )
    assert t_interval([7.0]) == (7.0, None, 1)  # no interval from one value
    assert t_interval([np.nan]) == (None, None, 0)
    diffs = np.array([0.3, -0.1, 0.5, 0.2, 0.4])
    p = t_test(diffs)
    assert p is not None
    np.testing.assert_allclose(p, sps.ttest_1samp(diffs, 0.0).pvalue, rtol=1e-12)
    assert t_test(np.array([0.0, 0.0])) == 1.0 and t_test(np.array([1.0, 1.0])) == 0.0
