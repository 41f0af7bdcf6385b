"""The CAM family of ``seethrough.attribution.cams``: oracles and exact references.

* Oracle: pytorch-grad-cam (1.5) *before* its normalisation — its raw channel weights
  (``get_cam_weights``) and raw maps (``get_cam_image``; ``compute_cam_per_layer`` then
  applies ``np.maximum`` and ``scale_cam_image``, which we skip) — on EfficientNet-Lite0
  (real weights, the two sample photos) and on ResNet18 (``weights=None``, seed 0).
  pytorch-grad-cam calls ``model.eval()`` and fills ``param.grad``: it gets a deep copy.
* Exact references on the tiny float64 model: Ablation-CAM's scores equal ablating each
  channel by hand, Score-CAM equals a direct loop, CAM equals Grad-CAM × h·w.

Tolerances are relative to ``max|reference|`` (as in ``test_oracles_captum``): ``EXACT``
(1e-5) where both sides evaluate the same float32 graph, ``PERTURBED`` (1e-4) where
many forward passes on differently composed batches feed a softmax or a ratio.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from pytorch_grad_cam import (
    AblationCAM,
    EigenCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import Tensor, nn

import seethrough as st
import seethrough.attribution.cams  # registers the methods
from helpers import Failing, Snapshot, tiny_inputs, tiny_model
from seethrough.errors import LayerError

EXACT = 1e-5
PERTURBED = 1e-4
DEVIATIONS: dict[str, float] = {}  # largest deviation per comparison, for the report

NEW_METHODS = [
    "grad_cam_pp",
    "xgrad_cam",
    "hires_cam",
    "layer_cam",
    "score_cam",
    "ablation_cam",
    "eigen_cam",
    "cam",
]
EFFNET_CLASSES = [282, 967]
MIXED = [7, 500]


def assert_oracle(name: str, ours: Tensor, theirs: Tensor, scale: float) -> None:
    """``ours`` equals ``theirs`` to ``scale · max|theirs|`` per element."""
    ours, theirs = ours.detach().to(theirs.dtype), theirs.detach()
    assert ours.shape == theirs.shape, f"{name}: shape {ours.shape} vs {theirs.shape}"
    reference = float(theirs.abs().max())
    assert reference > 0, f"{name}: the reference is all zeros (vacuous comparison)"
    DEVIATIONS[name] = max(
        DEVIATIONS.get(name, 0.0), float((ours - theirs).abs().max()) / reference
    )
    torch.testing.assert_close(ours, theirs, rtol=0, atol=scale * reference)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Many small forward passes: on shared CPU cores a second intra-op thread mostly
    waits (measured 25× slower under load); restored after the module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def lite0() -> st.LoadedModel:
    return st.load_model("efficientnet-lite0")


@pytest.fixture(scope="module")
def photos(lite0: st.LoadedModel) -> Tensor:
    return lite0.preprocess(st.load_images(["sample:chelsea", "sample:coffee"]))


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = torchvision.models.resnet18(weights=None)
    return model.eval()


ORACLE_PASS: dict[str, Any] = {}


def oracle(
    cls: Any, model: nn.Module, layer: str, x: Tensor, classes: list[int], keep: bool = False
) -> tuple[Tensor, Tensor | None]:
    """pytorch-grad-cam's raw map ``(N, 1, h, w)`` and raw channel weights (or None);
    with ``keep`` its activations and gradients are left in ``ORACLE_PASS``."""
    model = copy.deepcopy(model)
    module = dict(model.named_modules())[layer]
    cam = cls(model=model, target_layers=[module])
    targets = [ClassifierOutputTarget(c) for c in classes]
    try:
        outputs = cam.activations_and_grads(x)
        if cam.uses_gradients:
            sum(t(o) for t, o in zip(targets, outputs)).backward()
        acts = cam.activations_and_grads.activations[0].numpy()
        grads = cam.activations_and_grads.gradients[0].numpy() if cam.uses_gradients else None
        weights = None
        if type(cam).get_cam_weights is not BaseCAM.get_cam_weights:
            weights = torch.from_numpy(
                np.asarray(cam.get_cam_weights(x, module, targets, acts, grads))
            )
        raw = cam.get_cam_image(x, module, targets, acts, grads, False)
        if keep:
            ORACLE_PASS.update(acts=acts, grads=grads)
    finally:
        cam.activations_and_grads.release()
    return torch.from_numpy(np.asarray(raw))[:, None], weights


GRADIENT_ORACLES = {
    "grad_cam_pp": GradCAMPlusPlus,
    "xgrad_cam": XGradCAM,
    "hires_cam": HiResCAM,
    "layer_cam": LayerCAM,
}


def gradient_oracles(
    model: nn.Module, layer: str, x: Tensor, classes: list[int]
) -> dict[str, tuple[Tensor, Tensor | None]]:
    """Every gradient CAM of pytorch-grad-cam from one of its passes: their formulas read
    only the activations and gradients, so each runs on an uninitialised instance."""
    raw, weights = oracle(GradCAMPlusPlus, model, layer, x, classes, keep=True)
    acts, grads = ORACLE_PASS.pop("acts"), ORACLE_PASS.pop("grads")
    results = {"grad_cam_pp": (raw, weights)}
    for method, cls in list(GRADIENT_ORACLES.items())[1:]:
        cam = object.__new__(cls)
        cam.activations_and_grads = SimpleNamespace(release=lambda: None)  # read by __del__
        maps = cam.get_cam_image(x, None, None, acts, grads, False)
        w = None
        if cls.get_cam_weights is not BaseCAM.get_cam_weights:
            w = torch.from_numpy(np.asarray(cam.get_cam_weights(x, None, None, acts, grads)))
        results[method] = (torch.from_numpy(np.asarray(maps))[:, None], w)
    return results


@pytest.mark.parametrize(
    ("model_name", "layer", "classes"),
    [("effnet", "_act_head", EFFNET_CLASSES), ("resnet", "layer4", MIXED)],
)
def test_gradient_cams_equal_pytorch_grad_cam(
    request: pytest.FixtureRequest,
    lite0: st.LoadedModel,
    photos: Tensor,
    model_name: str,
    layer: str,
    classes: list[int],
) -> None:
    model = lite0.module if model_name == "effnet" else request.getfixturevalue("resnet")
    x = photos if model_name == "effnet" else F.interpolate(photos, size=(112, 112))
    theirs = gradient_oracles(model, layer, x, classes)
    for method, (raw, weights) in theirs.items():
        ours = st.explain(model, x, method, target=classes, layer=layer)
        assert ours.layer == layer
        # One forward and backward pass on the same batch: rounding only.
        assert_oracle(f"{method}/{model_name}/map", ours.attributions, raw, EXACT)
        if weights is not None:
            assert_oracle(f"{method}/{model_name}/weights", ours.channel_weights, weights, EXACT)


def test_score_cam_equals_pytorch_grad_cam(
    lite0: st.LoadedModel, photos: Tensor, resnet: nn.Module
) -> None:
    """Small layers (16 and 64 channels) and downscaled photos keep the K forward passes
    per image cheap."""
    small = F.interpolate(photos, size=(32, 32), mode="bilinear", align_corners=False)
    medium = F.interpolate(photos, size=(64, 64), mode="bilinear", align_corners=False)
    cases = [
        ("effnet", lite0.module, "_blocks.0", medium, EFFNET_CLASSES),
        ("resnet", resnet, "layer1", small, MIXED),
    ]
    for label, model, layer, x, classes in cases:
        ours = st.explain(model, x, "score_cam", target=classes, layer=layer)
        raw, weights = oracle(ScoreCAM, model, layer, x, classes)
        assert weights is not None
        # Masked inputs scored in differently composed chunks, then a softmax.
        assert_oracle(f"score_cam/{label}/weights", ours.channel_weights, weights, PERTURBED)
        assert_oracle(f"score_cam/{label}/map", ours.attributions, raw, PERTURBED)


def test_ablation_cam_equals_pytorch_grad_cam(
    lite0: st.LoadedModel, photos: Tensor, resnet: nn.Module
) -> None:
    """On layers after a ReLU (minimum 0), where pytorch-grad-cam also zeroes channels.

    Where the target score y is negative (both rows of the untrained ResNet) we divide
    by |y| and pytorch-grad-cam by y: ours is its map and weights times sign(y) — the
    deliberate difference (see ``test_cam_signs``); for y > 0 (EfficientNet) the same.
    """
    small = F.interpolate(photos, size=(32, 32), mode="bilinear", align_corners=False)
    medium = F.interpolate(photos, size=(64, 64), mode="bilinear", align_corners=False)
    cases = [
        ("effnet", lite0.module, "_act0", medium[:1], EFFNET_CLASSES[:1], [1.0]),
        ("resnet", resnet, "layer1", small, MIXED, [-1.0, -1.0]),
    ]
    for label, model, layer, x, classes, signs in cases:
        ours = st.explain(model, x, "ablation_cam", target=classes, layer=layer)
        assert torch.sign(ours.scores).tolist() == signs
        raw, weights = oracle(AblationCAM, model, layer, x, classes)
        assert weights is not None
        sign = torch.tensor(signs)
        assert_oracle(
            f"ablation_cam/{label}/weights",
            ours.channel_weights,
            weights * sign[:, None],
            PERTURBED,
        )
        raw = raw * sign[:, None, None, None]
        assert_oracle(f"ablation_cam/{label}/map", ours.attributions, raw, PERTURBED)


@pytest.mark.parametrize(("model_name", "layer"), [("effnet", "_act_head"), ("resnet", "layer4")])
def test_eigen_cam_equals_pytorch_grad_cam_up_to_sign(
    request: pytest.FixtureRequest,
    lite0: st.LoadedModel,
    photos: Tensor,
    model_name: str,
    layer: str,
) -> None:
    model = lite0.module if model_name == "effnet" else request.getfixturevalue("resnet")
    x = photos if model_name == "effnet" else F.interpolate(photos, size=(112, 112))
    ours = st.explain(model, x, "eigen_cam", layer=layer)
    raw, _ = oracle(EigenCAM, model, layer, x, [0, 0])
    # LAPACK's singular vectors have an arbitrary sign; ours is fixed by sum(v) > 0.
    assert (ours.channel_weights.sum(dim=1) > 0).all()
    sign = torch.sign((ours.attributions.double() * raw.double()).sum(dim=(1, 2, 3)))
    # float32 SVDs by different routines: the vector agrees to eps / (gap of the
    # singular values), looser than one pass of rounding.
    assert_oracle(
        f"eigen_cam/{model_name}/map", ours.attributions, raw * sign[:, None, None, None], 1e-4
    )


# ---------------------------------------------------------------------------------------
# Exact references on the tiny float64 model
# ---------------------------------------------------------------------------------------


def _score_with_hook(model: nn.Module, layer: nn.Module, x: Tensor, c: int, hook: Any) -> float:
    handle = layer.register_forward_hook(hook)
    try:
        with torch.no_grad():
            return float(model(x)[0, c])
    finally:
        handle.remove()


def test_ablation_cam_scores_equal_ablating_by_hand() -> None:
    model, x = tiny_model(), tiny_inputs(n=2)
    ours = st.explain(model, x, "ablation_cam", layer="conv2", batch_size=5)
    for i in range(2):
        c = int(ours.targets[i])
        with torch.no_grad():
            y = float(model(x[i : i + 1])[0, c])
        for k in range(8):

            def zero(m: nn.Module, inp: Any, out: Tensor, k: int = k) -> Tensor:
                out = out.clone()
                out[:, k] = 0
                return out

            y_k = _score_with_hook(model, model.conv2, x[i : i + 1], c, zero)
            torch.testing.assert_close(
                float(ours.channel_scores[i, k]), y_k, rtol=1e-12, atol=1e-12
            )
            torch.testing.assert_close(
                float(ours.channel_weights[i, k]), (y - y_k) / abs(y), rtol=1e-10, atol=1e-12
            )


def test_score_cam_equals_a_direct_loop() -> None:
    model, x = tiny_model(), tiny_inputs(n=2)
    ours = st.explain(model, x, "score_cam", layer="conv2", batch_size=3)
    acts: list[Tensor] = []
    handle = model.conv2.register_forward_hook(lambda m, i, o: acts.append(o.detach().clone()))
    with torch.no_grad():
        logits = model(x)
    handle.remove()
    for i in range(2):
        c = int(logits[i].argmax())
        scores = []
        for k in range(8):
            up = F.interpolate(
                acts[0][i : i + 1, k : k + 1], size=(12, 12), mode="bilinear", align_corners=True
            )
            mask = (up - up.min()) / (up.max() - up.min() + 1e-8)
            with torch.no_grad():
                scores.append(model(x[i : i + 1] * mask)[0, c])
        weights = torch.softmax(torch.stack(scores), dim=0)
        cam = (weights[:, None, None] * acts[0][i]).sum(dim=0)
        torch.testing.assert_close(ours.channel_scores[i], torch.stack(scores), rtol=1e-12, atol=0)
        torch.testing.assert_close(ours.attributions[i, 0], cam, rtol=1e-10, atol=1e-14)


def test_cam_equals_grad_cam_times_area_on_gap_linear_heads(resnet: nn.Module) -> None:
    """Grad-CAM's weights on the map entering GAP + linear are ``W[c] / (h·w)``."""
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    cam = st.explain(resnet, x, "cam", target=MIXED)
    assert cam.layer == "avgpool (input)"
    torch.testing.assert_close(cam.channel_weights, resnet.fc.weight.detach()[MIXED])
    grad = st.explain(resnet, x, "grad_cam", target=MIXED, layer="layer4")
    area = grad.attributions.shape[2] * grad.attributions.shape[3]
    assert_oracle("cam/resnet/grad_cam x area", cam.attributions, grad.attributions * area, EXACT)
    named = st.explain(resnet, x, "cam", target=MIXED, layer="layer4", fc="fc")
    torch.testing.assert_close(named.attributions, cam.attributions, rtol=0, atol=0)


