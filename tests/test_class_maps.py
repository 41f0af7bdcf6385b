"""Per-class mean maps and concentration: hand values, a dense reference, a streamed run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from seethrough.core.focus import focus
from seethrough.core.stats import mean_ci
from seethrough.errors import InvalidInputError, InvalidOptionError
from seethrough.scale import class_maps, top_share
from seethrough.scale.classes import sum_pool
from words_helpers import assert_round_trip


def test_top_share_hand_values() -> None:
    flat = torch.ones(1, 10, 10)
    assert top_share(flat).tolist() == [pytest.approx(0.1, abs=1e-15)]  # 10 of 100 pixels
    sparse = torch.zeros(1, 10, 10)
    sparse[0, 0, :7] = torch.tensor([5.0, -1.0, 2.0, 0.5, 3.0, -4.0, 1.0])  # 7 ≤ 10 pixels
    assert top_share(sparse).tolist() == [pytest.approx(1.0, abs=1e-15)]
    mixed = torch.ones(1, 10, 10)
    mixed[0, 3, :] = -3.0  # the top 10 pixels hold 30 of |m|'s 120
    assert top_share(mixed).tolist() == [pytest.approx(0.25, abs=1e-15)]
    zero = torch.zeros(1, 10, 10)
    assert torch.isnan(top_share(zero)).all()
    # channels: |A| summed over channels (as the run's index column and Focus do)
    two = torch.stack([mixed[0], -mixed[0]])[None]
    assert top_share(two).tolist() == [pytest.approx(0.25, abs=1e-15)]


def test_top_share_equals_focus_concentration() -> None:
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(6, 3, 13, 11, generator=g, dtype=torch.float64)
    weights = maps.abs().sum(dim=1)
    expected = [f.concentration for f in focus(weights)]
    np.testing.assert_allclose(top_share(maps).numpy(), expected, rtol=1e-13)


def test_sum_pool_keeps_totals_and_never_upsamples() -> None:
    g = torch.Generator().manual_seed(1)
    maps = torch.rand(3, 30, 20, generator=g, dtype=torch.float64)
    pooled = sum_pool(maps, 8)  # blocks of 4 × 3, padded to 32 × 21
    assert pooled.shape == (3, 8, 7)
    torch.testing.assert_close(pooled.sum(dim=(1, 2)), maps.sum(dim=(1, 2)))
    assert float(pooled[0, 0, 0]) == pytest.approx(float(maps[0, :4, :3].sum()), rel=1e-14)
    assert sum_pool(maps, 64) is maps and sum_pool(maps, None) is maps


def test_mean_maps_and_concentration_equal_a_dense_computation() -> None:
    g = torch.Generator().manual_seed(2)
    maps = torch.randn(50, 1, 12, 12, generator=g)
    labels = torch.randint(0, 4, (50,), generator=g)
    labels[:3] = -1  # no class: left out
    result = class_maps(maps, "gradient", labels=labels, batch=7, size=6, resamples=500)
    dense = maps.sum(dim=1).to(torch.float64)
    assert result.classes == (0, 1, 2, 3)
    for i, c in enumerate(result.classes):
        members = dense[labels == c]
        assert result.counts[i] == len(members)
        expected = members.reshape(-1, 6, 2, 6, 2).sum(dim=(2, 4)).mean(dim=0)
        torch.testing.assert_close(result.mean_maps[i], expected, rtol=1e-12, atol=1e-12)
        (interval,) = mean_ci(top_share(maps[labels == c]).numpy(), resamples=500, seed=0)
        assert result.concentration[i] == interval
    assert result.by == "given" and result.method == "gradient"


def test_flat_maps_concentrate_ten_percent_and_a_spot_all() -> None:
    maps = torch.ones(8, 10, 10)
    maps[4:] = 0.0
    maps[4:, 2, 2:7] = 1.0  # all the mass in 5 of 100 pixels
    result = class_maps(maps, labels=[0, 0, 0, 0, 1, 1, 1, 1], resamples=200)
    flat, spot = result.concentration
    assert flat is not None and spot is not None
    assert (flat.estimate, flat.low, flat.high) == pytest.approx((0.1, 0.1, 0.1), abs=1e-15)
    assert (spot.estimate, spot.low, spot.high) == (1.0, 1.0, 1.0)


def test_describe_round_trips_in_english_and_chinese() -> None:
    g = torch.Generator().manual_seed(3)
    maps = torch.rand(40, 10, 10, generator=g)
    maps[20:, :5] = 0.0  # class 1: half the image empty → more concentrated
    labels = np.repeat([0, 1], 20)
    result = class_maps(maps, "lrp", labels=labels, names=["Shirt", "Bag"], resamples=300)
    description = result.describe()
    assert [f.key for f in description.findings] == [
        "scale.classes.summary",
        "scale.classes.concentration",
    ]
    assert description.findings[1].values["most"] == "Bag"
    assert all(f.claim == "note" for f in description.findings)
    assert_round_trip(description, result.to_dict())
    one = class_maps(maps[:20], labels=np.zeros(20), resamples=300)
    assert one.describe().findings[-1].key == "scale.classes.concentration.one"
    assert_round_trip(one.describe(), one.to_dict())


def test_bad_input_is_refused() -> None:
    maps = torch.rand(4, 5, 5)
    with pytest.raises(InvalidInputError, match="needs labels="):
        class_maps(maps)
    with pytest.raises(InvalidInputError, match="3 labels for 4 maps"):
        class_maps(maps, labels=[0, 1, 2])
    with pytest.raises(InvalidInputError, match="no image with a class"):
        class_maps(maps, labels=[-1, -1, -1, -1])
    with pytest.raises(InvalidOptionError, match="fraction must be in"):
        top_share(maps, 0.0)


# ----------------------------------------------------------------------------- runs


def _write_run(out: Path, maps: torch.Tensor, labels: np.ndarray, shares: bool) -> Path:
    from seethrough.data.shards import RunWriter, ShardPlan

    plan = ShardPlan(items=len(maps), shard_size=9)
    writer = RunWriter(out, config={"shares": shares}, plan=plan, info={"classes": ["x", "y", "z"]})
    for shard in range(plan.shards):
        lo, hi = plan.range(shard)
        rows: dict[str, np.ndarray] = {"label": labels[lo:hi], "predicted": (labels[lo:hi] + 1) % 3}
        if shares:
            rows["gradient.top10_share"] = top_share(maps[lo:hi]).numpy()
        writer.write_shard(shard, {"gradient": maps[lo:hi].to(torch.float16)}, rows)
    writer.finish()
    return out


@pytest.mark.parametrize("shares", [True, False])
def test_a_run_is_streamed_and_equals_the_tensor_path(tmp_path: Path, shares: bool) -> None:
    from seethrough.data.shards import open_run

    g = torch.Generator().manual_seed(4)
    maps = torch.randn(40, 2, 12, 12, generator=g).to(torch.float16).to(torch.float32)
    labels = torch.randint(0, 3, (40,), generator=g).numpy()
    run = open_run(_write_run(tmp_path / "run", maps, labels, shares))
    got = class_maps(run, "gradient", batch=5, resamples=300)
    expected = class_maps(maps, "gradient", labels=labels, names=["x", "y", "z"], resamples=300)
    assert got.names == ("x", "y", "z") and got.by == "label"
    assert got.settings["concentration_from"] == ("index" if shares else "maps")
    torch.testing.assert_close(got.mean_maps, expected.mean_maps, rtol=1e-12, atol=1e-12)
    for a, b in zip(got.concentration, expected.concentration):
        assert a is not None and b is not None
        assert a.estimate == pytest.approx(b.estimate, rel=1e-12)
    by_prediction = class_maps(run, "gradient", by="predicted", resamples=300)
    assert by_prediction.counts == tuple(int(np.sum((labels + 1) % 3 == c)) for c in range(3))
    with pytest.raises(InvalidOptionError, match="no maps named 'lrp'"):
        class_maps(run, "lrp")
    with pytest.raises(InvalidOptionError, match="unknown by='truth'"):
        class_maps(run, "gradient", by="truth")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="no column 'target'"):
        class_maps(run, "gradient", by="target")
