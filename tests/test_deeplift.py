"""DeepLIFT (rescale rule) and DeepSHAP: hand-computed values, summation-to-delta on tiny
and real models, Captum 0.9 as an oracle where it is right, and where it is not."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import seethrough as st
from helpers import Snapshot, tiny_inputs, tiny_model
from seethrough.errors import InvalidOptionError, RuleNotAppliedError

captum_attr = pytest.importorskip("captum.attr")
torchvision = pytest.importorskip("torchvision")
from torchvision.models.resnet import BasicBlock  # noqa: E402

# ----------------------------------------------------------------------------- helpers


def gap_of(net: nn.Module, x: Tensor, ref: Tensor, target: Tensor) -> Tensor:
    """f(x) − f(x') for each row's target class, in float64."""
    rows = torch.arange(len(x))
    with torch.no_grad():
        return (net(x)[rows, target] - net(ref)[rows, target]).double()


def relative(a: Tensor, b: Tensor) -> float:
    """max |a − b| / max |b| (the ∞-norm relative error the oracle tests state)."""
    return float((a - b).abs().max() / b.abs().max())


def captum_deeplift(net: nn.Module, x: Tensor, ref: Tensor, target: Tensor) -> Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Captum warns that it sets hooks
        dl = captum_attr.DeepLift(net, multiply_by_inputs=True)
        return dl.attribute(x.clone(), baselines=ref, target=target).detach()


class Clone(nn.Module):
    """A linear no-op that gives its output a tensor of its own: Captum 0.9 reads stale
    gradients where two hooked modules touch one tensor (captum#1104, ReLU → MaxPool)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.clone()


# ----------------------------------------------------------------------------- hand values


class TwoUnits(nn.Module):
    """f(x) = 3 relu(x1 + x2 − 1) + relu(x1 − x2 + b2), inputs (N, 2, 1, 1)."""

    def __init__(self, b2: float = 0.5) -> None:
        super().__init__()
        self.hidden = nn.Linear(2, 2)
        self.relu = nn.ReLU()
        self.out = nn.Linear(2, 1, bias=False)
        with torch.no_grad():
            self.hidden.weight.copy_(torch.tensor([[1.0, 1.0], [1.0, -1.0]]))
            self.hidden.bias.copy_(torch.tensor([-1.0, b2]))
            self.out.weight.copy_(torch.tensor([[3.0, 1.0]]))
        self.double().eval()

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.relu(self.hidden(x.flatten(1))))


def test_hand_computed_two_unit_network() -> None:
    """x = (2, 1), x' = 0. Unit 1: z = 2, z' = −1, multiplier (2 − 0)/(2 + 1) = 2/3.
    Unit 2: z = 1.5, z' = 0.5, both active, multiplier 1. φ₁ = 2·(3·2/3 + 1·1) = 6,
    φ₂ = 1·(3·2/3 − 1·1) = 1; Σφ = 7 = f(x) − f(x') = 7.5 − 0.5. Gradient × input
    would give (8, 2), which sums to 10."""
    net = TwoUnits()
    x = torch.tensor([[2.0, 1.0]], dtype=torch.float64).view(1, 2, 1, 1)
    ex = st.explain(net, x, "deeplift", target=0)
    torch.testing.assert_close(ex.attributions.flatten(), torch.tensor([6.0, 1.0]).double())
    assert float(ex.scores[0]) == 7.5 and float(ex.reference_scores[0]) == 0.5
    assert abs(float(ex.summation_error[0])) < 1e-15
    grad_x_input = st.explain(net, x, "gradient_x_input", target=0).attributions
    torch.testing.assert_close(grad_x_input.flatten(), torch.tensor([8.0, 2.0]).double())


@pytest.mark.parametrize(("b2", "expected"), [(0.5, [2.5, 0.5]), (-0.5, [1.5, 1.5])])
def test_hand_computed_zero_difference_takes_the_local_derivative(
    b2: float, expected: list[float]
) -> None:
    """x = (1, 1): unit 2 has z = z' = b2, Δz = 0, so its multiplier is relu'(b2) (1 for
    b2 = 0.5, 0 for −0.5), as Captum does; unit 1: z = 1, z' = −1, multiplier 1/2.
    b2 = 0.5: φ₁ = 1·(3/2 + 1) = 2.5, φ₂ = 1·(3/2 − 1) = 0.5; b2 = −0.5: (1.5, 1.5).
    Both sum to f(x) − f(x') = 3."""
    net = TwoUnits(b2)
    x = torch.ones(1, 2, 1, 1, dtype=torch.float64)
    ex = st.explain(net, x, "deeplift", target=0)
    torch.testing.assert_close(ex.attributions.flatten(), torch.tensor(expected).double())
    ref = torch.zeros_like(x)
    torch.testing.assert_close(ex.attributions, captum_deeplift(net, x, ref, torch.tensor([0])))


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "leaky_relu": lambda: nn.LeakyReLU(0.1),
    "sigmoid": nn.Sigmoid,
    "silu_inplace": lambda: nn.SiLU(inplace=True),
    "gelu": nn.GELU,
}
CAPTUM_HOOKS = {"relu", "leaky_relu", "sigmoid"}  # the modules Captum 0.9 rewrites


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_zero_difference_takes_the_local_derivative_for_every_kind_of_op(name: str) -> None:
    """TwoUnits with g in place of the ReLU, x = (1, 1), x' = 0: unit 1 has z = 1,
    z' = −1, multiplier (g(1) − g(−1))/2; unit 2 has z = z' = 0.5, so its multiplier is
    g'(0.5) (by autograd here). φ = (3·m₁ + m₂, 3·m₁ − m₂). Covers the ops whose local
    derivative is read off the output (relu, relu6), a pointwise one (leaky_relu) and by
    autograd (sigmoid, an in-place SiLU, GELU)."""
    net = TwoUnits()
    net.relu = ACTIVATIONS[name]().double().eval()
    x = torch.ones(1, 2, 1, 1, dtype=torch.float64)
    ex = st.explain(net, x, "deeplift", target=0)
    g = ACTIVATIONS[name]().double()
    one = torch.tensor([1.0, -1.0], dtype=torch.float64)
    m1 = (g(one[:1]) - g(one[1:])) / 2
    z = torch.tensor([0.5], dtype=torch.float64, requires_grad=True)
    (m2,) = torch.autograd.grad(g(z.clone()), z)
    expected = torch.cat([3 * m1 + m2, 3 * m1 - m2])
    torch.testing.assert_close(ex.attributions.flatten(), expected, rtol=1e-12, atol=1e-14)
    if name in CAPTUM_HOOKS:
        theirs = captum_deeplift(net, x, torch.zeros_like(x), torch.tensor([0]))
        torch.testing.assert_close(ex.attributions, theirs, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("equal_pairs", [3, 40])
def test_zero_differences_by_cancellation_few_or_many_equal_captum(equal_pairs: int) -> None:
    """z_j = x_j − x_{j+1} + 0.3 against a zero reference: where x_j = x_{j+1}, Δz = 0
    with Δx ≠ 0, so the local derivative there reaches the attributions (±). A few such
    units (3 of 99: evaluated at those alone) and many (40: everywhere); equal to Captum's
    DeepLift on the same LeakyReLU module to 1e-12."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 1, (1, 2)), nn.LeakyReLU(0.1), nn.Flatten(), nn.Linear(99, 2)
    ).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([1.0, -1.0]).view(1, 1, 1, 2))
        net[0].bias.fill_(0.3)
    net.eval()
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(1, 1, 1, 100, generator=gen, dtype=torch.float64)
    for j in range(0, 2 * equal_pairs, 2):
        x[..., j + 1] = x[..., j]
    ours = st.explain(net, x, "deeplift", target=1)
    theirs = captum_deeplift(net, x, torch.zeros_like(x), torch.tensor([1]))
    torch.testing.assert_close(ours.attributions, theirs, rtol=1e-12, atol=1e-14)


class PoolSum(nn.Module):
    """Max pooling over windows of width 2 of a (N, 1, 1, W) row, then the sum."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d((1, 2), stride=(1, stride))

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(x).flatten(1).sum(1, keepdim=True)


def test_hand_computed_max_pool_rule() -> None:
    """Captum's maxpool rule: a window's y − y' is split into max(y, y') − y', routed to
    the input's argmax, and y − max(y, y'), routed to the reference's.

    x = (1, 0), x' = (0, 4): y = 1, y' = 4; the input's argmax (position 0) gets 0, the
    reference's (position 1) gets 1 − 4 = −3: φ = (0, −3).
    Overlapping windows, x = (1, 3, 2), x' = 0: both windows have their maximum at
    position 1, y = (3, 3), y' = (0, 0): position 1 gets 3 + 3 = 6, φ = (0, 6, 0), which
    sums to Σy − Σy' = 6. Captum writes the windows back with max_unpool, which keeps one
    of the two: (0, 3, 0), summing to 3."""
    x = torch.tensor([1.0, 0.0], dtype=torch.float64).view(1, 1, 1, 2)
    ref = torch.tensor([0.0, 4.0], dtype=torch.float64).view(1, 1, 1, 2)
    ex = st.explain(PoolSum(2).double().eval(), x, "deeplift", baseline=ref, target=0)
    torch.testing.assert_close(ex.attributions.flatten(), torch.tensor([0.0, -3.0]).double())

    net = PoolSum(1).double().eval()
    x = torch.tensor([1.0, 3.0, 2.0], dtype=torch.float64).view(1, 1, 1, 3)
    ex = st.explain(net, x, "deeplift", target=0)
    torch.testing.assert_close(ex.attributions.flatten(), torch.tensor([0.0, 6.0, 0.0]).double())
    captum = captum_deeplift(net, x, torch.zeros_like(x), torch.tensor([0]))
    torch.testing.assert_close(captum.flatten(), torch.tensor([0.0, 3.0, 0.0]).double())


# ----------------------------------------------------------------------------- every op

SMOOTH: dict[str, Callable[[Tensor], Tensor]] = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "silu": F.silu,
    "gelu": F.gelu,
    "softplus": F.softplus,
    "elu": F.elu,
    "selu": F.selu,
    "celu": F.celu,
    "mish": F.mish,
    "hardswish": F.hardswish,
    "hardsigmoid": F.hardsigmoid,
    "logsigmoid": F.logsigmoid,
    "softsign": F.softsign,
    "leaky_relu(0.01)": F.leaky_relu,
    "relu6": F.relu6,
    "hardtanh(-1, 1)": F.hardtanh,
    "exp": torch.exp,
    "pow": lambda z: z**2,
}