def test_cam_equals_grad_cam_times_area_on_effnet(lite0: st.LoadedModel, photos: Tensor) -> None:
    cam = st.explain(lite0, photos, "cam")
    assert cam.layer == "_avg_pooling (input)"
    assert cam.targets.tolist() == EFFNET_CLASSES
    grad = st.explain(lite0, photos, "grad_cam", layer="_act_head")
    # Same forward pass; the gradient of the mean is 1/49 (not a power of two): rounding.
    assert_oracle("cam/effnet/grad_cam x area", cam.attributions, grad.attributions * 49, EXACT)


def test_cam_equals_grad_cam_times_area_on_the_tiny_model() -> None:
    """TinyCNN's map entering GAP is a functional ReLU's output: CAM takes the pool's input."""
    model, x = tiny_model(), tiny_inputs(n=2)
    cam = st.explain(model, x, "cam")
    assert cam.layer == "pool (input)"
    expected = (
        model.fc.weight[cam.targets][:, :, None, None]
        * F.relu(
            model.conv3(model.relu(model.bn2(model.conv2(model.relu(model.bn1(model.conv1(x)))))))
        )
    ).sum(dim=1, keepdim=True)
    torch.testing.assert_close(cam.attributions, expected.detach(), rtol=1e-12, atol=1e-14)


