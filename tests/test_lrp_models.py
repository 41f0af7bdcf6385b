"""LRP on real architectures: Zennit 0.4.6 as the oracle (torchvision VGG-16, ResNet-18 with
random weights), conservation on EfficientNet-Lite0 with a real photo and on ResNet-18, and
what Zennit silently skips (issue 17.1).

Agreement is measured per row as ``‖ours − zennit‖₂ / ‖zennit‖₂`` over all input values,
in float64, against the tolerance ``1e-5`` (observed: about 1e-13).

Zennit's ``MergeBatchNorm`` leaves each merged batch norm computing ``x / √(1 + eps)``
instead of ``x`` (it sets the statistics to 0 and 1 but keeps ``eps``), which scales the
relevance by that factor per batch norm; we fold exactly. The oracle comparisons on
ResNet-18 therefore set every batch norm's ``eps`` to 1e-12, where Zennit's factor is 1 to
float64 precision; ``test_zennit_leaves_a_factor_per_merged_batch_norm`` shows the
difference at the default ``eps``.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import seethrough as st
from helpers import Snapshot
from seethrough.core.relevance import RelevanceRule, make_composite

torchvision = pytest.importorskip("torchvision")
zennit_attribution = pytest.importorskip("zennit.attribution")
zennit_composites = pytest.importorskip("zennit.composites")
zennit_torchvision = pytest.importorskip("zennit.torchvision")
zennit_layer = pytest.importorskip("zennit.layer")
zennit_canonizers = pytest.importorskip("zennit.canonizers")

TOLERANCE = 1e-5


def relative_l2(ours: Tensor, theirs: Tensor) -> Tensor:
    """``‖ours − theirs‖₂ / ‖theirs‖₂`` per row."""
    return (ours - theirs).flatten(1).norm(dim=1) / theirs.flatten(1).norm(dim=1)


def zennit(model: nn.Module, x: Tensor, composite: object, targets: Tensor) -> Tensor:
    """Zennit's relevance with ``attr_output = onehot × logit`` (our convention)."""
    with zennit_attribution.Gradient(model, composite) as attributor:
        _, relevance = attributor(
            x, lambda out: F.one_hot(targets, out.shape[1]).to(out.dtype) * out
        )
    return relevance


def box() -> tuple[Tensor, Tensor]:
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).view(1, 3, 1, 1)
    return (0 - mean) / std, (1 - mean) / std


def resnet18(eps: float = 1e-12, seed: int = 0) -> nn.Module:
    """torchvision ResNet-18, random weights, float64, eval mode, non-trivial batch norms."""
    torch.manual_seed(seed)
    net = torchvision.models.resnet18(weights=None).double().eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.eps = eps
    return net


