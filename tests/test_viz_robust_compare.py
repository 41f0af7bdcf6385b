"""The comparison study's figures (``viz.plot_comparison``, ``plot_alignment``,
``plot_class_images``, ``plot_fragility``), on results built by hand: every picture,
point and box is checked against the numbers it must show."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.axes import Axes
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure
from torch import Tensor

from seethrough.errors import InvalidInputError, InvalidOptionError
from seethrough.robust.compare import (
    STATISTICS,
    CompareSettings,
    Estimate,
    MethodSummary,
    ModelSummary,
    RobustnessComparison,
)
from seethrough.robust.fragility import FragilityResult, FragilitySettings
from seethrough.viz import (
    colorize,
    plot_alignment,
    plot_class_images,
    plot_comparison,
    plot_fragility,
)

MODELS = ("plain", "robust", "gradreg")
METHODS = ("gradient", "grad_cam")
K, H, W = 3, 8, 8  # images shown, image size


def _estimate(value: float, half: float = 0.05, n: int = 20) -> Estimate:
    return Estimate(value, value - half, value + half, n)


def _settings(am_per_class: int = 1) -> CompareSettings:
    return CompareSettings(
        n=20, methods=METHODS, seed=0, resamples=200, level=0.9, alignment_space="pixels",
        preprocess=None, sanity_images=None, sanity_granularity="block", faithfulness=False,
        faithfulness_steps=10, deletion_baseline="zeros", insertion_baseline="blur",
        sensitivity_images=None, sensitivity_radius=0.05, sensitivity_radius_input=0.05,
        sensitivity_samples=10, activation_maximization=True, am_steps=4,
        am_per_class=am_per_class, am_transforms="none", judge=None, figure_images=K,
        statistics=STATISTICS,
    )  # fmt: skip


def _maps() -> dict[tuple[str, str], Tensor]:
    """Gradient maps at input resolution whose shape is the same for every model but whose
    scale differs by a factor of 10 per model; Grad-CAM maps at a 2 × 2 layer resolution
    (one hot cell per image)."""
    torch.manual_seed(0)
    shape = torch.rand(K, 1, H, W)
    maps = {}
    for i, model in enumerate(MODELS):
        maps[(model, "gradient")] = shape * 10.0**i
        cam = torch.zeros(K, 1, 2, 2)
        cam[:, 0, i % 2, 0] = 1.0
        maps[(model, "grad_cam")] = cam
    return maps


def _study(
    alignments: tuple[float, ...] = (0.1, 0.3, 0.2), am: bool = True
) -> RobustnessComparison:
    models = tuple(
        ModelSummary(
            name,
            clean_accuracy=_estimate(0.9),
            alignment=_estimate(a, half=0.02 * (i + 1)),
            alignment_values=torch.full((20,), a, dtype=torch.float64),
            am_images=torch.full((4, 1, H, W), i / 3.0) if am and i != 1 else None,
        )
        for i, (name, a) in enumerate(zip(MODELS, alignments, strict=True))
    )
    rows = tuple(
        MethodSummary(model, method, _estimate(0.5), _estimate(0.4))
        for model in MODELS
        for method in METHODS
    )
    inputs = torch.linspace(0, 1, K * H * W).view(K, 1, H, W)
    return RobustnessComparison(models, rows, METHODS, _maps(), inputs, _settings())


def _image_axes(figure: Figure) -> list[Axes]:
    return [ax for ax in figure.axes if ax.images]


# ------------------------------------------------------------------ plot_comparison


def test_comparison_one_method_rows_are_images_columns_are_models() -> None:
    study = _study()
    figure = plot_comparison(study, "gradient")
    axes = _image_axes(figure)
    assert len(axes) == K * (1 + len(MODELS))
    top = axes[: 1 + len(MODELS)]
    assert [ax.get_title() for ax in top] == ["input", *MODELS]
    assert [axes[i * (1 + len(MODELS))].get_ylabel() for i in range(K)] == [
        "image 0",
        "image 1",
        "image 2",
    ]
    # the input column shows the image (one channel as grey, min-max scaled without a
    # transform): pixel (0, 0) of image 0 is the darkest, 0
    picture = np.asarray(axes[0].images[0].get_array())
    assert picture.shape == (H, W, 3) and picture[0, 0].tolist() == [0.0, 0.0, 0.0]


def test_comparison_scales_each_map_on_its_own_so_a_scaled_map_looks_the_same() -> None:
    """The three models' gradient maps have one shape at scales 1, 10 and 100: each is
    divided by its own 99.5th percentile, so the three pictures are identical — and equal
    to the colours of the map divided by its percentile, computed here by hand."""
    study = _study()
    axes = _image_axes(plot_comparison(study, "gradient"))
    columns = 1 + len(MODELS)
    for i in range(K):
        shown = [np.asarray(axes[i * columns + c].images[0].get_array()) for c in (1, 2, 3)]
        raw = study.maps[("plain", "gradient")][i, 0].double()
        scale = torch.quantile(raw.abs().flatten(), 0.995)
        expected = colorize((raw / scale).clamp(0, 1).float().numpy(), "magnitude")
        np.testing.assert_allclose(shown[0], expected, atol=1e-6)
        np.testing.assert_allclose(shown[1], shown[0], atol=1e-6)
        np.testing.assert_allclose(shown[2], shown[0], atol=1e-6)


def test_comparison_upsamples_layer_maps_and_shows_every_method() -> None:
    """``method=None``: the models side by side within each method. A 2 × 2 Grad-CAM map
    with one hot cell is upsampled to the image size: its hot quadrant is the brightest."""
    study = _study()
    axes = _image_axes(plot_comparison(study))
    columns = 1 + len(MODELS) * len(METHODS)
    assert len(axes) == K * columns
    titles = [ax.get_title() for ax in axes[:columns]]
    assert titles == ["input", *(f"{m}\n{method}" for method in METHODS for m in MODELS)]
    hot = colorize(np.ones((1, 1)), "magnitude")[0, 0]
    for c, model in enumerate(MODELS):
        picture = np.asarray(axes[1 + len(MODELS) + c].images[0].get_array())
        assert picture.shape == (H, W, 3)
        row = 0 if c % 2 == 0 else H - 1  # the hot cell: [0, 0] or [1, 0] of the 2 × 2 map
        np.testing.assert_allclose(picture[row, 0], hot, atol=1e-6)
        assert model in titles[1 + len(MODELS) + c]


def test_comparison_signed_display_keeps_the_sign() -> None:
    study = _study()
    flipped = {key: -value for key, value in study.maps.items()}
    negative = RobustnessComparison(
        study.models, study.methods, METHODS, flipped, study.inputs, study.settings
    )
    axes = _image_axes(plot_comparison(negative, "gradient", display="signed"))
    raw = -study.maps[("plain", "gradient")][0, 0].double()
    scale = torch.quantile(raw.abs().flatten(), 0.995)
    expected = colorize((raw / scale).clamp(-1, 1).float().numpy(), "signed")
    np.testing.assert_allclose(np.asarray(axes[1].images[0].get_array()), expected, atol=1e-6)


def test_comparison_refuses_an_unknown_method_or_display() -> None:
    study = _study()
    with pytest.raises(InvalidOptionError, match=r"unknown method 'gradiant'; did you mean"):
        plot_comparison(study, "gradiant")
    with pytest.raises(InvalidOptionError, match="display must be 'signed' or 'magnitude'"):
        plot_comparison(study, "gradient", display="absolute")


# ------------------------------------------------------------------ plot_alignment


def _errorbar_points(ax: Axes) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per errorbar series: x, y, and the lower and upper ends of its bars."""
    found = []
    for container in ax.containers:
        assert isinstance(container, ErrorbarContainer)
        line, caps, _ = container.lines
        x, y = (np.asarray(v, dtype=float) for v in line.get_data())
        low, high = (np.asarray(c.get_ydata(), dtype=float) for c in caps)
        found.append((x, y, low, high))
    return found


