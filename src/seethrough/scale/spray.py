"""Spectral relevance analysis (SpRAy): the prediction strategies of one class.

Lapuschkin, Wäldchen, Binder, Montavon, Samek & Müller (2019), "Unmasking Clever Hans
predictors and assessing what machines really learn", Nature Communications 10:1096
(Methods, "Spectral relevance analysis"); the authors' implementation is CoRelAy
(``corelay.pipeline.spectral.SpectralClustering`` with the ViRelAy analysis script's
``"spectral"`` variant). The pipeline, step by step, as theirs:

1. the relevance maps of the images of one class, channels summed (``SumChannel``);
2. downsized by sum pooling (``skimage.measure.block_reduce`` with ``np.sum``: blocks of
   ``ceil(H / size)`` pixels, zero padding; :func:`~seethrough.scale.classes.sum_pool`);
3. each map normalised to unit total and flattened (``Normalize``, ``Flatten``);
4. Euclidean distances, and the symmetric k-nearest-neighbour affinity: ``A_ij = 1``
   when ``j`` is one of ``i``'s ``neighbors`` nearest maps, then ``(A + Aᵀ) / 2``
   (``SparseKNN(n_neighbors=10, symmetric=True)``);
5. the symmetric normalised Laplacian ``L = I − D^{-1/2} A D^{-1/2}`` and its smallest
   eigenvalues with their eigenvectors (``SymmetricNormalLaplacian``,
   ``EigenDecomposition``); the eigenvectors' rows normalised to unit length;
6. k-means on the spectral embedding (``KMeans``), the number of clusters read off the
   eigengap: ``k`` eigenvalues near zero followed by a large gap mean ``k`` well-separated
   groups of maps (the paper's step 4, "identify interesting clusters by eigengap
   analysis").

Deviations from the paper and CoRelAy, each on purpose:

* **Normalisation by the L1 norm**, not by the signed sum: CoRelAy's ``Normalize`` divides
  by the map's sum, which is near zero or negative for signed maps (gradient × input,
  IG), flipping or exploding them; dividing by ``Σ|m|`` keeps the sign pattern and equals
  theirs for non-negative maps (their ``"absspectral"`` variant takes ``|m|`` first).
  An all-zero map stays zero.
* **The eigengap chooses k automatically**: the paper and ViRelAy show the spectrum and
  let the analyst pick (ViRelAy computes k-means for a list of k). Here
  ``k = argmax_{i ≤ max_clusters} (λ_{i+1} − λ_i)`` with ``λ_1 ≤ λ_2 ≤ …`` (k = 1 allowed:
  no separate strategy); ``clusters=k`` fixes it.
* **k-means on the first k eigenvectors** (Ng, Jordan & Weiss, 2002), not on all 32 as
  CoRelAy's default: with the eigengap choosing k, the first k span the cluster
  indicators; the further ones add noise to k-means.
* **The eigenvalues are computed exactly** (``scipy.linalg.eigh`` of the dense Laplacian
  up to :data:`DENSE_UP_TO` maps, else ``scipy.sparse.linalg.eigsh`` on ``I + D^{-1/2} A
  D^{-1/2}`` for its largest), not CoRelAy's ``eigsh(which="LM")`` on the normalised
  affinity, which also returns eigenvalues near −1 (λ near 2: bipartite structure) among
  the "smallest". Round-off below zero is clipped to 0.
* **Neighbours by scikit-learn** (exact, brute force, the point itself excluded) instead
  of a full distance matrix and ``argsort`` (same graph when no two distances tie;
  memory ``O(N · neighbors)`` instead of ``O(N²)``).
* **Added**: per cluster its accuracy and mean confidence against the rest of the class,
  with tests (Fisher's exact test; a two-sample permutation test of the mean confidence),
  Holm-corrected over the clusters × 2 tests: a cluster whose corrected p < 0.05 is a
  candidate "Clever Hans" strategy (``differs``). The paper inspects clusters by eye; a
  strategy with the same outcome as the rest is not flagged, only shown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg
import torch
from scipy import stats
from torch import Tensor

from ..core.stats import Interval, holm, mean_ci
from ..errors import InvalidInputError, InvalidOptionError
from .classes import By, _interval_dict, channel_sum, run_class_names, run_classes, sum_pool

if TYPE_CHECKING:
    from ..words import Description

__all__ = [
    "ALPHA",
    "DENSE_UP_TO",
    "SprayCluster",
    "SprayResult",
    "spray",
    "spray_features",
    "spray_run",
]

ALPHA = 0.05
"""Level of the Holm-corrected tests that flag a cluster as differing from its class."""

DENSE_UP_TO = 3000
"""Up to this many maps the Laplacian's eigenvalues come from a dense exact solver."""