def images(n: int = 2, size: int = 64, seed: int = 1) -> Tensor:
    low, high = box()
    g = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(n, 3, size, size, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("name", ["epsilon_plus_flat", "epsilon_gamma_box"])
def test_equals_zennit_on_resnet18(name: str) -> None:
    net, x, targets = resnet18(), images(), torch.tensor([3, 711])
    low, high = box()
    theirs_composite = (
        zennit_composites.EpsilonPlusFlat(canonizers=[zennit_torchvision.ResNetCanonizer()])
        if name == "epsilon_plus_flat"
        else zennit_composites.EpsilonGammaBox(
            low=low, high=high, canonizers=[zennit_torchvision.ResNetCanonizer()]
        )
    )
    before = Snapshot.take(net, x)
    options = {"low": low.flatten(), "high": high.flatten()} if name == "epsilon_gamma_box" else {}
    ours = st.explain(net, x, "lrp", target=targets, composite=name, **options)
    before.assert_unchanged(net, x)
    theirs = zennit(net, x, theirs_composite, targets)
    assert bool((relative_l2(ours.attributions, theirs) < TOLERANCE).all()), relative_l2(
        ours.attributions, theirs
    )
    assert ours.rules["sum: Norm"] == 8 and ours.rules["batch_norm: merged"] == 20


@pytest.mark.slow
@pytest.mark.parametrize("name", ["epsilon_plus_flat", "epsilon_gamma_box"])
def test_equals_zennit_on_vgg16(name: str) -> None:
    torch.manual_seed(0)
    net = torchvision.models.vgg16(weights=None).double().eval()
    x, targets = images(), torch.tensor([5, 900])
    low, high = box()
    theirs_composite = (
        zennit_composites.EpsilonPlusFlat(canonizers=[zennit_torchvision.VGGCanonizer()])
        if name == "epsilon_plus_flat"
        else zennit_composites.EpsilonGammaBox(
            low=low, high=high, canonizers=[zennit_torchvision.VGGCanonizer()]
        )
    )
    options = {"low": low.flatten(), "high": high.flatten()} if name == "epsilon_gamma_box" else {}
    ours = st.explain(net, x, "lrp", target=targets, composite=name, **options)
    theirs = zennit(net, x, theirs_composite, targets)
    assert bool((relative_l2(ours.attributions, theirs) < TOLERANCE).all()), relative_l2(
        ours.attributions, theirs
    )
    first = "conv: Flat" if name == "epsilon_plus_flat" else "conv: ZBox"
    assert ours.rules[first] == 1 and ours.rules["max_pool: WinnerTakesAll"] == 5


@pytest.mark.slow
def test_equals_zennit_on_efficientnet_lite0_with_its_residuals_as_sum_modules() -> None:
    """The real Lite0 (ReLU6, depthwise convs, TensorFlow padding with ``F.pad``, 49 folded
    batch norms, 9 residual additions) and a real photo, float64: ours on the model as it is
    equals Zennit on a copy whose residual additions go through Zennit's ``Sum`` module
    (what its ``ResNetCanonizer`` does for torchvision blocks); batch-norm ``eps`` 1e-12 as
    above. Zennit on the model as it is gives each branch the full relevance."""
    import types

    from seethrough.models.efficientnet_lite import MBConvBlock

    net = st.load_model("efficientnet-lite0")
    model = copy.deepcopy(net.module).double()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = 1e-12
    x = net.preprocess(st.load_images(["sample:chelsea"])).double()

    def forward(self: MBConvBlock, inputs: Tensor, drop_connect_rate: float = 0.0) -> Tensor:
        h = inputs
        if self.has_expansion:
            h = self._act_expand(self._bn0(self._expand_conv(h)))
        h = self._bn2(self._project_conv(self._act_dw(self._bn1(self._depthwise_conv(h)))))
        return self.zennit_sum(torch.stack([h, inputs], dim=-1)) if self.has_skip else h

    theirs_model = copy.deepcopy(model)
    for block in theirs_model.modules():
        if isinstance(block, MBConvBlock):
            block.zennit_sum = zennit_layer.Sum()
            block.forward = types.MethodType(forward, block)  # type: ignore[method-assign]
    targets = torch.tensor([281])
    canonizer = zennit_canonizers.SequentialMergeBatchNorm()
    theirs = zennit(
        theirs_model, x, zennit_composites.EpsilonPlusFlat(canonizers=[canonizer]), targets
    )
    ours = st.explain(model, x, "lrp", target=targets)
    assert float(relative_l2(ours.attributions, theirs)[0]) < TOLERANCE
    skipped = zennit(model, x, zennit_composites.EpsilonPlusFlat(canonizers=[canonizer]), targets)
    assert float(relative_l2(skipped, theirs)[0]) > 1e-2


def bias_free(model: nn.Module) -> nn.Module:
    """A copy without any bias (conv/linear biases, batch-norm mean and shift, so the
    merged biases are zero too); the batch norms keep their non-trivial scales.

    LRP-ε conserves exactly only without biases (Montavon et al., 2019): a
    unit driven by its bias alone (all its inputs zero, e.g. a depthwise conv after
    ReLU6 zeros) receives relevance that ``bias=False`` cannot pass on, and units whose
    weighted inputs nearly cancel amplify it (on the real Lite0 the relevance grows to
    1e46 through 49 layers)."""
    copied = copy.deepcopy(model)
    with torch.no_grad():
        for m in copied.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.zero_()
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.zero_()
                m.bias.zero_()
    return copied


def test_conservation_on_efficientnet_lite0_with_a_real_photo() -> None:
    net = st.load_model("efficientnet-lite0")
    x = net.preprocess(st.load_images(["sample:chelsea"]))
    model = bias_free(net.module)
    composite = make_composite("epsilon", epsilon=1e-9, bias=False)
    ex = st.explain(model, x, "lrp", composite=composite)
    total = ex.attributions.double().sum()
    assert abs(float(total / ex.scores.double()[0]) - 1.0) < 1e-4
    assert abs(float(ex.conservation[0]) - 1.0) < 1e-4
    assert ex.rules["batch_norm: merged"] == 49 and ex.rules["sum: Epsilon"] == 9
    assert ex.rules["activation: Pass"] == 33 and ex.rules["conv: Epsilon"] == 49


def test_conservation_on_resnet18() -> None:
    net = bias_free(resnet18(eps=1e-5))
    x = images(n=3)
    composite = make_composite("epsilon", epsilon=1e-9, bias=False)
    ex = st.explain(net, x, "lrp", composite=composite, target=[0, 500, 999])
    torch.testing.assert_close(
        ex.conservation, torch.ones(3, dtype=torch.float64), rtol=0, atol=1e-4
    )
    torch.testing.assert_close(ex.attributions.flatten(1).sum(1), ex.scores, rtol=1e-4, atol=0)


def test_zennit_leaves_a_factor_per_merged_batch_norm() -> None:
    """At the default ``eps`` Zennit's merged batch norms compute ``x / √(1 + eps)``: its
    relevance differs from ours by about that factor per batch norm, and ours is the exact
    fold (it conserves on a bias-free copy, Zennit's does not)."""
    net = bias_free(resnet18(eps=1e-5))
    x, targets = images(n=1), torch.tensor([7])
    ours = st.explain(net, x, "lrp", target=targets, composite="epsilon_plus_flat")
    theirs = zennit(
        net,
        x,
        zennit_composites.EpsilonPlusFlat(canonizers=[zennit_torchvision.ResNetCanonizer()]),
        targets,
    )
    gap = float(relative_l2(ours.attributions, theirs)[0])
    assert 1e-5 < gap < 1e-3  # ≈ 17 batch norms on the path × eps / 2
    ours_sum = float(ours.attributions.sum() / ours.scores[0])
    with torch.no_grad():
        logit = float(net(x)[0, 7])
    theirs_sum = float(theirs.sum()) / logit
    assert abs(ours_sum - 1.0) < 2e-5  # what the stabilisers (1e-6) absorb
    # Zennit loses (1 + eps) ** -0.5 ≈ 1 - 5e-6 per merged batch norm on the way down:
    # more than 10 batch norms' worth here (measured: 1.1e-4, about 22)
    assert 1.0 - theirs_sum / ours_sum > 10 * 5e-6


# ---------------------------------------------------------------- what Zennit skips


def parameters(seed: int = 2) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=g, dtype=torch.float64) * 0.5

    return {
        "w1": r(8, 3, 3, 3),
        "b1": r(8),
        "wd": r(8, 1, 3, 3),
        "bd": r(8),
        "w3": r(8, 8, 1, 1),
        "b3": r(8),
        "wf": r(4, 8),
        "bf": r(4),
    }


