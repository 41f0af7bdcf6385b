"""Robust accuracy per ε, with checks for gradient masking.

:func:`evaluate` runs PGD-k (Madry et al., 2018) with restarts at each ε on every image the
model classifies correctly, and reports clean and robust accuracy with bootstrap intervals.
A robust accuracy is only as good as the attack behind it: a model that hides or breaks its
gradients (*gradient masking*, Athalye et al., 2018, "Obfuscated Gradients Give a False
Sense of Security", ICML) looks robust to a gradient attack without being robust. Carlini
et al. (2019, "On Evaluating Adversarial Robustness", arXiv:1902.06705) list the symptoms;
:func:`evaluate` tests four of them and reports each failure as a field and a
:class:`GradientMaskingWarning`:

* **more steps** (``check_steps``): a 2k-step PGD that continues the k-step attack from
  its last point (same start, same step size) must not leave *more* images correct;
* **larger ε**: accuracy must not rise from one ε to the next larger one;
* **transfer** (``transfer_from``): PGD on another model, transferred, must not fool more
  images than the white-box attack on the model itself;
* **large ε** (``large_eps``): at an ε that reaches every valid input, accuracy must fall
  to ~0 (at most ``large_eps_accuracy``).

"Beyond sampling noise" is an exact one-sided McNemar test on the images the two attacks
disagree on (the images robust under one attack but not the other are binomial with
p = ½ if neither attack is stronger), Holm-corrected over the ε values (over the pairs of
consecutive ε for the larger-ε check) at level ``alpha``. Restarts need no such check: a
row runs another restart only while it is not fooled, and keeps its first success, so
more restarts cannot raise robust accuracy by construction.

Robust accuracy counts an image as correct when it is classified correctly both clean
and under attack (images misclassified clean are not attacked; RobustBench's
convention). ``worst_case_accuracy`` counts an image only when it survives every attack
run at that ε (PGD-k, PGD-2k, the transfer attack).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from scipy import stats
from torch import Tensor, nn

from ..core.budget import Budget
from ..core.guard import check_inputs, guarded, unwrap_model
from ..core.passes import forward_logits
from ..core.stats import Interval, holm, mean_ci
from ..errors import InvalidInputError, InvalidOptionError
from ..words import Description, Finding, Term, Value
from .attacks import EPS_SPACES, NORMS, STEP_FACTOR, _check_choice, _pixel_scale, _valid_box, pgd

__all__ = [
    "CHECKS",
    "EvaluationSettings",
    "GradientMaskingWarning",
    "MaskingCheck",
    "RobustnessReport",
    "evaluate",
]

CHECKS: tuple[str, ...] = ("more_steps", "larger_eps", "transfer", "large_eps")
"""The gradient-masking checks, in the order a report lists them."""

EvalProgress = Callable[[int, "int | None"], None]
"""Called as ``progress(images_done, images_total)`` (total ``None`` when unknown)."""


class GradientMaskingWarning(UserWarning):
    """A check for gradient masking failed: the robust accuracy may be overestimated."""


@dataclass(frozen=True)
class MaskingCheck:
    """One check for gradient masking: ``accuracy`` must not exceed ``bound``.

    Attributes
    ----------
    name : str
        One of :data:`CHECKS`.
    eps : float
        The ε it is about (``larger_eps``: the larger ε of the pair; ``large_eps``: the
        large ε).
    passed : bool
    accuracy : float
        The accuracy that must not be higher: under the 2k-step attack, at the larger ε,
        under the white-box attack (``transfer``), at the large ε.
    bound : float
        What it must not exceed: the k-step accuracy, the accuracy at the smaller ε, the
        transfer attack's, ``large_eps_accuracy``.
    gained, lost : int
        Images correct under ``accuracy``'s attack but not under the bound's, and the
        converse (McNemar's discordant pairs; 0 for ``large_eps``).
    p_value : float or None
        Exact one-sided McNemar p-value that ``accuracy`` exceeds ``bound`` by more than
        chance, Holm-corrected over the family (None for ``large_eps``, a threshold).
    other_eps : float or None
        ``larger_eps``: the smaller ε of the pair.
    """

    name: str
    eps: float
    passed: bool
    accuracy: float
    bound: float
    gained: int
    lost: int
    p_value: float | None
    other_eps: float | None = None


@dataclass(frozen=True)
class EvaluationSettings:
    """How :func:`evaluate` ran. ``step_fraction``: PGD's step as a fraction of ε;
    ``check_steps``: the steps of the more-steps check (None: not run); ``large_eps``: the
    ε of the large-ε check (None: not run); ``transfer_source``: the transfer model's
    name (None: not run)."""

    norm: str
    eps_space: str
    steps: int
    restarts: int
    step_fraction: float
    random_start: bool
    seed: int
    valid_low: tuple[float, ...] | None
    valid_high: tuple[float, ...] | None
    check_steps: int | None
    large_eps: float | None
    large_eps_accuracy: float
    transfer_source: str | None
    alpha: float
    level: float


@dataclass(frozen=True)
class RobustnessReport:
    """Clean and robust accuracy per ε, and the gradient-masking checks.

    Attributes
    ----------
    n : int
        Images evaluated.
    eps : tuple of float
        The radii, in ``settings.eps_space`` units, in the order given.
    clean_accuracy : Interval
        Fraction classified correctly without attack, with its bootstrap interval.
    robust_accuracy : tuple of Interval
        Per ε: fraction correct clean and under PGD-k with restarts.
    worst_case_accuracy : tuple of Interval
        Per ε: fraction that survives every attack run at that ε.
    checks : tuple of MaskingCheck
    warnings : tuple of str
        The failed checks in words (also issued as :class:`GradientMaskingWarning`).
    settings : EvaluationSettings
    correct : Tensor
        ``(n,)`` bool, clean.
    robust, worst_case : Tensor
        ``(len(eps), n)`` bool.
    """

    n: int
    eps: tuple[float, ...]
    clean_accuracy: Interval
    robust_accuracy: tuple[Interval, ...]
    worst_case_accuracy: tuple[Interval, ...]
    checks: tuple[MaskingCheck, ...]
    warnings: tuple[str, ...]
    settings: EvaluationSettings
    correct: Tensor = field(repr=False)
    robust: Tensor = field(repr=False)
    worst_case: Tensor = field(repr=False)

    @property
    def masking_suspected(self) -> bool:
        """Whether any check failed."""
        return any(not c.passed for c in self.checks)

    def describe(self) -> Description:
        """The evaluation in words (English and Chinese: ``.text("zh")``)."""
        return Description("robustness", tuple(_findings(self)))


# --------------------------------------------------------------------------- evaluate


def evaluate(
    model: Any,
    data: Any,
    *,
    eps: float | Sequence[float],
    norm: str = "linf",
    steps: int = 20,
    restarts: int = 1,
    step_fraction: float | None = None,
    random_start: bool = True,
    eps_space: str = "input",
    valid_range: tuple[Any, Any] | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    layout: str = "auto",
    check_steps: bool = True,
    large_eps: float | str | None = "auto",
    large_eps_accuracy: float = 0.01,
    transfer_from: Any = None,
    alpha: float = 0.05,
    level: float = 0.95,
    progress: EvalProgress | None = None,
) -> RobustnessReport:
    """Clean and robust accuracy of ``model`` per ε under PGD, with masking checks.

    PGD-k with restarts (Madry et al., 2018) at each ε; the checks for gradient masking
    follow Carlini et al. (2019) and are described in the module docstring.

    Parameters
    ----------
    model
        An ``nn.Module`` in eval mode or a ``LoadedModel`` (see :mod:`.attacks`).
    data
        ``(x, y)``: inputs ``(N, C, H, W)`` and true classes ``(N,)``; or an iterable of
        such batches (a ``DataLoader``). Batches are moved to the model's device.
    eps : float or sequence of float
        Radii (≥ 0), in ``eps_space`` units.
    norm, eps_space, valid_range, random_start, batch_size, layout
        As for :func:`~seethrough.robust.attacks.pgd`.
    steps, restarts : int
        PGD-k's steps and random restarts.
    step_fraction : float, optional
        The step as a fraction of ε; default ``2.5 / steps``.
    seed : int
        Image ``i`` (counted over all batches) uses seed ``seed + i`` in every attack.
    check_steps : bool
        Run the more-steps check (a 2k-step attack at every ε; about doubles the cost).
    large_eps : float, "auto" or None
        ε of the large-ε check: ``"auto"`` — one that reaches every point of the valid
        range (L∞: the widest channel's range; L2: the range's diagonal), skipped when
        the range is unbounded; ``None`` skips it.
    large_eps_accuracy : float
        The accuracy the large-ε check allows.
    transfer_from
        Another model (``nn.Module`` or ``LoadedModel``) taking the same inputs: PGD-k on
        it, transferred, is the transfer check (and joins the worst case).
    alpha : float
        Level of the masking tests (Holm-corrected).
    level : float
        Confidence level of the bootstrap intervals.
    progress
        ``progress(images_done, images_total)`` after each batch (total None if unknown).

    Returns
    -------
    RobustnessReport

    Raises
    ------
    InvalidOptionError
        An unknown ``norm``/``eps_space``, ``eps < 0``, bad counts or levels.
    InvalidInputError
        ``data`` not understood, labels of the wrong length, fewer than 2 images.
    ModelStateError
        The model is in training mode.
    """
    module, _, preprocess = unwrap_model(model)
    radii = _check_eps(eps)
    _check_levels(alpha, level, large_eps_accuracy)
    for name, count in (("steps", steps), ("restarts", restarts)):
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise InvalidOptionError(f"{name} must be a positive integer, got {count!r}")
    fraction = STEP_FACTOR / steps if step_fraction is None else step_fraction
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not fraction > 0:
        raise InvalidOptionError(f"step_fraction must be a positive number, got {step_fraction!r}")
    norm = _check_choice("norm", norm, NORMS)
    eps_space = _check_choice("eps_space", eps_space, EPS_SPACES)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidOptionError(f"seed must be an integer, got {seed!r}")
    if large_eps is not None and large_eps != "auto":
        large_eps = _check_eps(large_eps)[0]
    if valid_range is None and preprocess is None:
        warnings.warn(
            "no valid input range is known for a plain nn.Module: the adversarial images are "
            "not clipped; pass valid_range=(low, high) in the model's input units, a "
            "LoadedModel, or valid_range=(-inf, inf) to evaluate without clipping",
            UserWarning,
            stacklevel=2,
        )
        valid_range = (-math.inf, math.inf)
    source = None if transfer_from is None else _transfer_source(transfer_from, preprocess)
    run = _Run(
        model=model,
        module=module,
        radii=radii,
        attack=dict(
            norm=norm,
            steps=steps,
            restarts=restarts,
            random_start=random_start,
            eps_space=eps_space,
            valid_range=valid_range,
            batch_size=batch_size,
            layout=layout,
        ),
        fraction=float(fraction),
        seed=seed,
        check_steps=check_steps,
        large_eps=large_eps,
        source=source,
    )
    total = _total(data)
    for x, y in _batches(data):
        run.batch(x, y)
        if progress is not None:
            progress(run.done, total)
    return run.report(large_eps_accuracy, alpha, level, transfer_from)


def _check_eps(eps: Any) -> tuple[float, ...]:
    values = [eps] if isinstance(eps, (int, float)) and not isinstance(eps, bool) else eps
    try:
        radii = tuple(float(e) for e in values)
    except TypeError:
        raise InvalidOptionError(
            f"eps must be a number or a list of numbers, got {eps!r}"
        ) from None
    if not radii:
        raise InvalidOptionError("eps is empty; give at least one radius, e.g. eps=[0.05, 0.1]")
    for e in radii:
        if not math.isfinite(e) or e < 0:
            raise InvalidOptionError(f"eps must be non-negative finite numbers, got {e!r}")
    return radii


def _check_levels(alpha: float, level: float, floor: float) -> None:
    for name, value in (("alpha", alpha), ("level", level)):
        if not isinstance(value, (int, float)) or not 0 < value < 1:
            raise InvalidOptionError(f"{name} must be in (0, 1), got {value!r}")
    if not isinstance(floor, (int, float)) or not 0 <= floor < 1:
        raise InvalidOptionError(f"large_eps_accuracy must be in [0, 1), got {floor!r}")


def _transfer_source(transfer_from: Any, preprocess: Any) -> Any:
    """The source model, seeing the evaluated model's preprocessing (they share inputs)."""
    module, labels, _ = unwrap_model(transfer_from)
    return SimpleNamespace(module=module, labels=labels, preprocess=preprocess)


def _total(data: Any) -> int | None:
    if _is_pair(data):
        return len(data[0])
    dataset = getattr(data, "dataset", None)
    try:
        return len(dataset) if dataset is not None else None
    except TypeError:
        return None


def _is_pair(item: Any) -> bool:
    return (
        isinstance(item, (tuple, list))
        and len(item) == 2
        and isinstance(item[0], Tensor)
        and isinstance(item[1], Tensor)
    )


def _batches(data: Any) -> Iterator[tuple[Tensor, Tensor]]:
    if _is_pair(data):
        yield data[0], data[1]
        return
    if isinstance(data, Tensor) or not isinstance(data, Iterable):
        raise InvalidInputError(
            f"data must be (inputs, labels) tensors or an iterable of such batches (a "
            f"DataLoader), got {type(data).__name__}"
        )
    for item in data:
        if not (isinstance(item, (tuple, list)) and len(item) >= 2):
            raise InvalidInputError(
                f"each batch of data must be (inputs, labels), got {type(item).__name__}"
            )
        if not (isinstance(item[0], Tensor) and isinstance(item[1], Tensor)):
            raise InvalidInputError("each batch of data must be (inputs, labels) tensors")
        yield item[0], item[1]


@dataclass
class _Run:
    """The attacks of one :func:`evaluate` call, batch by batch; outcomes per image."""

    model: Any
    module: nn.Module
    radii: tuple[float, ...]
    attack: dict[str, Any]
    fraction: float
    seed: int
    check_steps: bool
    large_eps: Any
    source: Any
    done: int = 0
    box: tuple[Any, Any] = (None, None)
    large: float | None = None
    parts: dict[str, list[Tensor]] = field(default_factory=dict)

    def batch(self, x: Tensor, y: Tensor) -> None:
        device = _device(self.module, x)
        x = check_inputs(x.to(device), self.module)
        y = _labels(y, len(x)).to(device)
        correct = self._predict(self.module, x) == y
        rows = torch.nonzero(correct).flatten()
        seeds = [self.seed + self.done + i for i in rows.tolist()]
        self._keep("correct", correct)
        if self.done == 0:
            self._resolve_range(x)
        for e in self.radii:
            self._keep_attacks(e, x, y, rows, seeds)
        if self.large is not None:
            self._keep("large", self._robust(self.model, x, y, rows, seeds, self.large))
        self.done += len(x)

    def _keep_attacks(self, e: float, x: Tensor, y: Tensor, rows: Tensor, seeds: list[int]) -> None:
        robust = self._robust(self.model, x, y, rows, seeds, e)
        worst = robust.clone()
        self._keep(f"robust {e}", robust)
        if self.check_steps:
            more = self._robust(self.model, x, y, rows, seeds, e, steps=2 * self.attack["steps"])
            worst &= more
            self._keep(f"more {e}", more)
        if self.source is not None:
            moved = self._transferred(x, y, rows, seeds, e)
            worst &= moved
            self._keep(f"transfer {e}", moved)
        self._keep(f"worst {e}", worst)

    def _robust(
        self,
        model: Any,
        x: Tensor,
        y: Tensor,
        rows: Tensor,
        seeds: list[int],
        e: float,
        steps: int | None = None,
    ) -> Tensor:
        """Per image: correct clean and not fooled by PGD at ``e`` (rows: the correct ones)."""
        robust = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        if len(rows) == 0:
            return robust
        options = {**self.attack, "steps": steps or self.attack["steps"]}
        result = pgd(
            model,
            x[rows],
            eps=e,
            step_size=self.fraction * e if e > 0 else None,
            labels=y[rows],
            seed=seeds,
            **options,
        )
        robust[rows] = ~result.success
        return robust

    def _transferred(
        self, x: Tensor, y: Tensor, rows: Tensor, seeds: list[int], e: float
    ) -> Tensor:
        """Per image: the evaluated model still correct on PGD examples made on the source."""
        robust = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        if len(rows) == 0:
            return robust
        result = pgd(  # the source sees the evaluated model's preprocessing: the same box
            self.source,
            x[rows],
            eps=e,
            step_size=self.fraction * e if e > 0 else None,
            labels=y[rows],
            seed=seeds,
            **self.attack,
        )
        robust[rows] = self._predict(self.module, result.adversarial) == y[rows]
        return robust

    def _resolve_range(self, x: Tensor) -> None:
        """The valid range (for the report) and the large ε, from the first batch."""
        _, _, preprocess = unwrap_model(self.model)
        self.box = _valid_box(self.attack["valid_range"], preprocess, x).as_tuples()
        x = x[:1].to(torch.float64)  # the large ε in float64: 1 pixel is 1, not 1 − 4e-8
        box = _valid_box(self.attack["valid_range"], preprocess, x)
        if self.large_eps is None:
            return
        if self.large_eps != "auto":
            self.large = float(self.large_eps)
            return
        if box.low is None or box.high is None:
            return
        width = box.high - box.low
        scale = _pixel_scale(self.attack["eps_space"], preprocess, x)
        if scale is not None:
            width = width * scale
        if not bool(torch.isfinite(width).all()):
            return
        if self.attack["norm"] == "linf":
            self.large = float(width.max())
        else:
            full = width.expand(1, x.shape[1], x.shape[2], x.shape[3])
            self.large = float(torch.linalg.vector_norm(full))

    def _predict(self, module: nn.Module, x: Tensor) -> Tensor:
        budget = Budget(self.attack["batch_size"], device=x.device, layout=self.attack["layout"])
        with guarded(module, devices=[x.device]):
            logits = forward_logits(module, lambda a, b: x[a:b], len(x), budget)
        return logits.argmax(1)

    def _keep(self, name: str, outcome: Tensor) -> None:
        self.parts.setdefault(name, []).append(outcome.cpu())

    def outcome(self, name: str) -> np.ndarray:
        return torch.cat(self.parts[name]).numpy()

    def report(
        self, floor: float, alpha: float, level: float, transfer_from: Any
    ) -> RobustnessReport:
        if self.done < 2:
            raise InvalidInputError(
                f"evaluate needs at least 2 images for its intervals, got {self.done}"
            )
        correct = self.outcome("correct")
        robust = np.stack([self.outcome(f"robust {e}") for e in self.radii])
        worst = np.stack([self.outcome(f"worst {e}") for e in self.radii])
        columns = np.column_stack([correct, robust.T, worst.T]).astype(np.float64)
        intervals = mean_ci(columns, level=level, seed=self.seed)
        k = len(self.radii)
        checks = self._checks(robust, floor, alpha)
        settings = EvaluationSettings(
            norm=self.attack["norm"],
            eps_space=self.attack["eps_space"],
            steps=self.attack["steps"],
            restarts=self.attack["restarts"],
            step_fraction=self.fraction,
            random_start=bool(self.attack["random_start"]),
            seed=self.seed,
            valid_low=self.box[0],
            valid_high=self.box[1],
            check_steps=2 * self.attack["steps"] if self.check_steps else None,
            large_eps=self.large,
            large_eps_accuracy=float(floor),
            transfer_source=None if transfer_from is None else _name(transfer_from),
            alpha=float(alpha),
            level=float(level),
        )
        report = RobustnessReport(
            n=self.done,
            eps=self.radii,
            clean_accuracy=intervals[0],
            robust_accuracy=tuple(intervals[1 : 1 + k]),
            worst_case_accuracy=tuple(intervals[1 + k :]),
            checks=checks,
            warnings=(),
            settings=settings,
            correct=torch.from_numpy(correct),
            robust=torch.from_numpy(robust),
            worst_case=torch.from_numpy(worst),
        )
        texts = tuple(f.text("en") for f in _check_findings(report) if f.claim == "unreliable")
        for text in texts:
            warnings.warn(text, GradientMaskingWarning, stacklevel=3)
        return dataclasses.replace(report, warnings=texts)

    def _checks(self, robust: np.ndarray, floor: float, alpha: float) -> tuple[MaskingCheck, ...]:
        checks: list[MaskingCheck] = []
        pairs: list[_Pair]
        if self.check_steps:
            pairs = [(self.outcome(f"more {e}"), r, e, None) for e, r in zip(self.radii, robust)]
            checks += _paired("more_steps", pairs, alpha)
        order = sorted(range(len(self.radii)), key=lambda i: self.radii[i])
        pairs = [
            (robust[b], robust[a], self.radii[b], self.radii[a])
            for a, b in itertools.pairwise(order)
            if self.radii[b] > self.radii[a]
        ]
        checks += _paired("larger_eps", pairs, alpha)
        if self.source is not None:
            pairs = [
                (r, self.outcome(f"transfer {e}"), e, None) for e, r in zip(self.radii, robust)
            ]
            checks += _paired("transfer", pairs, alpha)
        if self.large is not None:
            accuracy = float(self.outcome("large").mean())
            checks.append(
                MaskingCheck(
                    "large_eps", self.large, accuracy <= floor, accuracy, floor, 0, 0, None
                )
            )
        return tuple(checks)


_Pair = tuple[np.ndarray, np.ndarray, float, "float | None"]


def _paired(name: str, pairs: Sequence[_Pair], alpha: float) -> list[MaskingCheck]:
    """One check per pair ``(checked, bound, eps, other_eps)``: exact one-sided McNemar
    tests that ``checked`` is correct on more images than ``bound``, Holm-corrected."""
    if not pairs:
        return []
    raw, counts = [], []
    for checked, bound, _, _ in pairs:
        gained = int(np.sum(checked & ~bound))
        lost = int(np.sum(bound & ~checked))
        counts.append((gained, lost))
        if gained + lost == 0:
            raw.append(1.0)
            continue
        raw.append(float(stats.binomtest(gained, gained + lost, 0.5, alternative="greater").pvalue))
    adjusted = holm(raw)
    return [
        MaskingCheck(
            name=name,
            eps=eps,
            passed=not p < alpha,
            accuracy=float(checked.mean()),
            bound=float(bound.mean()),
            gained=gained,
            lost=lost,
            p_value=float(p),
            other_eps=other,
        )
        for (checked, bound, eps, other), (gained, lost), p in zip(pairs, counts, adjusted)
    ]


def _device(module: nn.Module, x: Tensor) -> torch.device:
    for tensor in [*module.parameters(), *module.buffers()]:
        return tensor.device
    return x.device


def _labels(y: Tensor, n: int) -> Tensor:
    if y.dim() != 1 or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise InvalidInputError(
            f"labels must be a 1-D tensor of integer class indices, got {y.dtype} with shape "
            f"{tuple(y.shape)}"
        )
    if len(y) != n:
        raise InvalidInputError(f"got {len(y)} labels for {n} images; give one per image")
    return y.long()


def _name(model: Any) -> str:
    name = getattr(model, "name", None)
    return name if isinstance(name, str) else type(model).__name__


# --------------------------------------------------------------------------- words


def _common(report: RobustnessReport) -> dict[str, Value]:
    s = report.settings
    return {
        "norm": Term(f"robust.norm.{s.norm}"),
        "space": Term(f"robust.space.{s.eps_space}"),
        "steps": s.steps,
        "restarts": s.restarts,
    }


def _interval(value: Interval) -> dict[str, Value]:
    return {"accuracy": value.estimate, "low": value.low, "high": value.high}


def _findings(report: RobustnessReport) -> list[Finding]:
    clean = report.clean_accuracy
    found = [
        Finding(
            "robust.eval.clean",
            {**_interval(clean), "n": report.n, "level": clean.level},
            "clean_accuracy",
            "finding",
        )
    ]
    for i, e in enumerate(report.eps):
        values = {**_common(report), **_interval(report.robust_accuracy[i]), "eps": e}
        found.append(Finding("robust.eval.eps", values, f"robust_accuracy.{i}", "finding"))
        worst = report.worst_case_accuracy[i]
        if worst.estimate < report.robust_accuracy[i].estimate:
            values = {**_interval(worst), "eps": e}
            found.append(Finding("robust.eval.worst", values, f"worst_case_accuracy.{i}", "note"))
    return found + _check_findings(report)


def _check_findings(report: RobustnessReport) -> list[Finding]:
    s = report.settings
    found: list[Finding] = []
    for name in CHECKS:
        checks = [c for c in report.checks if c.name == name]
        failed = [c for c in checks if not c.passed]
        for c in failed:
            values: dict[str, Value] = {
                "eps": c.eps,
                "accuracy": c.accuracy,
                "bound": c.bound,
            }
            if c.p_value is not None:
                values = {**values, "gained": c.gained, "lost": c.lost, "p": c.p_value}
            if name == "more_steps":
                values = {**values, "steps": s.check_steps or 0}
            if name == "larger_eps":
                values = {**values, "smaller": c.other_eps or 0.0}
            if name == "transfer":
                values = {**values, "source": s.transfer_source or ""}
            found.append(Finding(f"robust.check.{name}.failed", values, "checks", "unreliable"))
        if checks and not failed:
            found.append(_passed(name, checks, s))
    if s.large_eps is None:
        found.append(Finding("robust.check.large_eps.skipped", {}, "settings.large_eps", "note"))
    return found


def _passed(name: str, checks: list[MaskingCheck], s: EvaluationSettings) -> Finding:
    values: dict[str, Value] = {"alpha": s.alpha}
    if name == "more_steps":
        values = {**values, "steps": s.check_steps or 0}
    elif name == "transfer":
        values = {**values, "source": s.transfer_source or ""}
    elif name == "large_eps":
        c = checks[0]
        values = {"eps": c.eps, "accuracy": c.accuracy, "bound": c.bound}
    return Finding(f"robust.check.{name}.passed", values, "checks", "note")
