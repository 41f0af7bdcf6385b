"""Oracle tests: our numbers equal Captum's on identical inputs, on two real networks.

* EfficientNet-Lite0 with its real ImageNet weights (``nn.ReLU6`` nonlinearities) on the
  two sample photos (chelsea → tiger cat 282, coffee → espresso 967).
* torchvision ResNet18 with a fixed random initialisation (``nn.ReLU(inplace=True)``,
  one module reused twice per ``BasicBlock``); nothing is downloaded.

Everything runs in float32, like the models. Tolerances are relative to the largest
magnitude of the reference map (``atol = k · max|theirs|``) so that they mean the same
thing for every method; each comparison says why its tolerance is what it is, and the
:func:`assert_oracle` helper refuses vacuous comparisons (an all-zero reference).

Where we are deliberately different from Captum the tests say so and show which side is
right: the trapezoid rule of integrated gradients (Captum's weights sum to ``1 − 1/n``),
and guided backprop / deconvnet on ``nn.ReLU6`` (Captum silently returns the plain
gradient).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
import torchvision
from captum.attr import (
    Deconvolution,
    GuidedBackprop,
    GuidedGradCam,
    InputXGradient,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    NoiseTunnel,
    Saliency,
)
from torch import Tensor, nn

import seethrough as st

pytestmark = pytest.mark.filterwarnings(
    # Captum's notices on every call: its ReLU hooks, and that it set requires_grad.
    "ignore:Setting backward hooks on ReLU activations:UserWarning",
    "ignore:Input Tensor 0 did not already require gradients:UserWarning",
)

# Largest deviation seen per comparison, relative to max|reference| (for the report; tests
# never read it).
DEVIATIONS: dict[str, float] = {}

# The same float32 graph evaluated by both libraries, possibly on differently composed
# batches (oneDNN picks its blocking by batch size), so only rounding differs: ~1e-7 of
# the map's scale per element. 1e-5 leaves a 100× margin and still catches any formula
# or target difference, which shows at the 1e-1 level.
EXACT = 1e-5
# Sums over many path points / noise samples accumulated in a different order (Captum
# sums steps-major over a batch laid out as step × image; we sum per image).
SUMMED = 1e-4

EFFNET_CLASSES = [282, 967]  # the predicted classes: tiger cat, espresso
EFFNET_OTHER = [281, 968]  # tabby cat, cup: an explicit, non-predicted target per image
# Cock and cliff dwelling: explicit targets whose Grad-CAM maps have both signs on both
# models (so the ReLU of Grad-CAM is not a no-op in the comparisons).
MIXED = [7, 500]


def assert_oracle(name: str, ours: Tensor, theirs: Tensor, scale: float) -> None:
    """``ours`` equals ``theirs`` to ``scale · max|theirs|`` per element (float32)."""
    ours, theirs = ours.detach(), theirs.detach()
    assert ours.shape == theirs.shape, f"{name}: shape {ours.shape} vs {theirs.shape}"
    assert ours.dtype == theirs.dtype == torch.float32
    reference = float(theirs.abs().max())
    assert reference > 0, f"{name}: the reference map is all zeros (vacuous comparison)"
    DEVIATIONS[name] = max(
        DEVIATIONS.get(name, 0.0), float((ours - theirs).abs().max()) / reference
    )
    torch.testing.assert_close(ours, theirs, rtol=0, atol=scale * reference)


def assert_distinct(a: Tensor, b: Tensor, at_least: float = 0.05) -> None:
    """``a`` and ``b`` differ by more than ``at_least`` of their scale somewhere."""
    scale = float(torch.maximum(a.abs().max(), b.abs().max()))
    assert float((a - b).abs().max()) > at_least * scale


# ---------------------------------------------------------------------------------------
# Models and inputs (module-scoped: built once)
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lite0() -> st.LoadedModel:
    return st.load_model("efficientnet-lite0")


@pytest.fixture(scope="module")
def effnet(lite0: st.LoadedModel) -> nn.Module:
    assert not lite0.module.training
    return lite0.module


@pytest.fixture(scope="module")
def photos(lite0: st.LoadedModel) -> Tensor:
    x = lite0.preprocess(st.load_images(["sample:chelsea", "sample:coffee"]))
    assert x.shape == (2, 3, 224, 224)
    assert x.dtype == torch.float32
    return x


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = torchvision.models.resnet18(weights=None)
    return model.eval()


@pytest.fixture(scope="module")
def effnet_gradient(effnet: nn.Module, photos: Tensor) -> Tensor:
    """Captum's plain gradient of the predicted classes (shared by several tests)."""
    return Saliency(effnet).attribute(photos, target=EFFNET_CLASSES, abs=False).detach()


