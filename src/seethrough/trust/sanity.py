"""Model-parameter randomization (Adebayo et al., 2018): does the map depend on the model?

The test explains the inputs with the trained model, then re-initialises the network step
by step — *cascading* from the logits down (step k leaves steps 1…k randomized) or
*independently* (one step at a time, the rest trained) — explains again after each step
and measures how similar each new map is to the original. A method whose maps stay
similar while the model is destroyed does not explain the model.

Everything happens on a deep copy of the model; the user's model is never modified (not
even temporarily), and the global RNG is untouched. Steps and re-initialisation: see
:mod:`seethrough.trust.steps` and :mod:`seethrough.trust.randomize`.

Random numbers: the trained model's maps use the caller's ``seed``; the maps of every
randomized model, and the self-check's second run on the unrandomized copy, use seeds
of their own derived from it (:func:`~seethrough.trust.randomize.derived_seed`). A
stochastic method (SmoothGrad, the ``random_noise`` control) therefore draws independent
noise for every model, so its rows show the noise floor — the similarity two runs reach
by chance — instead of the 1.0 that re-using one seed would give.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..attribution import Method, explain, make_method
from ..attribution.explanation import Explanation
from ..core.budget import Budget
from ..core.guard import check_inputs, unwrap_model
from ..core.passes import forward_logits
from ..core.targets import TargetLike
from ..errors import InvalidOptionError
from ..words import Description
from .randomize import Randomization, derived_seed
from .similarity import RankedMaps, constant_maps, hog_similarity, reduce_maps, ssim
from .steps import RandomizationStep, randomization_steps
from .verdict import (
    CASCADE_THRESHOLD,
    LEVEL,
    METRIC,
    THRESHOLD,
    SanityVerdict,
    cascade_verdict,
    sanity_verdict,
)

__all__ = [
    "METRICS",
    "ComparisonResult",
    "RandomizationResult",
    "Similarities",
    "data_randomization",
    "edge_similarity",
    "edge_similarity_of",
    "method_label",
    "model_randomization",
]

METRICS = ("spearman_abs", "spearman", "ssim", "hog")
"""Similarity measures, each higher = more similar (1 = same map); see ``similarity``
(``hog`` is the Pearson correlation of HOG descriptors, as the paper)."""

MethodLike = str | Method
# Streams of derived seeds (``derived_seed(seed, stream, index)``).
_STEP_STREAM, _SELF_CHECK_STREAM, _RANDOM_LABEL_STREAM = 1, 2, 3

StepProgress = Callable[[int, int], None]


@dataclass(frozen=True, eq=False)
class Similarities:
    """One method's similarity to its original map after each step, ``(steps, N)`` float64.

    ``constant`` flags randomized maps with a single value (their rank measures are NaN);
    ``self_check`` is the mean similarity of the original map to a second run on the
    unrandomized copy with an independent seed — 1 for deterministic methods, below 1
    for stochastic ones (the ceiling any step can reach); ``self_check_values`` holds
    its ``(N,)`` per-image values.
    """

    method: str
    spearman_abs: Tensor
    spearman: Tensor
    ssim: Tensor
    hog: Tensor
    constant: Tensor
    self_check: Mapping[str, float]
    self_check_values: Mapping[str, Tensor] = field(default_factory=dict)

    def values(self, metric: str) -> Tensor:
        """The ``(steps, N)`` values of one of :data:`METRICS`."""
        if metric not in METRICS:
            raise InvalidOptionError(f"unknown metric {metric!r} (valid: {', '.join(METRICS)})")
        return getattr(self, metric)

    def mean(self, metric: str) -> Tensor:
        """Per step, the mean over images that have a value (NaN-safe)."""
        return self.values(metric).nanmean(dim=1)

    def std(self, metric: str) -> Tensor:
        """Per step, the standard deviation over images that have a value."""
        v = self.values(metric)
        keep = ~v.isnan()
        mean = v.nanmean(dim=1, keepdim=True)
        squares = torch.where(keep, (v - mean) ** 2, torch.zeros_like(v)).sum(dim=1)
        return (squares / (keep.sum(dim=1) - 1).clamp_min(1)).sqrt()


@dataclass(frozen=True, eq=False)
class RandomizationResult:
    """The outcome of :func:`model_randomization`.

    ``steps`` are in the order they were randomized (logits first); ``predictions`` and
    ``explained`` ``(steps, N)`` are each randomized model's top class and the class its
    maps explain; ``maps`` holds, per step and method, the absolute reduced maps
    ``(N, H, W)`` (float32, for figures), with ``original_maps`` the same for the trained
    model. ``methods`` are the methods' labels (:func:`method_label`). The trained
    model's maps use ``seed``, the self-check's second run ``self_check_seed`` and step
    ``k``'s maps ``step_seeds[k]`` (re-initialisation of step ``k`` uses ``seed + 1 + k``).
    """

    mode: str
    granularity: str
    steps: tuple[RandomizationStep, ...]
    methods: tuple[str, ...]
    similarities: tuple[Similarities, ...]
    original: tuple[Explanation, ...]
    original_maps: tuple[Tensor, ...]
    maps: tuple[tuple[Tensor, ...], ...]
    predictions: Tensor
    explained: Tensor
    follow_prediction: bool
    init: str
    std: float | None
    reset_running_stats: bool
    seed: int
    self_check_seed: int
    step_seeds: tuple[int, ...]
    seconds: float
    settings: Mapping[str, Any] = field(default_factory=dict)

    def similarity(self, method: str) -> Similarities:
        """The :class:`Similarities` of one method."""
        for s in self.similarities:
            if s.method == method:
                return s
        raise InvalidOptionError(f"no method {method!r} in this result ({', '.join(self.methods)})")

    def verdicts(
        self,
        metric: str | None = None,
        step: int | str | None = None,
        threshold: float | None = None,
        *,
        level: float = LEVEL,
        seed: int = 0,
    ) -> tuple[SanityVerdict, ...]:
        """Each method's :class:`~seethrough.trust.verdict.SanityVerdict`: in cascading
        mode, by default, over the whole cascade (each image's mean similarity over the
        steps, :func:`~seethrough.trust.verdict.cascade_verdict`: a method whose maps
        stay similar while the top layers are randomized fails, as guided backprop in
        Adebayo et al.'s Fig. 2); after one step when ``step`` is given, and always in
        independent mode.

        Parameters
        ----------
        metric : str, optional
            One of :data:`METRICS`; default Spearman's ρ of the absolute maps, or the
            first measure computed when that one was not (``metrics=`` of the run).
        step : int or str, optional
            Judge one step (its index or name) instead; in independent mode the default
            is the last one (the input-side step randomized alone).
        threshold : float, optional
            Default :data:`~seethrough.trust.verdict.CASCADE_THRESHOLD` for the cascade,
            :data:`~seethrough.trust.verdict.THRESHOLD` for one step.
        level, seed
            As :func:`~seethrough.trust.verdict.sanity_verdict` (the rule and the
            thresholds' justification are in :mod:`seethrough.trust.verdict`).
        """
        metric = _measured(self.similarities) if metric is None else metric
        if step is None and self.mode == "cascading":
            names = [s.name for s in self.steps]
            return tuple(
                cascade_verdict(
                    s.values(metric),
                    method=s.method,
                    steps=names,
                    metric=metric,
                    threshold=CASCADE_THRESHOLD if threshold is None else threshold,
                    self_check=s.self_check.get(metric),
                    level=level,
                    seed=seed,
                )
                for s in self.similarities
            )
        k = _step_index(self.steps, step)
        threshold = THRESHOLD if threshold is None else threshold
        return tuple(
            sanity_verdict(
                s.values(metric)[k],
                method=s.method,
                test="model_randomization",
                step=self.steps[k].name,
                metric=metric,
                threshold=threshold,
                self_check=s.self_check.get(metric),
                level=level,
                seed=seed,
            )
            for s in self.similarities
        )

    def describe(self, lang: str = "en") -> Description:
        """The verdicts (defaults of :meth:`verdicts`) in words, one finding per method:
        a failed method is reported as not reliable for this model (module
        :mod:`seethrough.trust.describe`)."""
        from .describe import describe_randomization

        return describe_randomization(self, lang)


def _measured(similarities: Sequence[Similarities]) -> str:
    """:data:`~seethrough.trust.verdict.METRIC` if it was computed, else the first of
    :data:`METRICS` that was (all NaN: not computed)."""
    for metric in (METRIC, *METRICS):
        if any(not bool(s.values(metric).isnan().all()) for s in similarities):
            return metric
    return METRIC


def _step_index(steps: Sequence[RandomizationStep], step: int | str | None) -> int:
    """The index of ``step`` (an index, a name, or None: the last)."""
    names = [s.name for s in steps]
    if step is None:
        return len(steps) - 1
    if isinstance(step, str):
        if step not in names:
            raise InvalidOptionError(f"no step {step!r} (steps: {', '.join(names)})")
        return names.index(step)
    if isinstance(step, bool) or not isinstance(step, int) or not -len(steps) <= step < len(steps):
        raise InvalidOptionError(
            f"step must be a name or an index below {len(steps)}, got {step!r}"
        )
    return step % len(steps)


def _input_maps(ex: Explanation) -> Tensor:
    return ex.to_input_size().attributions


class _Reference:
    """One method's original maps, with what every comparison needs computed once."""

    def __init__(self, maps: Tensor, foreground: Tensor | None, metrics: Sequence[str]) -> None:
        self.maps = maps
        self.foreground = foreground
        self.metrics = tuple(metrics)
        self._ranked: dict[bool, RankedMaps] = {}

    def ranked(self, absolute: bool) -> RankedMaps:
        if absolute not in self._ranked:
            self._ranked[absolute] = RankedMaps(
                self.maps, absolute=absolute, foreground=self.foreground
            )
        return self._ranked[absolute]

    def compare(self, new: Tensor) -> tuple[dict[str, Tensor], RankedMaps | None]:
        """The chosen measures (the others NaN), and the new maps' absolute ranking when
        one was made (its reduced maps serve figures)."""
        skipped = torch.full((len(new),), float("nan"), dtype=torch.float64)
        values = dict.fromkeys(METRICS, skipped)
        ranked_abs = None
        for absolute, metric in ((True, "spearman_abs"), (False, "spearman")):
            if metric in self.metrics:
                ranked = RankedMaps(new, absolute=absolute, foreground=self.foreground)
                values[metric] = self.ranked(absolute).spearman(ranked)
                ranked_abs = ranked if absolute else ranked_abs
        if "ssim" in self.metrics:
            values["ssim"] = ssim(self.maps, new)
        if "hog" in self.metrics:
            values["hog"] = hog_similarity(self.maps, new)
        return values, ranked_abs


def _compare(
    original: Tensor, new: Tensor, foreground: Tensor | None, metrics: Sequence[str] = METRICS
) -> dict[str, Tensor]:
    """The chosen measures; the others are NaN (not computed)."""
    return _Reference(original, foreground, metrics).compare(new)[0]


def _module(model: Any) -> nn.Module:
    return unwrap_model(model)[0]


def method_label(method: MethodLike) -> str:
    """The name a method's rows carry in results: a registered name as given, a method
    object as its name plus the options that differ from their defaults, e.g.
    ``GradCam(relu=True)`` → ``"grad_cam(relu=True)"``."""
    if isinstance(method, str):
        return method
    changed = []
    for f in dataclasses.fields(method):
        if f.default is not dataclasses.MISSING:
            default: Any = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        value = getattr(method, f.name)
        shown = value.name if isinstance(value, Method) else value
        default = default.name if isinstance(default, Method) else default
        try:
            same = bool(shown == default)
        except (TypeError, RuntimeError, ValueError):  # e.g. tensors: never "equal"
            same = False
        if not same:
            if isinstance(shown, torch.Tensor):  # a label, not a printout of the values
                text = f"<tensor {'×'.join(str(d) for d in shown.shape)}>"
            else:
                text = repr(shown)
            changed.append(f"{f.name}={text}")
    return f"{method.name}({', '.join(changed)})" if changed else method.name


def _check_methods(methods: Sequence[MethodLike]) -> list[str]:
    """The methods' labels; unknown names and repeated labels are refused."""
    if not methods:
        raise InvalidOptionError("no method given; name at least one")
    for m in methods:
        make_method(m)  # unknown names are refused here, with suggestions
    labels = [method_label(m) for m in methods]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise InvalidOptionError(
            f"methods {repeated} are given more than once; list each method once, or "
            "configure the copies differently (e.g. GradCam(relu=True) next to 'grad_cam')"
        )
    return labels


def _check_options(methods: Sequence[MethodLike], metrics: Sequence[str]) -> list[str]:
    """The methods' labels (:func:`_check_methods`); unknown or no metrics are refused."""
    labels = _check_methods(methods)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise InvalidOptionError(
            f"unknown metrics {unknown!r} (valid: {', '.join(METRICS)})"
            if unknown
            else "metrics is empty; name at least one"
        )
    return labels


def _similarities(
    method: str, table: Mapping[str, Tensor], checks: Mapping[str, Tensor] | None = None
) -> Similarities:
    """A method's :class:`Similarities` from its ``(steps, N)`` values of every one of
    :data:`METRICS` and ``"constant"``, and its self-check values (if it has one)."""
    return Similarities(
        method=method,
        spearman_abs=table["spearman_abs"],
        spearman=table["spearman"],
        ssim=table["ssim"],
        hog=table["hog"],
        constant=table["constant"],
        self_check={} if checks is None else {m: float(v.nanmean()) for m, v in checks.items()},
        self_check_values={} if checks is None else dict(checks),
    )


def _self_checks(
    references: Sequence[_Reference],
    rerun: Callable[[], list[Explanation]],
    enabled: bool,
    n: int,
) -> list[dict[str, Tensor]]:
    """Each method's similarity to a second run on the unrandomized copy (NaN if off)."""
    if not enabled:
        skipped = torch.full((n,), float("nan"), dtype=torch.float64)
        return [dict.fromkeys(METRICS, skipped) for _ in references]
    return [r.compare(_input_maps(ex))[0] for r, ex in zip(references, rerun())]


def _explain_trained(
    model: nn.Module | Any,
    x: Tensor,
    methods: list[MethodLike],
    target: TargetLike,
    seed: int,
    batch_size: int | None,
    options: Mapping[str, Any],
) -> list[Explanation]:
    """The trained model's explanations: one class per image, else refused."""
    first = explain(model, x, methods, target, seed=seed, batch_size=batch_size, **options)
    if len(first[0].targets) != len(x):
        raise InvalidOptionError(
            "model_randomization explains one class per image; a top-k target gives several "
            "— pass one class per image (or None for the predicted class)"
        )
    return first


@dataclass(frozen=True)
class _Copy:
    """The copy of the model that is randomized, and how every method runs on it."""

    work: nn.Module
    x: Tensor
    methods: list[MethodLike]
    target: Tensor | None  # None: each model explains its own top class
    batch_size: int | None
    options: Mapping[str, Any]
    budget: Budget  # chunks the prediction passes

    def explain(self, seed: int) -> list[Explanation]:
        """Every method's explanation on the copy as it is now."""
        return explain(
            self.work,
            self.x,
            self.methods,
            self.target,
            seed=seed,
            batch_size=self.batch_size,
            **self.options,
        )

    def predicted(self, results: Sequence[Explanation]) -> Tensor:
        """``(N,)`` the copy's top class, read off a method's plain pass if one ran."""
        seen = next((ex.predicted for ex in results if ex.predicted is not None), None)
        if seen is None:  # no method ran the plain inputs: one forward pass
            x = self.x
            logits = forward_logits(self.work, lambda a, b: x[a:b], len(x), self.budget)
            seen = logits.argmax(dim=1)
        return seen


@dataclass
class _Table:
    """Each method's measures and maps after every step so far (mutable, internal)."""

    references: list[_Reference]
    values: list[dict[str, list[Tensor]]] = field(init=False)
    maps: list[tuple[Tensor, ...]] = field(default_factory=list)
    predictions: list[Tensor] = field(default_factory=list)
    explained: list[Tensor] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.values = [{m: [] for m in (*METRICS, "constant")} for _ in self.references]

    def add(self, results: Sequence[Explanation], predicted: Tensor) -> None:
        """Compare one step's explanations (one per method) with the references."""
        self.predictions.append(predicted.cpu())
        self.explained.append(results[0].targets.cpu())
        self.maps.append(tuple(self._compare(k, ex) for k, ex in enumerate(results)))

    def _compare(self, k: int, ex: Explanation) -> Tensor:
        """Record method ``k``'s measures; return its absolute reduced map (float32)."""
        new = _input_maps(ex)
        values, ranked = self.references[k].compare(new)
        for metric, value in {**values, "constant": constant_maps(new)}.items():
            self.values[k][metric].append(value)
        reduced = ranked.reduced if ranked is not None else reduce_maps(new, absolute=True)
        return torch.from_numpy(reduced).float()

    def similarities(
        self, labels: Sequence[str], checks: Sequence[Mapping[str, Tensor]]
    ) -> tuple[Similarities, ...]:
        """Each method's :class:`Similarities`, rows in step order."""
        return tuple(
            _similarities(label, {m: torch.stack(v) for m, v in rows.items()}, check)
            for label, rows, check in zip(labels, self.values, checks)
        )

    def original_maps(self) -> tuple[Tensor, ...]:
        """The references' absolute reduced maps (float32, for figures)."""
        return tuple(
            torch.from_numpy(reduce_maps(r.maps, absolute=True)).float() for r in self.references
        )


def model_randomization(
    model: nn.Module | Any,
    inputs: Tensor,
    methods: Sequence[MethodLike] = (
        "gradient",
        "gradient_x_input",
        "integrated_gradients",
        "grad_cam",
    ),
    target: TargetLike = None,
    *,
    mode: str = "cascading",
    granularity: str = "block",
    follow_prediction: bool = False,
    init: str = "default",
    std: float = 0.01,
    reset_running_stats: bool = False,
    seed: int = 0,
    foreground: Tensor | None = None,
    metrics: Sequence[str] = METRICS,
    self_check: bool = True,
    batch_size: int | None = None,
    progress: StepProgress | None = None,
    **options: Any,
) -> RandomizationResult:
    """Run the model-parameter randomization test (module docstring).

    Parameters
    ----------
    model, inputs, target, batch_size
        As for :func:`seethrough.explain` (``target`` is what the trained model's maps
        explain; ``None``: its predicted class).
    seed : int
        Seed of the trained model's maps; every other run draws from a seed derived
        from it (module docstring), so a stochastic method's noise is independent
        between models. Step ``k`` is re-initialised from ``seed + 1 + k``.
    methods : sequence of str or Method
        Registered method names (controls ``edge_detector``, ``random_noise`` included)
        or configured method objects (``GradCam(relu=True)``), each given once; results
        name them by :func:`method_label`.
    mode : {"cascading", "independent"}
    granularity : {"block", "module"}
        Steps of blocks / stages (default) or of single parametrised modules.
    follow_prediction : bool
        False (default): every randomized model explains the class the trained model
        explained. True: each explains its own top class, as the paper's code did.
    init : {"default", "normal"}, std : float
        Re-initialisation: each layer's own scheme, or N(0, std²).
    reset_running_stats : bool
        Also reset normalisation layers' running statistics (default: kept, as the paper).
    foreground : Tensor, optional
        ``(N, H, W)`` bool; Spearman measures use only these pixels.
    metrics : sequence of str
        Which of :data:`METRICS` to compute (default all; the others are NaN). SSIM and
        HOG cost more than a model pass on large maps.
    self_check : bool
        Run every method a second time on the unrandomized copy with an independent seed
        (default); False skips that run (one run of every method less) and leaves the
        self-check NaN.
    progress : callable, optional
        ``progress(steps_done, steps_total)`` after the original and each step.
    **options
        Method options, as for a multi-method :func:`seethrough.explain` call.
    """
    started = time.perf_counter()
    module = _module(model)
    randomization = Randomization(mode, seed, init, std, reset_running_stats)
    labels = _check_options(methods, metrics)
    x = check_inputs(inputs, module)
    first = _explain_trained(model, x, list(methods), target, seed, batch_size, options)
    wanted = None if follow_prediction else first[0].targets
    budget = Budget(batch_size, x.device)
    trial = _Copy(copy.deepcopy(module), x, list(methods), wanted, batch_size, options, budget)
    steps = list(reversed(randomization_steps(trial.work, x[:1], granularity)))
    if progress is not None:
        progress(1, len(steps) + 1)
    self_check_seed = derived_seed(seed, _SELF_CHECK_STREAM, 0)
    step_seeds = tuple(derived_seed(seed, _STEP_STREAM, i) for i in range(len(steps)))
    table = _Table([_Reference(_input_maps(ex), foreground, metrics) for ex in first])
    rerun = functools.partial(trial.explain, self_check_seed)
    checks = _self_checks(table.references, rerun, self_check, len(x))
    for i in randomization.randomize(trial.work, steps):
        results = trial.explain(step_seeds[i])
        table.add(results, trial.predicted(results))
        if progress is not None:
            progress(i + 2, len(steps) + 1)
    return RandomizationResult(
        mode=mode,
        granularity=granularity,
        steps=tuple(steps),
        methods=tuple(labels),
        similarities=table.similarities(labels, checks),
        original=tuple(first),
        original_maps=table.original_maps(),
        maps=tuple(table.maps),
        predictions=torch.stack(table.predictions),
        explained=torch.stack(table.explained),
        follow_prediction=follow_prediction,
        init=init,
        std=std if init == "normal" else None,
        reset_running_stats=reset_running_stats,
        seed=seed,
        self_check_seed=self_check_seed,
        step_seeds=step_seeds,
        seconds=time.perf_counter() - started,
        settings=dict(options),
    )


@dataclass(frozen=True, eq=False)
class ComparisonResult:
    """Per method, the similarity of its maps to a reference (one row: ``(1, N)``).

    ``reference`` says what was compared: ``"edge map"`` (the Sobel edges of the input)
    or ``"random-label model"`` (the same method on a model trained on permuted labels).
    """

    reference: str
    methods: tuple[str, ...]
    similarities: tuple[Similarities, ...]
    explained: Tensor
    reference_explained: Tensor | None
    seconds: float

    def similarity(self, method: str) -> Similarities:
        for s in self.similarities:
            if s.method == method:
                return s
        raise InvalidOptionError(f"no method {method!r} in this result ({', '.join(self.methods)})")

    @property
    def test(self) -> str:
        """``"data_randomization"`` (random-label model) or ``"edge_similarity"``."""
        return "edge_similarity" if self.reference == "edge map" else "data_randomization"

    def verdicts(
        self,
        metric: str | None = None,
        threshold: float = THRESHOLD,
        *,
        level: float = LEVEL,
        seed: int = 0,
    ) -> tuple[SanityVerdict, ...]:
        """Each method's :class:`~seethrough.trust.verdict.SanityVerdict`: for data
        randomization, "passed" when the maps of the random-label model differ from the
        trained model's (interval below ``threshold``); for the edge map, "failed" means
        the maps resemble the input's edges. Parameters as
        :meth:`RandomizationResult.verdicts`."""
        metric = _measured(self.similarities) if metric is None else metric
        return tuple(
            sanity_verdict(
                s.values(metric)[0],
                method=s.method,
                test=self.test,
                step=self.reference,
                metric=metric,
                threshold=threshold,
                level=level,
                seed=seed,
            )
            for s in self.similarities
        )

    def describe(self, lang: str = "en") -> Description:
        """The verdicts (defaults of :meth:`verdicts`) in words, one finding per method
        (:mod:`seethrough.trust.describe`)."""
        from .describe import describe_comparison_result

        return describe_comparison_result(self, lang)


def _one_row(method: str, values: dict[str, Tensor], constant: Tensor) -> Similarities:
    """A comparison's :class:`Similarities`: one row, no self-check."""
    row = {m: v[None] for m, v in {**values, "constant": constant}.items()}
    return _similarities(method, row)


def edge_similarity(
    model: nn.Module | Any,
    inputs: Tensor,
    methods: Sequence[MethodLike],
    target: TargetLike = None,
    *,
    foreground: Tensor | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    **options: Any,
) -> ComparisonResult:
    """How much each method's map resembles the input's edges (Sobel magnitude) — the
    paper's warning sign: a map that matches the edges may not need the model at all."""
    started = time.perf_counter()
    labels = _check_methods(methods)
    x = check_inputs(inputs, _module(model))
    results = explain(model, x, list(methods), target, seed=seed, batch_size=batch_size, **options)
    return edge_similarity_of(results, foreground=foreground, started=started, labels=labels)


def edge_similarity_of(
    explanations: Sequence[Explanation],
    *,
    foreground: Tensor | None = None,
    started: float | None = None,
    labels: Sequence[str] | None = None,
) -> ComparisonResult:
    """:func:`edge_similarity` for explanations already made (of the same inputs);
    ``labels`` name their rows (default: each explanation's method name), e.g. a
    :class:`RandomizationResult`'s ``methods`` for its ``original`` explanations."""
    from .controls import sobel_edges

    began = time.perf_counter() if started is None else started
    names = list(labels) if labels is not None else [ex.method for ex in explanations]
    if len(names) != len(explanations):
        raise InvalidOptionError(
            f"{len(names)} labels for {len(explanations)} explanations; give one per explanation"
        )
    edges = sobel_edges(explanations[0].inputs)
    sims = tuple(
        _one_row(name, _compare(edges, maps, foreground), constant_maps(maps))
        for name, maps in ((name, _input_maps(ex)) for name, ex in zip(names, explanations))
    )
    return ComparisonResult(
        "edge map",
        tuple(names),
        sims,
        explanations[0].targets,
        None,
        time.perf_counter() - began,
    )


def data_randomization(
    model: nn.Module | Any,
    random_label_model: nn.Module | Any,
    inputs: Tensor,
    methods: Sequence[MethodLike],
    target: TargetLike = None,
    *,
    follow_prediction: bool = False,
    foreground: Tensor | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    **options: Any,
) -> ComparisonResult:
    """The data randomization test: each method's maps on ``model`` (trained on the true
    labels) against its maps on ``random_label_model`` (the same architecture trained on
    permuted labels). High similarity means the map does not depend on what the labels
    taught the model.

    Both explain the class ``target`` selects on ``model`` (``None``: its prediction);
    with ``follow_prediction`` the random-label model explains its own top class.
    ``model``'s maps use ``seed``; the random-label model's draw from a seed derived from
    it, so a stochastic method's noise is independent between the two models (as in
    :func:`model_randomization`). Methods: as for :func:`model_randomization`.
    """
    started = time.perf_counter()
    labels = _check_methods(methods)
    x = check_inputs(inputs, _module(model))
    names = list(methods)
    true = explain(model, x, names, target, seed=seed, batch_size=batch_size, **options)
    wanted = None if follow_prediction else true[0].targets
    other_seed = derived_seed(seed, _RANDOM_LABEL_STREAM, 0)
    rand = explain(
        random_label_model, x, names, wanted, seed=other_seed, batch_size=batch_size, **options
    )
    sims = tuple(
        _one_row(label, _compare(_input_maps(a), maps, foreground), constant_maps(maps))
        for label, a, maps in ((k, a, _input_maps(b)) for k, a, b in zip(labels, true, rand))
    )
    return ComparisonResult(
        "random-label model",
        tuple(labels),
        sims,
        true[0].targets,
        rand[0].targets,
        time.perf_counter() - started,
    )
