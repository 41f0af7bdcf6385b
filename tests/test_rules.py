"""Guided backprop and deconvnet reach every rectifier, however it is written.

Reference: a hand-written backward pass through a 3-layer MLP (float64) that applies the
rule's formula at each activation — independent of autograd and of our rule code.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import seethrough as st
from seethrough.errors import RuleNotAppliedError

SLOPE = 0.1

# name -> (activation applied in forward, local derivative f'(x) used by the reference)
Activation = tuple[Callable[[nn.Module, Tensor], Tensor], Callable[[Tensor], Tensor]]
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
    "clamp(min=0)": (lambda m, z: z.clamp(min=0), lambda z: (z >= 0).double()),
    "torch.clamp(0, 6)": (
        lambda m, z: torch.clamp(z, 0, 6),
        lambda z: ((z >= 0) & (z <= 6)).double(),
    ),
    "clamp_min(0)": (lambda m, z: torch.clamp_min(z, 0), lambda z: (z >= 0).double()),
    "F.threshold(0, 0)": (lambda m, z: F.threshold(z, 0.0, 0.0), relu_grad),
    "nn.LeakyReLU": (lambda m, z: m.leaky(z), lambda z: torch.where(z > 0, 1.0, SLOPE).double()),
    "nn.PReLU": (lambda m, z: m.prelu(z), lambda z: torch.where(z > 0, 1.0, 0.25).double()),
}


class MLP(nn.Module):
    def __init__(self, activation: Callable[[nn.Module, Tensor], Tensor]) -> None:
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
