"""Concept tests: TCAV (Kim et al., 2018).

A *concept* is given by example inputs (e.g. a folder of striped images). At a layer,
a linear classifier separates the concept's activations from those of a random set; the
unit normal of its boundary, pointing to the concept, is the concept activation vector
(CAV) ``v``. For inputs of class ``k``, the directional derivative
``S = ∇ₐ h_k(a) · v`` says whether moving the activation towards the concept raises the
class's score; the **TCAV score** is the fraction of the class's inputs with ``S > 0``.

One CAV can be an accident of the random set, so the test is repeated against
``runs`` different random sets, and the same is done with a random set in the concept's
place (the null distribution). A two-sided Welch t-test between the concept's scores and
the null scores gives a p-value; a concept whose scores do not differ from random ones
(``p ≥ alpha``) is reported as not significant — its score means nothing.

The t-test alone is too lenient when the concept set itself is an arbitrary sample: its
runs share the concept examples, so their scores agree with each other whatever they
are, and a set of random images then passes as a "concept" (we measured this on the
Fashion-MNIST CNN: 60 random training images scored 0.77 against a null of 0.46,
p = 0.0006). A concept must therefore also be *learnable*: the CAVs must tell its
examples from random ones on held-out rows better than chance (one-sided binomial test of
the runs' mean accuracy on one run's number of held-out rows — not pooled over runs, which
share the concept examples and are not independent evidence). A concept that fails this
has no direction to test. Testing several concepts or layers, divide ``alpha`` by their
number (Bonferroni), as the paper's code does.

Activations are flattened (no pooling), as in the paper. Gradients of the class score
with respect to the layer's output are computed once per layer and reused for every CAV.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..core.guard import guarded
from ..core.hooks import HookSet, LayerCapture
from ..core.layers import find_layer
from ..core.targets import logits_of
from ..errors import InvalidInputError, InvalidOptionError
from .ablation import DEFAULT_ROWS
from .probes import collect_activations, fit_probe

__all__ = ["TcavResult", "concept_activation_vector", "layer_gradients", "tcav"]


@dataclass(frozen=True, eq=False)
class TcavResult:
    """TCAV of one concept for one class at one layer.

    ``scores`` ``(runs,)``: the TCAV score against each random set; ``null_scores``:
    the same with a random set as the concept; ``cav_accuracy``: each CAV's held-out
    accuracy (concept vs random); ``p_value`` of the two-sided Welch t-test;
    ``cav_p_value``: one-sided binomial test that the CAVs tell the concept from random
    inputs better than chance (their mean held-out accuracy, on one run's held-out rows);
    ``significant`` = both below ``alpha``."""

    concept: str
    layer: str
    target: int
    scores: Tensor
    null_scores: Tensor
    cav_accuracy: Tensor
    p_value: float
    cav_p_value: float
    alpha: float
    seconds: float

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha and self.cav_p_value < self.alpha

    @property
    def mean(self) -> float:
        return float(self.scores.mean())

    def to_dict(self) -> dict[str, Any]:
        return {
            "concept": self.concept,
            "layer": self.layer,
            "target": self.target,
            "mean": round(self.mean, 6),
            "std": round(float(self.scores.std()), 6) if len(self.scores) > 1 else 0.0,
            "null_mean": round(float(self.null_scores.mean()), 6),
            "p_value": self.p_value,
            "cav_p_value": self.cav_p_value,
            "alpha": self.alpha,
            "significant": self.significant,
            "scores": [round(v, 6) for v in self.scores.tolist()],
            "null_scores": [round(v, 6) for v in self.null_scores.tolist()],
            "cav_accuracy": [round(v, 6) for v in self.cav_accuracy.tolist()],
        }


def layer_gradients(
    model: nn.Module, inputs: Tensor, layer: str, target: int, batch_size: int | None = None
) -> Tensor:
    """``(N, F)``: ∂(logit ``target``)/∂(``layer``'s output), flattened, per input."""
    found = find_layer(model, layer)
    rows = batch_size or DEFAULT_ROWS
    parts: list[Tensor] = []
    with guarded(model, [inputs.device]):
        for start in range(0, len(inputs), rows):
            with HookSet() as hooks:
                capture = LayerCapture(found, layer, cut=True).attach(hooks)
                logits = logits_of(model(inputs[start : start + rows]))
            if not 0 <= target < logits.shape[1]:
                raise InvalidOptionError(
                    f"target {target} is out of range (valid: 0 to {logits.shape[1] - 1})"
                )
            assert capture.activation is not None
            (grad,) = torch.autograd.grad(logits[:, target].sum(), capture.activation)
            parts.append(grad.reshape(len(grad), -1).detach())
    return torch.cat(parts)


def concept_activation_vector(
    concept: Tensor, random: Tensor, *, seed: int = 0, l2: float = 1e-2
) -> tuple[Tensor, float, int]:
    """The CAV separating ``concept`` ``(n, F)`` from ``random`` ``(m, F)`` activations
    (unit vector in activation space, pointing to the concept), the classifier's
    held-out accuracy and the number of held-out rows."""
    features = torch.cat([random, concept])
    labels = torch.cat(
        [torch.zeros(len(random), dtype=torch.long), torch.ones(len(concept), dtype=torch.long)]
    )
    probe = fit_probe(features, labels, holdout=0.3, l2=l2, seed=seed)
    return probe.direction(), probe.test_accuracy, probe.test_size


def _welch_p(a: Tensor, b: Tensor) -> float:
    from scipy.stats import ttest_ind

    if len(a) < 2 or len(b) < 2:
        return float("nan")
    if float(a.std()) == 0 and float(b.std()) == 0:
        return 1.0 if float(a.mean()) == float(b.mean()) else 0.0
    with warnings.catch_warnings():  # identical scores: scipy warns about precision
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(ttest_ind(a.numpy(), b.numpy(), equal_var=False).pvalue)


def _binomial_p(correct: int, total: int) -> float:
    """P(at least ``correct`` of ``total`` right by guessing): is the CAV real?"""
    from scipy.stats import binomtest

    return float(binomtest(correct, total, 0.5, alternative="greater").pvalue)


def tcav(
    model: nn.Module | Any,
    layer: str,
    concept: Tensor,
    random_pool: Tensor,
    class_inputs: Tensor,
    target: int,
    *,
    concept_name: str = "concept",
    runs: int = 10,
    alpha: float = 0.05,
    seed: int = 0,
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TcavResult:
    """TCAV score of ``concept`` (example inputs) for class ``target`` at ``layer``.

    Parameters
    ----------
    concept : Tensor
        ``(n, C, H, W)`` inputs showing the concept (preprocessed like the model's inputs).
    random_pool : Tensor
        Inputs to draw random sets from: ``runs + 1`` disjoint sets of ``n`` rows are
        drawn (``seed``), so it needs at least ``(runs + 1) · n`` rows.
    class_inputs : Tensor
        Inputs of class ``target`` whose directional derivatives are counted.
    runs : int
        Random sets the concept is tested against (and null pairs formed).
    alpha : float
        Significance level of the t-test.
    """
    from ..core.guard import unwrap_model as _unwrap

    started = time.perf_counter()
    module = _unwrap(model, None)[0]
    n = len(concept)
    if runs < 2:
        raise InvalidOptionError(f"runs must be at least 2 for the t-test, got {runs}")
    if n < 4:
        raise InvalidInputError(f"a concept needs at least 4 examples, got {n}")
    if len(random_pool) < (runs + 1) * n:
        raise InvalidInputError(
            f"random_pool has {len(random_pool)} inputs; {runs} runs with {n} concept "
            f"examples need at least {(runs + 1) * n} (give more, or fewer runs)"
        )
    order = torch.randperm(len(random_pool), generator=torch.Generator().manual_seed(seed))
    sets = [order[i * n : (i + 1) * n] for i in range(runs + 1)]
    acts_concept = collect_activations(
        module, concept, layer, max_features=None, batch_size=batch_size
    )
    used = torch.cat(sets).to(random_pool.device)
    acts_random = collect_activations(
        module, random_pool[used], layer, max_features=None, batch_size=batch_size
    )
    random_sets = [acts_random[i * n : (i + 1) * n] for i in range(runs + 1)]
    grads = layer_gradients(module, class_inputs, layer, target, batch_size).to(acts_concept)
    scores, null, accuracy = [], [], []
    held_out = 0
    for i in range(runs):
        cav, acc, size = concept_activation_vector(acts_concept, random_sets[i], seed=seed + i)
        scores.append(float((grads @ cav > 0).double().mean()))
        accuracy.append(acc)
        held_out = size
        # null: another random set plays the concept against random set i
        stand_in = random_sets[i + 1]
        null_cav, _, _ = concept_activation_vector(stand_in, random_sets[i], seed=seed + i)
        null.append(float((grads @ null_cav > 0).double().mean()))
        if progress is not None:
            progress(i + 1, runs)
    s, z = torch.tensor(scores, dtype=torch.float64), torch.tensor(null, dtype=torch.float64)
    return TcavResult(
        concept=concept_name,
        layer=layer,
        target=target,
        scores=s,
        null_scores=z,
        cav_accuracy=torch.tensor(accuracy, dtype=torch.float64),
        p_value=_welch_p(s, z),
        cav_p_value=_binomial_p(round(sum(accuracy) / runs * held_out), held_out),
        alpha=alpha,
        seconds=time.perf_counter() - started,
    )
