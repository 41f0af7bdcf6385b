"""Occlusion and RISE: Captum's ``Occlusion`` as the oracle, hand-computed values on
linear models, the RISE reference code's masks (scikit-image resize) and a direct loop
re-implementation of the RISE sum; batching, chunking, seeds and the model's state."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

import seethrough as st
from helpers import Failing, Snapshot, tiny_inputs, tiny_model
from seethrough.attribution import perturbation
from seethrough.core.baselines import gaussian_blur
from seethrough.errors import InvalidOptionError, TargetError

# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------


def captum_occlusion(
    model: nn.Module,
    x: Tensor,
    window: tuple[int, int],
    stride: tuple[int, int],
    baseline: Any,
    target: Tensor,
    monkeypatch: pytest.MonkeyPatch,
) -> Tensor:
    """Captum's occlusion with windows over all channels, kept in the inputs' dtype.

    Captum divides its float64 sums by the window counts after ``.float()``
    (``feature_ablation.format_result``), returning float32; the division is redone
    here in the sums' dtype so that float64 comparisons can be exact.
    """
    from captum.attr import Occlusion
    from captum.attr._core import feature_ablation

    def divide_in_dtype(total, weights, is_tuple, use_weights):  # type: ignore[no-untyped-def]
        assert use_weights
        attrib = tuple(t / w.to(t.dtype) for t, w in zip(total, weights))
        return feature_ablation._format_output(is_tuple, attrib)

    monkeypatch.setattr(feature_ablation, "format_result", divide_in_dtype)
    channels = x.shape[1]
    return Occlusion(model).attribute(
        x,
        sliding_window_shapes=(channels, *window),
        strides=(channels, *stride),
        baselines=baseline,
        target=target.tolist(),
        perturbations_per_eval=8,
    )


class Linear(nn.Module):
    """``f(x) = W x + b`` on flattened images: ``classes`` scores."""

    def __init__(self, shape: tuple[int, int, int], classes: int = 3) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(5)
        size = shape[0] * shape[1] * shape[2]
        self.weight = nn.Parameter(torch.randn(classes, size, generator=g, dtype=torch.float64))
        self.bias = nn.Parameter(torch.randn(classes, generator=g, dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1) @ self.weight.T + self.bias


class Recording(nn.Module):
    """Wraps a model and records the batch size of every forward call."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.sizes: list[int] = []

    def forward(self, x: Tensor) -> Tensor:
        self.sizes.append(len(x))
        return self.inner(x)


def rise_by_loop(
    model: nn.Module,
    x: Tensor,
    masks: Tensor,
    base: Tensor,
    targets: Tensor,
    p: float,
    score: str = "logit",
) -> Tensor:
    """The RISE sum written out: one mask and one image at a time; ``score`` is the
    target's logit or its softmax probability over the classes (the paper's)."""
    out = torch.zeros(len(x), *x.shape[2:], dtype=x.dtype)
    with torch.no_grad():
        for i in range(len(x)):
            for mask in masks:
                masked = x[i] * mask + (1 - mask) * base[i]
                logits = model(masked[None])[0]
                f = torch.softmax(logits, dim=0) if score == "probability" else logits
                out[i] += f[targets[i]] * mask
    return (out / (len(masks) * p))[:, None].expand_as(x)


# ---------------------------------------------------------------------------------------
# Occlusion
# ---------------------------------------------------------------------------------------

OCCLUSION_CASES = [
    # window, stride, baseline: strides that divide the image and strides that do not
    # (the last window then runs past the edge and is clipped, as in Captum)
    ((4, 4), (4, 4), "zeros"),
    ((4, 4), (3, 3), "zeros"),
    ((3, 5), (2, 4), "mean"),
    ((5, 5), (5, 5), "blur"),
    ((12, 4), (1, 3), 0.3),
    ((2, 2), (1, 1), "tensor"),
    ((7, 6), (7, 5), "zeros"),  # 12 = 7 + 5: the second window is clipped to 5 rows
]