@pytest.fixture(scope="module")
def resnet_gradient(resnet: nn.Module, photos: Tensor) -> Tensor:
    """Captum's plain gradient of the classes ``MIXED`` on ResNet18."""
    return Saliency(resnet).attribute(photos, target=MIXED, abs=False).detach()


@pytest.fixture(scope="module")
def resnet_guided(resnet: nn.Module, photos: Tensor) -> st.GuidedExplanation:
    """Our guided backprop of the classes ``MIXED`` on ResNet18."""
    return st.explain(resnet, photos, "guided_backprop", target=MIXED)


def test_effnet_predicts_the_photos(effnet: nn.Module, photos: Tensor) -> None:
    with torch.no_grad():
        assert effnet(photos).argmax(1).tolist() == EFFNET_CLASSES


# ---------------------------------------------------------------------------------------
# Gradient and gradient × input
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_name", ["effnet", "resnet"])
def test_gradient_methods_equal_captum(
    request: pytest.FixtureRequest, photos: Tensor, model_name: str
) -> None:
    """``gradient`` of the predicted class vs ``Saliency(abs=False)``; ``gradient_x_input``
    of an explicit class per image vs ``InputXGradient``."""
    model = request.getfixturevalue(model_name)
    with torch.no_grad():
        predicted = model(photos).argmax(1).tolist()

    grad = st.explain(model, photos, "gradient")  # target=None: the predicted class
    assert grad.targets.tolist() == predicted
    saliency = Saliency(model).attribute(photos, target=predicted, abs=False)
    # One forward and one backward pass on the same batch: rounding only (EXACT).
    assert_oracle(f"gradient/{model_name}/predicted", grad.attributions, saliency, EXACT)

    gxi = st.explain(model, photos, "gradient_x_input", target=MIXED)
    assert gxi.targets.tolist() == MIXED
    input_x_gradient = InputXGradient(model).attribute(photos, target=MIXED)
    assert_oracle(f"gradient_x_input/{model_name}/list", gxi.attributions, input_x_gradient, EXACT)
    assert_distinct(grad.attributions * photos, gxi.attributions)  # the target matters


def test_target_tensor_and_batch_equal_captum_single_calls(
    effnet: nn.Module, photos: Tensor
) -> None:
    """A tensor target on a batch of two equals Captum called on each image alone."""
    target = torch.tensor(EFFNET_OTHER)
    ours = st.explain(effnet, photos, "gradient_x_input", target=target)
    assert ours.targets.tolist() == EFFNET_OTHER
    method = InputXGradient(effnet)
    singles = torch.cat(
        [method.attribute(photos[i : i + 1], target=target[i : i + 1]) for i in range(2)]
    )
    # Batch of 2 vs two batches of 1: the convolution kernels may block differently, so
    # rounding differs (EXACT).
    assert_oracle(
        "gradient_x_input/effnet/tensor target vs singles", ours.attributions, singles, EXACT
    )

    cam = st.explain(effnet, photos, "grad_cam", target=target)
    layer = dict(effnet.named_modules())[cam.layer]
    gradcam = LayerGradCam(effnet, layer)
    cam_singles = torch.cat(
        [gradcam.attribute(photos[i : i + 1], target=int(target[i])) for i in range(2)]
    )
    assert_oracle("grad_cam/effnet/tensor target vs singles", cam.attributions, cam_singles, EXACT)


