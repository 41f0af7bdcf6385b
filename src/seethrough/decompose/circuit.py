"""Class circuits: the fewest channels that keep one class's decisions, the rest ablated.

A *circuit* of class ``c`` at one or several layers is a set of channels such that the
network, with every other channel of those layers mean-ablated (each unit replaced by its
mean over a reference set; Meyes et al. 2019 ablate units, mean ablation follows Wang et
al. 2023), still makes class ``c``'s decisions. "Keeps the decisions" means both halves
of them, each within ``keep`` of the full network:

* **class accuracy** (recall) — the share of class-``c`` images labelled ``c``:
  ``circuit ≥ keep × full``;
* **precision** — the share of the images labelled ``c`` that are class ``c``:
  ``circuit ≥ keep × full``, so images of other classes may not newly flip to ``c``.

Class accuracy alone is not enough: with every channel ablated the network outputs one
constant class, and for that class the empty circuit would "keep" all of its accuracy.
Other classes' accuracy is not required: the circuit is the sub-network of ``c``, not of
the whole task. The *kept fraction* is ``min(accuracy / full accuracy, precision / full
precision)``; a circuit keeps the class when it is ``≥ keep``.

A circuit is fitted to the images it is searched on; chosen and judged on the same
images it sits at the edge of ``keep`` there and falls below it on new images (on the
Fashion CNN at ~1000 search images, Coat's circuit labelled 12 of 890 other search images
Coat — the full network 13 — but 30 of 891 held-out ones, the full network 11;
docs/circuits.md). So the search (:func:`circuit`)

* **chooses** each move on one part of the search images and **verifies** it on the other
  (``validation``, default half, drawn per class): a move is made only if the circuit
  still keeps the class on the verifying images, which the choice never saw;
* judges "keeps" by a **lower confidence bound** of the kept fraction (``confidence``,
  default 0.95, one-sided): the circuit's correct count is lowered, and its false
  positives raised, by ``z·sqrt(d)`` where ``d`` counts the images whose decision for the
  class differs between circuit and full network (the normal approximation behind
  McNemar's paired test).

``validation=0, confidence=0.5`` is the plain search: choose and judge on all search
images, by the point estimate — the smallest circuits, fitted to those images.

1. **Greedy by ablation effect** — start from the empty circuit (every channel ablated);
   at each step evaluate, by real ablation, adding each channel not yet in it, and add the
   one that leaves the smallest *shortfall* (how far the two ratios' bounds fall below
   ``keep``, summed: a channel gets credit for what the circuit still lacks, like the
   greedy rule for set cover); ties go to the larger *soft* kept fraction (the same two
   ratios on the class probability — mean probability of the class on its images, and
   the share of the probability mass given to the class that falls on its images), then
   to the lower channel index. Stop when the bound on the verifying images reaches
   ``keep``.
2. **Refinement** — try to drop each kept channel again: evaluate removing each, and of
   those that still keep the class on the choosing images take the one that leaves the
   largest soft kept fraction; when none can go, try *exchanges* — two kept channels
   out, one other in (the pairs whose single drops cost least first, at most ``swaps``
   candidates per round). The chosen move is made if it keeps the class on the verifying
   images; the refinement ends at the first move that does not.

Forward selection with backward elimination and exchanges is the stepwise search of
feature selection (Pudil et al. 1994 for floating search, Stearns 1976 for
plus-l-take-away-r); ablation effect as the pruning criterion follows Meyes et al. 2019
and, for channels, Molchanov et al. 2017 — whose first-order (Taylor) estimate is replaced
here by exact ablation: every candidate is scored by ablating it.

The circuit is then scored on the images held out of the search (``held_out``), against
the full network's decisions on the same images: what it keeps on new images.

Batched ablation: all candidates of a step run in one sweep — for each chunk of images
the network runs up to the circuit layers once, the layer's output is repeated once per
candidate inside a forward hook, each copy gets its candidate's mask, and only the rest
of the network runs on the repeated rows (the idea of
:func:`seethrough.anatomy.ablate`, re-implemented on :mod:`seethrough.core` because
``decompose`` may not import ``anatomy``). Models whose later code reads the batch size
from the input are detected and run with repeated inputs instead.

References
----------
Meyes, R., Lu, M., de Puiseau, C. W., Meisen, T. (2019). Ablation studies in artificial
neural networks. arXiv:1901.08644.
Wang, K., Variengien, A., Conmy, A., Shlegeris, B., Steinhardt, J. (2023).
Interpretability in the wild: a circuit for indirect object identification in GPT-2
small. ICLR 2023.
Conmy, A., Mavor-Parker, A., Lynch, A., Heimersheim, S., Garriga-Alonso, A. (2023).
Towards automated circuit discovery for mechanistic interpretability. NeurIPS 2023.
Molchanov, P., Tyree, S., Karras, T., Aila, T., Kautz, J. (2017). Pruning convolutional
neural networks for resource efficient inference. ICLR 2017.
Pudil, P., Novovičová, J., Kittler, J. (1994). Floating search methods in feature
selection. Pattern Recognition Letters 15(11).
Stearns, S. D. (1976). On selecting features for pattern classifiers. Proc. 3rd ICPR.
McNemar, Q. (1947). Note on the sampling error of the difference between correlated
proportions or percentages. Psychometrika 12(2).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import torch
from torch import Tensor, nn

from ..core.budget import Budget, is_out_of_memory
from ..core.guard import guarded, unwrap_model
from ..core.hooks import HookSet
from ..core.layers import default_cam_layer, find_layer
from ..core.targets import logits_of
from ..errors import InvalidInputError, InvalidOptionError, LayerError, suggest
from ..words import Claim, Description, Finding, Term, Value, catalogue

__all__ = [
    "ABLATIONS",
    "Circuit",
    "CircuitOverlap",
    "CircuitScore",
    "circuit",
    "circuit_overlap",
]

ABLATIONS = ("mean", "zero")
"""How a dropped channel is replaced: its units' means over the reference set, or 0."""
DEFAULT_ROWS = 1024
"""Rows per forward pass after the circuit layers (images × candidates) when
``batch_size`` is not given."""
_SLACK = 1e-12  # float rounding of keep × full; kept fractions are ratios of counts


# ------------------------------------------------------------------------- results