class OneLayer(nn.Module):
    def __init__(self, g: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.hidden = nn.Linear(6, 5)
        self.out = nn.Linear(5, 3)
        self.g = g
        self.double().eval()

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.g(self.hidden(x.flatten(1))))


@pytest.mark.parametrize("name", list(SMOOTH))
def test_rescale_rule_equals_its_closed_form_on_one_hidden_layer(name: str) -> None:
    """f(x) = V g(Wx + b): φ_i = Δx_i Σ_j V_tj W_ji (g(z_j) − g(z'_j)) / (z_j − z'_j),
    computed here directly, for each elementwise nonlinearity."""
    g = SMOOTH[name]
    net = OneLayer(g)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4, 6, 1, 1, generator=gen, dtype=torch.float64) * 2
    ref = torch.randn(4, 6, 1, 1, generator=gen, dtype=torch.float64) * 0.5
    target = torch.tensor([0, 1, 2, 1])
    ex = st.explain(net, x, "deeplift", baseline=ref, target=target)
    w, v = net.hidden.weight.detach(), net.out.weight.detach()
    z = x.flatten(1) @ w.T + net.hidden.bias.detach()
    zr = ref.flatten(1) @ w.T + net.hidden.bias.detach()
    m = (g(z) - g(zr)) / (z - zr)
    expected = (x - ref).flatten(1) * ((v[target] * m) @ w)
    torch.testing.assert_close(ex.attributions.flatten(1), expected, rtol=1e-10, atol=1e-12)
    assert sum(ex.rewritten.values()) == 1
    assert (ex.summation_error.abs() < 1e-12).all()


