"""SpRAy and per-class figures (``viz.plot_spray``, ``plot_class_maps``): each panel is
checked against the numbers it must show."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from seethrough.errors import InvalidInputError
from seethrough.scale import class_maps, spray
from seethrough.viz import plot_class_maps, plot_spray


def _groups() -> tuple[torch.Tensor, np.ndarray]:
    g = torch.Generator().manual_seed(0)
    maps = 0.05 * torch.rand(40, 12, 12, generator=g, dtype=torch.float64)
    maps[:20, 1:4, 1:4] += 1.0
    maps[20:, -4:-1, -4:-1] -= 1.0  # a negative blob: the display keeps the sign
    return maps, np.repeat([0, 1], 20)


def _images(axes: list[Axes]) -> list[np.ndarray]:
    return [np.asarray(ax.images[0].get_array()) for ax in axes if ax.images]


def test_spray_figure_shows_the_spectrum_and_each_clusters_maps() -> None:
    maps, groups = _groups()
    result = spray(
        maps,
        labels=np.zeros(40),
        predicted=np.where(groups == 0, 0, 1),
        probability=np.linspace(0.5, 0.9, 40),
        representatives=3,
        method="lrp",
        class_name="Shirt",
    )
    figure = plot_spray(result)
    assert isinstance(figure, Figure)
    spectrum, *panels = figure.axes
    line = spectrum.lines[0]
    np.testing.assert_allclose(np.asarray(line.get_ydata()), np.array(result.eigenvalues[:16]))
    gap = spectrum.lines[1]  # the eigengap marker between k and k + 1
    assert np.asarray(gap.get_xdata())[0] == pytest.approx(result.eigengap + 0.5)
    assert "Shirt" in spectrum.get_title() and "lrp" in spectrum.get_title()
    assert len(panels) == 2 * (1 + 3)  # per cluster: mean map + 3 representatives
    shown = _images(panels)
    for i, cluster in enumerate(result.clusters):
        np.testing.assert_allclose(shown[4 * i], cluster.mean_map.numpy())
        for j in range(3):
            np.testing.assert_allclose(shown[4 * i + 1 + j], cluster.representative_maps[j].numpy())
        label = panels[4 * i].get_ylabel()
        assert f"{cluster.size} maps" in label
        assert ("differs from the rest" in label) == cluster.differs
    # symmetric colour scale about zero: the negative cluster shows blue, not re-centred
    low, high = panels[4].images[0].get_clim()
    assert low is not None and high is not None and low == -high


def test_spray_figure_with_images_adds_a_row_of_pixels_per_cluster() -> None:
    maps, _ = _groups()
    result = spray(maps, representatives=2)
    pixels = torch.rand(40, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    figure = plot_spray(result, images=pixels)
    _, *panels = figure.axes
    assert len(panels) == 2 * (1 + 2 + 2)
    row_axes = [ax for ax in panels if ax.images and ax.images[0].get_cmap().name == "gray"]
    reps = [r for c in result.clusters for r in c.representatives]
    assert len(row_axes) == len(reps)
    for ax, row in zip(row_axes, reps):
        np.testing.assert_allclose(_images([ax])[0], pixels[row, 0].double().numpy())
    with pytest.raises(InvalidInputError, match="no entry for row"):
        plot_spray(result, images={0: pixels[0]})


def test_class_maps_figure_one_panel_per_class() -> None:
    maps, groups = _groups()
    result = class_maps(maps, "gradient", labels=groups, names=["a", "b"], resamples=200)
    figure = plot_class_maps(result)
    assert len(figure.axes) == 2
    for i, ax in enumerate(figure.axes):
        np.testing.assert_allclose(_images([ax])[0], result.mean_maps[i].numpy())
        interval = result.concentration[i]
        assert interval is not None
        assert ax.get_title().startswith(["a", "b"][i]) and interval.format() in ax.get_title()
    wide = class_maps(maps, labels=np.arange(40) % 7, resamples=50)
    figure = plot_class_maps(wide, columns=3)
    assert len(figure.axes) == 9 and sum(not ax.axison for ax in figure.axes) == 2


def test_figures_refuse_other_results() -> None:
    with pytest.raises(InvalidInputError, match="needs a SprayResult"):
        plot_spray(object())  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="needs ClassMaps"):
        plot_class_maps(object())  # type: ignore[arg-type]
