"""Concept tests: TCAV (Kim et al., 2018, "Interpretability Beyond Feature Attribution:
Quantitative Testing with Concept Activation Vectors (TCAV)", ICML).

A *concept* is given by example inputs (e.g. a folder of striped images). At a layer,
a linear classifier separates the concept's activations from those of a random
*counterexample* set; the unit normal of its boundary, pointing to the concept, is the
concept activation vector (CAV) ``v``. For inputs of class ``k``, the directional
derivative ``S = ∇ₐ h_k(a) · v`` says whether moving the activation towards the concept
raises the class's score; the **TCAV score** is the fraction of the class's inputs with
``S > 0``. A concept's statistic ``T`` is its mean TCAV score over ``runs`` different
counterexample sets ``N₁ … N_runs``.

**The significance test compares sets, not runs.** All runs of a concept share its
examples, so they agree with each other whatever those examples are: the run-to-run
spread says nothing about how much ``T`` would change with another draw of the concept's
examples, and a t-test of runs treats ``runs`` correlated numbers as independent evidence.
(Measured on the Fashion-MNIST CNN with the earlier construction — a Welch t-test of the
concept's runs against runs whose stand-in concept changed every run: four disjoint sets
of 60 footwear images for *Ankle boot* gave p = 0.0019, 0.073, 0.43, 0.036 at ``conv2``
and 0.037, 0.34, 0.79, 0.42 at ``fc1``, and a set of 60 random images p = 0.00074; see
``docs/anatomy-results.md``.) Here the unit of replication is the set:

1. ``null_sets`` random sets ``R₁ … R_K`` of the concept's size, disjoint from each other
   and from the counterexamples, each *play the concept*: each is scored by exactly the
   procedure the concept is — the same counterexample sets ``N_b``, the same
   train/held-out split of run ``b``, the same classifier.
2. If the concept is no different from random inputs (the null hypothesis: its examples
   are a draw from the pool's distribution), ``T(C), T(R₁), …, T(R_K)`` are
   exchangeable — the same function applied to ``K + 1`` i.i.d. sets.
3. The two-sided p-value is the concept's rank among them by distance from their common
   mean, ``p = #{j : |T_j − T̄| ≥ |T_C − T̄|} / (K + 1)`` (the concept counts itself), which
   is exact under exchangeability: ``P(p ≤ α) ≤ α`` for any ``α``. The smallest attainable
   p is ``1 / (K + 1)``; :func:`tcav` refuses a ``null_sets`` that cannot reach ``alpha``.

A concept must also be *learnable*: its CAVs must tell its examples from the
counterexamples on held-out rows better than the random sets' CAVs tell theirs
(``cav_p_value``, the same rank test one-sided on the mean held-out accuracy). A
concept that fails this has no direction to test. ``significant`` needs both p-values
below ``alpha`` (an intersection of two level-α tests is a level-α test). Testing several
concepts or layers, correct ``alpha`` for their number (e.g. Bonferroni, as the paper's
code does, or :func:`seethrough.core.stats.holm` on the p-values).

CAVs are fitted on the *raw* flattened activations, as Kim et al. do, by exact
L2-regularised logistic regression (:mod:`.cav`). Gradients of the class score with
respect to the layer's output are computed once per layer and reused for every CAV.

Deviations from Kim et al. (each also said where it happens):

* the t-test of runs is replaced by the set-level rank test above — the null sets are
  scored against the *same* counterexamples as the concept (the paper's code pairs random
  set ``i`` with every other random set ``j``, so concept and null runs differ);
* the CAV's classifier and held-out share (:mod:`.cav`: logistic loss solved exactly, the
  paper's code defaults to a linear SVM by SGD; 0.3 held out, its code 0.33);
* the learnability requirement (``cav_p_value``) is ours.

Any of ``concept``, ``random_pool`` and ``class_inputs`` may be an
:class:`~seethrough.data.ImageSource` of model inputs instead of a tensor (a folder, a
list file, Fashion-MNIST: :func:`seethrough.core.datasets.model_source`); it is streamed
in batches onto the model's device, and only activations and gradients are kept. An
unreadable image is skipped and counted (``TcavResult.skipped``): a concept's size is its
readable examples; a pool's sets are drawn along the same seeded permutation, an
unreadable pool image giving its place to the next one in it (with every image readable,
exactly the tensor path's sets).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..core.datasets import stream
from ..core.guard import guarded, unwrap_model
from ..core.hooks import HookSet, LayerCapture
from ..core.layers import find_layer
from ..core.targets import logits_of
from ..data.sources import ImageSource
from ..errors import InvalidInputError, InvalidOptionError
from ..words import Description
from .ablation import DEFAULT_ROWS
from .cav import HOLDOUT, fit_cav, stratified_split
from .probes import collect_activations, model_device

__all__ = ["TcavResult", "layer_gradients", "tcav", "tcav_concepts"]

_CHUNK_ROWS = 2048  # null sets' activations are collected this many rows at a time


@dataclass(frozen=True, eq=False)
class TcavResult:
    """TCAV of one concept for one class at one layer (module docstring).

    ``scores`` ``(runs,)``: the concept's TCAV score against each counterexample set;
    ``cav_accuracy`` ``(runs,)``: each CAV's held-out accuracy; ``null_scores`` and
    ``null_cav_accuracy`` ``(null_sets, runs)``: the same for each random set playing the
    concept; ``p_value``: two-sided set-level rank test of the mean score;
    ``cav_p_value``: one-sided rank test of the mean held-out accuracy;
    ``significant`` = both below ``alpha``. ``examples``: the concept's size (and every
    null set's)."""

    concept: str
    layer: str
    target: int
    examples: int
    scores: Tensor
    cav_accuracy: Tensor
    null_scores: Tensor
    null_cav_accuracy: Tensor
    p_value: float
    cav_p_value: float
    alpha: float
    seed: int
    seconds: float
    skipped: int = 0
    """Unreadable images of sources met (concept, pool draws, class inputs), left out."""

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha and self.cav_p_value < self.alpha

    @property
    def mean(self) -> float:
        """The concept's statistic ``T``: its mean TCAV score over the runs."""
        return float(self.scores.mean())

    @property
    def null_means(self) -> Tensor:
        """``(null_sets,)``: ``T`` of each random set that played the concept."""
        return self.null_scores.mean(dim=1)

    @property
    def smallest_p(self) -> float:
        """The smallest p-value the test can give: ``1 / (null_sets + 1)``."""
        return 1.0 / (len(self.null_scores) + 1)

    def describe(self, lang: str = "en", class_name: str | None = None) -> Description:
        """The test in words: only a significant, learnable concept is said to raise (or
        lower) the class's score; otherwise "no evidence" with the numbers
        (:func:`seethrough.anatomy.describe.describe_tcav`). ``class_name`` names the
        target class (default: its index)."""
        from .describe import describe_tcav

        return describe_tcav(self, lang, class_name)


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