class Functional(nn.Module):
    """Every op functional: F.conv2d (one depthwise), torch.relu, F.relu6, clamp(min=0),
    an in-place ReLU, a residual ``x + y``, max and average pooling, ``x.mean`` and
    F.linear; one ReLU module is reused."""

    def __init__(self, p: dict[str, Tensor]) -> None:
        super().__init__()
        for k, v in p.items():
            self.register_parameter(k, nn.Parameter(v.clone()))
        self.act = nn.ReLU()  # reused

    def forward(self, x: Tensor) -> Tensor:
        x1 = torch.relu(F.conv2d(x, self.w1, self.b1, padding=1))
        x2 = F.relu6(F.conv2d(x1, self.wd, self.bd, padding=1, groups=8)).clamp(min=0)
        x3 = F.conv2d(x2, self.w3, self.b3).relu_()
        s = self.act(x3 + x1)
        q = self.act(F.avg_pool2d(F.max_pool2d(s, 2), 2))
        return F.linear(q.mean((2, 3)), self.wf, self.bf)


class HalfFunctional(nn.Module):
    """Layers as modules (Zennit hooks them), activations, the residual and the global
    pooling written functionally (Zennit skips them without a word)."""

    def __init__(self, p: dict[str, Tensor]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1).double()
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8).double()
        self.conv3 = nn.Conv2d(8, 8, 1).double()
        self.fc = nn.Linear(8, 4).double()
        with torch.no_grad():
            for module, w, b in (
                (self.conv1, "w1", "b1"),
                (self.dw, "wd", "bd"),
                (self.conv3, "w3", "b3"),
                (self.fc, "wf", "bf"),
            ):
                module.weight.copy_(p[w])
                module.bias.copy_(p[b])

    def forward(self, x: Tensor) -> Tensor:
        x1 = F.relu(self.conv1(x))
        x2 = F.relu6(self.dw(x1)).clamp(min=0)
        x3 = F.relu(self.conv3(x2), inplace=True)
        s = F.relu(x3 + x1)
        q = F.relu(F.avg_pool2d(F.max_pool2d(s, 2), 2))
        return self.fc(q.mean((2, 3)))


class Modules(HalfFunctional):
    """The same network with every op a module Zennit knows (``Sum`` for the residual)."""

    def __init__(self, p: dict[str, Tensor]) -> None:
        super().__init__(p)
        self.relu1, self.relu6, self.clamp, self.relu3 = nn.ReLU(), nn.ReLU6(), nn.ReLU(), nn.ReLU()
        self.sum, self.relu_sum = zennit_layer.Sum(), nn.ReLU()
        self.max, self.avg, self.relu_pool = nn.MaxPool2d(2), nn.AvgPool2d(2), nn.ReLU()
        self.mean = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: Tensor) -> Tensor:
        x1 = self.relu1(self.conv1(x))
        x2 = self.clamp(self.relu6(self.dw(x1)))
        x3 = self.relu3(self.conv3(x2))
        s = self.relu_sum(self.sum(torch.stack([x3, x1], dim=-1)))
        q = self.relu_pool(self.avg(self.max(s)))
        return self.fc(self.mean(q).flatten(1))


