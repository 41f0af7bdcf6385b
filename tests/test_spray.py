"""SpRAy (Lapuschkin et al., 2019): the pipeline against the authors' CoRelAy steps, the
eigengap on known groups, the outcome tests, a run streamed from shards, and THE
acceptance test: a watermark planted in half of one Fashion-MNIST class forms its own
cluster."""

from __future__ import annotations

import importlib
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
import torch
from scipy import stats
from scipy.spatial.distance import pdist, squareform
from skimage.measure import block_reduce
from torch import nn

import seethrough as st
from seethrough.errors import InvalidInputError, InvalidOptionError
from seethrough.scale import spray, spray_run
from seethrough.scale.spray import _permutation_p, spray_features
from words_helpers import assert_round_trip

spray_mod = importlib.import_module("seethrough.scale.spray")  # the package exports spray()


def two_groups(n: int = 30, size: int = 16, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """``2n`` maps: a bright blob top-left (group 0) or bottom-right (group 1), plus noise."""
    g = torch.Generator().manual_seed(seed)
    maps = 0.05 * torch.rand(2 * n, size, size, generator=g, dtype=torch.float64)
    maps[:n, 2:6, 2:6] += 1.0
    maps[n:, -6:-2, -6:-2] += 1.0
    return maps, np.repeat([0, 1], n)


def corelay_spectrum(features: np.ndarray, neighbors: int, count: int) -> np.ndarray:
    """CoRelAy's SpectralEmbedding, step by step (SciPyPDist → SparseKNN(symmetric) →
    SymmetricNormalLaplacian → EigenDecomposition's 1 − μ), with all eigenvalues from a
    dense solver instead of ``eigsh(which="LM")``: the ``count`` smallest."""
    n = len(features)
    distance = squareform(pdist(features, metric="euclidean"))
    columns = distance.argsort(1)[:, 1 : neighbors + 1]
    rows = np.mgrid[:n, :neighbors][0]
    values = np.ones((n, neighbors))
    affinity = scipy.sparse.csr_matrix((values.flat, (rows.flat, columns.flat)), shape=(n, n))
    affinity = (affinity + affinity.T) / 2.0
    degree = scipy.sparse.diags(np.asarray(affinity.sum(1)).ravel() ** -0.5, 0)
    normalised = (degree @ affinity @ degree).toarray()
    return np.sort(1.0 - np.linalg.eigvalsh(normalised))[:count]


# ----------------------------------------------------------------------------- pipeline


def test_features_equal_corelays_pooling_and_normalisation_for_non_negative_maps() -> None:
    """Steps 1–3 against ``block_reduce(np.sum)`` (CoRelAy's pooling) and CoRelAy's
    ``Normalize`` (divide by the sum), which ours equals for non-negative maps."""
    g = torch.Generator().manual_seed(3)
    maps = torch.rand(5, 2, 28, 28, generator=g, dtype=torch.float64)
    for size, block in ((7, 4), (10, 3), (28, 1), (32, 1)):
        summed = maps.sum(1).numpy()
        pooled = block_reduce(summed, (1, block, block), np.sum)
        expected = pooled / pooled.sum(axis=(1, 2), keepdims=True)
        got = spray_features(maps, size).numpy()
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)


