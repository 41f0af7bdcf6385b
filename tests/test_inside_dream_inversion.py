"""DeepDream and feature inversion on the trained Fashion-MNIST CNN and real test images:
the dream raises its objective, inversion error grows with depth, batching and chunking do
not change results, model and inputs come back untouched (also when the call raises)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import seethrough as st
from helpers import Failing, Snapshot, tiny_inputs, tiny_model
from seethrough.data.fashion_mnist import FASHION_MEAN, FASHION_STD, load_fashion_mnist
from seethrough.errors import InvalidInputError, InvalidOptionError, LayerError
from seethrough.inside import (
    channel,
    class_logit,
    dream,
    evaluate,
    invert,
    invert_layers,
    layer_objective,
)
from seethrough.inside.dream import octave_sizes
from seethrough.models.fashion_cnn import fashion_cnn

NORM = (FASHION_MEAN, FASHION_STD)


@pytest.fixture(scope="module")
def fashion() -> nn.Module:
    return fashion_cnn()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return load_fashion_mnist("test").inputs(0, 3)


# --------------------------------------------------------------------------- DeepDream


def test_dream_raises_the_layer_objective(fashion: nn.Module, images: torch.Tensor) -> None:
    result = dream(fashion, images, "conv2", octaves=2, octave_scale=1.4, steps=6, normalize=NORM)
    assert result.sizes == ((20, 20), (28, 28))
    assert result.traces.shape == (12, 3)
    # scored without jitter, every dreamed image excites the layer more than the original
    score = layer_objective("conv2")
    before = evaluate(fashion, score, result.original, transforms=None, normalize=NORM)
    after = evaluate(fashion, score, result.images, transforms=None, normalize=NORM)
    assert bool((after > 1.2 * before).all()), (before, after)
    assert result.images.shape == images.shape
    assert bool(((result.images >= 0) & (result.images <= 1)).all())
    torch.testing.assert_close(result.original, images * FASHION_STD + FASHION_MEAN)
    torch.testing.assert_close(result.inputs, (result.images - FASHION_MEAN) / FASHION_STD)
    changed = (result.images - result.original).abs().mean()
    assert 0.005 < float(changed) < 0.5
    assert result.objective == "layer_objective('conv2')"


def test_dream_is_reproducible_batched_and_seeded(fashion: nn.Module, images: torch.Tensor) -> None:
    options = {"octaves": 1, "steps": 4, "normalize": NORM, "objective": channel("conv1", 4)}
    a = dream(fashion, images, seed=5, **options)
    b = dream(fashion, images, seed=5, batch_size=1, **options)
    alone = dream(fashion, images[2:], seed=7, **options)
    other = dream(fashion, images, seed=6, **options)
    assert torch.equal(a.images, b.images)
    assert torch.equal(a.images[2], alone.images[0])
    assert not torch.equal(a.images, other.images)


def test_octave_sizes() -> None:
    assert octave_sizes(224, 224, 4, 1.4) == [(82, 82), (114, 114), (160, 160), (224, 224)]
    assert octave_sizes(10, 20, 1, 2.0) == [(10, 20)]


def test_dream_errors(fashion: nn.Module, images: torch.Tensor) -> None:
    with pytest.raises(InvalidOptionError, match="octave_scale must be > 1"):
        dream(fashion, images, "conv2", octave_scale=1.0)
    with pytest.raises(LayerError, match="did you mean"):
        dream(fashion, images, "conv3")
    with pytest.raises(InvalidOptionError, match="choose an image size the model accepts"):
        dream(fashion, images, channel("conv2", 0) + class_logit(1), octaves=2)  # fc1 at 20 px
    with pytest.raises(InvalidInputError, match="batch"):
        dream(fashion, images[0], "conv2")


# --------------------------------------------------------------------------- inversion


def test_inversion_error_grows_with_depth(fashion: nn.Module, images: torch.Tensor) -> None:
    """conv1 keeps (nearly) the whole image; conv2, after a 2×2 max-pool, less; fc1, after
    two pools and a 1024-unit bottleneck, least — for every image."""
    result = invert_layers(
        fashion, images, ["conv1", "conv2", "fc1"], steps=40, lr=0.05, normalize=NORM
    )
    error = result.pixel_error
    assert error.shape == (3, 3)
    assert bool((error[0] < error[1]).all() and (error[1] < error[2]).all()), error
    assert bool((error[0] < 0.2).all())
    table = result.table()
    assert [row["layer"] for row in table] == ["conv1", "conv2", "fc1"]
    assert table[2]["pixel_error"] == pytest.approx(float(error[2].mean()), abs=1e-6)
    # the optimisation itself worked: the loss fell for every row
    for one in result.results:
        assert bool((one.traces[-1] < one.traces[0]).all())


def test_invert_one_layer_equals_its_row_of_invert_layers(
    fashion: nn.Module, images: torch.Tensor
) -> None:
    options = {"steps": 5, "normalize": NORM}
    both = invert_layers(fashion, images[:2], ["conv1", "conv2"], **options)
    alone = invert(fashion, images[:2], "conv2", **options)
    chunked = invert_layers(fashion, images[:2], ["conv1", "conv2"], batch_size=3, **options)
    assert torch.equal(both.results[1].images, alone.images)
    assert torch.equal(both.results[1].feature_error, alone.feature_error)
    assert torch.equal(both.pixel_error, chunked.pixel_error)


def test_inversion_errors_by_hand(fashion: nn.Module, images: torch.Tensor) -> None:
    """The reported errors are the documented relative norms, recomputed by hand."""
    result = invert(fashion, images[:2], "conv1", steps=3, normalize=NORM)
    original = images[:2] * FASHION_STD + FASHION_MEAN
    mean = original.mean(dim=(2, 3), keepdim=True)
    expected = (result.images - original).flatten(1).norm(dim=1) / (
        (original - mean).flatten(1).norm(dim=1)
    )
    torch.testing.assert_close(result.pixel_error, expected)
    with torch.no_grad():
        target = fashion.conv1(images[:2])
        found = fashion.conv1(result.inputs)
    relative = (found - target).flatten(1).norm(dim=1) / target.flatten(1).norm(dim=1)
    torch.testing.assert_close(result.feature_error, relative, rtol=1e-4, atol=1e-6)


def test_inversion_option_errors(fashion: nn.Module, images: torch.Tensor) -> None:
    with pytest.raises(InvalidOptionError, match="non-empty list"):
        invert_layers(fashion, images, "conv1")  # type: ignore[arg-type]
    with pytest.raises(InvalidOptionError, match="repeated"):
        invert_layers(fashion, images, ["conv1", "conv1"])
    with pytest.raises(InvalidOptionError, match="tv_beta must be ≥ 1"):
        invert(fashion, images, "conv1", tv_beta=0.5)
    with pytest.raises(LayerError, match="did you mean 'fc2', 'fc1'"):
        invert(fashion, images, "fc3")


# --------------------------------------------------------------------------- untouched


def test_model_and_inputs_untouched_on_success(fashion: nn.Module, images: torch.Tensor) -> None:
    x = images.clone().requires_grad_(False)
    snapshot = Snapshot.take(fashion, x)
    dream(fashion, x, "conv2", octaves=1, steps=2, normalize=NORM)
    invert_layers(fashion, x, ["conv1", "fc1"], steps=2, normalize=NORM)
    with torch.inference_mode():  # a caller's inference mode does not stop either
        dream(fashion, x, "conv2", octaves=1, steps=2, normalize=NORM)
        invert(fashion, x, "conv2", steps=2, normalize=NORM)
    snapshot.assert_unchanged(fashion, x)


@pytest.mark.parametrize("fail_on", [1, 2, 3])
@pytest.mark.parametrize("entry", ["dream", "invert"])
def test_model_and_inputs_untouched_when_the_call_raises(fail_on: int, entry: str) -> None:
    model = Failing(tiny_model(), fail_on).eval()
    x = tiny_inputs(2)
    snapshot = Snapshot.take(model, x)
    calls = {
        "dream": lambda: dream(model, x, "inner.conv2", octaves=1, steps=3),
        "invert": lambda: invert(model, x, "inner.conv2", steps=3),
    }
    # call 1 is the probe pass, whose failure is reported as a size problem (chained)
    with pytest.raises((RuntimeError, InvalidOptionError), match="boom"):
        calls[entry]()
    snapshot.assert_unchanged(model, x)


def test_loaded_model_normalisation_clamps_pixels() -> None:
    net = st.load_model(tiny_model(dtype=torch.float32))
    x = net.preprocess(torch.rand(16, 16, 3, generator=torch.Generator().manual_seed(0)).numpy())
    result = dream(net, x, "conv2", octaves=1, steps=3, lr=0.2)
    assert bool(((result.images >= 0) & (result.images <= 1)).all())
    assert result.settings["normalize"].startswith("(x - [0.485")


@pytest.mark.slow
def test_efficientnet_lite0_inversion_error_grows_with_depth() -> None:
    net = st.load_model("efficientnet-lite0")
    x = net.preprocess(st.load_images(["sample:chelsea"]))
    x = F.interpolate(x, size=(64, 64), mode="bilinear", antialias=True, align_corners=False)
    result = invert_layers(net, x, ["_conv_stem", "_blocks.1", "_blocks.15"], steps=40)
    error = result.pixel_error[:, 0]
    assert bool(error[0] < error[1] < error[2]), error
