"""Signs and paper forms of the perturbation and eigen CAMs (issue 12, items 2 and 3).

* Ablation-CAM: the weight of channel ``k`` is positive exactly when removing ``k``
  lowers the target score, also when that score is negative (a non-predicted class,
  ``top3``) — hand-computed on a two-channel linear model whose ablation drops are
  known in closed form, and as an invariant on the tiny CNN; a score of exactly 0
  falls back to the unnormalised drops, with a warning.
* Eigen-CAM on the six bundled photos (EfficientNet-Lite0, default layer): the map
  correlates positively with the channel-mean activation map, equals
  pytorch-grad-cam's raw EigenCAM map up to sign, and peaks inside a hand-made object
  box (``tests/data/photo_boxes.json``) where the model's evidence lies on that box.
* Score-CAM's paper form (``weighting="probability"``): the official code's loop,
  re-done by hand.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import seethrough as st
import seethrough.attribution.cams
from helpers import Snapshot, tiny_inputs, tiny_model
from seethrough.data import DEFAULT_SAMPLES
from seethrough.errors import InvalidOptionError, TargetError

BOXES = Path(__file__).parent / "data" / "photo_boxes.json"


class TwoChannels(nn.Module):
    """``A = (2x, x)`` (a 1 × 1 convolution), global average pooling, a linear head.

    With ``mean(x) = 1`` the pooled features are ``(2, 1)``, so class ``c`` scores
    ``y = 2 W[c, 0] + W[c, 1] + b[c]`` and zeroing channel ``k`` lowers it by exactly
    ``W[c, k] · mean(A_k)``: class 0 scores 3, class 1 scores −6 (drops 6 and −2),
    class 2 scores exactly 0 (drops 2 and −2).
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1)
        self.fc = nn.Linear(2, 3)
        assert self.conv.bias is not None
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([2.0, 1.0]).view(2, 1, 1, 1))
            self.conv.bias.zero_()
            self.fc.weight.copy_(torch.tensor([[1.0, 1.0], [3.0, -2.0], [1.0, -2.0]]))
            self.fc.bias.copy_(torch.tensor([0.0, -10.0, 0.0]))
        self.double().eval()

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.conv(x).mean(dim=(2, 3)))


def two_channel_input() -> Tensor:
    """Values exact in binary with mean exactly 1, so every score above is exact."""
    return torch.tensor([0.0, 0.5, 1.5, 2.0], dtype=torch.float64).repeat(4, 1)[None, None]


# ---------------------------------------------------------------------------------------
# Ablation-CAM
# ---------------------------------------------------------------------------------------


def test_ablation_cam_with_a_negative_score_keeps_the_sign_of_the_drops() -> None:
    """Class 1 scores y = −6; zeroing channel 0 lowers it by 6, channel 1 raises it by 2.

    The weights are the drops over |y|: (1, −1/3), and the map 2x − x/3 = 5x/3.
    ``(y − y_k) / y`` (the paper's and pytorch-grad-cam's formula) gives (−1, 1/3) and
    the map −5x/3: the channel that supports the class would be painted as opposing it.
    """
    model, x = TwoChannels(), two_channel_input()
    ex = st.explain(model, x, "ablation_cam", target=1, layer="conv")
    assert float(ex.scores[0]) == -6.0
    torch.testing.assert_close(
        ex.channel_scores[0], torch.tensor([-12.0, -4.0], dtype=torch.float64)
    )
    torch.testing.assert_close(
        ex.channel_weights[0],
        torch.tensor([1.0, -1.0 / 3], dtype=torch.float64),
        rtol=0,
        atol=1e-15,
    )
    torch.testing.assert_close(ex.attributions[0, 0], 5 * x[0, 0] / 3, rtol=0, atol=1e-15)


def test_ablation_cam_with_a_positive_score_is_the_papers_formula() -> None:
    """Class 0 scores y = 3 > 0: (y − y_k) / y as in the paper — drops (2, 1) over 3."""
    model, x = TwoChannels(), two_channel_input()
    ex = st.explain(model, x, "ablation_cam", target=0, layer="conv")
    torch.testing.assert_close(
        ex.channel_weights[0],
        torch.tensor([2.0 / 3, 1.0 / 3], dtype=torch.float64),
        rtol=0,
        atol=1e-15,
    )


def test_ablation_cam_with_a_zero_score_uses_the_drops_and_warns() -> None:
    """Class 2 scores exactly 0: the relative drop is undefined (the formula divides by
    zero); the weights are the drops themselves (2, −2), and a warning says so."""
    model, x = TwoChannels(), two_channel_input()
    with pytest.warns(UserWarning, match="target score is 0"):
        ex = st.explain(model, x, "ablation_cam", target=2, layer="conv")
    assert float(ex.scores[0]) == 0.0
    torch.testing.assert_close(
        ex.channel_weights[0], torch.tensor([2.0, -2.0], dtype=torch.float64), rtol=0, atol=0
    )
    torch.testing.assert_close(ex.attributions[0, 0], 2 * x[0, 0], rtol=0, atol=0)