def test_alignment_against_training_eps_with_the_others_apart() -> None:
    """``plain`` at ε = 0 and ``robust`` at 0.1 on the ε axis (in order of ε), ``gradreg``
    (no ε) in the panel at the right; every point at the median and its bar at the
    interval's ends."""
    study = _study()
    figure = plot_alignment(study, {"robust": 0.1, "plain": 0.0, "gradreg": None})
    left, right = figure.axes
    [(x, y, low, high)] = _errorbar_points(left)
    np.testing.assert_allclose(x, [0.0, 0.1])
    np.testing.assert_allclose(y, [0.1, 0.3])
    np.testing.assert_allclose(low, [0.1 - 0.02, 0.3 - 0.04])
    np.testing.assert_allclose(high, [0.1 + 0.02, 0.3 + 0.04])
    assert [t.get_text() for t in left.texts] == ["plain", "robust"]
    [(x, y, low, high)] = _errorbar_points(right)
    np.testing.assert_allclose(y, [0.2])
    np.testing.assert_allclose([low[0], high[0]], [0.2 - 0.06, 0.2 + 0.06])
    assert [t.get_text() for t in right.get_xticklabels()] == ["gradreg"]
    assert left.get_xlabel() == "training ε" and "90% bootstrap" in figure.get_suptitle()
    assert "over 20 images" in figure.get_suptitle()


