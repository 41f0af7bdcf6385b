"""robust.alignment and robust.compare: Etmann's identity on linear models, the study's reuse
of the trust/inside metrics (equality with calling them directly), the model, input and RNG
untouched (also on raise), determinism, bad input, words and tables."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import seethrough as st
from helpers import Failing, Snapshot, tiny_inputs, tiny_model
from seethrough import robust
from seethrough.attribution import explain
from seethrough.core.stats import bootstrap_ci
from seethrough.data.fashion_mnist import FASHION_MEAN, FASHION_STD, load_fashion_mnist
from seethrough.errors import (
    InvalidInputError,
    InvalidOptionError,
    ModelStateError,
    TargetError,
)
from seethrough.inside import class_logit, maximize
from seethrough.models.preprocess import Preprocess
from seethrough.models.zoo import LoadedModel
from seethrough.robust.compare import SMALL_TRANSFORMS, STATISTICS
from seethrough.trust import edge_similarity_of, model_randomization
from seethrough.trust.faithfulness import deletion, insertion, max_sensitivity
from words_helpers import assert_numbers_in, assert_round_trip

TOL = 1e-6  # the plan's tolerance for Etmann's identity (float64; measured error ~1e-15)


def linear(weight: Tensor, bias: Tensor | None = None) -> nn.Module:
    """A float64 linear classifier on flattened images, eval mode."""
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None).double()
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return nn.Sequential(nn.Flatten(), layer).eval()


def boundary_distance(weight: Tensor, p: Tensor, y: Tensor) -> Tensor:
    """Distance from each ``p`` to the nearest boundary between class ``y`` and another class
    of the bias-free linear classifier ``weight``, from the weights alone:
    ``min_j |⟨w_y − w_j, p⟩| / ‖w_y − w_j‖``."""
    flat = p.flatten(1)
    out = []
    for row, label in zip(flat, y.tolist()):
        normals = weight[label][None] - torch.cat([weight[:label], weight[label + 1 :]])
        out.append(((normals @ row).abs() / normals.norm(dim=1)).min())
    return torch.stack(out)


# ------------------------------------------------------------------- Etmann's identity


def test_etmann_identity_binary_linear_model() -> None:
    """Two classes, no bias: alignment · ‖x‖ = |Ψ(x)| / ‖∇Ψ‖ = the distance to the decision
    boundary, for every image and either label (a label the model does not predict is the
    boundary the image has crossed)."""
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(2, 16, generator=g, dtype=torch.float64)
    x = torch.randn(40, 1, 4, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (40,), generator=g)
    got = robust.alignment(linear(weight), x, y, space="input") * x.flatten(1).norm(dim=1)
    torch.testing.assert_close(got, boundary_distance(weight, x, y), rtol=0, atol=TOL)
    # the point the distance reaches lies on the boundary: both logits tie there
    w = weight[0] - weight[1]
    foot = x.flatten(1) - ((x.flatten(1) @ w) / w.dot(w))[:, None] * w
    logits = foot @ weight.T
    torch.testing.assert_close(logits[:, 0], logits[:, 1], rtol=0, atol=1e-12)


def test_etmann_identity_multiclass_with_fixed_runner_up() -> None:
    """Four classes with orthonormal weight rows: every pair's boundary normal has the same
    norm, so the runner-up's boundary is the nearest and alignment · ‖x‖ is the distance to
    the decision boundary (labels = the predicted classes)."""
    g = torch.Generator().manual_seed(1)
    q, _ = torch.linalg.qr(torch.randn(16, 4, generator=g, dtype=torch.float64))
    weight = 3.0 * q.T  # (4, 16), orthogonal rows of equal norm
    x = torch.randn(50, 1, 4, 4, generator=g, dtype=torch.float64)
    model = linear(weight)
    y = model(x).argmax(dim=1)
    got = robust.alignment(model, x, y, space="input") * x.flatten(1).norm(dim=1)
    torch.testing.assert_close(got, boundary_distance(weight, x, y), rtol=0, atol=TOL)


def test_etmann_identity_in_pixel_units() -> None:
    """space="pixels": a model that is bias-free linear in *pixels* behind a normalisation
    (its input layer undoes ``(p − mean) / std``) satisfies the identity in pixel units,
    through the chain rule; in input units it has a bias and does not."""
    g = torch.Generator().manual_seed(2)
    weight = torch.randn(2, 16, generator=g, dtype=torch.float64)
    mean, std = 0.3, 0.5
    module = linear(weight * std, weight.sum(dim=1) * mean)  # f(x) = W (x·std + mean)
    net = LoadedModel(
        module, Preprocess(size=4, mean=(mean,), std=(std,), channels=1), None, "lin", "t"
    )
    pixels = torch.rand(30, 1, 4, 4, generator=g, dtype=torch.float64)
    x = (pixels - mean) / std
    y = torch.randint(0, 2, (30,), generator=g)
    got = robust.alignment(net, x, y) * pixels.flatten(1).norm(dim=1)
    expected = boundary_distance(weight, pixels, y)
    torch.testing.assert_close(got, expected, rtol=0, atol=TOL)
    in_input = robust.alignment(net, x, y, space="input") * x.flatten(1).norm(dim=1)
    assert (in_input - expected).abs().max() > 1e-3


class FashionPixels(nn.Module):
    """The Fashion CNN taking pixels in [0, 1]: its normalisation as a layer."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, p: Tensor) -> Tensor:
        return self.net((p - FASHION_MEAN) / FASHION_STD)


