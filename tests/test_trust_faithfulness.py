"""Faithfulness, robustness and complexity metrics: axioms on linear and constant models,
direct implementations of each paper's definition on tiny models, and Quantus's ROAD
imputation as an oracle."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import seethrough as st
from helpers import Snapshot, tiny_inputs, tiny_model
from seethrough.errors import InvalidOptionError
from seethrough.trust.faithfulness import (
    aopc,
    deletion,
    infidelity,
    input_invariance,
    insertion,
    max_sensitivity,
    noisy_linear_imputation,
    pixel_ranks,
    road,
    sparseness,
)


class Linear(nn.Module):
    """f(x) = W·x + b on flattened (3, 6, 6) inputs, float64."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.weight = nn.Parameter(torch.randn(4, 108, generator=g, dtype=torch.float64))
        self.bias = nn.Parameter(torch.randn(4, generator=g, dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1) @ self.weight.T + self.bias


class Constant(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        row = torch.tensor([0.5, 2.0, -1.0], dtype=torch.float64)
        return row.expand(len(x), 3) + self.scale * x.flatten(1)[:, :1]


def linear_case() -> tuple[nn.Module, Tensor]:
    x = torch.randn(3, 3, 6, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return Linear().eval(), x


def test_linear_model_gradient_has_zero_infidelity_and_max_sensitivity() -> None:
    model, x = linear_case()
    ex = st.explain(model, x, "gradient", target=[0, 1, 2])
    for rescale in (True, False):
        inf = infidelity(model, ex, samples=16, rescale=rescale)
        torch.testing.assert_close(
            inf.scores, torch.zeros(3, dtype=torch.float64), atol=1e-18, rtol=0
        )
    torch.testing.assert_close(inf.beta, torch.ones(3, dtype=torch.float64))
    ms = max_sensitivity(model, ex, samples=4)
    assert float(ms.scores.abs().max()) == 0.0
    assert not inf.higher_is_better and ms.value_range == (0.0, np.inf)


def test_constant_score_curve_has_that_constant_as_auc() -> None:
    model, x = Constant().eval(), tiny_inputs(n=2)
    ex = st.explain(model, x, "gradient_x_input", target=[1, 2])
    logit = deletion(model, ex, steps=10, score="logit")
    torch.testing.assert_close(logit.scores, torch.tensor([2.0, -1.0], dtype=torch.float64))
    prob = insertion(model, ex, steps=7)
    expected = torch.softmax(torch.tensor([0.5, 2.0, -1.0], dtype=torch.float64), 0)[[1, 2]]
    torch.testing.assert_close(prob.scores, expected)


def _direct_deletion(model: nn.Module, x: Tensor, phi: Tensor, target: int, steps: int) -> float:
    """Petsiuk et al.'s deletion, written out: sort pixels by relevance, zero them in
    ``steps`` equal increments, softmax score after each, trapezoid area."""
    h, w = x.shape[1:]
    order = np.argsort(-phi.sum(0).flatten().numpy(), kind="stable")
    values = []
    for k in range(steps + 1):
        n = round(k / steps * h * w)
        img = x.clone().reshape(x.shape[0], -1)
        img[:, order[:n]] = 0.0
        with torch.no_grad():
            p = torch.softmax(model(img.reshape(1, *x.shape)), 1)[0, target]
        values.append(float(p))
    return float(np.trapezoid(values, np.linspace(0, 1, steps + 1)))


def test_deletion_equals_the_papers_definition_written_out() -> None:
    model, x = tiny_model(), tiny_inputs(n=2)
    ex = st.explain(model, x, "gradient_x_input", target=[1, 3])
    ours = deletion(model, ex, steps=12)
    for i, t in enumerate([1, 3]):
        direct = _direct_deletion(model, x[i], ex.attributions[i], t, 12)
        assert float(ours.scores[i]) == pytest.approx(direct, abs=1e-12)
    assert ours.curve.shape == (2, 13) and float(ours.x_values[-1]) == 1.0


def test_aopc_equals_a_direct_loop() -> None:
    model, x = tiny_model(), tiny_inputs(n=2, size=12)
    ex = st.explain(model, x, "gradient", target=[0, 4])
    ours = aopc(model, ex, patch=3, regions=6, replacement="zeros", score="logit")
    for i, t in enumerate([0, 4]):
        cells = ex.attributions[i].sum(0).reshape(4, 3, 4, 3).sum(dim=(1, 3)).flatten()
        order = torch.argsort(-cells, stable=True)
        img = x[i].clone()
        scores = []
        for k in range(7):
            if k:
                r, c = divmod(int(order[k - 1]), 4)
                img[:, 3 * r : 3 * r + 3, 3 * c : 3 * c + 3] = 0.0
            with torch.no_grad():
                scores.append(float(model(img[None])[0, t]))
        direct = np.mean([scores[0] - s for s in scores])
        assert float(ours.scores[i]) == pytest.approx(direct, abs=1e-12)


def test_sparseness_hand_values_and_direct_gini() -> None:
    one_hot = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    one_hot[0, 0, 1, 2] = -3.0
    uniform = torch.full((1, 1, 4, 4), 0.7, dtype=torch.float64)
    model, x = Linear().eval(), linear_case()[1][:1]
    ex = st.explain(model, x, "gradient", target=0)
    assert float(sparseness(ex.replace(attributions=one_hot)).scores[0]) == pytest.approx(15 / 16)
    assert float(sparseness(ex.replace(attributions=uniform)).scores[0]) == pytest.approx(0.0)
    a = np.sort(np.abs(ex.attributions.numpy().ravel()))
    n = a.size
    gini = 1 - 2 * np.sum((n - np.arange(1, n + 1) + 0.5) * a) / (n * a.sum())  # Wikipedia's form
    assert float(sparseness(ex).scores[0]) == pytest.approx(gini, abs=1e-12)
    assert np.isnan(float(sparseness(ex.replace(attributions=0 * one_hot)).scores[0]))


def test_infidelity_equals_a_direct_computation_with_the_same_perturbations() -> None:
    model, x = tiny_model(), tiny_inputs(n=2)
    ex = st.explain(model, x, "gradient", target=[2, 2])
    ours = infidelity(model, ex, samples=8, noise=0.1, seed=4)
    g = torch.Generator().manual_seed(4)
    perturbations = 0.1 * torch.randn((2, 8, *x.shape[1:]), generator=g, dtype=x.dtype)
    for i in range(2):
        with torch.no_grad():
            f0 = model(x[i : i + 1])[0, 2]
            df = torch.stack([f0 - model((x[i] - p)[None])[0, 2] for p in perturbations[i]])
        s = (perturbations[i] * ex.attributions[i]).flatten(1).sum(1)
        beta = (s * df).sum() / (s * s).sum()
        assert float(ours.scores[i]) == pytest.approx(
            float(((beta * s - df) ** 2).mean()), rel=1e-9
        )


def test_road_imputation_equals_quantus_and_recovers_a_linear_ramp() -> None:
    quantus_perturb = pytest.importorskip("quantus.functions.perturb_func")
    yy, xx = torch.meshgrid(torch.arange(9.0), torch.arange(11.0), indexing="ij")
    ramp = (0.3 * yy - 0.2 * xx + 1.0)[None].double()
    removed = torch.zeros(9, 11, dtype=torch.bool)
    removed[3:6, 4:8] = True
    exact = noisy_linear_imputation(ramp, removed, noise=0.0)
    torch.testing.assert_close(exact, ramp)  # the mean of neighbours of a plane is the plane
    img = torch.rand(3, 9, 11, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    removed = torch.rand(9, 11, generator=torch.Generator().manual_seed(1)) < 0.4
    ours = noisy_linear_imputation(img, removed, noise=0.0)
    indices = np.flatnonzero(removed.numpy().ravel())
    theirs = quantus_perturb.noisy_linear_imputation(
        arr=img.numpy().copy(), indices=indices, noise=0.0
    )
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=0, atol=1e-10)


def test_road_runs_morf_and_lerf_and_leaves_the_model_alone() -> None:
    model, x = tiny_model(), tiny_inputs(n=2)
    ex = st.explain(model, x, "gradient_x_input", target=[1, 1])
    before = Snapshot.take(model, x)
    result = road(model, ex, percentages=(20, 60), seed=1)
    before.assert_unchanged(model, x)
    assert result.curve.shape == (2, 2, 2)
    torch.testing.assert_close(result.scores, result.lerf - result.morf)
    again = road(model, ex, percentages=(20, 60), seed=1)
    assert torch.equal(result.curve, again.curve)


def test_input_invariance_gradient_passes_gradient_times_input_fails() -> None:
    model, x = tiny_model(), tiny_inputs(n=2)
    grad = input_invariance(model, st.explain(model, x, "gradient", target=1))
    assert bool(grad.invariant.all()), grad.scores
    gxi = input_invariance(model, st.explain(model, x, "gradient_x_input", target=1))
    assert not bool(gxi.invariant.any()) and float(gxi.scores.min()) > 0.05


def test_pixel_ranks_most_relevant_first() -> None:
    maps = torch.tensor([[[[0.1, 0.9], [0.5, -2.0]]]])
    assert pixel_ranks(maps).tolist() == [[[2, 0], [1, 3]]]
    assert pixel_ranks(maps, absolute=True).tolist() == [[[3, 1], [2, 0]]]


def test_road_curve_equals_imputing_and_scoring_by_hand() -> None:
    model, x = tiny_model(), tiny_inputs(n=1)
    ex = st.explain(model, x, "gradient_x_input", target=2)
    ours = road(model, ex, percentages=(25, 50), noise=0.0)
    ranks = pixel_ranks(ex.attributions)[0]
    pixels = ranks.numel()
    for row, most in enumerate((True, False)):
        for col, p in enumerate((25, 50)):
            count = round(pixels * p / 100)
            removed = ranks < count if most else ranks >= pixels - count
            image = noisy_linear_imputation(x[0], removed, noise=0.0)
            with torch.no_grad():
                prob = torch.softmax(model(image[None]), 1)[0, 2]
            assert float(ours.curve[0, row, col]) == pytest.approx(float(prob), abs=1e-12)


def test_max_sensitivity_equals_a_direct_maximum() -> None:
    model, x = tiny_model(), tiny_inputs(n=2)
    ex = st.explain(model, x, "gradient", target=[0, 3])
    ours = max_sensitivity(model, ex, radius=0.05, samples=3, seed=9)
    relative = max_sensitivity(model, ex, radius=0.05, samples=3, seed=9, relative=True)
    g = torch.Generator().manual_seed(9)
    deltas = torch.rand((3, *x.shape), generator=g, dtype=x.dtype) * 2 - 1
    for i, t in enumerate([0, 3]):
        norms = []
        for j in range(3):
            moved = st.explain(
                model, x[i : i + 1] + 0.05 * deltas[j, i : i + 1], "gradient", target=t
            )
            norms.append(float((moved.attributions[0] - ex.attributions[i]).norm()))
        assert float(ours.scores[i]) == pytest.approx(max(norms), rel=1e-9)
        expected = max(norms) / float(ex.attributions[i].norm())
        assert float(relative.scores[i]) == pytest.approx(expected, rel=1e-9)


def test_input_invariance_of_a_cam_with_a_named_layer() -> None:
    model, x = tiny_model(), tiny_inputs(n=2)
    cam = st.explain(model, x, "grad_cam", target=1, layer="conv3")
    result = input_invariance(model, cam)  # the layer is found inside the twin
    assert bool(result.invariant.all()), result.scores


# ------------------------------------------------------------------ ties in the ranking


class RegionMean(nn.Module):
    """Logit 0 is the mean of a 16×16 corner of a (1, 32, 32) input; logit 1 is 0."""

    def __init__(self, corner: str) -> None:
        super().__init__()
        self.rows = slice(0, 16) if corner == "top_left" else slice(16, 32)
        self.scale = nn.Parameter(torch.ones((), dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        inside = self.scale * x[:, 0, self.rows, self.rows].mean(dim=(1, 2))
        return torch.stack([inside, torch.zeros_like(inside)], dim=1)


def _constant_map_case(corner: str) -> tuple[nn.Module, st.Explanation]:
    model = RegionMean(corner).eval()
    x = torch.ones(1, 1, 32, 32, dtype=torch.float64)
    ex = st.explain(model, x, "gradient", target=0)
    return model, ex.replace(attributions=torch.zeros_like(x))


def test_a_constant_maps_deletion_does_not_depend_on_where_the_object_is() -> None:
    """A constant map says nothing about where the object is, so its deletion curve must
    not either. Raster-order ties removed the top-left corner first: AUC 0.25 for a model
    that reads the top-left 16×16 corner vs 0.75 for one reading the bottom-right one.
    With random ties the fraction of the corner left after removing n of 1024 pixels is
    hypergeometric with mean 1 − n/1024, so the expected AUC is exactly 0.5 for both
    (16 steps of 64 pixels); simulated sd of one draw: 0.016 per AUC, 0.025 for the
    difference (2000 draws), so the bounds below are ≥ 4 sd (one seed) and ≥ 5 sd (the
    mean of 8 seeds)."""
    top, top_ex = _constant_map_case("top_left")
    bottom, bottom_ex = _constant_map_case("bottom_right")
    kwargs = {"steps": 16, "score": "logit"}
    one = float(deletion(top, top_ex, **kwargs).scores[0])
    other = float(deletion(bottom, bottom_ex, **kwargs).scores[0])
    assert abs(one - other) < 0.1, (one, other)
    seeds = range(8)
    tops = [float(deletion(top, top_ex, seed=s, **kwargs).scores[0]) for s in seeds]
    bottoms = [float(deletion(bottom, bottom_ex, seed=s, **kwargs).scores[0]) for s in seeds]
    assert abs(np.mean(tops) - np.mean(bottoms)) < 0.05
    assert abs(np.mean(tops) - 0.5) < 0.03 and abs(np.mean(bottoms) - 0.5) < 0.03
    raster = deletion(top, top_ex, ties="raster", **kwargs)  # the old order, on request
    assert float(raster.scores[0]) == pytest.approx(0.25, abs=1e-12)  # 2 rows a step


def test_a_constant_maps_aopc_and_road_do_not_depend_on_where_the_object_is() -> None:
    """AOPC ranks 4×4 regions, ROAD pixels; both broke ties in raster order. For ROAD on a
    constant map MoRF and LeRF remove equally uninformative pixels, so LeRF − MoRF must
    average out near 0 (raster order: MoRF removed the top rows, LeRF the bottom rows,
    and the gap was 0.54 on an image that is 1 in the top-left corner)."""
    top, top_ex = _constant_map_case("top_left")
    bottom, bottom_ex = _constant_map_case("bottom_right")
    kwargs = {"patch": 4, "regions": 32, "replacement": "zeros"}
    tops = [float(aopc(top, top_ex, seed=s, **kwargs).scores[0]) for s in range(32)]
    bottoms = [float(aopc(bottom, bottom_ex, seed=s, **kwargs).scores[0]) for s in range(32)]
    # expected mean drop: (1/33) Σ_k k/64 = 0.25 for both corners (16 of 64 cells inside);
    # simulated sd of one seed 0.069, so of a mean of 32: 0.012, of a difference: 0.017.
    # Raster order: 0.56 for the top-left corner, 0 for the bottom-right one.
    assert abs(np.mean(tops) - np.mean(bottoms)) < 0.07
    assert abs(np.mean(tops) - 0.25) < 0.05 and abs(np.mean(bottoms) - 0.25) < 0.05
    corner = torch.zeros_like(top_ex.inputs)
    corner[..., :16, :16] = 1.0  # imputing a constant image would change nothing
    top_ex = top_ex.replace(inputs=corner)
    kwargs = {"percentages": (25, 50), "noise": 0.0, "score": "logit"}
    gaps = [float(road(top, top_ex, seed=s, **kwargs).scores[0]) for s in range(8)]
    assert abs(np.mean(gaps)) < 0.03, gaps  # per seed: sd 0.01; raster order: 0.54
    assert float(road(top, top_ex, ties="raster", **kwargs).scores[0]) > 0.5


def test_random_ties_are_seeded_and_leave_maps_without_ties_as_before() -> None:
    flat = torch.zeros(2, 3, 6, 6)
    flat[:, :, 0, 0] = 1.0  # one clear winner, 35 tied pixels
    a, b = pixel_ranks(flat, seed=5), pixel_ranks(flat, seed=5)
    assert torch.equal(a, b)
    assert not torch.equal(a, pixel_ranks(flat, seed=6))
    assert torch.equal(a[0], a[1])  # one permutation per call: a batch ranks like its rows
    assert int(a[0, 0, 0]) == 0 and sorted(a[0].flatten().tolist()) == list(range(36))
    assert pixel_ranks(flat, ties="raster")[0].flatten().tolist() == list(range(36))
    maps = torch.randn(3, 3, 7, 7, generator=torch.Generator().manual_seed(2))
    old = torch.argsort(torch.argsort(-maps.sum(1).flatten(1), dim=1, stable=True), dim=1)
    for seed in (0, 1, 17):
        assert torch.equal(pixel_ranks(maps, seed=seed).flatten(1), old)
    model, x = tiny_model(), tiny_inputs(n=2)
    ex = st.explain(model, x, "gradient_x_input", target=[1, 3])
    for metric in (deletion, insertion):
        new = metric(model, ex, steps=9, seed=3)
        assert torch.equal(new.curve, metric(model, ex, steps=9, ties="raster").curve)
        assert new.settings["ties"] == "random" and new.settings["seed"] == 3
    with pytest.raises(InvalidOptionError, match="unknown ties 'first'"):
        deletion(model, ex, ties="first")


# --------------------------------------------------------------------- typed results


def test_every_metric_reports_named_fields_not_a_string_keyed_dict() -> None:
    """DESIGN rule 6: what a metric reports besides its scores is a named field of a
    frozen result (was ``extra["morf"]``, ``extra["area_fraction"]``, …), and the JSON
    form keeps those names."""
    from seethrough.reporting.serialize import to_jsonable
    from seethrough.trust.localisation import (
        energy_pointing_game,
        pointing_game,
        relevance_mass_accuracy,
        relevance_rank_accuracy,
    )

    model, x = tiny_model(), tiny_inputs(n=2)
    ex = st.explain(model, x, "gradient", target=1)
    mask = torch.zeros(2, *x.shape[2:], dtype=torch.bool)
    mask[:, :3] = True
    invariance, pointing = input_invariance(model, ex), pointing_game(ex, mask)
    cases: list[tuple[Any, dict[str, tuple[int, ...]]]] = [
        (road(model, ex, percentages=(30, 60)), {"morf": (2,), "lerf": (2,), "correct": (2, 2, 2)}),
        (infidelity(model, ex, samples=3), {"beta": (2,)}),
        (invariance, {"invariant": (2,)}),
        (pointing, {"area_fraction": (2,), "maxima": (2,), "point": (2, 2)}),
        (energy_pointing_game(ex, mask), {"area_fraction": (2,), "energy": (2,)}),
        (relevance_mass_accuracy(ex, mask), {"area_fraction": (2,)}),
        (relevance_rank_accuracy(ex, mask), {"area_fraction": (2,)}),
        (deletion(model, ex, steps=4), {}),
    ]
    for result, named in cases:
        kind = type(result).__name__
        fields = {f.name for f in dataclasses.fields(result)}
        assert "extra" not in fields and set(named) <= fields, kind
        for name, shape in named.items():
            assert tuple(getattr(result, name).shape) == shape, (kind, name)
        with pytest.raises(dataclasses.FrozenInstanceError):
            result.scores = result.scores
        assert set(named) <= set(to_jsonable(result)), kind
    assert torch.equal(invariance.invariant, invariance.scores <= 1e-5)
    area = mask.flatten(1).double().mean(dim=1)
    torch.testing.assert_close(pointing.area_fraction, area, rtol=0, atol=0)