@dataclass(frozen=True)
class CircuitScore:
    """How the full network and the circuit decide one class on one set of images.

    ``class_accuracy`` = ``correct / images`` (class images labelled the class);
    ``precision`` = ``correct / (correct + false_positives)`` (images labelled the class
    that are of it; 0 when none is); ``kept`` = ``min(class_accuracy /
    class_accuracy_full, precision / precision_full)`` (NaN when the full network labels
    no image of the class correctly here); ``kept_lower`` its lower confidence bound at
    the circuit's ``confidence`` (module docstring). ``lost`` / ``gained``: class images
    the full network labels the class and the circuit does not / the other way round;
    ``flipped_in`` / ``flipped_out``: other images the circuit labels the class and the
    full network does not / the other way round.
    """

    images: int
    others: int
    correct_full: int
    correct: int
    false_positives_full: int
    false_positives: int
    lost: int
    gained: int
    flipped_in: int
    flipped_out: int
    class_accuracy_full: float
    class_accuracy: float
    precision_full: float
    precision: float
    kept: float
    kept_lower: float


@dataclass(frozen=True, eq=False)
class Circuit:
    """The channels that keep class ``cls``'s decisions (module docstring), and how well.

    Attributes
    ----------
    cls, class_name
        The class (index, and name — its index as text when the model has no labels).
    layers
        The layers searched, in the order given.
    channels
        Per layer, the kept channels (sorted).
    layer_channels
        Per layer, how many channels it has.
    size, total
        Kept channels over all layers, and all channels of the layers.
    keep, ablation
        The target kept fraction and how dropped channels are replaced
        (``"mean"``: each unit's mean over the reference set; ``"zero"``).
    search, validation, held_out
        Full network against circuit on all the search images, on the part of them that
        verified each move (``None`` with ``validation=0``), and on the held-out images
        (``None`` without).
    order
        ``(layer, channel)`` in the order the greedy pass added them.
    curve, curve_lower
        The kept fraction, and its lower confidence bound, on the images that decide
        (the validation images; all search images with ``validation=0``), before the
        first addition and after each.
    confidence
        The one-sided confidence of the bound the search stops on (0.5: the kept
        fraction itself).
    dropped, swapped_in
        ``(layer, channel)`` the refinement took out, and those its exchanges brought in,
        in order (the circuit is ``order`` minus ``dropped`` plus ``swapped_in``, applied
        in turn).
    evaluations
        Candidate circuits evaluated by ablation (each over all search images).
    seconds, seed
        Wall time of the search; the seed of the search/held-out split.
    search_index, validation_index, held_out_index
        Rows of ``data`` searched on (selection and validation), validated on, and held
        out (``(n,)`` int64; ``None`` when there are none, or held-out images were given
        separately).
    fills
        Per layer, the values a dropped channel takes, shaped like one image's output
        ``(C, …)``.
    module
        The model searched (kept by reference for :meth:`pruned_model`; never edited).
    """

    cls: int
    class_name: str
    layers: tuple[str, ...]
    channels: Mapping[str, tuple[int, ...]]
    layer_channels: Mapping[str, int]
    size: int
    total: int
    keep: float
    ablation: str
    search: CircuitScore
    validation: CircuitScore | None
    held_out: CircuitScore | None
    order: tuple[tuple[str, int], ...]
    curve: tuple[float, ...]
    curve_lower: tuple[float, ...]
    confidence: float
    dropped: tuple[tuple[str, int], ...]
    swapped_in: tuple[tuple[str, int], ...]
    evaluations: int
    seconds: float
    seed: int
    search_index: Tensor
    validation_index: Tensor | None
    held_out_index: Tensor | None
    fills: Mapping[str, Tensor] = field(repr=False)
    module: nn.Module = field(repr=False)
    settings: Mapping[str, Any] = field(default_factory=dict)

    def kept_mask(self, layer: str) -> Tensor:
        """``(C,)`` bool: which channels of ``layer`` the circuit keeps."""
        if layer not in self.channels:
            raise LayerError(
                f"the circuit has no layer {layer!r}{suggest(layer, self.layers)} "
                f"(its layers: {', '.join(self.layers)})"
            )
        mask = torch.zeros(self.layer_channels[layer], dtype=torch.bool)
        mask[list(self.channels[layer])] = True
        return mask

    def pruned_model(self) -> nn.Module:
        """A deep copy of the model in which the dropped channels are ablated.

        Each circuit layer of the copy gets two buffers, ``circuit_kept`` ``(C,)`` bool and
        ``circuit_fill`` ``(C, …)``, and a forward hook (a module-level function, so the
        copy pickles and moves with ``.to()``) that replaces the dropped channels of the
        layer's output by the fill — what the search ran. Layer names stay as they were.
        The copy's ``state_dict`` has these two extra buffers per layer; a circuit of a
        pruned model adds ``circuit_kept_1`` …. The user's model is never edited: the
        copy is taken of it as it is *now* (change its weights after the search and the
        copy has the new weights).
        """
        pruned = copy.deepcopy(self.module)
        for layer in self.layers:
            target = find_layer(pruned, layer)
            suffix = _free_suffix(target)
            device = self.fills[layer].device
            target.register_buffer(f"circuit_kept{suffix}", self.kept_mask(layer).to(device))
            target.register_buffer(f"circuit_fill{suffix}", self.fills[layer].clone())
            target.register_forward_hook(functools.partial(_ablate_dropped, suffix))
        return pruned

    def describe(self, lang: str = "en") -> Description:
        """The circuit's size and what it keeps, on search and held-out images, in words."""
        return _describe_circuit(self, lang)


@dataclass(frozen=True, eq=False)
class CircuitOverlap:
    """How the circuits of several classes overlap: ``jaccard[i, j]`` = |Cᵢ ∩ Cⱼ| /
    |Cᵢ ∪ Cⱼ| over their ``(layer, channel)`` pairs (1 when both are empty), float64
    ``(K, K)``; ``shared[i, j]`` = |Cᵢ ∩ Cⱼ| (the diagonal: each circuit's size)."""

    classes: tuple[str, ...]
    layers: tuple[str, ...]
    jaccard: Tensor
    shared: Tensor

    def describe(self, lang: str = "en") -> Description:
        """The most and least overlapping pair of classes, in words."""
        return _describe_overlap(self, lang)


# ------------------------------------------------------------------------- public


