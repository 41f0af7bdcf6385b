"""sMPRT and eMPRT (Hedström et al., 2023): agreement with Quantus 0.6.0 on identical
models, noise and maps; the Binder et al. normalisation; determinism; the model, inputs
and global RNG left untouched."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import seethrough as st
from helpers import Failing, QuantusNet, Snapshot, tiny_inputs, tiny_model
from seethrough.core.reinit import reinitialize
from seethrough.errors import InvalidOptionError
from seethrough.reporting.serialize import to_jsonable
from seethrough.trust import randomization_steps
from seethrough.trust.mprt import (
    discrete_entropy,
    efficient_mprt,
    normalise_second_moment,
    smooth_mprt,
    smoothing_noise,
)


def _setup() -> tuple[nn.Module, Tensor, Tensor]:
    torch.manual_seed(0)
    model = QuantusNet().eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5)  # type: ignore[union-attr]
        model.bn.running_var.uniform_(0.5, 1.5)  # type: ignore[union-attr]
    x = torch.rand(5, 3, 10, 10, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(dim=1)
    return model, x, y


def _planned(model: nn.Module, x: Tensor, seed: int) -> nn.Module:
    """A copy of ``model`` whose modules carry the weights our bottom-up cascade gives
    them (step k from ``seed + 1 + k``), for a patched ``reset_parameters`` to load."""
    work = copy.deepcopy(model)
    steps = randomization_steps(work, x[:1], "module")
    for k, step in enumerate(steps):
        reinitialize(work, step.modules, seed=seed + 1 + k)
    planned = copy.deepcopy(model)
    modules = dict(work.named_modules())
    for name, module in planned.named_modules():
        if name in {m for s in steps for m in s.modules}:
            state = {k: v.clone() for k, v in modules[name].state_dict().items()}
            setattr(module, "_planned", state)  # noqa: B010 (a plain attribute, copied along)
    return planned


@contextmanager
def _quantus_loads_our_weights(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Quantus re-initialises each layer by ``reset_parameters()`` after reseeding the
    global RNG; here that call loads the weights our randomization drew instead."""
    with monkeypatch.context() as patch:
        for cls in (nn.Conv2d, nn.Linear, nn.BatchNorm2d):

            def reset(self: nn.Module, original: Any = cls.reset_parameters) -> None:
                planned = getattr(self, "_planned", None)
                if planned is None:
                    original(self)
                else:
                    self.load_state_dict(planned)

            patch.setattr(cls, "reset_parameters", reset)
        yield


def _quantus() -> Any:
    return pytest.importorskip("quantus")


