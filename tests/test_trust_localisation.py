"""Localisation metrics: hand-computed cases, Quantus 0.6 as the oracle on identical maps
and masks (and where we differ on purpose), input errors, and the bundled photos with
hand-made boxes (tests/data/photo_boxes.json)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

import seethrough as st
from helpers import tiny_inputs, tiny_model
from seethrough.data import DEFAULT_SAMPLES
from seethrough.errors import InvalidInputError, InvalidOptionError
from seethrough.trust.localisation import (
    POOLINGS,
    boxes_to_masks,
    energy_pointing_game,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
)

BOXES = Path(__file__).parent / "data" / "photo_boxes.json"


# ------------------------------------------------------------------------ hand values


def test_boxes_are_start_inclusive_end_exclusive_like_slicing() -> None:
    masks = boxes_to_masks(torch.tensor([[2, 0, 5, 3], [1.4, 0.0, 2.6, 1.0]]), 4, 6)
    expected = torch.zeros(2, 4, 6, dtype=torch.bool)
    expected[0, 0:3, 2:5] = True
    expected[1, 0:1, 1:3] = True  # pixel centres 1.5 and 2.5 lie in [1.4, 2.6)
    assert torch.equal(masks, expected)
    clipped = boxes_to_masks(torch.tensor([[-3.0, 2.0, 99.0, 50.0]]), 4, 6)
    assert int(clipped.sum()) == 2 * 6 and bool(clipped[0, 2:].all())


def test_pointing_game_hand_cases_and_tolerance() -> None:
    maps = torch.zeros(1, 1, 40, 40)
    maps[0, 0, 20, 5] = 1.0  # the maximum, row 20, column 5
    box = [[3, 10, 8, 30]]  # columns 3–7, rows 10–29: holds (20, 5)
    assert float(pointing_game(maps, box).scores[0]) == 1.0
    right = [[20, 0, 40, 40]]  # columns ≥ 20: the nearest pixel is 15 px away
    assert float(pointing_game(maps, right).scores[0]) == 0.0
    assert float(pointing_game(maps, right, tolerance=15).scores[0]) == 1.0  # ≤ 15
    assert float(pointing_game(maps, right, tolerance=14.9).scores[0]) == 0.0
    diagonal = torch.zeros(1, 40, 40, dtype=torch.bool)
    diagonal[0, 29, 17] = True  # 9 down, 12 right: distance exactly 15
    assert float(pointing_game(maps, diagonal, tolerance=15).scores[0]) == 1.0
    assert float(pointing_game(maps, diagonal, tolerance=14.99).scores[0]) == 0.0
    result = pointing_game(maps, box)
    assert result.point.tolist() == [[20, 5]] and result.maxima.tolist() == [1]
    assert result.higher_is_better is True and result.value_range == (0.0, 1.0)


def test_pointing_game_ties_score_their_expected_hit() -> None:
    """A constant map has every pixel at its maximum: a uniformly random choice among them
    hits with probability = the area fraction. Quantus counts a hit if any one is inside."""
    flat = torch.ones(2, 3, 8, 10)
    boxes = torch.tensor([[0, 0, 5, 8], [2, 2, 4, 3]])
    area = torch.tensor([40 / 80, 2 / 80], dtype=torch.float64)
    result = pointing_game(flat, boxes)
    torch.testing.assert_close(result.scores, area, rtol=0, atol=1e-15)
    torch.testing.assert_close(result.area_fraction, area, rtol=0, atol=1e-15)
    assert pointing_game(flat, boxes, ties="any").scores.tolist() == [1.0, 1.0]
    two = torch.zeros(1, 1, 4, 4)
    two[0, 0, 0, 0] = two[0, 0, 3, 3] = 2.0  # two maxima, one in the box
    assert float(pointing_game(two, [[0, 0, 2, 2]]).scores[0]) == 0.5


def test_energy_and_mass_accuracy_hand_values() -> None:
    maps = torch.tensor([[[[1.0, -2.0], [3.0, 0.0]]]])
    top_row = [[0, 0, 2, 1]]
    # positive part 1, 0, 3, 0 → inside 1 of 4
    assert float(energy_pointing_game(maps, top_row).scores[0]) == pytest.approx(0.25)
    # sum,abs: 1, 2, 3, 0 → 3 of 6
    mass = relevance_mass_accuracy(maps, top_row, pooling="sum,abs")
    assert float(mass.scores[0]) == pytest.approx(0.5)
    two = torch.tensor([[[[3.0, 0.0]], [[-4.0, 1.0]]]])  # channels (3, -4) and (0, 1)
    left = [[0, 0, 1, 1]]
    expected = {
        "sum,pos": 0 / 1,  # sums −1, 1
        "sum,abs": 1 / 2,
        "max-norm": 4 / 5,
        "l1-norm": 7 / 8,
        "l2-norm": 5 / 6,
        "l2-norm,sq": 25 / 26,
    }
    assert set(expected) == set(POOLINGS)
    for pooling, value in expected.items():
        got = float(relevance_mass_accuracy(two, left, pooling=pooling).scores[0])
        assert got == pytest.approx(value, abs=1e-15), pooling
    negative = energy_pointing_game(-maps.abs(), top_row)  # no positive relevance
    assert np.isnan(float(negative.scores[0])) and float(negative.energy[0]) == 0.0


def test_rank_accuracy_hand_values_and_ties() -> None:
    maps = torch.tensor([[[[5.0, 4.0, 3.0, 2.0, 1.0, 0.5]]]])
    region = torch.tensor([[[True, False, True, False, False, True]]])
    # K = 3, the top 3 are pixels 0, 1, 2: two of them in the region
    assert float(relevance_rank_accuracy(maps, region).scores[0]) == pytest.approx(2 / 3)
    tied = torch.tensor([[[[5.0, 0.0, 0.0, 0.0]]]])
    mask = torch.tensor([[[True, False, True, False]]])
    # K = 2: pixel 0, then one of the three zeros at random (1 in 3 is in the region)
    expected = (1 + 1 * (1 / 3)) / 2
    assert float(relevance_rank_accuracy(tied, mask).scores[0]) == pytest.approx(expected)
    # "sum,pos" clips the negatives to 0: they join the tie
    signed = torch.tensor([[[[5.0, -1.0, -3.0, 0.0]]]])
    assert float(relevance_rank_accuracy(signed, mask).scores[0]) == pytest.approx(expected)


# -------------------------------------------------------------------- Quantus oracle


def _random_case(n: int = 5, c: int = 1, size: int = 12) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(11)
    maps = torch.randn(n, c, size, size, generator=g, dtype=torch.float64)
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    for i in range(n):
        x0, y0 = torch.randint(0, size - 4, (2,), generator=g).tolist()
        w, h = torch.randint(2, 5, (2,), generator=g).tolist()
        masks[i, y0 : y0 + h, x0 : x0 + w] = True
    masks[-1] = torch.rand(size, size, generator=g) < 0.3  # an irregular mask
    # relevance leaning towards the region, so that scores fall between 0 and 1
    return maps + 1.5 * masks[:, None], masks


def _quantus(metric: Callable[..., Any], a: np.ndarray, s: Tensor) -> np.ndarray:
    s_batch = s[:, None].numpy().astype(np.float64)
    x_batch = np.zeros((len(a), 1, *a.shape[2:]))
    scores = metric(
        model=None,
        x_batch=x_batch,
        y_batch=np.zeros(len(a), dtype=int),
        a_batch=a,
        s_batch=s_batch,
        device="cpu",
    )
    return np.asarray(scores, dtype=np.float64)


def test_pointing_game_equals_quantus() -> None:
    quantus = pytest.importorskip("quantus")
    maps, masks = _random_case()
    theirs = _quantus(
        quantus.PointingGame(normalise=False, disable_warnings=True), maps.numpy(), masks
    )
    for ties in ("average", "any"):  # a unique maximum: both rules agree
        ours = pointing_game(maps, masks, ties=ties).scores.numpy()
        np.testing.assert_array_equal(ours, theirs)
    assert 0 < theirs.sum() < len(theirs)  # the case has hits and misses
    # where we differ on purpose: two tied maxima, one in the region and one outside.
    # (Quantus refuses constant maps outright.)
    tied = maps.clone()
    for i in range(len(maps)):
        inside, outside = masks[i].nonzero()[0], (~masks[i]).nonzero()[0]
        tied[i, 0, inside[0], inside[1]] = tied[i, 0, outside[0], outside[1]] = 10.0
    quantus_tied = _quantus(
        quantus.PointingGame(normalise=False, disable_warnings=True), tied.numpy(), masks
    )
    np.testing.assert_array_equal(quantus_tied, np.ones(len(maps)))
    np.testing.assert_array_equal(pointing_game(tied, masks, ties="any").scores, quantus_tied)
    assert pointing_game(tied, masks).scores.tolist() == [0.5] * len(maps)


def test_energy_pointing_game_equals_quantus_attribution_localisation() -> None:
    """Quantus's positive-attribution localisation adds 1e-9 to the denominator (a total
    of about 30 here), hence atol 1e-9."""
    quantus = pytest.importorskip("quantus")
    maps, masks = _random_case()
    metric = quantus.AttributionLocalisation(
        abs=False, positive_attributions=True, normalise=False, disable_warnings=True
    )
    theirs = _quantus(metric, maps.numpy(), masks)
    ours = energy_pointing_game(maps, masks).scores.numpy()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9)
    mass = relevance_mass_accuracy(maps, masks).scores.numpy()  # "sum,pos": the same number
    np.testing.assert_allclose(mass, ours, rtol=1e-15, atol=0)


@pytest.mark.parametrize("pooling", ["sum,pos", "max-norm", "l2-norm"])
def test_mass_and_rank_accuracy_equal_quantus_on_the_pooled_map(pooling: str) -> None:
    """Quantus's RelevanceMassAccuracy and RelevanceRankAccuracy take one value per pixel
    without pooling; fed the map pooled as Arras et al. pool it (a continuous map: no
    ties) they give our numbers, to rounding (mass) and exactly (rank)."""
    quantus = pytest.importorskip("quantus")
    from seethrough.trust.localisation import _pool

    maps, masks = _random_case(c=3)
    pooled = _pool(maps, pooling)[:, None].numpy()
    kwargs = {"normalise": False, "disable_warnings": True}
    theirs = _quantus(quantus.RelevanceMassAccuracy(**kwargs), pooled, masks)
    ours = relevance_mass_accuracy(maps, masks, pooling=pooling).scores.numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=0)
    theirs = _quantus(quantus.RelevanceRankAccuracy(**kwargs), pooled, masks)
    ours = relevance_rank_accuracy(maps, masks, pooling=pooling).scores.numpy()
    np.testing.assert_array_equal(ours, theirs)
    assert len(np.unique(theirs)) >= 3  # not a case of all 0 or all 1
    # no tie at the K-th value (sum,pos clips negatives to tied zeros; here K is smaller
    # than the count of positive pixels), where argsort and our expectation would differ
    flat = pooled.reshape(len(pooled), -1)
    for row, k in zip(flat, masks.flatten(1).sum(1).tolist()):
        assert (row == np.sort(row)[::-1][k - 1]).sum() == 1


def test_quantus_mass_accuracy_on_a_signed_map_leaves_zero_one_ours_does_not() -> None:
    """Where we differ on purpose: Arras et al. pool to r ≥ 0 first; Quantus divides
    signed sums, so a signed map can score below 0 or above 1."""
    quantus = pytest.importorskip("quantus")
    maps, masks = _random_case()
    kwargs = {"normalise": False, "disable_warnings": True}
    theirs = _quantus(quantus.RelevanceMassAccuracy(**kwargs), maps.numpy(), masks)
    assert ((theirs < 0) | (theirs > 1)).any(), theirs
    ours = relevance_mass_accuracy(maps, masks).scores
    assert bool(((ours >= 0) & (ours <= 1)).all())


# ----------------------------------------------------------------------------- inputs


def test_bad_maps_and_regions_raise_clear_errors() -> None:
    maps = torch.rand(3, 1, 6, 6)
    boxes = [[0, 0, 3, 3]] * 3
    nan = maps.clone()
    nan[1, 0, 2, 2] = float("nan")
    with pytest.raises(InvalidInputError, match=r"rows \[1\] have NaN or infinite"):
        pointing_game(nan, boxes)
    with pytest.raises(InvalidInputError, match=r"rows \[2\] hold no pixel"):
        energy_pointing_game(maps, [[0, 0, 3, 3], [0, 0, 3, 3], [6, 0, 9, 3]])
    empty = torch.ones(3, 6, 6, dtype=torch.bool)
    empty[0] = False
    with pytest.raises(InvalidInputError, match=r"rows \[0\] hold no pixel"):
        relevance_rank_accuracy(maps, empty)
    with pytest.raises(InvalidInputError, match=r"x1 ≤ x0 or y1 ≤ y0"):
        pointing_game(maps, [[0, 0, 3, 3], [3, 0, 3, 3], [0, 0, 3, 3]])
    with pytest.raises(InvalidInputError, match="dtype bool"):
        pointing_game(maps, torch.ones(3, 6, 6))
    with pytest.raises(InvalidInputError, match=r"\(N, H, W\) = \(3, 6, 6\)"):
        pointing_game(maps, torch.ones(3, 5, 6, dtype=torch.bool))
    with pytest.raises(InvalidInputError, match="NaN or infinite coordinates"):
        pointing_game(maps, [[0, 0, float("nan"), 3]] * 3)
    with pytest.raises(InvalidOptionError, match="unknown pooling 'sum'"):
        relevance_mass_accuracy(maps, boxes, pooling="sum")
    with pytest.raises(InvalidOptionError, match="unknown ties 'first'"):
        pointing_game(maps, boxes, ties="first")
    with pytest.raises(InvalidOptionError, match="tolerance must be"):
        pointing_game(maps, boxes, tolerance=-1)


def test_explanations_cams_and_batches() -> None:
    """An Explanation is read at input resolution (a CAM upsampled first), and a batch
    scores like its rows one by one."""
    model, x = tiny_model(), tiny_inputs(n=3, size=12)
    boxes = torch.tensor([[0, 0, 6, 6], [3, 3, 12, 9], [5, 0, 12, 12]])
    for method, options in (("gradient", {}), ("grad_cam", {"layer": "conv2"})):
        ex = st.explain(model, x, method, target=[0, 1, 2], **options)
        maps = ex.to_input_size().attributions
        for metric in (
            pointing_game,
            energy_pointing_game,
            relevance_mass_accuracy,
            relevance_rank_accuracy,
        ):
            batch = metric(ex, boxes)
            assert batch.method == method
            assert torch.equal(batch.scores, metric(maps, boxes).scores)
            rows = torch.cat([metric(maps[i : i + 1], boxes[i : i + 1]).scores for i in range(3)])
            assert torch.equal(batch.scores, rows)


# ------------------------------------------------------------------------ real photos


@pytest.mark.slow
def test_grad_cam_energy_sits_on_the_object_and_the_noise_control_at_chance() -> None:
    """EfficientNet-Lite0 on the six bundled photos with hand-made boxes of the main
    object (tests/data/photo_boxes.json). Rules, each a property, not a recorded value:

    * the ``random_noise`` control puts its energy where a uniform map would, the box's
      area fraction (i.i.d. noise over 50 176 pixels: sd ≈ 0.003), within 0.02;
    * Grad-CAM's energy in the box exceeds the area fraction on at least 4 of the 6
      photos (measured: 4; astronaut and camera are predicted as "football helmet" and
      "tripod", objects the boxes of the person leave out or cut), and exceeds the random
      control's on at least 4 photos and in the mean;
    * every score lies in [0, 1], and the pointing game of these maps (unique maxima)
      is 0 or 1 and only gains hits with the paper's 15-px tolerance.
    """
    net = st.load_model("efficientnet-lite0")
    names = list(DEFAULT_SAMPLES)
    x = net.preprocess(st.load_images([f"sample:{name}" for name in names]))
    boxes_by_name = json.loads(BOXES.read_text())
    boxes = torch.tensor([boxes_by_name[name] for name in names])
    explanations = dict(
        zip(
            ("gradient", "grad_cam", "random_noise"),
            st.explain(net, x, ["gradient", "grad_cam", "random_noise"]),
        )
    )
    explanations["integrated_gradients"] = st.explain(
        net, x, "integrated_gradients", rule="riemann_trapezoid", steps=16
    )
    energy = {m: energy_pointing_game(ex, boxes) for m, ex in explanations.items()}
    area = energy["grad_cam"].area_fraction
    torch.testing.assert_close(energy["random_noise"].scores, area, rtol=0, atol=0.02)
    cam, noise = energy["grad_cam"].scores, energy["random_noise"].scores
    assert int((cam > area).sum()) >= 4, (cam, area)
    assert int((cam > noise).sum()) >= 4 and float(cam.mean()) > float(noise.mean())
    for method, ex in explanations.items():
        strict, tolerant = pointing_game(ex, boxes), pointing_game(ex, boxes, tolerance=15)
        assert set(strict.scores.tolist()) <= {0.0, 1.0}, method
        assert bool((tolerant.scores >= strict.scores).all()), method
        assert bool(((energy[method].scores >= 0) & (energy[method].scores <= 1)).all())