def circuit(
    model: nn.Module | Any,
    data: Any,
    cls: int | str,
    *,
    layers: str | Sequence[str] | None = None,
    keep: float = 0.95,
    ablation: str = "mean",
    held_out: float | tuple[Tensor, Tensor] = 0.5,
    confidence: float = 0.95,
    validation: float = 0.5,
    swaps: int = 256,
    reference: Tensor | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    labels: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Circuit:
    """The fewest channels of ``layers`` that keep class ``cls``'s decisions (module
    docstring: definition and search).

    Parameters
    ----------
    model : nn.Module or LoadedModel
        In eval mode; never modified.
    data : (Tensor, Tensor) or dataset
        ``(inputs, labels)``: inputs ``(N, C, H, W)`` as the model expects them, labels
        ``(N,)`` class indices; or an object with ``inputs()`` and ``labels`` (e.g.
        :class:`~seethrough.data.fashion_mnist.FashionMNIST`). Images of every class are
        needed (the other classes' images measure precision).
    cls : int or str
        The class: an index, or a name of the model's labels.
    layers : str or sequence of str, optional
        The layer(s) whose channels (dimension 1 of the output) form the circuit.
        Default: the last layer whose output is a spatial map ``(N, C, h, w)`` and runs
        once per pass — the highest-level feature maps, the channels the classifier head
        reads (``pool2`` of the Fashion CNN). With several layers the circuit is a set of
        ``(layer, channel)`` pairs searched jointly.
    keep : float
        In (0, 1]: the kept fraction the circuit must reach.
    ablation : {"mean", "zero"}
        How dropped channels are replaced: each unit's mean over ``reference``, or 0.
    held_out : float or (Tensor, Tensor)
        The share of ``data`` held out, drawn per class from ``seed`` (``0``: search on
        all of it, no held-out score); or a separate ``(inputs, labels)`` held-out set.
    confidence : float
        In [0.5, 1): the search stops when the kept fraction's one-sided lower confidence
        bound at this level reaches ``keep`` (module docstring), so that the circuit keeps
        the class on new images too; 0.5 stops on the kept fraction itself.
    validation : float
        In [0, 1): the share of the search images (per class, from ``seed + 1``) that only
        verify the moves the other images chose (module docstring); ``0``: the same
        images choose and verify.
    swaps : int
        Most candidate circuits one exchange round evaluates (two kept channels out,
        one other in; module docstring); ``0``: drops only.
    reference : Tensor, optional
        Inputs whose mean activations fill mean-ablated units (default: the search
        images).
    seed : int
        Seed of the search/held-out split (the search itself is deterministic).
    batch_size : int, optional
        Rows (images × candidates) per pass after the circuit layers (default 1024).
    labels : sequence of str, optional
        Class names, for a plain ``nn.Module`` (a LoadedModel brings its own).
    progress : callable, optional
        ``progress(evaluated, step)``: candidate circuits evaluated so far and the step.

    Returns
    -------
    Circuit

    Raises
    ------
    InvalidOptionError
        ``keep`` outside (0, 1], ``confidence`` outside [0.5, 1), an unknown ablation, a
        bad ``held_out``, ``validation``, ``swaps`` or batch size.
    InvalidInputError
        Bad data, an unknown class, or a class the full network gets no image of right
        on the choosing or the validating images.
    ModelStateError
        The model is in training mode.
    LayerError
        An unknown layer, or one whose output is not ``(N, C, …)`` or runs twice.

    Notes
    -----
    Cost: a greedy step evaluates every channel not yet in the circuit, so a circuit of
    ``k`` channels out of ``T`` costs about ``k·T`` candidate evaluations of the network
    after the layer (plus ``k²/2`` for the refinement), each over the search images.
    """
    started = time.perf_counter()
    module, names, _ = unwrap_model(model, labels)
    _check_keep(keep)
    if ablation not in ABLATIONS:
        raise InvalidOptionError(f"unknown ablation {ablation!r} (valid: {', '.join(ABLATIONS)})")
    rows = DEFAULT_ROWS if batch_size is None else batch_size
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise InvalidOptionError(f"batch_size must be a positive integer, got {batch_size!r}")
    if (
        isinstance(confidence, bool)
        or not isinstance(confidence, (int, float))
        or not 0.5 <= confidence < 1
    ):
        raise InvalidOptionError(
            f"confidence must be in [0.5, 1) (e.g. 0.95; 0.5: no confidence bound), got "
            f"{confidence!r}"
        )
    z = NormalDist().inv_cdf(confidence)
    if (
        isinstance(validation, bool)
        or not isinstance(validation, (int, float))
        or not (0 <= validation < 1)
    ):
        raise InvalidOptionError(
            f"validation must be a share of the search images in [0, 1), got {validation!r}"
        )
    if isinstance(swaps, bool) or not isinstance(swaps, int) or swaps < 0:
        raise InvalidOptionError(f"swaps must be an integer ≥ 0, got {swaps!r}")
    x, y = _check_data(data, module, "data")
    search, held = _split(x, y, held_out, seed, module)
    with guarded(module, [x.device]):
        classes = _classes(module, x[:1])
        index = _class_index(cls, names, classes)
        specs = _layer_specs(module, layers, x[:1])
        ref = x[search] if reference is None else _check_reference(reference, x)
        fills = _fills(module, specs, ref, ablation, rows)
        engine = _Engine(module, specs, fills, index, rows)
        checked = _stratified(y[search], validation, seed + 1) if validation else None
        select = search if checked is None else search[~checked]
        verify = None if checked is None else search[checked]
        if checked is not None and (checked.all() or not checked.any()):
            raise InvalidInputError(
                f"validation={validation} leaves no "
                f"{'selecting' if checked.all() else 'validating'} images of the "
                f"{len(search)} search images; give more images or another share"
            )
        name = _name(index, names)
        chooser = _Set.of(engine, x[select], y[select], name)
        checker = None if verify is None else _Set.of(engine, x[verify], y[verify], name)
        found = _Search(engine, chooser, checker, keep, z, swaps, progress).run()

        def score(inputs: Tensor, labels: Tensor) -> CircuitScore:
            both = torch.stack([engine.everything, found.kept])
            counts = engine.counts(inputs, labels, engine.labelled(inputs, engine.everything), both)
            return _score(counts.row(0), counts.row(1), z)

        search_score = score(x[search], y[search])
        verify_score = None if verify is None else score(x[verify], y[verify])
        held_score = None if held is None else score(held[0], held[1])
    kept = found.kept.cpu()
    channels = {s.name: tuple(int(c) for c in kept[s.span].nonzero().flatten()) for s in specs}
    total = sum(s.channels for s in specs)
    return Circuit(
        cls=index,
        class_name=_name(index, names),
        layers=tuple(s.name for s in specs),
        channels=channels,
        layer_channels={s.name: s.channels for s in specs},
        size=int(kept.sum()),
        total=total,
        keep=float(keep),
        ablation=ablation,
        search=search_score,
        validation=verify_score,
        held_out=held_score,
        order=tuple(_pair(specs, k) for k in found.order),
        curve=tuple(found.curve),
        curve_lower=tuple(found.curve_lower),
        confidence=float(confidence),
        dropped=tuple(_pair(specs, k) for k in found.dropped),
        swapped_in=tuple(_pair(specs, k) for k in found.swapped_in),
        evaluations=found.evaluations,
        seconds=time.perf_counter() - started,
        seed=seed,
        search_index=search.cpu(),
        validation_index=None if verify is None else verify.cpu(),
        held_out_index=None if held is None or held[2] is None else held[2].cpu(),
        fills=fills,
        module=module,
        settings={
            "batch_size": rows,
            "reference_size": len(ref),
            "search_images": len(search),
            "validation_images": 0 if verify is None else len(verify),
            "held_out_images": 0 if held is None else len(held[1]),
            "batched": engine.expand,
            "swaps": swaps,
        },
    )


def circuit_overlap(circuits: Sequence[Circuit]) -> CircuitOverlap:
    """The class × class Jaccard matrix of ``circuits`` (:class:`CircuitOverlap`).

    All circuits must be of the same model's layers (same names and channel counts).

    Raises
    ------
    InvalidInputError
        No circuits, something that is not a :class:`Circuit`, or circuits of different
        layers.
    """
    circuits = list(circuits)
    if not circuits:
        raise InvalidInputError("circuit_overlap needs at least one circuit; got none")
    for c in circuits:
        if not isinstance(c, Circuit):
            raise InvalidInputError(
                f"circuit_overlap takes Circuit results (from seethrough.decompose.circuit), "
                f"got {type(c).__name__}"
            )
    first = circuits[0]
    for c in circuits[1:]:
        if c.layers != first.layers or dict(c.layer_channels) != dict(first.layer_channels):
            raise InvalidInputError(
                f"circuits of different layers cannot be compared: {c.class_name!r} has "
                f"{dict(c.layer_channels)}, {first.class_name!r} has "
                f"{dict(first.layer_channels)}; search every class at the same layers"
            )
    sets = [{(layer, ch) for layer in c.layers for ch in c.channels[layer]} for c in circuits]
    k = len(sets)
    jaccard = torch.ones(k, k, dtype=torch.float64)
    shared = torch.zeros(k, k, dtype=torch.int64)
    for i in range(k):
        for j in range(k):
            both, either = len(sets[i] & sets[j]), len(sets[i] | sets[j])
            shared[i, j] = both
            if either:
                jaccard[i, j] = both / either
    return CircuitOverlap(
        classes=tuple(c.class_name for c in circuits),
        layers=first.layers,
        jaccard=jaccard,
        shared=shared,
    )


# -------------------------------------------------------------------------- checks


def _check_keep(keep: Any) -> None:
    if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0 < keep <= 1:
        raise InvalidOptionError(
            f"keep must be a fraction in (0, 1] (e.g. 0.95: keep 95 % of the class's "
            f"accuracy and precision), got {keep!r}"
        )


def _check_data(data: Any, module: nn.Module, what: str) -> tuple[Tensor, Tensor]:
    if hasattr(data, "inputs") and hasattr(data, "labels") and callable(data.inputs):
        data = (data.inputs(), data.labels)
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise InvalidInputError(
            f"{what} must be (inputs, labels) — inputs (N, C, H, W), labels (N,) class "
            f"indices — or a dataset with inputs() and labels; got {type(data).__name__}"
        )
    x, y = data
    if not isinstance(x, Tensor) or not x.dtype.is_floating_point or x.dim() < 2:
        raise InvalidInputError(
            f"{what}: inputs must be a floating-point tensor (N, C, H, W); got "
            f"{getattr(x, 'shape', type(x).__name__)}"
        )
    if not isinstance(y, Tensor) or y.dim() != 1 or y.dtype.is_floating_point:
        raise InvalidInputError(
            f"{what}: labels must be a 1-D integer tensor, one class per image; got "
            f"{getattr(y, 'dtype', type(y).__name__)} {tuple(getattr(y, 'shape', ()))}"
        )
    if len(x) != len(y) or len(x) == 0:
        raise InvalidInputError(
            f"{what}: got {len(x)} inputs and {len(y)} labels; give one label per input"
        )
    device = next((p.device for p in module.parameters()), x.device)
    if x.device != device:
        raise InvalidInputError(
            f"{what}: inputs are on {x.device} but the model is on {device}; move them "
            f"with .to('{device}')"
        )
    if not bool(torch.isfinite(x).all()):
        raise InvalidInputError(f"{what}: inputs contain NaN or infinite values")
    return x.detach(), y.detach().to(device).long()


def _check_reference(reference: Any, x: Tensor) -> Tensor:
    if (
        not isinstance(reference, Tensor)
        or reference.shape[1:] != x.shape[1:]
        or len(reference) == 0
        or reference.device != x.device
    ):
        raise InvalidInputError(
            f"reference must be a non-empty tensor of inputs shaped like the data "
            f"(n, {', '.join(str(s) for s in x.shape[1:])}) on {x.device}; got "
            f"{getattr(reference, 'shape', type(reference).__name__)}"
        )
    return reference.detach()


def _split(
    x: Tensor, y: Tensor, held_out: Any, seed: int, module: nn.Module
) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor | None] | None]:
    """Search rows, and the held-out ``(inputs, labels, rows of data or None)``."""
    rows = torch.arange(len(y), device=y.device)
    if isinstance(held_out, (tuple, list)):
        hx, hy = _check_data(held_out, module, "held_out")
        if hx.shape[1:] != x.shape[1:]:
            raise InvalidInputError(
                f"held_out inputs are shaped {tuple(hx.shape[1:])}, the data "
                f"{tuple(x.shape[1:])}; give held-out images like the search images"
            )
        return rows, (hx, hy, None)
    if isinstance(held_out, bool) or not isinstance(held_out, (int, float)):
        raise InvalidOptionError(
            f"held_out must be a share of the data in [0, 1) or (inputs, labels); got "
            f"{type(held_out).__name__}"
        )
    if not 0 <= held_out < 1:
        raise InvalidOptionError(f"held_out must be a share of the data in [0, 1), got {held_out}")
    if held_out == 0:
        return rows, None
    chosen = _stratified(y, held_out, seed)
    if chosen.all() or not chosen.any():
        raise InvalidInputError(
            f"held_out={held_out} leaves {'no search' if chosen.all() else 'no held-out'} "
            f"images of the {len(y)} given; give more images or another share"
        )
    held = rows[chosen]
    return rows[~chosen], (x[held], y[held], held)


