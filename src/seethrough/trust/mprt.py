"""sMPRT and eMPRT (Hedström et al., 2023): the model-parameter randomization test repaired.

Hedström, Weber, Lapuschkin, Höhne, "Sanity Checks Revisited: An Exploration to Repair
the Model Parameter Randomisation Test" (XAI in Action workshop, NeurIPS 2023) name two
flaws of MPRT (:func:`~seethrough.trust.sanity.model_randomization`) and a fix for each:

* :func:`smooth_mprt` (**sMPRT**) — noise: gradient-like maps of a trained network are
  noisy, and the similarity of two noisy maps is low whatever the model. Each map is
  *denoised* first: averaged over ``copies`` copies of the input, ``copies − 1`` of them
  with Gaussian noise of σ = ``noise_level`` × (max − min) of the image and the last one
  clean, then compared (Spearman's ρ of the absolute maps) with the trained model's map
  after each randomization step. Lower = the map depends more on the parameters.
* :func:`efficient_mprt` (**eMPRT**) — the choice of similarity measure: instead of
  comparing maps, it measures how much more *complex* the map of the fully randomized
  model is than the trained model's: the relative rise ``(H_random − H_trained) /
  H_trained`` of the discrete entropy ``H`` of the map's histogram (``bins`` equal-width
  bins). Higher = better; next to it, the same rise for the model's output (entropy of
  the softmax).

Both randomize a deep copy of the model by our steps in *execution* order — bottom-up
(input first, the paper's recommendation and Quantus's default for both) or top-down
— with the same re-initialisation as MPRT (:func:`~seethrough.core.reinit.reinitialize`;
step ``k`` from ``seed + 1 + k``). The user's model, inputs and global RNG are untouched.

Maps (both tests): the method's map at input resolution (CAMs upsampled), summed over
channels as ``quantus.explain`` does (``reduce_axes=(1,)``), optionally normalised by the
square root of its average second moment (Binder et al., 2023: "Shortcomings of Top-Down
Randomization-Based Sanity Checks for Evaluations of Deep Neural Network Explanations",
CVPR; :func:`normalise_second_moment`) and made absolute.

Agreement with Quantus 0.6.0 (``SmoothMPRT``, ``EfficientMPRT``) on identical models,
noise and maps is tested in ``tests/test_trust_mprt.py``. Differences, named:

* steps follow execution order and draw each step's weights from its own seed; Quantus
  walks ``named_modules()`` in registration order and reseeds the *global* RNG with the
  same seed before every layer (see :mod:`seethrough.core.steps`);
* noise and any randomness of the method come from per-image generators with seeds
  derived from ``seed`` (:func:`~seethrough.trust.randomize.derived_seed`), independent
  for every model; Quantus draws from the unseeded global NumPy RNG. (The noise of an
  image does not depend on the batch; a *stochastic* method's own draws do, since the
  copies of all images are explained together.)
* the second-moment normalisation divides each map by its own RMS, as Binder et al.;
  Quantus's ``normalise_by_average_second_moment_estimate`` by default divides the whole
  batch by one RMS. Neither changes a score here: Spearman's ρ and the equal-width
  histogram are invariant to a positive scale — the normalisation matters only for
  scale-sensitive measures (distances, SSIM);
* Quantus's ``SmoothMPRT`` ignores the ``explain_func`` it is given and always calls
  ``quantus.explain`` (Captum) with ``explain_func_kwargs``; ours smooths the method asked;
* eMPRT's map is absolute by default (Quantus: ``abs=False``), and the number of bins is
  fixed (Quantus's default, 100) rather than chosen by a rule from the data.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from ..attribution import Method, explain
from ..core.budget import Budget
from ..core.guard import check_inputs, unwrap_model
from ..core.passes import forward_logits
from ..core.targets import TargetLike
from ..errors import InvalidOptionError
from ..words import Description
from .randomize import Randomization, derived_seed
from .sanity import MethodLike, _check_methods
from .similarity import _pearson_rows
from .steps import RandomizationStep, randomization_steps

__all__ = [
    "ORDERS",
    "EfficientMprtResult",
    "SmoothMprtResult",
    "discrete_entropy",
    "efficient_mprt",
    "normalise_second_moment",
    "smooth_mprt",
    "smoothing_noise",
]

ORDERS = ("bottom_up", "top_down")
"""Randomization orders: input side first (the paper's choice) or logits first (MPRT's)."""

# Streams of derived seeds: ``derived_seed(seed, stream, state)``, state 0 = the trained
# model, 1 = the self-check's second run, 2 + k = after step k.
_NOISE_STREAM, _EXPLAIN_STREAM = 11, 12
_ELEMENTS = 1 << 24  # input elements of noisy copies per explain call (64 MiB in float32)


def normalise_second_moment(maps: Tensor) -> Tensor:
    """Each map divided by the square root of its average second moment,
    ``m / sqrt(mean(m²))`` over all but the first axis (Binder et al., 2023); all-zero
    maps are returned unchanged. Float64, shaped like ``maps`` ``(N, ...)``."""
    values = maps.detach().to(torch.float64)
    rms = values.flatten(1).pow(2).mean(dim=1).sqrt()
    scale = torch.where(rms > 0, rms, torch.ones_like(rms))
    return values / scale.reshape(-1, *([1] * (values.dim() - 1)))


def discrete_entropy(maps: Tensor, bins: int = 100) -> Tensor:
    """``(N,)`` float64: the Shannon entropy (nats) of each map's histogram of ``bins``
    equal-width bins between its minimum and maximum (``numpy.histogram``,
    ``scipy.stats.entropy``) — Quantus's ``discrete_entropy``."""
    from scipy.stats import entropy

    if not isinstance(bins, int) or isinstance(bins, bool) or bins < 1:
        raise InvalidOptionError(f"bins must be a positive integer, got {bins!r}")
    flat = maps.detach().to("cpu", torch.float64).flatten(1).numpy()
    return torch.tensor(
        [float(entropy(np.histogram(row, bins=bins)[0])) for row in flat], dtype=torch.float64
    )


