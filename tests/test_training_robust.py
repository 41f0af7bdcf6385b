"""Robust training (seethrough.models.training): the PGD examples adversarial training makes
equal seethrough.robust.pgd's (hence torchattacks'), stay in the ε-ball and the valid range,
and never write a parameter's gradient; the first logged loss of each objective equals a hand
computation; bad options are refused; and the shipped robust zoo models are robust."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import seethrough as st
from helpers import tiny_inputs, tiny_model
from seethrough.data.fashion_mnist import FASHION_MEAN, FASHION_STD, load_fashion_mnist
from seethrough.errors import InvalidOptionError
from seethrough.models.training import (
    AdversarialTraining,
    GradientPenalty,
    adversarial_examples,
    train_classifier,
)
from seethrough.robust import pgd

VALID = ((0 - FASHION_MEAN) / FASHION_STD, (1 - FASHION_MEAN) / FASHION_STD)


@pytest.fixture(scope="module")
def fashion() -> tuple[torch.Tensor, torch.Tensor]:
    test = load_fashion_mnist("test")
    return test.inputs()[:24], test.labels[:24]


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_examples_equal_robust_pgd_without_random_start(norm: str, fashion) -> None:
    """Same steps as robust.pgd (eps in pixels through the normalisation), in float64: to
    1e-6 in input units: robust.pgd derives the valid range from the preprocessing's
    float32 constants (a 1e-7 difference). (In float32 the arithmetic written twice rounds
    differently, and an L2 step normalises gradients as small as 1e-10 on confident images,
    which amplifies it.)"""
    net = st.load_model("fashion-cnn")
    net.module.double()
    x, y = fashion[0].double(), fashion[1]
    eps = 0.1 if norm == "linf" else 1.5
    attack = AdversarialTraining(
        eps, steps=5, norm=norm, random_start=False, pixel_std=FASHION_STD, valid_range=VALID
    )
    ours = adversarial_examples(net.module, x, y, attack)
    theirs = pgd(
        net,
        x,
        labels=y,
        eps=eps,
        norm=norm,
        steps=5,
        random_start=False,
        eps_space="pixels",
        layout="contiguous",
    ).adversarial
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    assert not torch.equal(ours, x)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_examples_lie_in_the_ball_and_range_and_leave_gradients_alone(norm: str, fashion) -> None:
    net = st.load_model("fashion-cnn").module
    x, y = fashion
    eps = 0.2 if norm == "linf" else 2.0
    attack = AdversarialTraining(eps, steps=3, norm=norm, pixel_std=FASHION_STD, valid_range=VALID)
    before = [p.grad for p in net.parameters()]
    adv = adversarial_examples(net, x, y, attack, torch.Generator().manual_seed(3))
    assert [p.grad for p in net.parameters()] == before  # None: nothing written
    pixels = (adv - x) * FASHION_STD
    size = pixels.flatten(1).abs().amax(1) if norm == "linf" else pixels.flatten(1).norm(dim=1)
    assert float(size.max()) <= eps * (1 + 1e-5)
    assert float(adv.min()) >= VALID[0] - 1e-6 and float(adv.max()) <= VALID[1] + 1e-6
    again = adversarial_examples(net, x, y, attack, torch.Generator().manual_seed(3))
    assert torch.equal(adv, again)  # seeded
    # The attack works: the plain model loses most of these 24 images at ε = 0.2.
    with torch.no_grad():
        assert float((net(adv).argmax(1) == y).float().mean()) < 0.5


def test_first_loss_of_adversarial_training_is_the_loss_on_the_pgd_examples() -> None:
    model = tiny_model(seed=4)
    x = tiny_inputs(n=8, seed=2)
    y = torch.arange(8) % 3
    attack = AdversarialTraining(0.05, steps=2, random_start=False)
    with torch.no_grad():
        reference = tiny_model(seed=4)
    order = torch.randperm(8, generator=torch.Generator().manual_seed(5))
    # The examples are made in eval mode (running statistics), the step in train mode.
    adv = adversarial_examples(reference.eval(), x[order], y[order], attack)
    with torch.no_grad():
        expected = F.cross_entropy(reference.train()(adv), y[order])
        clean = F.cross_entropy(reference(x[order]), y[order])
    log = train_classifier(model, x, y, epochs=1, batch_size=8, seed=5, robustness=attack)
    assert log.losses[0] == pytest.approx(float(expected), rel=1e-9)
    assert log.losses[0] > float(clean)  # the examples are adversarial
    assert not model.training  # left in eval mode


def test_gradient_penalty_equals_the_hand_computed_double_backprop_loss() -> None:
    """Linear softmax model: ∇ₓ ℓ_i = Wᵀ(p_i − e_{y_i}); loss = CE + λ · mean ‖∇ₓ ℓ_i / std‖²."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 4)).double()
    x = torch.randn(6, 3, 2, 2, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    w, b = model[1].weight.detach().clone(), model[1].bias.detach().clone()
    p = torch.softmax(x.flatten(1) @ w.T + b, dim=1)
    grads = (p - F.one_hot(y, 4).double()) @ w / 0.5  # pixel gradient: input gradient / std
    ce = F.cross_entropy(x.flatten(1) @ w.T + b, y)
    expected = ce + 0.3 * grads.pow(2).sum(1).mean()
    log = train_classifier(
        model, x, y, epochs=1, batch_size=6, robustness=GradientPenalty(0.3, pixel_std=0.5)
    )
    assert log.losses[0] == pytest.approx(float(expected), rel=1e-9)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: AdversarialTraining(0.0), "eps must be a positive"),
        (lambda: AdversarialTraining(-0.1), "eps must be a positive"),
        (lambda: AdversarialTraining(0.1, steps=0), "steps must be a positive"),
        (lambda: AdversarialTraining(0.1, norm="l1"), "norm must be one of linf, l2"),
        (lambda: AdversarialTraining(0.1, step_size=0), "step_size must be positive"),
        (lambda: GradientPenalty(-1.0), "weight must be ≥ 0"),
        (lambda: GradientPenalty(float("nan")), "weight must be a finite number"),
    ],
)
def test_bad_options_are_refused(make, match: str) -> None:
    with pytest.raises(InvalidOptionError, match=match):
        make()


