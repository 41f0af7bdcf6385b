"""Attacks (seethrough.robust.attacks): FGSM and PGD against torchattacks 3.5.1 and hand
computations, the ε-ball and the valid range, the generic invariants (model, input and RNG
untouched, batch = single rows, same seed same output), the real Fashion CNN, bad input."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
import torchattacks
from scipy import stats
from torch import Tensor, nn

import seethrough as st
from helpers import Failing, Snapshot, tiny_inputs, tiny_model
from seethrough.data.fashion_mnist import FASHION_MEAN, FASHION_STD, load_fashion_mnist
from seethrough.errors import InvalidInputError, InvalidOptionError, ModelStateError, TargetError
from seethrough.models import LoadedModel, Preprocess
from seethrough.reporting.serialize import to_jsonable
from seethrough.robust import AttackResult, fgsm, pgd
from words_helpers import assert_round_trip

BALL_SLACK = 1e-6
"""``x + δ − x`` differs from ``δ`` by the rounding of the addition (float32, |x| ≤ 3)."""


class Pixels(nn.Module):
    """The Fashion CNN taking pixels in [0, 1] (torchattacks' convention)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = st.load_model("fashion-cnn").module

    def forward(self, x: Tensor) -> Tensor:
        return self.net((x - FASHION_MEAN) / FASHION_STD)


@pytest.fixture(scope="module")
def fashion() -> tuple[nn.Module, Tensor, Tensor]:
    test = load_fashion_mnist("test")
    x = test.images[:8].float().div(255)[:, None]
    return Pixels().eval(), x, test.labels[:8]


def loaded(module: nn.Module, channels: int = 3) -> LoadedModel:
    """A LoadedModel around a tiny model: per-channel mean/std give per-channel ranges."""
    pre = Preprocess(
        size=12,
        mean=(0.4, 0.5, 0.6)[:channels],
        std=(0.2, 0.25, 0.3)[:channels],
        channels=channels,
    )
    return LoadedModel(module, pre, None, "tiny", "test")


def pixel_inputs(net: LoadedModel, n: int = 3, seed: int = 1) -> Tensor:
    """Preprocessed inputs of random pixels in [0, 1] (float64, inside the valid range)."""
    g = torch.Generator().manual_seed(seed)
    pixels = torch.rand(n, 3, 12, 12, generator=g, dtype=torch.float64)
    mean = torch.tensor(net.preprocess.mean, dtype=torch.float64)[:, None, None]
    std = torch.tensor(net.preprocess.std, dtype=torch.float64)[:, None, None]
    return (pixels - mean) / std


# ----------------------------------------------------------------------- oracles


@pytest.mark.parametrize(
    ("norm", "oracle", "eps"), [("linf", torchattacks.PGD, 0.1), ("l2", torchattacks.PGDL2, 1.5)]
)
@pytest.mark.parametrize("targeted", [False, True])
def test_pgd_equals_torchattacks_for_the_same_random_start(
    fashion: tuple[nn.Module, Tensor, Tensor], norm: str, oracle: type, eps: float, targeted: bool
) -> None:
    """Row i of ours draws its start from a generator seeded seed + i; torchattacks draws from
    the global RNG: seeding it with seed + i before a one-row call gives the same start. One
    row: bitwise. A batch: to 1e-6 (L∞ bitwise here; L2's batched convolutions round
    differently from single rows, 1.8e-7 measured)."""
    model, x, y = fashion
    goal = (y + 3) % 10 if targeted else y
    options = {"target": goal.tolist()} if targeted else {"labels": y}
    ours = pgd(
        model, x, eps=eps, norm=norm, steps=10, step_size=eps / 4, valid_range=(0, 1),
        seed=5, layout="contiguous", **options,
    )  # fmt: skip
    theirs_model = copy.deepcopy(model)
    rows = []
    for i in range(len(x)):
        torch.manual_seed(5 + i)
        attack = oracle(theirs_model, eps=eps, alpha=eps / 4, steps=10, random_start=True)
        if targeted:
            attack.set_mode_targeted_by_label(quiet=True)
        rows.append(attack(x[i : i + 1], goal[i : i + 1]))
        if i < 3:
            single = pgd(
                model, x[i : i + 1], eps=eps, norm=norm, steps=10, step_size=eps / 4,
                valid_range=(0, 1), seed=5 + i, target=goal[i : i + 1].tolist() if targeted
                else "true", labels=y[i : i + 1],
            )  # fmt: skip
            assert torch.equal(single.adversarial, rows[-1]), f"row {i} not bitwise"
    torch.testing.assert_close(ours.adversarial, torch.cat(rows), rtol=0, atol=1e-6)
    assert int(ours.success.sum()) > 0, "the comparison must include examples that succeed"


def test_pgd_without_random_start_equals_torchattacks_on_the_whole_batch(
    fashion: tuple[nn.Module, Tensor, Tensor],
) -> None:
    """No draw to align: the whole batch through torchattacks at once (it averages the
    loss over the batch, we sum it: the sign steps are the same)."""
    model, x, y = fashion
    ours = pgd(
        model, x, eps=0.1, steps=7, step_size=0.03, random_start=False, labels=y,
        valid_range=(0, 1), layout="contiguous",
    )  # fmt: skip
    attack = torchattacks.PGD(
        copy.deepcopy(model), eps=0.1, alpha=0.03, steps=7, random_start=False
    )
    torch.testing.assert_close(ours.adversarial, attack(x, y), rtol=0, atol=1e-6)


def test_fgsm_equals_torchattacks_and_a_hand_computation() -> None:
    """On a linear model the gradient of the cross-entropy is ``Wᵀ(softmax − onehot)``:
    FGSM is ``clip(x ± ε sign(Wᵀ(p − e_c)))`` by hand (float64)."""
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(2 * 3 * 3, 4)).double().eval()
    g = torch.Generator().manual_seed(2)
    x = torch.rand(5, 2, 3, 3, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0])
    w, b = linear[1].weight.detach().numpy(), linear[1].bias.detach().numpy()
    flat = x.reshape(5, -1).numpy()

    def hand(classes: np.ndarray, sign: float, eps: float) -> np.ndarray:
        logits = flat @ w.T + b
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        grad = (p - np.eye(4)[classes]) @ w
        return np.clip(flat + sign * eps * np.sign(grad), 0.0, 1.0).reshape(x.shape)

    ours = fgsm(linear, x, eps=0.07, labels=y, valid_range=(0, 1))
    np.testing.assert_array_equal(ours.adversarial.numpy(), hand(y.numpy(), 1.0, 0.07))
    targeted = fgsm(linear, x, eps=0.07, target=2, valid_range=(0, 1))
    np.testing.assert_array_equal(targeted.adversarial.numpy(), hand(np.full(5, 2), -1.0, 0.07))
    theirs = torchattacks.FGSM(copy.deepcopy(linear), eps=0.07)(x, y)
    assert torch.equal(ours.adversarial, theirs)


