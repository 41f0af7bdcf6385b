"""What each module does: ablation, gradient analysis, probes, TCAV and module cards —
against hand computations, weight-level equivalents and planted structure."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from helpers import Failing, Snapshot, tiny_inputs, tiny_model
from seethrough.anatomy import (
    Ablation,
    ablate,
    ablate_weights,
    anatomy,
    collect_activations,
    concept_activation_vector,
    evaluate,
    fit_probe,
    gradient_analysis,
    probe_layers,
    surrogate_labels,
    tcav,
    tcav_concepts,
)
from seethrough.errors import InvalidInputError, InvalidOptionError, LayerError, TargetError
from seethrough.reporting.serialize import to_jsonable


def labelled(n: int = 24, seed: int = 3) -> tuple[nn.Module, Tensor, Tensor]:
    model = tiny_model()
    x = tiny_inputs(n=n, seed=seed)
    with torch.no_grad():
        logits = model(x)
    # labels: the prediction for most rows, another class for some (so accuracy < 1)
    y = logits.argmax(dim=1)
    y[::4] = (y[::4] + 1) % 5
    return model, x, y


def direct_evaluation(logits: Tensor, y: Tensor, classes: int) -> tuple[float, float, Tensor]:
    loss = F.cross_entropy(logits, y, reduction="none")
    hit = (logits.argmax(dim=1) == y).double()
    per_class = torch.tensor(
        [float(hit[y == c].mean()) if (y == c).any() else float("nan") for c in range(classes)],
        dtype=torch.float64,
    )
    return float(hit.mean()), float(loss.mean()), per_class


class Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.fc1 = nn.Linear(6, 8).double()
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(8, 3).double()

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x.flatten(1))))


class ReadsBatchFirst(nn.Module):
    """Reads the batch size from its input and reuses it after the layer — the batched
    sweep cannot expand the layer's output here and must repeat the inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = tiny_model()

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        h = self.inner.relu(self.inner.bn1(self.inner.conv1(x)))
        h = self.inner.relu(self.inner.bn2(self.inner.conv2(h)))
        h = F.relu(self.inner.conv3(h))
        return self.inner.fc(self.inner.pool(h).view(n, -1))


def test_evaluation_matches_a_direct_computation_and_ablating_nothing_is_the_identity() -> None:
    model, x, y = labelled()
    with torch.no_grad():
        acc, loss, per_class = direct_evaluation(model(x), y, 5)
    e = evaluate(model, x, y, batch_size=5)
    assert e.accuracy == pytest.approx(acc, abs=1e-12)
    assert e.loss == pytest.approx(loss, abs=1e-9)
    torch.testing.assert_close(e.class_accuracy, per_class, equal_nan=True)
    assert 0 < acc < 1
    nothing = ablate(model, x, y, [Ablation("conv2", ()), Ablation("bn1", (), "mean")])
    for ev in nothing.evaluations:
        assert ev.accuracy == e.accuracy and ev.loss == pytest.approx(e.loss, abs=1e-12)
    assert nothing.accuracy_drop.abs().max() == 0


def test_hook_ablation_of_a_channel_equals_zeroing_its_kernel_in_a_copy() -> None:
    model, x, y = labelled()
    snap = Snapshot.take(model, x)
    channels = [(0,), (3,), (1, 4, 5)]
    by_hook = ablate(model, x, y, [Ablation("conv1", c) for c in channels], batch_size=16)
    assert by_hook.batched
    for c, ev in zip(channels, by_hook.evaluations):
        copy = ablate_weights(model, "conv1", list(c))
        with torch.no_grad():
            acc, loss, per_class = direct_evaluation(copy(x), y, 5)
        assert ev.accuracy == pytest.approx(acc, abs=1e-12)
        assert ev.loss == pytest.approx(loss, abs=1e-9)
        torch.testing.assert_close(ev.class_accuracy, per_class, equal_nan=True)
    snap.assert_unchanged(model, x)
    assert any(abs(float(d)) > 0 for d in by_hook.loss_increase)  # ablations do something


def test_batched_sweep_equals_separate_calls_and_falls_back_when_the_batch_is_read() -> None:
    model, x, y = labelled(n=20)
    sweep = [Ablation("conv2", (c,)) for c in range(8)] + [Ablation("bn1", (2,), "resample")]
    together = ablate(model, x, y, sweep, batch_size=48, seed=4)
    for k, a in enumerate(sweep):
        alone = ablate(model, x, y, [a], batch_size=7, seed=4 + k)
        assert alone.evaluations[0].accuracy == together.evaluations[k].accuracy
        assert alone.evaluations[0].loss == pytest.approx(together.evaluations[k].loss, abs=1e-9)
    wrapped = ReadsBatchFirst().eval()
    fallback = ablate(wrapped, x, y, [Ablation("inner.conv2", (c,)) for c in range(8)])
    assert not fallback.batched
    for k in range(8):
        assert fallback.evaluations[k].loss == pytest.approx(together.evaluations[k].loss, abs=1e-9)