EIGENVALUES = 32
"""Eigenvalues kept for the spectrum (CoRelAy's ``n_eigval`` default), at least
``max_clusters + 1``."""


@dataclass(frozen=True, eq=False)
class SprayCluster:
    """One cluster of maps: a candidate prediction strategy of the class.

    Attributes
    ----------
    id : int
        0 for the largest cluster, then by decreasing size.
    size : int
        Maps in the cluster.
    share : float
        ``size`` over the class's maps.
    rows : Tensor
        ``(size,)`` int64: the identifiers (``rows=`` of :func:`spray`) of its maps.
    mean_map : Tensor
        ``(h, w)`` float64: the mean of its maps as clustered (channels summed, sum-pooled,
        each normalised to ``Σ|m| = 1``).
    representatives : tuple of int
        Identifiers of the maps closest to the cluster's centre in the spectral embedding,
        closest first.
    representative_maps : Tensor
        ``(r, h, w)``: those maps, as clustered.
    accuracy, confidence : Interval or None
        Fraction correctly classified and mean probability of the predicted class, with a
        bootstrap interval (None without labels/predictions/probabilities, or for fewer
        than two maps).
    rest_accuracy, rest_confidence : float or None
        The same for the rest of the class (None with a single cluster).
    accuracy_p, confidence_p : float or None
        Holm-corrected p-values (over all the result's tests) of the cluster against the
        rest: Fisher's exact test on correct/incorrect counts, a two-sample permutation
        test of the mean confidence.
    differs : bool
        A corrected p below :data:`ALPHA`: a candidate "Clever Hans" strategy.
    """

    id: int
    size: int
    share: float
    rows: Tensor
    mean_map: Tensor
    representatives: tuple[int, ...]
    representative_maps: Tensor
    accuracy: Interval | None = None
    confidence: Interval | None = None
    rest_accuracy: float | None = None
    rest_confidence: float | None = None
    accuracy_p: float | None = None
    confidence_p: float | None = None
    differs: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "id": self.id,
            "size": self.size,
            "share": self.share,
            "rows": self.rows.tolist(),
            "representatives": list(self.representatives),
            "accuracy": _interval_dict(self.accuracy),
            "confidence": _interval_dict(self.confidence),
            "rest_accuracy": self.rest_accuracy,
            "rest_confidence": self.rest_confidence,
            "accuracy_p": self.accuracy_p,
            "confidence_p": self.confidence_p,
            "differs": self.differs,
            "mean_map": self.mean_map.tolist(),
        }