def test_cam_refuses_heads_that_are_not_gap_linear() -> None:
    model, x = tiny_model(), tiny_inputs(n=2)
    with pytest.raises(LayerError, match="global average of 'conv3'"):
        st.explain(model, x, "cam", layer="conv3")  # a ReLU sits between conv3 and GAP
    flat = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 10 * 10, 5))
    flat = flat.double().eval()
    with pytest.raises(LayerError, match="global average pooling"):
        st.explain(flat, x, "cam")
    with pytest.raises(LayerError, match=r"nn\.Linear"):
        st.explain(model, x, "cam", fc="conv1")


def test_eigen_cam_is_the_first_principal_component() -> None:
    model, x = tiny_model(), tiny_inputs(n=2)
    ex = st.explain(model, x, "eigen_cam", layer="conv2")
    acts: list[Tensor] = []
    handle = model.conv2.register_forward_hook(lambda m, i, o: acts.append(o.detach().clone()))
    with torch.no_grad():
        model(x)
    handle.remove()
    for i in range(2):
        a = acts[0][i].flatten(1).T
        centred = a - a.mean(dim=0)
        _, eigvecs = torch.linalg.eigh(centred.T @ centred)
        v = eigvecs[:, -1] * torch.sign(eigvecs[:, -1].sum())
        torch.testing.assert_close(ex.channel_weights[i], v, rtol=1e-8, atol=1e-10)
        torch.testing.assert_close(
            ex.attributions[i, 0], (centred @ v).reshape(12, 12), rtol=1e-8, atol=1e-10
        )


