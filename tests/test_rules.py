"""Guided backprop and deconvnet reach every rectifier, however it is written — and only
rectifiers: ReLU-like ops on activations, not clamps of the model input (issue 12.4).

Reference: a hand-written backward pass through a 3-layer MLP (float64) that applies the
rule's formula at each activation — independent of our rule code (a clamp's local
derivative is read off PyTorch's own backward for that one op). For
what is *not* a rectifier: the same net written with an op no rule touches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import seethrough as st
from helpers import Snapshot, TinyCNN
from seethrough.core.rules import RectifierCall
from seethrough.errors import InvalidOptionError, RuleNotAppliedError

SLOPE = 0.1


def local_derivative(op: Callable[[Tensor], Tensor], z: Tensor) -> Tensor:
    """The elementwise derivative of ``op`` at ``z`` by PyTorch's own backward (whose
    convention at a clamp's bounds changed between releases)."""
    with torch.enable_grad():
        leaf = z.detach().requires_grad_()
        (grad,) = torch.autograd.grad(op(leaf).sum(), leaf)
    return grad


# name -> (activation applied in forward, local derivative f'(x) used by the reference)
Activation = tuple[Callable[[Any, Tensor], Tensor], Callable[[Tensor], Tensor]]
relu_grad = lambda z: (z > 0).double()  # noqa: E731
relu6_grad = lambda z: ((z > 0) & (z < 6)).double()  # noqa: E731

ACTIVATIONS: dict[str, Activation] = {
    "nn.ReLU": (lambda m, z: m.relu(z), relu_grad),
    "nn.ReLU inplace": (lambda m, z: m.relu_inplace(z), relu_grad),
    "F.relu": (lambda m, z: F.relu(z), relu_grad),
    "F.relu inplace": (lambda m, z: F.relu(z, inplace=True), relu_grad),
    "torch.relu": (lambda m, z: torch.relu(z), relu_grad),
    "torch.relu_": (lambda m, z: torch.relu_(z), relu_grad),
    "Tensor.relu": (lambda m, z: z.relu(), relu_grad),
    "Tensor.relu_": (lambda m, z: z.relu_(), relu_grad),
    "nn.ReLU6": (lambda m, z: m.relu6(z), relu6_grad),
    "F.relu6": (lambda m, z: F.relu6(z), relu6_grad),
    "F.hardtanh(0, 6)": (lambda m, z: F.hardtanh(z, 0.0, 6.0), relu6_grad),
    "clamp(min=0)": (
        lambda m, z: z.clamp(min=0),
        lambda z: local_derivative(lambda t: t.clamp(min=0), z),
    ),
    "torch.clamp(0, 6)": (
        lambda m, z: torch.clamp(z, 0, 6),
        lambda z: local_derivative(lambda t: torch.clamp(t, 0, 6), z),
    ),
    "clamp_min(0)": (
        lambda m, z: torch.clamp_min(z, 0),
        lambda z: local_derivative(lambda t: torch.clamp_min(t, 0), z),
    ),
    "F.threshold(0, 0)": (lambda m, z: F.threshold(z, 0.0, 0.0), relu_grad),
    "nn.LeakyReLU": (lambda m, z: m.leaky(z), lambda z: torch.where(z > 0, 1.0, SLOPE).double()),
    "nn.PReLU": (lambda m, z: m.prelu(z), lambda z: torch.where(z > 0, 1.0, 0.25).double()),
}


class MLP(nn.Module):
    def __init__(self, activation: Callable[[Any, Tensor], Tensor]) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.l1, self.l2, self.l3 = nn.Linear(12, 16), nn.Linear(16, 16), nn.Linear(16, 4)
        self.relu, self.relu_inplace, self.relu6 = nn.ReLU(), nn.ReLU(inplace=True), nn.ReLU6()
        self.leaky, self.prelu = nn.LeakyReLU(SLOPE), nn.PReLU(init=0.25)
        self.activation = activation
        self.double()
        with torch.no_grad():  # push some pre-activations above 6 so ReLU6 clips
            self.l1.weight.mul_(8)

    def forward(self, x: Tensor) -> Tensor:
        z1 = self.l1(x.flatten(1))
        h1 = self.activation(self, z1)
        h2 = self.activation(self, self.l2(h1))  # the same module reused
        return self.l3(h2)