def test_alignment_without_eps_shows_every_model_by_name() -> None:
    figure = plot_alignment(_study())
    [ax] = figure.axes
    [(_, y, _, _)] = _errorbar_points(ax)
    np.testing.assert_allclose(y, [0.1, 0.3, 0.2])
    assert [t.get_text() for t in ax.get_xticklabels()] == list(MODELS)


def test_alignment_with_no_interval_draws_the_point_without_a_bar() -> None:
    """One image: the bounds are NaN; the point is drawn, its bar has zero length."""
    study = _study()
    one = ModelSummary("plain", _estimate(1.0), Estimate(0.4, math.nan, math.nan, 1), torch.ones(1))
    single = RobustnessComparison(
        (one,), study.methods[:2], METHODS, study.maps, study.inputs, study.settings
    )
    [(_, y, low, high)] = _errorbar_points(plot_alignment(single, {"plain": 0.0}).axes[0])
    assert y.tolist() == [0.4] and low.tolist() == [0.4] and high.tolist() == [0.4]


@pytest.mark.parametrize(
    ("eps", "message"),
    [
        ({"robustt": 0.1}, "eps names 'robustt', not a model of this study; did you mean"),
        ({"robust": -0.1}, "eps of 'robust' must be a number ≥ 0"),
        ({"robust": math.nan}, "eps of 'robust' must be a number ≥ 0"),
    ],
)
def test_alignment_refuses_bad_eps(eps: dict[str, float], message: str) -> None:
    with pytest.raises(InvalidOptionError, match=message):
        plot_alignment(_study(), eps)


# ------------------------------------------------------------------ plot_class_images


def test_class_images_one_row_per_model_that_has_them() -> None:
    """``robust`` has no images (left out); the others' four images, one per class, are
    shown in pixels as given (constant grey ``i / 3``), titled with the class names."""
    figure = plot_class_images(_study(), class_names=["a", "b", "c", "d"])
    axes = _image_axes(figure)
    assert len(axes) == 2 * 4
    assert [ax.get_title() for ax in axes[:4]] == ["a", "b", "c", "d"]
    assert [axes[0].get_ylabel(), axes[4].get_ylabel()] == ["plain", "gradreg"]
    grey = np.asarray(axes[4].images[0].get_array())
    # no transform: min-max scaling of a constant image gives 0 (the range is clamped)
    assert grey.shape == (H, W, 3) and np.all(grey == 0)
    identity = type("Identity", (), {"invert": staticmethod(lambda x: x)})()
    grey = np.asarray(
        _image_axes(plot_class_images(_study(), transform=identity))[4].images[0].get_array()
    )
    np.testing.assert_allclose(grey, np.full((H, W, 3), 2 / 3), atol=1e-6)