def test_functional_ops_get_their_rules_where_zennit_skips_them() -> None:
    p = parameters()
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    targets = torch.tensor([0, 2, 3])
    reference = zennit(Modules(p).eval(), x, zennit_composites.EpsilonPlusFlat(), targets)
    for model in (Functional(p).eval(), HalfFunctional(p).eval()):
        ours = st.explain(model, x, "lrp", target=targets, composite="epsilon_plus_flat")
        assert bool((relative_l2(ours.attributions, reference) < 1e-10).all())
        assert ours.rules["sum: Norm"] == 1 and ours.rules["avg_pool: Norm"] == 2
    skipped = zennit(HalfFunctional(p).eval(), x, zennit_composites.EpsilonPlusFlat(), targets)
    assert bool((relative_l2(skipped, reference) > 1e-2).all())


class Smooth(nn.Module):
    """Smooth activations written functionally (their inputs to the next conv are signed,
    so z⁺ takes both its ``x⁺w⁺`` and ``x⁻w⁻`` terms)."""

    def __init__(self, modules: bool = False) -> None:
        super().__init__()
        torch.manual_seed(7)
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1).double()
        self.act1, self.act2, self.act3 = nn.SiLU(), nn.GELU(), nn.Tanh()
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1).double()
        self.conv3 = nn.Conv2d(6, 6, 1).double()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 3).double()
        self.modules_form = modules

    def forward(self, x: Tensor) -> Tensor:
        if self.modules_form:
            h = self.act3(self.conv3(self.act2(self.conv2(self.act1(self.conv1(x))))))
            return self.fc(self.pool(h).flatten(1))
        h = torch.tanh(self.conv3(F.gelu(self.conv2(F.silu(self.conv1(x))))))
        return self.fc(h.mean((2, 3)))


def test_smooth_activations_pass_relevance_as_zennit_does() -> None:
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    targets = torch.tensor([0, 2])
    reference = zennit(Smooth(modules=True).eval(), x, zennit_composites.EpsilonPlus(), targets)
    ours = st.explain(Smooth().eval(), x, "lrp", target=targets, composite="epsilon_plus")
    assert bool((relative_l2(ours.attributions, reference) < 1e-10).all())
    assert ours.rules["activation: Pass"] == 3 and ours.rules["conv: ZPlus"] == 3


class CatConstant(nn.Module):
    """A ReLU output concatenated with a negative constant: the next conv's input is not
    non-negative, so z⁺ needs its ``x⁻w⁻`` term (the engine must not assume x ≥ 0)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(8)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1).double()
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(6, 5, 3, padding=1).double()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(5, 3).double()
        self.register_buffer("fill", -torch.rand(1, 2, 6, 6, dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        h = self.relu(self.conv1(x))
        h = torch.cat([h, self.fill.expand(len(x), -1, -1, -1)], dim=1)
        return self.fc(self.pool(self.relu(self.conv2(h))).flatten(1))


def test_a_constant_beside_a_rectified_input_keeps_the_negative_term() -> None:
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    targets = torch.tensor([1, 2])
    model = CatConstant().eval()
    reference = zennit(model, x, zennit_composites.EpsilonPlus(), targets)
    ours = st.explain(model, x, "lrp", target=targets, composite="epsilon_plus")
    assert bool((relative_l2(ours.attributions, reference) < 1e-10).all())


def test_flat_on_an_explicitly_padded_first_layer_keeps_all_relevance_in_the_image() -> None:
    """Lite0's stem pads with ``F.pad`` (TensorFlow "SAME") before a conv with no padding
    of its own: Flat must count the padded zeros as no input, as Zennit does when the pad
    runs inside the module, so that all of the stem's relevance lands on the image."""
    net = st.load_model("efficientnet-lite0")
    x = net.preprocess(st.load_images(["sample:chelsea"]))
    seen: dict[str, Tensor] = {}

    def hook(module: nn.Module, args: tuple[Tensor, ...], out: Tensor) -> None:
        out.register_hook(lambda g: seen.__setitem__("stem", g))

    handle = net.module._conv_stem.register_forward_hook(hook)
    rule = RelevanceRule("epsilon_plus_flat", net.module)
    leaf = x.clone().requires_grad_()
    with rule:
        out = net.module(leaf)
    (grad,) = torch.autograd.grad(out[0, 281], leaf)
    handle.remove()
    rule.check()
    assert rule.counts()["conv: Flat"] == 1
    stem = seen["stem"].double().sum()
    assert abs(float(grad.double().sum() / stem) - 1.0) < 1e-5
