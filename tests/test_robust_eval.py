"""Robust evaluation (seethrough.robust.evaluate): clean and robust accuracy per ε on the real
Fashion CNN, agreement with direct PGD calls, the gradient-masking checks on a model that
masks its gradients, their statistics by hand, data as batches, invariants, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

import seethrough as st
from helpers import Snapshot, tiny_model
from seethrough.data.fashion_mnist import load_fashion_mnist
from seethrough.errors import InvalidInputError, InvalidOptionError
from seethrough.models import LoadedModel, Preprocess
from seethrough.reporting.serialize import to_jsonable
from seethrough.robust import GradientMaskingWarning, RobustnessReport, evaluate, pgd
from seethrough.robust.evaluate import _paired
from words_helpers import assert_round_trip


def _tiny_case(n: int = 7) -> tuple[LoadedModel, Tensor, Tensor]:
    """A tiny float64 CNN behind a LoadedModel (per-channel range), random pixels, labels
    = the model's own predictions except two rows (so some are misclassified clean)."""
    pre = Preprocess(size=12, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))
    net = LoadedModel(tiny_model(), pre, None, "tiny", "test")
    g = torch.Generator().manual_seed(4)
    pixels = torch.rand(n, 3, 12, 12, generator=g, dtype=torch.float64)
    x = (pixels - torch.tensor(pre.mean, dtype=torch.float64)[:, None, None]) / torch.tensor(
        pre.std, dtype=torch.float64
    )[:, None, None]
    with torch.no_grad():
        y = net.module(x).argmax(1)
    y[:2] = (y[:2] + 1) % 5
    return net, x, y


FAST = {"steps": 3, "layout": "contiguous", "large_eps": None}


# ----------------------------------------------------------------------- the real Fashion CNN


@pytest.fixture(scope="module")
def fashion_report() -> tuple[RobustnessReport, Tensor, Tensor]:
    test = load_fashion_mnist("test")
    x, y = test.inputs(0, 64), test.labels[:64]
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradientMaskingWarning)
        report = evaluate(
            st.load_model("fashion-cnn"), (x, y), eps=[0.05, 0.1, 0.2], eps_space="pixels",
            steps=10, seed=0,
        )  # fmt: skip
    return report, x, y


def test_fashion_cnn_robust_accuracy_per_eps(
    fashion_report: tuple[RobustnessReport, Tensor, Tensor],
) -> None:
    """64 real test images, PGD-10 L∞ in pixels (measured: clean 90.6 %, robust 23.4 %,
    3.1 %, 0 % at ε = 0.05, 0.1, 0.2; every masking check passes; 9 s on one thread).
    Asserted with margins."""
    report, _, _ = fashion_report
    assert report.n == 64
    assert report.clean_accuracy.estimate >= 0.85
    robust = [r.estimate for r in report.robust_accuracy]
    assert robust[1] <= 0.15 and robust[2] <= 0.05 and robust[0] < report.clean_accuracy.estimate
    assert robust == sorted(robust, reverse=True)
    for interval, outcome in zip(report.robust_accuracy, report.robust):
        assert interval.estimate == pytest.approx(float(outcome.double().mean()), abs=1e-12)
        assert interval.low <= interval.estimate <= interval.high and interval.n == 64
    assert not bool((report.robust & ~report.correct).any()), "robust implies correct clean"
    assert not bool((report.worst_case & ~report.robust).any())
    assert {c.name for c in report.checks} == {"more_steps", "larger_eps", "large_eps"}
    assert all(c.passed for c in report.checks) and not report.warnings
    large = next(c for c in report.checks if c.name == "large_eps")
    assert large.eps == pytest.approx(1.0, rel=1e-12) and large.accuracy <= 0.01
    assert report.settings.check_steps == 20 and report.settings.step_fraction == 0.25


def test_evaluate_equals_direct_pgd_on_the_correct_images(
    fashion_report: tuple[RobustnessReport, Tensor, Tensor],
) -> None:
    """An image is robust iff correct clean and not fooled by PGD with seed 0 + its index."""
    report, x, y = fashion_report
    net = st.load_model("fashion-cnn")
    rows = torch.nonzero(report.correct).flatten()
    attack = pgd(
        net, x[rows], eps=0.1, eps_space="pixels", steps=10, step_size=0.025, labels=y[rows],
        seed=rows.tolist(),
    )  # fmt: skip
    expected = torch.zeros(64, dtype=torch.bool)
    expected[rows] = ~attack.success
    assert torch.equal(report.robust[1], expected)


def test_report_in_words_round_trips(
    fashion_report: tuple[RobustnessReport, Tensor, Tensor],
) -> None:
    report, _, _ = fashion_report
    description = report.describe()
    assert_round_trip(description, to_jsonable(report))
    text = description.text()
    assert "of the 64 images correctly (95% bootstrap interval)" in text
    assert "ε = 0.1 in pixel units, 10 steps" in text
    assert all(f.claim != "unreliable" for f in description.findings)


# ----------------------------------------------------------------------- gradient masking


class Quantised(nn.Module):
    """A linear classifier behind an input quantiser: ``round`` has zero gradient almost
    everywhere, the textbook case of shattered gradients (Athalye et al., 2018)."""

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base

    def forward(self, x: Tensor) -> Tensor:
        return self.base(torch.round(x * 4) / 4)