def _rank_p(observed: float, null: Tensor, two_sided: bool) -> float:
    """Exact p-value of ``observed`` among ``null`` under exchangeability: the share of
    the ``K + 1`` values (``observed`` included) at least as extreme — by distance from
    their common mean (two-sided) or by size (one-sided, larger). Deviation from Kim et
    al.: replaces their t-test of runs (module docstring)."""
    values = torch.cat([torch.tensor([observed], dtype=torch.float64), null.double()])
    if two_sided:
        values = (values - values.mean()).abs()
    tolerance = 1e-12 * max(1.0, float(values.abs().max()))
    return float((values >= values[0] - tolerance).double().mean())


def _check(
    sizes: Mapping[str, int], pool_size: int, runs: int, null_sets: int, alpha: float
) -> int:
    """The concepts' common size, after checking the sizes and the test's settings."""
    if not sizes:
        raise InvalidOptionError("no concept to test; give at least one")
    n = next(iter(sizes.values()))
    if len(set(sizes.values())) > 1:
        raise InvalidInputError(
            f"concepts tested together must have the same number of examples (the null "
            f"sets take their size); got {sizes} — trim them to one size or test apart"
        )
    if n < 4:
        raise InvalidInputError(f"a concept needs at least 4 examples, got {n}")
    if runs < 1 or null_sets < 1:
        raise InvalidOptionError(
            f"runs and null_sets must be at least 1, got runs={runs}, null_sets={null_sets}"
        )
    if not 0 < alpha < 1:
        raise InvalidOptionError(f"alpha must be in (0, 1), got {alpha!r}")
    if 1 / (null_sets + 1) >= alpha:
        raise InvalidOptionError(
            f"with null_sets={null_sets} the smallest p-value is 1/{null_sets + 1}, not "
            f"below alpha={alpha:g}: no concept could be significant; use null_sets ≥ "
            f"{math.floor(1 / alpha)}"
        )
    if pool_size < (runs + null_sets) * n:
        raise InvalidInputError(
            f"random_pool has {pool_size} inputs; {runs} counterexample sets and "
            f"{null_sets} null sets of {n} examples need at least {(runs + null_sets) * n} "
            "(give more, or fewer runs or null sets)"
        )
    return n