class EveryOp(nn.Module):
    """Every way a model writes a nonlinearity: modules, functional, tensor methods,
    in place, a reused module, ReLU6, hardtanh, clamps (of the input too), smooth ones
    with and without inplace, max pooling with indices and adaptive max pooling."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.convs = nn.ModuleList(nn.Conv2d(4 if i else 3, 4, 3, padding=1) for i in range(9))
        self.relu = nn.ReLU(inplace=True)  # reused
        self.relu6 = nn.ReLU6()
        self.silu = nn.SiLU(inplace=True)
        self.prelu = nn.PReLU(4)
        self.pool = nn.MaxPool2d(2, return_indices=True)
        self.fc = nn.Linear(4, 5)
        self.double().eval()

    def forward(self, x: Tensor) -> Tensor:
        c = iter(self.convs)
        h = next(c)(x.clamp(-2, 2))
        h = self.relu(h) + torch.relu(next(c)(h))
        h = self.relu(next(c)(h)).clamp(max=3.0)
        h = F.hardtanh(self.relu6(next(c)(h) * 4), -1, 2)
        h = self.silu(next(c)(h)) + F.gelu(next(c)(h)).tanh()
        h = F.elu(next(c)(h), inplace=True).sigmoid_()
        h = self.prelu(next(c)(h)) + F.leaky_relu(h, 0.2)
        h, _ = self.pool(next(c)(h).relu_())
        h = F.softplus(F.adaptive_max_pool2d(h, 1))
        return self.fc(h.flatten(1))


def test_every_way_of_writing_a_nonlinearity_is_rewritten_and_adds_up() -> None:
    net = EveryOp()
    x = tiny_inputs(n=3, size=8)
    ex = st.explain(net, x, "deeplift", baseline="blur", blur_sigma=1.0)
    assert dict(ex.rewritten) == {
        "adaptive_max_pool2d": 1,
        "clamp": 2,
        "elu": 1,
        "gelu": 1,
        "hardtanh(-1, 2)": 1,
        "hardtanh(0, 6)": 1,
        "leaky_relu(0.2)": 1,
        "max_pool2d": 1,
        "prelu": 1,
        "relu": 4,
        "sigmoid": 1,
        "silu": 1,
        "softplus": 1,
        "tanh": 1,
    }
    gap = (ex.scores - ex.reference_scores).abs()
    assert (gap > 1e-3).all()
    assert (ex.summation_error.abs() <= 1e-12 * gap).all()


def test_tiny_cnn_with_reused_inplace_and_functional_relus() -> None:
    model = tiny_model()
    x = tiny_inputs()
    ex = st.explain(model, x, "deeplift")
    assert dict(ex.rewritten) == {"relu": 3}
    assert (ex.relative_summation_error < 1e-12).all()
    for row in ex.summation():
        assert row["error"] == pytest.approx(row["sum"] - row["difference"], abs=1e-15)


# ----------------------------------------------------------------------------- summation


def test_summation_to_delta_on_the_fashion_cnn() -> None:
    """float32, 16 test images, zero baseline: measured ≤ 2.6e-7 relative (2026-12-06)."""
    from seethrough.data.fashion_mnist import load_fashion_mnist

    net = st.load_model("fashion-cnn")
    data = load_fashion_mnist("test")
    x = data.inputs(0, 16)
    ex = st.explain(net, x, "deeplift")
    assert dict(ex.rewritten) == {"max_pool2d": 2, "relu": 3}
    gap = ex.scores.double() - ex.reference_scores.double()
    assert (gap.abs() > 0.1).all()
    torch.testing.assert_close(ex.attributions.double().flatten(1).sum(1), gap, rtol=1e-5, atol=0)
    refs = load_fashion_mnist("train").inputs(0, 8)
    shap = st.explain(net, x[:4], "deepshap", baselines=refs)
    with torch.no_grad():
        mean_ref = net.module(refs)[:, shap.targets].double().mean(0)
    torch.testing.assert_close(shap.reference_scores.double(), mean_ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(
        shap.attributions.double().flatten(1).sum(1),
        shap.scores.double() - mean_ref,
        rtol=1e-5,
        atol=0,
    )


def test_summation_to_delta_on_efficientnet_lite0() -> None:
    """float32, two photos, zero and blur baselines, and DeepSHAP over two references.
    Tolerance 1e-5 relative to f(x) − f(x'): the sums run over 150,528 float32
    attributions from float32 backward passes; measured ≤ 3.6e-7 (2026-12-06)."""
    net = st.load_model("efficientnet-lite0")
    x = net.preprocess(st.load_images(["sample:chelsea", "sample:rocket"]))
    for baseline in ("zeros", "blur"):
        ex = st.explain(net, x, "deeplift", baseline=baseline)
        assert dict(ex.rewritten) == {"hardtanh(0, 6)": 33}
        gap = ex.scores.double() - ex.reference_scores.double()
        assert (gap.abs() > 1).all()
        torch.testing.assert_close(
            ex.attributions.double().flatten(1).sum(1), gap, rtol=1e-5, atol=0
        )
    refs = torch.stack([torch.zeros_like(x[0]), x[1].flip(-1)])
    shap = st.explain(net, x[:1], "deepshap", baselines=refs)
    assert (shap.relative_summation_error < 1e-5).all()


def test_deepshap_is_the_mean_of_deeplift_over_its_references() -> None:
    model = tiny_model()
    x = tiny_inputs(n=2)
    refs = tiny_inputs(n=3, seed=7) * 0.3
    shap = st.explain(model, x, "deepshap", baselines=refs, target=[1, 3])
    each = [st.explain(model, x, "deeplift", baseline=r, target=[1, 3]).attributions for r in refs]
    torch.testing.assert_close(shap.attributions, torch.stack(each).mean(0))
    assert torch.equal(shap.references, refs)


# ----------------------------------------------------------------------------- Captum oracle


class SeparateBlock(BasicBlock):
    """torchvision's BasicBlock with its two ReLUs as separate modules (Captum 0.9
    needs each hooked module to run once per pass, captum#1082)."""

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu_out(self.bn2(self.conv2(out)) + identity)


class FunctionalBlock(BasicBlock):
    """The same block with F.relu and torch.relu, which Captum does not see."""

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + identity)


