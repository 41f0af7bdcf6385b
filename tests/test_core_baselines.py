"""The one baseline maker (``seethrough.core.baselines``) and the callers that use it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import seethrough as st
from helpers import tiny_inputs, tiny_model
from seethrough.attribution.surrogate import removal_baselines
from seethrough.core.baselines import BASELINE_KINDS, check_baseline, gaussian_blur, make_baseline
from seethrough.errors import InvalidOptionError
from seethrough.trust.faithfulness import aopc, deletion


def _x() -> torch.Tensor:
    g = torch.Generator().manual_seed(4)
    return torch.randn(3, 2, 9, 11, generator=g, dtype=torch.float64) * 2 + 0.5


def test_kinds_by_hand() -> None:
    x = _x()
    assert torch.equal(make_baseline("zeros", x), torch.zeros_like(x))
    assert torch.equal(make_baseline(-1.5, x), torch.full_like(x, -1.5))
    mean = make_baseline("mean", x)
    for i in range(3):
        for c in range(2):
            assert torch.all(mean[i, c] == x[i, c].mean())
    row = torch.arange(11, dtype=torch.float32)
    tensor = make_baseline(row, x)
    assert tensor.dtype == x.dtype and torch.equal(tensor[2, 1, 5], row.double())
    tensor[0, 0, 0, 0] = 99.0  # a new tensor, not a view of the caller's
    assert row[0] == 0.0


def test_blur_radius_matches_scipy_truncation() -> None:
    from scipy import ndimage

    x = torch.randn(1, 1, 30, 30, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    # radius r: scipy's kernel reaches int(truncate * sigma + 0.5) = r pixels
    for sigma, radius in [(1.75, 5), (1.75, 6), (2.0, 4)]:
        ours = gaussian_blur(x, sigma, radius=radius)[0, 0].numpy()
        truncate = radius / sigma
        theirs = ndimage.gaussian_filter(x[0, 0].numpy(), sigma, mode="mirror", truncate=truncate)
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
    # the default reach is ⌈3σ⌉
    assert torch.equal(gaussian_blur(x, 1.75), gaussian_blur(x, 1.75, radius=6))


def test_uniform_per_row_streams_and_one_stream() -> None:
    x = _x()

    def rows(i: int) -> torch.Generator:
        return torch.Generator().manual_seed(10 + i)

    per_row = make_baseline("uniform", x, generator=rows)
    for i in range(3):  # each row within its image's range, independent of the batch
        assert x[i].min() <= per_row[i].min() and per_row[i].max() <= x[i].max()
        alone = make_baseline("uniform", x[i : i + 1], generator=lambda _, i=i: rows(i))
        assert torch.equal(alone[0], per_row[i])
    batch = make_baseline("uniform", x, generator=torch.Generator().manual_seed(3))
    draws = torch.rand(x.shape, generator=torch.Generator().manual_seed(3), dtype=x.dtype)
    low, high = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(batch, low + (high - low) * draws, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("baseline", "options", "message"),
    [
        ("noise", {}, "unknown baseline 'noise' \\(valid: zeros, blur, mean, uniform"),
        ("uniform", {"kinds": ("zeros", "blur")}, "valid: zeros, blur, a number or a tensor"),
        (True, {}, "baseline must be one of"),
        (None, {}, "baseline must be one of"),
        ("blur", {"blur_sigma": 0.0}, "blur_sigma must be positive"),
        ("blur", {"blur_sigma": "abc"}, "blur_sigma must be a positive number"),
        ("uniform", {}, "pass a generator"),
        (torch.zeros(5), {}, "does not broadcast"),
    ],
)
def test_bad_baselines_name_the_problem(baseline: object, options: dict, message: str) -> None:
    with pytest.raises(InvalidOptionError, match=message):
        make_baseline(baseline, _x(), **options)  # type: ignore[arg-type]


def test_check_names_the_option() -> None:
    check_baseline(0.5, BASELINE_KINDS)
    with pytest.raises(InvalidOptionError, match="unknown replacement 'x'"):
        check_baseline("x", BASELINE_KINDS, name="replacement")


# Regressions: each of these was silently accepted by one of the three makers.


def test_integrated_gradients_refuses_a_bool_baseline() -> None:
    # before: True passed the check and became uniform noise
    with pytest.raises(InvalidOptionError, match="baseline must be one of"):
        st.explain(tiny_model(), tiny_inputs(1), "integrated_gradients", baseline=True)


def test_superpixel_methods_refuse_a_baseline_of_the_wrong_type() -> None:
    # before: None passed the check and became the blur
    with pytest.raises(InvalidOptionError, match="baseline must be one of"):
        st.explain(tiny_model(), tiny_inputs(1), "lime", samples=8, baseline=None)


def test_deletion_refuses_an_unknown_baseline() -> None:
    # before: any unknown name silently became each image's mean
    model, x = tiny_model(), tiny_inputs(1)
    ex = st.explain(model, x, "gradient")
    with pytest.raises(InvalidOptionError, match="unknown baseline 'uniform'"):
        deletion(model, ex, steps=4, baseline="uniform")
    with pytest.raises(InvalidOptionError, match="unknown replacement 'noise'"):
        aopc(model, ex, patch=4, regions=2, replacement="noise")


def test_surrogate_blur_keeps_its_own_width() -> None:
    from scipy import ndimage

    x = tiny_inputs(1, size=28)  # σ = 28/16 = 1.75, the kernel reaching ⌊3σ⌋ = 5 pixels
    theirs = ndimage.gaussian_filter(x[0, 0].numpy(), 1.75, mode="mirror", truncate=5 / 1.75)
    ours = removal_baselines(x, "blur")[0, 0].numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
