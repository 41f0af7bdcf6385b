"""Similarity measures (``seethrough.trust.similarity``) on hand-built maps, against scipy
and scikit-image called directly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr, spearmanr
from skimage.feature import hog
from skimage.metrics import structural_similarity

from seethrough.errors import InvalidInputError, InvalidOptionError
from seethrough.trust.similarity import (
    RankedMaps,
    constant_maps,
    hog_similarity,
    reduce_maps,
    spearman,
    ssim,
)


def maps(seed: int, shape: tuple[int, ...] = (3, 3, 32, 32)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_reduction_is_the_papers_abs_sum_with_99th_percentile_clip() -> None:
    m = maps(0, (1, 3, 10, 10))
    summed = m.abs().sum(dim=1)[0].numpy()
    p99 = np.percentile(summed, 99)
    expected = np.clip((summed - summed.min()) / (p99 - summed.min()), 0, 1)
    np.testing.assert_allclose(reduce_maps(m, absolute=True)[0], expected, rtol=0, atol=1e-15)
    signed = m.sum(dim=1)[0].numpy()
    p = abs(np.percentile(signed, 99))
    np.testing.assert_allclose(
        reduce_maps(m, absolute=False)[0], np.clip((signed + p) / (2 * p), -1, 1), atol=1e-15
    )
    assert (reduce_maps(m, absolute=True) == 1.0).sum() == 1  # the top 1 % of 100 pixels ties


def test_hand_computed_spearman() -> None:
    a = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 2, 2)
    b = torch.tensor([4.0, 3.0, 2.0, 1.0]).reshape(1, 1, 2, 2)
    assert float(spearman(a, b, absolute=True)[0]) == pytest.approx(-1.0, abs=1e-12)
    c = torch.tensor([1.0, 3.0, 2.0, 4.0]).reshape(1, 1, 2, 2)
    # ranks (1,2,3,4) vs (1,3,2,4): 1 − 6·Σd²/(n(n²−1)) = 1 − 6·2/60 = 0.8
    assert float(spearman(a, c, absolute=True)[0]) == pytest.approx(0.8, abs=1e-12)


def test_spearman_equals_scipy_on_the_reduced_maps_and_respects_foreground() -> None:
    a, b = maps(1), maps(2)
    ra, rb = reduce_maps(a, True), reduce_maps(b, True)
    ours = spearman(a, b, absolute=True)
    for i in range(3):
        assert float(ours[i]) == pytest.approx(
            spearmanr(ra[i].ravel(), rb[i].ravel())[0], abs=1e-12
        )
    fg = torch.zeros(3, 32, 32, dtype=torch.bool)
    fg[:, 8:24, 4:20] = True
    masked = spearman(a, b, absolute=False, foreground=fg)
    sa, sb = reduce_maps(a, False), reduce_maps(b, False)
    for i in range(3):
        m = fg[i].numpy()
        assert float(masked[i]) == pytest.approx(spearmanr(sa[i][m], sb[i][m])[0], abs=1e-12)


def test_a_ranked_reference_gives_what_spearman_gives_for_each_new_map() -> None:
    reference = maps(1)
    fg = torch.zeros(3, 32, 32, dtype=torch.bool)
    fg[:, 4:28, 8:24] = True
    for absolute in (True, False):
        for foreground in (None, fg):
            ranked = RankedMaps(reference, absolute=absolute, foreground=foreground)
            for seed in (2, 3, 4):
                new = maps(seed)
                expected = spearman(reference, new, absolute=absolute, foreground=foreground)
                ours = ranked.spearman(RankedMaps(new, absolute=absolute, foreground=foreground))
                torch.testing.assert_close(ours, expected, rtol=0, atol=1e-12)
                ra = reduce_maps(reference, absolute)
                rn = reduce_maps(new, absolute)
                m = fg[0].numpy() if foreground is not None else np.ones((32, 32), bool)
                assert float(ours[0]) == pytest.approx(spearmanr(ra[0][m], rn[0][m])[0], abs=1e-12)
    with pytest.raises(InvalidInputError, match="same foreground"):
        RankedMaps(reference).spearman(RankedMaps(maps(2), foreground=fg))


def test_scale_invariance_and_identity() -> None:
    a = maps(3)
    for fn in (
        spearman,
        lambda x, y: spearman(x, y, absolute=False),
        ssim,
        hog_similarity,
        lambda x, y: hog_similarity(x, y, correlation="spearman"),
    ):
        torch.testing.assert_close(fn(a, 7.0 * a), torch.ones(3, dtype=torch.float64))


def test_ssim_and_hog_equal_scikit_image_called_directly() -> None:
    """HOG similarity is Pearson's r of the descriptors by default, as Adebayo et al.
    (regression: it was Spearman's ρ); the rank form stays available."""
    a, b = maps(4, (2, 1, 224, 224)), maps(5, (2, 1, 224, 224))
    b = 0.5 * a + b  # partly similar
    ra, rb = reduce_maps(a, True), reduce_maps(b, True)
    ours_ssim, ours_hog = ssim(a, b), hog_similarity(a, b, correlation="spearman")
    pearson = hog_similarity(a, b)
    for i in range(2):
        direct = structural_similarity(
            ra[i],
            rb[i],
            data_range=1.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        assert float(ours_ssim[i]) == pytest.approx(direct, abs=1e-12)
        ha = hog(ra[i], orientations=9, pixels_per_cell=(16, 16), cells_per_block=(3, 3))
        hb = hog(rb[i], orientations=9, pixels_per_cell=(16, 16), cells_per_block=(3, 3))
        assert float(ours_hog[i]) == pytest.approx(spearmanr(ha, hb)[0], abs=1e-12)
        assert float(pearson[i]) == pytest.approx(pearsonr(ha, hb)[0], abs=1e-12)
        assert abs(float(pearson[i]) - float(ours_hog[i])) > 1e-3  # the two forms differ
    assert 0.1 < float(ours_ssim.min()) < 0.9  # neither identical nor unrelated
    with pytest.raises(InvalidOptionError, match="unknown correlation 'kendall'"):
        hog_similarity(a, b, correlation="kendall")


def test_constant_maps_give_nan_and_are_flagged() -> None:
    a = maps(6, (2, 1, 28, 28))
    flat = a.clone()
    flat[1] = 0.25
    assert constant_maps(flat).tolist() == [False, True]
    sp = spearman(a, flat)
    assert not math.isnan(float(sp[0])) and math.isnan(float(sp[1]))
    assert math.isnan(float(hog_similarity(a, flat)[1]))
    assert math.isnan(float(hog_similarity(a, flat, correlation="spearman")[1]))
    assert float(ssim(a, a)[0]) == pytest.approx(1.0)


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="differ in shape"):
        spearman(maps(0, (1, 1, 8, 8)), maps(0, (1, 1, 7, 7)))
    with pytest.raises(InvalidInputError, match="too small for HOG"):
        hog_similarity(maps(0, (1, 1, 8, 8)), maps(1, (1, 1, 8, 8)))
    with pytest.raises(InvalidInputError, match="must be a tensor of maps"):
        spearman(torch.zeros(4), torch.zeros(4))
