"""Model-parameter randomization: steps in execution order, re-initialisation on a copy,
reproducibility, and agreement with Quantus's MPRT on identical settings."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import Tensor, nn

import seethrough as st
from helpers import Failing, QuantusNet, Snapshot, tiny_inputs, tiny_model
from seethrough.core.reinit import reinitialize
from seethrough.errors import InvalidOptionError
from seethrough.reporting.serialize import to_jsonable
from seethrough.trust import model_randomization, randomization_steps


class HeadFirst(nn.Module):
    """Registers its head before its body (common in hand-written models): registration
    order is not execution order."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 5).double()
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1).double()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1).double()
        self.bn1 = nn.BatchNorm2d(6).double()

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        h = torch.relu(self.conv2(h))
        return self.fc(h.mean(dim=(2, 3)))


def test_steps_follow_execution_not_registration_order() -> None:
    model = HeadFirst().eval()
    registered = [n for n, m in model.named_modules() if n]
    assert registered == ["fc", "conv2", "conv1", "bn1"]
    blocks = randomization_steps(model, tiny_inputs(n=1))
    assert [(s.name, s.modules) for s in blocks] == [
        ("conv1", ("conv1", "bn1")),  # a norm layer joins the conv it follows
        ("conv2", ("conv2",)),
        ("fc", ("fc",)),
    ]
    modules = randomization_steps(model, tiny_inputs(n=1), "module")
    assert [s.name for s in modules] == ["conv1", "bn1", "conv2", "fc"]


def test_efficientnet_lite0_blocks_are_stem_stages_head_classifier() -> None:
    net = st.load_model("efficientnet-lite0").module
    steps = randomization_steps(net, torch.zeros(1, 3, 224, 224))
    assert [s.name for s in steps] == [
        "_conv_stem",
        "_blocks.0",
        "_blocks.1-2",
        "_blocks.3-4",
        "_blocks.5-7",
        "_blocks.8-10",
        "_blocks.11-14",
        "_blocks.15",
        "_conv_head",
        "_fc",
    ]
    assert steps[0].modules == ("_conv_stem", "_bn0")
    covered = [m for s in steps for m in s.modules]
    with_params = [n for n, m in net.named_modules() if any(True for _ in m.parameters(False))]
    assert sorted(covered) == sorted(with_params)  # every parametrised module, once


def _trained_tiny() -> nn.Module:
    model = tiny_model().eval()
    with torch.no_grad():  # a bias that re-initialisation visibly changes (BN's is 0)
        model.bn1.bias.uniform_(-0.3, 0.3, generator=torch.Generator().manual_seed(2))
    return model


def test_randomize_step_reinitialises_only_its_modules_keeps_running_stats_and_rng() -> None:
    model = _trained_tiny()
    before = copy.deepcopy(model.state_dict())
    steps = randomization_steps(model, tiny_inputs(n=1))
    step = next(s for s in steps if "bn1" in s.modules)
    rng = torch.get_rng_state()
    reinitialize(model, step.modules, seed=5)
    assert torch.equal(torch.get_rng_state(), rng)
    after = model.state_dict()
    for key, value in before.items():
        module = key.rsplit(".", 1)[0]
        changed = not torch.equal(value, after[key])
        if key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            assert not changed, key  # kept, as the paper did
        else:
            assert changed == (module in step.modules), key
    again = _trained_tiny()
    reinitialize(again, step.modules, seed=5)
    for key, value in after.items():
        assert torch.equal(value, again.state_dict()[key]), key  # same seed, same weights
    reset = _trained_tiny()
    reinitialize(reset, step.modules, seed=5, reset_running_stats=True)
    assert torch.equal(reset.bn1.running_var, torch.ones_like(reset.bn1.running_var))
    normal = _trained_tiny()
    reinitialize(normal, step.modules, seed=5, init="normal", std=0.5)
    assert float(normal.conv1.weight.detach().std()) == pytest.approx(0.5, rel=0.25)


def test_user_model_untouched_even_when_a_step_fails() -> None:
    model = tiny_model()
    model.fc.weight.grad = torch.ones_like(model.fc.weight)
    x = tiny_inputs(n=2)
    before = Snapshot.take(model, x)
    rng = torch.get_rng_state()
    result = model_randomization(model, x, ["gradient", "grad_cam"], target=1, layer="conv3")
    before.assert_unchanged(model, x)
    assert torch.equal(torch.get_rng_state(), rng)
    failing = Failing(tiny_model(), fail_on=4).eval()
    snap = Snapshot.take(failing, x)
    with pytest.raises(RuntimeError, match="boom inside forward"):
        model_randomization(failing, x, ["gradient"], target=1)
    snap.assert_unchanged(failing, x)
    wrapped = randomization_steps(failing, x[:1])  # wrappers are looked through
    assert [s.name for s in wrapped] == ["inner.conv1", "inner.conv2", "inner.conv3", "inner.fc"]
    assert [s.name for s in result.steps] == ["fc", "conv3", "conv2", "conv1"]