class FunctionalRelu(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x)


def resnet18(blocks: str) -> nn.Module:
    """torchvision's ResNet-18 (random weights, random batch-norm statistics, float64)
    with a 2×2 max pool in the stem (its 3×3 stride-2 pool overlaps, where Captum's
    max_unpool drops contributions). ``blocks``: ``"torchvision"`` (a reused in-place
    ReLU per block), ``"separate"`` (one module per ReLU, and a clone between the stem's
    ReLU and max pool for captum#1104) or ``"functional"``; the same weights for all."""
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=10)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    net.maxpool = nn.MaxPool2d(2, 2)
    block_type = {"separate": SeparateBlock, "functional": FunctionalBlock}.get(blocks)
    if blocks == "separate":
        net.relu = nn.Sequential(nn.ReLU(), Clone())
    elif blocks == "functional":
        net.relu = FunctionalRelu()
    for m in net.modules():
        if isinstance(m, BasicBlock) and block_type is not None:
            m.__class__ = block_type
            m.relu, m.relu_out = nn.ReLU(), nn.ReLU()
    return net.double().eval()


@pytest.fixture(scope="module")
def pair() -> tuple[Tensor, Tensor, Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 32, 32, generator=gen, dtype=torch.float64)
    ref = 0.2 * torch.randn(2, 3, 32, 32, generator=gen, dtype=torch.float64)
    return x, ref, torch.tensor([3, 8])