def test_random_starts_follow_their_distributions() -> None:
    """With a zero gradient PGD never moves: the adversarial image *is* the start. L∞:
    uniform in [−ε, ε] per element (Kolmogorov–Smirnov against U(−ε, ε)); L2 (torchattacks'
    draw): radius ε·u with u ~ U(0, 1), direction a normalised Gaussian."""

    class Flat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bias = nn.Parameter(torch.tensor([1.0, 0.0], dtype=torch.float64))

        def forward(self, x: Tensor) -> Tensor:
            return 0.0 * x.flatten(1)[:, :2] + self.bias

    x = torch.zeros(300, 1, 4, 4, dtype=torch.float64)
    y = torch.zeros(300, dtype=torch.long)
    box = (-np.inf, np.inf)
    flat = Flat().eval()
    linf = pgd(flat, x, eps=0.3, steps=2, labels=y, valid_range=box, seed=9).adversarial
    assert stats.kstest(linf.flatten().numpy(), stats.uniform(-0.3, 0.6).cdf).pvalue > 1e-3
    g = torch.Generator().manual_seed(9)  # row 0's start is exactly its generator's draw
    expected = torch.empty(1, 1, 4, 4, dtype=torch.float64).uniform_(-0.3, 0.3, generator=g)
    assert torch.equal(linf[:1], expected)
    l2 = pgd(flat, x, eps=0.3, norm="l2", steps=2, labels=y, valid_range=box).adversarial
    radius = l2.flatten(1).norm(dim=1).numpy() / 0.3
    assert stats.kstest(radius, stats.uniform(0, 1).cdf).pvalue > 1e-3
    assert radius.max() <= 1.0 + 1e-12