def test_same_seed_same_table_and_cascading_reaches_full_randomization() -> None:
    model, x = tiny_model(), tiny_inputs(n=3)
    kwargs = {"target": 2, "layer": "conv3"}
    a = model_randomization(model, x, ["gradient", "grad_cam", "edge_detector"], **kwargs)
    b = model_randomization(model, x, ["gradient", "grad_cam", "edge_detector"], **kwargs)
    assert to_jsonable(a)["methods"] == to_jsonable(b)["methods"]
    edges = a.similarity("edge_detector")
    # the control ignores the model: identical maps after every step
    torch.testing.assert_close(edges.spearman_abs, torch.ones_like(edges.spearman_abs))
    grad = a.similarity("gradient")
    assert grad.self_check["spearman_abs"] == pytest.approx(1.0)
    assert float(grad.mean("spearman_abs")[-1]) < 0.9  # the fully random model differs
    assert a.explained.eq(2).all()  # the class stays fixed unless follow_prediction
    only = model_randomization(model, x, ["gradient"], target=2, metrics=("spearman_abs",))
    torch.testing.assert_close(only.similarity("gradient").spearman_abs, grad.spearman_abs)
    assert only.similarity("gradient").ssim.isnan().all()  # not computed, not made up
    assert np.isnan(only.similarity("gradient").self_check["ssim"])
    c = model_randomization(model, x, ["gradient"], target=2, seed=1)
    assert not torch.equal(c.similarity("gradient").spearman, a.similarity("gradient").spearman)


def test_predictions_are_each_randomized_models_top_class() -> None:
    model, x = tiny_model(), tiny_inputs(n=4)
    # read off the method's own pass / one extra forward (IG sees only path points)
    for methods, options in (
        (["gradient"], {}),
        (["integrated_gradients"], {"steps": 4, "rule": "gausslegendre"}),
    ):
        result = model_randomization(model, x, methods, target=2, **options)
        replay = copy.deepcopy(model)
        for i, step in enumerate(result.steps):
            reinitialize(replay, step.modules, seed=1 + i)
            with torch.no_grad():
                assert torch.equal(result.predictions[i], replay(x).argmax(dim=1)), step.name
        assert result.explained.eq(2).all()
    followed = model_randomization(model, x, ["gradient"], follow_prediction=True)
    assert torch.equal(followed.explained, followed.predictions)


def test_independent_step_equals_the_cascade_at_that_module() -> None:
    model, x = tiny_model(), tiny_inputs(n=2)
    steps = list(reversed(randomization_steps(model, x[:1])))
    cascade = copy.deepcopy(model)
    for i, step in enumerate(steps):
        reinitialize(cascade, step.modules, seed=1 + i)
        alone = copy.deepcopy(model)
        reinitialize(alone, step.modules, seed=1 + i)
        for name in step.modules:
            for p, q in zip(
                dict(cascade.named_modules())[name].parameters(),
                dict(alone.named_modules())[name].parameters(),
            ):
                assert torch.equal(p, q)


def test_bad_options_are_refused() -> None:
    model, x = tiny_model(), tiny_inputs(n=1)
    with pytest.raises(InvalidOptionError, match="unknown mode 'bottom_up'"):
        model_randomization(model, x, ["gradient"], mode="bottom_up")
    with pytest.raises(InvalidOptionError, match="unknown granularity"):
        model_randomization(model, x, ["gradient"], granularity="layer")
    with pytest.raises(InvalidOptionError, match="unknown method 'gradiant'"):
        model_randomization(model, x, ["gradiant"])
    with pytest.raises(InvalidOptionError, match="unknown init"):
        model_randomization(model, x, ["gradient"], init="xavier")
    with pytest.raises(InvalidOptionError, match="one class per image"):
        model_randomization(model, x, ["gradient"], target="top2")
    with pytest.raises(InvalidOptionError, match="unknown metrics"):
        model_randomization(model, x, ["gradient"], metrics=("pearson",))