def test_equals_captum_deeplift_and_deepliftshap_on_a_resnet18_with_relu_modules(
    pair: tuple[Tensor, Tensor, Tensor],
) -> None:
    """Tolerance: max |ours − Captum| ≤ 1e-5 · max |Captum| (∞-norm, relative), float64;
    measured ~1e-16 (2026-12-06)."""
    x, ref, target = pair
    net = resnet18("separate")
    ours = st.explain(net, x, "deeplift", baseline=ref, target=target)
    assert dict(ours.rewritten) == {"max_pool2d": 1, "relu": 17}
    theirs = captum_deeplift(net, x, ref, target)
    assert relative(ours.attributions, theirs) < 1e-5
    assert (ours.summation_error.abs() < 1e-10).all()

    gen = torch.Generator().manual_seed(5)
    refs = 0.3 * torch.randn(3, 3, 32, 32, generator=gen, dtype=torch.float64)
    shap = st.explain(net, x, "deepshap", baselines=refs, target=target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        explainer = captum_attr.DeepLiftShap(net, multiply_by_inputs=True)
        theirs = explainer.attribute(x.clone(), baselines=refs, target=target).detach()
    assert relative(shap.attributions, theirs) < 1e-5
    assert (shap.summation_error.abs() < 1e-10).all()


def test_captum_raises_on_torchvision_reused_relu_where_ours_equals_the_rewrite(
    pair: tuple[Tensor, Tensor, Tensor],
) -> None:
    x, ref, target = pair
    net = resnet18("torchvision")
    with pytest.raises(RuntimeError, match="being used more than once"):
        captum_deeplift(net, x, ref, target)
    ours = st.explain(net, x, "deeplift", baseline=ref, target=target)
    assert dict(ours.rewritten) == {"max_pool2d": 1, "relu": 17}
    reference = captum_deeplift(resnet18("separate"), x, ref, target)
    assert relative(ours.attributions, reference) < 1e-5


def test_captum_silently_skips_functional_relus_where_ours_adds_up(
    pair: tuple[Tensor, Tensor, Tensor],
) -> None:
    """On the ResNet written with F.relu/torch.relu Captum hooks only the max pool and
    returns without a word; its attributions miss f(x) − f(x') by ≥ 1% of it. Ours add
    up, and equal Captum's on the same network with ReLU modules."""
    x, ref, target = pair
    net = resnet18("functional")
    gap = gap_of(net, x, ref, target)
    theirs = captum_deeplift(net, x, ref, target)
    assert ((theirs.flatten(1).sum(1) - gap).abs() > 0.01 * gap.abs()).all()
    ours = st.explain(net, x, "deeplift", baseline=ref, target=target)
    assert (ours.summation_error.abs() < 1e-10 * gap.abs()).all()
    reference = captum_deeplift(resnet18("separate"), x, ref, target)
    assert relative(ours.attributions, reference) < 1e-5


def test_captum_breaks_on_relu_then_max_pool_as_in_the_fashion_cnn() -> None:
    """captum#1104 (fixed after 0.9): a ReLU module whose output feeds a MaxPool module
    reads the max pool's plain gradient, not its multiplier. On the Fashion CNN (float64
    copy, real weights) with test images as references Captum's attributions then miss
    the score difference (with a constant reference, as zeros, the error cancels); ours
    add up, and equal Captum's once a clone separates the two modules."""
    from seethrough.data.fashion_mnist import load_fashion_mnist
    from seethrough.models.fashion_cnn import fashion_cnn

    net = fashion_cnn().double()
    images = load_fashion_mnist("test").inputs(0, 6).double()
    x, ref = images[:3], images[3:]  # other test images as references
    target = torch.tensor([0, 3, 9])
    gap = gap_of(net, x, ref, target)
    theirs = captum_deeplift(net, x, ref, target)
    assert ((theirs.flatten(1).sum(1) - gap).abs() > 1e-3 * gap.abs()).all()
    ours = st.explain(net, x, "deeplift", baseline=ref, target=target)
    assert (ours.summation_error.abs() < 1e-10 * gap.abs()).all()

    separated = fashion_cnn().double()
    separated.relu1 = nn.Sequential(nn.ReLU(), Clone())
    separated.relu2 = nn.Sequential(nn.ReLU(), Clone())
    assert relative(ours.attributions, captum_deeplift(separated, x, ref, target)) < 1e-5


def test_captum_drops_overlapping_max_pool_windows_where_ours_adds_up() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        Clone(),
        nn.MaxPool2d(3, stride=2, padding=1),  # as in ResNet's stem
        nn.Flatten(),
        nn.Linear(4 * 16, 5),
    ).double()
    net.eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 3, 8, 8, generator=gen, dtype=torch.float64)
    ref = 0.1 * torch.randn(3, 3, 8, 8, generator=gen, dtype=torch.float64)
    target = torch.tensor([1, 4, 2])
    gap = gap_of(net, x, ref, target)
    theirs = captum_deeplift(net, x, ref, target)
    assert ((theirs.flatten(1).sum(1) - gap).abs() > 0.01 * gap.abs()).all()
    ours = st.explain(net, x, "deeplift", baseline=ref, target=target)
    assert (ours.summation_error.abs() < 1e-10 * gap.abs()).all()