def test_unknown_robustness_objective_is_refused() -> None:
    with pytest.raises(InvalidOptionError, match="robustness must be AdversarialTraining"):
        train_classifier(
            tiny_model(), tiny_inputs(n=2), torch.tensor([0, 1]), epochs=1, robustness="pgd"
        )


@pytest.mark.slow
def test_shipped_robust_models_resist_pgd_where_the_plain_model_does_not() -> None:
    """The zoo's adversarially trained CNNs on 200 real test images, PGD-10 at their own ε
    (pixels): the plain model keeps < 10 % at ε = 0.1, the robust one > 40 % (its training
    record: 60.9 % with PGD-20 on 1,000 images); robust accuracy falls with ε for every model
    and clean accuracy falls with the training ε (the trade-off of Tsipras et al., 2019).
    The gradient-regularised model loads and stays accurate (≥ 0.85 clean)."""
    test = load_fashion_mnist("test")
    x, y = test.inputs()[:200], test.labels[:200]

    def robust_accuracy(name: str, eps: float) -> float:
        net = st.load_model(name)
        adv = pgd(net, x, labels=y, eps=eps, eps_space="pixels", steps=10, seed=0)
        with torch.no_grad():
            return float((net.module(adv.adversarial).argmax(1) == y).float().mean())

    def clean_accuracy(name: str) -> float:
        with torch.no_grad():
            return float((st.load_model(name).module(x).argmax(1) == y).float().mean())

    assert robust_accuracy("fashion-cnn", 0.1) < 0.1
    assert robust_accuracy("fashion-cnn-robust", 0.1) > 0.4
    assert robust_accuracy("fashion-cnn-pgd-0.2", 0.2) > 0.2
    assert robust_accuracy("fashion-cnn-pgd-0.05", 0.05) > robust_accuracy(
        "fashion-cnn-pgd-0.05", 0.1
    )
    cleans = [
        clean_accuracy(n) for n in ("fashion-cnn", "fashion-cnn-pgd-0.05", "fashion-cnn-pgd-0.2")
    ]
    assert cleans[0] > cleans[1] > cleans[2]
    assert clean_accuracy("fashion-cnn-gradreg") >= 0.85


def test_every_fashion_variant_loads_its_own_weights() -> None:
    from seethrough.models import FASHION_CNN_VARIANTS, MODELS

    seen: dict[str, torch.Tensor] = {}
    for name, key in FASHION_CNN_VARIANTS.items():
        assert name in MODELS
        net = st.load_model(name)
        assert net.name == name and net.labels is not None and len(net.labels) == 10
        weight = net.module.fc2.weight.detach()
        if key in seen:
            assert torch.equal(weight, seen[key])  # an alias: the same file
        assert all(not torch.equal(weight, w) for k, w in seen.items() if k != key)
        seen[key] = weight
    assert st.load_model("fashion-cnn-robust").source == "fashion-cnn-robust"