def test_mean_ablation_equals_a_hand_computation() -> None:
    model = Mlp().eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (30,), generator=g)
    ref = torch.randn(10, 6, generator=g, dtype=torch.float64)
    result = ablate(model, x, y, [Ablation("fc1", (2, 5), "mean")], reference=ref)
    with torch.no_grad():
        h = model.fc1(x)
        h[:, [2, 5]] = model.fc1(ref)[:, [2, 5]].mean(dim=0)
        acc, loss, per_class = direct_evaluation(model.fc2(torch.relu(h)), y, 3)
    ev = result.evaluations[0]
    assert ev.accuracy == pytest.approx(acc, abs=1e-12)
    assert ev.loss == pytest.approx(loss, abs=1e-12)
    torch.testing.assert_close(ev.class_accuracy, per_class)


def test_bad_ablations_are_refused_and_the_model_survives_errors() -> None:
    model, x, y = labelled()
    with pytest.raises(LayerError, match="no layer"):
        ablate(model, x, y, [Ablation("conv9", (0,))])
    with pytest.raises(InvalidOptionError, match=r"out of range.*0 to 5"):
        ablate(model, x, y, [Ablation("conv1", (6,))])
    with pytest.raises(InvalidOptionError, match="unknown ablation mode"):
        ablate(model, x, y, [Ablation("conv1", (0,), "noise")])
    with pytest.raises(InvalidInputError, match="one label per input"):
        ablate(model, x, y[:-1], [])
    with pytest.raises(InvalidInputError, match="class indices 0 to 4"):
        evaluate(model, x, y + 5)
    with pytest.raises(LayerError, match="weight ablation needs a conv or linear"):
        ablate_weights(model, "bn1", [0])
    failing = Failing(tiny_model(), fail_on=2).eval()
    snap = Snapshot.take(failing, x)
    with pytest.raises(RuntimeError, match="boom"):
        ablate(failing, x, y, [Ablation("inner.conv1", (0,))])
    snap.assert_unchanged(failing, x)


def test_gradient_analysis_of_a_linear_model_is_hand_computable() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).double().eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 3, 2, 2, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (16,), generator=g)
    snap = Snapshot.take(model, x)
    result = gradient_analysis(model, x, y, ["1"], batch_size=5)
    snap.assert_unchanged(model, x)
    m = result.module("1")
    with torch.no_grad():
        logits = model(x)
        dz = torch.softmax(logits, dim=1) - F.one_hot(y, 3).double()  # dLoss/dlogits
    norms = dz.norm(dim=1)
    assert m.output_grad == pytest.approx(float(norms.mean()), rel=1e-12)
    for c in range(3):
        rows = y == c
        assert float(m.class_output_grad[c]) == pytest.approx(float(norms[rows].mean()), rel=1e-12)
        dw = dz[rows].T @ x.flatten(1)[rows] / rows.sum()
        db = dz[rows].sum(dim=0) / rows.sum()
        expected = float(torch.cat([dw.reshape(-1), db]).norm())
        assert float(m.class_param_grad[c]) == pytest.approx(expected, rel=1e-10)
    dw, db = dz.T @ x.flatten(1) / 16, dz.mean(dim=0)
    assert m.param_grad == pytest.approx(float(torch.cat([dw.reshape(-1), db]).norm()), rel=1e-10)
    # gradient × activation per output unit: mean over images of dz · z
    torch.testing.assert_close(m.grad_x_activation, (dz * logits).mean(dim=0))
    score = gradient_analysis(model, x, y, ["1"], objective="score").module("1")
    assert score.output_grad == pytest.approx(1.0)  # d logit_y / d logits is one-hot


def test_gradient_analysis_ranks_modules_and_leaves_no_trace() -> None:
    model, x, y = labelled()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    model.fc.weight.requires_grad_(False)
    snap = Snapshot.take(model, x)
    result = gradient_analysis(model, x, y)
    snap.assert_unchanged(model, x)
    assert [m.name for m in result.modules] == ["conv1", "bn1", "conv2", "bn2", "conv3", "fc"]
    ranking = result.ranking()
    values = [result.module(n).output_grad for n in ranking]
    assert values == sorted(values, reverse=True)
    json.dumps(to_jsonable(result), allow_nan=False)


