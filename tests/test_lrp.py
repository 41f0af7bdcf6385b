"""LRP rules, composites and the engine (issue 17.1).

References, none of which calls our rule code:

- hand-computed values: every rule on a tiny float64 MLP, worked out here from the rule's
  formula in matrix form with explicit sums over ``i`` and ``j``;
- Zennit 0.4.6 on the same network written with modules (``test_lrp_oracle.py`` for the
  torchvision models);
- conservation: ``Σ relevance = score`` for rules that conserve.
"""

from __future__ import annotations

import copy
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import seethrough as st
from helpers import Snapshot, tiny_inputs, tiny_model
from seethrough.core.relevance import (
    AlphaBeta,
    Composite,
    Epsilon,
    Flat,
    Gamma,
    LayerCall,
    Norm,
    Pass,
    RelevanceRule,
    WSquare,
    ZBox,
    ZPlus,
    make_composite,
)
from seethrough.errors import (
    InvalidInputError,
    InvalidOptionError,
    NonFiniteError,
    RuleNotAppliedError,
)

EPS2 = 0.01  # the ε of the top layer in the hand-computed net


class MLP(nn.Module):
    """``x → fc1 → ReLU → fc2``, float64."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.fc1 = nn.Linear(4, 3).double()
        self.fc2 = nn.Linear(3, 2).double()
        with torch.no_grad():
            self.fc1.weight.copy_(torch.randn(3, 4, generator=g, dtype=torch.float64))
            self.fc1.bias.copy_(torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64))
            self.fc2.weight.copy_(torch.randn(2, 3, generator=g, dtype=torch.float64))
            self.fc2.bias.copy_(torch.tensor([0.05, -0.1], dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def stab(z: float, eps: float = 1e-6) -> float:
    return z + eps if z >= 0 else z - eps


def top_relevance(net: MLP, x: Tensor, target: int) -> tuple[Tensor, list[float]]:
    """``R`` at the hidden units (ε rule with ``EPS2`` on fc2, ReLU passes it), per formula."""
    x = x.flatten()
    a = (x @ net.fc1.weight.T + net.fc1.bias).detach()
    h = a.clamp(min=0)
    w2, b2 = net.fc2.weight.detach(), net.fc2.bias.detach()
    out = h @ w2.T + b2
    r_out = [0.0, 0.0]
    r_out[target] = float(out[target])
    r_h = torch.zeros(3, dtype=torch.float64)
    for i in range(3):
        for j in range(2):
            zj = float((h * w2[j]).sum() + b2[j])
            r_h[i] += float(h[i] * w2[j, i]) / stab(zj, EPS2) * r_out[j]
    return r_h, r_out


def hand(rule: str, net: MLP, x: Tensor, target: int, low: Tensor, high: Tensor) -> Tensor:
    """The relevance of the 4 inputs with ``rule`` on fc1, from the formula."""
    x = x.flatten()
    r, _ = top_relevance(net, x, target)
    w, b = net.fc1.weight.detach(), net.fc1.bias.detach()
    out = torch.zeros(4, dtype=torch.float64)
    for j in range(3):
        zij = [float(x[i] * w[j, i]) for i in range(4)]
        if rule == "epsilon":
            zj = stab(sum(zij) + float(b[j]), 0.1)
            shares = [z / zj for z in zij]
        elif rule == "gamma":
            wg = [float(w[j, i] + 0.5 * max(w[j, i], 0)) for i in range(4)]
            zg = [float(x[i]) * wg[i] for i in range(4)]
            shares = [z / stab(sum(zg) + float(b[j] + 0.5 * max(b[j], 0))) for z in zg]
        elif rule in ("alpha2beta1", "zplus"):
            alpha, beta = (2.0, 1.0) if rule == "alpha2beta1" else (1.0, 0.0)
            pos = [max(z, 0.0) for z in zij]
            neg = [min(z, 0.0) for z in zij]
            zp = stab(sum(pos) + max(float(b[j]), 0.0))
            zn = stab(sum(neg) + min(float(b[j]), 0.0))
            shares = [alpha * p / zp - beta * n / zn for p, n in zip(pos, neg)]
        elif rule == "zbox":
            zb = [
                zij[i]
                - float(low[i]) * max(float(w[j, i]), 0)
                - float(high[i]) * min(float(w[j, i]), 0)
                for i in range(4)
            ]
            shares = [z / stab(sum(zb)) for z in zb]
        elif rule == "flat":
            shares = [1.0 / stab(4.0)] * 4
        elif rule == "wsquare":
            sq = [float(w[j, i]) ** 2 for i in range(4)]
            shares = [s / stab(sum(sq) + float(b[j]) ** 2) for s in sq]
        else:
            raise AssertionError(rule)
        for i in range(4):
            out[i] += shares[i] * float(r[j])
    return out


LOW = torch.tensor([-1.0, -2.0, -1.5, -3.0], dtype=torch.float64)
HIGH = torch.tensor([2.0, 1.0, 2.5, 3.0], dtype=torch.float64)
RULES = {
    "epsilon": Epsilon(0.1),
    "gamma": Gamma(0.5),
    "alpha2beta1": AlphaBeta(2.0, 1.0),
    "zplus": ZPlus(),
    "zbox": ZBox(LOW.view(1, 4), HIGH.view(1, 4)),
    "flat": Flat(),
    "wsquare": WSquare(),
}


@pytest.mark.parametrize("rule", list(RULES))
def test_each_rule_equals_its_formula_worked_out_by_hand(rule: str) -> None:
    net = MLP().eval()
    x = torch.tensor([[0.7, -1.2, 0.4, 1.5], [-0.3, 0.8, 1.1, -0.6]], dtype=torch.float64)
    x = x.view(2, 4, 1, 1)
    composite = Composite("hand", (("fc1", RULES[rule]), ("fc2", Epsilon(EPS2))))
    targets = [0, 1]
    ex = st.explain(net, x, "lrp", target=targets, composite=composite)
    expected = torch.stack([hand(rule, net, x[n], targets[n], LOW, HIGH) for n in range(2)])
    torch.testing.assert_close(ex.attributions.flatten(1), expected, rtol=1e-12, atol=1e-14)
    fired = Counter({"activation: Pass": 1, "linear: Epsilon": 1})
    fired[f"linear: {RULES[rule].name}"] += 1
    assert dict(ex.rules) == dict(fired)


class Residual(nn.Module):
    """Two branches added, global mean pooling: the sum splits in proportion to the summands."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.a = nn.Conv2d(2, 3, 3, padding=1).double()
        self.b = nn.Conv2d(2, 3, 1).double()
        self.fc = nn.Linear(3, 2).double()

    def forward(self, x: Tensor) -> Tensor:
        s = F.relu(self.a(x)) + F.relu(self.b(x))
        return self.fc(s.mean((2, 3)))