def reference(
    model: MLP, x: Tensor, target: int, derivative: Callable[[Tensor], Tensor], kind: str
) -> Tensor:
    """Hand-written backward: W^T g through linear layers, the rule at activations."""
    with torch.no_grad():
        z1 = model.l1(x.flatten(1))
        h1 = model.activation(model, z1.clone())
        z2 = model.l2(h1)

        def rule(g: Tensor, z: Tensor) -> Tensor:
            return g.clamp(min=0) if kind == "deconvnet" else derivative(z) * g.clamp(min=0)

        g = model.l3.weight[target].expand(len(x), -1)
        g = rule(g, z2) @ model.l2.weight
        g = rule(g, z1) @ model.l1.weight
        return g.view_as(x)


@pytest.fixture
def x() -> Tensor:
    return torch.randn(3, 3, 2, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)


@pytest.mark.parametrize("kind", ["guided_backprop", "deconvnet"])
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_rule_matches_hand_written_backward(name: str, kind: str, x: Tensor) -> None:
    activation, derivative = ACTIVATIONS[name]
    model = MLP(activation).eval()
    ex = st.explain(model, x, kind, target=2)
    expected = reference(model, x, 2, derivative, "deconvnet" if kind == "deconvnet" else "guided")
    torch.testing.assert_close(ex.attributions, expected, rtol=1e-12, atol=1e-12)
    assert ex.rule_applications == 2  # both activations, the reused one included
    plain = st.explain(model, x, "gradient", target=2).attributions
    assert not torch.allclose(ex.attributions, plain), "the rule must change the gradient"