# ---------------------------------------------------------------------------------------
# Integrated gradients (rule= always explicit: the default may change)
# ---------------------------------------------------------------------------------------


def test_integrated_gradients_gausslegendre_equals_captum(
    effnet: nn.Module, photos: Tensor, effnet_gradient: Tensor
) -> None:
    ours = st.explain(
        effnet,
        photos,
        "integrated_gradients",
        target=EFFNET_CLASSES,
        steps=16,
        rule="gausslegendre",
        layout="contiguous",  # Captum's layout: the same arithmetic, so 1e-4 holds
    )
    theirs, delta = IntegratedGradients(effnet).attribute(
        photos,
        target=EFFNET_CLASSES,
        n_steps=16,
        method="gausslegendre",
        return_convergence_delta=True,
    )
    # 16 path gradients weighted and summed, possibly in a different order (SUMMED).
    assert_oracle("integrated_gradients/effnet/gausslegendre", ours.attributions, theirs, SUMMED)
    # The default layout (channels-last on CPU) rounds differently; on a ReLU6 network a
    # few path points then cross a kink on the other side, so single pixels move by up to
    # ~3 % of the map's maximum, while the map as a whole stays the same.
    auto = st.explain(
        effnet,
        photos,
        "integrated_gradients",
        target=EFFNET_CLASSES,
        steps=16,
        rule="gausslegendre",
    )
    diff = (auto.attributions - theirs).flatten(1).norm(dim=1) / theirs.flatten(1).norm(dim=1)
    assert float(diff.max()) < 0.01, diff
    # Both report sum(attr) − (f(x) − f(x')): a difference of numbers of the size of the
    # score gap, so compare it to that scale.
    gap = float((ours.scores - ours.baseline_scores).abs().max())
    DEVIATIONS["integrated_gradients/effnet/gausslegendre delta (of the score gap)"] = (
        float((ours.completeness_error - delta).abs().max()) / gap
    )
    torch.testing.assert_close(ours.completeness_error, delta, rtol=0, atol=1e-4 * gap)
    assert_distinct(ours.attributions, effnet_gradient * photos)


@pytest.mark.parametrize("rule", ["riemann_left", "riemann_right", "riemann_middle"])
def test_integrated_gradients_riemann_rules_equal_captum(
    resnet: nn.Module, photos: Tensor, rule: str
) -> None:
    # One image, 3 steps: the rule's points and weights are what is tested here (the
    # batch of two is covered by the Gauss–Legendre test above).
    x, target = photos[:1], MIXED[:1]
    ours = st.explain(resnet, x, "integrated_gradients", target=target, steps=3, rule=rule)
    theirs = IntegratedGradients(resnet).attribute(x, target=target, n_steps=3, method=rule)
    # Summed over path points, possibly in a different order (SUMMED).
    assert_oracle(f"integrated_gradients/resnet/{rule}", ours.attributions, theirs, SUMMED)


def test_integrated_gradients_trapezoid_differs_from_captum_by_its_missing_weight(
    resnet: nn.Module, photos: Tensor
) -> None:
    """Captum's trapezoid weights its n points 1/n with halved ends (sum 1 − 1/n); ours
    uses the spacing 1/(n − 1) on the same points, so ours = Captum's · n/(n − 1)."""
    n, x, target = 3, photos[:1], MIXED[:1]
    ours = st.explain(
        resnet, x, "integrated_gradients", target=target, steps=n, rule="riemann_trapezoid"
    )
    theirs = IntegratedGradients(resnet).attribute(
        x, target=target, n_steps=n, method="riemann_trapezoid"
    )
    assert_distinct(ours.attributions, theirs, at_least=0.1)
    assert_oracle(
        "integrated_gradients/resnet/riemann_trapezoid vs Captum × n/(n−1)",
        ours.attributions,
        theirs * n / (n - 1),
        SUMMED,
    )