def test_equals_captum_on_smooth_nonlinearity_modules() -> None:
    """Captum's rescale rule for nn.Sigmoid, nn.Tanh, nn.ELU, nn.Softplus, nn.LeakyReLU
    (separate modules, none adjacent); max |ours − Captum| ≤ 1e-5 · max |Captum|."""
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(3, 4, 3, padding=1)]
    for act in (nn.Sigmoid(), nn.Tanh(), nn.ELU(), nn.Softplus(), nn.LeakyReLU(0.1)):
        layers += [act, nn.Conv2d(4, 4, 3, padding=1)]
    net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    net = net.double().eval()
    x = tiny_inputs(n=2, size=6)
    ref = 0.5 * tiny_inputs(n=2, seed=3, size=6)
    target = torch.tensor([0, 2])
    ours = st.explain(net, x, "deeplift", baseline=ref, target=target)
    assert relative(ours.attributions, captum_deeplift(net, x, ref, target)) < 1e-5


# ----------------------------------------------------------------------------- refusals


class Gated(nn.Module):
    """Squeeze-excitation: a product of two activations."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)
        self.double().eval()

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.conv(x))
        h = h * torch.sigmoid(h.mean((2, 3), keepdim=True))
        return self.fc(h.mean((2, 3)))


class Selects(Gated):
    def forward(self, x: Tensor) -> Tensor:
        h = self.conv(x)
        return self.fc(torch.where(h > 0, h, 0.0).mean((2, 3)))


class Softmaxed(Gated):
    def forward(self, x: Tensor) -> Tensor:
        return F.softmax(self.fc(F.relu(self.conv(x)).mean((2, 3))), dim=1)


class Normed(Gated):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(2, 4).double().eval()

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(F.relu(self.norm(self.conv(x))).mean((2, 3)))


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (Gated, r"no rule for mul of two activations in module 'Gated'"),
        (
            Selects,
            r"no rule for where with a mask, index or detached value computed from activations",
        ),
        (Softmaxed, r"no rule for softmax in module 'Softmaxed'.*explain the logits"),
        (Normed, r"no rule for group_norm in module 'norm'"),
    ],
)
def test_ops_without_a_rescale_rule_raise_naming_them(model: type[nn.Module], message: str) -> None:
    torch.manual_seed(0)
    net = model()
    x = tiny_inputs(n=2, size=6)
    before = Snapshot.take(net, x)
    for method, options in (("deeplift", {}), ("deepshap", {"baselines": x[:1] * 0})):
        with pytest.raises(RuleNotAppliedError, match=message):
            st.explain(net, x, method, **options)
        before.assert_unchanged(net, x)


class SameBranch(Gated):
    """A selection by a mask computed from the input that is the same for every image
    and its reference here (the sum of the pixels is far above −1e9)."""

    def forward(self, x: Tensor) -> Tensor:
        logits = self.fc(F.relu(self.conv(x)).mean((2, 3)))
        return torch.where((x.sum((1, 2, 3)) > -1e9)[:, None], logits, -logits)


def test_a_selection_that_agrees_between_input_and_reference_is_linear() -> None:
    torch.manual_seed(0)
    net = SameBranch()
    x = tiny_inputs(n=2, size=6)
    ex = st.explain(net, x, "deeplift", baseline="blur", blur_sigma=1.0)
    assert dict(ex.rewritten) == {"relu": 1}
    assert (ex.summation_error.abs() < 1e-12).all()
    plain = st.explain(_Plain(net).eval(), x, "deeplift", baseline="blur", blur_sigma=1.0)
    torch.testing.assert_close(ex.attributions, plain.attributions, rtol=1e-12, atol=0)


class _Plain(nn.Module):
    """``SameBranch`` without the selection (it always takes the first branch)."""

    def __init__(self, net: SameBranch) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net.fc(F.relu(self.net.conv(x)).mean((2, 3)))


def test_torchscript_model_raises_instead_of_returning_gradient_x_input() -> None:
    net = torch.jit.script(tiny_model())
    x = tiny_inputs(n=1)
    with pytest.raises(RuleNotAppliedError, match="TorchScript"):
        st.explain(net, x, "deeplift")


class _OpaqueRelu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[no-untyped-def]
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[no-untyped-def]
        (x,) = ctx.saved_tensors
        return grad * (x > 0)


class Opaque(Gated):
    def forward(self, x: Tensor) -> Tensor:
        return self.fc(_OpaqueRelu.apply(self.conv(x)).mean((2, 3)))


def test_a_nonlinearity_the_rule_cannot_see_is_reported() -> None:
    """A custom autograd function is invisible to the rule: the attributions are then
    gradient × Δx there, do not add up, and a warning says so."""
    torch.manual_seed(0)
    x = tiny_inputs(n=2, size=6)
    with pytest.warns(RuntimeWarning, match="do not add up"):
        ex = st.explain(Opaque(), x, "deeplift")
    assert (ex.relative_summation_error > 1e-3).any()


# ----------------------------------------------------------------------------- bad input


def test_deepshap_without_baselines_says_what_to_pass() -> None:
    model = tiny_model()
    x = tiny_inputs(n=1)
    with pytest.raises(InvalidOptionError, match=r"deepshap needs baselines=.*\(K, C, H, W\)"):
        st.explain(model, x, "deepshap")
    with pytest.raises(InvalidOptionError, match="baselines must be a tensor"):
        st.explain(model, x, "deepshap", baselines=[x])
    with pytest.raises(InvalidOptionError, match="at least one reference"):
        st.explain(model, x, "deepshap", baselines=x[:0])


def test_references_of_the_wrong_shape_are_refused_and_leave_the_model_alone() -> None:
    model = tiny_model()
    x = tiny_inputs(n=2)
    before = Snapshot.take(model, x)
    with pytest.raises(InvalidOptionError, match=r"pass baselines shaped \(K, 3, 12, 12\)"):
        st.explain(model, x, "deepshap", baselines=torch.zeros(4, 3, 8, 8, dtype=torch.float64))
    with pytest.raises(InvalidOptionError, match="does not broadcast"):
        st.explain(model, x, "deeplift", baseline=torch.zeros(3, 3, 12, 12, dtype=torch.float64))
    with pytest.raises(InvalidOptionError, match="unknown baseline 'noise'"):
        st.explain(model, x, "deeplift", baseline="noise")
    before.assert_unchanged(model, x)