def test_a_sum_and_a_mean_split_relevance_in_proportion_worked_out_by_hand() -> None:
    """Norm at ``s = p + q`` and at ``m = mean(s)``: ``R_p = p / (p + q) · R_s`` and
    ``R_s = s / (n · m) · R_m``, with Zennit's stabiliser; checked at the branch outputs."""
    net = Residual().eval()
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    seen: dict[str, Tensor] = {}

    def capture(name: str):  # type: ignore[no-untyped-def]
        def hook(module: nn.Module, args: tuple[Tensor, ...], out: Tensor) -> None:
            seen[name + "_out"] = out.detach()
            out.register_hook(lambda g: seen.__setitem__(name, g))

        return hook

    handles = [net.a.register_forward_hook(capture("a")), net.b.register_forward_hook(capture("b"))]
    eps = 1e-9
    rule = RelevanceRule(make_composite("epsilon", epsilon=eps), net)
    leaf = x.clone().requires_grad_()
    with rule:
        out = net(leaf)
    score = out[0, 1]
    torch.autograd.grad(score * score.detach(), leaf)  # seed: onehot × logit
    rule.check()
    for h in handles:
        h.remove()
    # by hand: ε on fc, Norm (stabiliser ε) at the mean and at the sum, Pass at the ReLUs
    p, q = seen["a_out"].clamp(min=0), seen["b_out"].clamp(min=0)
    s = p + q
    m = s.mean((2, 3))
    w, b = net.fc.weight.detach(), net.fc.bias.detach()
    z = float(m[0] @ w[1] + b[1])
    r_m = m * w[1] / stab(z, eps) * z
    r_s = s / 16 * (r_m / torch.where(m >= 0, m + eps, m - eps))[:, :, None, None]
    share = r_s / torch.where(s >= 0, s + eps, s - eps)
    torch.testing.assert_close(seen["a"], p * share, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(seen["b"], q * share, rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------- conservation


def test_conservation_on_a_bias_free_net_is_exact_as_epsilon_goes_to_zero() -> None:
    """With no bias anywhere and ε → 0 every rule of the ε composite conserves: Σ R = score."""
    model = bias_free(tiny_model())
    x = tiny_inputs()
    ex = st.explain(model, x, "lrp", composite=make_composite("epsilon", epsilon=1e-12))
    sums = ex.attributions.flatten(1).sum(1)
    torch.testing.assert_close(sums, ex.scores, rtol=1e-9, atol=0)
    torch.testing.assert_close(ex.conservation, sums / ex.scores, rtol=1e-12, atol=0)


def test_bias_false_keeps_the_bias_out_of_the_denominator_worked_out_by_hand() -> None:
    net = MLP().eval()
    x = torch.tensor([[0.7, -1.2, 0.4, 1.5]], dtype=torch.float64).view(1, 4, 1, 1)
    composite = Composite("nobias", (("fc1", Epsilon(0.0, bias=False)), ("fc2", Epsilon(EPS2))))
    ex = st.explain(net, x, "lrp", target=0, composite=composite)
    r, _ = top_relevance(net, x[0], 0)
    w, v = net.fc1.weight.detach(), x.flatten()
    expected = torch.zeros(4, dtype=torch.float64)
    for j in range(3):
        zj = float((v * w[j]).sum())
        for i in range(4):
            expected[i] += float(v[i] * w[j, i]) / zj * float(r[j])
    torch.testing.assert_close(ex.attributions.flatten(), expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(ex.attributions.sum(), r.sum(), rtol=1e-12, atol=0)


# ---------------------------------------------------------------- canonization


def merged_copy(model: nn.Module, pairs: list[tuple[str, str]]) -> nn.Module:
    """A deep copy with each batch norm folded into its conv by hand (module surgery)."""
    copied = copy.deepcopy(model)
    with torch.no_grad():
        for conv_name, bn_name in pairs:
            conv, bn = copied.get_submodule(conv_name), copied.get_submodule(bn_name)
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            conv.weight.mul_(scale[:, None, None, None])
            conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
            parent, _, leaf = bn_name.rpartition(".")
            setattr(copied.get_submodule(parent) if parent else copied, leaf, nn.Identity())
    return copied.eval()


def test_batch_norm_is_folded_exactly_and_the_model_is_untouched() -> None:
    model = tiny_model()  # batch norms with non-trivial statistics, default eps
    x = tiny_inputs()
    before = Snapshot.take(model, x)
    ours = st.explain(model, x, "lrp", target=1)
    before.assert_unchanged(model, x)
    folded = merged_copy(model, [("conv1", "bn1"), ("conv2", "bn2")])
    reference = st.explain(folded, x, "lrp", target=1, canonize=False)
    torch.testing.assert_close(ours.attributions, reference.attributions, rtol=1e-10, atol=1e-13)
    assert ours.rules["batch_norm: merged"] == 2
    unfolded = st.explain(model, x, "lrp", target=1, canonize=False)
    assert unfolded.rules["batch_norm: Epsilon"] == 2
    assert not torch.allclose(unfolded.attributions, ours.attributions, rtol=1e-3)


def bias_free(model: nn.Module) -> nn.Module:
    """A copy with every bias zero (conv/linear biases, batch-norm mean and shift): then
    the ε rule with ε → 0 conserves at every layer (Montavon et al., 2019)."""
    copied = copy.deepcopy(model)
    with torch.no_grad():
        for m in copied.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.zero_()
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.zero_()
                m.bias.zero_()
    return copied


def test_a_hook_on_a_folded_conv_sees_the_merged_output_and_its_relevance() -> None:
    """The contract concept relevance relies on (see core/relevance.py): the conv's hook
    sees ``bn(conv(x))``, and the gradient at that output is the relevance there, which
    (bias-free, ε → 0) sums to the score at every layer."""
    model = bias_free(tiny_model())
    x = tiny_inputs()
    seen: dict[str, Tensor] = {}

    def hook(module: nn.Module, args: tuple[Tensor, ...], out: Tensor) -> None:
        seen["out"] = out.detach().clone()
        out.register_hook(lambda g: seen.__setitem__("grad", g))

    handle = model.conv2.register_forward_hook(hook)
    rule = RelevanceRule(make_composite("epsilon", epsilon=1e-12), model)
    leaf = x.clone().requires_grad_()
    with rule:
        out = model(leaf)
    score = out[:, 2]
    (grad,) = torch.autograd.grad((score * score.detach()).sum(), leaf)
    rule.check()
    handle.remove()
    with torch.no_grad():
        h = model.relu(model.bn1(model.conv1(x)))
        expected = model.bn2(model.conv2(h))
    torch.testing.assert_close(seen["out"], expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(seen["grad"].flatten(1).sum(1), score.detach(), rtol=1e-9, atol=0)
    torch.testing.assert_close(grad.flatten(1).sum(1), score.detach(), rtol=1e-9, atol=0)


def test_a_masking_tensor_hook_propagates_only_the_kept_channel() -> None:
    model = tiny_model()
    x = tiny_inputs(n=1)

    def run(mask: Tensor | None) -> Tensor:
        def hook(module: nn.Module, args: tuple[Tensor, ...], out: Tensor) -> None:
            if mask is not None:
                out.register_hook(lambda g: g * mask)

        handle = model.conv3.register_forward_hook(hook)
        rule = RelevanceRule("epsilon_plus", model)
        leaf = x.clone().requires_grad_()
        with rule:
            out = model(leaf)
        (grad,) = torch.autograd.grad(out[0, 0], leaf)
        handle.remove()
        return grad

    channels = [torch.zeros(1, 8, 1, 1, dtype=torch.float64) for _ in range(8)]
    for c, m in enumerate(channels):
        m[0, c] = 1.0
    parts = [run(m) for m in channels]
    torch.testing.assert_close(sum(parts), run(None), rtol=1e-10, atol=1e-13)


def test_a_folded_output_used_elsewhere_raises_and_canonize_false_works() -> None:
    class Tap(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1).double()
            self.bn = nn.BatchNorm2d(4).double()
            self.fc = nn.Linear(4, 2).double()

        def forward(self, x: Tensor) -> Tensor:
            y = self.conv(x)
            z = F.relu(self.bn(y)) + F.relu(y)  # the conv output is used besides its batch norm
            return self.fc(z.mean((2, 3)))

    model = Tap().eval()
    x = tiny_inputs(n=2)
    before = Snapshot.take(model, x)
    with pytest.raises(
        RuleNotAppliedError,
        match=r"output of 'conv' is used after its batch norm 'bn'.*canonize=False",
    ):
        st.explain(model, x, "lrp")
    before.assert_unchanged(model, x)
    ex = st.explain(model, x, "lrp", canonize=False)
    assert ex.rules["batch_norm: Epsilon"] == 1


# ---------------------------------------------------------------- no rule → raise


class Gated(nn.Module):
    """Squeeze-and-excitation style gate: a product of two activations."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1).double()
        self.gate = nn.Linear(4, 4).double()
        self.fc = nn.Linear(4, 2).double()

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.conv(x))
        g = torch.sigmoid(self.gate(h.mean((2, 3))))
        return self.fc((h * g[:, :, None, None]).mean((2, 3)))


class Normed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 6).double()
        self.norm = nn.LayerNorm(6).double()
        self.fc2 = nn.Linear(6, 2).double()

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.relu(self.norm(self.fc1(x.flatten(1)))))


@pytest.mark.parametrize(
    ("model", "shape", "named"),
    [
        (Gated, (2, 3, 6, 6), r"mul of two activations in the model's own forward ×1"),
        (Normed, (2, 4, 1, 1), r"layer_norm in 'norm' ×1"),
    ],
)
def test_an_op_without_a_rule_raises_naming_it_and_leaves_the_model(
    model: type[nn.Module], shape: tuple[int, ...], named: str
) -> None:
    net = model().eval()
    x = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    before = Snapshot.take(net, x)
    with pytest.raises(RuleNotAppliedError, match=named):
        st.explain(net, x, "lrp", composite="epsilon")
    before.assert_unchanged(net, x)


def test_an_unused_op_without_a_rule_does_not_raise() -> None:
    class Logs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(4, 3).double(), nn.Linear(3, 2).double()

        def forward(self, x: Tensor) -> Tensor:
            h = F.relu(self.fc1(x.flatten(1)))
            self.seen = F.layer_norm(h, (3,))  # computed, never used for the output
            return self.fc2(h)

    x = torch.randn(2, 4, 1, 1, dtype=torch.float64)
    ex = st.explain(Logs().eval(), x, "lrp", composite="epsilon")
    assert ex.rules["linear: Epsilon"] == 2


def test_a_model_without_layers_raises() -> None:
    class Nothing(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return x.flatten(1)[:, :3] * 2.0

    with pytest.raises(RuleNotAppliedError, match="reached no conv or linear layer"):
        st.explain(Nothing().eval(), tiny_inputs(), "lrp")


def test_unknown_names_and_bad_options_raise_with_suggestions() -> None:
    model, x = tiny_model(), tiny_inputs()
    with pytest.raises(
        InvalidOptionError,
        match=r"unknown composite 'epsilon_plus_flt'.*did you mean 'epsilon_plus_flat'",
    ):
        st.explain(model, x, "lrp", composite="epsilon_plus_flt")
    with pytest.raises(
        InvalidOptionError, match=r"'conv4', which matches no module.*did you mean .*'conv3'"
    ):
        st.explain(model, x, "lrp", composite=Composite("mine", (("conv4", Gamma()),)))
    with pytest.raises(
        InvalidOptionError, match=r"'convv', which matches no module.*did you mean 'conv'"
    ):
        st.explain(model, x, "lrp", composite=Composite("mine", (("convv", Gamma()),)))
    with pytest.raises(InvalidOptionError, match="Gamma cannot apply to 'activation' ops"):
        Composite("bad", (("activation", Gamma()),))
    with pytest.raises(InvalidOptionError, match="alpha - beta = 1"):
        AlphaBeta(2.0, 2.0)
    with pytest.raises(InvalidOptionError, match="has no rule that takes 'gamma'"):
        st.explain(model, x, "lrp", composite="epsilon_plus", gamma=0.5)
    with pytest.raises(InvalidOptionError, match=r"needs low and high.*LoadedModel"):
        st.explain(model, x, "lrp", composite="epsilon_gamma_box")
    with pytest.raises(InvalidOptionError, match="set them in the rules of your Composite"):
        st.explain(model, x, "lrp", composite=Composite("mine", (("conv", Gamma()),)), epsilon=0.1)


def test_selectors_by_glob_and_predicate() -> None:
    model, x = tiny_model(), tiny_inputs()
    by_glob = Composite("g", (("conv[12]", Gamma(0.5)), ("conv", Epsilon()), ("linear", Epsilon())))
    seen: list[LayerCall] = []

    def third(call: LayerCall) -> bool:
        seen.append(call)
        return call.module == "conv3"

    by_predicate = Composite("p", ((third, Epsilon()), ("conv", Gamma(0.5)), ("linear", Epsilon())))
    a = st.explain(model, x, "lrp", composite=by_glob)
    b = st.explain(model, x, "lrp", composite=by_predicate)
    torch.testing.assert_close(a.attributions, b.attributions, rtol=1e-12, atol=1e-15)
    assert dict(a.rules)["conv: Gamma"] == 2 and dict(a.rules)["conv: Epsilon"] == 1
    convs = [c for c in seen if c.kind == "conv"]
    assert [(c.module, c.index, c.first) for c in convs[:3]] == [
        ("conv1", 0, True),
        ("conv2", 1, False),
        ("conv3", 2, False),
    ]


def test_box_bounds_come_from_a_loaded_models_preprocessing() -> None:
    net = st.load_model("efficientnet-lite0")
    x = net.preprocess(st.load_images(["sample:chelsea"]))
    mean = torch.tensor(net.preprocess.mean, dtype=torch.float64)
    std = torch.tensor(net.preprocess.std, dtype=torch.float64)
    derived = st.explain(net, x, "lrp", composite="epsilon_gamma_box")
    given = st.explain(
        net.module,
        x,
        "lrp",
        composite="epsilon_gamma_box",
        low=(0 - mean) / std,
        high=(1 - mean) / std,
    )
    torch.testing.assert_close(derived.attributions, given.attributions, rtol=0, atol=0)
    assert derived.rules["conv: ZBox"] == 1 and derived.rules["conv: Gamma"] == 48
    shifted = st.explain(net.module, x, "lrp", composite="epsilon_gamma_box", low=-1.0, high=1.0)
    assert not torch.allclose(shifted.attributions, derived.attributions, rtol=1e-2)


def test_pass_and_norm_are_the_defaults_of_a_custom_composite() -> None:
    model, x = tiny_model(), tiny_inputs()
    mine = Composite("mine", (("first", Flat()), ("conv", ZPlus()), ("linear", Epsilon())))
    named = make_composite("epsilon_plus_flat")
    a = st.explain(model, x, "lrp", composite=mine)
    b = st.explain(model, x, "lrp", composite=named)
    torch.testing.assert_close(a.attributions, b.attributions, rtol=0, atol=0)
    assert mine.rules[-4:] == (
        ("activation", Pass()),
        ("sum", Norm()),
        ("avg_pool", Norm()),
        ("batch_norm", Epsilon()),
    )


def test_zbox_on_a_layer_that_does_not_see_the_input_raises() -> None:
    class Late(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1, dtype=torch.float64))
            self.fc = nn.Linear(4, 2).double()

        def forward(self, x: Tensor) -> Tensor:
            return self.fc(x.flatten(1) * self.scale)

    with pytest.raises(
        InvalidInputError, match="box rule needs the first layer 'fc' to see the model input"
    ):
        st.explain(
            Late().eval(),
            torch.randn(1, 4, 1, 1, dtype=torch.float64),
            "lrp",
            composite="epsilon_gamma_box",
            low=-1.0,
            high=1.0,
        )


def test_a_vanishing_denominator_raises_with_the_fix_named() -> None:
    """ε = 0: a dead unit's 0/0 makes the map NaN; the error says which option to change,
    and a method without such options keeps the generic message."""
    model, x = tiny_model(), tiny_inputs(n=3)
    with pytest.raises(NonFiniteError, match=r"raise epsilon \(e\.g\. epsilon=1e-3\)"):
        st.explain(model, x, st.Lrp(composite="epsilon", epsilon=0.0), target=1)
    finite = st.explain(model, x, st.Lrp(composite="epsilon", epsilon=1e-3), target=1)
    assert bool(torch.isfinite(finite.attributions).all())
    assert st.Gradient().nonfinite_hint() == ""
