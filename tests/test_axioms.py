"""Hand-computed values and axioms on tiny models (float64, exact where the maths is)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import seethrough as st
from helpers import tiny_inputs, tiny_model
from seethrough.attribution.integrated_gradients import quadrature
from seethrough.core.baselines import gaussian_blur
from seethrough.errors import InvalidOptionError


class Linear(nn.Module):
    """f(x) = W · flatten(x) + b."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter(torch.randn(4, 3 * 5 * 5, generator=g, dtype=torch.float64))
        self.bias = nn.Parameter(torch.randn(4, generator=g, dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1) @ self.weight.T + self.bias


@pytest.fixture
def linear() -> Linear:
    return Linear().eval()


@pytest.fixture
def x5() -> Tensor:
    return torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def test_gradient_of_linear_model_is_its_weight_row(linear: Linear, x5: Tensor) -> None:
    ex = st.explain(linear, x5, "gradient", target=[1, 3])
    expected = torch.stack([linear.weight[1], linear.weight[3]]).view_as(x5)
    torch.testing.assert_close(ex.attributions, expected, rtol=0, atol=0)
    torch.testing.assert_close(ex.scores, (linear(x5)[[0, 1], [1, 3]]).detach())


def test_gradient_x_input_of_linear_model_sums_to_score_minus_bias(
    linear: Linear, x5: Tensor
) -> None:
    ex = st.explain(linear, x5, "gradient_x_input", target=2)
    torch.testing.assert_close(ex.attributions, linear.weight[2].view(1, 3, 5, 5) * x5)
    torch.testing.assert_close(
        ex.attributions.flatten(1).sum(1), ex.scores - linear.bias[2].detach()
    )


@pytest.mark.parametrize(
    "rule",
    [
        "adaptive",
        "gausslegendre",
        "riemann_left",
        "riemann_right",
        "riemann_middle",
        "riemann_trapezoid",
    ],
)
def test_integrated_gradients_of_linear_model_is_exact(
    linear: Linear, x5: Tensor, rule: str
) -> None:
    """For a linear model every quadrature rule is exact: IG = w ⊙ (x − x')."""
    baseline = torch.full_like(x5, 0.3)
    ex = st.explain(
        linear,
        x5,
        "integrated_gradients",
        target=0,
        steps=7 if rule != "adaptive" else 65,
        rule=rule,
        baseline=baseline,
    )
    torch.testing.assert_close(ex.attributions, linear.weight[0].view(1, 3, 5, 5) * (x5 - 0.3))
    torch.testing.assert_close(
        ex.completeness_error, torch.zeros(2, dtype=torch.float64), rtol=0, atol=1e-12
    )


def test_integrated_gradients_completeness_on_a_nonlinear_model() -> None:
    """Completeness (Sundararajan et al., Prop. 1): sum(IG) → f(x) − f(x') as steps grow."""
    model, x = tiny_model(), tiny_inputs(n=2)
    errors = [
        float(
            st.explain(
                model, x, "integrated_gradients", steps=s, rule="gausslegendre"
            ).relative_completeness_error.max()
        )
        for s in (4, 16, 64, 1024)
    ]
    # ReLUs make the integrand piecewise constant, so the error falls about as 1/steps
    # (measured: 0.244, 0.033, 0.014, 0.00034)
    assert errors == sorted(errors, reverse=True)
    assert errors[-1] < 1e-3
    # and the reported error is exactly sum(attr) − (f(x) − f(x'))
    ex = st.explain(model, x, "integrated_gradients", steps=16, rule="gausslegendre")
    with torch.no_grad():
        gap = model(x)[range(2), ex.targets] - model(torch.zeros_like(x))[range(2), ex.targets]
    torch.testing.assert_close(ex.completeness_error, ex.attributions.flatten(1).sum(1) - gap)


class Kinked(nn.Module):
    """f(x) = Σ_k c_k relu(x·1 − t_k) on a 1-pixel "image": along the path from 0 to
    x = 1 the integrand steps at α = t_k, so the trapezoid rule is exact only on segments
    without a kink."""

    def __init__(self, kinks: list[float], slopes: list[float]) -> None:
        super().__init__()
        self.t = torch.tensor(kinks, dtype=torch.float64)
        self.c = torch.tensor(slopes, dtype=torch.float64)

    def forward(self, x: Tensor) -> Tensor:
        z = torch.relu(x.flatten(1).sum(1, keepdim=True) - self.t)
        return (z * self.c).sum(1, keepdim=True)


def test_adaptive_rule_refines_at_the_kinks_until_within_tolerance() -> None:
    # kinks off the dyadic grid, one steep; f(1) − f(0) computed by hand
    kinks, slopes = [0.0303, 0.41, 0.7777], [5.0, -2.0, 1.0]
    model = Kinked(kinks, slopes).eval()
    x = torch.ones(1, 1, 1, 1, dtype=torch.float64)
    gap = sum(c * max(0.0, 1 - t) for t, c in zip(kinks, slopes))
    ex = st.explain(model, x, "integrated_gradients", target=0, tolerance=1e-6, steps=4096)
    torch.testing.assert_close(
        ex.scores - ex.baseline_scores, torch.tensor([gap], dtype=torch.float64)
    )
    # the adaptive rule's guarantee: |completeness error| ≤ tolerance × |gap| ...
    assert abs(float(ex.completeness_error[0])) <= 1e-6 * abs(gap)
    # ... where 65 evenly spaced points are 1000× off, and a uniform grid with as many
    # points as the rule used is still far off: the points went to the kinks
    start = st.explain(
        model, x, "integrated_gradients", target=0, steps=65, rule="riemann_trapezoid"
    )
    assert abs(float(start.completeness_error[0])) > 1e-3 * abs(gap)
    points = int(ex.path_points[0])
    assert 65 < points < 200
    uniform = st.explain(
        model, x, "integrated_gradients", target=0, steps=points, rule="riemann_trapezoid"
    )
    assert abs(float(uniform.completeness_error[0])) > 100 * abs(float(ex.completeness_error[0]))
    # IG of a 1-pixel input is the score change itself
    torch.testing.assert_close(
        ex.attributions.flatten(), torch.tensor([gap], dtype=torch.float64), rtol=2e-6, atol=0
    )
    # on a path without kinks it stops at the first 65 points, exactly
    smooth = st.explain(Kinked([-1.0], [2.0]).eval(), x, "integrated_gradients", target=0)
    assert int(smooth.path_points[0]) == 65
    assert abs(float(smooth.completeness_error[0])) < 1e-12


def test_adaptive_rule_meets_tolerance_on_a_relu_network() -> None:
    model, x = tiny_model(), tiny_inputs(n=3)
    start = st.explain(model, x, "integrated_gradients", steps=65, rule="riemann_trapezoid")
    for tolerance in (0.01, 1e-4):
        ex = st.explain(model, x, "integrated_gradients", tolerance=tolerance, steps=4096)
        assert (ex.path_points < 4096).all()
        assert (ex.relative_completeness_error <= tolerance).all()
        # rows already within tolerance on the first grid keep it
        kept = start.relative_completeness_error <= tolerance
        assert (ex.path_points[kept] == 65).all()
        torch.testing.assert_close(ex.attributions[kept], start.attributions[kept])
    assert (ex.path_points > 65).any()


def test_adaptive_rule_warns_when_it_runs_out_of_points() -> None:
    model, x = tiny_model(), tiny_inputs(n=1)
    with pytest.warns(UserWarning, match="reached steps=65 before the completeness error"):
        ex = st.explain(model, x, "integrated_gradients", steps=65, tolerance=1e-9)
    assert int(ex.path_points[0]) == 65
    with pytest.raises(InvalidOptionError, match="needs steps ≥ 65"):
        st.explain(model, x, "integrated_gradients", steps=64)
    with pytest.raises(InvalidOptionError, match="tolerance must be in"):
        st.explain(model, x, "integrated_gradients", tolerance=0)


def test_quadrature_matches_captum_points_and_weights() -> None:
    """Same points and weights as Captum; Captum's Riemann points come from a float32
    linspace, so they agree to float32 precision only (ours are float64)."""
    import captum.attr._utils.approximation_methods as captum

    for rule in ["gausslegendre", "riemann_left", "riemann_right", "riemann_middle"]:
        sizes, alphas = captum.approximation_parameters(rule)
        ours_alpha, ours_weight = quadrature(rule, 9)
        atol = 1e-15 if rule == "gausslegendre" else 1e-7
        np.testing.assert_allclose(ours_alpha, alphas(9), rtol=0, atol=atol)
        np.testing.assert_allclose(ours_weight, sizes(9), rtol=0, atol=1e-15)


def test_trapezoid_weights_sum_to_one_where_captums_do_not() -> None:
    """Deliberate difference: Captum's trapezoid weights sum to 1 − 1/n."""
    import captum.attr._utils.approximation_methods as captum

    sizes, alphas = captum.approximation_parameters("riemann_trapezoid")
    ours_alpha, ours_weight = quadrature("riemann_trapezoid", 9)
    np.testing.assert_allclose(ours_alpha, alphas(9), rtol=0, atol=1e-7)
    assert ours_weight.sum() == pytest.approx(1.0, abs=1e-15)
    assert sum(sizes(9)) == pytest.approx(1 - 1 / 9, abs=1e-15)
    np.testing.assert_allclose(ours_weight, [1 / 16] + [1 / 8] * 7 + [1 / 16], rtol=1e-15)


def test_integrated_gradients_baselines(linear: Linear, x5: Tensor) -> None:
    zeros = st.explain(
        linear, x5, "integrated_gradients", steps=2, rule="riemann_trapezoid", baseline="zeros"
    )
    torch.testing.assert_close(zeros.baselines, torch.zeros_like(x5))
    blur = st.explain(
        linear,
        x5,
        "integrated_gradients",
        steps=2,
        rule="riemann_trapezoid",
        baseline="blur",
        blur_sigma=1.0,
    )
    torch.testing.assert_close(blur.baselines, gaussian_blur(x5, 1.0))
    uniform = st.explain(
        linear,
        x5,
        "integrated_gradients",
        steps=2,
        rule="riemann_trapezoid",
        baseline="uniform",
        seed=4,
    )
    for i in range(2):
        assert uniform.baselines[i].min() >= x5[i].min()
        assert uniform.baselines[i].max() <= x5[i].max()
    again = st.explain(
        linear,
        x5,
        "integrated_gradients",
        steps=2,
        rule="riemann_trapezoid",
        baseline="uniform",
        seed=4,
    )
    assert torch.equal(uniform.baselines, again.baselines)
    const = st.explain(
        linear, x5, "integrated_gradients", steps=2, rule="riemann_trapezoid", baseline=-1.5
    )
    torch.testing.assert_close(const.baselines, torch.full_like(x5, -1.5))
    with pytest.raises(InvalidOptionError, match="does not broadcast"):
        st.explain(linear, x5, "integrated_gradients", baseline=torch.zeros(2, 5, 5))


def test_gaussian_blur_matches_scipy() -> None:
    from scipy import ndimage

    x = torch.randn(1, 2, 30, 30, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ours = gaussian_blur(x, 2.0)[0, 0].numpy()
    # scipy's "reflect" is half-sample symmetric; torch's "reflect" mirrors without the edge
    theirs = ndimage.gaussian_filter(x[0, 0].numpy(), sigma=2.0, mode="mirror", truncate=3.0)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


class ConvGap(nn.Module):
    """1×1 conv (the CAM layer) → global average pool → linear: Grad-CAM by hand."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.conv = nn.Conv2d(3, 4, 1).double()
        self.fc = nn.Linear(4, 3).double()
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.conv(x).mean(dim=(2, 3)))


def test_grad_cam_equals_hand_computation(x5: Tensor) -> None:
    """dS/dA_kij = W_tk / (h w), so α_k = W_tk / (h w) and the map is Σ_k α_k A_k."""
    model = ConvGap().eval()
    ex = st.explain(model, x5, "grad_cam", target=[0, 2], layer="conv")
    acts = model.conv(x5).detach()
    alpha = model.fc.weight[[0, 2]].detach() / 25
    expected = (alpha[:, :, None, None] * acts).sum(1, keepdim=True)
    torch.testing.assert_close(ex.attributions, expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(ex.channel_weights, alpha)
    assert ex.layer == "conv" and ex.resolution == "layer"
    assert (ex.attributions < 0).any(), "raw maps keep their negative part"
    relu = st.explain(model, x5, "grad_cam", target=[0, 2], layer="conv", relu=True)
    torch.testing.assert_close(relu.attributions, expected.clamp(min=0))


def test_guided_grad_cam_is_guided_backprop_times_upsampled_rectified_cam() -> None:
    model, x = tiny_model(), tiny_inputs(n=2)
    gb = st.explain(model, x, "guided_backprop", target=1).attributions
    cam = st.explain(model, x, "grad_cam", target=1, layer="bn2", relu=True).to_input_size()
    ggc = st.explain(model, x, "guided_grad_cam", target=1, layer="bn2")
    torch.testing.assert_close(ggc.attributions, gb * cam.attributions)
    assert ggc.layer == "bn2"


def test_smoothgrad_variants_by_hand() -> None:
    """Rebuild the noisy copies from the documented seeds and average by hand."""
    model, x = tiny_model(), tiny_inputs(n=2)
    samples, noise = 4, 0.2
    out = {
        v: st.explain(
            model, x, "smoothgrad", samples=samples, noise=noise, variant=v, seed=7, target=0
        ).attributions
        for v in ("smoothgrad", "smoothgrad_sq", "vargrad")
    }
    grads = []
    for i in range(2):
        g = torch.Generator().manual_seed(7 + i)
        sigma = noise * (x[i].max() - x[i].min())
        noisy = torch.stack(
            [
                x[i] + sigma * torch.randn(x.shape[1:], generator=g, dtype=x.dtype)
                for _ in range(samples)
            ]
        )
        grads.append(st.explain(model, noisy, "gradient", target=0).attributions)
    stacked = torch.stack(grads)  # (N, S, C, H, W)
    torch.testing.assert_close(out["smoothgrad"], stacked.mean(1))
    torch.testing.assert_close(out["smoothgrad_sq"], (stacked**2).mean(1))
    torch.testing.assert_close(out["vargrad"], stacked.var(1, unbiased=False))


def test_smoothgrad_wraps_any_method() -> None:
    model, x = tiny_model(), tiny_inputs(n=1)
    zero_noise = st.explain(
        model,
        x,
        "smoothgrad",
        base="integrated_gradients",
        base_options={"steps": 8, "rule": "gausslegendre"},
        samples=2,
        stdev=0.0,
    )
    ig = st.explain(model, x, "integrated_gradients", steps=8, rule="gausslegendre")
    torch.testing.assert_close(zero_noise.attributions, ig.attributions)
    assert zero_noise.settings["base"] == "integrated_gradients"
    cam = st.explain(model, x, "smoothgrad", base="grad_cam", samples=2, stdev=0.0)
    assert cam.resolution == "layer"
    torch.testing.assert_close(cam.attributions, st.explain(model, x, "grad_cam").attributions)