# ----------------------------------------------------------------------- the ball and the range


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("space", ["input", "pixels"])
def test_every_example_lies_in_the_ball_and_the_valid_range(norm: str, space: str) -> None:
    """Per-channel ranges from the preprocessing ((0 − mean)/std, (1 − mean)/std); in
    pixel units the ball is measured after multiplying each channel by its std."""
    net = loaded(tiny_model())
    x = pixel_inputs(net, n=6)
    eps = {"linf": 0.05, "l2": 0.8}[norm] * (1 if space == "pixels" else 4)
    result = pgd(net, x, eps=eps, norm=norm, eps_space=space, steps=8, target="predicted")
    mean = torch.tensor(net.preprocess.mean, dtype=torch.float64)[None, :, None, None]
    std = torch.tensor(net.preprocess.std, dtype=torch.float64)[None, :, None, None]
    adv = result.adversarial
    assert bool((adv >= -mean / std).all()) and bool((adv <= (1 - mean) / std).all())
    delta = (adv - x) * (std if space == "pixels" else 1.0)
    size = delta.flatten(1).abs().amax(1) if norm == "linf" else delta.flatten(1).norm(dim=1)
    assert bool((size <= eps + 1e-12).all()), size.max()
    torch.testing.assert_close(result.norms, size, rtol=0, atol=1e-12)
    assert bool((size > 0.5 * eps).any()), "the attack should use the ball"
    pixels = net.preprocess.invert(adv)  # a real image: in [0, 1] without clamping
    torch.testing.assert_close(pixels, adv * std + mean, rtol=0, atol=1e-12)


def test_pixel_units_equal_an_attack_on_the_pixels_themselves(
    fashion: tuple[nn.Module, Tensor, Tensor],
) -> None:
    """ε = 0.1 in pixels on the normalised model = ε = 0.1 on model ∘ normalise in [0, 1]."""
    model, x, y = fashion
    net = st.load_model("fashion-cnn")
    normalised = (x - FASHION_MEAN) / FASHION_STD
    ours = pgd(net, normalised, eps=0.1, eps_space="pixels", steps=5, labels=y, seed=3)
    direct = pgd(model, x, eps=0.1, steps=5, labels=y, seed=3, valid_range=(0, 1))
    torch.testing.assert_close(ours.adversarial * FASHION_STD + FASHION_MEAN,
                               direct.adversarial, rtol=0, atol=1e-5)  # fmt: skip
    assert torch.equal(ours.success, direct.success)


# ----------------------------------------------------------------------- invariants


def _prepared() -> tuple[nn.Module, list[int]]:
    """A model with the awkward state users have: a frozen layer, stale .grad, a hook."""
    model = tiny_model()
    model.conv1.weight.requires_grad_(False)
    model.fc.weight.grad = torch.full_like(model.fc.weight, 0.5)
    calls: list[int] = []
    model.fc.register_forward_hook(lambda m, i, o: calls.append(1))
    return model, calls


RUNS = {
    "fgsm": lambda m, x, **kw: fgsm(m, x, eps=0.2, target="predicted", **kw),
    "pgd_linf": lambda m, x, **kw: pgd(
        m, x, eps=0.2, steps=4, restarts=2, target="predicted", **kw
    ),
    "pgd_l2": lambda m, x, **kw: pgd(m, x, eps=1.0, norm="l2", steps=4, target=1, **kw),
}
BOX = {"valid_range": (-4.0, 4.0)}


@pytest.mark.parametrize("run", list(RUNS))
def test_success_leaves_model_input_and_rng_unchanged(run: str) -> None:
    model, calls = _prepared()
    x = tiny_inputs().requires_grad_(True)
    before = Snapshot.take(model, x)
    result = RUNS[run](model, x, **BOX)
    before.assert_unchanged(model, x)
    assert calls, "the user's hook keeps firing"
    assert isinstance(result, AttackResult)
    assert result.adversarial.dtype == x.dtype and not result.adversarial.requires_grad