def test_relu6_boundaries_follow_pytorch() -> None:
    """ReLU6's derivative is 0 at exactly 0 and 6, as in PyTorch's hardtanh backward."""
    model = MLP(ACTIVATIONS["nn.ReLU6"][0]).eval()
    x = torch.randn(2, 3, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    guided = st.explain(model, x, "guided_backprop", target=0).attributions
    torch.testing.assert_close(guided, reference(model, x, 0, relu6_grad, "guided"))


def test_captum_misses_functional_relu_where_we_do_not(x: Tensor) -> None:
    """Captum's GuidedBackprop hooks nn.ReLU modules only: on F.relu it silently returns the
    plain gradient. Ours equals the independent reference."""
    import captum.attr as captum

    activation, derivative = ACTIVATIONS["F.relu"]
    model = MLP(activation).eval()
    with pytest.warns(UserWarning, match="backward hooks"):
        theirs = captum.GuidedBackprop(model).attribute(x.clone().requires_grad_(), target=2)
    plain = st.explain(model, x, "gradient", target=2).attributions
    ours = st.explain(model, x, "guided_backprop", target=2).attributions
    torch.testing.assert_close(theirs, plain, rtol=1e-12, atol=1e-12)  # Captum == plain gradient
    torch.testing.assert_close(ours, reference(model, x, 2, derivative, "guided"))
    assert not torch.allclose(ours, theirs)


@pytest.mark.parametrize("name", ["nn.ReLU6", "F.relu6"])
def test_captum_misses_relu6(name: str, x: Tensor) -> None:
    import captum.attr as captum

    model = MLP(ACTIVATIONS[name][0]).eval()
    with pytest.warns(UserWarning, match="backward hooks"):
        theirs = captum.GuidedBackprop(model).attribute(x.clone().requires_grad_(), target=1)
    plain = st.explain(model, x, "gradient", target=1).attributions
    torch.testing.assert_close(theirs, plain, rtol=1e-12, atol=1e-12)
    ours = st.explain(model, x, "guided_backprop", target=1).attributions
    torch.testing.assert_close(ours, reference(model, x, 1, relu6_grad, "guided"))


def test_captum_agrees_on_nn_relu_modules(x: Tensor) -> None:
    import captum.attr as captum

    model = MLP(ACTIVATIONS["nn.ReLU"][0]).eval()
    for ours_name, theirs_cls in [
        ("guided_backprop", captum.GuidedBackprop),
        ("deconvnet", captum.Deconvolution),
    ]:
        with pytest.warns(UserWarning, match="backward hooks"):
            theirs = theirs_cls(model).attribute(x.clone().requires_grad_(), target=3)
        ours = st.explain(model, x, ours_name, target=3).attributions
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


class _SiLUNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.l1, self.l2 = nn.Linear(12, 8), nn.Linear(8, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.l2(F.silu(self.l1(x.flatten(1))) * torch.sigmoid(self.l1(x.flatten(1))))


class _Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.l1 = nn.Linear(12, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.l1(x.flatten(1))


@pytest.mark.parametrize("method", ["guided_backprop", "deconvnet"])
def test_rule_that_never_fires_raises_and_names_what_it_saw(method: str) -> None:
    x = torch.randn(2, 3, 2, 2)
    with pytest.raises(RuleNotAppliedError, match=r"no ReLU-like .*sigmoid ×1, silu ×1"):
        st.explain(_SiLUNet().eval(), x, method)
    with pytest.raises(RuleNotAppliedError, match="plain gradient"):
        st.explain(_Linear().eval(), x, method)


def test_guided_grad_cam_raises_without_rectifiers() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.SiLU(), nn.Conv2d(4, 4, 3), nn.Flatten(), nn.LazyLinear(3)
    )
    x = torch.randn(2, 3, 8, 8)
    model(x)
    model.eval()
    with pytest.raises(RuleNotAppliedError, match="silu"):
        st.explain(model, x, "guided_grad_cam")


def test_torchscript_model_is_refused_not_silently_plain(x: Tensor) -> None:
    torch.manual_seed(0)
    eager = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3)).double()
    model = torch.jit.trace(eager.eval(), x)
    with pytest.raises(RuleNotAppliedError, match="TorchScript"):
        st.explain(model, x, "guided_backprop")
    # the plain gradient still works on TorchScript
    assert st.explain(model, x, "gradient").attributions.shape == x.shape


def test_clamp_with_nonzero_bound_is_not_a_rectifier(x: Tensor) -> None:
    """clamp(min=1e-6) is numerics, not a ReLU: left alone (and the rule then never fires)."""
    model = MLP(lambda m, z: z.clamp(min=1e-6)).eval()
    with pytest.raises(RuleNotAppliedError):
        st.explain(model, x, "guided_backprop")


# ---------------------------------------------------------------------------------------
# What counts as a rectifier: ReLU-like ops on activations, not input clamps (issue 12.4)
# ---------------------------------------------------------------------------------------

RULES = ["guided_backprop", "deconvnet"]


def _tiny_cnn() -> TinyCNN:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return TinyCNN().eval()


Preprocess = Callable[[Any, Tensor], Tensor]