def test_ablation_cam_weights_have_the_sign_of_the_drops_for_negative_scores() -> None:
    """The tiny CNN, each image's lowest class (a negative logit) and ``top3``: every
    weight is (y − y_k) / |y|, so its sign is that of the drop y − y_k."""
    model, x = tiny_model(), tiny_inputs(n=3)
    with torch.no_grad():
        lowest = model(x).argmin(dim=1)
    before = Snapshot.take(model, x)
    for target in (lowest, "top3"):
        ex = st.explain(model, x, "ablation_cam", target=target, layer="conv2")
        y = ex.scores[:, None]
        drops = y - ex.channel_scores
        torch.testing.assert_close(ex.channel_weights, drops / y.abs(), rtol=1e-12, atol=0)
        assert torch.equal(torch.sign(ex.channel_weights), torch.sign(drops))
        if target is lowest:
            assert (ex.scores < 0).all(), "the case needs negative target scores"
            assert (drops > 0).any() and (drops < 0).any()
    before.assert_unchanged(model, x)


# ---------------------------------------------------------------------------------------
# Eigen-CAM
# ---------------------------------------------------------------------------------------


def test_eigen_cam_sign_rule_is_the_correlation_with_the_channel_mean_map() -> None:
    """For the centred activations C (positions × channels) and v = the first right
    singular vector, cov(C v, C 1 / K) = σ₁² · Σv / (hw · K): orienting v by Σv > 0
    is orienting the map to correlate positively with the channel-mean map."""
    model, x = tiny_model(), tiny_inputs(n=3)
    ex = st.explain(model, x, "eigen_cam", layer="conv2")
    acts = _layer_output(model, "conv2", x)
    for i in range(3):
        c = acts[i].flatten(1).T
        c = c - c.mean(dim=0)
        sigma = torch.linalg.svdvals(c)[0]
        v = ex.channel_weights[i]
        cov = (c @ v) @ (c.mean(dim=1)) / c.shape[0]
        torch.testing.assert_close(cov, sigma**2 * v.sum() / c.numel(), rtol=1e-10, atol=0)
        assert float(cov) > 0


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def photo_eigen_cams(one_thread: None) -> dict[str, Any]:
    """Eigen-CAM on the six bundled photos, their activations and pytorch-grad-cam's map."""
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    net = st.load_model("efficientnet-lite0")
    names = [s.split(":")[-1] for s in DEFAULT_SAMPLES]
    x = net.preprocess(st.load_images([f"sample:{n}" for n in names]))
    ex = st.explain(net, x, "eigen_cam")
    acts = _layer_output(net.module, ex.layer, x)
    theirs = torch.from_numpy(get_2d_projection(acts.numpy()))  # raw: before ReLU, min-max
    boxes = json.loads(BOXES.read_text())
    return {"names": names, "ex": ex, "acts": acts, "theirs": theirs, "boxes": boxes}


def _layer_output(model: nn.Module, layer: str, x: Tensor) -> Tensor:
    kept: list[Tensor] = []
    module = dict(model.named_modules())[layer]
    handle = module.register_forward_hook(lambda m, i, o: kept.append(o.detach().clone()))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return kept[0]


def _pearson(a: Tensor, b: Tensor) -> float:
    return float(np.corrcoef(a.double().flatten().numpy(), b.double().flatten().numpy())[0, 1])


def test_eigen_cam_on_photos_agrees_with_the_channel_mean_map(
    photo_eigen_cams: dict[str, Any],
) -> None:
    """r > 0 is the sign rule; asserted with margin, r > 0.3. Measured r: chelsea 0.47,
    coffee 0.90, rocket 0.72, motorcycle 0.84, astronaut 0.71, camera 0.84 (layer
    ``_act_head``, 7 × 7)."""
    ex, acts = photo_eigen_cams["ex"], photo_eigen_cams["acts"]
    assert ex.layer == "_act_head"
    for i, name in enumerate(photo_eigen_cams["names"]):
        r = _pearson(ex.attributions[i, 0], acts[i].mean(dim=0))
        assert r > 0.3, f"{name}: r with the channel-mean map is {r:.3f}"


def test_eigen_cam_on_photos_equals_pytorch_grad_cam_up_to_sign(
    photo_eigen_cams: dict[str, Any],
) -> None:
    """1 − |r| ≤ 1e-6 with pytorch-grad-cam's ``get_2d_projection`` (float32 SVDs by
    different routines; measured 1 − |r| ≤ 6e-13). Its sign is LAPACK's and carries no
    meaning, so only |r| is compared."""
    ex, theirs = photo_eigen_cams["ex"], photo_eigen_cams["theirs"]
    for i, name in enumerate(photo_eigen_cams["names"]):
        r = _pearson(ex.attributions[i, 0], theirs[i])
        assert 1 - abs(r) <= 1e-6, f"{name}: |r| = {abs(r):.9f}"