def _stratified(y: Tensor, share: float, seed: int) -> Tensor:
    """``(N,)`` bool: ``round(share × n)`` images of each class, drawn from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.zeros(len(y), dtype=torch.bool)
    labels = y.cpu()
    for c in labels.unique().tolist():
        members = (labels == c).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        chosen[members[: round(share * len(members))]] = True
    return chosen.to(y.device)


def _classes(module: nn.Module, row: Tensor) -> int:
    with torch.inference_mode():
        return int(logits_of(module(row)).shape[1])


def _class_index(cls: Any, names: Sequence[str] | None, classes: int) -> int:
    if isinstance(cls, str):
        if names is None:
            raise InvalidInputError(
                f"class {cls!r} is a name but the model has no labels; pass an index "
                f"0 to {classes - 1}, a LoadedModel, or labels=[...]"
            )
        if cls not in names:
            raise InvalidInputError(
                f"unknown class {cls!r}{suggest(cls, names)} (the model has {len(names)} "
                "classes; pass a name from its labels or an index)"
            )
        return list(names).index(cls)
    if isinstance(cls, bool) or not isinstance(cls, int) or not 0 <= cls < classes:
        raise InvalidInputError(
            f"class {cls!r} is not a class of the model: give an index 0 to {classes - 1} "
            "or a class name"
        )
    return int(cls)


def _name(index: int, names: Sequence[str] | None) -> str:
    return str(names[index]) if names is not None and index < len(names) else str(index)


# ------------------------------------------------------------------------- layers


@dataclass(frozen=True, eq=False)
class _Spec:
    """One circuit layer: its module, its channels and where they sit in the joint index."""

    name: str
    module: nn.Module
    shape: tuple[int, ...]  # one image's output (C, …)
    offset: int

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def span(self) -> slice:
        return slice(self.offset, self.offset + self.channels)


def _layer_specs(module: nn.Module, layers: Any, row: Tensor) -> list[_Spec]:
    if layers is None:
        names = [default_cam_layer(module, row)]
    elif isinstance(layers, str):
        names = [layers]
    else:
        names = list(layers)
        if not names or not all(isinstance(n, str) for n in names):
            raise LayerError(f"layers must be a layer name or a list of names, got {layers!r}")
        if len(set(names)) != len(names):
            raise LayerError(f"layers lists a layer twice: {names}")
    found = {name: find_layer(module, name) for name in names}
    shapes: dict[str, list[tuple[int, ...]]] = {name: [] for name in names}

    def keeper(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(m: nn.Module, inputs: Any, output: Any) -> None:
            if not isinstance(output, Tensor) or output.dim() < 2:
                raise LayerError(
                    f"layer {name!r} returns "
                    f"{'a 1-D tensor' if isinstance(output, Tensor) else type(output).__name__}"
                    "; a circuit needs a layer whose output is a tensor (N, C, …)"
                )
            shapes[name].append(tuple(output.shape[1:]))

        return hook

    with HookSet() as hooks, torch.inference_mode():
        for name, target in found.items():
            hooks.add(target.register_forward_hook(keeper(name)))
        module(row)
    specs, offset = [], 0
    for name in names:
        if len(shapes[name]) != 1:
            raise LayerError(
                f"layer {name!r} runs {len(shapes[name])} times per forward pass; a circuit "
                "needs a layer that runs once (e.g. its parent block)"
            )
        specs.append(_Spec(name, found[name], shapes[name][0], offset))
        offset += shapes[name][0][0]
    return specs


def _fills(
    module: nn.Module, specs: Sequence[_Spec], reference: Tensor, mode: str, rows: int
) -> dict[str, Tensor]:
    """Per layer, the value of an ablated unit: its mean over ``reference`` or zero."""
    param = next(module.parameters(), reference)
    if mode == "zero":
        return {s.name: torch.zeros(s.shape, device=param.device, dtype=param.dtype) for s in specs}
    sums = {
        s.name: torch.zeros(s.shape, dtype=torch.float64, device=reference.device) for s in specs
    }

    def adder(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(m: nn.Module, inputs: Any, output: Any) -> None:
            sums[name] += output.detach().double().sum(dim=0)

        return hook

    def step(start: int, stop: int) -> None:
        with HookSet() as hooks, torch.inference_mode():
            for s in specs:
                hooks.add(s.module.register_forward_hook(adder(s.name)))
            module(reference[start:stop])

    Budget(rows, reference.device).run(len(reference), step)
    return {name: (total / len(reference)).to(param.dtype) for name, total in sums.items()}


# ------------------------------------------------------------------------- engine


@dataclass(frozen=True)
class _Counts:
    """Per candidate circuit (one entry per row of the masks evaluated).

    Over the class images: ``tp`` labelled the class, ``lost`` / ``gained`` labelled it
    by the full network and not by the candidate / the other way round. Over the other
    images: ``fp`` labelled the class, ``flipped_in`` / ``flipped_out`` labelled it by the
    candidate and not by the full network / the other way round. ``soft_tp`` and
    ``soft_all``: the class probability summed over the class images / over all images.
    """

    images: int
    others: int
    tp: Tensor
    fp: Tensor
    lost: Tensor
    gained: Tensor
    flipped_in: Tensor
    flipped_out: Tensor
    soft_tp: Tensor
    soft_all: Tensor

    def row(self, k: int) -> _Counts:
        rows = {
            f.name: getattr(self, f.name)[k : k + 1]
            for f in dataclasses.fields(self)
            if f.name not in ("images", "others")
        }
        return _Counts(self.images, self.others, **rows)

    @property
    def correct(self) -> int:
        return int(self.tp[0])


def _ratios(c: _Counts, full: _Counts, z: float) -> tuple[Tensor, Tensor]:
    """Per candidate, class accuracy and precision as fractions of the full network's;
    with ``z > 0`` their lower confidence bounds: the circuit's correct count lowered and
    its false positives raised by ``z`` standard deviations of their paired difference
    from the full network's, ``sqrt(discordant images)`` (the normal approximation
    behind McNemar's test). NaN when the full network labels no class image correctly."""
    tp_f, fp_f = float(full.tp[0]), float(full.fp[0])
    if tp_f == 0:
        nan = torch.full(c.tp.shape, torch.nan, dtype=torch.float64)
        return nan, nan
    tp = (c.tp.double() - z * (c.lost + c.gained).double().sqrt()).clamp_min(0)
    fp = c.fp.double() + z * (c.flipped_in + c.flipped_out).double().sqrt()
    precision = torch.where(tp > 0, tp / (tp + fp).clamp_min(1e-300), torch.zeros_like(tp))
    return tp / tp_f, precision / (tp_f / (tp_f + fp_f))