class _Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.weight = nn.Parameter(torch.randn(4, 3 * 6 * 6, generator=g, dtype=torch.float64))
        self.bias = nn.Parameter(torch.randn(4, generator=g, dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1) @ self.weight.T + self.bias


def test_trapezoid_is_exact_on_a_linear_model_where_captums_is_short_by_1_over_n() -> None:
    model = _Linear().eval()
    x = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    n, target = 5, [1, 3]
    ours = st.explain(
        model, x, "integrated_gradients", target=target, steps=n, rule="riemann_trapezoid"
    )
    _, delta = IntegratedGradients(model).attribute(
        x, target=target, n_steps=n, method="riemann_trapezoid", return_convergence_delta=True
    )
    gap = ours.scores - ours.baseline_scores
    # float64 and a linear model: the rule must be exact up to rounding.
    torch.testing.assert_close(ours.completeness_error, torch.zeros_like(gap), rtol=0, atol=1e-12)
    # Captum's integral misses 1/n of the score gap (to float32 rounding: Captum casts its
    # step sizes to float32 even for a float64 model).
    torch.testing.assert_close(delta, -gap / n, rtol=1e-6, atol=0)
    assert float(delta.abs().min()) > 0.01 * float(gap.abs().min())


# ---------------------------------------------------------------------------------------
# SmoothGrad
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["smoothgrad", "smoothgrad_sq", "vargrad"])
def test_smoothgrad_equals_captum_noise_tunnel_with_the_same_noise(
    effnet: nn.Module, photos: Tensor, variant: str
) -> None:
    """Same noise, drawn the same way: our row ``i`` draws ``samples`` normal tensors in
    turn from ``torch.Generator().manual_seed(seed + i)``, and Captum's NoiseTunnel on one
    image draws one ``(samples, C, H, W)`` normal tensor from the global RNG — the same
    numbers once the global RNG is seeded with ``seed + i`` (the Mersenne-Twister stream
    and the 16-wide normal transform coincide as C·H·W is a multiple of 16). So Captum is
    called image by image with ``torch.manual_seed(seed + i)``.

    Our ``noise`` is relative to each image's value range: σᵢ = noise · (max − min); Captum's
    ``stdevs`` is absolute, so it gets σᵢ.
    """
    samples, noise, seed = 2, 0.15, 11
    ours = st.explain(
        effnet,
        photos,
        "smoothgrad",
        target=EFFNET_CLASSES,
        samples=samples,
        noise=noise,
        variant=variant,
        seed=seed,
    )
    flat = photos.flatten(1)
    sigmas = noise * (flat.max(1).values - flat.min(1).values)
    tunnel = NoiseTunnel(Saliency(effnet))
    rows = []
    with torch.random.fork_rng():
        for i in range(len(photos)):
            torch.manual_seed(seed + i)
            rows.append(
                tunnel.attribute(
                    photos[i : i + 1],
                    nt_type=variant,
                    nt_samples=samples,
                    stdevs=float(sigmas[i]),
                    target=EFFNET_CLASSES[i],
                    abs=False,
                )
            )
    theirs = torch.cat(rows)
    # Mean (and mean of squares) over 2 noisy gradients computed in batches of 4 vs 2;
    # vargrad is a difference of two such means, so its relative rounding is larger.
    scale = SUMMED if variant != "vargrad" else 1e-3
    assert_oracle(f"smoothgrad/effnet/{variant}", ours.attributions, theirs, scale)


def test_smoothgrad_absolute_stdev_equals_captum_stdevs(effnet: nn.Module, photos: Tensor) -> None:
    """Our ``stdev`` option is absolute, like Captum's ``stdevs``; our ``noise`` is not
    (the same number as a relative ``noise`` gives a clearly different map)."""
    samples, sigma, seed = 2, 0.15, 11
    x, target = photos[:1], EFFNET_CLASSES[:1]
    tunnel = NoiseTunnel(Saliency(effnet))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        theirs = tunnel.attribute(
            x,
            nt_type="smoothgrad",
            nt_samples=samples,
            stdevs=sigma,
            target=target[0],
            abs=False,
        )
    absolute = st.explain(
        effnet, x, "smoothgrad", target=target, samples=samples, stdev=sigma, seed=seed
    )
    # Same noise, one image; a mean of 2 gradients from batches of 2 on both sides (SUMMED).
    assert_oracle("smoothgrad/effnet/absolute stdev", absolute.attributions, theirs, SUMMED)
    relative = st.explain(
        effnet, x, "smoothgrad", target=target, samples=samples, noise=sigma, seed=seed
    )
    assert_distinct(relative.attributions, theirs)


