"""Explanations: frozen results with raw attributions and what produced them.

Data only: plotting is :func:`seethrough.viz.plot`. A method's own result fields are
declared once, in a :class:`Details` dataclass that the method returns and that its
explanation type inherits (``CamExplanation(Explanation, CamDetails)``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

import torch.nn.functional as F
from torch import Tensor

from ..core.focus import TOP_FRACTION, Focus, focus
from ..words import Description
from .describe import describe_explanation

__all__ = [
    "CamDetails",
    "CamExplanation",
    "Details",
    "Explanation",
    "GuidedDetails",
    "GuidedExplanation",
    "GuidedGradCamDetails",
    "GuidedGradCamExplanation",
    "IntegratedGradientsDetails",
    "IntegratedGradientsExplanation",
    "PathDetails",
    "PathExplanation",
    "freeze_settings",
]


@dataclass(frozen=True, eq=False, kw_only=True)
class Explanation:
    """The result of explaining a batch with one method.

    Attributes
    ----------
    method : str
        The method's registered name.
    attributions : Tensor
        Raw attributions, on the inputs' device. ``(N, C, H, W)`` like the inputs for
        pixel methods; ``(N, 1, h, w)`` at the layer's resolution for CAMs (see
        :meth:`to_input_size`). No ReLU, no normalisation.
    inputs : Tensor
        The explained rows ``(N, C, H, W)`` (detached copy).
    targets : Tensor
        ``(N,)`` class index explained in each row (``-1`` for callable targets).
    scores : Tensor
        ``(N,)`` the model's target score for each row's input.
    image_index : Tensor
        ``(N,)`` which input image each row explains (differs from ``arange(N)`` for
        top-k targets, which explain each image once per class).
    resolution : {"input", "layer"}
        Whether ``attributions`` are at input or at layer resolution.
    display : {"signed", "magnitude"}
        How a heatmap of this method is usually read; used by ``viz``.
    settings : Mapping[str, Any]
        The method's options, as used.
    seed : int
        Row ``i`` drew its random numbers from ``seed + i``.
    class_names : tuple of str or None
        The model's class labels, when known.
    input_transform : object or None
        The preprocessing that made the inputs (has ``invert``), for display.
    versions : Mapping[str, str]
        seethrough and torch versions.
    seconds : float
        Wall-clock time of the call.
    predicted : Tensor or None
        ``(N,)`` the model's top class for each row, read off the call's own pass over
        the rows themselves (None when no method of the call ran one: path and
        perturbation methods see only altered inputs).
    nonfinite_rows : tuple of int
        Rows whose target score or attributions are not finite (NaN or ±inf).
    nonfinite_steps : tuple of str
        Every step of the call where a score or gradient was not finite, with the rows
        of that pass (e.g. a noisy copy or a path point whose output was NaN, which
        can leave a finite but wrong map). Both are empty unless the call was made with
        ``nonfinite="warn"``: by default it raises
        :class:`~seethrough.errors.NonFiniteError` instead.
    """

    method: str
    attributions: Tensor
    inputs: Tensor
    targets: Tensor
    scores: Tensor
    image_index: Tensor
    resolution: Literal["input", "layer"]
    display: Literal["signed", "magnitude"]
    settings: Mapping[str, Any]
    seed: int
    class_names: tuple[str, ...] | None = None
    input_transform: Any = None
    versions: Mapping[str, str] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    predicted: Tensor | None = None
    nonfinite_rows: tuple[int, ...] = ()
    nonfinite_steps: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.attributions.shape[0])

    def target_names(self) -> list[str]:
        """A readable name for each row's target class."""
        names = []
        for index in self.targets.tolist():
            if index < 0:
                names.append("custom target")
            elif self.class_names is not None and index < len(self.class_names):
                names.append(f"{self.class_names[index]} ({index})")
            else:
                names.append(f"class {index}")
        return names

    def replace(self, **changes: Any) -> Explanation:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_input_size(self, mode: str = "bilinear") -> Explanation:
        """Upsample layer-resolution attributions to the input's height and width.

        ``mode`` is passed to :func:`torch.nn.functional.interpolate` (``"bilinear"``,
        ``"nearest"``, ``"bicubic"``); corners are not aligned. Input-resolution
        explanations are returned unchanged.
        """
        if self.resolution == "input":
            return self
        size = tuple(self.inputs.shape[2:])
        align = False if mode in ("bilinear", "bicubic") else None
        values = F.interpolate(self.attributions, size=size, mode=mode, align_corners=align)
        return self.replace(attributions=values, resolution="input")

    def focus(self, top_fraction: float = TOP_FRACTION) -> tuple[Focus, ...]:
        """Where each row's map lies: grid region, centroid, peak and concentration.

        Computed by :func:`seethrough.core.focus.focus` on the magnitude of the map at
        input size, summed over channels (``|A|.sum(dim=1)`` after :meth:`to_input_size`),
        so positive and negative evidence both count as where the map looks.

        Parameters
        ----------
        top_fraction : float
            The share of pixels whose weight ``concentration`` measures (default 0.1).

        Returns
        -------
        tuple of Focus
            One per row.
        """
        return focus(self.to_input_size().attributions.abs().sum(dim=1), top_fraction)

    def describe(self, lang: str = "en", sanity: str | None = None) -> Description:
        """What this explanation says, in words, row by row: the class explained, where
        the map lies (:meth:`focus`) and, for path methods, the completeness check.

        Parameters
        ----------
        lang : str
            A language of :data:`seethrough.words.LANGUAGES` (checked; the returned
            description renders in any of them).
        sanity : {"passed", "failed", "inconclusive"} or None
            This method's sanity-check verdict on this model; None when not checked.
            A failed method is reported as not reliable, with nothing said about the
            image; unchecked or inconclusive, as a hypothesis.

        Returns
        -------
        Description
            See :func:`seethrough.attribution.describe.describe_explanation`.
        """
        return describe_explanation(self, lang=lang, sanity=sanity)

    def cpu(self) -> Explanation:
        """A copy with every tensor on the CPU."""
        changes = {
            f.name: getattr(self, f.name).cpu()
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), Tensor)
        }
        return self.replace(**changes)