def _kept(c: _Counts, full: _Counts, z: float) -> Tensor:
    """The kept fraction per candidate (module docstring), or its lower bound (``z``)."""
    return torch.minimum(*_ratios(c, full, z))


def _shortfall(c: _Counts, full: _Counts, z: float, keep: float) -> Tensor:
    """How far each candidate is from keeping the class: the shortfall of each ratio
    (lower bounds at ``z``) below ``keep``, summed."""
    recall, precision = _ratios(c, full, z)
    return (keep - recall).clamp_min(0) + (keep - precision).clamp_min(0)


def _soft(c: _Counts, full: _Counts) -> Tensor:
    """The soft kept fraction: the kept fraction's two ratios on the class probability."""
    tiny = 1e-300
    recall = c.soft_tp / max(1, c.images)
    precision = c.soft_tp / c.soft_all.clamp_min(tiny)
    f_recall = float(full.soft_tp[0]) / max(1, full.images)
    f_precision = float(full.soft_tp[0]) / max(tiny, float(full.soft_all[0]))
    return torch.minimum(recall / max(f_recall, tiny), precision / max(f_precision, tiny))


def _score(full: _Counts, c: _Counts, z: float) -> CircuitScore:
    def precision(counts: _Counts) -> float:
        tp, fp = int(counts.tp[0]), int(counts.fp[0])
        return tp / (tp + fp) if tp + fp else 0.0

    return CircuitScore(
        images=c.images,
        others=c.others,
        correct_full=int(full.tp[0]),
        correct=int(c.tp[0]),
        false_positives_full=int(full.fp[0]),
        false_positives=int(c.fp[0]),
        lost=int(c.lost[0]),
        gained=int(c.gained[0]),
        flipped_in=int(c.flipped_in[0]),
        flipped_out=int(c.flipped_out[0]),
        class_accuracy_full=int(full.tp[0]) / max(1, full.images),
        class_accuracy=int(c.tp[0]) / max(1, c.images),
        precision_full=precision(full),
        precision=precision(c),
        kept=float(_kept(c, full, 0.0)[0]),
        kept_lower=float(_kept(c, full, z)[0]),
    )