# ---------------------------------------------------------------------------------------
# Grad-CAM
# ---------------------------------------------------------------------------------------


DEFAULT_CAM_LAYER = {"effnet": "_act_head", "resnet": "layer4"}


@pytest.mark.parametrize("model_name", ["effnet", "resnet"])
def test_grad_cam_equals_captum_layer_grad_cam(
    request: pytest.FixtureRequest, photos: Tensor, model_name: str
) -> None:
    model = request.getfixturevalue(model_name)
    raw = st.explain(model, photos, "grad_cam", target=MIXED)  # the default layer:
    assert raw.layer == DEFAULT_CAM_LAYER[model_name]  # the last spatial map (C × 7 × 7)
    gradcam = LayerGradCam(model, dict(model.named_modules())[raw.layer])
    theirs_raw = gradcam.attribute(photos, target=MIXED, relu_attributions=False)
    theirs_relu = gradcam.attribute(photos, target=MIXED, relu_attributions=True)
    assert raw.resolution == "layer"
    assert raw.attributions.shape == (2, 1, 7, 7)
    # Captum's channel weights are the same spatial mean of the layer gradient; the backward
    # pass is the same, cut at the layer: rounding only (EXACT).
    assert_oracle(f"grad_cam/{model_name}/raw", raw.attributions, theirs_raw, EXACT)
    for row in theirs_raw.detach().flatten(1):  # both signs in each map: the ReLU matters
        assert float(row.min()) < 0 < float(row.max())

    rectified = st.explain(model, photos, "grad_cam", target=MIXED, layer=raw.layer, relu=True)
    assert_oracle(f"grad_cam/{model_name}/relu", rectified.attributions, theirs_relu, EXACT)
    assert_distinct(raw.attributions, rectified.attributions)

    for mode in ("bilinear", "nearest", "bicubic"):
        upsampled = raw.to_input_size(mode)
        assert upsampled.resolution == "input"
        reference = LayerAttribution.interpolate(theirs_raw, (224, 224), interpolate_mode=mode)
        # Interpolation is linear in the map: the same rounding as the map (EXACT).
        assert_oracle(
            f"grad_cam/{model_name}/upsampled {mode}", upsampled.attributions, reference, EXACT
        )


# ---------------------------------------------------------------------------------------
# Guided backprop and deconvnet
# ---------------------------------------------------------------------------------------


# Our rectifier methods, Captum's counterparts, and the kind of our reference rule.
RECTIFIED = {
    "guided_backprop": (GuidedBackprop, "guided"),
    "deconvnet": (Deconvolution, "deconvnet"),
}


@pytest.mark.parametrize("method", list(RECTIFIED))
def test_rectified_gradients_equal_captum_on_relu_resnet(
    request: pytest.FixtureRequest,
    resnet: nn.Module,
    photos: Tensor,
    resnet_gradient: Tensor,
    method: str,
) -> None:
    oracle = RECTIFIED[method][0]
    if method == "guided_backprop":
        ours = request.getfixturevalue("resnet_guided")
    else:
        ours = st.explain(resnet, photos, method, target=MIXED)
    theirs = oracle(resnet).attribute(photos, target=MIXED)
    # ResNet18 calls ReLU 17 times: the stem, and twice per BasicBlock (one reused,
    # in-place module), all reached.
    assert ours.rule_applications == 17
    # nn.ReLU everywhere, so Captum's hooks reach them too: rounding only (EXACT).
    assert_oracle(f"{method}/resnet", ours.attributions, theirs, EXACT)
    assert_distinct(ours.attributions, resnet_gradient, at_least=0.2)


