"""Feature maps: the layer's true output (also before an in-place ReLU), channel choice
and order, chunking, and the model left untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from helpers import Failing, Snapshot, tiny_inputs, tiny_model
from seethrough.data.fashion_mnist import load_fashion_mnist
from seethrough.errors import InvalidOptionError, LayerError
from seethrough.inside.feature_maps import default_rows, feature_maps
from seethrough.models.fashion_cnn import fashion_cnn
from seethrough.reporting.serialize import to_jsonable


def _manual_bn1(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.bn1(model.conv1(x))


def test_maps_before_an_inplace_relu_are_the_pre_relu_values() -> None:
    model, x = tiny_model(), tiny_inputs(3)
    snapshot = Snapshot.take(model, x)
    fm = feature_maps(model, x, "bn1", order="index")  # bn1 is followed by ReLU(inplace=True)
    expected = _manual_bn1(model, x)
    assert (expected < 0).any()  # a capture overwritten by the ReLU would fail below
    torch.testing.assert_close(fm.activations, expected, rtol=1e-12, atol=1e-12)
    assert fm.channels.tolist() == list(range(6)) and fm.layer_channels == 6
    snapshot.assert_unchanged(model, x)


def test_sequential_conv_then_inplace_relu() -> None:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.Conv2d(4, 2, 1))
    model = model.double().eval()
    x = tiny_inputs(2)
    fm = feature_maps(model, x, "0", order="index")
    with torch.no_grad():
        expected = model[0](x)
    assert (expected < 0).any()
    torch.testing.assert_close(fm.activations, expected, rtol=1e-12, atol=1e-12)


def test_top_channels_by_max_and_mean_and_an_explicit_list() -> None:
    model, x = tiny_model(), tiny_inputs(4)
    expected = _manual_bn1(model, x)
    by_max = expected.amax(dim=(0, 2, 3))
    by_mean = expected.mean(dim=(0, 2, 3))
    top = feature_maps(model, x, "bn1", channels="top", k=3, order="max")
    assert top.channels.tolist() == by_max.argsort(descending=True)[:3].tolist()
    torch.testing.assert_close(top.max, by_max[top.channels], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(top.activations, expected[:, top.channels], rtol=1e-12, atol=1e-12)
    assert top.selection == "top" and top.order == "max"
    every = feature_maps(model, x, "bn1")  # all channels, by mean, descending
    assert every.channels.tolist() == by_mean.argsort(descending=True).tolist()
    torch.testing.assert_close(every.mean, by_mean[every.channels], rtol=1e-12, atol=1e-12)
    listed = feature_maps(model, x, "bn1", channels=[5, 0, 2])
    assert listed.channels.tolist() == [5, 0, 2] and listed.selection == "list"
    torch.testing.assert_close(listed.activations, expected[:, [5, 0, 2]], rtol=1e-12, atol=1e-12)
    d = to_jsonable(listed)
    assert [c["channel"] for c in d["channels"]] == [5, 0, 2]
    assert d["channels"][0]["max"] == pytest.approx(float(expected[:, 5].max()), abs=1e-8)


def test_ties_in_the_order_go_to_the_lower_channel() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 1)).double().eval()
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.copy_(torch.tensor([1.0, 2.0, 2.0, 1.0]))
    fm = feature_maps(model, torch.ones(2, 1, 3, 3, dtype=torch.float64), "0")
    assert fm.channels.tolist() == [1, 2, 0, 3]


def test_real_fashion_cnn_maps_equal_a_manual_forward() -> None:
    model = fashion_cnn()
    x = load_fashion_mnist("test").inputs(0, 20)
    fm = feature_maps(model, x, "conv2", channels=[0, 63, 7])
    with torch.no_grad():
        expected = model.conv2(model.pool1(model.relu1(model.conv1(x))))[:, [0, 63, 7]]
    torch.testing.assert_close(fm.activations, expected, rtol=1e-5, atol=1e-5)
    assert fm.map_size == (14, 14) and fm.layer_channels == 64


def test_chunking_does_not_change_the_maps() -> None:
    model, x = tiny_model(), tiny_inputs(5)
    whole = feature_maps(model, x, "conv3", order="index")
    single = feature_maps(model, x, "conv3", order="index", batch_size=1)
    torch.testing.assert_close(single.activations, whole.activations, rtol=1e-12, atol=1e-12)


def test_linear_layer_outputs_become_one_by_one_maps() -> None:
    model, x = tiny_model(), tiny_inputs(2)
    fm = feature_maps(model, x, "fc", order="index")
    with torch.no_grad():
        logits = model(x)
    assert fm.activations.shape == (2, 5, 1, 1)
    torch.testing.assert_close(fm.activations[:, :, 0, 0], logits, rtol=1e-12, atol=1e-12)


def test_works_inside_no_grad_and_inference_mode() -> None:
    model, x = tiny_model(), tiny_inputs(2)
    with torch.inference_mode():
        inside = feature_maps(model, x, "conv2", order="index")
    with torch.no_grad():
        torch.testing.assert_close(
            inside.activations, model.conv2(model.relu(_manual_bn1(model, x)))
        )


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"layer": "relu"}, LayerError, "runs more than once"),
        ({"layer": "bn3"}, LayerError, "no layer 'bn3'.*did you mean"),
        ({"layer": "bn1", "channels": [6]}, InvalidOptionError, "channel 6 is out of range.*0–5"),
        ({"layer": "bn1", "channels": []}, InvalidOptionError, "channels is empty"),
        ({"layer": "bn1", "channels": "best"}, InvalidOptionError, "channels must be"),
        ({"layer": "bn1", "order": "median"}, InvalidOptionError, "unknown order"),
        ({"layer": "bn1", "channels": "top", "k": 0}, InvalidOptionError, "k must be"),
        ({"layer": "bn1", "channels": "top", "order": "index"}, InvalidOptionError, "not 'index'"),
    ],
)
def test_bad_options_raise_and_leave_the_model_untouched(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    model, x = tiny_model(), tiny_inputs(2)
    snapshot = Snapshot.take(model, x)
    with pytest.raises(error, match=message):
        feature_maps(model, x, **kwargs)  # type: ignore[arg-type]
    snapshot.assert_unchanged(model, x)


def test_error_in_forward_leaves_everything_unchanged() -> None:
    inner, x = tiny_model(), tiny_inputs(3)
    model = Failing(inner, fail_on=2).eval()
    snapshot = Snapshot.take(model, x)
    with pytest.raises(RuntimeError, match="boom"):
        feature_maps(model, x, "inner.conv2", batch_size=1)
    snapshot.assert_unchanged(model, x)


def test_training_mode_is_refused() -> None:
    model = tiny_model().train()
    with pytest.raises(Exception, match="training mode"):
        feature_maps(model, tiny_inputs(1), "conv1")
    assert model.training


def test_default_rows_scale_with_the_image_size_on_cpu() -> None:
    assert default_rows(torch.zeros(1, 3, 224, 224), None) == 16
    assert default_rows(torch.zeros(1, 1, 28, 28), None) == 1024
    assert default_rows(torch.zeros(1, 1, 28, 28), 5) == 5


def test_feature_map_figure_has_one_row_per_image_and_a_column_per_channel() -> None:
    from seethrough.viz import plot_feature_maps

    model, x = tiny_model(), tiny_inputs(3)
    fm = feature_maps(model, x, "bn1", channels="top", k=4)
    figure = plot_feature_maps(fm, images=[0, 2], channels=3)
    assert len(figure.axes) == 2 * (1 + 3)
    assert figure.get_suptitle().startswith("bn1 — feature maps 12×12, 3 of 6 channels")
    titles = [ax.get_title() for ax in figure.axes[1:4]]
    assert [t.split("\n")[0] for t in titles] == [f"ch {int(c)}" for c in fm.channels[:3]]
    # bn1 has negative values: symmetric scale, stated in the title as ±max|value|
    scale = float(fm.activations[[0, 2], 0].abs().max())
    assert titles[0].split("\n")[1] == f"±{scale:.3g}"
    named = plot_feature_maps(fm, images=[1], channels=2, names=["cat", "dog", "owl"])
    assert len(named.axes) == 3 and named.axes[0].get_ylabel() == "dog"