class _Preprocessed(nn.Module):
    """``net(preprocess(x))``, e.g. a robust-model wrapper that clamps the input to [0, 1]."""

    preprocess: Preprocess

    def __init__(self, net: nn.Module, preprocess: Preprocess) -> None:
        super().__init__()
        self.net, self.preprocess = net, preprocess
        self.register_buffer("offset", torch.tensor([0.4, 0.5, 0.6], dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.preprocess(self, x))


# name -> (preprocessing with an input clamp, the same without it)
INPUT_CLAMPS: dict[str, tuple[Preprocess, Preprocess]] = {
    "x.clamp(0, 1)": (lambda m, x: x.clamp(0, 1), lambda m, x: x),
    "torch.clamp(x, min=0)": (lambda m, x: torch.clamp(x, min=0), lambda m, x: x),
    "F.hardtanh(x, 0, 1)": (lambda m, x: F.hardtanh(x, 0.0, 1.0), lambda m, x: x),
    "F.relu(x)": (lambda m, x: F.relu(x), lambda m, x: x),
    "(2 * x).clamp_(0, 2)": (lambda m, x: (2 * x).clamp_(0, 2), lambda m, x: 2 * x),
    "relu6 after normalising with a buffer": (
        lambda m, x: F.relu6((x + m.offset.view(1, 3, 1, 1)) * 2),
        lambda m, x: (x + m.offset.view(1, 3, 1, 1)) * 2,
    ),
}


@pytest.fixture
def unit_images() -> Tensor:
    """Pixels strictly inside (0, 1): every input clamp above is the identity on them."""
    g = torch.Generator().manual_seed(3)
    return torch.rand(3, 3, 8, 8, generator=g, dtype=torch.float64) * 0.98 + 0.01


@pytest.mark.parametrize("method", RULES)
@pytest.mark.parametrize("clamp", list(INPUT_CLAMPS))
def test_input_clamp_keeps_its_plain_gradient(method: str, clamp: str, unit_images: Tensor) -> None:
    """On inputs where the clamp is the identity, its plain backward is the identity too,
    so the map of ``net(clamp(p(x)))`` is exactly that of ``net(p(x))``. Rewriting the
    clamp (the old rule) zeroes every pixel whose incoming gradient is negative."""
    net = _tiny_cnn()
    clamped, unclamped = INPUT_CLAMPS[clamp]
    ours = st.explain(_Preprocessed(net, clamped).eval(), unit_images, method, target=1)
    reference = st.explain(_Preprocessed(net, unclamped).eval(), unit_images, method, target=1)
    torch.testing.assert_close(ours.attributions, reference.attributions, rtol=0, atol=0)


class _WithHardtanh(nn.Module):
    """conv – ``squash`` – conv – ReLU – pool – linear; ``squash`` is not a rectifier."""

    def __init__(self, squash: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(1)
            self.conv1, self.conv2 = nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(6, 6, 3)
            self.fc = nn.Linear(6, 4)
        with torch.no_grad():  # scale up so that the squash saturates on some units
            self.conv1.weight.mul_(4)
        self.squash = squash
        self.double()

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.conv2(self.squash(self.conv1(x))))
        return self.fc(h.mean(dim=(2, 3)))


# name -> (the op, an equal op whose backward is the same and that no rule ever touches)
NOT_RECTIFIERS: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
    "nn.Hardtanh(-1, 1)": (nn.Hardtanh(-1.0, 1.0), lambda z: z.clamp(-1, 1)),
    "F.hardtanh default": (F.hardtanh, lambda z: z.clamp(-1, 1)),
    "nn.Hardtanh(-2, 0)": (nn.Hardtanh(-2.0, 0.0), lambda z: z.clamp(-2, 0)),
    "F.threshold(0.5, 0)": (
        lambda z: F.threshold(z, 0.5, 0.0),
        lambda z: torch.where(z > 0.5, z, torch.zeros_like(z)),
    ),
}


@pytest.mark.parametrize("method", RULES)
@pytest.mark.parametrize("name", list(NOT_RECTIFIERS))
def test_non_rectifier_keeps_its_gradient(method: str, name: str, x: Tensor) -> None:
    """``hardtanh(-1, 1)`` is no ReLU: its backward must stay the ordinary gradient, i.e.
    the map equals that of the same net written with an op the rule never rewrites
    (identical derivative off a null set of boundary values)."""
    op, equal = NOT_RECTIFIERS[name]
    images = x.repeat(1, 1, 3, 3)
    ours = st.explain(_WithHardtanh(op).eval(), images, method, target=2)
    reference = st.explain(_WithHardtanh(equal).eval(), images, method, target=2)
    saturated = (_WithHardtanh(op).conv1(images).abs() > 1).float().mean()
    assert 0.05 < saturated < 0.95  # the squash is active on some units, linear on others
    torch.testing.assert_close(ours.attributions, reference.attributions, rtol=1e-12, atol=1e-15)


