"""Adversarial attacks: FGSM (Goodfellow et al., 2015) and PGD (Madry et al., 2018).

Both attack the model's *input* — the preprocessed tensor it receives — and keep every
adversarial image inside the ε-ball around the clean image and inside the valid range of
that space. Shared parameters of :func:`fgsm` and :func:`pgd`:

model
    An ``nn.Module`` in eval mode, or a seethrough ``LoadedModel`` (whose preprocessing
    gives the valid range and the pixel scale, and whose class names ``target`` may use).
    It comes back exactly as it was — parameters, buffers, train/eval flags, hooks,
    ``requires_grad``, ``.grad``, the global RNG — also when the attack raises
    (torchattacks calls ``model.eval()`` and restores only the root's flag, and not at
    all when the attack raises; ``tests/test_attacks.py`` shows it).
inputs
    ``(N, C, H, W)`` floating point, on the model's device, as the model expects them.
target, labels
    The class each attack is about, in the target conventions of
    :mod:`seethrough.core.targets`: ``"true"`` (default) attacks each image's true class
    ``labels[i]`` (untargeted: succeed when the prediction is no longer it);
    ``"predicted"`` or ``None`` attacks each image's clean prediction (untargeted, no
    labels needed); a class index or name, or one per image, is a *targeted* attack
    (succeed when the prediction becomes it). ``labels``: ``(N,)`` true class indices
    (or names, with a ``LoadedModel``).
eps, eps_space
    The radius of the ball, in the norm ``norm``. ``eps_space="input"`` (default)
    measures it in the units of the model's input; ``"pixels"`` in pixel units of
    ``[0, 1]`` images: the preprocessing divides channel ``c`` by ``std_c``, so a pixel
    perturbation ``δ`` is ``δ_c / std_c`` in the input, and the attack runs exactly as
    if it attacked ``model ∘ normalise`` in pixel space (what "ε = 4/255" means in the
    literature). Needs a ``LoadedModel`` (its ``preprocess.std``).
valid_range
    ``(low, high)``, floats or one value per channel, in the model's input space. Default
    for a ``LoadedModel``: pixels in ``[0, 1]`` through its normalisation,
    ``((0 − mean_c) / std_c, (1 − mean_c) / std_c)``. For a plain module there is no
    default: the attack then does not clip, with a warning (pass
    ``valid_range=(-inf, inf)`` to say so on purpose). Inputs outside the range are
    refused.
seed
    Row ``i`` draws its random start(s) from its own ``torch.Generator`` seeded
    ``seed + i`` (or ``seed[i]`` for a sequence of per-row seeds), on the CPU, so a
    batch equals the concatenation of single-row calls, the same seed gives the same
    adversarial images, and the start does not depend on the device.
batch_size
    Rows per pass (memory); ``None`` adapts it (:class:`~seethrough.core.budget.Budget`).
layout
    Memory layout of the chunks (:class:`~seethrough.core.budget.Budget`): ``"auto"``
    runs channels-last on the CPU where verified (faster), which changes rounding — and
    PGD's sign steps can turn a rounding difference into a different example;
    ``"contiguous"`` for results that must not depend on the chunk size.
progress
    ``progress(rows_done, rows_total)`` after each chunk.

The loss is the cross-entropy of each row, summed over the rows (torchattacks averages
over the batch: the same for one row, and the same steps for any batch since L∞ steps
take the sign and L2 steps normalise each row).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.budget import Budget, Progress
from ..core.guard import check_inputs, guarded, unwrap_model
from ..core.targets import TargetLike, logits_of, parse_target
from ..errors import InvalidInputError, InvalidOptionError, NonFiniteError, TargetError, suggest
from ..words import Description, Finding, Term, Value

__all__ = [
    "EPS_SPACES",
    "NORMS",
    "STEP_FACTOR",
    "AttackResult",
    "AttackSettings",
    "fgsm",
    "pgd",
]

NORMS: tuple[str, ...] = ("linf", "l2")
"""Threat models: the L∞ ball (a box) and the L2 ball."""
EPS_SPACES: tuple[str, ...] = ("input", "pixels")
"""Units of ε: the model's input, or pixels in [0, 1] (through the preprocessing's std)."""
STEP_FACTOR = 2.5
"""Default PGD step size ``STEP_FACTOR · ε / steps`` (Madry et al., 2018, appendix; the
value of their ``robustness`` library): enough to cross the ball and come back."""
L2_DIVISION_EPS = 1e-10
"""Added to a gradient's L2 norm before dividing by it (torchattacks' ``eps_for_division``)."""
_RANGE_SLACK = 1e-6
"""Inputs may lie this fraction of the range's width outside it (rounding), and are
clipped into it before the attack."""


@dataclass(frozen=True)
class AttackSettings:
    """How an attack ran: what :func:`fgsm` / :func:`pgd` were given, resolved.

    ``valid_low`` / ``valid_high`` are the valid range per channel in input units
    (``None``: not clipped); ``pixel_std`` is the per-channel factor from input to pixel
    units when ``eps_space == "pixels"``; ``step_size`` is in the units of ``eps``.
    ``seeds`` are the seeds of the first and the last row.
    """

    method: str
    norm: str
    eps: float
    eps_space: str
    steps: int
    step_size: float
    random_start: bool
    restarts: int
    targeted: bool
    seeds: tuple[int, int]
    valid_low: tuple[float, ...] | None
    valid_high: tuple[float, ...] | None
    pixel_std: tuple[float, ...] | None


@dataclass(frozen=True)
class AttackResult:
    """Adversarial images and how the model saw them.

    Attributes
    ----------
    adversarial : Tensor
        ``(N, C, H, W)``, the input's dtype and device; inside the ε-ball around each
        clean image and inside the valid range (up to the rounding of ``x + δ``).
    success : Tensor
        ``(N,)`` bool: untargeted, the prediction is not ``classes[i]``; targeted, it is.
    margin : Tensor
        ``(N,)`` ``logit_c − max_{j≠c} logit_j`` on the adversarial image, ``c =
        classes[i]``: negative when an untargeted attack succeeded, positive when a
        targeted one did.
    classes : Tensor
        ``(N,)`` the class each row is about: its true label or clean prediction
        (untargeted) or its target class (targeted).
    predicted : Tensor
        ``(N,)`` the model's class for the adversarial image.
    norms : Tensor
        ``(N,)`` the perturbation's size in ``settings.norm``, in the units of ``eps``.
    restart : Tensor
        ``(N,)`` which restart (0-based) gave the kept example.
    settings : AttackSettings
    n, success_rate, median_margin
        Derived: rows, fraction of successes, median margin.
    """

    adversarial: Tensor = field(repr=False)
    success: Tensor
    margin: Tensor
    classes: Tensor
    predicted: Tensor
    norms: Tensor
    restart: Tensor
    settings: AttackSettings
    n: int = field(init=False)
    success_rate: float = field(init=False)
    median_margin: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "n", int(self.success.numel()))
        object.__setattr__(self, "success_rate", float(self.success.float().mean()))
        object.__setattr__(self, "median_margin", float(self.margin.float().median()))

    def describe(self) -> Description:
        """The attack in words (English and Chinese: ``.text("zh")``)."""
        s = self.settings
        values: dict[str, Value] = {
            "method": s.method.upper(),
            "norm": Term(f"robust.norm.{s.norm}"),
            "eps": s.eps,
            "space": Term(f"robust.space.{s.eps_space}"),
            "n": self.n,
            "rate": self.success_rate,
            "margin": self.median_margin,
        }
        if s.method == "pgd":
            values = {**values, "steps": s.steps, "restarts": s.restarts}
        key = f"robust.attack.{s.method}.{'targeted' if s.targeted else 'untargeted'}"
        return Description("attack", (Finding(key, values, "success_rate", "finding"),))


# --------------------------------------------------------------------------- public API


def fgsm(
    model: Any,
    inputs: Tensor,
    *,
    eps: float,
    target: TargetLike = "true",
    labels: Any = None,
    eps_space: str = "input",
    valid_range: tuple[Any, Any] | None = None,
    seed: int | Sequence[int] = 0,
    batch_size: int | None = None,
    layout: str = "auto",
    progress: Progress | None = None,
) -> AttackResult:
    """Fast gradient sign method: one step of size ε along the sign of the loss gradient.

    ``x_adv = clip(x + ε · sign(∇ₓ CE(f(x), y)))`` untargeted, ``x − ε · sign(∇ₓ CE(f(x),
    t))`` targeted, clipped to the valid range (Goodfellow et al., 2015, "Explaining and
    Harnessing Adversarial Examples", ICLR; torchattacks' ``FGSM`` step for step). An
    L∞ attack only. Parameters: see the module docstring; ``seed`` is recorded (FGSM
    draws nothing).

    Returns
    -------
    AttackResult

    Raises
    ------
    InvalidOptionError
        ``eps < 0`` or not finite, an unknown ``eps_space``, a bad ``valid_range``.
    InvalidInputError, TargetError
        Bad inputs, labels of the wrong length, a class out of range, a model whose
        output has no gradient with respect to its input.
    ModelStateError
        The model is in training mode.
    """
    return _attack(
        "fgsm",
        model,
        inputs,
        eps=eps,
        norm="linf",
        steps=1,
        step_size=None,
        random_start=False,
        restarts=1,
        target=target,
        labels=labels,
        eps_space=eps_space,
        valid_range=valid_range,
        seed=seed,
        batch_size=batch_size,
        layout=layout,
        progress=progress,
    )


def pgd(
    model: Any,
    inputs: Tensor,
    *,
    eps: float,
    norm: str = "linf",
    steps: int = 10,
    step_size: float | None = None,
    random_start: bool = True,
    restarts: int = 1,
    target: TargetLike = "true",
    labels: Any = None,
    eps_space: str = "input",
    valid_range: tuple[Any, Any] | None = None,
    seed: int | Sequence[int] = 0,
    batch_size: int | None = None,
    layout: str = "auto",
    progress: Progress | None = None,
) -> AttackResult:
    """Projected gradient descent on the loss, inside the ε-ball and the valid range.

    Madry et al. (2018), "Towards Deep Learning Models Resistant to Adversarial Attacks",
    ICLR; step for step torchattacks' ``PGD`` (L∞) and ``PGDL2`` (L2):

    * start: ``x`` (``random_start=False``) or a random point of the ball — L∞: uniform
      in ``[−ε, ε]`` per element; L2: a Gaussian direction scaled to radius ``ε · u``,
      ``u ~ U(0, 1)`` (torchattacks' draw; not uniform in the ball's volume) — clipped
      to the valid range;
    * each of ``steps`` steps: L∞ ``x' = x' + α · sign(g)``; L2 ``x' = x' + α · g /
      (‖g‖₂ + 1e-10)``; with ``g = ∇ CE(f(x'), y)`` untargeted, ``−∇ CE(f(x'), t)``
      targeted; then project onto the ball (L∞: clip ``x' − x`` to ``[−ε, ε]``; L2:
      scale it to norm ``ε`` if longer) and clip to the valid range;
    * ``restarts``: rows the attack has not fooled yet start again from a new random
      point; each row keeps its first successful example, else the one with the lowest
      margin (targeted: the highest).

    Deviations from torchattacks: ε and the step may be in pixel units
    (``eps_space="pixels"``, see the module docstring) and the clipping range per
    channel; restarts (torchattacks' PGD has none; its ``MultiAttack`` keeps the first
    success too); the L2 projection of a zero perturbation with ε = 0 keeps it (their
    ``ε / 0`` gives NaN); the per-row loss is summed, not averaged (same steps).

    Parameters
    ----------
    norm : {"linf", "l2"}
    steps : int
        Gradient steps per restart (≥ 1).
    step_size : float, optional
        α, in the units of ``eps``; default ``2.5 · ε / steps`` (:data:`STEP_FACTOR`).
    random_start : bool
        Start from a random point of the ball (default) or from the clean image.
    restarts : int
        Random restarts (≥ 1); only rows not yet fooled run again.
    Others
        See the module docstring.

    Returns
    -------
    AttackResult

    Raises
    ------
    InvalidOptionError
        ``eps < 0``, an unknown ``norm`` or ``eps_space`` (with the valid ones), steps or
        restarts < 1, a bad ``step_size`` or ``valid_range``.
    InvalidInputError, TargetError
        Bad inputs, labels of the wrong length, a class out of range, a model whose
        output has no gradient with respect to its input.
    ModelStateError
        The model is in training mode.
    NonFiniteError
        The model's output became NaN or infinite.
    """
    return _attack(
        "pgd",
        model,
        inputs,
        eps=eps,
        norm=norm,
        steps=steps,
        step_size=step_size,
        random_start=random_start,
        restarts=restarts,
        target=target,
        labels=labels,
        eps_space=eps_space,
        valid_range=valid_range,
        seed=seed,
        batch_size=batch_size,
        layout=layout,
        progress=progress,
    )


# --------------------------------------------------------------------------- options


def _check_choice(name: str, value: Any, valid: Sequence[str]) -> str:
    if isinstance(value, str) and value.lower() in valid:
        return value.lower()
    hint = suggest(value, valid) if isinstance(value, str) else ""
    raise InvalidOptionError(f"unknown {name} {value!r}{hint} (valid: {', '.join(valid)})")


def _check_number(name: str, value: Any, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidOptionError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        need = "a positive" if positive else "a non-negative"
        raise InvalidOptionError(f"{name} must be {need} finite number, got {value!r}")
    return value


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidOptionError(f"{name} must be a positive integer, got {value!r}")
    return value


def _row_seeds(seed: Any, n: int) -> list[int]:
    if isinstance(seed, bool):
        raise InvalidOptionError(f"seed must be an integer or one integer per image, got {seed!r}")
    if isinstance(seed, int):
        return [seed + i for i in range(n)]
    values = seed.tolist() if isinstance(seed, Tensor) else seed
    if not isinstance(values, Sequence) or not all(
        isinstance(s, int) and not isinstance(s, bool) for s in values
    ):
        raise InvalidOptionError(f"seed must be an integer or one integer per image, got {seed!r}")
    if len(values) != n:
        raise InvalidOptionError(f"got {len(values)} seeds for {n} images; give one per image")
    return list(values)


def _per_channel(name: str, value: Any, x: Tensor) -> Tensor:
    """A float or one value per channel → ``(1, C or 1, 1, 1)`` in ``x``'s dtype/device."""
    channels = x.shape[1]
    try:
        t = torch.as_tensor(
            value.detach().cpu() if isinstance(value, Tensor) else value, dtype=torch.float64
        ).reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        raise InvalidOptionError(
            f"{name} must be a number or one number per channel, got {value!r}"
        ) from None
    if t.numel() not in (1, channels) or bool(torch.isnan(t).any()):
        raise InvalidOptionError(
            f"{name} must be a number or {channels} numbers (one per channel), got {value!r}"
        )
    return t.to(dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)


@dataclass(frozen=True)
class _Box:
    """The valid range in input units, ``(1, C, 1, 1)`` tensors (None: unbounded)."""

    low: Tensor | None
    high: Tensor | None

    def clip(self, x: Tensor) -> Tensor:
        return x if self.low is None else torch.clamp(x, self.low, self.high)

    def as_tuples(self) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
        if self.low is None or self.high is None:
            return None, None
        return tuple(self.low.reshape(-1).tolist()), tuple(self.high.reshape(-1).tolist())


def _valid_box(valid_range: Any, preprocess: Any, x: Tensor) -> _Box:
    if valid_range is None and preprocess is None:
        warnings.warn(
            "no valid input range is known for a plain nn.Module: the adversarial images are "
            "not clipped and may hold values no real image has; pass valid_range=(low, high) "
            "in the model's input units (e.g. (0, 1) for raw pixels), a LoadedModel "
            "(st.load_model), or valid_range=(-inf, inf) to attack without clipping",
            UserWarning,
            stacklevel=4,
        )
        return _Box(None, None)
    if valid_range is None:
        mean = _per_channel("the preprocessing's mean", list(preprocess.mean), x)
        std = _per_channel("the preprocessing's std", list(preprocess.std), x)
        if mean.shape[1] != x.shape[1]:
            raise InvalidInputError(
                f"inputs have {x.shape[1]} channels but the model's preprocessing has "
                f"{mean.shape[1]}; preprocess the images with net.preprocess"
            )
        # the same arithmetic as Preprocess, so preprocessed pixels 0 and 1 land on the bounds
        return _Box((torch.zeros_like(mean) - mean) / std, (torch.ones_like(mean) - mean) / std)
    if not isinstance(valid_range, (tuple, list)) or len(valid_range) != 2:
        raise InvalidOptionError(
            f"valid_range must be (low, high), got {valid_range!r}; e.g. (0, 1) for raw pixels"
        )
    low = _per_channel("valid_range's low", valid_range[0], x)
    high = _per_channel("valid_range's high", valid_range[1], x)
    if not bool((low < high).all()):
        raise InvalidOptionError(
            f"valid_range needs low < high in every channel, got {valid_range!r}"
        )
    if bool(torch.isinf(low).all()) and bool(torch.isinf(high).all()):
        return _Box(None, None)
    shape = torch.broadcast_shapes(low.shape, high.shape)
    return _Box(low.expand(shape), high.expand(shape))


def _check_in_range(x: Tensor, box: _Box) -> Tensor:
    """``x`` clipped into the box; refuse it when it lies clearly outside."""
    if box.low is None or box.high is None:
        return x
    width = torch.where(torch.isfinite(box.high - box.low), box.high - box.low, 1.0)
    slack = _RANGE_SLACK * width
    below = x < box.low - slack
    above = x > box.high + slack
    if bool((below | above).any()):
        rows = torch.nonzero((below | above).flatten(1).any(1)).flatten().tolist()
        low, high = box.as_tuples()
        raise InvalidInputError(
            f"inputs of rows {rows[:5]} lie outside the valid range (low {low}, high {high}, "
            f"from {x.min().item():.4g} to {x.max().item():.4g}); preprocess them the way the "
            "model expects, or pass valid_range=(low, high) for this input space"
        )
    return box.clip(x)


def _pixel_scale(eps_space: str, preprocess: Any, x: Tensor) -> Tensor | None:
    """Per channel, input units → units of ε (None: the same)."""
    if eps_space == "input":
        return None
    if preprocess is None:
        raise InvalidOptionError(
            "eps_space='pixels' needs the model's normalisation: pass a LoadedModel "
            "(st.load_model), or give eps in input units (eps / std) with eps_space='input'"
        )
    std = _per_channel("the preprocessing's std", list(preprocess.std), x)
    if std.shape[1] != x.shape[1]:
        raise InvalidInputError(
            f"inputs have {x.shape[1]} channels but the model's preprocessing has "
            f"{std.shape[1]}; preprocess the images with net.preprocess"
        )
    return std


def _attack_classes(
    target: TargetLike, labels: Any, n: int, names: Sequence[str] | None, device: torch.device
) -> tuple[Tensor | None, bool]:
    """The class of each row (None: the clean prediction) and whether the attack is targeted."""
    true = _true_labels(labels, n, names) if labels is not None else None
    if isinstance(target, str) and target == "true":
        if true is None:
            raise TargetError(
                "target='true' needs labels= (the true class of each image); or attack the "
                "model's own prediction with target='predicted'"
            )
        return true.to(device), False
    if target is None or (isinstance(target, str) and target == "predicted"):
        return None, False
    parsed = parse_target(target, n, names)
    if parsed.indices is None:
        raise TargetError(
            f"target {target!r} is not an attack target; use 'true' (with labels=), "
            "'predicted', or a class index or name, or one per image (a targeted attack)"
        )
    return parsed.indices.to(device), True


def _true_labels(labels: Any, n: int, names: Sequence[str] | None) -> Tensor:
    if isinstance(labels, Tensor):
        if labels.dim() != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise TargetError(
                f"labels must be a 1-D tensor of integer class indices, got {labels.dtype} "
                f"with shape {tuple(labels.shape)}"
            )
        values: list[Any] = labels.tolist()
    elif isinstance(labels, Sequence) and not isinstance(labels, str):
        values = list(labels)
    else:
        raise TargetError(f"labels must be one class per image, got {type(labels).__name__}")
    if len(values) != n:
        raise TargetError(f"got {len(values)} labels for {n} images; give one true class per image")
    indices = parse_target(values, n, names).indices
    assert indices is not None
    return indices


# --------------------------------------------------------------------------- the engine


@dataclass(frozen=True)
class _Geometry:
    """The ball, the step and the box, in input units. ``scale``: input → ε units per
    channel (``None``: 1), so an L∞ bound or step in input units is ``value / scale``."""

    norm: str
    eps: float
    step: float
    scale: Tensor | None
    box: _Box

    def per_input(self, value: float) -> float | Tensor:
        return value if self.scale is None else value / self.scale

    def start(self, x: Tensor, generators: list[torch.Generator]) -> Tensor:
        """Random starts, one row per generator, drawn on the CPU in ``x``'s dtype
        (torchattacks' draw from the global RNG, row by row)."""
        shape = (1, *x.shape[1:])
        rows = []
        for g in generators:
            if self.norm == "linf":
                d = torch.empty(shape, dtype=x.dtype).uniform_(-self.eps, self.eps, generator=g)
            else:
                d = torch.empty(shape, dtype=x.dtype).normal_(generator=g)
                n = d.view(1, -1).norm(p=2, dim=1).view(1, 1, 1, 1)
                r = torch.zeros_like(n).uniform_(0, 1, generator=g)
                d *= r / n * self.eps
            rows.append(d)
        delta = torch.cat(rows).to(x.device)
        if self.scale is not None:
            delta = delta / self.scale
        return self.box.clip(x + delta)

    def step_from(self, adv: Tensor, grad: Tensor, x: Tensor) -> Tensor:
        """One ascent step on ``grad`` and the projections (torchattacks' arithmetic)."""
        if self.norm == "linf":
            adv = adv + self.per_input(self.step) * grad.sign()
            bound: Any = self.per_input(self.eps)  # a float, or a tensor per channel
            delta = torch.clamp(adv - x, min=-bound, max=bound)
            return self.box.clip(x + delta)
        n = len(adv)
        g = grad if self.scale is None else grad / self.scale
        norms = torch.norm(g.reshape(n, -1), p=2, dim=1) + L2_DIVISION_EPS
        g = g / norms.view(n, 1, 1, 1)
        adv = adv + (self.step * g if self.scale is None else self.step * g / self.scale)
        delta = adv - x
        size = self.size(delta)
        factor = torch.where(size > self.eps, self.eps / size, torch.ones_like(size))
        delta = delta * factor.view(-1, 1, 1, 1)
        return self.box.clip(x + delta)

    def fgsm(self, x: Tensor, grad: Tensor) -> Tensor:
        return self.box.clip(x + self.per_input(self.eps) * grad.sign())

    def size(self, delta: Tensor) -> Tensor:
        """``(N,)`` the norm of each row of ``delta`` in ε units."""
        d = delta if self.scale is None else delta * self.scale
        flat = d.reshape(len(d), -1)
        return flat.abs().amax(1) if self.norm == "linf" else torch.norm(flat, p=2, dim=1)


def _margins(logits: Tensor, classes: Tensor) -> Tensor:
    own = logits.gather(1, classes[:, None])[:, 0]
    others = logits.scatter(1, classes[:, None], float("-inf")).amax(1)
    return own - others


@dataclass
class _Pass:
    """The model's passes for one attack call: gradients of the loss and final scores."""

    module: nn.Module
    targeted: bool
    checked: bool = False

    def logits(self, x: Tensor, classes: Tensor | None) -> Tensor:
        logits = logits_of(self.module(x))
        if not self.checked:
            if logits.shape[0] != len(x):
                raise InvalidInputError(
                    f"the model returned {logits.shape[0]} rows of scores for {len(x)} images"
                )
            if logits.shape[1] < 2:
                raise InvalidInputError(
                    "the model outputs fewer than 2 class scores; an attack needs classes "
                    "to move between"
                )
            if classes is not None and len(classes):
                bad = classes >= logits.shape[1]
                if bool(bad.any()):
                    raise TargetError(
                        f"class {int(classes[bad][0])} is out of range: the model has "
                        f"{logits.shape[1]} classes (valid classes are 0 to "
                        f"{logits.shape[1] - 1})"
                    )
            self.checked = True
        return logits

    def gradient(self, x: Tensor, classes: Tensor) -> Tensor:
        x = x.detach().requires_grad_(True)
        loss = F.cross_entropy(self.logits(x, classes), classes, reduction="sum")
        if not loss.requires_grad:
            raise InvalidInputError(_NO_GRADIENT)
        (grad,) = torch.autograd.grad(-loss if self.targeted else loss, x, allow_unused=True)
        if grad is None:
            raise InvalidInputError(_NO_GRADIENT)
        return grad

    def scores(self, x: Tensor, classes: Tensor) -> tuple[Tensor, Tensor]:
        """Margins and predictions on ``x`` (no autograd record)."""
        with torch.no_grad():
            logits = self.logits(x, classes).detach()
        if not bool(torch.isfinite(logits).all()):
            raise NonFiniteError(
                "the model's scores on the adversarial images are NaN or infinite; check the "
                "model's numerics (e.g. a log of a non-positive value) and the valid range"
            )
        return _margins(logits, classes), logits.argmax(1)


_NO_GRADIENT = (
    "the model's output has no gradient with respect to its input (does its forward detach "
    "the input, round it, call .numpy() or run under torch.no_grad()?); gradient attacks need "
    "a differentiable model"
)


def _attack(
    method: str,
    model: Any,
    inputs: Tensor,
    *,
    eps: Any,
    norm: Any,
    steps: Any,
    step_size: Any,
    random_start: bool,
    restarts: Any,
    target: TargetLike,
    labels: Any,
    eps_space: Any,
    valid_range: Any,
    seed: Any,
    batch_size: int | None,
    layout: str,
    progress: Progress | None,
) -> AttackResult:
    module, names, preprocess = unwrap_model(model)
    norm = _check_choice("norm", norm, NORMS)
    eps_space = _check_choice("eps_space", eps_space, EPS_SPACES)
    eps = _check_number("eps", eps)
    steps = _check_count("steps", steps)
    restarts = _check_count("restarts", restarts)
    if method == "fgsm":
        step = eps
    elif step_size is None:
        step = STEP_FACTOR * eps / steps
    else:
        step = _check_number("step_size", step_size, positive=True)
    x = check_inputs(inputs, module)
    n = len(x)
    seeds = _row_seeds(seed, n)
    with guarded(module, devices=[x.device]):  # also lifts a caller's inference mode
        classes, targeted = _attack_classes(target, labels, n, names, x.device)
        box = _valid_box(valid_range, preprocess, x)
        x = _check_in_range(x, box)
        geometry = _Geometry(norm, eps, step, _pixel_scale(eps_space, preprocess, x), box)
        result = _run(
            method,
            module,
            x,
            classes,
            targeted,
            geometry,
            seeds,
            steps,
            bool(random_start),
            restarts,
            Budget(batch_size, device=x.device, layout=layout),
            progress,
        )
    low, high = box.as_tuples()
    settings = AttackSettings(
        method=method,
        norm=norm,
        eps=eps,
        eps_space=eps_space,
        steps=steps,
        step_size=step,
        random_start=bool(random_start) and method == "pgd",
        restarts=restarts,
        targeted=targeted,
        seeds=(seeds[0], seeds[-1]),
        valid_low=low,
        valid_high=high,
        pixel_std=None if geometry.scale is None else tuple(geometry.scale.reshape(-1).tolist()),
    )
    return AttackResult(**result, settings=settings)


def _run(
    method: str,
    module: nn.Module,
    x: Tensor,
    classes: Tensor | None,
    targeted: bool,
    geometry: _Geometry,
    seeds: list[int],
    steps: int,
    random_start: bool,
    restarts: int,
    budget: Budget,
    progress: Progress | None,
) -> dict[str, Tensor]:
    """Every chunk of rows through :func:`_attack_rows`; the result's tensors."""
    n = len(x)
    budget.report_to(progress, n)
    adversarial = torch.empty_like(x)
    margin = torch.empty(n, dtype=x.dtype, device=x.device)
    predicted = torch.empty(n, dtype=torch.long, device=x.device)
    restart = torch.zeros(n, dtype=torch.long, device=x.device)
    resolved = torch.empty(n, dtype=torch.long, device=x.device)
    passes = _Pass(module, targeted)

    def step_rows(start: int, stop: int) -> None:
        rows = budget.arrange(module, x[start:stop])
        if classes is None:
            with torch.no_grad():
                cls = passes.logits(rows, None).detach().argmax(1)
        else:
            cls = classes[start:stop]
        out = _attack_rows(
            method, passes, geometry, rows, cls, seeds[start:stop], steps, random_start, restarts
        )
        adversarial[start:stop] = out[0]
        margin[start:stop], predicted[start:stop], restart[start:stop] = out[1:]
        resolved[start:stop] = cls

    budget.run(n, step_rows)
    success = predicted == resolved if targeted else predicted != resolved
    return {
        "adversarial": adversarial,
        "success": success,
        "margin": margin,
        "classes": resolved,
        "predicted": predicted,
        "norms": geometry.size(adversarial - x),
        "restart": restart,
    }


def _attack_rows(
    method: str,
    passes: _Pass,
    geometry: _Geometry,
    x: Tensor,
    classes: Tensor,
    seeds: list[int],
    steps: int,
    random_start: bool,
    restarts: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One chunk: every restart of every row; the kept example, margin, class, restart."""
    n = len(x)
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    best = x.clone()
    best_margin = torch.full((n,), math.nan, dtype=x.dtype, device=x.device)
    best_pred = torch.empty(n, dtype=torch.long, device=x.device)
    best_restart = torch.zeros(n, dtype=torch.long, device=x.device)
    fooled = torch.zeros(n, dtype=torch.bool, device=x.device)
    sign = -1.0 if passes.targeted else 1.0  # lower objective = better for the attacker
    for restart in range(restarts):
        active = torch.nonzero(~fooled).flatten()
        if len(active) == 0:
            break
        xs, cs = (x, classes) if len(active) == n else (x[active], classes[active])
        if method == "fgsm":
            adv = geometry.fgsm(xs, passes.gradient(xs, cs))
        else:
            starts = [generators[i] for i in active.tolist()] if len(active) < n else generators
            adv = geometry.start(xs, starts) if random_start else xs
            for _ in range(steps):
                adv = geometry.step_from(adv.detach(), passes.gradient(adv, cs), xs).detach()
        margin, pred = passes.scores(adv, cs)
        success = pred == cs if passes.targeted else pred != cs
        old = best_margin[active]
        better = success | torch.isnan(old) | (sign * margin < sign * old)
        take = active[better]
        best[take] = adv[better]
        best_margin[take] = margin[better]
        best_pred[take] = pred[better]
        best_restart[take] = restart
        fooled[active] = success
        if method == "fgsm" or not random_start:
            break  # a deterministic attack gives the same example again
    return best, best_margin, best_pred, best_restart