@dataclass(frozen=True, eq=False, kw_only=True)
class Details:
    """The fields a method adds to its result, returned by the method and inherited by
    its explanation type (the base of every ``...Details``)."""

    def as_fields(self) -> dict[str, Any]:
        """The fields by name, for the explanation's constructor (values not copied)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True, eq=False, kw_only=True)
class PathDetails(Details):
    """What a path method reports per row: see :class:`PathExplanation`."""

    baselines: Tensor
    baseline_scores: Tensor
    completeness_error: Tensor
    path_points: Tensor


@dataclass(frozen=True, eq=False, kw_only=True)
class PathExplanation(Explanation, PathDetails):
    """A path method (integrated gradients and its variants), with the completeness
    check of Sundararajan et al. (2017).

    ``completeness_error`` is ``sum(attributions) - (score(input) - score(baseline))``
    per row, summed in float64 over the returned attributions and reported in at least
    float32; ``baseline_scores`` is the baseline's score (for a distribution of
    baselines, the mean score of the ones drawn). ``path_points`` is the number of
    points at which each row's gradient was computed.
    """

    @property
    def relative_completeness_error(self) -> Tensor:
        """``|completeness_error| / |score(input) - score(baseline)|`` per row (the
        difference is taken in float64)."""
        gap = (self.scores.double() - self.baseline_scores.double()).abs().clamp_min(1e-12)
        return (self.completeness_error.double().abs() / gap).to(self.completeness_error.dtype)

    def completeness(self) -> list[dict[str, float]]:
        """The completeness check per row, as numbers: ``sum`` of the attributions and
        the score ``difference`` ``score(input) - score(baseline)`` (both in float64),
        ``error`` (:attr:`completeness_error`) and ``relative_error``
        (:attr:`relative_completeness_error`)."""
        sums = self.attributions.detach().double().flatten(1).sum(dim=1).tolist()
        gaps = (self.scores.double() - self.baseline_scores.double()).tolist()
        errors = self.completeness_error.tolist()
        relative = self.relative_completeness_error.tolist()
        return [
            {"sum": s, "difference": d, "error": e, "relative_error": r}
            for s, d, e, r in zip(sums, gaps, errors, relative, strict=True)
        ]


@dataclass(frozen=True, eq=False, kw_only=True)
class IntegratedGradientsDetails(PathDetails):
    """A path method's fields plus ``map_error``: see
    :class:`IntegratedGradientsExplanation`."""

    map_error: Tensor


@dataclass(frozen=True, eq=False, kw_only=True)
class IntegratedGradientsExplanation(PathExplanation, IntegratedGradientsDetails):
    """Integrated gradients (see :class:`PathExplanation`), with an estimate of the
    map's own error.

    ``map_error`` is the estimated L1 distance of the attributions from the exact path
    integral, relative to their L1 norm (``‖A − A_exact‖₁ / ‖A‖₁``), per row; see
    :func:`seethrough.attribution.integrated_gradients.adaptive_nodes`. It is estimated
    by the adaptive rule only (NaN for fixed grids). Unlike the completeness error, it
    does not let per-pixel errors of opposite sign cancel.
    """


@dataclass(frozen=True, eq=False, kw_only=True)
class GuidedDetails(Details):
    """What a rewritten-backward rule did: see :class:`GuidedExplanation`."""

    rule_applications: int
    rewritten: Mapping[str, int]
    untouched_nonlinearities: Mapping[str, int]


@dataclass(frozen=True, eq=False, kw_only=True)
class GuidedExplanation(Explanation, GuidedDetails):
    """A rewritten-backward method: what its rule did, per forward pass.

    ``rule_applications`` is how many calls it rewrote; ``rewritten`` maps each op to
    its count (``{"hardtanh(0, 6)": 33}`` for ``nn.ReLU6``, ``{"relu": 3}``; read-only,
    ``dict(...)`` is JSON); ``untouched_nonlinearities`` the same for what it left
    alone — smooth nonlinearities, ``hardtanh(-1, 1)``, ReLU-like ops on the model
    input (``"clamp(0, 1) (input)"``) or left out by ``rectifiers`` (``"... (excluded)"``).
    """


@dataclass(frozen=True, eq=False, kw_only=True)
class CamDetails(Details):
    """A CAM's layer and channel weights: see :class:`CamExplanation`."""

    layer: str
    channel_weights: Tensor