def _draws(x: Tensor, copies: int, seed: int) -> Iterator[Tensor]:
    """The noisy copies' standard normal draws, copy after copy: ``(N, C, H, W)``
    float64 each. Image ``i`` draws its copies one by one from a generator seeded with
    ``seed + i``, so a batch draws what its images draw alone."""
    generators = [torch.Generator(device=x.device).manual_seed(seed + i) for i in range(len(x))]
    for _ in range(copies - 1):
        draws = [
            torch.randn(x.shape[1:], generator=g, device=x.device, dtype=torch.float64)
            for g in generators
        ]
        yield torch.stack(draws)


def smoothing_noise(x: Tensor, copies: int, seed: int) -> Tensor:
    """sMPRT's standard normal draws for the noisy copies of ``x`` ``(N, C, H, W)``:
    ``(copies − 1, N, C, H, W)`` float64, image ``i`` drawing from a generator seeded
    with ``seed + i`` (a batch draws what its images draw alone). Copy ``n`` of image
    ``i`` is ``x_i + σ_i · z[n, i]`` with σ_i = ``noise_level`` × (max − min) of the
    image; the last of the ``copies`` is the clean input."""
    drawn = list(_draws(x, copies, seed))
    return torch.stack(drawn) if drawn else x.new_zeros((0, *x.shape), dtype=torch.float64)


def _noise_scale(x: Tensor, noise_level: float) -> Tensor:
    """σ per image, in the input's dtype (as Quantus computes it on the input array)."""
    flat = x.detach().flatten(1)
    return noise_level * (flat.max(dim=1).values - flat.min(dim=1).values)


@dataclass(frozen=True)
class _Settings:
    methods: list[MethodLike]
    copies: int
    noise_level: float
    normalise: bool
    absolute: bool
    batch_size: int | None
    options: dict[str, Any]