@dataclass(eq=False)
class _At:
    """Where concepts are tested: ``layer`` of ``module``, read ``batch_size`` rows at a
    time; ``skipped`` counts the unreadable images of the sources read."""

    module: nn.Module
    layer: str
    batch_size: int | None
    skipped: int = 0

    def activations(self, inputs: Tensor | ImageSource) -> Tensor:
        """``(n, F)`` float64: the raw flattened output (no pooling: module docstring)."""
        if isinstance(inputs, ImageSource):
            return _joined(self.streamed(inputs, None, self._acts), inputs)
        return self._acts(inputs)

    def gradients(self, inputs: Tensor | ImageSource, target: int) -> Tensor:
        """``(n, F)`` float64: the class logit's gradient at the layer, per input."""
        if isinstance(inputs, ImageSource):
            return _joined(self.streamed(inputs, None, lambda x: self._grads(x, target)), inputs)
        return self._grads(inputs, target)

    def _acts(self, x: Tensor) -> Tensor:
        return collect_activations(
            self.module, x, self.layer, max_features=None, batch_size=self.batch_size
        ).double()

    def _grads(self, x: Tensor, target: int) -> Tensor:
        return layer_gradients(self.module, x, self.layer, target, self.batch_size).double()

    def streamed(
        self, source: ImageSource, indices: list[int] | None, compute: Callable[[Tensor], Tensor]
    ) -> Iterator[Tensor]:
        """``compute`` of each batch of ``source``'s readable images (``indices``: only
        those, in order), one batch in memory; unreadable images are counted."""
        device = model_device(self.module)
        rows = self.batch_size or DEFAULT_ROWS
        for batch in stream(source, rows, indices=indices, pin_memory=device.type == "cuda"):
            self.skipped += len(batch.failed)
            if len(batch):
                yield compute(batch.inputs.to(device))


def _joined(parts: Iterator[Tensor], source: ImageSource) -> Tensor:
    """The batches' rows stacked; a source with no readable image is refused."""
    found = list(parts)
    if not found:
        raise InvalidInputError(f"none of the {len(source)} images of {source!r} could be read")
    return torch.cat(found)


class _PoolRows:
    """A source pool's activations along the seeded permutation ``order``, handed out
    ``count`` rows at a time: unreadable images are passed over, so each set is the next
    readable images of the permutation (module docstring)."""

    def __init__(self, at: _At, pool: ImageSource, order: Tensor) -> None:
        self.chunks = at.streamed(pool, order.tolist(), at._acts)
        self.kept: Tensor | None = None
        self.pool = pool

    def take(self, count: int) -> Tensor:
        parts = [] if self.kept is None else [self.kept]
        have = sum(len(p) for p in parts)
        while have < count:
            chunk = next(self.chunks, None)
            if chunk is None:
                raise InvalidInputError(
                    f"random_pool {self.pool!r} has too few readable images for the "
                    "counterexample and null sets (give more, or fewer runs or null sets)"
                )
            parts.append(chunk)
            have += len(chunk)
        joined = torch.cat(parts)
        self.kept = joined[count:]
        return joined[:count]