def test_class_images_with_several_per_class_name_each_column_by_its_class() -> None:
    study = _study()
    two = RobustnessComparison(
        study.models, study.methods, METHODS, study.maps, study.inputs, _settings(am_per_class=2)
    )
    axes = _image_axes(plot_class_images(two))
    assert [ax.get_title() for ax in axes[:4]] == ["class 0", "class 0", "class 1", "class 1"]


def test_class_images_refuse_a_study_without_them() -> None:
    with pytest.raises(InvalidInputError, match="no model of this study has activation"):
        plot_class_images(_study(am=False))


# ------------------------------------------------------------------ plot_fragility


def _fragility(attack: list[float], random: list[float] | None) -> FragilityResult:
    n = len(attack)
    settings = FragilitySettings(
        method="gradient", eps=0.05, eps_space="pixels", steps=3, step_size=0.04, top_k=10,
        beta=10.0, ig_steps=None, random_baseline=random is not None, seeds=(0, n - 1),
        valid_low=None, valid_high=None, pixel_std=None, rewritten=(),
    )  # fmt: skip
    values = torch.tensor(attack, dtype=torch.float64)
    noise = None if random is None else torch.tensor(random, dtype=torch.float64)
    return FragilityResult(
        adversarial=torch.zeros(n, 1, 4, 4),
        top_k_intersection=values,
        spearman=values - 0.5,
        label_kept=torch.ones(n, dtype=torch.bool),
        classes=torch.zeros(n, dtype=torch.long),
        predicted=torch.zeros(n, dtype=torch.long),
        maps=torch.zeros(n, 4, 4),
        adversarial_maps=torch.zeros(n, 4, 4),
        norms=torch.full((n,), 0.05),
        random_top_k_intersection=noise,
        random_spearman=None if noise is None else noise - 0.5,
        random_label_kept=None if noise is None else torch.ones(n, dtype=torch.bool),
        settings=settings,
    )


def _medians(ax: Axes) -> list[float]:
    """The y of each box's median line (a horizontal line of two equal y values)."""
    found = []
    for line in ax.lines:
        y = np.asarray(line.get_ydata(), dtype=float)
        x = np.asarray(line.get_xdata(), dtype=float)
        if len(y) == 2 and y[0] == y[1] and line.get_color() in ("C3", "C0"):
            found.append((float(x.mean()), float(y[0]), line.get_color()))
    return [y for _, y, colour in sorted(found) if colour in ("C3", "C0")]


def test_fragility_boxes_sit_at_the_medians_of_attack_and_noise() -> None:
    """Two models: the attack's medians (hand-computed) below the noise's, in both panels
    (Spearman here is the intersection − 0.5)."""
    results = {
        "plain": _fragility([0.1, 0.2, 0.6, 0.3], [0.9, 0.8, 1.0, 0.7]),  # medians .25, .85
        "robust": _fragility([0.5, 0.7, 0.9], [1.0, 0.9, 0.95]),  # medians .7, .95
    }
    figure = plot_fragility(results)
    top_k, rho = figure.axes
    np.testing.assert_allclose(_medians(top_k), [0.25, 0.85, 0.7, 0.95])
    np.testing.assert_allclose(_medians(rho), [-0.25, 0.35, 0.2, 0.45])
    labels = [t.get_text() for t in top_k.get_xticklabels()]
    assert labels == ["plain\nattack", "plain\nrandom", "robust\nattack", "robust\nrandom"]
    assert top_k.get_ylabel() == "top-k intersection"
    title = figure.get_suptitle()
    assert "4 images" in title and "ε = 0.05" in title and "top-10" in title
    assert "pixel units" in title


def test_fragility_of_one_result_without_baseline_or_with_nan() -> None:
    """One result, no random baseline: one box per panel; NaN rows (constant maps) are
    left out of the box."""
    figure = plot_fragility(_fragility([0.2, math.nan, 0.4], None))
    top_k, _ = figure.axes
    np.testing.assert_allclose(_medians(top_k), [0.3])
    assert [t.get_text() for t in top_k.get_xticklabels()] == ["attack"]
    with pytest.raises(InvalidInputError, match="no fragility result"):
        plot_fragility({})
