"""Composable objectives for feature visualization: what an optimised image should excite.

An :class:`Objective` maps what one forward pass captured — the activations of some layers,
the model's output and the image itself (:class:`Captured`) — to one score per image,
shape ``(B,)``, that is **maximised**. Objectives add, subtract, negate and scale by numbers,
as in Lucent/Lucid (Olah et al. 2017, "Feature Visualization", Distill)::

    channel("_blocks.10", 3) - 0.1 * total_variation()

Sign convention: the feature objectives (:func:`channel`, :func:`neuron`, :func:`class_logit`,
:func:`layer_objective`, :func:`direction`, :func:`diversity`) are values to *raise*; the
regularisers (:func:`total_variation`, :func:`l2`, :func:`blur`) are *penalties* — non-negative,
larger for rougher or more extreme images — so they are subtracted with a weight.

A *batch of objectives* is a list with one objective per image row
(``channels("_blocks.10", range(112))``): :func:`compile_objectives` turns it into a
:class:`Plan` that scores all rows with one vectorised operation per kind of term and layer,
however many rows there are, so K objectives cost one forward pass and a handful of tensor
operations per step.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InvalidOptionError, LayerError, TargetError

__all__ = [
    "Captured",
    "Objective",
    "Plan",
    "as_objective",
    "blur",
    "channel",
    "channels",
    "class_logit",
    "compile_objectives",
    "direction",
    "diversity",
    "l2",
    "layer_objective",
    "neuron",
    "total_variation",
]


@dataclass(frozen=True)
class Captured:
    """What an objective reads from one forward pass of a batch of ``B`` images.

    Attributes
    ----------
    layers : Mapping[str, Tensor]
        Layer name → output ``(B, C, H, W)`` or ``(B, F)``.
    output : Tensor or None
        The model's class scores ``(B, classes)``; ``None`` when the pass stopped early
        because no objective needs them.
    image : Tensor
        The images ``(B, C, H, W)`` being optimised, before transforms and normalisation
        (values in [0, 1] for the parametrizations of :mod:`seethrough.inside.param`).
    """

    layers: Mapping[str, Tensor]
    output: Tensor | None
    image: Tensor

    @property
    def batch(self) -> int:
        return int(self.image.shape[0])


# --------------------------------------------------------------------------- terms


class Term(abc.ABC):
    """One indivisible part of an objective. Terms of one kind that share a ``key`` are
    scored together for all rows that use them (:meth:`prepare` + :meth:`score`)."""

    layer: str | None  # set by each subclass: a field, or ClassVar None
    needs_output: ClassVar[bool] = False
    couples_rows: ClassVar[bool] = False

    @property
    @abc.abstractmethod
    def key(self) -> tuple[Any, ...]:
        """Terms with equal keys are evaluated in one vectorised call."""

    @property
    @abc.abstractmethod
    def label(self) -> str:
        """How the term reads in an objective's name."""

    def check(self, shapes: Mapping[str, tuple[int, ...]]) -> None:  # noqa: B027
        """Raise a clear error if the term does not fit the layer shapes ``(C, ...)``
        (without the batch dimension; key ``""`` is the model output)."""

    @classmethod
    def prepare(cls, terms: Sequence[Term], device: torch.device, dtype: torch.dtype) -> Any:
        """Per-group constants (indices, vectors) built once per call."""
        return None

    @classmethod
    @abc.abstractmethod
    def score(cls, captured: Captured, rows: Tensor | None, terms: Any, prepared: Any) -> Tensor:
        """Scores ``(R,)`` of the rows ``rows`` (``None``: every row, in order)."""


def _rows(tensor: Tensor, rows: Tensor | None) -> Tensor:
    return tensor if rows is None else tensor.index_select(0, rows)