@dataclass(frozen=True, eq=False)
class _Scorer:
    """Scores a set playing the concept, concept or null alike: against each run's
    counterexamples ``counter[b]`` with the same split ``splits[b]``, one CAV and the share
    of ``grads`` (the class inputs' gradients) with a positive derivative along it."""

    counter: tuple[Tensor, ...]
    splits: tuple[tuple[Tensor, Tensor], ...]
    grads: Tensor
    l2: float

    def __call__(self, acts: Tensor) -> tuple[Tensor, Tensor]:
        """``(runs,)`` TCAV scores and ``(runs,)`` held-out CAV accuracies of ``acts``."""
        scores, accuracy = [], []
        for counter, split in zip(self.counter, self.splits):
            cav, acc = fit_cav(acts, counter, split, self.l2)
            scores.append(float((self.grads @ cav > 0).double().mean()))
            accuracy.append(acc)
        return torch.tensor(scores, dtype=torch.float64), torch.tensor(accuracy).double()


def _counter(progress: Callable[[int, int], None] | None, total: int) -> Callable[[], None]:
    """A tick that reports ``progress(done, total)`` one set further each call."""
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    return tick


def _null_statistics(
    at: _At, pool: Tensor, rows: Tensor, n: int, score: _Scorer, tick: Callable[[], None]
) -> tuple[Tensor, Tensor]:
    """``(null_sets, runs)`` scores and CAV accuracies of the null sets ``pool[rows]``,
    ``n`` consecutive rows each; their activations are collected whole sets at a time,
    about ``_CHUNK_ROWS`` rows per chunk (so the pool is never copied whole)."""
    scores, accuracy = [], []
    chunk = max(1, _CHUNK_ROWS // n) * n
    for start in range(0, len(rows), chunk):
        for acts in at.activations(pool[rows[start : start + chunk]]).split(n):
            s, a = score(acts)
            scores.append(s)
            accuracy.append(a)
            tick()
    return torch.stack(scores), torch.stack(accuracy)


def _tested(
    name: str,
    measured: tuple[Tensor, Tensor],
    null: tuple[Tensor, Tensor],
    *,
    layer: str,
    target: int,
    examples: int,
    alpha: float,
    seed: int,
    started: float,
    skipped: int = 0,
) -> TcavResult:
    """One concept's result: its ``(scores, CAV accuracies)`` ranked among the null
    sets' (:func:`_rank_p`)."""
    (s, a), (z, za) = measured, null
    return TcavResult(
        concept=name,
        layer=layer,
        target=target,
        examples=examples,
        scores=s,
        cav_accuracy=a,
        null_scores=z,
        null_cav_accuracy=za,
        p_value=_rank_p(float(s.mean()), z.mean(dim=1), two_sided=True),
        cav_p_value=_rank_p(float(a.mean()), za.mean(dim=1), two_sided=False),
        alpha=alpha,
        seed=seed,
        seconds=time.perf_counter() - started,
        skipped=skipped,
    )


def tcav_concepts(
    model: nn.Module | Any,
    layer: str,
    concepts: Mapping[str, Tensor | ImageSource],
    random_pool: Tensor | ImageSource,
    class_inputs: Tensor | ImageSource,
    target: int,
    *,
    runs: int = 10,
    null_sets: int = 50,
    alpha: float = 0.05,
    l2: float = 1e-2,
    seed: int = 0,
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[TcavResult, ...]:
    """TCAV of several concepts (same size) for class ``target`` at ``layer``, sharing one
    set of counterexamples and null sets — the null costs the same for one concept or
    many. Parameters as :func:`tcav`; ``concepts`` maps a name to its example inputs."""
    started = time.perf_counter()
    at = _At(unwrap_model(model, None)[0], layer, batch_size)
    # a source concept is read first: its size is the number of its readable examples
    read = {k: at.activations(x) for k, x in concepts.items() if isinstance(x, ImageSource)}
    sizes = {k: len(read[k]) if k in read else len(x) for k, x in concepts.items()}
    n = _check(sizes, len(random_pool), runs, null_sets, alpha)
    order = torch.randperm(len(random_pool), generator=torch.Generator().manual_seed(seed))
    pool_rows: _PoolRows | None = None
    if isinstance(random_pool, ImageSource):
        pool_rows = _PoolRows(at, random_pool, order)
        counter = pool_rows.take(runs * n).split(n)
    else:
        order = order.to(random_pool.device)
        counter = at.activations(random_pool[order[: runs * n]]).split(n)
    score = _Scorer(
        counter,
        # the same split per run for every set, concept or null: they are scored alike
        tuple(stratified_split(n, n, HOLDOUT, seed + b) for b in range(runs)),
        at.gradients(class_inputs, target).to(counter[0].device),
        l2,
    )
    tick = _counter(progress, len(concepts) + null_sets)
    if pool_rows is not None:
        null = _streamed_null(pool_rows, null_sets, n, score, tick)
    else:
        assert isinstance(random_pool, Tensor)
        null = _null_statistics(
            at, random_pool, order[runs * n : (runs + null_sets) * n], n, score, tick
        )
    results = []
    for name, examples in concepts.items():
        acts = read[name] if name in read else at.activations(examples)
        measured = score(acts.to(score.grads.device))
        tick()
        results.append(
            _tested(
                name,
                measured,
                null,
                layer=layer,
                target=target,
                examples=n,
                alpha=alpha,
                seed=seed,
                started=started,
                skipped=at.skipped,
            )
        )
    return tuple(results)


def _streamed_null(
    rows: _PoolRows, null_sets: int, n: int, score: _Scorer, tick: Callable[[], None]
) -> tuple[Tensor, Tensor]:
    """:func:`_null_statistics` of a source pool: the next ``null_sets`` sets of ``n``
    readable images along the permutation, one set's activations held at a time."""
    scores, accuracy = [], []
    for _ in range(null_sets):
        s, a = score(rows.take(n))
        scores.append(s)
        accuracy.append(a)
        tick()
    return torch.stack(scores), torch.stack(accuracy)


def tcav(
    model: nn.Module | Any,
    layer: str,
    concept: Tensor | ImageSource,
    random_pool: Tensor | ImageSource,
    class_inputs: Tensor | ImageSource,
    target: int,
    *,
    concept_name: str = "concept",
    runs: int = 10,
    null_sets: int = 50,
    alpha: float = 0.05,
    l2: float = 1e-2,
    seed: int = 0,
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TcavResult:
    """TCAV score of ``concept`` (example inputs) for class ``target`` at ``layer``, with
    the set-level significance test of the module docstring.

    Parameters
    ----------
    concept : Tensor or ImageSource
        ``(n, C, H, W)`` inputs showing the concept (preprocessed like the model's inputs),
        or a source of them (``n``: its readable images).
    random_pool : Tensor or ImageSource
        Inputs to draw random sets from, none of them a concept example: ``runs`` disjoint
        counterexample sets and ``null_sets`` disjoint null sets of ``n`` rows are drawn
        (``seed``), so it needs at least ``(runs + null_sets) · n`` rows. A source is
        streamed along the seeded permutation, unreadable images passed over (module
        docstring).
    class_inputs : Tensor or ImageSource
        Inputs of class ``target`` whose directional derivatives are counted (a source:
        all its readable images; its labels are not read).
    runs : int
        Counterexample sets; each concept-like set gets one CAV and TCAV score per set.
    null_sets : int
        Random sets that play the concept; the smallest p-value is ``1/(null_sets + 1)``,
        which must be below ``alpha`` (after any correction for several tests).
    alpha : float
        Significance level of both tests.
    l2 : float
        L2 penalty of the CAV classifier (mean loss + ``l2``·‖w‖²/2).
    seed : int
        Draws the sets and the per-run splits; same seed, same result.

    Returns
    -------
    TcavResult

    Raises
    ------
    InvalidOptionError
        ``null_sets`` too small to reach ``alpha``, or ``runs`` < 1.
    InvalidInputError
        Fewer than 4 concept examples, or a pool too small for the sets.
    """
    (result,) = tcav_concepts(
        model,
        layer,
        {concept_name: concept},
        random_pool,
        class_inputs,
        target,
        runs=runs,
        null_sets=null_sets,
        alpha=alpha,
        l2=l2,
        seed=seed,
        batch_size=batch_size,
        progress=progress,
    )
    return result