def _clamped_tiny_cnn() -> nn.Module:
    return _Preprocessed(_tiny_cnn(), INPUT_CLAMPS["x.clamp(0, 1)"][0]).eval()


@pytest.mark.parametrize("method", [*RULES, "guided_grad_cam"])
def test_result_says_what_was_rewritten_and_what_was_left(method: str, unit_images: Tensor) -> None:
    """TinyCNN: a reused in-place nn.ReLU (twice) and an F.relu, behind an input clamp."""
    ex = st.explain(_clamped_tiny_cnn(), unit_images, method, target=0)
    assert dict(ex.rewritten) == {"relu": 3}
    assert ex.rule_applications == 3
    assert dict(ex.untouched_nonlinearities) == {"clamp(0, 1) (input)": 1}
    with pytest.raises(TypeError):
        ex.rewritten["relu"] = 0  # read-only


@pytest.mark.parametrize("method", RULES)
def test_hardtanh_is_listed_as_untouched(method: str, x: Tensor) -> None:
    ex = st.explain(_WithHardtanh(nn.Hardtanh(-1.0, 1.0)).eval(), x.repeat(1, 1, 3, 3), method)
    assert dict(ex.rewritten) == {"relu": 1}
    assert dict(ex.untouched_nonlinearities) == {"hardtanh(-1, 1)": 1}


@pytest.mark.parametrize("method", ["guided_backprop", "deconvnet", "guided_grad_cam"])
def test_real_models_report_their_rectifiers(method: str) -> None:
    """EfficientNet-Lite0 has 33 nn.ReLU6 (hardtanh(0, 6)); the Fashion CNN 3 nn.ReLU."""
    from seethrough.models.fashion_cnn import fashion_cnn

    lite0 = st.load_model("efficientnet-lite0")
    photo = lite0.preprocess(st.load_images(["sample:chelsea"]))
    ex = st.explain(lite0, photo, method)
    assert (dict(ex.rewritten), dict(ex.untouched_nonlinearities)) == ({"hardtanh(0, 6)": 33}, {})
    images = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    ex = st.explain(fashion_cnn(), images, method)
    assert (dict(ex.rewritten), dict(ex.untouched_nonlinearities)) == ({"relu": 3}, {})


@pytest.mark.parametrize("method", RULES)
def test_rectifiers_all_rewrites_the_input_clamp_too(method: str, unit_images: Tensor) -> None:
    """With ``"all"`` the input clamp passes only the positive part of its incoming
    gradient (the clamp is the identity there): the map is the net's map, rectified."""
    net = _tiny_cnn()
    ours = st.explain(_clamped_tiny_cnn(), unit_images, method, target=1, rectifiers="all")
    reference = st.explain(net, unit_images, method, target=1).attributions
    torch.testing.assert_close(ours.attributions, reference.clamp(min=0), rtol=0, atol=0)
    assert dict(ours.rewritten) == {"clamp(0, 1)": 1, "relu": 3}
    assert dict(ours.untouched_nonlinearities) == {}
    changed = (ours.attributions != reference).double().mean().item()
    assert 0.3 < changed < 0.7  # about half the map: every pixel with a negative value


def test_predicate_sees_each_call_in_order(unit_images: Tensor) -> None:
    seen: list[RectifierCall] = []

    def record(call: RectifierCall) -> bool:
        seen.append(call)
        return not call.on_input

    model = _clamped_tiny_cnn()
    ex = st.explain(model, unit_images[:1], "guided_backprop", rectifiers=record)
    assert [(c.op, c.module, c.on_input, c.index) for c in seen] == [
        ("clamp(0, 1)", "", True, 0),
        ("relu", "net.relu", False, 1),
        ("relu", "net.relu", False, 2),  # the reused module
        ("relu", "net", False, 3),  # F.relu in TinyCNN.forward
    ]
    auto = st.explain(model, unit_images[:1], "guided_backprop")
    torch.testing.assert_close(ex.attributions, auto.attributions, rtol=0, atol=0)