@pytest.mark.parametrize(("window", "stride", "baseline"), OCCLUSION_CASES)
def test_occlusion_equals_captum_in_float64(
    window: tuple[int, int], stride: tuple[int, int], baseline: Any, monkeypatch: Any
) -> None:
    model, x = tiny_model(), tiny_inputs()
    if baseline == "tensor":
        baseline = torch.linspace(-1, 1, 12, dtype=torch.float64).view(1, 1, 1, 12)
    ours = st.explain(model, x, "occlusion", window=window, stride=stride, baseline=baseline)
    theirs_base: Any = baseline
    if baseline == "zeros":
        theirs_base = 0.0
    elif baseline == "mean":
        theirs_base = x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    elif baseline == "blur":
        theirs_base = gaussian_blur(x, 10.0)
    theirs = captum_occlusion(model, x, window, stride, theirs_base, ours.targets, monkeypatch)
    assert theirs.dtype == torch.float64
    assert float(theirs.abs().max()) > 0
    torch.testing.assert_close(ours.attributions, theirs, rtol=0, atol=1e-12)


def test_occlusion_default_stride_is_half_the_window(monkeypatch: Any) -> None:
    model, x = tiny_model(), tiny_inputs(n=2)
    ours = st.explain(model, x, "occlusion", window=5, target=[1, 3])
    theirs = captum_occlusion(model, x, (5, 5), (2, 2), 0, ours.targets, monkeypatch)
    torch.testing.assert_close(ours.attributions, theirs, rtol=0, atol=1e-12)
    assert ours.settings["stride"] is None
    assert ours.score_drops.shape == (2, 5, 5)  # ceil((12 - 5) / 2) + 1 = 5 per axis


def test_captum_returns_float32_for_float64_inputs_we_keep_the_dtype() -> None:
    """A deliberate difference: Captum's ``format_result`` calls ``.float()``."""
    from captum.attr import Occlusion

    model, x = tiny_model(), tiny_inputs(n=1)
    theirs = Occlusion(model).attribute(
        x, sliding_window_shapes=(3, 4, 4), strides=(3, 4, 4), target=0
    )
    ours = st.explain(model, x, "occlusion", window=4, stride=4, target=0).attributions
    assert theirs.dtype == torch.float32
    assert ours.dtype == torch.float64
    torch.testing.assert_close(ours.float(), theirs, rtol=1e-5, atol=1e-7)


def test_occlusion_equals_captum_on_efficientnet_lite0(monkeypatch: Any) -> None:
    """One photo at 224 px, 5 × 3 = 15 rectangular windows, partial ones at the edges.

    Float32: the same graph on differently composed batches; the drops are differences
    of logits of size ~10, so they carry ~1e-6 absolute rounding; 1e-4 of the map's
    largest value leaves a wide margin (measured: 2.5e-6).
    """
    net = st.load_model("efficientnet-lite0")
    x = net.preprocess(st.load_images(["sample:chelsea"]))
    ours = st.explain(net, x, "occlusion", window=(64, 80), stride=(48, 72))
    assert ours.score_drops.shape == (1, 5, 3)
    theirs = captum_occlusion(
        net.module, x, (64, 80), (48, 72), 0.0, ours.targets, monkeypatch
    ).detach()
    scale = float(theirs.abs().max())
    assert scale > 0
    torch.testing.assert_close(ours.attributions, theirs, rtol=0, atol=1e-4 * scale)


@pytest.mark.parametrize("channels", [1, 3])
def test_occlusion_of_a_linear_model_with_single_pixel_windows(channels: int) -> None:
    """f(x) = w·x + b, zero baseline, 1 × 1 windows over all channels: the drop at a
    pixel is Σ_c w_c x_c there (for one channel: w ⊙ x exactly)."""
    model = Linear((channels, 5, 4)).eval()
    x = torch.randn(2, channels, 5, 4, generator=torch.Generator().manual_seed(2)).double()
    ex = st.explain(model, x, "occlusion", window=1, stride=1, target=[2, 0])
    w = model.weight.detach()[[2, 0]].view(2, channels, 5, 4)
    expected = (w * x).sum(1, keepdim=True).expand_as(x)
    torch.testing.assert_close(ex.attributions, expected, rtol=0, atol=1e-13)
    assert torch.equal(ex.windows_per_pixel, torch.ones(5, 4, dtype=torch.float64))