def test_smooth_mprt_matches_quantus_on_identical_weights_noise_and_maps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Quantus ``SmoothMPRT`` (bottom-up, 6 copies, σ = 0.1 × range, second-moment
    normalisation, |·|, Spearman) fed our weights and our noise draws gives our per-step
    ρ and our self-check (its ``"original"``) within 1e-9. Its ``SmoothMPRT`` calls
    ``quantus.explain`` (Captum's ``Saliency``, channels summed), not ``explain_func``:
    our ``gradient`` summed over channels is the same map."""
    quantus = _quantus()
    model, x, y = _setup()
    copies, seed = 6, 3
    ours = smooth_mprt(model, x, "gradient", y, copies=copies, granularity="module", seed=seed)
    assert [s.name for s in ours.steps] == ["conv1", "bn", "conv2", "fc"]
    # the noise Quantus will ask np.random.randn for, in its order: the "original"
    # (self-check) run, then each layer's run; the trained map is passed as a_batch
    draws = [smoothing_noise(x, copies, s).numpy() for s in ours.noise_seeds[1:]]
    queue: list[np.ndarray] = []

    def randn(*shape: int) -> np.ndarray:
        z = queue.pop(0)
        assert z.shape == shape
        return z

    def zeros(model: nn.Module, inputs: np.ndarray, targets: np.ndarray, **_: Any) -> Any:
        return np.zeros((len(inputs), 1, *inputs.shape[2:]), dtype=np.float32)

    planned = _planned(model, x, seed)
    runs = []
    for explain_func in (quantus.explain, zeros):
        queue = [z[n] for z in draws for n in range(copies - 1)]
        with _quantus_loads_our_weights(monkeypatch), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            monkeypatch.setattr(np.random, "randn", randn)
            metric = quantus.SmoothMPRT(
                nr_samples=copies, noise_magnitude=0.1, disable_warnings=True
            )
            runs.append(
                metric(
                    model=planned,
                    x_batch=x.numpy(),
                    y_batch=y.numpy(),
                    a_batch=ours.reference.numpy(),
                    explain_func=explain_func,
                    explain_func_kwargs={"method": "Gradient"},
                    device="cpu",
                )
            )
        assert not queue  # every draw used, in the same order
    theirs, ignored = runs
    assert list(theirs) == ["original", "conv1", "bn", "conv2", "fc"]
    np.testing.assert_allclose(theirs["original"], ours.self_check.numpy(), rtol=0, atol=1e-9)
    for k, step in enumerate(ours.steps):
        np.testing.assert_allclose(theirs[step.name], ours.similarity[k].numpy(), atol=1e-9)
    assert float(ours.self_check.min()) < 1.0  # independent noise: the ceiling is below 1
    # where we differ: Quantus's SmoothMPRT never calls the explain_func it is given
    for key, values in theirs.items():
        np.testing.assert_array_equal(ignored[key], values)


def _gradient_sum(model: nn.Module, inputs: np.ndarray, targets: np.ndarray, **_: Any) -> Any:
    ex = st.explain(model, torch.as_tensor(inputs), "gradient", target=torch.as_tensor(targets))
    return ex.attributions.sum(dim=1, keepdim=True).numpy()


@pytest.mark.parametrize("absolute", [True, False])
def test_efficient_mprt_matches_quantus_on_identical_weights_and_maps(
    monkeypatch: pytest.MonkeyPatch, absolute: bool
) -> None:
    """Quantus ``EfficientMPRT`` (bottom-up, 100 bins, skip_layers, softmax model
    entropy) fed our fully randomized weights and the same explain function gives our
    explanation complexities and score within 1e-9 and model complexities within 1e-6
    (it takes the softmax in float32, we in float64)."""
    quantus = _quantus()
    model, x, y = _setup()
    seed = 4
    ours = efficient_mprt(
        model, x, "gradient", y, granularity="module", absolute=absolute, seed=seed
    )
    planned = _planned(model, x, seed)
    with _quantus_loads_our_weights(monkeypatch), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric = quantus.EfficientMPRT(
            abs=absolute, normalise=True, compute_extra_scores=True, disable_warnings=True
        )
        scores = metric(
            model=planned,
            x_batch=x.numpy(),
            y_batch=y.numpy(),
            a_batch=None,
            explain_func=_gradient_sum,
            device="cpu",
        )
    complexities = list(metric.explanation_scores_by_layer.values())
    np.testing.assert_allclose(complexities[0], ours.complexity_trained.numpy(), atol=1e-9)
    np.testing.assert_allclose(complexities[-1], ours.complexity_random.numpy(), atol=1e-9)
    np.testing.assert_allclose(scores, ours.score.numpy(), rtol=0, atol=1e-9)
    models = list(metric.model_scores_by_layer.values())
    np.testing.assert_allclose(models[0], ours.model_complexity_trained.numpy(), atol=1e-6)
    np.testing.assert_allclose(models[-1], ours.model_complexity_random.numpy(), atol=1e-6)
    np.testing.assert_allclose(
        metric.scores_extra["scores_delta_explanation_vs_models"],
        ours.score_vs_model.numpy(),
        rtol=1e-5,
    )


def test_second_moment_normalisation_and_entropy_equal_quantus_functions() -> None:
    quantus = _quantus()
    from quantus.functions.complexity_func import discrete_entropy as q_entropy
    from quantus.functions.normalise_func import normalise_by_average_second_moment_estimate

    maps = torch.randn(3, 2, 6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    maps[1] *= 40.0
    ours = normalise_second_moment(maps)
    theirs = normalise_by_average_second_moment_estimate(maps.numpy().copy(), (1, 2, 3))
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-14)
    # hand check: every map ends with mean square 1; zeros stay zeros
    torch.testing.assert_close(ours.pow(2).mean(dim=(1, 2, 3)), torch.ones(3, dtype=torch.float64))
    assert torch.equal(
        normalise_second_moment(torch.zeros(1, 4)), torch.zeros(1, 4, dtype=torch.float64)
    )
    # Quantus's default normalises the whole batch by one number (not each map)
    batch = normalise_by_average_second_moment_estimate(maps.numpy().copy())
    assert not np.allclose(batch, theirs)
    for bins in (10, 100):
        expected = [q_entropy(a=m.numpy(), x=m.numpy(), n_bins=bins) for m in maps]
        np.testing.assert_allclose(discrete_entropy(maps, bins).numpy(), expected, rtol=1e-14)
    # hand check: 4 values in 4 equally filled bins → log 4; a two-valued map → log 2
    spread = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    assert float(discrete_entropy(spread, 4)[0]) == pytest.approx(np.log(4), abs=1e-15)
    two = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    assert float(discrete_entropy(two, 10)[0]) == pytest.approx(np.log(2), abs=1e-15)
    assert quantus is not None


def test_without_noise_smooth_mprt_is_mprt_on_channel_summed_maps() -> None:
    """``copies=1`` leaves only the clean copy: the score is Spearman's ρ of the
    absolute channel-summed maps of the trained and randomized models (top-down here,
    replayed by hand with the documented seeds)."""
    from scipy.stats import spearmanr

    model, x = tiny_model(), tiny_inputs(n=3, size=16)
    result = smooth_mprt(model, x, "gradient", 2, copies=1, order="top_down", seed=7)
    work = copy.deepcopy(model)
    trained = st.explain(work, x, "gradient", 2).attributions.sum(dim=1).abs()
    for k, step in enumerate(result.steps):
        reinitialize(work, step.modules, seed=7 + 1 + k)
        new = st.explain(work, x, "gradient", 2).attributions.sum(dim=1).abs()
        expected = [spearmanr(trained[i].ravel(), new[i].ravel())[0] for i in range(3)]
        np.testing.assert_allclose(result.similarity[k].numpy(), expected, atol=1e-12)
    assert [s.name for s in result.steps] == ["fc", "conv3", "conv2", "conv1"]
    torch.testing.assert_close(result.self_check, torch.ones(3, dtype=torch.float64))


def test_smoothing_noise_of_a_batch_is_its_images_alone() -> None:
    x = tiny_inputs(n=3)
    batch = smoothing_noise(x, 4, seed=11)
    assert batch.shape == (3, 3, 3, 12, 12)
    for i in range(3):
        alone = smoothing_noise(x[i : i + 1], 4, seed=11 + i)
        assert torch.equal(batch[:, i : i + 1], alone)


def test_same_seed_same_scores_and_user_state_untouched() -> None:
    model, x = tiny_model(), tiny_inputs(n=2, size=16)
    model.fc.weight.grad = torch.ones_like(model.fc.weight)
    before = Snapshot.take(model, x)
    rng = torch.get_rng_state()
    a = smooth_mprt(model, x, "smoothgrad", 1, copies=3, seed=2)
    e = efficient_mprt(model, x, "grad_cam", 1, layer="conv3")
    before.assert_unchanged(model, x)
    assert torch.equal(torch.get_rng_state(), rng)
    b = smooth_mprt(model, x, "smoothgrad", 1, copies=3, seed=2)
    assert torch.equal(a.similarity, b.similarity) and torch.equal(a.self_check, b.self_check)
    c = smooth_mprt(model, x, "smoothgrad", 1, copies=3, seed=3)
    assert not torch.equal(a.similarity, c.similarity)
    f = efficient_mprt(model, x, "grad_cam", 1, layer="conv3")
    assert torch.equal(e.score, f.score) and e.higher_is_better and not a.higher_is_better
    assert to_jsonable(a)["method"] == "smoothgrad" and to_jsonable(e)["bins"] == 100
    failing = Failing(tiny_model(), fail_on=6).eval()
    snap = Snapshot.take(failing, x)
    with pytest.raises(RuntimeError, match="boom inside forward"):
        smooth_mprt(failing, x, "gradient", 1, copies=2)
    snap.assert_unchanged(failing, x)


def test_bad_options_are_refused() -> None:
    model, x = tiny_model(), tiny_inputs(n=1)
    with pytest.raises(InvalidOptionError, match="unknown order 'sideways'"):
        smooth_mprt(model, x, order="sideways")
    with pytest.raises(InvalidOptionError, match="copies must be a positive integer"):
        smooth_mprt(model, x, copies=0)
    with pytest.raises(InvalidOptionError, match="noise_level must be a non-negative"):
        smooth_mprt(model, x, noise_level=-1.0)
    with pytest.raises(InvalidOptionError, match="bins must be a positive integer"):
        efficient_mprt(model, x, bins=0)
    with pytest.raises(InvalidOptionError, match="one class per image"):
        efficient_mprt(model, x, target="top2")
    with pytest.raises(InvalidOptionError, match="unknown method"):
        efficient_mprt(model, x, "gradiant")


def test_several_methods_and_the_last_step_alone_equal_separate_full_runs() -> None:
    model, x = tiny_model(), tiny_inputs(n=2, size=16)
    methods: list[Any] = ["gradient", st.GradCam(relu=True)]
    both = smooth_mprt(model, x, methods, 1, copies=3, layer="conv3")
    assert [r.method for r in both] == ["gradient", "grad_cam(relu=True)"]
    alone = smooth_mprt(model, x, "gradient", 1, copies=3)
    torch.testing.assert_close(both[0].similarity, alone.similarity, rtol=0, atol=1e-12)
    torch.testing.assert_close(both[0].self_check, alone.self_check, rtol=0, atol=1e-12)
    last = smooth_mprt(model, x, "gradient", 1, copies=3, every_step=False)
    assert last.after == (alone.steps[-1].name,) and len(alone.after) == 4
    torch.testing.assert_close(last.similarity[0], alone.similarity[-1], rtol=0, atol=1e-12)
    assert last.noise_seeds == (*alone.noise_seeds[:2], alone.noise_seeds[-1])
    e_both = efficient_mprt(model, x, methods, 1, layer="conv3")
    e_alone = efficient_mprt(model, x, methods[1], 1, layer="conv3")
    torch.testing.assert_close(e_both[1].score, e_alone.score, rtol=0, atol=1e-12)