@dataclass(frozen=True, eq=False)
class SprayResult:
    """The strategies SpRAy found among one class's maps.

    Attributes
    ----------
    clusters : tuple of SprayCluster
        By decreasing size.
    eigenvalues : tuple of float
        The smallest eigenvalues of the normalised Laplacian, ascending.
    eigengap : int
        The number of clusters the eigengap suggests (the largest gap ``λ_{k+1} − λ_k``
        for ``k ≤ max_clusters``); ``len(clusters)`` differs only when ``clusters=`` fixed it.
    assignment : Tensor
        ``(N,)`` int64: the cluster of each map, in input order.
    rows : Tensor
        ``(N,)`` int64: the maps' identifiers, in input order.
    cls, class_name, method
        What was analysed, when known.
    settings : Mapping
        ``n``, ``size``, ``map_shape``, ``neighbors``, ``max_clusters``, ``clusters``,
        ``representatives``, ``seed``, ``level``, ``resamples``, ``alpha``.
    """

    clusters: tuple[SprayCluster, ...]
    eigenvalues: tuple[float, ...]
    eigengap: int
    assignment: Tensor
    rows: Tensor
    cls: int | None = None
    class_name: str | None = None
    method: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def gap(self) -> float:
        """The eigengap's size, ``λ_{k+1} − λ_k`` at the suggested k."""
        return self.eigenvalues[self.eigengap] - self.eigenvalues[self.eigengap - 1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (every number :meth:`describe` shows is in it)."""
        return {
            "cls": self.cls,
            "class_name": self.class_name,
            "method": self.method,
            "eigengap": self.eigengap,
            "gap": self.gap,
            "k": len(self.clusters),
            "tests": sum(
                (c.accuracy_p is not None) + (c.confidence_p is not None) for c in self.clusters
            ),
            "eigenvalues": list(self.eigenvalues),
            "settings": dict(self.settings),
            "clusters": [c.to_dict() for c in self.clusters],
            "assignment": self.assignment.tolist(),
        }

    def describe(self) -> Description:
        """The result in words (English and Chinese: ``.text("zh")``)."""
        from .describe import describe_spray

        return describe_spray(self)


# ----------------------------------------------------------------------------- pipeline


def spray_features(maps: Tensor, size: int | None = 32) -> Tensor:
    """Steps 1–3: channels summed, sum-pooled to at most ``size``, each map divided by its
    ``Σ|m|`` (all-zero maps stay zero); ``(N, h, w)`` float64."""
    pooled = sum_pool(channel_sum(maps), size)
    norm = pooled.abs().sum(dim=(1, 2), keepdim=True)
    return torch.where(norm > 0, pooled / norm.clamp_min(1e-300), pooled)


def _affinity(features: np.ndarray, neighbors: int) -> scipy.sparse.csr_matrix:
    from sklearn.neighbors import NearestNeighbors

    n = len(features)
    k = min(neighbors, n - 1)
    index = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(features)
    columns = index.kneighbors(return_distance=False)  # the point itself is excluded
    rows = np.repeat(np.arange(n), k)
    knn = scipy.sparse.csr_matrix((np.ones(n * k), (rows, columns.ravel())), shape=(n, n))
    return (knn + knn.T) / 2.0


def _spectrum(
    affinity: scipy.sparse.csr_matrix, count: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``count`` smallest eigenvalues (ascending) of ``I − D^{-1/2} A D^{-1/2}`` and
    their eigenvectors ``(N, count)``."""
    n = affinity.shape[0]
    scale = scipy.sparse.diags(np.asarray(affinity.sum(axis=1)).ravel() ** -0.5)
    normalised = scale @ affinity @ scale
    if n <= DENSE_UP_TO:
        laplacian = np.eye(n) - normalised.toarray()
        values, vectors = scipy.linalg.eigh(laplacian, subset_by_index=[0, count - 1])
    else:
        shifted = scipy.sparse.identity(n) + normalised  # eigenvalues 2 − λ, in [0, 2]
        start = np.random.default_rng(seed).uniform(-1, 1, n)
        mu, vectors = scipy.sparse.linalg.eigsh(shifted, k=count, which="LA", v0=start)
        values = 2.0 - mu
        order = np.argsort(values, kind="stable")
        values, vectors = values[order], vectors[:, order]
    return np.clip(values, 0.0, None), vectors


def _kmeans(embedding: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Cluster labels ``(N,)`` and each point's distance to its cluster's centre."""
    if k == 1:
        centre = embedding.mean(axis=0, keepdims=True)
        return np.zeros(len(embedding), np.int64), np.linalg.norm(embedding - centre, axis=1)
    from sklearn.cluster import KMeans

    model = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(embedding)
    labels = model.labels_.astype(np.int64)
    return labels, np.linalg.norm(embedding - model.cluster_centers_[labels], axis=1)


def _by_size(labels: np.ndarray) -> np.ndarray:
    """Relabel clusters 0, 1, … by decreasing size (ties: the earlier first map)."""
    ids = np.unique(labels)
    key = sorted(ids, key=lambda c: (-int(np.sum(labels == c)), int(np.argmax(labels == c))))
    remap = {int(c): new for new, c in enumerate(key)}
    return np.array([remap[int(c)] for c in labels], dtype=np.int64)


def _permutation_p(a: np.ndarray, b: np.ndarray, resamples: int, rng: np.random.Generator) -> float:
    """Two-sided two-sample permutation test of equal means (add-one corrected)."""
    values = np.concatenate([a, b])
    observed = abs(a.mean() - b.mean())
    tolerance = 1e-12 * max(1.0, float(np.abs(values).max()))
    hits = 0
    for start in range(0, resamples, 500):
        count = min(500, resamples - start)
        shuffled = rng.permuted(np.tile(values, (count, 1)), axis=1)
        diff = np.abs(shuffled[:, : len(a)].mean(axis=1) - shuffled[:, len(a) :].mean(axis=1))
        hits += int(np.sum(diff >= observed - tolerance))
    return (hits + 1) / (resamples + 1)


def _interval(values: np.ndarray, level: float, resamples: int, seed: int) -> Interval | None:
    if len(values) < 2:
        return None
    (interval,) = mean_ci(values, level=level, resamples=resamples, seed=seed)
    return interval


def _vector(name: str, values: Any, n: int, dtype: Any) -> np.ndarray | None:
    if values is None:
        return None
    array = np.asarray(torch.as_tensor(values).detach().cpu(), dtype=dtype).reshape(-1)
    if len(array) != n:
        raise InvalidInputError(f"{name} has {len(array)} entries for {n} maps; give one per map")
    return array


def _check(
    n: int,
    size: int | None,
    clusters: int | None,
    max_clusters: int,
    neighbors: int,
    representatives: int,
    level: float,
    resamples: int,
) -> None:
    if n < 3:
        raise InvalidInputError(f"SpRAy needs at least 3 maps of the class, got {n}")
    for name, value in (
        ("max_clusters", max_clusters),
        ("neighbors", neighbors),
        ("representatives", representatives),
        ("resamples", resamples),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidOptionError(f"{name} must be a positive int, got {value!r}")
    if clusters is not None and not (isinstance(clusters, int) and 1 <= clusters < n):
        raise InvalidOptionError(
            f"clusters must be None (eigengap) or an int in [1, {n - 1}], got {clusters!r}"
        )
    if not 0 < level < 1:
        raise InvalidOptionError(f"level must be in (0, 1), got {level!r}")
    if size is not None and (not isinstance(size, int) or size < 1):
        raise InvalidOptionError(f"size must be a positive int or None, got {size!r}")


def spray(
    maps: Tensor,
    *,
    labels: Any = None,
    predicted: Any = None,
    probability: Any = None,
    rows: Any = None,
    size: int | None = 32,
    clusters: int | None = None,
    max_clusters: int = 10,
    neighbors: int = 10,
    representatives: int = 6,
    seed: int = 0,
    level: float = 0.95,
    resamples: int = 2000,
    cls: int | None = None,
    class_name: str | None = None,
    method: str | None = None,
) -> SprayResult:
    """Spectral relevance analysis of the maps of one class (module docstring).

    Parameters
    ----------
    maps : Tensor
        ``(N, H, W)`` or ``(N, C, H, W)`` (channels summed): the maps of ONE class's images.
    labels, predicted : array-like (N,), optional
        True and predicted class of each image: with both, each cluster's accuracy is
        measured and tested against the rest of the class.
    probability : array-like (N,), optional
        The model's probability of its predicted class (confidence), tested likewise.
    rows : array-like (N,), optional
        Identifiers carried through (e.g. positions in a run's index); default ``0..N-1``.
    size : int or None
        Sum-pool the maps to at most ``size`` × ``size`` first (None: as given).
    clusters : int, optional
        Fix the number of clusters; default: the eigengap's choice.
    max_clusters : int
        The largest k the eigengap may choose.
    neighbors : int
        k of the k-nearest-neighbour graph (CoRelAy's default 10).
    representatives : int
        Maps nearest each cluster's centre to keep.
    seed : int
        Seeds k-means, the bootstrap intervals and the permutation tests.
    level, resamples
        Confidence level and resamples of the intervals and the permutation tests.
    cls, class_name, method
        What the maps are, for the result's words.

    Returns
    -------
    SprayResult

    Raises
    ------
    InvalidInputError
        Fewer than 3 maps, a bad shape, non-finite values, vectors of another length.
    InvalidOptionError
        A bad option (the message names it and its valid range).
    """
    if not isinstance(maps, Tensor):
        raise InvalidInputError(
            f"maps must be a tensor (N, H, W) or (N, C, H, W), not {type(maps)}"
        )
    n = len(maps)
    _check(n, size, clusters, max_clusters, neighbors, representatives, level, resamples)
    features = spray_features(maps, size)
    ids = _vector("rows", rows, n, np.int64)
    ids = np.arange(n, dtype=np.int64) if ids is None else ids
    flat = features.flatten(1).numpy()
    k_max = min(max_clusters, n - 1)
    count = min(n, max(EIGENVALUES, k_max + 1, clusters or 1))
    if n > DENSE_UP_TO:
        count = min(count, n - 1)  # eigsh needs fewer than n
    values, vectors = _spectrum(_affinity(flat, neighbors), count, seed)
    suggested = int(np.argmax(np.diff(values[: k_max + 1]))) + 1
    k = clusters if clusters is not None else suggested
    embedding = vectors[:, :k]
    embedding = embedding / np.maximum(np.linalg.norm(embedding, axis=1, keepdims=True), 1e-300)
    raw, distance = _kmeans(embedding, k, seed)
    labels_ = _by_size(raw)
    built = _clusters(features, labels_, distance, ids, representatives)
    built = _outcomes(built, labels_, labels, predicted, probability, n, seed, level, resamples)
    settings = {
        "n": n,
        "size": size,
        "map_shape": list(features.shape[1:]),
        "neighbors": neighbors,
        "max_clusters": max_clusters,
        "clusters": clusters,
        "representatives": representatives,
        "seed": seed,
        "level": level,
        "resamples": resamples,
        "alpha": ALPHA,
    }
    return SprayResult(
        clusters=tuple(built),
        eigenvalues=tuple(float(v) for v in values),
        eigengap=suggested,
        assignment=torch.from_numpy(labels_),
        rows=torch.from_numpy(ids.copy()),
        cls=cls,
        class_name=class_name,
        method=method,
        settings=settings,
    )


def _clusters(
    features: Tensor, labels: np.ndarray, distance: np.ndarray, ids: np.ndarray, keep: int
) -> list[SprayCluster]:
    out = []
    n = len(labels)
    for c in range(int(labels.max()) + 1):
        members = np.flatnonzero(labels == c)
        nearest = members[np.argsort(distance[members], kind="stable")[:keep]]
        out.append(
            SprayCluster(
                id=c,
                size=len(members),
                share=len(members) / n,
                rows=torch.from_numpy(ids[members].copy()),
                mean_map=features[torch.from_numpy(members)].mean(dim=0),
                representatives=tuple(int(i) for i in ids[nearest]),
                representative_maps=features[torch.from_numpy(nearest)].clone(),
            )
        )
    return out


def _outcomes(
    built: list[SprayCluster],
    assignment: np.ndarray,
    labels: Any,
    predicted: Any,
    probability: Any,
    n: int,
    seed: int,
    level: float,
    resamples: int,
) -> list[SprayCluster]:
    """Each cluster's accuracy and confidence against the rest, Holm-corrected."""
    truth = _vector("labels", labels, n, np.int64)
    guess = _vector("predicted", predicted, n, np.int64)
    prob = _vector("probability", probability, n, np.float64)
    correct = (
        (truth == guess).astype(np.float64) if truth is not None and guess is not None else None
    )
    rng = np.random.default_rng(seed)
    fields: list[dict[str, Any]] = []
    raw: list[tuple[int, str, float]] = []
    for cluster in built:
        inside = assignment == cluster.id
        entry: dict[str, Any] = {}
        testable = 2 <= inside.sum() <= n - 2  # both sides need two maps
        if correct is not None:
            entry["accuracy"] = _interval(correct[inside], level, resamples, seed)
            if testable:
                entry["rest_accuracy"] = float(correct[~inside].mean())
                table = [
                    [int(correct[inside].sum()), int((1 - correct[inside]).sum())],
                    [int(correct[~inside].sum()), int((1 - correct[~inside]).sum())],
                ]
                raw.append((cluster.id, "accuracy_p", float(stats.fisher_exact(table).pvalue)))
        if prob is not None:
            entry["confidence"] = _interval(prob[inside], level, resamples, seed)
            if testable:
                entry["rest_confidence"] = float(prob[~inside].mean())
                p = _permutation_p(prob[inside], prob[~inside], resamples, rng)
                raw.append((cluster.id, "confidence_p", p))
        fields.append(entry)
    if raw:
        for (c, name, _), p in zip(raw, holm([p for _, _, p in raw])):
            fields[c][name] = p
    out = []
    for cluster, entry in zip(built, fields):
        differs = any(entry.get(name, 1.0) < ALPHA for name in ("accuracy_p", "confidence_p"))
        out.append(replace(cluster, differs=differs, **entry))
    return out


# ----------------------------------------------------------------------------- runs


def _class_index(cls: int | str, names: Sequence[str] | None) -> int:
    if isinstance(cls, str) and not cls.lstrip("-").isdigit():
        if names is None or cls not in names:
            known = f" (classes: {', '.join(names)})" if names is not None else ""
            raise InvalidOptionError(f"unknown class {cls!r}{known}; give its name or index")
        return list(names).index(cls)
    return int(cls)


def spray_run(
    run: Any,
    *,
    cls: int | str,
    method: str,
    by: By = "label",
    batch: int = 256,
    **spray_options: Any,
) -> SprayResult:
    """SpRAy on the maps of one class of a run, streamed (bounded memory).

    The class's maps are read ``batch`` at a time (``run.iter_maps``) and sum-pooled as
    they come, so memory holds the pooled maps (``N × size²``), never the full ones. The
    result equals :func:`spray` on ``run.maps(method, rows)`` with ``rows`` the class's
    positions in the index, which are the result's ``rows``.

    Parameters
    ----------
    run : Run
        :func:`seethrough.data.shards.open_run`.
    cls : int or str
        The class: its index or its name (when the run records names).
    method : str
        The maps' name in the run.
    by : {"label", "target", "predicted"}
        The index column that says which images belong to ``cls``.
    **spray_options
        :func:`spray`'s options (``size``, ``clusters``, ``neighbors``, …).
    """
    if method not in run.names:
        raise InvalidOptionError(
            f"the run has no maps named {method!r} (stored: {', '.join(run.names)})"
        )
    names = run_class_names(run)
    index_of = _class_index(cls, names)
    classes = run_classes(run, by)
    positions = np.flatnonzero(classes == index_of)
    if len(positions) == 0:
        present = ", ".join(str(c) for c in np.unique(classes[classes >= 0]))
        raise InvalidInputError(
            f"no image of class {cls!r} by {by!r} in the run (classes: {present})"
        )
    size = spray_options.get("size", 32)
    pooled: dict[int, Tensor] = {}
    for found, maps in run.iter_maps(method, positions, batch=batch):
        for i, m in zip(np.asarray(found).tolist(), sum_pool(channel_sum(maps), size)):
            pooled[int(i)] = m
    order = sorted(pooled)
    index = run.index
    columns = {
        key: index.column(column).to_numpy(zero_copy_only=False)[order]
        for key, column in (
            ("labels", "label"),
            ("predicted", "predicted"),
            ("probability", "probability"),
        )
        if column in index.column_names
    }
    return spray(
        torch.stack([pooled[i] for i in order]),
        rows=np.asarray(order),
        cls=index_of,
        class_name=names[index_of] if names is not None and 0 <= index_of < len(names) else None,
        method=method,
        **columns,
        **spray_options,
    )