# Three photos are left out (measured, default layer); the model's own evidence is not
# on their boxes: rocket — both signs of the component, and Grad-CAM of the predicted
# class ('missile'), peak left of the rocket's box; astronaut — the peak is on the
# football helmet at the lower right (the predicted class), outside the person's box,
# with either sign; camera — the peak is on the tripod (the predicted class), which the
# box leaves out by design; only the opposite sign peaks inside the box, at its left
# edge on the background, and that sign anti-correlates with the channel-mean map
# (r = −0.84).
PEAK_IN_BOX = ["chelsea", "coffee", "motorcycle_left"]


@pytest.mark.parametrize("name", PEAK_IN_BOX)
def test_eigen_cam_on_photos_peaks_inside_the_object_box(
    photo_eigen_cams: dict[str, Any], name: str
) -> None:
    ex, boxes = photo_eigen_cams["ex"], photo_eigen_cams["boxes"]
    i = photo_eigen_cams["names"].index(name)
    up = ex.to_input_size().attributions[i, 0]
    y, x = divmod(int(up.argmax()), up.shape[1])
    x0, y0, x1, y1 = boxes[name]
    assert x0 <= x < x1 and y0 <= y < y1, f"{name}: peak at ({x}, {y}), box {boxes[name]}"


# ---------------------------------------------------------------------------------------
# Score-CAM, the paper's form
# ---------------------------------------------------------------------------------------


def score_cam_official_loop(
    model: nn.Module, layer: str, x: Tensor, classes: list[int]
) -> tuple[Tensor, Tensor, Tensor]:
    """haofanwang/Score-CAM ``cam/scorecam.py`` for one image at a time, on the CPU:
    per channel, bilinear upsampling (corners not aligned), skip a constant map, exact
    min-max, the class probability of the masked input, ``Σ_k p_k · up(A_k)``; then its
    ReLU and min-max. Returns the weights ``(N, K)``, ``Σ_k p_k A_k`` at the layer, and
    the official final map at the input's size."""
    acts = _layer_output(model, layer, x)
    weights = torch.zeros(acts.shape[:2], dtype=x.dtype)
    final = []
    with torch.no_grad():
        for i, c in enumerate(classes):
            total = torch.zeros(1, 1, *x.shape[2:], dtype=x.dtype)
            for k in range(acts.shape[1]):
                up = F.interpolate(
                    acts[i : i + 1, k : k + 1],
                    size=x.shape[2:],
                    mode="bilinear",
                    align_corners=False,
                )
                if up.max() == up.min():
                    continue
                mask = (up - up.min()) / (up.max() - up.min())
                weights[i, k] = torch.softmax(model(x[i : i + 1] * mask), dim=1)[0, c]
                total += weights[i, k] * up
            total = F.relu(total)
            final.append((total - total.min()) / (total.max() - total.min()))
    at_layer = (weights[:, :, None, None] * acts).sum(dim=1, keepdim=True)
    return weights, at_layer, torch.cat(final)


def test_score_cam_probability_weighting_is_the_official_code() -> None:
    """On the tiny float64 CNN with one dead (constant) channel, non-predicted classes and
    a chunk size that splits an image's channels: the weights and the raw map equal the
    official loop; upsampled (corners not aligned), rectified and min-max scaled, our
    map is the official code's final map (upsampling is linear, so it commutes)."""
    model, x = tiny_model(), tiny_inputs(n=2)
    assert model.conv2.bias is not None
    with torch.no_grad():
        model.conv2.weight[3] = 0.0
        model.conv2.bias[3] = 0.25
    classes = [1, 4]
    ex = st.explain(
        model,
        x,
        "score_cam",
        target=classes,
        layer="conv2",
        weighting="probability",
        batch_size=3,
    )
    weights, at_layer, final = score_cam_official_loop(model, "conv2", x, classes)
    assert (weights[:, 3] == 0).all() and (weights[:, :3] > 0).all()
    assert ex.settings["weighting"] == "probability"
    torch.testing.assert_close(ex.channel_weights, weights, rtol=1e-12, atol=0)
    torch.testing.assert_close(ex.attributions, at_layer, rtol=1e-12, atol=1e-15)
    ours = F.relu(ex.to_input_size("bilinear").attributions)
    low = ours.amin(dim=(2, 3), keepdim=True)
    ours = (ours - low) / (ours.amax(dim=(2, 3), keepdim=True) - low)
    torch.testing.assert_close(ours, final, rtol=0, atol=1e-12)
    default = st.explain(model, x, "score_cam", target=classes, layer="conv2")
    assert not torch.allclose(default.attributions, ex.attributions)


def test_score_cam_options_are_checked() -> None:
    model, x = tiny_model(), tiny_inputs(n=2)
    before = Snapshot.take(model, x)
    with pytest.raises(
        InvalidOptionError,
        match=r"unknown weighting 'paper' \(valid: channel_softmax, probability\)",
    ):
        st.explain(model, x, "score_cam", layer="conv2", weighting="paper")
    with pytest.raises(TargetError, match="needs class targets"):
        st.explain(
            model, x, "score_cam", layer="conv2", weighting="probability", target=lambda o: o[:, 0]
        )
    before.assert_unchanged(model, x)
