"""Filters: the layer's own weights (a copy), the grouping facts, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from helpers import Snapshot, tiny_model
from seethrough.errors import InvalidInputError, LayerError
from seethrough.inside.filters import conv_layer_names, filters
from seethrough.models import load_model
from seethrough.models.fashion_cnn import fashion_cnn
from seethrough.reporting.serialize import to_jsonable


def test_filters_equal_the_modules_weights_and_are_a_cpu_copy() -> None:
    model = fashion_cnn()
    snapshot = Snapshot.take(model)
    for name in ("conv1", "conv2"):
        f = filters(model, name)
        conv = getattr(model, name)
        assert torch.equal(f.weights, conv.weight.detach())
        assert torch.equal(f.bias, conv.bias.detach())
        assert f.weights.data_ptr() != conv.weight.data_ptr()
        assert f.weights.device.type == "cpu" and not f.weights.requires_grad
        assert f.shape == tuple(conv.weight.shape)
        assert (f.groups, f.depthwise, f.grouped) == (1, False, False)
    snapshot.assert_unchanged(model)
    f = filters(model, "conv2")
    assert f.shape == (64, 32, 5, 5) and f.padding == (2, 2) and f.stride == (1, 1)
    f.weights.zero_()  # the copy is ours: the model keeps its weights
    assert model.conv2.weight.abs().sum() > 0


def test_json_summarises_the_weights() -> None:
    model = tiny_model()
    f = filters(model, "conv2")
    d = to_jsonable(f)
    w = model.conv2.weight.detach()
    assert d["shape"] == [8, 6, 3, 3] and d["layer"] == "conv2" and d["dtype"] == "float64"
    assert d["weights"]["max"] == pytest.approx(float(w.max()), abs=1e-8)
    assert d["weights"]["std"] == pytest.approx(float(w.std()), abs=1e-8)
    expected = [float(v) for v in w.flatten(1).norm(dim=1)]
    assert d["filter_norms"] == pytest.approx(expected, abs=1e-8)
    torch.testing.assert_close(f.norms(), w.flatten(2).norm(dim=2), rtol=1e-12, atol=0)


def test_depthwise_and_grouped_convolutions() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(4, 6, 3, groups=2, padding="same"), nn.Conv2d(6, 6, 3, groups=6)
    ).eval()
    grouped, depthwise = filters(model, "0"), filters(model, "1")
    assert grouped.shape == (6, 2, 3, 3) and grouped.grouped and not grouped.depthwise
    assert grouped.padding == (0, 0)  # a string padding ("same") has no fixed numbers
    # filters 0-2 see input channels 0-1, filters 3-5 see 2-3
    assert [list(grouped.input_channels(o)) for o in (0, 2, 3, 5)] == [[0, 1]] * 2 + [[2, 3]] * 2
    assert depthwise.depthwise and depthwise.shape == (6, 1, 3, 3)
    assert list(depthwise.input_channels(4)) == [4]
    assert torch.equal(depthwise.weights, model[1].weight.detach())


def test_real_depthwise_layer_of_efficientnet() -> None:
    net = load_model("efficientnet-lite0")
    f = filters(net, "_blocks.1._depthwise_conv")
    assert f.depthwise and f.shape == (96, 1, 3, 3)
    assert torch.equal(f.weights, net.module.get_submodule("_blocks.1._depthwise_conv").weight)


def test_a_layer_that_is_not_a_conv_names_the_conv_layers() -> None:
    model = fashion_cnn()
    with pytest.raises(LayerError, match=r"'relu1' is a ReLU, not a Conv2d.*conv1.*conv2"):
        filters(model, "relu1")
    with pytest.raises(LayerError, match=r"no layer 'cnv2'.*did you mean 'conv2'"):
        filters(model, "cnv2")
    with pytest.raises(LayerError, match="no Conv2d layer at all"):
        filters(nn.Sequential(nn.Linear(2, 2)), "0")
    with pytest.raises(InvalidInputError, match=r"torch\.nn\.Module"):
        filters("model", "conv1")
    assert conv_layer_names(model) == ["conv1", "conv2"]


def test_long_lists_of_conv_layers_are_shortened() -> None:
    net = load_model("efficientnet-lite0")
    with pytest.raises(LayerError) as error:
        filters(net, "_blocks.1")
    message = str(error.value)
    assert "'_conv_stem'" in message and "more)" in message and len(message) < 400


@pytest.mark.parametrize(
    ("conv", "mode", "axes"),
    [
        (nn.Conv2d(3, 10, 3), "auto", 10),  # rgb tiles
        (nn.Conv2d(1, 70, 3), "auto", 64),  # one tile per filter, at most 64
        (nn.Conv2d(6, 6, 3, groups=6), "kernels", 6),  # depthwise
        (nn.Conv2d(5, 12, 3), "channels", 8 * 5),  # 8 filters × 5 input channels
        (nn.Conv2d(5, 12, 3), "auto", 2),  # norms: the heatmap and its colour bar
    ],
)
def test_filter_figures(conv: nn.Conv2d, mode: str, axes: int) -> None:
    from seethrough.viz import plot_filters

    model = nn.Sequential(nn.Identity(), conv).eval()
    figure = plot_filters(filters(model, "1"), mode=mode)
    assert len(figure.axes) == axes
    title = figure.axes[0].get_title() if axes == 2 else figure.get_suptitle()
    assert title.startswith("1 — weights ")


def test_rgb_tiles_share_one_symmetric_scale() -> None:
    from seethrough.errors import InvalidOptionError
    from seethrough.viz import plot_filters

    conv = nn.Conv2d(3, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, -2.0, 0.0], [0.5, 0.25, -0.5]]).view(2, 3, 1, 1))
    figure = plot_filters(filters(nn.Sequential(conv), "0"))
    tiles = [ax.get_images()[0].get_array() for ax in figure.axes]
    # 0.5 + 0.5 * w / 2 (one scale for the grid, its max |w| = 2; issue 18 #10):
    # filter 0 → (0.75, 0, 0.5); filter 1 → (0.625, 0.5625, 0.375)
    np.testing.assert_allclose(np.asarray(tiles[0])[0, 0], [0.75, 0.0, 0.5])
    np.testing.assert_allclose(np.asarray(tiles[1])[0, 0], [0.625, 0.5625, 0.375])
    with pytest.raises(InvalidOptionError, match="mode 'rgb' needs 3 input channels"):
        plot_filters(filters(fashion_cnn(), "conv1"), mode="rgb")
    with pytest.raises(InvalidOptionError, match="filter 9 is out of range"):
        plot_filters(filters(nn.Sequential(conv), "0"), filters=[9])