@dataclass(frozen=True, eq=False, kw_only=True)
class CamExplanation(Explanation, CamDetails):
    """A class activation map at ``layer``, with each row's channel weights ``(N, K)``."""


@dataclass(frozen=True, eq=False, kw_only=True)
class GuidedGradCamDetails(CamDetails, GuidedDetails):
    """Grad-CAM's layer and weights with guided backprop's rule fields."""


@dataclass(frozen=True, eq=False, kw_only=True)
class GuidedGradCamExplanation(CamExplanation, GuidedGradCamDetails):
    """Guided Grad-CAM: guided backprop times the upsampled, rectified Grad-CAM; the
    rule's fields as in :class:`GuidedExplanation`."""


def freeze_settings(options: Mapping[str, Any]) -> Mapping[str, Any]:
    """Settings as a read-only mapping; tensors are described, not copied."""

    def describe(value: Any) -> Any:
        if isinstance(value, Tensor):
            return f"tensor{tuple(value.shape)}"
        if isinstance(value, Sequence) and not isinstance(value, str):
            return tuple(describe(v) for v in value)
        if isinstance(value, Mapping):
            return MappingProxyType({k: describe(v) for k, v in value.items()})
        if hasattr(value, "name") and hasattr(value, "settings"):
            return value.name
        return value

    return MappingProxyType({k: describe(v) for k, v in options.items()})
