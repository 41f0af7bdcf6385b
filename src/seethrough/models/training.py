"""Training for the models seethrough itself ships (the Fashion-MNIST reference CNN and
its random-label twin). It trains the module it is given *in place*: never call it on a
model you want to keep as it is — pass a copy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InvalidOptionError

__all__ = ["TrainingLog", "accuracy", "train_classifier"]


@dataclass(frozen=True)
class TrainingLog:
    """Per epoch: mean training loss and training accuracy (measured during the epoch)."""

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
) -> TrainingLog:
    """Adam on cross-entropy, reshuffled each epoch from ``seed``; trains ``model`` in place.

    ``stop_at_train_accuracy`` ends training after the first epoch whose running training
    accuracy reaches it (for memorising random labels). ``progress(epoch, loss, acc)`` is
    called after each epoch. The model is left in eval mode.
    """
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise InvalidOptionError("epochs and batch_size must be positive and lr > 0")
    generator = torch.Generator().manual_seed(seed)
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
                logits = model(x[index])
                loss = F.cross_entropy(logits, labels[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total_loss += float(loss.detach()) * len(index)
                correct += int((logits.detach().argmax(dim=1) == labels[index]).sum())
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