def test_occlusion_score_drops_and_counts() -> None:
    model, x = tiny_model(), tiny_inputs(n=1)
    ex = st.explain(model, x, "occlusion", window=6, stride=6, baseline=0.0)
    # four disjoint windows: the attribution is the window's drop, counted once
    assert torch.equal(ex.windows_per_pixel, torch.ones(12, 12, dtype=torch.float64))
    drops = ex.score_drops[0]
    expected = drops.repeat_interleave(6, 0).repeat_interleave(6, 1)
    torch.testing.assert_close(ex.attributions[0, 0], expected, rtol=0, atol=1e-15)
    occluded = x.clone()
    occluded[..., 6:, :6] = 0
    with torch.no_grad():
        manual = ex.scores[0] - model(occluded)[0, ex.targets[0]]
    torch.testing.assert_close(drops[1, 0], manual, rtol=0, atol=1e-13)


# ---------------------------------------------------------------------------------------
# RISE
# ---------------------------------------------------------------------------------------


def test_rise_masks_are_those_of_the_reference_code() -> None:
    """The reference code: ``resize(grid, (s + 1) · cell_size, order=1, mode="reflect",
    anti_aliasing=False)[dy:dy + H, dx:dx + W]`` with ``cell_size = ceil(size / s)``."""
    transform = pytest.importorskip("skimage.transform")
    made = perturbation.RiseMasks(6, 3, 0.5, (10, 13), 4, torch.float64, torch.device("cpu"))
    masks = made.masks(0, 6)
    assert masks.shape == (6, 10, 13)
    for k in range(6):
        grid = made.grids[k].numpy().astype("float32")
        up = transform.resize(grid, (16, 20), order=1, mode="reflect", anti_aliasing=False)
        dy, dx = int(made.shifts[0][k]), int(made.shifts[1][k])
        assert 0 <= dy < 4 and 0 <= dx < 5
        expected = torch.from_numpy(up[dy : dy + 10, dx : dx + 13]).double()
        torch.testing.assert_close(masks[k], expected, rtol=0, atol=1e-7)  # float32 grid
    # any slice of the set is the same masks: chunking cannot change them
    assert torch.equal(made.masks(2, 5), masks[2:5])
    # and the draw does not depend on the inputs' dtype
    single = perturbation.RiseMasks(6, 3, 0.5, (10, 13), 4, torch.float32, torch.device("cpu"))
    assert torch.equal(single.grids.double(), made.grids)
    torch.testing.assert_close(single.masks(0, 6).double(), masks, rtol=0, atol=1e-6)


def test_rise_equals_a_direct_loop_with_the_same_masks() -> None:
    model, x = tiny_model(), tiny_inputs(n=2)
    ex = st.explain(model, x, "rise", masks=12, cell=3, probability=0.4, seed=7, batch_size=5)
    made = perturbation.RiseMasks(12, 3, 0.4, (12, 12), 7, x.dtype, x.device)
    expected = rise_by_loop(model, x, made.masks(0, 12), torch.zeros_like(x), ex.targets, 0.4)
    torch.testing.assert_close(ex.attributions, expected, rtol=0, atol=1e-13)


def test_rise_with_a_baseline_equals_the_direct_loop() -> None:
    model, x = tiny_model(), tiny_inputs(n=2)
    ex = st.explain(model, x, "rise", masks=8, cell=4, baseline="mean", target=[1, 4])
    made = perturbation.RiseMasks(8, 4, 0.5, (12, 12), 0, x.dtype, x.device)
    base = x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    expected = rise_by_loop(model, x, made.masks(0, 8), base, ex.targets, 0.5)
    torch.testing.assert_close(ex.attributions, expected, rtol=0, atol=1e-13)