@pytest.mark.parametrize("fail_on", [1, 2, 5])
@pytest.mark.parametrize("run", list(RUNS))
def test_error_in_forward_leaves_everything_unchanged(run: str, fail_on: int) -> None:
    inner, _ = _prepared()
    model = Failing(inner, fail_on).eval()
    x = tiny_inputs()
    before = Snapshot.take(model, x)
    with torch.no_grad():
        inside = Snapshot.take(model, x)
        try:
            RUNS[run](model, x, batch_size=1, **BOX)
        except RuntimeError as error:
            assert "boom inside forward" in str(error)  # noqa: PT017
        else:
            assert model.calls < fail_on
        inside.assert_unchanged(model, x)
    before.assert_unchanged(model, x)


@pytest.mark.parametrize("run", list(RUNS))
def test_bad_target_and_training_mode_leave_everything_unchanged(run: str) -> None:
    model, _ = _prepared()
    x = tiny_inputs()
    before = Snapshot.take(model, x)
    with pytest.raises(TargetError, match="out of range"):
        pgd(model, x, eps=0.1, target=7, **BOX)
    before.assert_unchanged(model, x)
    model.train()
    before = Snapshot.take(model, x)
    with pytest.raises(ModelStateError, match="training mode"):
        RUNS[run](model, x, **BOX)
    before.assert_unchanged(model, x)


@pytest.mark.parametrize("run", list(RUNS))
def test_batch_equals_single_rows_and_same_seed_same_output(run: str) -> None:
    """Row i of a batch with seed s = a one-row call with seed s + i; chunking does not
    matter; the same seed gives the same images bitwise; inside no_grad/inference_mode too."""
    model, _ = _prepared()
    x = tiny_inputs(n=3)
    batch = RUNS[run](model, x, seed=10, **BOX)
    for i in range(3):
        single = RUNS[run](model, x[i : i + 1], seed=10 + i, **BOX)
        torch.testing.assert_close(single.adversarial[0], batch.adversarial[i], rtol=1e-10,
                                   atol=1e-12)  # fmt: skip
        assert int(single.predicted[0]) == int(batch.predicted[i])
    again = RUNS[run](model, x, seed=10, **BOX)
    assert torch.equal(again.adversarial, batch.adversarial)
    chunked = RUNS[run](model, x, seed=10, batch_size=2, **BOX)
    torch.testing.assert_close(chunked.adversarial, batch.adversarial, rtol=1e-10, atol=1e-12)
    seeds = RUNS[run](model, x, seed=[10, 11, 12], **BOX)
    assert torch.equal(seeds.adversarial, batch.adversarial)
    with torch.no_grad():
        assert torch.equal(RUNS[run](model, x, seed=10, **BOX).adversarial, batch.adversarial)
    with torch.inference_mode():
        inside = RUNS[run](model, x.clone(), seed=10, **BOX).adversarial
    assert torch.equal(inside, batch.adversarial)


def test_a_different_seed_gives_a_different_start() -> None:
    model = tiny_model()
    x = tiny_inputs(n=1)
    a = pgd(model, x, eps=0.3, steps=1, target="predicted", seed=1, **BOX).adversarial
    b = pgd(model, x, eps=0.3, steps=1, target="predicted", seed=2, **BOX).adversarial
    assert not torch.allclose(a, b)


def test_restarts_keep_the_first_success_or_the_lowest_margin() -> None:
    """Each restart is an independent single-restart attack with the row's next draws:
    a row keeps restart r's example iff no earlier restart fooled it and r's margin is the
    lowest so far (or r fooled it)."""
    model = tiny_model()
    x = tiny_inputs(n=4)
    result = pgd(model, x, eps=0.15, steps=3, restarts=3, target="predicted", seed=0, **BOX)
    assert int(result.restart.max()) > 0, "choose ε so that some rows need a restart"
    one = pgd(model, x, eps=0.15, steps=3, restarts=1, target="predicted", seed=0, **BOX)
    first = result.restart == 0
    assert torch.equal(result.adversarial[first], one.adversarial[first])
    assert bool((result.margin <= one.margin + 1e-12).all())
    assert bool((result.success >= one.success).all())
    assert bool(((result.margin < 0) == result.success).all())