def _layer_shape(shapes: Mapping[str, tuple[int, ...]], layer: str) -> tuple[int, ...]:
    shape = shapes[layer]
    if len(shape) not in (1, 3):
        raise LayerError(
            f"layer {layer!r} outputs shape (B, {', '.join(map(str, shape))}); objectives "
            "read (B, C, H, W) or (B, F) outputs — choose a convolutional or linear layer"
        )
    return shape


def _check_channel(shapes: Mapping[str, tuple[int, ...]], layer: str, index: int) -> None:
    count = _layer_shape(shapes, layer)[0]
    if not 0 <= index < count:
        raise InvalidOptionError(
            f"channel {index} is out of range for layer {layer!r}, which has {count} channels "
            f"(valid: 0–{count - 1})"
        )


def _check_index(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidOptionError(f"{what} must be an integer, got {value!r}")
    return value


def _check_layer_name(layer: object) -> str:
    if not isinstance(layer, str) or not layer:
        raise LayerError(
            f"a layer name (str, as in model.named_modules()) is needed, got {layer!r}"
        )
    return layer


def _spatial_mean(values: Tensor) -> Tensor:
    """Mean over the spatial axes of ``(R, H, W)`` (identity for ``(R,)``)."""
    return values.mean(dim=(1, 2)) if values.dim() == 3 else values


@dataclass(frozen=True)
class ChannelTerm(Term):
    """Mean activation of one channel over all positions (a unit of a linear layer)."""

    layer: str
    channel: int

    @property
    def key(self) -> tuple[Any, ...]:
        return ("channel", self.layer)

    @property
    def label(self) -> str:
        return f"channel({self.layer!r}, {self.channel})"

    def check(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        _check_channel(shapes, self.layer, self.channel)

    @classmethod
    def prepare(cls, terms: Sequence[Term], device: torch.device, dtype: torch.dtype) -> Any:
        return torch.tensor([t.channel for t in terms], device=device)  # type: ignore[attr-defined]

    @classmethod
    def score(cls, captured: Captured, rows: Tensor | None, terms: Any, prepared: Any) -> Tensor:
        acts = _rows(captured.layers[terms[0].layer], rows)
        picked = acts[torch.arange(len(acts), device=acts.device), prepared]
        return _spatial_mean(picked)


@dataclass(frozen=True)
class NeuronTerm(Term):
    """One channel at one position; ``None`` positions mean the centre (``H // 2, W // 2``,
    Lucent's choice: the lower-right of the central four for even sizes)."""

    layer: str
    channel: int
    y: int | None = None
    x: int | None = None

    @property
    def key(self) -> tuple[Any, ...]:
        return ("neuron", self.layer)

    @property
    def label(self) -> str:
        where = "" if self.y is None and self.x is None else f", y={self.y}, x={self.x}"
        return f"neuron({self.layer!r}, {self.channel}{where})"

    def check(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        _check_channel(shapes, self.layer, self.channel)
        shape = shapes[self.layer]
        if len(shape) == 1:
            if self.y is not None or self.x is not None:
                raise InvalidOptionError(
                    f"layer {self.layer!r} has no spatial positions (output (B, {shape[0]})); "
                    "leave y and x as None"
                )
            return
        for value, size, axis in ((self.y, shape[1], "y"), (self.x, shape[2], "x")):
            if value is not None and not 0 <= value < size:
                raise InvalidOptionError(
                    f"{axis}={value} is outside layer {self.layer!r}'s {shape[1]}×{shape[2]} "
                    f"map (valid: 0–{size - 1})"
                )

    @classmethod
    def prepare(cls, terms: Sequence[Term], device: torch.device, dtype: torch.dtype) -> Any:
        def where(values: list[int | None]) -> Tensor:  # -1: the centre, known at run time
            return torch.tensor([-1 if v is None else v for v in values], device=device)

        return (
            torch.tensor([t.channel for t in terms], device=device),  # type: ignore[attr-defined]
            where([t.y for t in terms]),  # type: ignore[attr-defined]
            where([t.x for t in terms]),  # type: ignore[attr-defined]
        )

    @classmethod
    def score(cls, captured: Captured, rows: Tensor | None, terms: Any, prepared: Any) -> Tensor:
        acts = _rows(captured.layers[terms[0].layer], rows)
        channel, ys, xs = prepared
        index = torch.arange(len(acts), device=acts.device)
        if acts.dim() == 2:
            return acts[index, channel]
        height, width = acts.shape[2:]
        ys = torch.where(ys < 0, height // 2, ys)
        xs = torch.where(xs < 0, width // 2, xs)
        return acts[index, channel, ys, xs]


@dataclass(frozen=True)
class ClassLogitTerm(Term):
    """The model's output score (logit) of one class."""

    index: int
    layer: str | None = field(default=None, init=False, repr=False)
    needs_output: ClassVar[bool] = True

    @property
    def key(self) -> tuple[Any, ...]:
        return ("class_logit",)

    @property
    def label(self) -> str:
        return f"class_logit({self.index})"

    def check(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        classes = shapes[""][0]
        if not 0 <= self.index < classes:
            raise TargetError(
                f"class {self.index} is out of range: the model has {classes} classes "
                f"(valid: 0–{classes - 1})"
            )

    @classmethod
    def prepare(cls, terms: Sequence[Term], device: torch.device, dtype: torch.dtype) -> Any:
        return torch.tensor([t.index for t in terms], device=device)  # type: ignore[attr-defined]

    @classmethod
    def score(cls, captured: Captured, rows: Tensor | None, terms: Any, prepared: Any) -> Tensor:
        assert captured.output is not None
        logits = _rows(captured.output, rows)
        return logits[torch.arange(len(logits), device=logits.device), prepared]


@dataclass(frozen=True)
class LayerTerm(Term):
    """Mean square of a whole layer: DeepDream's L2 objective (Mordvintsev et al. 2015)."""

    layer: str

    @property
    def key(self) -> tuple[Any, ...]:
        return ("layer", self.layer)

    @property
    def label(self) -> str:
        return f"layer_objective({self.layer!r})"

    def check(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        _layer_shape(shapes, self.layer)

    @classmethod
    def score(cls, captured: Captured, rows: Tensor | None, terms: Any, prepared: Any) -> Tensor:
        acts = _rows(captured.layers[terms[0].layer], rows)
        return acts.square().flatten(1).mean(dim=1)


@dataclass(frozen=True)
class DirectionTerm(Term):
    """Agreement of the activation vector at each position with a direction in channel
    space, averaged over positions: cosine similarity (Lucent's ``direction``) or the dot
    product."""

    layer: str
    vector: tuple[float, ...]
    cosine: bool = True

    @property
    def key(self) -> tuple[Any, ...]:
        return ("direction", self.layer, self.cosine)

    @property
    def label(self) -> str:
        kind = "" if self.cosine else ", cosine=False"
        return f"direction({self.layer!r}, <{len(self.vector)}-vector>{kind})"

    def check(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        count = _layer_shape(shapes, self.layer)[0]
        if len(self.vector) != count:
            raise InvalidOptionError(
                f"the direction has {len(self.vector)} entries but layer {self.layer!r} has "
                f"{count} channels; pass one weight per channel"
            )

    @classmethod
    def prepare(cls, terms: Sequence[Term], device: torch.device, dtype: torch.dtype) -> Any:
        return torch.tensor([t.vector for t in terms], device=device, dtype=dtype)  # type: ignore[attr-defined]

    @classmethod
    def score(cls, captured: Captured, rows: Tensor | None, terms: Any, prepared: Any) -> Tensor:
        acts = _rows(captured.layers[terms[0].layer], rows)
        vectors = prepared.reshape(*prepared.shape, *([1] * (acts.dim() - 2)))
        if terms[0].cosine:
            values = F.cosine_similarity(acts, vectors, dim=1)
        else:
            values = (acts * vectors).sum(dim=1)
        return _spatial_mean(values)


@dataclass(frozen=True)
class DiversityTerm(Term):
    """Minus the Gram-matrix similarity of each image to the *other* images of the batch.

    Lucid/Lucent's definition (Olah et al. 2017, "Diversity"): ``G_i`` is image ``i``'s
    channel Gram matrix at the layer, scaled to unit Frobenius norm; row ``i`` scores
    ``-Σ_{j≠i} <G_i, G_j> / B``. The rows' sum is Lucent's ``diversity`` value.
    """

    layer: str
    couples_rows: ClassVar[bool] = True

    @property
    def key(self) -> tuple[Any, ...]:
        return ("diversity", self.layer)

    @property
    def label(self) -> str:
        return f"diversity({self.layer!r})"

    def check(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        if len(_layer_shape(shapes, self.layer)) != 3:
            raise LayerError(
                f"diversity needs a spatial layer (B, C, H, W); {self.layer!r} outputs "
                f"(B, {shapes[self.layer][0]})"
            )

    @classmethod
    def score(cls, captured: Captured, rows: Tensor | None, terms: Any, prepared: Any) -> Tensor:
        acts = captured.layers[terms[0].layer]
        grams = gram_matrices(acts).flatten(1)
        similarity = grams @ grams.T
        batch = len(acts)
        others = similarity.sum(dim=1) - similarity.diagonal()
        return _rows(-others / batch, rows)


def gram_matrices(acts: Tensor) -> Tensor:
    """Channel Gram matrices ``(B, C, C)`` of ``(B, C, H, W)`` activations, each scaled to
    unit Frobenius norm (``F.normalize``'s ``1e-12`` floor, as Lucent)."""
    flat = acts.flatten(2)
    grams = flat @ flat.transpose(1, 2)
    return F.normalize(grams.flatten(1), dim=1).reshape(grams.shape)


@dataclass(frozen=True)
class TotalVariationTerm(Term):
    """Total variation of the image: ``mean |∂y x|^β + mean |∂x x|^β`` over channels and
    positions (anisotropic; Mahendran & Vedaldi 2015 use the ``β``-power form)."""

    beta: float = 1.0
    layer: str | None = field(default=None, init=False, repr=False)

    @property
    def key(self) -> tuple[Any, ...]:
        return ("total_variation", self.beta)

    @property
    def label(self) -> str:
        return "total_variation()" if self.beta == 1.0 else f"total_variation(beta={self.beta:g})"

    @classmethod
    def score(cls, captured: Captured, rows: Tensor | None, terms: Any, prepared: Any) -> Tensor:
        return total_variation_of(_rows(captured.image, rows), terms[0].beta)


def total_variation_of(images: Tensor, beta: float = 1.0) -> Tensor:
    """``mean |∂y x|^β + mean |∂x x|^β`` per image of ``(B, C, H, W)`` → ``(B,)``."""
    dy = (images[:, :, 1:, :] - images[:, :, :-1, :]).abs()
    dx = (images[:, :, :, 1:] - images[:, :, :, :-1]).abs()
    if beta != 1.0:
        dy, dx = dy.pow(beta), dx.pow(beta)
    return dy.flatten(1).mean(dim=1) + dx.flatten(1).mean(dim=1)


@dataclass(frozen=True)
class L2Term(Term):
    """Mean squared distance of the pixels from a constant (0.5: mid-grey in [0, 1])."""

    constant: float = 0.5
    layer: str | None = field(default=None, init=False, repr=False)

    @property
    def key(self) -> tuple[Any, ...]:
        return ("l2", self.constant)

    @property
    def label(self) -> str:
        return "l2()" if self.constant == 0.5 else f"l2(constant={self.constant:g})"

    @classmethod
    def score(cls, captured: Captured, rows: Tensor | None, terms: Any, prepared: Any) -> Tensor:
        images = _rows(captured.image, rows)
        return (images - terms[0].constant).square().flatten(1).mean(dim=1)


@dataclass(frozen=True)
class BlurTerm(Term):
    """``0.5 · mean (x − blur(x))²`` with the blurred image held constant: Lucid's
    ``blur_input_each_step`` (a mean instead of a sum, so weights do not depend on the image
    size). Subtracting ``k · blur()`` pulls the image towards its 3×3 blur each step, the
    regulariser of Nguyen et al. (2015)."""

    layer: str | None = field(default=None, init=False, repr=False)

    @property
    def key(self) -> tuple[Any, ...]:
        return ("blur",)

    @property
    def label(self) -> str:
        return "blur()"

    @classmethod
    def score(cls, captured: Captured, rows: Tensor | None, terms: Any, prepared: Any) -> Tensor:
        images = _rows(captured.image, rows)
        with torch.no_grad():
            blurred = blur_3x3(images)
        return 0.5 * (images - blurred).square().flatten(1).mean(dim=1)


def blur_3x3(images: Tensor) -> Tensor:
    """Lucid's 3×3 blur (centre weight 1, neighbours 0.5), per channel, edge-normalised."""
    kernel = torch.full((3, 3), 0.5, dtype=images.dtype, device=images.device)
    kernel[1, 1] = 1.0
    channels = images.shape[1]
    weight = kernel.expand(channels, 1, 3, 3)
    total = F.conv2d(images, weight, padding=1, groups=channels)
    norm = F.conv2d(torch.ones_like(images[:1]), weight, padding=1, groups=channels)
    return total / norm


# --------------------------------------------------------------------------- objective


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class Objective:
    """A weighted sum of terms, scored per image and maximised.

    Build objectives with the constructors of this module and combine them with ``+``,
    ``-``, unary ``-``, and ``*`` or ``/`` by a number. Equal terms merge their weights.

    Parameters
    ----------
    terms : sequence of (float, Term)
        Weights and terms.
    """

    __slots__ = ("terms",)

    def __init__(self, terms: Iterable[tuple[float, Term]]) -> None:
        merged: dict[Term, float] = {}
        for weight, term in terms:
            merged[term] = merged.get(term, 0.0) + float(weight)
        self.terms: tuple[tuple[float, Term], ...] = tuple(
            (w, t) for t, w in merged.items() if w != 0.0
        )

    # -- what it needs
    @property
    def layers(self) -> frozenset[str]:
        """The layers whose activations the objective reads."""
        return frozenset(t.layer for _, t in self.terms if t.layer is not None)

    @property
    def needs_output(self) -> bool:
        """Whether the objective reads the model's output (class scores)."""
        return any(t.needs_output for _, t in self.terms)

    @property
    def couples_rows(self) -> bool:
        """Whether an image's score depends on the other images of the batch (diversity)."""
        return any(t.couples_rows for _, t in self.terms)

    @property
    def name(self) -> str:
        """Readable form, e.g. ``channel('_blocks.10', 3) - 0.1 * total_variation()``."""
        if not self.terms:
            return "0"
        parts = []
        for i, (weight, term) in enumerate(self.terms):
            sign = "-" if weight < 0 else "+"
            size = abs(weight)
            text = term.label if size == 1.0 else f"{size:g} * {term.label}"
            if i == 0:
                parts.append(text if sign == "+" else f"-{text}")
            else:
                parts.append(f"{sign} {text}")
        return " ".join(parts)

    # -- algebra
    def __add__(self, other: object) -> Objective:
        if isinstance(other, Objective):
            return Objective([*self.terms, *other.terms])
        if _is_number(other) and other == 0:
            return self  # lets sum(objectives) start from 0
        return NotImplemented

    __radd__ = __add__

    def __neg__(self) -> Objective:
        return Objective((-w, t) for w, t in self.terms)

    def __sub__(self, other: object) -> Objective:
        if isinstance(other, Objective):
            return self + (-other)
        if _is_number(other) and other == 0:
            return self
        return NotImplemented

    def __rsub__(self, other: object) -> Objective:
        if _is_number(other) and other == 0:
            return -self
        return NotImplemented

    def __mul__(self, other: object) -> Objective:
        if not _is_number(other):
            return NotImplemented
        factor = float(other)  # type: ignore[arg-type]
        return Objective((factor * w, t) for w, t in self.terms)

    __rmul__ = __mul__

    def __truediv__(self, other: object) -> Objective:
        if not _is_number(other) or other == 0:
            return NotImplemented
        return self * (1.0 / float(other))  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"Objective({self.name})"

    def __call__(self, captured: Captured) -> Tensor:
        """Scores ``(B,)`` of every image of ``captured`` under this objective."""
        plan = compile_objectives([self] * captured.batch, captured.image.device, _dtype(captured))
        return plan(captured)


def _dtype(captured: Captured) -> torch.dtype:
    return captured.image.dtype


# --------------------------------------------------------------------------- constructors


def channel(layer: str, index: int) -> Objective:
    """Mean activation of channel ``index`` of ``layer`` over all positions.

    For a linear layer ``(B, F)`` the channel is unit ``index``.
    """
    return Objective([(1.0, ChannelTerm(_check_layer_name(layer), _check_index(index, "channel")))])


def channels(layer: str, indices: Iterable[int]) -> list[Objective]:
    """One :func:`channel` objective per index: a batch of objectives, one image each
    (e.g. a layer's channel atlas ``channels(layer, range(C))``)."""
    result = [channel(layer, i) for i in indices]
    if not result:
        raise InvalidOptionError("no channel indices given; pass e.g. range(number_of_channels)")
    return result


def neuron(layer: str, index: int, y: int | None = None, x: int | None = None) -> Objective:
    """Activation of channel ``index`` at one position ``(y, x)`` of ``layer``; by default
    the centre ``(H // 2, W // 2)``."""
    ys = None if y is None else _check_index(y, "y")
    xs = None if x is None else _check_index(x, "x")
    term = NeuronTerm(_check_layer_name(layer), _check_index(index, "channel"), ys, xs)
    return Objective([(1.0, term)])


def class_logit(index: int) -> Objective:
    """The model's output score (pre-softmax logit) of class ``index``."""
    return Objective([(1.0, ClassLogitTerm(_check_index(index, "class")))])


def layer_objective(layer: str) -> Objective:
    """Mean square of all of ``layer``'s activations (DeepDream; Mordvintsev et al. 2015)."""
    return Objective([(1.0, LayerTerm(_check_layer_name(layer)))])


def direction(layer: str, vector: Sequence[float] | Tensor, *, cosine: bool = True) -> Objective:
    """Agreement with a direction ``vector`` ``(C,)`` in ``layer``'s channel space.

    With ``cosine=True`` (Lucent's ``direction``) the cosine similarity between the direction
    and the activation vector at each position, averaged over positions; with
    ``cosine=False`` the dot product, averaged over positions.
    """
    values = vector.detach().flatten().tolist() if isinstance(vector, Tensor) else list(vector)
    if not values or not all(_is_number(v) for v in values):
        raise InvalidOptionError("the direction must be a non-empty vector of finite numbers")
    if cosine and not any(values):
        raise InvalidOptionError("the direction is all zeros; cosine similarity is undefined")
    term = DirectionTerm(_check_layer_name(layer), tuple(float(v) for v in values), bool(cosine))
    return Objective([(1.0, term)])


def diversity(layer: str) -> Objective:
    """Minus the Gram similarity of each image to the other images optimised with it.

    Add it with a weight (``channel(l, 3) + 100 * diversity(l)``, Lucent's
    ``channel(l, 3) - 1e2 * diversity(l)`` in its loss convention) to get a batch of
    different images for one feature. It couples the rows: the call optimises them in one
    batch. Definition: see :class:`DiversityTerm`.
    """
    return Objective([(1.0, DiversityTerm(_check_layer_name(layer)))])


def total_variation(beta: float = 1.0) -> Objective:
    """Penalty: total variation of the image, ``mean |∂y x|^β + mean |∂x x|^β``
    (subtract it: ``objective - weight * total_variation()``). ``beta ≥ 1``."""
    if not _is_number(beta) or beta < 1:
        raise InvalidOptionError(f"beta must be a number ≥ 1, got {beta!r}")
    return Objective([(1.0, TotalVariationTerm(float(beta)))])


def l2(constant: float = 0.5) -> Objective:
    """Penalty: mean squared distance of the pixels from ``constant`` (subtract it)."""
    if not _is_number(constant):
        raise InvalidOptionError(f"constant must be a finite number, got {constant!r}")
    return Objective([(1.0, L2Term(float(constant)))])


def blur() -> Objective:
    """Penalty: ``0.5 · mean (x − blur(x))²``, the blurred image held constant (subtract
    it; see :class:`BlurTerm`)."""
    return Objective([(1.0, BlurTerm())])


def as_objective(value: object) -> Objective:
    """An :class:`Objective` as is; ``"layer:channel"`` as :func:`channel` (Lucent's
    shorthand)."""
    if isinstance(value, Objective):
        return value
    if isinstance(value, str) and ":" in value:
        layer, _, index = value.rpartition(":")
        if index.strip().lstrip("-").isdigit():
            return channel(layer.strip(), int(index))
    raise InvalidOptionError(
        f"cannot use {value!r} as an objective; build one with seethrough.inside.objectives "
        "(e.g. channel('_blocks.10', 3)) or write 'layer:channel'"
    )


# --------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class _Group:
    kind: type[Term]
    rows: Tensor | None
    weights: Tensor
    terms: tuple[Term, ...]
    prepared: Any


class Plan:
    """Scores a batch of rows, row ``i`` under objective ``i``, with one vectorised call
    per group of like terms (same kind and layer)."""

    def __init__(self, objectives: Sequence[Objective], device: torch.device, dtype: torch.dtype):
        self.objectives = tuple(objectives)
        self.batch = len(self.objectives)
        self.dtype = dtype
        found: dict[tuple[Any, ...], tuple[list[int], list[float], list[Term]]] = {}
        for row, objective in enumerate(self.objectives):
            for weight, term in objective.terms:
                rows, weights, terms = found.setdefault(term.key, ([], [], []))
                rows.append(row)
                weights.append(weight)
                terms.append(term)
        self.groups = tuple(
            _Group(
                type(terms[0]),
                None if rows == list(range(self.batch)) else torch.tensor(rows, device=device),
                torch.tensor(weights, dtype=dtype, device=device),
                tuple(terms),
                type(terms[0]).prepare(terms, device, dtype),
            )
            for rows, weights, terms in found.values()
        )

    def __call__(self, captured: Captured) -> Tensor:
        if captured.batch != self.batch:
            raise InvalidOptionError(
                f"{self.batch} objectives for a batch of {captured.batch} images; "
                "pass one objective per image"
            )
        scores = captured.image.new_zeros(self.batch, dtype=self.dtype)
        for group in self.groups:
            values = group.kind.score(captured, group.rows, group.terms, group.prepared)
            weighted = values.to(self.dtype) * group.weights
            if group.rows is None:
                scores = scores + weighted
            else:
                scores = scores.index_add(0, group.rows, weighted)
        return scores


def compile_objectives(
    objectives: Sequence[Objective], device: torch.device, dtype: torch.dtype
) -> Plan:
    """A :class:`Plan` scoring row ``i`` with ``objectives[i]``."""
    return Plan(objectives, device, dtype)