# ---------------------------------------------------------------------------------------
# Invariants (the generic suite repeats these once the methods are in METHOD_CASES)
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", NEW_METHODS)
def test_model_untouched_on_success_and_error_and_batch_equals_singles(method: str) -> None:
    model, x = tiny_model(), tiny_inputs(n=2).requires_grad_(True)
    model.fc.weight.grad = torch.full_like(model.fc.weight, 0.5)
    before = Snapshot.take(model, x)
    batch = st.explain(model, x, method, batch_size=5)
    before.assert_unchanged(model, x)
    assert batch.attributions.shape == (2, 1, 12, 12)
    assert batch.attributions.dtype == torch.float64
    for i in range(2):
        single = st.explain(model, x[i : i + 1], method)
        torch.testing.assert_close(
            single.attributions[0], batch.attributions[i], rtol=1e-10, atol=1e-12
        )
    for fail_on in (1, 2, 3):
        failing = Failing(model, fail_on).eval()
        before = Snapshot.take(failing, x)
        try:
            st.explain(failing, x, method, batch_size=1)
        except RuntimeError as error:
            assert "boom inside forward" in str(error)  # noqa: PT017
        before.assert_unchanged(failing, x)


@pytest.mark.parametrize("method", NEW_METHODS)
def test_relu_option_rectifies_the_raw_map(method: str) -> None:
    model, x = tiny_model(), tiny_inputs(n=2)
    raw = st.explain(model, x, method, layer="conv2" if method != "cam" else None)
    rect = st.explain(model, x, method, relu=True, layer="conv2" if method != "cam" else None)
    torch.testing.assert_close(rect.attributions, F.relu(raw.attributions), rtol=0, atol=0)