def test_matches_quantus_mprt_with_identical_settings_and_shows_its_average_bug() -> None:
    """Quantus 0.6.0 ``MPRT`` (top-down, seed 42): every module with ``reset_parameters``
    in reversed registration order, the global seed set to 43 before each reset, running
    statistics reset with BatchNorm, Spearman of |maps| (its max-normalisation is
    rank-invariant). Our engine with per-module steps, seed 43 for every step and
    ``reset_running_stats=True`` gives the same per-layer scores."""
    quantus = pytest.importorskip("quantus")
    torch.manual_seed(0)
    model = QuantusNet().eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5)
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    y = model(x).argmax(dim=1)

    def explain_func(
        model: nn.Module, inputs: np.ndarray, targets: np.ndarray, **_: object
    ) -> np.ndarray:
        ex = st.explain(model, torch.as_tensor(inputs), "gradient", target=torch.as_tensor(targets))
        return ex.attributions.numpy()

    a = explain_func(model, x.numpy(), y.numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = quantus.MPRT(disable_warnings=True)(
            model=copy.deepcopy(model),
            x_batch=x.numpy(),
            y_batch=y.numpy(),
            a_batch=a,
            explain_func=explain_func,
            device="cpu",
        )
        average = quantus.MPRT(disable_warnings=True, return_average_correlation=True)(
            model=copy.deepcopy(model),
            x_batch=x.numpy(),
            y_batch=y.numpy(),
            a_batch=a,
            explain_func=explain_func,
            device="cpu",
        )
    steps = list(reversed(randomization_steps(model, x[:1], "module")))
    assert [s.name for s in steps] == [k for k in theirs if k != "original"]
    work = copy.deepcopy(model)
    for step in steps:
        reinitialize(work, step.modules, seed=43, reset_running_stats=True)
        new = explain_func(work, x.numpy(), y.numpy())
        ours = [spearmanr(np.abs(a[i]).ravel(), np.abs(new[i]).ravel())[0] for i in range(4)]
        np.testing.assert_allclose(ours, theirs[step.name], rtol=0, atol=1e-6)
    layers = [np.asarray(theirs[s.name]) for s in steps]
    correct = np.mean(layers, axis=0)
    with_original = np.mean([np.asarray(theirs["original"]), *layers], axis=0)
    # Quantus's average skips the key "orig", but stores "original": the original-vs-
    # original score (1.0) is averaged in, inflating every sample's mean.
    np.testing.assert_allclose(average, with_original, atol=1e-9)
    assert np.all(np.asarray(average) > correct + 0.05)


def test_edge_similarity_of_the_edge_control_is_one_and_of_noise_is_low() -> None:
    from seethrough.trust import edge_similarity, sobel_edges

    x = torch.rand(3, 3, 48, 48, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    result = edge_similarity(tiny_model(), x, ["edge_detector", "random_noise", "gradient"])
    edges = result.similarity("edge_detector")
    for metric in ("spearman_abs", "spearman", "ssim", "hog"):
        torch.testing.assert_close(edges.values(metric), torch.ones(1, 3, dtype=torch.float64))
    from seethrough.trust import edge_similarity_of

    made = st.explain(tiny_model(), x, ["edge_detector", "random_noise", "gradient"])
    reused = edge_similarity_of(made)  # the same comparison on explanations already made
    for a, b in zip(result.similarities, reused.similarities):
        for metric in ("spearman_abs", "spearman", "ssim", "hog"):
            torch.testing.assert_close(a.values(metric), b.values(metric), equal_nan=True)
    noise = result.similarity("random_noise")
    assert float(noise.spearman_abs.abs().max()) < 0.1  # i.i.d. noise: rank correlation ~0
    # hand check of the Sobel magnitude on a vertical step edge
    step = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    step[..., 3:] = 1.0
    assert sobel_edges(step)[0, 0, 2].tolist() == [0.0, 0.0, 4.0, 4.0, 0.0]


def test_data_randomization_of_a_model_against_itself_is_one_and_against_another_less() -> None:
    from seethrough.trust import data_randomization

    model, x = tiny_model(), tiny_inputs(n=3)
    same = data_randomization(model, copy.deepcopy(model), x, ["gradient", "grad_cam"], target=1)
    for s in same.similarities:
        torch.testing.assert_close(s.spearman_abs, torch.ones(1, 3, dtype=torch.float64))
    other = data_randomization(model, tiny_model(seed=7), x, ["gradient"], target=1)
    assert float(other.similarity("gradient").spearman_abs.max()) < 0.99
    assert other.reference == "random-label model" and other.reference_explained.eq(1).all()


def test_noise_control_draws_independent_noise_for_every_model() -> None:
    """Regression (issue 12, item 5): ``random_noise`` reused the trained model's seed at
    every step, so its similarity read 1.00 — the noise floor was missing. Independent
    independent i.i.d. maps have rank correlation ρ ≈ N(0, 1/(P − 1)) over the P = 16·16
    pixels of the reduced map: every value within 4 standard deviations, their mean
    (16 values) within 4 standard errors."""
    model, x = tiny_model(), tiny_inputs(n=4, size=16)
    rng = torch.get_rng_state()
    result = model_randomization(model, x, ["random_noise"], target=1)
    assert torch.equal(torch.get_rng_state(), rng)  # the user's RNG is not consumed
    noise = result.similarity("random_noise")
    sd = 1 / (16 * 16 - 1) ** 0.5
    assert float(noise.spearman.abs().max()) < 4 * sd
    assert abs(float(noise.spearman.mean())) < 4 * sd / 4
    assert abs(noise.self_check["spearman"]) < 4 * sd
    again = model_randomization(model, x, ["random_noise"], target=1)
    torch.testing.assert_close(again.similarity("random_noise").spearman, noise.spearman)
    other = model_randomization(model, x, ["random_noise"], target=1, seed=5)
    assert not torch.equal(other.similarity("random_noise").spearman, noise.spearman)
    from seethrough.trust import data_randomization

    # the random-label model's maps draw their own noise too (a model against itself)
    data = data_randomization(model, copy.deepcopy(model), x, ["random_noise"], target=1)
    assert float(data.similarity("random_noise").spearman.abs().max()) < 4 * sd


def test_smoothgrad_self_check_compares_two_independent_seeds() -> None:
    """Regression (issue 12, item 5): the self-check reran SmoothGrad with the same seed
    and always read 1. It must equal a direct comparison of two seeds' maps."""
    from seethrough.trust.similarity import spearman

    model, x = tiny_model(), tiny_inputs(n=3, size=16)
    options = {"samples": 4, "noise": 0.3}
    result = model_randomization(model, x, ["smoothgrad", "gradient"], target=1, **options)
    check = result.similarity("smoothgrad").self_check["spearman_abs"]
    assert check < 0.99
    assert result.self_check_seed != result.seed
    first = st.explain(model, x, "smoothgrad", target=1, seed=0, **options)
    second = st.explain(model, x, "smoothgrad", target=1, seed=result.self_check_seed, **options)
    direct = spearman(first.attributions, second.attributions, absolute=True)
    assert check == pytest.approx(float(direct.mean()), abs=1e-12)
    per_image = result.similarity("smoothgrad").self_check_values["spearman_abs"]
    torch.testing.assert_close(per_image, direct, rtol=0, atol=1e-12)
    # the step maps use seeds of their own, none of them the trained map's
    seeds = {result.seed, result.self_check_seed, *result.step_seeds}
    assert len(seeds) == len(result.steps) + 2
    assert result.similarity("gradient").self_check["spearman_abs"] == pytest.approx(1.0)


def test_configured_method_objects_are_rows_of_their_own() -> None:
    """The paper's Grad-CAM (ReLU) next to the raw map, and Guided Grad-CAM, in one run:
    method objects carry their options, rows are named by them."""
    from seethrough.trust import method_label

    model, x = tiny_model(), tiny_inputs(n=2)
    methods = ["grad_cam", st.GradCam(relu=True), "guided_grad_cam"]
    result = model_randomization(model, x, methods, target=1, layer="conv3")
    assert result.methods == ("grad_cam", "grad_cam(relu=True)", "guided_grad_cam")
    raw, relu = result.original[0].attributions, result.original[1].attributions
    torch.testing.assert_close(relu, raw.clamp_min(0), rtol=0, atol=0)
    assert result.similarity("grad_cam(relu=True)").spearman_abs.shape == (4, 2)
    assert (
        method_label(st.GradCam(relu=True, layer="conv3")) == "grad_cam(layer='conv3', relu=True)"
    )
    # a tensor option is named by its shape, not printed (a JSON key once held a printout)
    shap = st.DeepShap(baselines=torch.zeros(24, 1, 28, 28))
    assert method_label(shap) == "deepshap(baselines=<tensor 24×1×28×28>)"
    with pytest.raises(InvalidOptionError, match="given more than once"):
        model_randomization(model, x, ["grad_cam", st.GradCam()], target=1)
    from seethrough.trust import data_randomization, edge_similarity_of

    data = data_randomization(model, tiny_model(seed=3), x, methods, target=1, layer="conv3")
    assert data.methods == result.methods
    edges = edge_similarity_of(result.original, labels=result.methods)
    assert edges.methods == result.methods


def test_self_check_can_be_skipped_and_is_then_nan_not_made_up() -> None:
    model, x = tiny_model(), tiny_inputs(n=2)
    full = model_randomization(model, x, ["gradient", "random_noise"], target=1)
    lean = model_randomization(model, x, ["gradient", "random_noise"], target=1, self_check=False)
    for a, b in zip(full.similarities, lean.similarities):
        torch.testing.assert_close(a.spearman_abs, b.spearman_abs, rtol=0, atol=0)
        assert all(np.isnan(v) for v in b.self_check.values())