class _Patch:
    """Forward hooks of one pass: repeat the first circuit layer's output once per
    candidate (or, with ``expand=False``, take the already repeated rows) and replace each
    candidate's dropped channels by the fill."""

    def __init__(
        self, specs: Sequence[_Spec], fills: Mapping[str, Tensor], keep: Tensor, expand: bool
    ) -> None:
        self.specs, self.fills, self.keep = specs, fills, keep
        self.expanded = not expand
        self.seen: set[str] = set()

    def attach(self, hooks: HookSet) -> None:
        for spec in self.specs:
            hooks.add(spec.module.register_forward_hook(functools.partial(self._hook, spec)))

    def _hook(self, spec: _Spec, module: nn.Module, inputs: Any, output: Any) -> Tensor:
        if spec.name in self.seen:
            raise LayerError(f"layer {spec.name!r} runs more than once per forward pass")
        self.seen.add(spec.name)
        g = len(self.keep)
        if not isinstance(output, Tensor) or tuple(output.shape[1:]) != spec.shape:
            raise LayerError(
                f"layer {spec.name!r} returned {getattr(output, 'shape', type(output).__name__)}"
                f", not (N, {', '.join(str(s) for s in spec.shape)}) as when the circuit "
                "layers were traced"
            )
        if self.expanded:
            if len(output) % g:
                raise _UnbatchedError
            base = output.reshape(g, len(output) // g, *spec.shape)
        else:
            base = output.unsqueeze(0).expand(g, *output.shape)
            self.expanded = True
        tail = (1,) * (len(spec.shape) - 1)
        mask = self.keep[:, spec.span].reshape(g, 1, spec.channels, *tail)
        out = torch.where(mask, base, self.fills[spec.name].to(output.dtype))
        return out.reshape(-1, *spec.shape)


class _UnbatchedError(Exception):
    """The model's rows after a circuit layer do not line up with the candidates."""


class _Engine:
    """Evaluates many candidate circuits (rows of a ``(G, T)`` keep mask) in one sweep."""

    def __init__(
        self,
        module: nn.Module,
        specs: Sequence[_Spec],
        fills: Mapping[str, Tensor],
        cls: int,
        rows: int,
    ) -> None:
        self.module, self.specs, self.fills, self.cls, self.rows = module, specs, fills, cls, rows
        self.expand = True
        total = sum(s.channels for s in specs)
        device = next(iter(fills.values())).device
        self.everything = torch.ones(total, dtype=torch.bool, device=device)

    def labelled(self, x: Tensor, keep: Tensor) -> Tensor:
        """``(N,)`` bool: which images the circuit ``keep`` ``(T,)`` labels the class."""
        parts: list[Tensor] = []

        def step(start: int, stop: int) -> None:
            parts.append(self._run(x[start:stop], keep[None]).argmax(dim=1) == self.cls)

        Budget(self.rows, x.device).run(len(x), step)
        return torch.cat(parts)

    def counts(self, x: Tensor, y: Tensor, reference: Tensor, keep: Tensor) -> _Counts:
        """:class:`_Counts` of each row of ``keep`` ``(G, T)`` over ``(x, y)``; discordance
        against ``reference`` ``(N,)``, the full network's :meth:`labelled`."""
        g_max = max(1, self.rows)
        parts = [
            self._group(x, y, reference, keep[a : a + g_max]) for a in range(0, len(keep), g_max)
        ]
        is_cls = int((y == self.cls).sum())
        return _Counts(is_cls, len(y) - is_cls, *(torch.cat(t) for t in zip(*parts)))

    def _group(self, x: Tensor, y: Tensor, reference: Tensor, keep: Tensor) -> list[Tensor]:
        g = len(keep)
        ints = [torch.zeros(g, dtype=torch.int64) for _ in range(6)]
        floats = [torch.zeros(g, dtype=torch.float64) for _ in range(2)]

        def step(start: int, stop: int) -> None:
            scores = self._run(x[start:stop], keep).reshape(g, stop - start, -1)
            if scores.dtype in (torch.float16, torch.bfloat16):
                scores = scores.float()
            said = scores.argmax(dim=2) == self.cls
            member = (y[start:stop] == self.cls)[None]
            full = reference[start:stop][None]
            prob = torch.softmax(scores, dim=2)[:, :, self.cls].double()
            for total, hits in zip(
                ints,
                (
                    said & member,
                    said & ~member,
                    full & ~said & member,
                    ~full & said & member,
                    ~full & said & ~member,
                    full & ~said & ~member,
                ),
            ):
                total.add_(hits.sum(dim=1).cpu())
            floats[0].add_((prob * member).sum(dim=1).cpu())
            floats[1].add_(prob.sum(dim=1).cpu())

        Budget(max(1, self.rows // g), x.device).run(len(x), step)
        return [*ints, *floats]

    def _run(self, chunk: Tensor, keep: Tensor) -> Tensor:
        if self.expand:
            try:
                out = self._pass(chunk, keep, expand=True)
                if out is not None:
                    return out
            except (RuntimeError, _UnbatchedError) as error:
                if is_out_of_memory(error):
                    raise  # the budget halves the chunk
            self.expand = False  # later code reads the batch size: repeat the inputs
        out = self._pass(chunk.repeat(len(keep), *([1] * (chunk.dim() - 1))), keep, expand=False)
        if out is None:
            raise LayerError(
                "the model returned a number of rows that is not one per input; a circuit "
                "needs one output row per input"
            )
        return out

    def _pass(self, feed: Tensor, keep: Tensor, *, expand: bool) -> Tensor | None:
        patch = _Patch(self.specs, self.fills, keep, expand)
        with HookSet() as hooks, torch.inference_mode():
            patch.attach(hooks)
            out = logits_of(self.module(feed))
        rows = len(feed) * (len(keep) if expand else 1)
        if out.shape[0] != rows or len(patch.seen) != len(self.specs):
            if len(patch.seen) != len(self.specs):
                missing = [s.name for s in self.specs if s.name not in patch.seen]
                raise LayerError(f"layer(s) {missing} did not run in the forward pass")
            return None
        return out


# ------------------------------------------------------------------------- search


@dataclass
class _Set:
    """Images the search evaluates circuits on, the full network's decisions on them
    (``reference``) and its counts (``full``)."""

    x: Tensor
    y: Tensor
    reference: Tensor
    full: _Counts

    @classmethod
    def of(cls, engine: _Engine, x: Tensor, y: Tensor, name: str) -> _Set:
        reference = engine.labelled(x, engine.everything)
        full = engine.counts(x, y, reference, engine.everything[None])
        if not full.correct:
            raise InvalidInputError(
                f"the full network labels none of the {full.images} images of class {name!r} "
                f"in a part of the search images ({len(y)} images) correctly: there is no "
                "decision to keep there; give more images of the class (or validation=0)"
            )
        return cls(x, y, reference, full)


@dataclass
class _Found:
    kept: Tensor
    order: list[int]
    curve: list[float]
    curve_lower: list[float]
    dropped: list[int]
    swapped_in: list[int]
    evaluations: int


class _Search:
    """Greedy forward selection, then drops and exchanges (module docstring): moves chosen
    on ``select``, each checked on ``verify`` (on ``select`` itself when None)."""

    def __init__(
        self,
        engine: _Engine,
        select: _Set,
        verify: _Set | None,
        keep: float,
        z: float,
        swaps: int,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        self.engine, self.keep, self.z, self.swaps = engine, keep, z, swaps
        self.select, self.verify = select, verify
        self.progress = progress
        self.evaluations = 0
        self.steps = 0

    def _evaluate(self, on: _Set, masks: Tensor) -> _Counts:
        counts = self.engine.counts(on.x, on.y, on.reference, masks)
        self.evaluations += len(masks)
        self.steps += 1
        if self.progress is not None:
            self.progress(self.evaluations, self.steps)
        return counts

    def _check(self, mask: Tensor, chosen: _Counts) -> tuple[float, float]:
        """The kept fraction and its bound of a chosen circuit on the verifying images
        (``chosen``: its counts on the selecting images, used when they verify too)."""
        on = self.verify or self.select
        counts = chosen if self.verify is None else self._evaluate(on, mask[None])
        return float(_kept(counts, on.full, 0.0)[0]), float(_kept(counts, on.full, self.z)[0])

    def run(self) -> _Found:
        kept = ~self.engine.everything
        empty = self._evaluate(self.select, kept[None])
        curve, lower = (list(v) for v in zip(self._check(kept, empty)))
        order: list[int] = []
        while lower[-1] < self.keep - _SLACK and not kept.all():
            kept, chosen, added = self._grow(kept)
            order.append(added)
            point, bound = self._check(kept, chosen)
            curve.append(point)
            lower.append(bound)
        dropped: list[int] = []
        swapped_in: list[int] = []
        while kept.any():
            move = self._shrink(kept)
            if move is None:
                break
            kept, out, into = move
            dropped += out
            swapped_in += into
        return _Found(kept, order, curve, lower, dropped, swapped_in, self.evaluations)

    def _grow(self, kept: Tensor) -> tuple[Tensor, _Counts, int]:
        """Add the channel that leaves the smallest shortfall on the selecting images
        (then the largest soft kept fraction)."""
        outside = (~kept).nonzero().flatten()
        masks = _flip(kept, outside[:, None])
        counts = self._evaluate(self.select, masks)
        full = self.select.full
        everyone = torch.ones(len(outside), dtype=torch.bool)
        shortfall = _shortfall(counts, full, self.z, self.keep)
        best = _best(-shortfall, _soft(counts, full), everyone)
        assert best is not None
        return masks[best], counts.row(best), int(outside[best])

    def _shrink(self, kept: Tensor) -> tuple[Tensor, list[int], list[int]] | None:
        """The best drop that keeps the class on the selecting images, else the best
        exchange (two kept channels out, one other in) — if it keeps the class on the
        verifying images too: the new mask, the channels out and in; else None."""
        members = kept.nonzero().flatten()
        masks = _flip(kept, members[:, None])
        counts = self._evaluate(self.select, masks)
        soft = _soft(counts, self.select.full)
        best = self._best_move(masks, counts, soft)
        if best is not None:
            return masks[best], [int(members[best])], []
        outside = (~kept).nonzero().flatten()
        pairs = _pairs(soft, self.swaps // max(1, len(outside)))
        if not pairs or not len(outside):
            return None
        flips = torch.tensor([[members[i], members[j], u] for i, j in pairs for u in outside])
        masks = _flip(kept, flips)
        counts = self._evaluate(self.select, masks)
        best = self._best_move(masks, counts, _soft(counts, self.select.full))
        if best is None:
            return None
        a, b, u = (int(v) for v in flips[best])
        return masks[best], [a, b], [u]

    def _best_move(self, masks: Tensor, counts: _Counts, soft: Tensor) -> int | None:
        """The move with the largest soft kept fraction among those whose bound keeps
        the class on the selecting images — if it holds on the verifying images too."""
        bound = _kept(counts, self.select.full, self.z)
        best = _best(soft, bound, bound >= self.keep - _SLACK)
        if best is None:
            return None
        _, check = self._check(masks[best], counts.row(best))
        return best if check >= self.keep - _SLACK else None


def _flip(kept: Tensor, flips: Tensor) -> Tensor:
    """One mask per row of ``flips`` ``(G, m)``: ``kept`` with those ``m`` channels flipped."""
    masks = kept.expand(len(flips), -1).clone()
    rows = torch.arange(len(flips))[:, None].expand_as(flips)
    masks[rows, flips] = ~masks[rows, flips]
    return masks


def _pairs(soft: Tensor, limit: int) -> list[tuple[int, int]]:
    """Up to ``limit`` pairs of members to exchange, those whose single drops cost least
    (largest soft kept fraction) first."""
    rank = sorted(range(len(soft)), key=lambda k: (-float(soft[k]), k))
    pairs = [(rank[i], rank[j]) for j in range(len(rank)) for i in range(j)]
    return [tuple(sorted(p)) for p in pairs[:limit]]  # type: ignore[misc]


def _best(first: Tensor, second: Tensor, allowed: Tensor) -> int | None:
    """The allowed candidate with the largest ``first``, then ``second`` (the lowest
    index on ties); None when none is allowed."""
    best: int | None = None
    for k in allowed.nonzero().flatten().tolist():
        if best is None or (float(first[k]), float(second[k])) > (
            float(first[best]),
            float(second[best]),
        ):
            best = k
    return best


def _pair(specs: Sequence[_Spec], k: int) -> tuple[str, int]:
    for s in specs:
        if s.offset <= k < s.offset + s.channels:
            return s.name, k - s.offset
    raise AssertionError(k)


# ------------------------------------------------------------------ pruned model


def _free_suffix(module: nn.Module) -> str:
    names = dict(module.named_buffers(recurse=False))
    k = 0
    while f"circuit_kept{'' if k == 0 else f'_{k}'}" in names:
        k += 1
    return "" if k == 0 else f"_{k}"


def _ablate_dropped(suffix: str, module: nn.Module, inputs: Any, output: Tensor) -> Tensor:
    """The pruned model's hook: dropped channels of ``output`` take the fill."""
    kept = getattr(module, f"circuit_kept{suffix}")
    fill = getattr(module, f"circuit_fill{suffix}")
    mask = kept.reshape(1, -1, *([1] * (output.dim() - 2)))
    return torch.where(mask, output, fill.to(output.dtype))


# --------------------------------------------------------------------------- words


def _describe_circuit(result: Circuit, lang: str) -> Description:
    catalogue(lang)  # refuses an unknown language, naming the valid ones
    s = result.search
    values: dict[str, Value] = {
        "cls": result.class_name,
        "size": result.size,
        "total": result.total,
        "keep": result.keep,
        "accuracy": s.class_accuracy,
        "accuracy_full": s.class_accuracy_full,
        "precision": s.precision,
        "precision_full": s.precision_full,
        "images": s.images,
        "ablated": Term(f"decompose.circuit.{result.ablation}"),
    }
    findings = [Finding("decompose.circuit.size", values, "search", "finding")]
    if len(result.layers) > 1:
        for layer in result.layers:
            per: dict[str, Value] = {
                "layer": layer,
                "count": len(result.channels[layer]),
                "channels": result.layer_channels[layer],
            }
            findings.append(Finding("decompose.circuit.layer", per, "channels", "note"))
    h = result.held_out
    if h is None:
        findings.append(Finding("decompose.circuit.no_held_out", {}, "held_out", "note"))
    else:
        held: dict[str, Value] = {
            "cls": result.class_name,
            "accuracy": h.class_accuracy,
            "accuracy_full": h.class_accuracy_full,
            "precision": h.precision,
            "precision_full": h.precision_full,
            "images": h.images,
            "kept": h.kept,
            "keep": result.keep,
        }
        if not math.isfinite(h.kept):
            empty: dict[str, Value] = {"cls": result.class_name}
            findings.append(Finding("decompose.circuit.held_out_empty", empty, "held_out", "note"))
        else:
            holds = h.kept >= result.keep - _SLACK
            key = "decompose.circuit.held_out" if holds else "decompose.circuit.held_out_short"
            claim: Claim = "finding" if holds else "hedged"
            findings.append(Finding(key, held, "held_out", claim))
    return Description("circuit", tuple(findings))


def _describe_overlap(result: CircuitOverlap, lang: str) -> Description:
    catalogue(lang)
    k = len(result.classes)
    if k < 2:
        return Description("circuit_overlap", ())
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    value = [float(result.jaccard[i, j]) for i, j in pairs]
    most = max(range(len(pairs)), key=lambda p: (value[p], -p))
    least = min(range(len(pairs)), key=lambda p: (value[p], p))
    findings = []
    for key, p in (
        ("decompose.circuit_overlap.most", most),
        ("decompose.circuit_overlap.least", least),
    ):
        i, j = pairs[p]
        values: dict[str, Value] = {
            "a": result.classes[i],
            "b": result.classes[j],
            "jaccard": value[p],
            "shared": int(result.shared[i, j]),
        }
        findings.append(Finding(key, values, "jaccard", "note"))
    return Description("circuit_overlap", tuple(findings))
