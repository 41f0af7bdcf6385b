"""ROAR (Hooker et al., 2019) on synthetic data whose label sits in known pixels: an oracle
ranking must drop retrained accuracy to chance where a random ranking barely moves it;
ties are broken by the seed; the explained model and the data come back unchanged."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from helpers import Snapshot
from seethrough.attribution import make_method
from seethrough.errors import InvalidInputError, InvalidOptionError
from seethrough.models.training import accuracy, train_classifier
from seethrough.reporting.serialize import roar_record, to_jsonable
from seethrough.trust import roar
from seethrough.trust.roar import RANDOM, tie_broken_ranks

SIZE = 8
CORNERS = ((0, 0), (0, SIZE - 2), (SIZE - 2, 0), (SIZE - 2, SIZE - 2))
TRAIN: dict[str, Any] = {"epochs": 5, "lr": 0.05}


def corner_data(n: int, seed: int, amplitude: float = 3.0) -> tuple[Tensor, Tensor, Tensor]:
    """Gaussian noise images (N, 1, 8, 8); a 2×2 patch in one random corner carries the
    label (+amplitude for class 1, −amplitude for class 0). Returns x, y and the patch
    mask — the true signal, independent of the label."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, SIZE, SIZE, generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    corner = torch.randint(0, len(CORNERS), (n,), generator=g)
    mask = torch.zeros(n, 1, SIZE, SIZE, dtype=torch.bool)
    for i, (r, c) in enumerate(CORNERS):
        mask[corner == i, :, r : r + 2, c : c + 2] = True
    sign = (2.0 * y - 1.0)[:, None, None, None]
    return torch.where(mask, x + amplitude * sign, x), y, mask


def linear() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(SIZE * SIZE, 2))


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * SIZE * SIZE, 2)
    )


@pytest.fixture(scope="module")
def data() -> tuple[Tensor, ...]:
    train_x, train_y, train_mask = corner_data(2000, seed=0)
    test_x, test_y, test_mask = corner_data(1000, seed=1)
    return train_x, train_y, test_x, test_y, train_mask, test_mask


@pytest.fixture(scope="module")
def trained(data: tuple[Tensor, ...]) -> nn.Module:
    torch.manual_seed(5)
    model = small_cnn()
    train_classifier(model, data[0], data[1], seed=5, **TRAIN)
    return model.eval()


def test_oracle_ranking_drops_to_chance_random_does_not(data: tuple[Tensor, ...]) -> None:
    train_x, train_y, test_x, test_y, train_mask, test_mask = data
    oracle = (train_mask.float(), test_mask.float())
    result = roar(
        linear,
        train_x,
        train_y,
        test_x,
        test_y,
        maps={"oracle": oracle, "anti_oracle": (-oracle[0], -oracle[1])},
        fractions=(0.1, 0.5),
        seeds=(0, 1),
        **TRAIN,
    )
    assert result.methods == ("oracle", "anti_oracle", RANDOM)
    assert result.removed == (6, 32)
    acc = result.accuracy  # (methods, fractions, seeds)
    # the 4 signal pixels are among the 6 removed: nothing is left to learn, the retrained
    # model guesses (1000 test images: SE 0.016 around 0.5; 0.06 is ~4 SE)
    for f in range(2):
        for s in range(2):
            assert abs(float(acc[0, f, s]) - 0.5) < 0.06
    # 6 random pixels of 64 rarely hit the patch; the anti-oracle never removes it
    assert float(acc[2, 0].min()) > 0.95
    assert float(acc[1].min()) > 0.97
    reference = result.reference_accuracy
    assert reference is not None and float(reference.min()) > 0.97
    comparisons = {(c.method, c.fraction): c for c in result.compare(resamples=2000)}
    for fraction in (0.1, 0.5):
        c = comparisons[("oracle", fraction)]
        assert c.verdict == "better" and c.seeds_agree
        assert c.p_holm < 0.01 and c.difference.high < -0.3
    assert comparisons[("anti_oracle", 0.5)].verdict == "worse"
    assert result.unretrained_correct is None  # no explained model was given
    table = result.table(resamples=200)
    assert table.count("\n") == 2 + 3 - 1 and "| oracle |" in table
    interval = result.interval("oracle", 0.1, resamples=200)
    assert interval.low <= interval.estimate <= interval.high
    assert interval.n == len(test_x)
    json.dumps(to_jsonable(roar_record(result, resamples=200)), allow_nan=False)