def test_multi_layer_grad_cam_equals_pytorch_grad_cam_before_its_final_minmax(
    resnet: nn.Module, photos: Tensor
) -> None:
    """pytorch-grad-cam with several target layers: per layer ReLU, min-max, resize to
    the input (cv2, bilinear), then the mean and a final min-max. Ours with
    ``layer_scale="minmax"`` is that mean; after the same final min-max the two agree."""
    from pytorch_grad_cam import GradCAM

    x = F.interpolate(photos, size=(112, 112), mode="bilinear", align_corners=False)
    layers = ["layer2", "layer3", "layer4"]
    ours = st.explain(resnet, x, "grad_cam", target=MIXED, layer=layers, layer_scale="minmax")
    assert isinstance(ours, st.MultiLayerCamExplanation)
    assert ours.layers == tuple(layers) and ours.resolution == "input"
    assert ours.attributions.shape == (2, 1, 112, 112)
    assert [ex.layer for ex in ours.per_layer] == layers  # type: ignore[attr-defined]
    model = copy.deepcopy(resnet)
    modules = dict(model.named_modules())
    cam = GradCAM(model=model, target_layers=[modules[n] for n in layers])
    theirs = torch.from_numpy(cam(x, targets=[ClassifierOutputTarget(c) for c in MIXED]))
    fused = ours.attributions[:, 0]
    low = fused.flatten(1).amin(dim=1)[:, None, None]
    shifted = fused - low
    final = shifted / (1e-7 + shifted.flatten(1).amax(dim=1)[:, None, None])
    # cv2's bilinear resize works in float32 with its own rounding of the weights.
    assert_oracle("grad_cam/resnet/three layers", final, theirs, 1e-3)