def test_probe_recovers_a_planted_linear_feature() -> None:
    g = torch.Generator().manual_seed(0)
    features = torch.randn(1200, 20, generator=g)
    w = torch.randn(20, generator=g)
    labels = (features @ w > 0).long()
    probe = fit_probe(features, labels, seed=1)
    assert probe.test_accuracy > 0.97
    assert probe.test_size == 300 and probe.train_size == 900
    # per held-out row: what intervals and paired tests between probes are built on
    assert probe.test_correct is not None and probe.test_index is not None
    assert float(probe.test_correct.double().mean()) == probe.test_accuracy
    predicted = probe.predict(features[probe.test_index])
    assert torch.equal(predicted == labels[probe.test_index], probe.test_correct)
    cosine = float(probe.direction() @ (w / w.norm()))
    assert cosine > 0.95
    noise = fit_probe(features, torch.randint(0, 2, (1200,), generator=g), seed=1)
    assert noise.test_accuracy < 0.6  # nothing to find: about chance


def test_surrogate_labels() -> None:
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    groups = {"upper": [0, 2, 4], "lower": [1, 3], "other": [5]}
    assert surrogate_labels(labels, groups).tolist() == [0, 1, 0, 1, 0, 2]
    with pytest.raises(InvalidOptionError, match=r"classes \[5\] belong to no"):
        surrogate_labels(labels, {"upper": [0, 2, 4], "lower": [1, 3]})


def test_probe_layers_with_baselines_on_a_planted_layer() -> None:
    model = Mlp().eval()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(600, 6, generator=g, dtype=torch.float64)
    with torch.no_grad():
        y = (model.fc1(x)[:, 3] > 0).long()  # planted: one unit of fc1 holds the label
    snap = Snapshot.take(model, x)
    table = probe_layers(model, x, y, ["fc1"], l2=1e-4)
    snap.assert_unchanged(model, x)
    assert table.trained[0].test_accuracy > 0.97
    assert table.random is not None and table.pixels is not None
    assert table.pixels.test_accuracy > 0.9  # fc1 is linear in the pixels
    # every probe is measured on the same held-out rows (paired comparisons)
    assert table.pixels.test_index is not None
    for p in (*table.trained, *table.random):
        assert p.test_index is not None and torch.equal(p.test_index, table.pixels.test_index)
    json.dumps(to_jsonable(table), allow_nan=False)


class Planted(nn.Module):
    """Class 1's logit is the total of channel 0 at ``feat``; class 0's that of channel 1."""

    def __init__(self) -> None:
        super().__init__()
        self.feat = nn.Conv2d(2, 2, 1, bias=False).double()
        with torch.no_grad():
            self.feat.weight.copy_(torch.eye(2)[:, :, None, None])

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.feat(x)).sum(dim=(2, 3))
        return torch.stack([h[:, 1], h[:, 0]], dim=1)


def test_tcav_finds_a_planted_concept_and_not_a_random_one() -> None:
    model = Planted().eval()
    g = torch.Generator().manual_seed(0)
    pool = torch.randn(5000, 2, 4, 4, generator=g, dtype=torch.float64)
    concept = torch.randn(30, 2, 4, 4, generator=g, dtype=torch.float64)
    concept[:, 0] += 2.0  # the concept: strong channel 0, which drives class 1
    inputs = torch.randn(40, 2, 4, 4, generator=g, dtype=torch.float64)
    snap = Snapshot.take(model, inputs)
    found = tcav(model, "feat", concept, pool, inputs, 1, runs=8, null_sets=149, concept_name="ch0")
    snap.assert_unchanged(model, inputs)
    # the gradient of class 1 is 1 on channel 0 where it is positive, 0 elsewhere: a CAV
    # pointing along channel 0 gives a positive derivative for (almost) every input
    assert float(found.scores.min()) >= 0.9 and found.cav_accuracy.min() > 0.95
    assert found.significant and found.p_value < 0.01
    assert found.p_value == pytest.approx(found.smallest_p)  # more extreme than every null set
    assert found.null_scores.shape == (149, 8)
    assert float(found.null_means.mean()) < 0.8  # random directions: mixed signs
    random = tcav(model, "feat", pool[:30], pool[30:], inputs, 1, runs=8)
    assert not random.significant
    again = tcav(model, "feat", pool[:30], pool[30:], inputs, 1, runs=8)
    torch.testing.assert_close(again.null_scores, random.null_scores, rtol=0, atol=0)
    assert again.p_value == random.p_value
    json.dumps(to_jsonable(found), allow_nan=False)
    with pytest.raises(InvalidInputError, match="need at least"):
        tcav(model, "feat", concept, pool[:100], inputs, 1, runs=8)
    with pytest.raises(InvalidOptionError, match="smallest p-value is 1/20"):
        tcav(model, "feat", concept, pool, inputs, 1, null_sets=19, alpha=0.05)