# ----------------------------------------------------------------------- torchattacks' state


def test_torchattacks_changes_the_model_state_and_the_rng_and_we_do_not() -> None:
    """torchattacks 3.5.1 (``Attack.__call__``): ``model.eval()`` before, ``model.train()``
    after only when the root was training — a frozen batch-norm comes back in training mode;
    nothing is restored when the attack raises (the model stays in eval mode); the random
    start consumes the global RNG. We refuse a training model without touching it, and leave
    an eval model and the RNG as they were, also on error."""
    model = tiny_model()
    model.train()
    model.bn1.eval()  # a frozen batch-norm, as in fine-tuning
    x, y = tiny_inputs(n=2), torch.tensor([0, 1])
    torchattacks.PGD(model, eps=0.1, alpha=0.05, steps=2)(x, y)
    assert model.bn1.training, "torchattacks put the frozen batch-norm in training mode"
    failing = Failing(tiny_model(), fail_on=2).train()
    with pytest.raises(RuntimeError, match="boom"):
        torchattacks.PGD(failing, eps=0.1, alpha=0.05, steps=2)(x, y)
    assert not failing.training, "torchattacks left the model in eval mode"
    fresh = tiny_model()  # (tiny_model seeds the global RNG itself)
    rng = torch.get_rng_state()
    torchattacks.PGD(fresh, eps=0.1, alpha=0.05, steps=2)(x, y)
    assert not torch.equal(rng, torch.get_rng_state()), "torchattacks used the global RNG"

    ours = tiny_model()
    ours.train()
    ours.bn1.eval()
    flags = {n: m.training for n, m in ours.named_modules()}
    with pytest.raises(ModelStateError):
        pgd(ours, x, eps=0.1, steps=2, labels=y, **BOX)
    assert flags == {n: m.training for n, m in ours.named_modules()}


# ----------------------------------------------------------------------- the real Fashion CNN


def test_pgd_on_the_real_fashion_cnn_drops_accuracy_far_below_clean() -> None:
    """200 real test images, PGD-10 L∞ ε = 0.1 in pixels: clean 92.0 %, robust 1.5 %, FGSM
    fools 80.5 % (measured; the shipped CNN is not adversarially trained). Asserted with
    margins: clean ≥ 85 %, robust ≤ 15 %; FGSM is weaker than PGD but fools most."""
    net = st.load_model("fashion-cnn")
    test = load_fashion_mnist("test")
    x, y = test.inputs(0, 200), test.labels[:200]
    with torch.no_grad():
        correct = net.module(x).argmax(1) == y
    attack = pgd(net, x, eps=0.1, eps_space="pixels", steps=10, labels=y, seed=0)
    clean = float(correct.float().mean())
    robust = float(((attack.predicted == y) & correct).float().mean())
    assert clean >= 0.85 and robust <= 0.15, (clean, robust)
    assert bool((attack.norms <= 0.1 + BALL_SLACK).all())
    assert bool((attack.margin[attack.success] < 0).all())
    fast = fgsm(net, x, eps=0.1, eps_space="pixels", labels=y)
    assert attack.success_rate >= fast.success_rate >= 0.5, (attack.success_rate, fast.success_rate)


def test_attack_result_in_words_round_trips() -> None:
    net = loaded(tiny_model())
    x = pixel_inputs(net)
    for result in (
        pgd(net, x, eps=2 / 255, eps_space="pixels", steps=3, target="predicted"),
        fgsm(net, x, eps=0.1, target=2),
    ):
        assert_round_trip(result.describe(), to_jsonable(result))
    text = result.describe().text()
    assert text.startswith("FGSM (L∞, ε = 0.1 in input units) moved")


# ----------------------------------------------------------------------- bad input


