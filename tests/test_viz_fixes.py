"""Figures that told the reader something false (issue 18 #10): filter tiles scaled each to
its own maximum (a dead or nearly dead filter looked as alive as the strongest), sanity
curves clipped below -0.1, and "(1 images)"."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import seethrough as st
from helpers import tiny_inputs, tiny_model
from seethrough.inside import filters
from seethrough.viz import plot_filters, plot_similarity_curves


def conv_with(weights: list[list[float]]) -> nn.Sequential:
    """A 1×1 conv whose filter ``o`` has the RGB weights ``weights[o]``."""
    conv = nn.Conv2d(3, len(weights), 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(weights).view(len(weights), 3, 1, 1))
    return nn.Sequential(conv)


def tile(ax: object) -> np.ndarray:
    return np.asarray(ax.get_images()[0].get_array())  # type: ignore[attr-defined]


def test_filter_tiles_share_one_scale_and_dead_filters_are_neutral_and_marked() -> None:
    # filter 0: the strongest (max |w| = 2); 1: 1000× weaker; 2: dead (all 0)
    model = conv_with([[2.0, -1.0, 0.0], [0.002, -0.001, 0.0], [0.0, 0.0, 0.0]])
    figure = plot_filters(filters(model, "0"))
    tiles = [tile(ax) for ax in figure.axes]
    # 0.5 + 0.5 * w / 2 (one scale, the grid's max |w| = 2), by hand:
    np.testing.assert_allclose(tiles[0][0, 0], [1.0, 0.25, 0.5])
    np.testing.assert_allclose(tiles[1][0, 0], [0.5005, 0.49975, 0.5])  # weak looks weak
    np.testing.assert_allclose(tiles[2][0, 0], [0.5, 0.5, 0.5])  # neutral mid-grey
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == ["0", "1", "2 dead"]
    assert [ax.spines["top"].get_edgecolor()[:3] for ax in figure.axes][2] == (1.0, 0.0, 0.0)
    assert "one scale for the grid: |w| = 2" in figure.get_suptitle()


@pytest.mark.parametrize("mode", ["kernels", "channels"])
def test_diverging_filter_grids_share_one_scale_and_mark_dead_filters(mode: str) -> None:
    conv = nn.Conv2d(1, 3, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([4.0, -1.0, 0.0]).view(3, 1, 1, 1))
    figure = plot_filters(filters(nn.Sequential(conv), "0"), mode=mode)
    values = [tile(ax)[0, 0] for ax in figure.axes]
    white = np.asarray(plt_colour(0.0))
    np.testing.assert_allclose(values[0], plt_colour(1.0))  # 4 / 4
    np.testing.assert_allclose(values[1], plt_colour(-0.25))  # -1 / 4, not -1 / 1
    np.testing.assert_allclose(values[2], white)
    labels = [ax.get_title() if mode == "kernels" else ax.get_ylabel() for ax in figure.axes]
    assert labels[2].endswith("2 dead") and not any("dead" in s for s in labels[:2])


def plt_colour(value: float) -> np.ndarray:
    from matplotlib import colormaps

    from seethrough.viz.heatmap import DIVERGING

    return np.asarray(colormaps[DIVERGING]((value + 1) / 2)[:3])


def curves(mean: list[float], std: list[float], images: int) -> Any:
    """The fields of a RandomizationResult that the curve plot reads, with set values."""
    similarity = SimpleNamespace(
        method="gradient",
        mean=lambda metric: torch.tensor(mean),
        std=lambda metric: torch.tensor(std),
    )
    return SimpleNamespace(
        mode="cascading",
        steps=[SimpleNamespace(name=f"step {i}") for i in range(len(mean))],
        similarities=[similarity],
        original_maps=[[torch.zeros(4, 4)] * images],
    )


def test_similarity_curves_below_minus_0_1_are_not_clipped() -> None:
    figure = plot_similarity_curves(curves([0.5, -0.3, -0.6], [0.1, 0.2, 0.15], images=3))
    low, high = figure.axes[0].get_ylim()
    assert low <= -0.6 - 0.15 and high >= 1.0  # the lowest band edge, and the trained point
    figure = plot_similarity_curves(curves([0.9, 0.4], [0.05, 0.1], images=3))
    assert figure.axes[0].get_ylim() == pytest.approx((-0.1, 1.05))  # unchanged when inside
    assert figure.axes[0].get_title() == "cascading randomization (3 images)"


def test_similarity_curves_title_counts_one_image_in_the_singular() -> None:
    model, x = tiny_model(), tiny_inputs(1)
    result = st.model_randomization(model, x, ["gradient"], metrics=("spearman_abs",))
    figure = plot_similarity_curves(result)
    assert figure.axes[0].get_title() == "cascading randomization (1 image)"
    low, high = figure.axes[0].get_ylim()
    assert np.isfinite(low) and np.isfinite(high)  # one image: no spread, still finite limits
