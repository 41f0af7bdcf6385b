"""Concept activation vectors (Kim et al., 2018, "Interpretability Beyond Feature
Attribution: Quantitative Testing with Concept Activation Vectors (TCAV)", ICML).

A CAV is the unit normal, pointing to the concept, of a linear classifier that separates a
concept's activations from a random counterexample set's at one layer (:mod:`.tcav` tests
it). CAVs are fitted on the *raw* flattened activations, as Kim et al. do (no pooling, no
standardisation: standardising would rescale each unit by 1/std and tilt the direction
towards low-variance units). The classifier is L2-regularised logistic regression, mean
loss + ``l2``·‖w‖²/2 (``l2 = 0.01`` is the paper code's ``alpha``), with an unpenalised
bias, solved to convergence by Newton's method in the span of the fitting rows
(representer theorem: the optimum ``w`` lies there), so it is exact, deterministic and
cheap with few rows and many features.

Deviations from Kim et al.'s code (each also said where it happens): logistic loss solved
exactly, where the paper's code defaults to a linear SVM by SGD (its ``"logistic"``
option is the same model as ours); held-out share 0.3, stratified (its code: 0.33,
stratified).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..errors import InvalidInputError, InvalidOptionError

__all__ = ["HOLDOUT", "concept_activation_vector", "fit_cav", "stratified_split"]

HOLDOUT = 0.3
"""The share of each side's rows a CAV is measured on, not fitted on."""


def _fit_logistic(x: Tensor, y: Tensor, l2: float) -> tuple[Tensor, float]:
    """Weights ``(F,)`` and bias minimising mean logistic loss + ``l2``·‖w‖²/2 on rows
    ``x`` ``(m, F)`` (float64) with labels ``y`` in {0, 1}; the bias is not penalised.

    The optimum lies in the span of the centred rows ``x̃`` (the unpenalised bias
    absorbs the centre), so the problem is solved in the orthonormal basis of that span
    from the Gram matrix ``x̃ x̃ᵀ = U Λ Uᵀ`` (coordinates ``Z = U Λ^½``;
    ``w = x̃ᵀ U Λ^-½ c``) by damped Newton steps to convergence. Only the ``(m, m)``
    Gram matrix leaves ``x``'s device: the small solve runs in NumPy."""
    centre = x.mean(dim=0)
    x = x - centre  # the bias absorbs it; keeps the bias apart from the row space
    eigenvalues, vectors = np.linalg.eigh((x @ x.T).cpu().numpy())
    keep = eigenvalues > max(float(eigenvalues.max()), 0.0) * 1e-12
    lam, u = eigenvalues[keep], vectors[:, keep]
    z = np.concatenate([u * np.sqrt(lam), np.ones((len(u), 1))], axis=1)
    sign = 2.0 * y.cpu().numpy() - 1.0
    penalty = np.full(z.shape[1], l2)
    penalty[-1] = 0.0  # the bias

    def objective(theta: np.ndarray) -> float:
        return float(np.logaddexp(0.0, -sign * (z @ theta)).mean() + 0.5 * penalty @ theta**2)

    theta = np.zeros(z.shape[1])
    value = objective(theta)
    for _ in range(100):
        p = 0.5 * (1.0 - np.tanh(0.5 * sign * (z @ theta)))  # σ(−margin): the loss's slope
        grad = z.T @ (-sign * p) / len(z) + penalty * theta
        hessian = (z.T * (p * (1 - p))) @ z / len(z) + np.diag(penalty)
        hessian[-1, -1] += 1e-12  # a bias alone on separable rows has no curvature
        step = np.linalg.solve(hessian, grad)
        decrement = float(grad @ step)  # twice Newton's estimate of the gap to the optimum
        if not decrement > 1e-14 * max(1.0, value):
            theta = theta - step  # this close the quadratic model is exact: done
            break
        t = 1.0
        while t >= 1e-10:  # backtracking (Armijo): Newton's full step can overshoot
            candidate = theta - t * step
            new = objective(candidate)
            if new <= value - 0.25 * t * decrement:
                break
            t *= 0.5
        else:
            break  # no descent left: at the optimum up to rounding
        theta, value = candidate, new
    w = x.T @ torch.from_numpy(u @ (theta[:-1] / np.sqrt(lam))).to(x)
    return w, float(theta[-1]) - float(w @ centre)


def stratified_split(
    n_random: int, n_concept: int, holdout: float, seed: int
) -> tuple[Tensor, Tensor]:
    """Fitting and held-out row indices of ``[random; concept]``, stratified: a share
    ``holdout`` of each side is held out (at least one row each)."""
    g = torch.Generator().manual_seed(seed)
    train, test = [], []
    for offset, size in ((0, n_random), (n_random, n_concept)):
        order = torch.randperm(size, generator=g) + offset
        cut = size - max(1, round(holdout * size))
        train.append(order[:cut])
        test.append(order[cut:])
    return torch.cat(train), torch.cat(test)


def fit_cav(
    concept: Tensor, random: Tensor, split: tuple[Tensor, Tensor], l2: float
) -> tuple[Tensor, float]:
    """The unit CAV ``(F,)`` (float64) of ``concept`` against ``random`` activations,
    fitted on the rows ``split[0]`` of ``[random; concept]`` (:func:`stratified_split`),
    and its accuracy on the held-out rows ``split[1]``."""
    x = torch.cat([random, concept]).double()
    y = torch.cat(
        [torch.zeros(len(random), dtype=torch.long), torch.ones(len(concept), dtype=torch.long)]
    ).to(x.device)
    train, test = (s.to(x.device) for s in split)
    w, b = _fit_logistic(x[train], y[train], l2)
    accuracy = float((((x[test] @ w + b) > 0).long() == y[test]).double().mean())
    return w / w.norm().clamp_min(torch.finfo(w.dtype).tiny), accuracy


def concept_activation_vector(
    concept: Tensor,
    random: Tensor,
    *,
    seed: int = 0,
    l2: float = 1e-2,
    holdout: float = HOLDOUT,
) -> tuple[Tensor, float, int]:
    """The CAV separating ``concept`` ``(n, F)`` from ``random`` ``(m, F)`` activations.

    L2-regularised logistic regression on the raw activations (module docstring), fitted
    on a stratified share ``1 − holdout`` of the rows (``seed``). Deviation from the
    paper's code: logistic loss solved exactly (its default is a hinge-loss SVM by SGD;
    same penalty convention, ``alpha = l2``), and a held-out share of 0.3 (its 0.33).

    Returns
    -------
    (Tensor, float, int)
        The unit vector ``(F,)`` (float64) in raw activation space pointing to the
        concept, the classifier's held-out accuracy and the number of held-out rows.
    """
    if concept.dim() != 2 or random.dim() != 2 or concept.shape[1] != random.shape[1]:
        raise InvalidInputError(
            f"concept and random must be (n, F) activations with the same F; got "
            f"{tuple(concept.shape)} and {tuple(random.shape)}"
        )
    if not 0 < holdout < 1:
        raise InvalidOptionError(f"holdout must be in (0, 1), got {holdout!r}")
    split = stratified_split(len(random), len(concept), holdout, seed)
    direction, accuracy = fit_cav(concept, random, split, l2)
    return direction, accuracy, len(split[1])