def test_multi_layer_fusion_rules_and_raw_layers_kept() -> None:
    model, x = tiny_model(), tiny_inputs(n=3)
    layers = ["conv2", "conv3"]
    singles = [st.explain(model, x, "layer_cam", target=2, layer=n) for n in layers]
    for scale in ("max_abs", "minmax", "none"):
        for fusion in ("mean", "max"):
            ours = st.explain(
                model,
                x,
                "layer_cam",
                target=2,
                layer=layers,
                layer_scale=scale,
                layer_fusion=fusion,
            )
            assert ours.settings["layer_scale"] == scale
            ups = []
            for single, kept in zip(singles, ours.per_layer):
                torch.testing.assert_close(kept.attributions, single.attributions)
                m = single.attributions
                if scale == "max_abs":
                    m = m / m.flatten(1).abs().amax(dim=1)[:, None, None, None]
                elif scale == "minmax":
                    m = F.relu(m)
                    m = m - m.flatten(1).amin(dim=1)[:, None, None, None]
                    m = m / (1e-7 + m.flatten(1).amax(dim=1)[:, None, None, None])
                ups.append(F.interpolate(m, size=x.shape[2:], mode="bilinear"))
            stack = torch.stack(ups)
            expected = stack.mean(0) if fusion == "mean" else stack.amax(0)
            torch.testing.assert_close(ours.attributions, expected)
    both = st.explain(model, x, ["gradient", "layer_cam"], target=2, layer=layers)
    assert both[0].method == "gradient" and isinstance(both[1], st.MultiLayerCamExplanation)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"method": "guided_grad_cam", "layer": ["conv2", "conv3"]}, "takes one layer"),
        ({"method": "grad_cam", "layer": []}, "non-empty list"),
        ({"method": "grad_cam", "layer": ["conv2", "conv2"]}, "lists a layer twice"),
        ({"method": "grad_cam", "layer": ["conv2", "cnv3"]}, "cnv3"),
        ({"method": "grad_cam", "layer_scale": "minmax"}, "only applies to a CAM given several"),
        ({"method": "grad_cam", "layer": ["conv2"], "layer_scale": "z"}, "unknown layer_scale"),
        ({"method": "grad_cam", "layer": ["conv2"], "layer_fusion": "sum"}, "unknown layer_fusion"),
    ],
)
def test_multi_layer_bad_options_are_refused_and_the_model_untouched(
    options: dict[str, Any], message: str
) -> None:
    model, x = tiny_model(), tiny_inputs(n=2)
    before = Snapshot.take(model)
    with pytest.raises(st.SeethroughError, match=message):
        st.explain(model, x, **options)
    before.assert_unchanged(model)