def test_rise_on_probabilities_equals_the_direct_loop_with_the_same_masks() -> None:
    """The paper's form: the masked inputs' class probabilities, softmax over classes."""
    model, x = tiny_model(), tiny_inputs(n=2)
    ex = st.explain(
        model,
        x,
        "rise",
        masks=12,
        cell=3,
        probability=0.4,
        seed=7,
        batch_size=5,
        target=[1, 4],
        score="probability",
    )
    assert ex.settings["score"] == "probability"
    made = perturbation.RiseMasks(12, 3, 0.4, (12, 12), 7, x.dtype, x.device)
    zeros = torch.zeros_like(x)
    expected = rise_by_loop(model, x, made.masks(0, 12), zeros, ex.targets, 0.4, "probability")
    torch.testing.assert_close(ex.attributions, expected, rtol=0, atol=1e-15)
    logits = rise_by_loop(model, x, made.masks(0, 12), zeros, ex.targets, 0.4)
    assert not torch.allclose(expected, logits)  # the option changes the map
    with torch.no_grad():
        clean = model(x)[torch.arange(2), ex.targets]
    torch.testing.assert_close(ex.scores, clean, rtol=0, atol=0)  # scores stay logits


def test_rise_on_probabilities_keeping_every_cell_gives_the_probability_everywhere() -> None:
    """p = 1, a linear model: every mask is all ones, so S = softmax(W x + b)[c]."""
    model, x = Linear((3, 6, 6)).eval(), tiny_inputs(n=2, size=6)
    ex = st.explain(model, x, "rise", masks=5, cell=2, probability=1.0, score="probability")
    with torch.no_grad():
        logits = x.flatten(1) @ model.weight.T + model.bias
    p = (logits.exp() / logits.exp().sum(dim=1, keepdim=True))[torch.arange(2), ex.targets]
    torch.testing.assert_close(ex.attributions, p.view(2, 1, 1, 1).expand_as(x), rtol=1e-14, atol=0)


def test_rise_on_probabilities_refuses_a_callable_target() -> None:
    model, x = tiny_model(), tiny_inputs(n=2)
    before = Snapshot.take(model, x)
    with pytest.raises(TargetError, match="needs class targets"):
        st.explain(model, x, "rise", masks=2, score="probability", target=lambda o: o[:, 0])
    before.assert_unchanged(model, x)


def test_rise_keeping_every_cell_gives_the_score_everywhere() -> None:
    """p = 1: every mask is all ones, so S = Σ f(x) · 1 / N = f(x) at every pixel."""
    model, x = Linear((3, 6, 6)).eval(), tiny_inputs(n=2, size=6)
    ex = st.explain(model, x, "rise", masks=5, cell=2, probability=1.0)
    expected = ex.scores.view(2, 1, 1, 1).expand_as(x)
    torch.testing.assert_close(ex.attributions, expected, rtol=0, atol=1e-13)


def test_rise_same_seed_same_output_other_seed_other_output() -> None:
    model, x = tiny_model(), tiny_inputs(n=2)
    a = st.explain(model, x, "rise", masks=10, cell=3, seed=1).attributions
    b = st.explain(model, x, "rise", masks=10, cell=3, seed=1).attributions
    c = st.explain(model, x, "rise", masks=10, cell=3, seed=2).attributions
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_rise_uses_one_mask_set_for_the_whole_batch() -> None:
    """Row i of a batch equals a single call on image i with the *same* seed."""
    assert perturbation.Rise.shares_seed_across_rows
    model, x = tiny_model(), tiny_inputs(n=3)
    batch = st.explain(model, x, "rise", masks=10, cell=3, seed=4)
    for i in range(3):
        single = st.explain(model, x[i : i + 1], "rise", masks=10, cell=3, seed=4)
        torch.testing.assert_close(
            single.attributions[0], batch.attributions[i], rtol=0, atol=1e-13
        )