class Gated(nn.Module):
    """Two classes read from ``feat`` (64 linear units) through a ReLU: the class-1
    gradient at ``feat`` changes from input to input, so a CAV's TCAV score depends on
    its direction, and a concept set's quirks (shared by all its runs) move it."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(7)
        self.feat = nn.Linear(width, width).double()
        self.head = nn.Linear(width, 2).double()
        with torch.no_grad():
            w = torch.randn(width, width, generator=g, dtype=torch.float64) / width**0.5
            self.feat.weight.copy_(w)
            self.feat.bias.zero_()
            self.head.weight.copy_(torch.randn(2, width, generator=g, dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(torch.relu(self.feat(x)))


def test_tcav_p_values_are_calibrated_when_the_concept_is_random() -> None:
    """The null hypothesis true by construction: the "concept" is another draw from the
    pool's distribution. Over 100 independent repetitions the share of p-values at or
    below q must not exceed q beyond binomial noise (one-sided 99.9 % bound), and the
    p-values must not pile up near 1 either (q = 0.5, two-sided). The earlier t-test of
    the concept's runs against changing stand-ins gave p ≤ 0.1, 0.3, 0.5 in 29 %, 53 %,
    73 % of these repetitions."""
    from scipy.stats import binom

    model = Gated().eval()
    n, runs, null_sets, reps = 10, 10, 9, 100
    inputs = torch.randn(60, 64, generator=torch.Generator().manual_seed(99), dtype=torch.float64)
    p_values, significant = [], 0
    for rep in range(reps):
        g = torch.Generator().manual_seed(1000 + rep)
        concept = torch.randn(n, 64, generator=g, dtype=torch.float64)
        pool = torch.randn((runs + null_sets) * n, 64, generator=g, dtype=torch.float64)
        result = tcav(
            model,
            "feat",
            concept,
            pool,
            inputs,
            1,
            runs=runs,
            null_sets=null_sets,
            alpha=0.2,
            seed=rep,
        )
        p_values.append(result.p_value)
        significant += result.significant
    p = torch.tensor(p_values)
    for q in (0.1, 0.3, 0.5):
        count = int((p <= q + 1e-9).sum())
        assert count <= binom.ppf(0.999, reps, q), (q, count)
    assert int((p <= 0.5 + 1e-9).sum()) >= binom.ppf(0.001, reps, 0.5)
    assert significant <= binom.ppf(0.999, reps, 0.2)


def test_tcav_verdict_is_the_same_for_disjoint_sets_of_a_planted_concept() -> None:
    """Four disjoint example sets of one planted concept (and four seeds of the random
    draws) must agree: significant, more extreme than every null set."""
    model = Planted().eval()
    g = torch.Generator().manual_seed(4)
    pool = torch.randn(3000, 2, 4, 4, generator=g, dtype=torch.float64)
    examples = torch.randn(4 * 20, 2, 4, 4, generator=g, dtype=torch.float64)
    examples[:, 0] += 1.0  # a weaker concept than above
    inputs = torch.randn(40, 2, 4, 4, generator=g, dtype=torch.float64)
    sets = {f"set {i}": examples[20 * i : 20 * (i + 1)] for i in range(4)}
    for seed in range(2):
        results = tcav_concepts(
            model, "feat", sets, pool, inputs, 1, runs=6, null_sets=79, seed=seed
        )
        assert all(r.significant for r in results)
        assert all(r.p_value == pytest.approx(1 / 80) for r in results)
        assert all(r.null_scores is results[0].null_scores for r in results)  # one shared null


def test_cav_is_logistic_regression_on_raw_activations() -> None:
    """Kim et al. fit the CAV on raw activations: ours equals scikit-learn's
    L2-regularised logistic regression (C = 1/(l2·m)) on the same fitting rows, to 1e-6.
    Standardising the features first (the earlier fit) tilts the direction towards the
    low-variance units — here unit 0, with a hundredth of the others' spread."""
    from sklearn.linear_model import LogisticRegression

    g = torch.Generator().manual_seed(5)
    scale = torch.tensor([0.01, 1.0, 3.0, 1.0, 0.5, 2.0], dtype=torch.float64)
    random = torch.randn(40, 6, generator=g, dtype=torch.float64) * scale + 1.0
    concept = torch.randn(40, 6, generator=g, dtype=torch.float64) * scale + 1.0
    concept[:, 0] += 0.005
    concept[:, 2] += 2.0
    cav, accuracy, held_out = concept_activation_vector(concept, random, seed=3, l2=1e-2)
    assert held_out == 24  # 0.3 of each side
    # the same fitting rows as the function's stratified split (seed 3)
    gen = torch.Generator().manual_seed(3)
    train = torch.cat(
        [torch.randperm(40, generator=gen)[:28], torch.randperm(40, generator=gen)[:28] + 40]
    )
    x = torch.cat([random, concept])[train].numpy()
    y = torch.cat([torch.zeros(40), torch.ones(40)])[train].numpy()
    sk = LogisticRegression(
        C=1 / (1e-2 * len(x)), solver="newton-cholesky", tol=1e-12, max_iter=100
    )
    w = torch.from_numpy(sk.fit(x, y).coef_[0])
    torch.testing.assert_close(cav, w / w.norm(), rtol=0, atol=1e-6)
    assert 0.5 < accuracy <= 1.0
    # the same regression on standardised features, mapped back to raw space (1/std):
    # a different direction (78° away here), almost entirely along the low-variance unit 0
    std = x.std(axis=0, ddof=1)
    z = (x - x.mean(axis=0)) / std
    standardised = torch.from_numpy(sk.fit(z, y).coef_[0] / std)
    standardised = standardised / standardised.norm()
    assert float(standardised @ cav) < 0.5
    assert abs(float(standardised[0])) > 0.99 and abs(float(cav[0])) < 0.5