class _PlainLastReLU(nn.Module):
    """TinyCNN's forward with its last ReLU written as an op no rule touches."""

    def __init__(self, net: TinyCNN) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        n = self.net
        x = x.clamp(0, 1)
        x = n.relu(n.bn1(n.conv1(x)))
        x = n.relu(n.bn2(n.conv2(x)))
        z = n.conv3(x)
        x = torch.where(z > 0, z, torch.zeros_like(z))
        return n.fc(n.pool(x).flatten(1))


@pytest.mark.parametrize("method", RULES)
def test_module_names_choose_which_rectifiers(method: str, unit_images: Tensor) -> None:
    """``["net.relu"]`` rewrites the nn.ReLU module's calls only, not the F.relu that
    TinyCNN.forward calls itself: the map equals that of the net with that ReLU plain."""
    net = _tiny_cnn()
    model = _Preprocessed(net, INPUT_CLAMPS["x.clamp(0, 1)"][0]).eval()
    ours = st.explain(model, unit_images, method, target=3, rectifiers=["net.relu"])
    reference = st.explain(_PlainLastReLU(net).eval(), unit_images, method, target=3)
    torch.testing.assert_close(ours.attributions, reference.attributions, rtol=0, atol=0)
    assert dict(ours.rewritten) == {"relu": 2}
    assert dict(ours.untouched_nonlinearities) == {"clamp(0, 1) (input)": 1, "relu (excluded)": 1}
    assert ours.settings["rectifiers"] == ("net.relu",)
    everything = st.explain(model, unit_images, method, target=3, rectifiers=[""])
    assert dict(everything.rewritten) == {"clamp(0, 1)": 1, "relu": 3}


@pytest.mark.parametrize(
    ("rectifiers", "message"),
    [
        ("al", r"unknown rectifiers 'al'; did you mean 'all'.*valid: 'auto', 'all'"),
        ([], "rectifiers must be"),
        ([3], "rectifiers must be"),
        (["net.rellu"], r"not a module of the model; did you mean 'net.relu'"),
        (lambda call: "yes", "must return True or False, got 'yes'"),
    ],
)
def test_bad_rectifiers_are_refused_and_the_model_untouched(
    rectifiers: object, message: str, unit_images: Tensor
) -> None:
    model = _clamped_tiny_cnn()
    before = Snapshot.take(model, unit_images)
    with pytest.raises(InvalidOptionError, match=message):
        st.explain(model, unit_images, "guided_backprop", rectifiers=rectifiers)
    before.assert_unchanged(model, unit_images)


def test_rule_that_excludes_everything_raises() -> None:
    """An input clamp and a linear layer: nothing to rewrite, so no silent plain gradient."""
    model = _Preprocessed(
        nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).double(), INPUT_CLAMPS["x.clamp(0, 1)"][0]
    ).eval()
    x = torch.rand(2, 3, 2, 2, dtype=torch.float64)
    with pytest.raises(RuleNotAppliedError, match=r"clamp\(0, 1\) \(input\) ×1.*rectifiers='all'"):
        st.explain(model, x, "guided_backprop")
    assert st.explain(model, x, "guided_backprop", rectifiers="all").rule_applications == 1
    with pytest.raises(RuleNotAppliedError, match=r"relu \(excluded\) ×3"):
        st.explain(
            _clamped_tiny_cnn(), x.repeat(1, 1, 4, 4), "deconvnet", rectifiers=lambda c: False
        )