def test_ties_are_broken_by_the_seed_not_raster_order() -> None:
    g = torch.Generator().manual_seed(0)
    constant = torch.zeros(4000, 10)
    ranks = tie_broken_ranks(constant, g)
    assert torch.equal(ranks.sort(dim=1).values, torch.arange(10).expand(4000, 10).int())
    # a uniformly random order: every position takes every rank with probability 1/10
    share = torch.stack([(ranks == r).float().mean(0) for r in range(10)])
    torch.testing.assert_close(share, torch.full((10, 10), 0.1), atol=0.025, rtol=0)
    # distinct values keep their order; a tie is shuffled only among its own ranks
    row = torch.tensor([[1.0, 3.0, 1.0, 1.0, -2.0]]).expand(3000, 5)
    ranks = tie_broken_ranks(row, g)
    assert bool((ranks[:, 1] == 0).all()) and bool((ranks[:, 4] == 4).all())
    tied = ranks[:, [0, 2, 3]]
    assert torch.equal(tied.sort(dim=1).values, torch.tensor([1, 2, 3]).expand(3000, 3).int())
    share = torch.stack([(tied == r).float().mean(0) for r in (1, 2, 3)])
    torch.testing.assert_close(share, torch.full((3, 3), 1 / 3), atol=0.04, rtol=0)