class _ReferenceReLU6(torch.autograd.Function):
    """ReLU6 with a rewritten backward, from the papers' definitions.

    Guided backprop (Springenberg et al., 2015): the op's own local derivative — 1 on the
    open interval (0, 6), 0 elsewhere, as PyTorch's hardtanh backward — times the positive
    part of the incoming gradient. Deconvnet (Zeiler & Fergus, 2014): the positive part of
    the incoming gradient, whatever the forward input.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, kind: str) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.kind = kind
        return x.clamp(0, 6)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        passed = grad * (grad > 0)
        if ctx.kind == "guided":
            passed = passed * ((x > 0) & (x < 6))
        return passed, None


class _ReferenceReLU6Module(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def forward(self, x: Tensor) -> Tensor:
        return _ReferenceReLU6.apply(x, self.kind)


def _with_reference_relu6(model: nn.Module, kind: str) -> tuple[nn.Module, int]:
    """A deep copy of ``model`` with every ``nn.ReLU6`` replaced by the reference rule."""
    clone = copy.deepcopy(model)
    replaced = 0
    for parent in list(clone.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU6):
                setattr(parent, name, _ReferenceReLU6Module(kind))
                replaced += 1
    return clone, replaced


@pytest.mark.parametrize("method", list(RECTIFIED))
def test_rectified_gradients_on_relu6_effnet_where_captum_returns_the_gradient(
    effnet: nn.Module, photos: Tensor, effnet_gradient: Tensor, method: str
) -> None:
    oracle, kind = RECTIFIED[method]
    ours = st.explain(effnet, photos, method, target=EFFNET_CLASSES)
    # Captum hooks nn.ReLU only; nn.ReLU6 is a Hardtanh, so nothing is hooked and its
    # "guided" map is the plain gradient, without a word (their bug, documented here).
    captum = oracle(effnet).attribute(photos, target=EFFNET_CLASSES)
    assert_oracle(f"{method}/effnet: Captum == plain gradient", captum, effnet_gradient, EXACT)
    assert_distinct(ours.attributions, effnet_gradient, at_least=0.2)

    reference_model, replaced = _with_reference_relu6(effnet, kind)
    assert replaced == ours.rule_applications == 33  # stem, head, 16 blocks (15 expanded)
    reference = Saliency(reference_model).attribute(photos, target=EFFNET_CLASSES, abs=False)
    # Same graph, the same rule written independently: rounding only (EXACT).
    assert_oracle(f"{method}/effnet vs reference ReLU6 rule", ours.attributions, reference, EXACT)


# ---------------------------------------------------------------------------------------
# Guided Grad-CAM
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_guided_grad_cam_equals_captum_on_resnet(
    resnet: nn.Module, photos: Tensor, resnet_guided: st.GuidedExplanation, mode: str
) -> None:
    """Ours upsamples bilinearly by default (as the paper), Captum nearest; both take the
    mode as an option, so compare with the same mode. Both rectify the CAM first."""
    ours = st.explain(
        resnet, photos, "guided_grad_cam", target=MIXED, layer="layer4", interpolation=mode
    )
    theirs = GuidedGradCam(resnet, resnet.layer4).attribute(
        photos, target=MIXED, interpolate_mode=mode
    )
    # Guided backprop × an upsampled CAM, each matching to rounding (EXACT).
    assert_oracle(f"guided_grad_cam/resnet/{mode}", ours.attributions, theirs, EXACT)

    # The composition by hand, from our own pieces: guided × upsampled relu(Grad-CAM).
    cam = st.explain(resnet, photos, "grad_cam", target=MIXED, layer="layer4", relu=True)
    composed = resnet_guided.attributions * cam.to_input_size(mode).attributions
    assert_oracle(f"guided_grad_cam/resnet/{mode} by hand", ours.attributions, composed, EXACT)
    other = "bilinear" if mode == "nearest" else "nearest"
    assert_distinct(
        ours.attributions, resnet_guided.attributions * cam.to_input_size(other).attributions
    )