def test_bad_input_gets_a_clear_error() -> None:
    model, x = tiny_model(), tiny_inputs(n=4)
    y = torch.tensor([0, 1, 2, 3])
    with pytest.raises(InvalidOptionError, match="eps must be a non-negative"):
        pgd(model, x, eps=-0.1, labels=y, **BOX)
    with pytest.raises(InvalidOptionError, match=r"unknown norm 'lnf'; did you mean 'linf'"):
        pgd(model, x, eps=0.1, norm="lnf", labels=y, **BOX)
    with pytest.raises(InvalidOptionError, match="valid: linf, l2"):
        pgd(model, x, eps=0.1, norm="l1", labels=y, **BOX)
    with pytest.raises(TargetError, match="got 3 labels for 4 images"):
        pgd(model, x, eps=0.1, labels=y[:3], **BOX)
    with pytest.raises(TargetError, match="needs labels="):
        pgd(model, x, eps=0.1, **BOX)
    with pytest.raises(TargetError, match="not an attack target"):
        pgd(model, x, eps=0.1, target="top3", **BOX)
    with pytest.raises(InvalidOptionError, match="steps must be a positive integer"):
        pgd(model, x, eps=0.1, steps=0, labels=y, **BOX)
    with pytest.raises(InvalidOptionError, match="eps_space='pixels' needs"):
        pgd(model, x, eps=0.1, eps_space="pixels", labels=y, **BOX)
    with pytest.raises(InvalidOptionError, match="low < high"):
        pgd(model, x, eps=0.1, labels=y, valid_range=(1.0, 0.0))
    with pytest.raises(InvalidInputError, match="outside the valid range"):
        pgd(model, x, eps=0.1, labels=y, valid_range=(0.0, 1.0))
    with pytest.warns(UserWarning, match="no valid input range"):
        pgd(model, x, eps=0.1, steps=1, labels=y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pgd(model, x, eps=0.1, steps=1, labels=y, valid_range=(-np.inf, np.inf))


class Detached(nn.Module):
    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.fc = nn.Linear(3 * 12 * 12, 4).double()

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "detach":
            return self.fc(x.detach().flatten(1))
        if self.mode == "no_grad":
            with torch.no_grad():
                return self.fc(x.flatten(1))
        return self.fc.bias.expand(len(x), 4)  # the output does not depend on the input


@pytest.mark.parametrize("mode", ["detach", "no_grad", "unused"])
def test_a_model_without_input_gradients_is_refused(mode: str) -> None:
    model = Detached(mode).eval()
    x = tiny_inputs(n=2)
    before = Snapshot.take(model, x)
    with pytest.raises(InvalidInputError, match="no gradient with respect to its input"):
        pgd(model, x, eps=0.1, labels=torch.tensor([0, 1]), **BOX)
    before.assert_unchanged(model, x)


# ----------------------------------------------------------------------- CUDA (-m gpu)


@pytest.mark.gpu
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_cuda_gives_the_cpu_examples_and_leaves_state(norm: str) -> None:
    """Starts are drawn on the CPU, so the same seed gives the same start on any device;
    float64 keeps PGD's sign steps the same (1e-9). The model, the CPU and CUDA RNGs are
    untouched."""
    assert torch.cuda.is_available(), "gpu tests run only where CUDA is (select with -m gpu)"
    device = torch.device("cuda")
    model, x = tiny_model(), tiny_inputs(n=4)
    eps = 0.2 if norm == "linf" else 1.0
    options = {"eps": eps, "norm": norm, "steps": 5, "restarts": 2, "target": "predicted"}
    cpu = pgd(model, x, **options, **BOX)
    model_cuda, x_cuda = model.to(device), x.to(device)
    before = Snapshot.take(model_cuda, x_cuda)
    cuda_rng = torch.cuda.get_rng_state(device)
    gpu = pgd(model_cuda, x_cuda, **options, **BOX)
    before.assert_unchanged(model_cuda, x_cuda)
    assert torch.equal(cuda_rng, torch.cuda.get_rng_state(device))
    assert gpu.adversarial.device.type == "cuda"
    torch.testing.assert_close(gpu.adversarial.cpu(), cpu.adversarial, rtol=0, atol=1e-9)
    assert torch.equal(gpu.success.cpu(), cpu.success)