def test_anatomy_cards_on_the_tiny_model() -> None:
    model, x, y = labelled(n=40)
    snap = Snapshot.take(model, x)
    result = anatomy(model, x, y, sweep_size=20, probe_size=40)
    snap.assert_unchanged(model, x)
    assert [c.name for c in result.cards] == ["conv1", "conv2", "conv3", "fc"]
    assert [c.module for c in result.cards] == ["bn1", "bn2", "conv3", "fc"]
    card = result.card("conv2")
    assert card.channel_drop is not None and len(card.channel_drop) == 8
    direct = ablate(model, x[:20], y[:20], [Ablation("bn2", (c,)) for c in range(8)])
    torch.testing.assert_close(card.channel_drop, direct.accuracy_drop)
    assert card.cumulative[-1][0] == 8
    assert card.channel_order == tuple(direct.ranking())
    everything = ablate(model, x[:20], y[:20], [Ablation("bn2", tuple(range(8)))])
    assert card.cumulative[-1][1] == pytest.approx(float(everything.accuracy_drop[0]))
    assert card.gradients is not None and card.probe is not None
    json.dumps(to_jsonable(result), allow_nan=False)


def test_collected_features_are_flattened_or_pooled_to_the_cap() -> None:
    model, x, _ = labelled(n=6)
    with torch.no_grad():
        out = model.bn2(model.conv2(model.relu(model.bn1(model.conv1(x)))))  # (6, 8, 12, 12)
    full = collect_activations(model, x, "bn2", max_features=None)
    torch.testing.assert_close(full, out.reshape(6, -1).float())
    pooled = collect_activations(model, x, "bn2", max_features=300)  # 8·6² = 288 ≤ 300
    expected = F.adaptive_avg_pool2d(out, 6).reshape(6, -1).float()
    torch.testing.assert_close(pooled, expected)
    with pytest.raises(InvalidOptionError, match="no spatial grid"):
        collect_activations(model, x, "fc", max_features=3)
    # float32, flattened: the in-place ReLU after bn2 must not overwrite what was kept
    single = tiny_model(dtype=torch.float32)
    with torch.no_grad():
        h = single.bn2(single.conv2(single.relu(single.bn1(single.conv1(x.float())))))
    assert (h < 0).any()
    kept = collect_activations(single, x.float(), "bn2", max_features=None)
    torch.testing.assert_close(kept, h.reshape(6, -1))


def test_gradient_analysis_refuses_a_label_out_of_range() -> None:
    """The tester's case: label 99 on a 5-class model ended in a shape RuntimeError."""
    model = tiny_model()
    x = tiny_inputs(n=2)
    with pytest.raises(TargetError, match="label 99 is out of range: the model has 5 classes"):
        gradient_analysis(model, x, torch.tensor([1, 99]), ["conv3"], batch_size=2)