@pytest.fixture(scope="module")
def fashion() -> tuple[LoadedModel, Tensor, Tensor]:
    test = load_fashion_mnist("test")
    return st.load_model("fashion-cnn"), test.inputs(0, 32), test.labels[:32]


def test_alignment_in_pixels_equals_a_model_that_takes_pixels(fashion) -> None:
    """On the real Fashion CNN, space="pixels" (x mapped back, gradient through the chain
    rule) equals the plain input-space alignment of the same network with the
    normalisation as its first layer, fed pixels; and the median lies in (0, 1)."""
    net, x, y = fashion
    pixels = x * FASHION_STD + FASHION_MEAN
    ours = robust.alignment(net, x, y)
    direct = robust.alignment(FashionPixels(net.module).eval(), pixels, y, space="input")
    torch.testing.assert_close(ours, direct, rtol=1e-4, atol=1e-6)  # float32 gradients
    assert 0.0 < float(ours.median()) < 1.0
    assert bool(((ours >= 0) & (ours <= 1)).all())


def test_alignment_batch_equals_single_rows() -> None:
    model, x = tiny_model(), tiny_inputs(5)
    y = torch.tensor([0, 1, 2, 3, 4])
    batch = robust.alignment(model, x, y, space="input")
    rows = torch.cat(
        [robust.alignment(model, x[i : i + 1], y[i : i + 1], space="input") for i in range(5)]
    )
    torch.testing.assert_close(batch, rows, rtol=1e-12, atol=0)
    chunked = robust.alignment(model, x, y, space="input", batch_size=2)
    torch.testing.assert_close(batch, chunked, rtol=1e-12, atol=0)


def test_alignment_leaves_model_input_and_rng_untouched() -> None:
    model, x = tiny_model(), tiny_inputs(3)
    before = Snapshot.take(model, x)
    robust.alignment(model, x, [0, 1, 2], space="input")
    before.assert_unchanged(model, x)


def test_alignment_bad_input() -> None:
    model, x = tiny_model(), tiny_inputs(3)
    with pytest.raises(InvalidOptionError, match="unknown space"):
        robust.alignment(model, x, [0, 1, 2], space="pixel")
    with pytest.raises(InvalidOptionError, match="needs the model's normalisation"):
        robust.alignment(model, x, [0, 1, 2])
    with pytest.raises(TargetError, match="2 labels for 3 images"):
        robust.alignment(model, x, [0, 1], space="input")
    with pytest.raises(TargetError, match="integer class indices"):
        robust.alignment(model, x, torch.zeros(3), space="input")
    with pytest.raises(TargetError, match=r"out of range.*5 classes"):
        robust.alignment(model, x, [0, 1, 7], space="input")


# ------------------------------------------------------------------------------ compare

FAST: dict[str, Any] = {
    "methods": ("gradient", "grad_cam"),
    "resamples": 200,
    "sanity_images": 4,
    "sensitivity_images": 3,
    "sensitivity_samples": 3,
    "am_steps": 8,
}