class _WeightFromParameter(nn.Module):
    """A conv whose weight is computed from its parameter (weight standardisation): in
    the guarded call parameters do not require grad, so the computed weight is a plain
    tensor — still a layer, not preprocessing."""

    def __init__(self, as_buffer: bool = False) -> None:
        super().__init__()
        w = torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        if as_buffer:
            self.register_buffer("weight", w)
        else:
            self.weight = nn.Parameter(w)

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight - self.weight.mean(dim=(1, 2, 3), keepdim=True)
        return F.relu(F.conv2d(x, w)).mean(dim=(2, 3))


def test_weights_computed_from_parameters_make_activations(unit_images: Tensor) -> None:
    ex = st.explain(_WeightFromParameter().eval(), unit_images, "guided_backprop")
    assert dict(ex.rewritten) == {"relu": 1}


def test_weights_in_buffers_are_the_documented_limitation(unit_images: Tensor) -> None:
    """Weights held as buffers look like preprocessing constants: refused, not silent,
    and ``rectifiers="all"`` is the way out."""
    model = _WeightFromParameter(as_buffer=True).eval()
    with pytest.raises(RuleNotAppliedError, match=r"relu \(input\) ×1"):
        st.explain(model, unit_images, "guided_backprop")
    ex = st.explain(model, unit_images, "guided_backprop", rectifiers="all")
    assert dict(ex.rewritten) == {"relu": 1}


def test_smoothgrad_passes_rectifiers_to_its_base(unit_images: Tensor) -> None:
    model = _clamped_tiny_cnn()
    options: dict[str, Any] = {"base": "guided_backprop", "samples": 2, "stdev": 0.0}
    auto = st.explain(model, unit_images, "smoothgrad", target=1, **options)
    every = st.explain(
        model, unit_images, "smoothgrad", target=1, base_options={"rectifiers": "all"}, **options
    )
    plain = st.explain(model, unit_images, "guided_backprop", target=1).attributions
    torch.testing.assert_close(auto.attributions, plain, rtol=0, atol=0)
    torch.testing.assert_close(every.attributions, plain.clamp(min=0), rtol=0, atol=0)


# name -> a ReLU-like op whose bounds 0 and 6 the test below hits exactly
AT_BOUNDS: dict[str, Callable[[Tensor], Tensor]] = {
    "clamp(min=0)": lambda z: z.clamp(min=0),
    "clamp(0, 6)": lambda z: z.clamp(0, 6),
    "clamp_min(0)": lambda z: torch.clamp_min(z, 0),
    "relu": F.relu,
    "relu6": F.relu6,
    "hardtanh(0, 6)": lambda z: F.hardtanh(z, 0.0, 6.0),
}


@pytest.mark.parametrize("name", list(AT_BOUNDS))
def test_local_derivative_at_the_bounds_is_pytorchs(name: str, x: Tensor) -> None:
    """Pre-activations exactly 0 and 6 that still depend on the input (unit j reads only
    pixel j, which is 0; biases 0 and 6): the guided "gradient" part must be PyTorch's
    derivative there, which for clamp changed between releases (recent ones pass
    nothing at the bounds, as relu and hardtanh do)."""
    op = AT_BOUNDS[name]
    torch.manual_seed(0)
    l1, l2 = nn.Linear(12, 8).double(), nn.Linear(8, 3).double()
    with torch.no_grad():
        l1.weight[:4] = torch.eye(4, 12, dtype=torch.float64) * 2
        l1.bias[:4] = torch.tensor([0.0, 0.0, 6.0, 6.0])
        l2.weight[1, :4] = 1.0  # a positive incoming gradient at those units
    x = x.clone()
    x.view(len(x), -1)[:, :4] = 0
    model = nn.Sequential(nn.Flatten(), l1, Lambda(op), l2).eval()
    ours = st.explain(model, x, "guided_backprop", target=1).attributions
    with torch.no_grad():
        z = l1(x.flatten(1))
        g = l2.weight[1].expand(len(x), -1).clamp(min=0) * local_derivative(op, z)
        expected = (g @ l1.weight).view_as(x)
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12)


class Lambda(nn.Module):
    def __init__(self, fn: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)