def _maps(model: nn.Module, x: Tensor, target: Tensor, seed: int, s: _Settings) -> list[Tensor]:
    """Each method's maps at input size, summed over channels: ``(N, 1, H, W)`` float64
    (one ``explain`` call: methods that read the plain pass share it)."""
    found = explain(model, x, s.methods, target, seed=seed, batch_size=s.batch_size, **s.options)
    return [
        ex.to_input_size().attributions.detach().to(torch.float64).sum(dim=1, keepdim=True)
        for ex in found
    ]


def _finish(maps: Tensor, s: _Settings) -> Tensor:
    out = normalise_second_moment(maps) if s.normalise else maps
    return out.abs() if s.absolute else out


def _smoothed(
    model: nn.Module, x: Tensor, target: Tensor, state: int, seed: int, s: _Settings
) -> list[Tensor]:
    """The denoised maps of one model state: the mean over the ``copies`` (the noisy
    ones, then the clean input), explained in calls of whole copies of at most
    :data:`_ELEMENTS` input elements."""
    sigma = _noise_scale(x, s.noise_level).to(torch.float64).reshape(-1, *[1] * (x.dim() - 1))
    draws = _draws(x, s.copies, derived_seed(seed, _NOISE_STREAM, state))
    per_call = max(1, _ELEMENTS // max(1, x.numel()))
    totals = [torch.zeros((), dtype=torch.float64) for _ in s.methods]
    for start in range(0, s.copies, per_call):
        stop = min(s.copies, start + per_call)
        rows = [
            x if n == s.copies - 1 else (x.to(torch.float64) + next(draws) * sigma).to(x.dtype)
            for n in range(start, stop)
        ]
        run_seed = derived_seed(seed, _EXPLAIN_STREAM, state * s.copies + start)
        found = _maps(model, torch.cat(rows), target.repeat(stop - start), run_seed, s)
        for k, maps in enumerate(found):
            totals[k] = totals[k] + maps.reshape(stop - start, len(x), *maps.shape[1:]).sum(0)
    return [_finish(total / s.copies, s) for total in totals]


def _spearman_rows(a: Tensor, b: Tensor) -> Tensor:
    """``(N,)`` Spearman's ρ of each pair of flattened maps (ties averaged, NaN where
    a map is constant), as ``scipy.stats.spearmanr``."""
    from scipy.stats import rankdata

    ra = rankdata(a.flatten(1).cpu().numpy(), axis=1)
    rb = rankdata(b.flatten(1).cpu().numpy(), axis=1)
    return torch.from_numpy(_pearson_rows(ra, rb))


def _as_list(method: MethodLike | Sequence[MethodLike]) -> list[MethodLike]:
    return [method] if isinstance(method, (str, Method)) else list(method)


def _check(order: str, copies: int = 1, noise_level: float = 0.0) -> None:
    if order not in ORDERS:
        raise InvalidOptionError(f"unknown order {order!r} (valid: {', '.join(ORDERS)})")
    if not isinstance(copies, int) or isinstance(copies, bool) or copies < 1:
        raise InvalidOptionError(f"copies must be a positive integer, got {copies!r}")
    if not (isinstance(noise_level, (int, float)) and noise_level >= 0):
        raise InvalidOptionError(f"noise_level must be a non-negative number, got {noise_level!r}")


def _steps(work: nn.Module, x: Tensor, granularity: str, order: str) -> list[RandomizationStep]:
    steps = randomization_steps(work, x[:1], granularity)
    return steps if order == "bottom_up" else list(reversed(steps))


def _fixed_target(model: nn.Module, x: Tensor, target: TargetLike, s: _Settings) -> Tensor:
    """The class each image's maps explain, fixed on the trained model's clean input
    (a model-free control resolves the target in one guarded forward pass)."""
    from .controls import EdgeDetector

    ex = explain(model, x, EdgeDetector(), target, batch_size=s.batch_size)
    if len(ex.targets) != len(x):
        raise InvalidOptionError(
            "sMPRT and eMPRT explain one class per image; a top-k target gives several — "
            "pass one class per image (or None for the predicted class)"
        )
    return ex.targets


def _prepare(
    model: nn.Module | Any, inputs: Tensor, target: TargetLike, s: _Settings
) -> tuple[Tensor, Tensor, nn.Module]:
    """The checked inputs, the class each image's maps explain (:func:`_fixed_target`)
    and the copy of the model to randomize."""
    module = unwrap_model(model)[0]
    x = check_inputs(inputs, module)
    return x, _fixed_target(model, x, target, s), copy.deepcopy(module)


def _one_or_all(method: MethodLike | Sequence[MethodLike], results: list[Any]) -> Any:
    """One result for one method, the list for a sequence of methods."""
    return results[0] if isinstance(method, (str, Method)) else results


@dataclass(frozen=True, eq=False)
class SmoothMprtResult:
    """The outcome of :func:`smooth_mprt` for one method.

    ``similarity`` ``(len(after), N)`` float64: Spearman's ρ of the denoised absolute maps
    of the trained model and of the model after each step named in ``after`` (every one
    of ``steps``, in randomization order, or only the last); ``self_check`` ``(N,)``:
    the trained model's denoised map against a second one with independent noise
    (Quantus's ``"original"`` entry; the ceiling of any step).
    Lower similarity after randomization is better. ``reference`` ``(N, 1, H, W)`` is
    the trained model's denoised map as compared (normalised, absolute, as chosen);
    ``noise_seeds`` the seeds of the noise of the trained model, the self-check and each
    row of ``similarity``, in that order (:func:`smoothing_noise`).
    """

    higher_is_better: ClassVar[bool] = False

    method: str
    order: str
    mode: str
    steps: tuple[RandomizationStep, ...]
    after: tuple[str, ...]
    similarity: Tensor
    self_check: Tensor
    reference: Tensor
    explained: Tensor
    noise_seeds: tuple[int, ...]
    copies: int
    noise_level: float
    normalise: bool
    absolute: bool
    seed: int
    seconds: float

    @property
    def last(self) -> Tensor:
        """``(N,)`` ρ after the last step (Quantus's ``return_last_correlation``)."""
        return self.similarity[-1]

    def describe(self, lang: str = "en") -> Description:
        """The mean ρ after the last step and the self-check ceiling, in words
        (:func:`seethrough.trust.describe.describe_smooth_mprt`)."""
        from .describe import describe_smooth_mprt

        return describe_smooth_mprt(self, lang)

    @property
    def average(self) -> Tensor:
        """``(N,)`` mean ρ over the steps, without the trained-vs-trained score that
        Quantus's ``return_average_correlation`` mixes in (its ``"orig"`` key typo)."""
        return self.similarity.mean(dim=0)


def smooth_mprt(
    model: nn.Module | Any,
    inputs: Tensor,
    method: MethodLike | Sequence[MethodLike] = "gradient",
    target: TargetLike = None,
    *,
    copies: int = 50,
    noise_level: float = 0.1,
    order: str = "bottom_up",
    mode: str = "cascading",
    granularity: str = "block",
    every_step: bool = True,
    init: str = "default",
    std: float = 0.01,
    reset_running_stats: bool = False,
    normalise: bool = True,
    absolute: bool = True,
    seed: int = 0,
    batch_size: int | None = None,
    **options: Any,
) -> Any:
    """Smooth MPRT (module docstring; Hedström et al., 2023).

    Parameters
    ----------
    model, inputs, target, batch_size
        As for :func:`seethrough.explain`; ``target`` is fixed on the trained model
        (``None``: its predicted class) and explained by every randomized model.
    method : str, Method, or a sequence of them
        The method(s) to test, with ``**options`` as for :func:`seethrough.explain`;
        several methods share each model's noisy copies (and, where they can, one
        gradient pass).
    copies : int
        Copies averaged per map (default 50, Quantus's ``nr_samples`` and the paper's
        ImageNet value), the last one without noise.
    noise_level : float
        σ of the noise relative to each image's value range (default 0.1).
    order : {"bottom_up", "top_down"}
        Input side first (default, as the paper and Quantus) or logits first.
    mode, granularity, init, std, reset_running_stats
        As for :func:`~seethrough.trust.model_randomization`.
    every_step : bool
        Compare after every step (default) or only after the last (Quantus's
        ``skip_layers``: the fully randomized model in cascading mode).
    normalise, absolute : bool
        Second-moment normalisation and absolute value of the maps (both default True,
        as Quantus's ``SmoothMPRT``).
    seed : int
        Step ``k``'s weights use ``seed + 1 + k``; the noise and the method's own
        randomness of each model draw from seeds derived from ``seed``.

    Returns
    -------
    SmoothMprtResult, or a list of them (one per method) when ``method`` is a sequence.
    """
    started = time.perf_counter()
    methods = _as_list(method)
    labels = _check_methods(methods)
    _check(order, copies, noise_level)
    randomization = Randomization(mode, seed, init, std, reset_running_stats)
    s = _Settings(methods, copies, float(noise_level), normalise, absolute, batch_size, options)
    x, fixed, work = _prepare(model, inputs, target, s)
    references = _smoothed(work, x, fixed, 0, seed, s)
    second = _smoothed(work, x, fixed, 1, seed, s)
    self_checks = [_spearman_rows(r, m) for r, m in zip(references, second)]
    steps = _steps(work, x, granularity, order)
    rows: list[list[Tensor]] = [[] for _ in methods]
    after = []
    for k in randomization.randomize(work, steps, every_step):
        after.append(k)
        for m, new in enumerate(_smoothed(work, x, fixed, 2 + k, seed, s)):
            rows[m].append(_spearman_rows(references[m], new))
    seeds = tuple(derived_seed(seed, _NOISE_STREAM, i) for i in (0, 1, *(2 + k for k in after)))
    seconds = time.perf_counter() - started
    results = [
        SmoothMprtResult(
            method=label,
            order=order,
            mode=mode,
            steps=tuple(steps),
            after=tuple(steps[k].name for k in after),
            similarity=torch.stack(rows[m]),
            self_check=self_checks[m],
            reference=references[m].float().cpu(),
            explained=fixed.cpu(),
            noise_seeds=seeds,
            copies=copies,
            noise_level=float(noise_level),
            normalise=normalise,
            absolute=absolute,
            seed=seed,
            seconds=seconds,
        )
        for m, label in enumerate(labels)
    ]
    return _one_or_all(method, results)


@dataclass(frozen=True, eq=False)
class EfficientMprtResult:
    """The outcome of :func:`efficient_mprt` for one method; every tensor ``(N,)`` float64.

    ``score`` = ``(complexity_random − complexity_trained) / complexity_trained``, the
    relative rise of the map's discrete entropy from the trained to the fully randomized
    model (higher = better: the map reacts to the destroyed parameters). The model's own
    complexity (entropy of its softmax output, nats) is given for comparison:
    ``model_score`` is its relative rise, and ``score_vs_model`` the ratio of the two
    complexity *fractions* (Quantus's ``scores_delta_explanation_vs_models``).
    """

    higher_is_better: ClassVar[bool] = True

    method: str
    order: str
    steps: tuple[RandomizationStep, ...]
    complexity_trained: Tensor
    complexity_random: Tensor
    model_complexity_trained: Tensor
    model_complexity_random: Tensor
    explained: Tensor
    bins: int
    normalise: bool
    absolute: bool
    seed: int
    seconds: float

    @property
    def score(self) -> Tensor:
        return (self.complexity_random - self.complexity_trained) / self.complexity_trained

    @property
    def model_score(self) -> Tensor:
        t, r = self.model_complexity_trained, self.model_complexity_random
        return (r - t) / t

    @property
    def score_vs_model(self) -> Tensor:
        explanation = self.complexity_random / self.complexity_trained
        return explanation / (self.model_complexity_random / self.model_complexity_trained)

    def describe(self, lang: str = "en") -> Description:
        """The mean relative rise of the maps' complexity next to the model's own, in
        words (:func:`seethrough.trust.describe.describe_efficient_mprt`)."""
        from .describe import describe_efficient_mprt

        return describe_efficient_mprt(self, lang)


def _model_entropy(model: nn.Module, x: Tensor, batch_size: int | None) -> Tensor:
    logits = forward_logits(model, lambda a, b: x[a:b], len(x), Budget(batch_size, x.device))
    p = torch.softmax(logits.detach().to(torch.float64), dim=1)
    return -(torch.where(p > 0, p * p.log(), torch.zeros_like(p))).sum(dim=1).cpu()


def efficient_mprt(
    model: nn.Module | Any,
    inputs: Tensor,
    method: MethodLike | Sequence[MethodLike] = "gradient",
    target: TargetLike = None,
    *,
    bins: int = 100,
    order: str = "bottom_up",
    granularity: str = "block",
    init: str = "default",
    std: float = 0.01,
    reset_running_stats: bool = False,
    normalise: bool = True,
    absolute: bool = True,
    seed: int = 0,
    batch_size: int | None = None,
    **options: Any,
) -> Any:
    """Efficient MPRT (module docstring; Hedström et al., 2023): the relative rise in the
    map's complexity from the trained to the fully randomized model (cascading through
    every step).

    Parameters
    ----------
    model, inputs, target, method, batch_size, **options
        As for :func:`smooth_mprt`.
    bins : int
        Equal-width histogram bins of the complexity (default 100, as Quantus).
    order, granularity, init, std, reset_running_stats
        As for :func:`smooth_mprt`; with every step randomized the order only decides
        which seed each step's weights come from.
    normalise, absolute : bool
        Second-moment normalisation (no effect on the histogram's entropy, which is
        scale-invariant) and absolute value (default True: the complexity of the
        magnitudes; Quantus's default is ``abs=False``).
    seed : int
        As for :func:`smooth_mprt`.

    Returns
    -------
    EfficientMprtResult, or a list of them (one per method) when ``method`` is a sequence.
    """
    started = time.perf_counter()
    methods = _as_list(method)
    labels = _check_methods(methods)
    _check(order)
    randomization = Randomization("cascading", seed, init, std, reset_running_stats)
    if not isinstance(bins, int) or isinstance(bins, bool) or bins < 1:
        raise InvalidOptionError(f"bins must be a positive integer, got {bins!r}")
    s = _Settings(methods, 1, 0.0, normalise, absolute, batch_size, options)
    x, fixed, work = _prepare(model, inputs, target, s)
    trained = _maps(work, x, fixed, derived_seed(seed, _EXPLAIN_STREAM, 0), s)
    model_trained = _model_entropy(work, x, batch_size)
    steps = _steps(work, x, granularity, order)
    for _ in randomization.randomize(work, steps, every_step=False):
        pass  # every step, cascading: the fully randomized model
    random = _maps(work, x, fixed, derived_seed(seed, _EXPLAIN_STREAM, 1 + len(steps)), s)
    model_random = _model_entropy(work, x, batch_size)
    seconds = time.perf_counter() - started
    results = [
        EfficientMprtResult(
            method=label,
            order=order,
            steps=tuple(steps),
            complexity_trained=discrete_entropy(_finish(trained[m], s), bins),
            complexity_random=discrete_entropy(_finish(random[m], s), bins),
            model_complexity_trained=model_trained,
            model_complexity_random=model_random,
            explained=fixed.cpu(),
            bins=bins,
            normalise=normalise,
            absolute=absolute,
            seed=seed,
            seconds=seconds,
        )
        for m, label in enumerate(labels)
    ]
    return _one_or_all(method, results)
