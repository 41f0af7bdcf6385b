"""Activation maximization and stability: objectives rise, a batch of K objectives equals K
separate runs (bitwise in float64, to rounding in float32), seeds reproduce, the model comes
back untouched (also when the call raises), no hook is left, the pass stops after the last
layer needed, errors are clear."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

import seethrough as st
from helpers import Failing, Snapshot, tiny_model
from seethrough.data.fashion_mnist import FASHION_MEAN, FASHION_STD
from seethrough.errors import (
    InvalidInputError,
    InvalidOptionError,
    LayerError,
    ModelStateError,
    TargetError,
)
from seethrough.inside import (
    channel,
    channels,
    class_logit,
    diversity,
    evaluate,
    maximize,
    neuron,
    stability,
    total_variation,
)
from seethrough.inside.transforms import Jitter, Rotate
from seethrough.models.fashion_cnn import fashion_cnn

FASHION_NORM = (FASHION_MEAN, FASHION_STD)
FAST = {"size": 12, "steps": 6}


@pytest.fixture(scope="module")
def fashion() -> nn.Module:
    return fashion_cnn()


def pixels(n: int) -> torch.Tensor:
    return torch.rand(n, 3, 12, 12, generator=torch.Generator().manual_seed(n)).double()


def rose(vis: st.inside.Visualization) -> None:
    """The property: every row's final value beats its initial value, and the mean of the
    last quarter of its trace beats the mean of the first quarter."""
    assert bool((vis.values > vis.initial_values).all()), (vis.initial_values, vis.values)
    quarter = max(1, vis.traces.shape[0] // 4)
    early, late = vis.traces[:quarter].mean(0), vis.traces[-quarter:].mean(0)
    assert bool((late > early).all()), (early, late)


@pytest.mark.parametrize("param", ["fourier", "pixel"])
def test_objectives_rise_on_the_trained_fashion_cnn(fashion: nn.Module, param: str) -> None:
    objectives = [
        *channels("conv2", [0, 5, 17]),
        neuron("conv1", 3),
        channel("fc1", 10),
        class_logit(2) - 0.1 * total_variation(),
        class_logit(7),
    ]
    vis = maximize(
        fashion,
        objectives,
        param=param,
        size=28,
        steps=40,
        lr=0.05,
        transforms=[Jitter(2)],
        normalize=FASHION_NORM,
    )
    rose(vis)
    assert vis.images.shape == (7, 1, 28, 28) and vis.traces.shape == (40, 7)
    assert bool(((vis.images >= 0) & (vis.images <= 1)).all())
    assert vis.objectives[5] == "class_logit(2) - 0.1 * total_variation()"


def test_objectives_rise_on_the_tiny_model_with_standard_transforms() -> None:
    model = tiny_model()
    vis = maximize(model, channels("conv3", range(4)), size=16, steps=30, lr=0.3)
    rose(vis)


def test_batch_of_k_equals_k_separate_runs_bitwise() -> None:
    """Row i of a batch (seed s) is bitwise the single run with seed s + i — float64 tiny
    model with the standard transforms, Fourier parametrization, mixed conv objectives
    (convolutions on the CPU compute each image of a batch identically)."""
    model = tiny_model()
    objectives = [
        channel("conv2", 1),
        neuron("conv3", 2) - 0.05 * total_variation(),
        channel("conv3", 7) + 0.5 * channel("conv1", 0),
    ]
    batch = maximize(model, objectives, seed=10, **FAST)
    for i, objective in enumerate(objectives):
        alone = maximize(model, objective, seed=10 + i, **FAST)
        assert torch.equal(alone.images[0], batch.images[i])
        assert torch.equal(alone.traces[:, 0], batch.traces[:, i])
        assert torch.equal(alone.values[0], batch.values[i])


def test_batch_equals_separate_runs_through_a_linear_head_to_rounding() -> None:
    """Through the linear head, BLAS may round a batch (gemm) differently from one image
    (gemv) by one ulp, so class logits agree to 1e-12 (float64), not bitwise."""
    model = tiny_model()
    batch = maximize(model, [class_logit(4), class_logit(1)], seed=0, **FAST)
    for i, k in enumerate([4, 1]):
        alone = maximize(model, class_logit(k), seed=i, **FAST)
        torch.testing.assert_close(alone.images[0], batch.images[i], rtol=0, atol=1e-12)
        torch.testing.assert_close(alone.values[0], batch.values[i], rtol=0, atol=1e-12)


def test_batch_equals_separate_runs_on_the_float32_fashion_cnn(fashion: nn.Module) -> None:
    """A batch of 3 equals 3 separate runs to float32 rounding, not bitwise: which
    convolution kernel runs (oneDNN or not, its blocking over the batch) depends on the build,
    the CPU and the batch size, and one build was seen to differ by one ulp.

    Tolerance: the images lie in [0, 1]; each float32 run is within 4.2e-7 of the same run
    with the model in float64 (measured here, 5 steps, max over the 3 rows), so two float32
    runs that differ only in rounding are within 8.3e-7 of each other; we allow 1e-6
    (~17 ulps at 1.0). With oneDNN switched off for the single runs they differ by at most
    8.9e-8 here; a wrong seed or a row mix-up moves pixels by > 1e-2.
    """
    options = {
        "size": 24,
        "input_size": 28,
        "steps": 5,
        "normalize": FASHION_NORM,
        "transforms": [Jitter(4), Rotate((-5.0, 0.0, 5.0))],
    }
    batch = maximize(fashion, channels("conv2", [3, 8, 30]), **options)
    for i, c in enumerate([3, 8, 30]):
        alone = maximize(fashion, channel("conv2", c), seed=i, **options)
        torch.testing.assert_close(alone.images[0], batch.images[i], rtol=0.0, atol=1e-6)


def test_chunked_batches_give_the_same_images() -> None:
    model = tiny_model()
    whole = maximize(model, channels("conv2", range(5)), **FAST)
    chunked = maximize(model, channels("conv2", range(5)), batch_size=2, **FAST)
    assert torch.equal(whole.images, chunked.images)
    assert torch.equal(whole.traces, chunked.traces)


def test_seeds_reproduce_and_differ() -> None:
    model = tiny_model()
    a = maximize(model, channel("conv2", 0), seed=3, **FAST)
    b = maximize(model, channel("conv2", 0), seed=3, **FAST)
    c = maximize(model, channel("conv2", 0), seed=4, **FAST)
    assert torch.equal(a.images, b.images) and torch.equal(a.traces, b.traces)
    assert not torch.equal(a.images, c.images)
    assert a.seeds == (3,) and a.seed == 3


def test_model_untouched_and_no_hooks_left_on_success() -> None:
    model = tiny_model()
    model.conv1.weight.grad = torch.ones_like(model.conv1.weight)  # a user's gradient
    model.fc.bias.requires_grad_(False)  # a user's frozen parameter
    kept = model.conv2.register_forward_hook(lambda *args: None)  # a user's hook
    snapshot = Snapshot.take(model)
    with torch.no_grad():  # a caller's no-grad context does not stop the optimisation
        maximize(model, channels("conv2", range(3)), **FAST)
        stability(model, channel("conv3", 1), seeds=(0, 1), **FAST)
        evaluate(model, channel("conv2", 0), pixels(2))
    with torch.inference_mode():  # nor does inference mode
        maximize(model, channel("conv2", 1), normalize=((0.5,) * 3, (0.2,) * 3), **FAST)
    snapshot.assert_unchanged(model)
    kept.remove()


@pytest.mark.parametrize("fail_on", [1, 2, 4])
@pytest.mark.parametrize("entry", ["maximize", "stability", "evaluate"])
def test_model_untouched_when_the_call_raises(fail_on: int, entry: str) -> None:
    """Call 1 is the probe pass, 2 the initial scoring, 4 an optimisation step."""
    model = Failing(tiny_model(), fail_on).eval()
    snapshot = Snapshot.take(model)
    calls = {
        "maximize": lambda: maximize(model, channels("inner.conv2", range(2)), **FAST),
        "stability": lambda: stability(model, channel("inner.conv2", 1), seeds=(0, 1), **FAST),
        "evaluate": lambda: [
            evaluate(model, channel("inner.conv2", 0), pixels(1)) for _ in range(fail_on)
        ],
    }
    with pytest.raises((RuntimeError, InvalidOptionError)):
        calls[entry]()
    snapshot.assert_unchanged(model)


@pytest.fixture
def fc_calls() -> Iterator[tuple[nn.Module, list[int]]]:
    model = tiny_model()
    calls: list[int] = []
    handle = model.fc.register_forward_hook(lambda *args: calls.append(1))
    yield model, calls
    handle.remove()


def test_forward_stops_after_the_last_layer_needed(fc_calls: tuple[nn.Module, list[int]]) -> None:
    model, calls = fc_calls
    maximize(model, channel("conv2", 0), **FAST)
    assert calls == []  # no pass, not even the probe, ran the head
    maximize(model, class_logit(0), **FAST)
    assert len(calls) == 1 + 1 + FAST["steps"] + 1  # probe, initial, steps, final


def test_clear_errors() -> None:
    model = tiny_model()
    with pytest.raises(LayerError, match="did you mean 'conv2'"):
        maximize(model, channel("conv22", 0), **FAST)
    with pytest.raises(InvalidOptionError, match=r"which has 8 channels \(valid: 0–7\)"):
        maximize(model, channel("conv2", 8), **FAST)
    with pytest.raises(InvalidOptionError, match="outside layer 'conv2'"):
        maximize(model, neuron("conv2", 1, y=40), **FAST)
    with pytest.raises(TargetError, match=r"5 classes \(valid: 0–4\)"):
        maximize(model, class_logit(5), **FAST)
    with pytest.raises(InvalidOptionError, match="unknown param 'cppn'"):
        maximize(model, channel("conv2", 0), param="cppn", **FAST)
    with pytest.raises(InvalidOptionError, match="steps must be an integer"):
        maximize(model, channel("conv2", 0), size=12, steps=0)
    with pytest.raises(InvalidOptionError, match="lr must be"):
        maximize(model, channel("conv2", 0), lr=-1.0, **FAST)
    with pytest.raises(InvalidOptionError, match="model's device"):
        maximize(model, channel("conv2", 0), device="cuda", **FAST)
    with pytest.raises(InvalidOptionError, match="run as one batch"):
        maximize(model, [channel("conv2", 0) + diversity("conv2")] * 3, batch_size=2, **FAST)
    with pytest.raises(InvalidInputError, match=r"torch\.nn\.Module"):
        maximize("resnet", channel("conv2", 0), **FAST)
    with pytest.raises(ModelStateError, match="training mode"):
        maximize(tiny_model().train(), channel("conv2", 0), **FAST)


def test_fixed_size_head_needs_input_size_only_when_it_runs(fashion: nn.Module) -> None:
    # the pass stops after conv2, so the 52 px padded image never reaches fc1
    vis = maximize(fashion, channel("conv2", 0), size=28, steps=2)
    assert vis.images.shape == (1, 1, 28, 28)
    with pytest.raises(InvalidOptionError, match="choose an image size the model accepts"):
        maximize(fashion, class_logit(0), size=28, steps=2)
    vis = maximize(fashion, class_logit(0), size=28, steps=2, input_size=28)
    assert vis.images.shape == (1, 1, 28, 28)


def test_loaded_model_supplies_its_normalisation() -> None:
    net = st.load_model(tiny_model(dtype=torch.float32))
    vis = maximize(net, channel("conv2", 0), **FAST)
    assert vis.settings["normalize"].startswith("(x - [0.485, 0.456, 0.406])")
    pixels = vis.images
    assert torch.equal(evaluate(net, channel("conv2", 0), pixels), vis.values)


def test_diversity_couples_rows_and_spreads_solutions() -> None:
    model = tiny_model()
    plain = maximize(model, [channel("conv3", 1)] * 3, size=16, steps=20, lr=0.3)
    diverse = maximize(
        model, [channel("conv3", 1) + 5 * diversity("conv3")] * 3, size=16, steps=20, lr=0.3
    )
    assert diverse.objectives[0] == "channel('conv3', 1) + 5 * diversity('conv3')"
    rose(diverse)
    spread = lambda v: torch.cdist(v.images.flatten(1), v.images.flatten(1)).mean()  # noqa: E731
    assert spread(diverse) > spread(plain)


def test_stability_measures_pairwise_distances() -> None:
    model = tiny_model()
    result = stability(model, channel("conv3", 1), seeds=(7, 2, 5), **FAST)
    assert result.layer == "conv3" and result.seeds == (7, 2, 5)
    for matrix in (result.pairwise_activation, result.pairwise_gram, result.pairwise_pixel):
        assert matrix is not None and matrix.shape == (3, 3)
        torch.testing.assert_close(matrix, matrix.T)
        torch.testing.assert_close(matrix.diagonal(), torch.zeros(3, dtype=torch.float64))
    images = result.visualization.images
    rms = ((images[0] - images[2]) ** 2).mean().sqrt()
    torch.testing.assert_close(result.pairwise_pixel[0, 2], rms)
    off = result.pairwise_pixel[torch.triu_indices(3, 3, 1).unbind()]
    assert result.pixel_distance == pytest.approx(float(off.mean()))
    # row i is the run from seeds[i] alone
    alone = maximize(model, channel("conv3", 1), seed=2, **FAST)
    assert torch.equal(alone.images[0], images[1])
    logits = stability(model, class_logit(1), seeds=(0, 1), **FAST)
    assert logits.layer is None and logits.gram_distance is None
    with pytest.raises(InvalidOptionError, match="two distinct seeds"):
        stability(model, channel("conv3", 1), seeds=(1, 1), **FAST)
    with pytest.raises(InvalidOptionError, match="seeds=, not seed="):
        stability(model, channel("conv3", 1), seed=1, **FAST)


@pytest.mark.slow
def test_efficientnet_lite0_channel_rises_and_model_untouched() -> None:
    net = st.load_model("efficientnet-lite0")
    snapshot = Snapshot.take(net.module)
    vis = maximize(net, channels("_blocks.10", [3, 40]), size=48, steps=12)
    rose(vis)
    snapshot.assert_unchanged(net.module)