def tiny_loaded(seed: int, mean: float = 0.4) -> LoadedModel:
    pre = Preprocess(size=12, mean=(mean, 0.5, 0.6), std=(0.2, 0.25, 0.3))
    return LoadedModel(tiny_model(seed), pre, None, f"tiny-{seed}", "test")


@pytest.fixture(scope="module")
def tiny_study() -> tuple[
    robust.RobustnessComparison, list[LoadedModel], LoadedModel, Tensor, Tensor
]:
    models = [tiny_loaded(0), tiny_loaded(1)]
    judge = tiny_loaded(2)
    x = tiny_inputs(6)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    return robust.compare(models, x, y, judge=judge, **FAST), models, judge, x, y


def test_compare_reuses_the_trust_and_inside_functions(tiny_study) -> None:
    """Every number equals the library's own function called directly on the same images,
    classes and seed (the study re-implements none of them)."""
    study, models, judge, x, y = tiny_study
    s = study.settings
    net = models[0]
    ex = explain(net, x, ["gradient", "grad_cam"], y, seed=0)
    edges = edge_similarity_of(ex, labels=["gradient", "grad_cam"])  # the sanity check's own
    for label, e in zip(("gradient", "grad_cam"), ex):
        row = study.method("tiny-0", label)
        sim = edges.similarity(label)
        assert row.edge_ssim.value == float(np.median(sim.ssim[0].numpy()))
        assert row.edge_spearman.value == float(np.nanmedian(sim.spearman_abs[0].numpy()))
        assert row.deletion is not None and row.insertion is not None
        assert row.deletion.value == float(np.mean(deletion(net.module, e, seed=0).scores.numpy()))
        assert row.insertion.value == float(
            np.mean(insertion(net.module, e, seed=0).scores.numpy())
        )
        head = explain(net, x[:3], label, y[:3], seed=0)
        sens = max_sensitivity(net.module, head, radius=0.05 / 0.3, samples=3, seed=0)
        assert row.max_sensitivity is not None
        # the study's maps come from the batch of six: equal up to BLAS rounding
        assert row.max_sensitivity.value == pytest.approx(np.median(sens.scores.numpy()), rel=1e-12)
    cascade = model_randomization(
        net, x[:4], ["gradient", "grad_cam"], y[:4], metrics=("spearman_abs",)
    )
    for label in ("gradient", "grad_cam"):
        row, sim = study.method("tiny-0", label), cascade.similarity(label)
        medians = [float(np.nanmedian(v.numpy())) for v in sim.spearman_abs]
        first = float(np.nanmedian(sim.self_check_values["spearman_abs"].numpy()))
        assert row.sanity_curve == (first, *medians)
        assert row.sanity_layers == ("original", *(step.name for step in cascade.steps))
        assert row.sanity_final is not None and row.sanity_final.value == medians[-1]
    assert study.method("tiny-0", "gradient").sanity_curve[0] == 1.0  # deterministic method
    m = study.model("tiny-0")
    align = robust.alignment(net, x, y)
    torch.testing.assert_close(m.alignment_values, align, rtol=0, atol=0)
    assert m.alignment.value == float(np.median(align.numpy()))
    with torch.no_grad():
        accuracy = float((net.module(x).argmax(dim=1) == y).double().mean())
    assert m.clean_accuracy.value == accuracy
    ci = bootstrap_ci(
        lambda a: float(np.median(a)), align.numpy(), level=0.95, resamples=200, seed=0
    )
    assert (m.alignment.low, m.alignment.high, m.alignment.n) == (ci.low, ci.high, 6)
    # activation maximisation: inside.maximize with the stated settings, in input units
    vis = maximize(
        net.module,
        [class_logit(c) for c in range(5)],
        steps=8,
        seed=0,
        size=(12, 12),
        channels=3,
        normalize=net.preprocess,
        transforms=SMALL_TRANSFORMS,
    )
    mean = torch.tensor([0.4, 0.5, 0.6], dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor([0.2, 0.25, 0.3], dtype=torch.float64).view(1, 3, 1, 1)
    assert m.am_images is not None
    torch.testing.assert_close(m.am_images, (vis.images.double() - mean) / std, rtol=0, atol=0)
    with torch.no_grad():
        hits = int((judge.module(m.am_images).argmax(dim=1) == torch.arange(5)).sum())
    assert m.recognised is not None
    assert (m.recognised.value, m.recognised.n) == (hits / 5, 5)
    assert s.sensitivity_radius_input == pytest.approx(0.05 / 0.3)  # largest std: inside the box
    assert s.alignment_space == "pixels"
    assert s.am_transforms == "small"


def test_compare_clopper_pearson_interval(tiny_study) -> None:
    """recognised's interval is the exact binomial one (hand check with scipy's beta)."""
    from scipy.stats import beta

    m = tiny_study[0].model("tiny-1")
    r = m.recognised
    k, n = round(r.value * r.n), r.n
    low = 0.0 if k == 0 else beta.ppf(0.025, k, n - k + 1)
    high = 1.0 if k == n else beta.ppf(0.975, k + 1, n - k)
    assert (r.low, r.high) == pytest.approx((low, high), abs=1e-12)


def test_compare_untouched_and_deterministic(tiny_study) -> None:
    study, models, judge, x, y = tiny_study
    snaps = [Snapshot.take(m.module, x) for m in (*models, judge)]
    numpy_state = np.random.get_state(legacy=False)
    again = robust.compare(models, x, y, judge=judge, **FAST)
    for snap, m in zip(snaps, (*models, judge)):
        snap.assert_unchanged(m.module, x)
    assert str(np.random.get_state(legacy=False)) == str(numpy_state)
    first, second = study.to_dict(), again.to_dict()
    first["settings"].pop("seconds")
    second["settings"].pop("seconds")
    assert first == second
    for key, value in study.maps.items():
        assert torch.equal(value, again.maps[key])
    for a, b in zip(study.models, again.models):
        assert a.am_images is not None and b.am_images is not None
        assert torch.equal(a.am_images, b.am_images)
    other = robust.compare(models, x, y, **{**FAST, "seed": 1, "sanity": False})
    assert (
        other.method("tiny-0", "gradient").deletion != study.method("tiny-0", "gradient").deletion
    )


def test_compare_untouched_when_it_raises() -> None:
    inner = tiny_model(3)
    failing = Failing(inner, fail_on=6).eval()
    plain, x = tiny_model(0), tiny_inputs(4)  # tiny_model seeds the global RNG: before the snapshot
    before = Snapshot.take(failing, x)
    with pytest.raises(RuntimeError, match="boom"):
        robust.compare([plain, failing], x, [0, 1, 2, 3], **FAST)
    before.assert_unchanged(failing, x)


def test_compare_results_are_shaped_as_documented(tiny_study) -> None:
    study = tiny_study[0]
    assert [m.name for m in study.models] == ["tiny-0", "tiny-1"]
    assert [(r.model, r.method) for r in study.methods] == [
        ("tiny-0", "gradient"),
        ("tiny-0", "grad_cam"),
        ("tiny-1", "gradient"),
        ("tiny-1", "grad_cam"),
    ]
    assert study.inputs.shape == (6, 3, 12, 12)
    assert study.maps[("tiny-1", "grad_cam")].shape == (6, 1, 12, 12)  # upsampled, raw
    assert study.models[0].am_images.shape == (5, 3, 12, 12)
    assert study.settings.sanity_images == 4
    assert study.settings.statistics == dict(STATISTICS)
    row = study.method("tiny-0", "gradient")
    assert len(row.sanity_curve) == len(row.sanity_layers)
    assert study.estimate("tiny-0", None, "alignment") is study.models[0].alignment
    assert study.estimate("tiny-1", "grad_cam", "deletion") is study.methods[3].deletion
    with pytest.raises(InvalidOptionError, match="unknown metric"):
        study.estimate("tiny-0", "gradient", "accuracy")
    with pytest.raises(InvalidOptionError, match="no model 'x'"):
        study.estimate("x", None, "alignment")
    with pytest.raises(InvalidOptionError, match="name the method"):
        study.estimate("tiny-0", None, "deletion")


def test_compare_words_table_and_json(tiny_study) -> None:
    """Every number of describe() (EN, ZH) and of table() is a number of to_dict()."""
    study = tiny_study[0]
    data = json.loads(json.dumps(study.to_dict()))  # JSON-safe
    assert_round_trip(study.describe(), data)
    assert_numbers_in(study.table(), data, ignore=["tiny-0", "tiny-1"])
    assert len(study.table().splitlines()) == 4 + len(study.methods)
    keys = {f.key for f in study.describe().findings}
    assert {"robust.compare.model", "robust.compare.recognised", "robust.compare.edges"} <= keys


def test_compare_optional_parts_and_progress() -> None:
    seen: list[tuple[int, int]] = []
    x = tiny_inputs(3)
    study = robust.compare(
        [tiny_model(0)],
        x,
        [0, 1, 2],
        methods=["gradient"],
        sanity=False,
        faithfulness=False,
        max_sensitivity=False,
        activation_maximization=False,
        resamples=50,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(1, 3), (2, 3), (3, 3)]
    row, m = study.methods[0], study.models[0]
    assert (row.deletion, row.max_sensitivity, row.sanity_curve, m.am_images) == (None,) * 4
    assert study.settings.alignment_space == "input"  # plain module: its input is the pixels
    assert m.name == "model 0"
    keys = [f.key for f in study.describe().findings]
    assert "robust.compare.single" in keys  # one model: values, no ranking
    assert_round_trip(study.describe(), study.to_dict(), ignore=["model 0"])


def test_compare_bad_input() -> None:
    x, y = tiny_inputs(3), [0, 1, 2]
    a, b = tiny_loaded(0), tiny_loaded(1, mean=0.45)
    with pytest.raises(InvalidInputError, match="no model given"):
        robust.compare([], x, y)
    with pytest.raises(InvalidInputError, match="list of models"):
        robust.compare(a, x, y)  # type: ignore[arg-type]
    with pytest.raises(TargetError, match="2 labels for 3 images"):
        robust.compare([a], x, [0, 1])
    with pytest.raises(InvalidInputError, match="differently preprocessed"):
        robust.compare([a, b], x, y)
    with pytest.raises(InvalidOptionError, match=r"unknown method 'gradiant'.*gradient"):
        robust.compare([a], x, y, methods=["gradiant"])
    with pytest.raises(InvalidOptionError, match="more than once"):
        robust.compare([a], x, y, methods=["gradient", "gradient"])
    with pytest.raises(InvalidOptionError, match="no method given"):
        robust.compare([a], x, y, methods=[])
    with pytest.raises(InvalidOptionError, match="names must be a list of 2"):
        robust.compare([a, tiny_model(1)], x, y, names=["one"])
    with pytest.raises(InvalidOptionError, match="repeat"):
        robust.compare([a, tiny_loaded(0)], x, y)
    with pytest.raises(InvalidOptionError, match="level"):
        robust.compare([a], x, y, level=95)
    with pytest.raises(InvalidOptionError, match="sanity_images"):
        robust.compare([a], x, y, sanity_images=0)
    with pytest.raises(InvalidOptionError, match="sensitivity_radius"):
        robust.compare([a], x, y, sensitivity_radius=-0.1)
    with pytest.raises(TargetError, match="out of range"):
        robust.compare([a], x, [0, 1, 9], methods=["gradient"])
    trained = tiny_model(4).train()
    with pytest.raises(ModelStateError, match="training mode"):
        robust.compare([trained], x, y)
    with pytest.raises(ModelStateError, match="training mode"):
        robust.compare([a], x, y, judge=trained)


def test_compare_on_real_fashion_mnist(fashion) -> None:
    """The plain Fashion CNN on 32 real test images: accurate, alignment strictly inside
    (0, 1), maps at input size, finite metrics."""
    net, x, y = fashion
    study = robust.compare(
        [net],
        x,
        y,
        methods=["gradient"],
        sensitivity_images=8,
        sanity_images=8,
        activation_maximization=False,
        resamples=500,
    )
    m = study.models[0]
    assert m.clean_accuracy.value >= 0.8
    assert 0.0 < m.alignment.low <= m.alignment.value <= m.alignment.high < 1.0
    row = study.methods[0]
    for e in (row.edge_ssim, row.edge_spearman, row.deletion, row.insertion, row.max_sensitivity):
        assert e is not None and math.isfinite(e.value)
    assert study.settings.sensitivity_radius_input == pytest.approx(0.05 / FASHION_STD)