def test_signed_maps_are_divided_by_their_l1_norm_and_zero_maps_stay_zero() -> None:
    maps = torch.tensor([[[1.0, -3.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]], dtype=torch.float64)
    got = spray_features(maps, None)
    torch.testing.assert_close(
        got[0], torch.tensor([[0.25, -0.75], [0.0, 0.0]], dtype=torch.float64)
    )
    assert bool((got[1] == 0).all())


def test_eigenvalues_equal_corelays_pipeline() -> None:
    g = torch.Generator().manual_seed(1)
    maps = torch.rand(80, 12, 12, generator=g, dtype=torch.float64)
    result = spray(maps, size=None, neighbors=10, seed=0)
    features = spray_features(maps, None).flatten(1).numpy()
    expected = corelay_spectrum(features, 10, len(result.eigenvalues))
    assert len(result.eigenvalues) == 32
    np.testing.assert_allclose(result.eigenvalues, expected, rtol=0, atol=1e-10)


def test_sparse_solver_agrees_with_the_dense_one(monkeypatch: pytest.MonkeyPatch) -> None:
    maps, _ = two_groups(40)
    dense = spray(maps, seed=0)
    monkeypatch.setattr(spray_mod, "DENSE_UP_TO", 10)
    sparse = spray(maps, seed=0)
    np.testing.assert_allclose(sparse.eigenvalues, dense.eigenvalues, rtol=0, atol=1e-8)
    assert sparse.eigengap == dense.eigengap == 2
    assert torch.equal(sparse.assignment, dense.assignment)


def test_two_known_groups_are_recovered_and_the_eigengap_picks_two() -> None:
    maps, groups = two_groups()
    result = spray(maps, seed=0)
    assert result.eigengap == 2 and len(result.clusters) == 2
    # two disconnected neighbour graphs: two zero eigenvalues, then a gap
    assert result.eigenvalues[0] < 1e-12 and result.eigenvalues[1] < 1e-12
    assert result.eigenvalues[2] > 0.1
    assignment = result.assignment.numpy()
    assert len(set(zip(assignment.tolist(), groups.tolist()))) == 2  # a perfect split
    assert [c.size for c in result.clusters] == [30, 30]
    assert result.clusters[0].rows.tolist() == list(range(30))  # ties: the earlier first
    # mean map of a cluster: the mean of its normalised maps; the blob sits where expected
    features = spray_features(maps, 32)
    torch.testing.assert_close(result.clusters[0].mean_map, features[:30].mean(0))
    # blob 16 px of 1 + U(0, 0.05), background 240 px of U(0, 0.05): 16.4 / (16.4 + 6)
    assert float(result.clusters[0].mean_map[2:6, 2:6].sum()) == pytest.approx(
        16.4 / 22.4, abs=0.01
    )
    # representatives: members, nearest the centre first, and their maps
    reps = result.clusters[1].representatives
    assert len(reps) == 6 and all(30 <= r < 60 for r in reps)
    torch.testing.assert_close(result.clusters[1].representative_maps, features[list(reps)])


def test_one_homogeneous_group_gives_one_cluster_when_the_gap_says_so() -> None:
    maps, _ = two_groups()
    result = spray(maps[:30], seed=0, clusters=None)
    assert result.eigengap >= 1
    fixed = spray(maps[:30], seed=0, clusters=1)
    assert len(fixed.clusters) == 1 and fixed.clusters[0].size == 30
    assert fixed.clusters[0].accuracy_p is None and not fixed.clusters[0].differs


def test_deterministic_with_the_seed_and_rows_carried_through() -> None:
    g = torch.Generator().manual_seed(2)
    maps = torch.rand(60, 1, 10, 10, generator=g)
    rows = np.arange(1000, 1060)
    a = spray(maps, rows=rows, seed=5, clusters=3)
    b = spray(maps, rows=rows, seed=5, clusters=3)
    assert torch.equal(a.assignment, b.assignment) and a.eigenvalues == b.eigenvalues
    assert [c.rows.tolist() for c in a.clusters] == [c.rows.tolist() for c in b.clusters]
    assert sorted(r for c in a.clusters for r in c.rows.tolist()) == rows.tolist()
    assert all(r >= 1000 for c in a.clusters for r in c.representatives)


# ----------------------------------------------------------------------------- outcomes


def test_permutation_test_matches_exact_enumeration() -> None:
    a = np.array([1.0, 2.0, 3.0, 4.5])
    b = np.array([2.5, 5.0, 6.0, 7.0, 8.0])
    values = np.concatenate([a, b])
    observed = abs(a.mean() - b.mean())
    hits = total = 0
    for pick in itertools.combinations(range(9), 4):
        inside = np.zeros(9, bool)
        inside[list(pick)] = True
        hits += abs(values[inside].mean() - values[~inside].mean()) >= observed - 1e-12
        total += 1
    exact = hits / total
    got = _permutation_p(a, b, 20_000, np.random.default_rng(0))
    assert abs(got - exact) < 0.015  # Monte Carlo SE ≤ 0.0035 at 20,000 resamples


def test_cluster_outcomes_fisher_and_permutation_holm_corrected() -> None:
    maps, groups = two_groups()
    labels = np.zeros(60, np.int64)
    predicted = np.zeros(60, np.int64)
    predicted[30:50] = 3  # 20 of group 1 wrong, 10 right
    probability = np.where(groups == 0, 0.9, 0.5)
    result = spray(maps, labels=labels, predicted=predicted, probability=probability, seed=0)
    first, second = result.clusters
    assert first.rows.tolist() == list(range(30))
    assert first.accuracy is not None and first.accuracy.estimate == 1.0
    assert second.accuracy is not None and math.isclose(second.accuracy.estimate, 10 / 30)
    assert first.rest_accuracy == pytest.approx(10 / 30) and second.rest_accuracy == 1.0
    assert first.confidence is not None and first.confidence.estimate == pytest.approx(0.9)
    fisher = stats.fisher_exact([[30, 0], [10, 20]]).pvalue  # the same table both ways
    permutation = 1 / 2001  # only the observed split reaches the observed difference
    assert fisher < permutation
    # Holm's step-down by hand: sorted p = (fisher, fisher, perm, perm) → ×4, ×3, ×2, ×1,
    # each at least the one before
    fisher_holm = 4 * fisher
    permutation_holm = max(fisher_holm, 2 * permutation)
    assert first.accuracy_p == pytest.approx(fisher_holm, rel=1e-12) == second.accuracy_p
    assert first.confidence_p == pytest.approx(permutation_holm, rel=1e-12) == second.confidence_p
    assert first.differs and second.differs


def test_same_outcomes_are_not_flagged() -> None:
    maps, _ = two_groups()
    labels = np.zeros(60, np.int64)
    predicted = np.tile([0, 0, 1], 20)  # the same accuracy in both groups
    result = spray(maps, labels=labels, predicted=predicted, probability=np.full(60, 0.7))
    assert not any(c.differs for c in result.clusters)
    assert all(c.confidence_p == 1.0 for c in result.clusters)


# ----------------------------------------------------------------------------- words


def test_describe_round_trips_every_number_in_english_and_chinese() -> None:
    maps, _ = two_groups()
    predicted = np.where(np.arange(60) < 45, 0, 2)
    result = spray(
        maps,
        labels=np.zeros(60),
        predicted=predicted,
        probability=np.linspace(0.4, 0.99, 60),
        cls=6,
        class_name="Shirt",
        method="lrp",
    )
    description = result.describe()
    keys = [f.key for f in description.findings]
    assert keys[0] == "scale.spray.summary"
    assert "scale.spray.differs.accuracy" in keys
    assert any(f.claim == "finding" for f in description.findings)
    assert_round_trip(description, result.to_dict())
    assert "Clever Hans" in description.text("en") and "聪明汉斯" in description.text("zh")
    plain = spray(maps)  # no outcomes: said so, no finding claimed
    words = plain.describe()
    assert [f.key for f in words.findings][-1] == "scale.spray.no_outcomes"
    assert all(f.claim != "finding" for f in words.findings)
    assert_round_trip(words, plain.to_dict())


def test_describe_same_outcomes_is_hedged() -> None:
    maps, _ = two_groups()
    result = spray(maps, labels=np.zeros(60), predicted=np.tile([0, 0, 1], 20))
    findings = result.describe().findings
    assert findings[-1].key == "scale.spray.none_differs" and findings[-1].claim == "hedged"
    assert_round_trip(result.describe(), result.to_dict())


# ----------------------------------------------------------------------------- errors


def test_bad_input_is_refused_with_a_clear_message() -> None:
    maps, _ = two_groups()
    with pytest.raises(InvalidInputError, match="at least 3 maps"):
        spray(maps[:2])
    with pytest.raises(InvalidInputError, match=r"\(N, H, W\) or \(N, C, H, W\)"):
        spray(maps[0])
    with pytest.raises(InvalidInputError, match="labels has 5 entries for 60 maps"):
        spray(maps, labels=np.zeros(5))
    with pytest.raises(InvalidInputError, match="NaN or infinite"):
        spray(torch.full((5, 4, 4), float("nan")))
    with pytest.raises(InvalidOptionError, match="clusters must be"):
        spray(maps, clusters=60)
    with pytest.raises(InvalidOptionError, match="neighbors must be a positive int"):
        spray(maps, neighbors=0)
    with pytest.raises(InvalidOptionError, match="size must be"):
        spray(maps, size=0)


# ----------------------------------------------------------------------------- runs


def _write_run(tmp: Path, maps: torch.Tensor, labels: np.ndarray, shard_size: int = 16) -> Path:
    from seethrough.data.shards import RunWriter, ShardPlan

    plan = ShardPlan(items=len(maps), shard_size=shard_size)
    writer = RunWriter(
        tmp / "run", config={"test": 1}, plan=plan, info={"classes": ["a", "b", "c"]}
    )
    for shard in range(plan.shards):
        lo, hi = plan.range(shard)
        rows = {
            "index": np.arange(lo, hi),
            "label": labels[lo:hi],
            "predicted": labels[lo:hi],
            "probability": np.full(hi - lo, 0.8),
        }
        writer.write_shard(shard, {"lrp": maps[lo:hi].to(torch.float16)}, rows)
    writer.finish()
    return tmp / "run"


def test_spray_run_streams_one_class_and_equals_spray_on_its_maps(tmp_path: Path) -> None:
    from seethrough.data.shards import open_run

    maps, _ = two_groups(size=40)
    maps = torch.cat([maps, torch.rand(20, 40, 40, dtype=torch.float64)])[:, None]
    labels = np.concatenate([np.full(60, 1), np.full(20, 2)])
    labels[[3, 40]] = 0  # two images of another class inside the groups
    run = open_run(_write_run(tmp_path, maps, labels))
    got = spray_run(run, cls="b", method="lrp", batch=7, size=20, seed=0)
    positions = np.flatnonzero(labels == 1)
    expected = spray(
        run.maps("lrp", positions),
        rows=positions,
        labels=labels[positions],
        predicted=labels[positions],
        probability=np.full(len(positions), 0.8),
        size=20,
        seed=0,
    )
    assert got.cls == 1 and got.class_name == "b" and got.method == "lrp"
    assert got.eigenvalues == expected.eigenvalues
    assert torch.equal(got.rows, torch.as_tensor(positions))
    assert torch.equal(got.assignment, expected.assignment)
    assert got.eigengap == 2
    assert {tuple(c.rows.tolist()) for c in got.clusters} == {
        tuple(p for p in positions if p < 30),
        tuple(p for p in positions if 30 <= p < 60),
    }
    assert spray_run(run, cls=1, method="lrp", size=20).eigenvalues == got.eigenvalues
    with pytest.raises(InvalidOptionError, match="unknown class 'z'"):
        spray_run(run, cls="z", method="lrp")
    with pytest.raises(InvalidOptionError, match="no maps named 'grad'"):
        spray_run(run, cls=1, method="grad")
    with pytest.raises(InvalidInputError, match="no image of class 5"):
        spray_run(run, cls=5, method="lrp")


# ----------------------------------------------------------------------------- acceptance

WATERMARK_CLASS = 6  # "Shirt": the class the network finds hardest (confused with T-shirt,
# Pullover, Coat), so a shortcut is tempting


def _watermark(images: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
    marked = images.clone()
    marked[which, 1:5, 1:5] = 255  # a bright 4 × 4 square in the top-left corner
    return marked


def _inputs(images: torch.Tensor) -> torch.Tensor:
    from seethrough.data.fashion_mnist import FASHION_MEAN, FASHION_STD

    return ((images.to(torch.float32) / 255.0)[:, None] - FASHION_MEAN) / FASHION_STD


def _purity(assignment: np.ndarray, marked: np.ndarray) -> float:
    return sum(
        max(int(marked[assignment == c].sum()), int((~marked[assignment == c]).sum()))
        for c in np.unique(assignment)
    ) / len(assignment)


def test_spray_finds_a_planted_watermark_strategy_on_fashion_mnist() -> None:
    """A small CNN trained on 6,000 real Fashion-MNIST images where half of the Shirts
    (and nothing else) carry a watermark; SpRAy on LRP maps of 400 Shirt test images,
    half watermarked: the watermarked maps form their own cluster(s) (purity ≥ 0.9), which
    the outcome tests flag as candidate Clever Hans strategies.

    Measured (training seeds 0–3; LRP, gradient and gradient × input): purity ≥ 0.995
    every time; the eigengap chose k = 2 for LRP at seeds 0 and 3 and k = 9 at 1 and 2
    (every cluster pure: it splits each strategy further). About 6 s on 2 CPU cores."""
    from seethrough.data.fashion_mnist import load_fashion_mnist
    from seethrough.models.training import train_classifier

    train, test = load_fashion_mnist("train"), load_fashion_mnist("test")
    images, labels = train.images[:6000], train.labels[:6000]
    shirts = torch.nonzero(labels == WATERMARK_CLASS).flatten()
    images = _watermark(images, shirts[::2])
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 7 * 7, 10),
    )  # fmt: skip
    train_classifier(net, _inputs(images), labels, epochs=3, batch_size=64, seed=0)

    test_shirts = test.images[test.labels == WATERMARK_CLASS][:400]
    marked = torch.zeros(len(test_shirts), dtype=torch.bool)
    marked[::2] = True
    x = _inputs(_watermark(test_shirts, marked))
    with torch.no_grad():
        probabilities = net(x).softmax(dim=1)
    predicted = probabilities.argmax(dim=1)
    explanation = st.explain(net, x, "lrp", target=WATERMARK_CLASS)
    result = spray(
        explanation.attributions,
        labels=torch.full((len(x),), WATERMARK_CLASS),
        predicted=predicted,
        probability=probabilities.max(dim=1).values,
        seed=0,
        cls=WATERMARK_CLASS,
        class_name="Shirt",
        method="lrp",
    )
    truth = marked.numpy()
    assignment = result.assignment.numpy()
    assert _purity(assignment, truth) >= 0.9
    watermark_clusters = [c for c in result.clusters if truth[assignment == c.id].mean() > 0.5]
    assert watermark_clusters, "no cluster is mostly watermarked"
    covered = sum(int(truth[assignment == c.id].sum()) for c in watermark_clusters)
    assert covered >= 0.9 * truth.sum()  # the watermarked maps are in those clusters
    for cluster in watermark_clusters:  # classified as Shirt far more often than the rest
        assert cluster.differs and cluster.accuracy is not None
        assert cluster.rest_accuracy is not None
        assert cluster.accuracy.estimate > cluster.rest_accuracy
    # with k fixed at 2, the split is watermarked vs clean
    two = spray(explanation.attributions, clusters=2, seed=0)
    assert _purity(two.assignment.numpy(), truth) >= 0.9
    assert "Clever Hans" in result.describe().text("en")