def test_masked_gradients_fail_the_large_eps_and_transfer_checks() -> None:
    """Without a random start, PGD on the quantised model never moves: accuracy stays at
    100 % even at ε = 1, which reaches every input (large-ε check fails); the same attack
    made on the unquantised model and transferred fools many images (transfer check
    fails). More steps and larger ε change nothing (those checks pass)."""
    torch.manual_seed(0)
    base = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).double().eval()
    masked = Quantised(base).eval()
    x = torch.rand(60, 1, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        y = masked(x).argmax(1)
    with pytest.warns(GradientMaskingWarning) as caught:
        report = evaluate(
            masked, (x, y), eps=[0.1, 0.3], steps=5, random_start=False, valid_range=(0, 1),
            transfer_from=base, layout="contiguous",
        )  # fmt: skip
    failed = {(c.name, c.eps) for c in report.checks if not c.passed}
    assert ("large_eps", 1.0) in failed and ("transfer", 0.3) in failed
    assert not {name for name, _ in failed} & {"more_steps", "larger_eps"}
    assert report.masking_suspected
    assert [r.estimate for r in report.robust_accuracy] == [1.0, 1.0]
    transfer = next(c for c in report.checks if c.name == "transfer" and c.eps == 0.3)
    assert transfer.accuracy == 1.0 and transfer.bound < 0.8 and transfer.lost == 0
    assert report.worst_case_accuracy[1].estimate == pytest.approx(transfer.bound)
    assert len(caught) == len(report.warnings) == len(failed)
    assert {str(w.message) for w in caught} == set(report.warnings)
    description = report.describe()
    assert sum(f.claim == "unreliable" for f in description.findings) == len(failed)
    assert_round_trip(description, to_jsonable(report))


def test_masking_statistics_by_hand() -> None:
    """Exact one-sided McNemar: 9 images gained and 1 lost → P(X ≥ 9 | n = 10, ½) =
    11/1024; 3 gained, 3 lost → 42/64. Holm over the two: 2 · 11/1024, then max(that,
    42/64)."""
    a = np.zeros(30, dtype=bool)
    b = np.zeros(30, dtype=bool)
    a[:9] = True  # gained
    b[9:10] = True  # lost
    c = np.zeros(30, dtype=bool)
    d = np.zeros(30, dtype=bool)
    c[:3] = True
    d[3:6] = True
    first, second = _paired("more_steps", [(a, b, 0.1, None), (c, d, 0.2, None)], alpha=0.05)
    assert (first.gained, first.lost, second.gained, second.lost) == (9, 1, 3, 3)
    assert first.p_value == pytest.approx(2 * 11 / 1024, rel=1e-12) and not first.passed
    assert second.p_value == pytest.approx(42 / 64, rel=1e-12) and second.passed
    assert first.accuracy == pytest.approx(9 / 30) and first.bound == pytest.approx(1 / 30)


# ----------------------------------------------------------------------- data, invariants


def test_batches_of_a_loader_equal_one_tensor_pair() -> None:
    """Image i uses seed + i wherever it falls in the batches."""
    net, x, y = _tiny_case()
    whole = evaluate(net, (x, y), eps=[0.1, 0.3], **FAST)
    loader = DataLoader(TensorDataset(x, y), batch_size=3)
    seen: list[tuple[int, int | None]] = []
    batched = evaluate(
        net, loader, eps=[0.1, 0.3], progress=lambda d, t: seen.append((d, t)), **FAST
    )
    assert torch.equal(whole.robust, batched.robust)
    assert torch.equal(whole.worst_case, batched.worst_case)
    assert torch.equal(whole.correct, batched.correct)
    assert whole.robust_accuracy == batched.robust_accuracy
    assert seen == [(3, 7), (6, 7), (7, 7)]
    assert whole.clean_accuracy.estimate == pytest.approx(5 / 7)


def test_evaluate_leaves_model_inputs_and_rng_unchanged() -> None:
    net, x, y = _tiny_case()
    net.module.fc.weight.grad = torch.full_like(net.module.fc.weight, 0.5)
    source = tiny_model(seed=3)
    before = Snapshot.take(net.module, x)
    before_source = Snapshot.take(source)
    evaluate(net, (x, y), eps=0.2, transfer_from=source, **FAST)
    before.assert_unchanged(net.module, x)
    before_source.assert_unchanged(source)


def test_bad_input_gets_a_clear_error() -> None:
    net, x, y = _tiny_case()
    with pytest.raises(InvalidOptionError, match="eps must be non-negative"):
        evaluate(net, (x, y), eps=[0.1, -0.1])
    with pytest.raises(InvalidOptionError, match="eps is empty"):
        evaluate(net, (x, y), eps=[])
    with pytest.raises(InvalidOptionError, match="did you mean 'linf'"):
        evaluate(net, (x, y), eps=0.1, norm="lnf")
    with pytest.raises(InvalidOptionError, match="alpha must be in"):
        evaluate(net, (x, y), eps=0.1, alpha=1.5)
    with pytest.raises(InvalidInputError, match="data must be"):
        evaluate(net, x, eps=0.1)
    with pytest.raises(InvalidInputError, match="each batch of data must be"):
        evaluate(net, [x], eps=0.1)
    with pytest.raises(InvalidInputError, match="got 6 labels for 7 images"):
        evaluate(net, (x, y[:6]), eps=0.1)
    with pytest.raises(InvalidInputError, match="integer class indices"):
        evaluate(net, (x, y.double()), eps=0.1)
    with pytest.raises(InvalidInputError, match="at least 2 images"):
        evaluate(net, (x[:1], y[:1]), eps=0.1, **FAST)
    with pytest.warns(UserWarning, match="no valid input range"):
        evaluate(net.module, (x, y), eps=0.1, check_steps=False, **FAST)
