"""Training for the models seethrough itself ships (the Fashion-MNIST reference CNN, its
random-label twin, and its adversarially trained and gradient-regularised siblings). It
trains the module it is given *in place*: never call it on a model you want to keep as it
is — pass a copy.

Two ways to train for robustness, given to :func:`train_classifier` as ``robustness=``:

* :class:`AdversarialTraining` — Madry et al. (2018), "Towards Deep Learning Models
  Resistant to Adversarial Attacks": every batch is replaced by its PGD-k examples (L∞ or
  L2, random start) and the model is trained on those alone.
* :class:`GradientPenalty` — double backpropagation (Drucker & LeCun, 1992; Ross &
  Doshi-Velez, 2018, "Improving the Adversarial Robustness and Interpretability of Deep
  Neural Networks by Regularizing their Input Gradients"): loss + λ · mean_i ‖∇ₓ ℓ_i‖².
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InvalidOptionError

__all__ = [
    "AdversarialTraining",
    "GradientPenalty",
    "TrainingLog",
    "accuracy",
    "adversarial_examples",
    "train_classifier",
]

_NORMS = ("linf", "l2")


def _per_channel(value: float | Sequence[float], x: Tensor) -> Tensor:
    """A scalar or one value per channel, shaped to broadcast over ``(N, C, H, W)``."""
    t = torch.as_tensor(value, dtype=x.dtype, device=x.device).reshape(-1)
    return t.reshape(1, -1, *([1] * (x.dim() - 2))) if t.numel() > 1 else t.reshape(())


@dataclass(frozen=True)
class AdversarialTraining:
    """Madry et al. (2018) PGD-k adversarial training.

    Parameters
    ----------
    eps : float
        Radius of the ball, in *pixel* units when ``pixel_std`` is given (images in
        ``[0, 1]``, as the literature states ε: 0.1 on Fashion-MNIST), else in the units of
        the model's input.
    steps : int
        k, the PGD steps per batch (Madry et al.: 7 on CIFAR-10, 40 on MNIST).
    step_size : float, optional
        Per step, in the units of ``eps``; default ``2.5 · eps / steps`` (the rule of their
        ``robustness`` library, as :func:`seethrough.robust.pgd` uses).
    norm : {"linf", "l2"}
    random_start : bool
        Start from a uniform point of the ball (L∞) or of its sphere's scaled interior (L2).
    pixel_std : float or sequence of float, optional
        The preprocessing's std per channel: a pixel perturbation δ is δ / std in the
        model's input (Fashion-MNIST: :data:`~seethrough.data.fashion_mnist.FASHION_STD`).
    valid_range : (low, high), optional
        The valid range of the model's input (floats or one per channel): every
        adversarial example is clipped into it (``[0, 1]`` pixels through the
        normalisation).
    """

    eps: float
    steps: int = 7
    step_size: float | None = None
    norm: str = "linf"
    random_start: bool = True
    pixel_std: float | tuple[float, ...] | None = None
    valid_range: tuple[float | tuple[float, ...], float | tuple[float, ...]] | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.eps, (int, float)) and math.isfinite(self.eps) and self.eps > 0):
            raise InvalidOptionError(f"eps must be a positive number, not {self.eps!r}")
        if not (isinstance(self.steps, int) and self.steps >= 1):
            raise InvalidOptionError(f"steps must be a positive integer, not {self.steps!r}")
        if self.step_size is not None and not self.step_size > 0:
            raise InvalidOptionError(f"step_size must be positive, not {self.step_size!r}")
        if self.norm not in _NORMS:
            raise InvalidOptionError(f"norm must be one of {', '.join(_NORMS)}, not {self.norm!r}")

    @property
    def step(self) -> float:
        """The step size in the units of ``eps``."""
        return self.step_size if self.step_size is not None else 2.5 * self.eps / self.steps


@dataclass(frozen=True)
class GradientPenalty:
    """Double backpropagation: cross-entropy + ``weight`` · mean over the batch of
    ‖∇ₓ ℓ_i‖², the squared L2 norm of each example's input gradient of its own loss
    (Ross & Doshi-Velez, 2018, eq. 3, with their sum over the batch taken as a mean so that
    ``weight`` does not depend on the batch size).

    ``pixel_std``: measure the gradient with respect to pixels in ``[0, 1]`` (the input
    gradient divided by the preprocessing's std), so that ``weight`` means the same for
    any normalisation; ``None``: with respect to the model's input.
    """

    weight: float
    pixel_std: float | tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.weight, (int, float)) and math.isfinite(self.weight)):
            raise InvalidOptionError(f"weight must be a finite number, not {self.weight!r}")
        if self.weight < 0:
            raise InvalidOptionError(f"weight must be ≥ 0, not {self.weight!r}")


def adversarial_examples(
    model: nn.Module,
    x: Tensor,
    labels: Tensor,
    attack: AdversarialTraining,
    generator: torch.Generator | None = None,
) -> Tensor:
    """PGD examples of ``x`` for training (untargeted, on the true ``labels``).

    One batch at a time and one random start per batch drawn from ``generator`` (on the
    CPU): fast, where :func:`seethrough.robust.pgd` seeds each row on its own. Without a
    random start the two take the same steps (``tests/test_training_robust.py``). The
    gradients are taken with :func:`torch.autograd.grad`, so no parameter's ``.grad`` is
    written; the model's train/eval flag is the caller's.
    """
    # Input units per unit of eps: a pixel perturbation δ is δ / std in the model's input.
    scale = 1 / _per_channel(attack.pixel_std, x) if attack.pixel_std is not None else None
    eps, step = attack.eps, attack.step
    low = high = None
    if attack.valid_range is not None:
        low, high = (_per_channel(v, x) for v in attack.valid_range)
    x = x.detach()
    # Work on the perturbation in eps units: input = x + delta * scale.
    if attack.random_start:
        noise = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        if attack.norm == "linf":
            delta = (noise * 2 - 1) * eps
        else:
            gauss = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            flat = gauss.flatten(1)
            direction = flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)
            radius = torch.rand(len(x), 1, generator=generator, dtype=x.dtype).to(x.device)
            delta = (direction * radius * eps).view_as(x)
    else:
        delta = torch.zeros_like(x)

    def project(d: Tensor) -> Tensor:
        if attack.norm == "linf":
            d = d.clamp(-eps, eps)
        else:
            norms = d.flatten(1).norm(dim=1).clamp_min(1e-12)
            d = d * (eps / norms).clamp(max=1.0).view(-1, *([1] * (x.dim() - 1)))
        adv = x + (d * scale if scale is not None else d)
        if low is not None and high is not None:
            adv = torch.maximum(torch.minimum(adv, high), low)
        return adv

    adv = project(delta)
    for _ in range(attack.steps):
        adv.requires_grad_(True)
        with torch.enable_grad():
            loss = F.cross_entropy(model(adv), labels, reduction="sum")
            (grad,) = torch.autograd.grad(loss, adv)
        if scale is not None:
            grad = grad * scale  # the gradient with respect to the pixel perturbation
        if attack.norm == "linf":
            move = grad.sign() * step
        else:
            norms = grad.flatten(1).norm(dim=1) + 1e-10  # torchattacks' eps_for_division
            move = grad / norms.view(-1, *([1] * (x.dim() - 1))) * step
        current = adv.detach() - x
        if scale is not None:
            current = current / scale
        adv = project(current + move).detach()
    return adv


def _gradient_penalty(
    model: nn.Module, x: Tensor, labels: Tensor, penalty: GradientPenalty
) -> tuple[Tensor, Tensor]:
    """(logits, cross-entropy + λ · mean ‖∇ₓ ℓ_i‖²), differentiable in the parameters."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    per_row = F.cross_entropy(logits, labels, reduction="none")
    (grad,) = torch.autograd.grad(per_row.sum(), x, create_graph=True)
    if penalty.pixel_std is not None:
        grad = grad / _per_channel(penalty.pixel_std, grad)
    squared = grad.flatten(1).pow(2).sum(dim=1)
    return logits, per_row.mean() + penalty.weight * squared.mean()


@dataclass(frozen=True)
class TrainingLog:
    """Per epoch: mean training loss and training accuracy (measured during the epoch, on
    the examples trained on: the adversarial ones under adversarial training)."""

    losses: tuple[float, ...]
    train_accuracies: tuple[float, ...]
    seconds: float
    seed: int


def accuracy(model: nn.Module, x: Tensor, labels: Tensor, batch_size: int = 1000) -> float:
    """Fraction of ``x`` that ``model`` classifies as ``labels`` (eval mode is the caller's)."""
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            logits = model(x[start : start + batch_size])
            correct += int((logits.argmax(dim=1) == labels[start : start + batch_size]).sum())
    return correct / max(1, len(x))


def train_classifier(
    model: nn.Module,
    x: Tensor,
    labels: Tensor,
    *,
    epochs: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    stop_at_train_accuracy: float | None = None,
    progress: Callable[[int, float, float], None] | None = None,
    robustness: AdversarialTraining | GradientPenalty | None = None,
    batch_progress: Callable[[int, int], None] | None = None,
) -> TrainingLog:
    """Adam on cross-entropy, reshuffled each epoch from ``seed``; trains ``model`` in place.

    ``stop_at_train_accuracy`` ends training after the first epoch whose running training
    accuracy reaches it (for memorising random labels). ``progress(epoch, loss, acc)`` is
    called after each epoch, ``batch_progress(done, total)`` after each batch.
    ``robustness``: :class:`AdversarialTraining` (each batch replaced by its PGD
    examples, made with the model in eval mode so that batch-norm statistics are not
    updated by the attack — the robustness library attacks in train mode; identical for
    networks without batch norm or dropout) or :class:`GradientPenalty` (double
    backpropagation). The random starts come from a generator seeded ``seed + 1``. The
    model is left in eval mode.
    """
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise InvalidOptionError("epochs and batch_size must be positive and lr > 0")
    if robustness is not None and not isinstance(
        robustness, (AdversarialTraining, GradientPenalty)
    ):
        raise InvalidOptionError(
            "robustness must be AdversarialTraining(...), GradientPenalty(...) or None, "
            f"not {type(robustness).__name__}"
        )
    generator = torch.Generator().manual_seed(seed)
    start_generator = torch.Generator().manual_seed(seed + 1)
    batches = math.ceil(len(x) / batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses: list[float] = []
    accuracies: list[float] = []
    started = time.perf_counter()
    model.train()
    try:
        for epoch in range(epochs):
            order = torch.randperm(len(x), generator=generator)
            total_loss, correct = 0.0, 0
            for start in range(0, len(x), batch_size):
                index = order[start : start + batch_size]
                inputs, targets = x[index], labels[index]
                if isinstance(robustness, AdversarialTraining):
                    model.eval()
                    inputs = adversarial_examples(
                        model, inputs, targets, robustness, start_generator
                    )
                    model.train()
                if isinstance(robustness, GradientPenalty):
                    logits, loss = _gradient_penalty(model, inputs, targets, robustness)
                else:
                    logits = model(inputs)
                    loss = F.cross_entropy(logits, targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total_loss += float(loss.detach()) * len(index)
                correct += int((logits.detach().argmax(dim=1) == targets).sum())
                if batch_progress is not None:
                    batch_progress(start // batch_size + 1, batches)
            losses.append(total_loss / len(x))
            accuracies.append(correct / len(x))
            if progress is not None:
                progress(epoch + 1, losses[-1], accuracies[-1])
            if stop_at_train_accuracy is not None and accuracies[-1] >= stop_at_train_accuracy:
                break
    finally:
        model.eval()
        for p in model.parameters():
            p.grad = None
    return TrainingLog(tuple(losses), tuple(accuracies), time.perf_counter() - started, seed)