def test_constant_map_removes_random_pixels_not_the_first_in_raster_order() -> None:
    """The label sits in the first 4 pixels of the top row: removing 10 % in raster order
    would erase it; a constant map's ties must fall in a random order instead — the very
    order of the random ranking at the same seed."""
    g = torch.Generator().manual_seed(7)
    n = 1500
    x = torch.randn(n, 1, SIZE, SIZE, generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    x[:, 0, 0, :4] += 3.0 * (2.0 * y[:, None] - 1.0)
    zeros = torch.zeros_like(x)
    result = roar(
        linear,
        x[:1000],
        y[:1000],
        x[1000:],
        y[1000:],
        maps={"constant": (zeros[:1000], zeros[1000:])},
        fractions=(0.1,),
        seeds=(3,),
        reference=False,
        **TRAIN,
    )
    assert result.reference_correct is None
    assert float(result.accuracy.min()) > 0.95  # 6 random pixels of 64 rarely hit all 4
    assert torch.equal(result.correct[0], result.correct[1])


def test_deterministic_and_chunking_does_not_matter(
    data: tuple[Tensor, ...], trained: nn.Module
) -> None:
    train_x, train_y, test_x, test_y, _, _ = data
    args = (small_cnn, train_x[:400], train_y[:400], test_x[:200], test_y[:200])
    options = {
        "explain_model": trained,
        "fractions": (0.2,),
        "seeds": (0, 1),
        "reference": False,
        **TRAIN,
    }
    methods = {"smoothgrad": make_method("smoothgrad", samples=4)}
    first = roar(*args, methods, chunk_size=1000, **options)
    again = roar(*args, methods, chunk_size=7, **options)
    assert torch.equal(first.correct, again.correct)
    assert first.unretrained_correct is not None and again.unretrained_correct is not None
    assert torch.equal(first.unretrained_correct, again.unretrained_correct)
    other = roar(*args, methods, **{**options, "seeds": (2, 3)})
    assert not torch.equal(first.correct, other.correct)


def test_explained_model_and_data_untouched(data: tuple[Tensor, ...], trained: nn.Module) -> None:
    train_x, train_y, test_x, test_y, _, _ = data
    copies = [t.clone() for t in (train_x, train_y, test_x, test_y)]
    before = Snapshot.take(trained)
    result = roar(
        small_cnn,
        train_x[:300],
        train_y[:300],
        test_x[:200],
        test_y[:200],
        ["gradient", "grad_cam", "guided_backprop"],
        explain_model=trained,
        fractions=(0.5,),
        seeds=(0,),
        **TRAIN,
    )
    before.assert_unchanged(trained)
    for original, now in zip(copies, (train_x, train_y, test_x, test_y)):
        assert torch.equal(original, now)
    assert result.methods == ("gradient", "grad_cam", "guided_backprop", RANDOM)
    # the unretrained column is the explained model itself on the modified images
    assert result.unretrained_correct is not None

    calls = 0

    def failing() -> nn.Module:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("boom in make_model")
        return small_cnn()

    with pytest.raises(RuntimeError, match="boom"):
        roar(
            failing,
            train_x[:100],
            train_y[:100],
            test_x[:50],
            test_y[:50],
            ["gradient"],
            explain_model=trained,
            fractions=(0.5,),
            seeds=(0, 1),
            **TRAIN,
        )
    before.assert_unchanged(trained)


def test_reference_accuracy_matches_training_accuracy(data: tuple[Tensor, ...]) -> None:
    """The per-image correctness equals models.training.accuracy of the same training."""
    train_x, train_y, test_x, test_y, train_mask, test_mask = data
    result = roar(
        linear,
        train_x[:500],
        train_y[:500],
        test_x,
        test_y,
        maps={"oracle": (train_mask[:500].float(), test_mask.float())},
        fractions=(0.1,),
        seeds=(4,),
        **TRAIN,
    )
    with torch.random.fork_rng():
        torch.manual_seed(4)
        model = linear()
        train_classifier(model, train_x[:500], train_y[:500], seed=4, **TRAIN)
    reference = result.reference_accuracy
    assert reference is not None and float(reference[0]) == accuracy(model, test_x, test_y)


def test_bad_inputs_give_clear_errors(data: tuple[Tensor, ...], trained: nn.Module) -> None:
    train_x, train_y, test_x, test_y, train_mask, test_mask = data
    args = (linear, train_x[:50], train_y[:50], test_x[:20], test_y[:20])
    maps = {"oracle": (train_mask[:50].float(), test_mask[:20].float())}
    for fractions in ((0.0, 0.5), (1.0,), (1.5,), (-0.1,)):
        with pytest.raises(InvalidOptionError, match="strictly between 0 and 1"):
            roar(*args, maps=maps, fractions=fractions)
    with pytest.raises(InvalidOptionError, match="empty"):
        roar(*args, maps=maps, fractions=())
    with pytest.raises(InvalidOptionError, match="remove no element"):
        roar(*args, maps=maps, fractions=(0.01,))
    with pytest.raises(InvalidInputError, match="same \\(C, H, W\\)"):
        roar(linear, train_x[:50], train_y[:50], test_x[:20, :, :6], test_y[:20], maps=maps)
    with pytest.raises(InvalidInputError, match="one label per image"):
        roar(linear, train_x[:50], train_y[:49], test_x[:20], test_y[:20], maps=maps)
    with pytest.raises(InvalidInputError, match="maps\\['oracle'\\] test_maps"):
        roar(*args, maps={"oracle": (maps["oracle"][0], test_mask[:19].float())})
    with pytest.raises(InvalidOptionError, match="explain_model"):
        roar(*args, ["gradient"])
    with pytest.raises(InvalidOptionError, match="control"):
        roar(*args, ["random"], explain_model=trained)
    with pytest.raises(InvalidOptionError, match="unknown method"):
        roar(*args, ["gradeint"], explain_model=trained)
    with pytest.raises(InvalidOptionError, match="unknown target"):
        roar(*args, maps=maps, target="true")
    with pytest.raises(InvalidOptionError, match="seeds"):
        roar(*args, maps=maps, seeds=())
    with pytest.raises(InvalidOptionError, match="baseline"):
        roar(*args, maps=maps, baseline="median")
    with pytest.raises(InvalidInputError, match="fresh"):
        roar(lambda: trained, *args[1:], maps=maps, explain_model=trained)