# ---------------------------------------------------------------------------------------
# Both methods: batching, chunking, budget, model state, options
# ---------------------------------------------------------------------------------------

CASES = {
    "occlusion": {"window": 4, "stride": 3},
    "rise": {"masks": 10, "cell": 3},
}


@pytest.mark.parametrize("method", list(CASES))
def test_batch_equals_single_calls_and_chunking_does_not_matter(method: str) -> None:
    model, x = tiny_model(), tiny_inputs(n=3)
    batch = st.explain(model, x, method, **CASES[method])
    chunked = st.explain(model, x, method, batch_size=2, **CASES[method])
    torch.testing.assert_close(chunked.attributions, batch.attributions, rtol=0, atol=1e-13)
    for i in range(3):
        single = st.explain(model, x[i : i + 1], method, **CASES[method])
        torch.testing.assert_close(
            single.attributions[0], batch.attributions[i], rtol=0, atol=1e-13
        )


@pytest.mark.parametrize("method", list(CASES))
def test_rows_per_pass_stay_within_batch_size(method: str) -> None:
    model = Recording(tiny_model()).eval()
    x = tiny_inputs(n=3)
    seen: list[tuple[int, int]] = []
    st.explain(
        model, x, method, batch_size=5, progress=lambda a, b: seen.append((a, b)), **CASES[method]
    )
    assert max(model.sizes) <= 5
    windows = 16 if method == "occlusion" else 10  # 4 × 4 window positions, or 10 masks
    assert sum(model.sizes) == 3 * (1 + windows)
    assert seen[-1] == (3 * (1 + windows), 3 * (1 + windows))  # progress planned right


@pytest.mark.parametrize("fail_on", [1, 2, 5])
@pytest.mark.parametrize("method", list(CASES))
def test_model_untouched_on_success_and_when_forward_raises(method: str, fail_on: int) -> None:
    inner = tiny_model()
    inner.fc.weight.grad = torch.full_like(inner.fc.weight, 0.5)
    model = Failing(inner, fail_on).eval()
    x = tiny_inputs().requires_grad_(True)
    before = Snapshot.take(model, x)
    with pytest.raises(RuntimeError, match="boom inside forward"):
        st.explain(model, x, method, batch_size=2, **CASES[method])
    before.assert_unchanged(model, x)
    st.explain(inner, x, method, **CASES[method])
    before.assert_unchanged(model, x)


@pytest.mark.parametrize(
    ("method", "options", "message"),
    [
        ("occlusion", {"baseline": "noise"}, "unknown baseline 'noise'"),
        ("occlusion", {"window": 3, "stride": 4}, "larger than the window"),
        ("occlusion", {"window": (3, 0)}, "window must be a positive int"),
        ("occlusion", {"blur_sigma": 0}, "blur_sigma must be positive"),
        ("rise", {"masks": 0}, "masks must be a positive integer"),
        ("rise", {"cell": 2.5}, "cell must be a positive integer"),
        ("rise", {"probability": 0.0}, r"probability must be in \(0, 1\]"),
        ("rise", {"probability": 1.5}, r"probability must be in \(0, 1\]"),
        ("rise", {"score": "softmax"}, r"unknown score 'softmax' \(valid: logit, probability\)"),
    ],
)
def test_bad_options_are_refused(method: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidOptionError, match=message):
        st.attribution.make_method(method, **options)


def test_window_larger_than_the_image_is_refused() -> None:
    with pytest.raises(InvalidOptionError, match=r"window \(16\) is larger than the image \(12\)"):
        st.explain(tiny_model(), tiny_inputs(), "occlusion", window=16)


def test_baseline_tensor_must_broadcast() -> None:
    with pytest.raises(InvalidOptionError, match="does not broadcast"):
        st.explain(tiny_model(), tiny_inputs(), "rise", masks=2, baseline=torch.zeros(5))
