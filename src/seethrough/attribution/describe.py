"""Explanations in words: which class each row explains, where its map lies, and how far
the method can be trusted on this model.

Every number a sentence shows is a value of the explanation's JSON
(``seethrough.reporting.serialize.to_jsonable``): ``targets``, ``scores``, ``predicted``,
``image_index``, ``focus`` (:meth:`Explanation.focus`) and, for path methods,
``completeness`` (:meth:`PathExplanation.completeness`).

Hedging follows the sanity check of the method on this model (``sanity``):

* ``"failed"`` — the method is *not reliable for this model*; the description says so and
  says nothing about where the map lies (``claim="unreliable"``);
* ``None`` (not checked) or ``"inconclusive"`` — where the map lies is said as a
  hypothesis, with the reason (``claim="hedged"``);
* ``"passed"`` — it is said as a finding (``claim="finding"``).

How concentrated a map is follows the share ``c`` of its magnitude held by the top
``t`` = 10 % of pixels (an even map gives ``c = t``): *spread over the image* when
``c < 2 t``, *concentrated* when ``c >= 5 t`` (half the magnitude in a tenth of the
pixels), *moderately concentrated* between. Measured on EfficientNet-Lite0 and the photo
``chelsea`` (a cat that fills the frame): Grad-CAM 0.17 (spread), uniform noise 0.19,
gradient 0.30, integrated gradients 0.39, the edge-detector control 0.28 (rocket: 0.66).

The completeness check of path methods (Sundararajan et al., 2017, "Axiomatic
Attribution for Deep Networks", ICML, §3 and §5) is reported against the authors'
advice that the attributions add up to the score change within 5 %
(:data:`COMPLETENESS_TOLERANCE`).
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import torch
from torch import Tensor

from ..core.focus import Focus
from ..errors import InvalidOptionError
from ..words import Claim, Description, Finding, Term, catalogue, method_term

__all__ = [
    "COMPLETENESS_TOLERANCE",
    "CONCENTRATED",
    "SANITY",
    "SPREAD",
    "describe_explanation",
]

SANITY: tuple[str, ...] = ("passed", "failed", "inconclusive")
"""The verdicts of a sanity check that :func:`describe_explanation` takes (or None)."""

SPREAD = 2.0
"""A map is spread over the image when its top pixels hold less than this many times
their share of it (``concentration < SPREAD * top_fraction``)."""

CONCENTRATED = 5.0
"""A map is concentrated when its top pixels hold at least this many times their share."""

COMPLETENESS_TOLERANCE = 0.05
"""Sundararajan et al. (2017): the attributions should add up to the score change within 5 %."""

_HEDGES: dict[str | None, tuple[str, Claim]] = {
    None: ("explanation.hedge.unchecked", "hedged"),
    "inconclusive": ("explanation.hedge.inconclusive", "hedged"),
    "passed": ("explanation.hedge.passed", "finding"),
}


class _Explained(Protocol):
    """What this module reads of an :class:`~seethrough.attribution.Explanation` (typed
    structurally: ``explanation.py`` imports this module, not the other way round)."""

    @property
    def method(self) -> str: ...
    @property
    def attributions(self) -> Tensor: ...
    @property
    def targets(self) -> Tensor: ...
    @property
    def scores(self) -> Tensor: ...
    @property
    def image_index(self) -> Tensor: ...
    @property
    def predicted(self) -> Tensor | None: ...
    @property
    def class_names(self) -> tuple[str, ...] | None: ...

    def __len__(self) -> int: ...

    def focus(self) -> tuple[Focus, ...]: ...


def describe_explanation(
    explanation: _Explained, lang: str = "en", sanity: str | None = None
) -> Description:
    """What ``explanation`` says in words, row by row (module docstring for the rules).

    Parameters
    ----------
    explanation : Explanation
        Any method's result (a path method's adds its completeness check).
    lang : str
        Checked to be a catalogue language; the text is made in any language by
        :meth:`~seethrough.words.Description.text`.
    sanity : {"passed", "failed", "inconclusive"} or None
        The verdict of this method's sanity check on this model (e.g. the model
        randomization test of :mod:`seethrough.trust`); None when it was not checked.

    Returns
    -------
    Description
        Subject ``"explanation"``; each finding's ``evidence`` is a path into the
        explanation's JSON (``"focus.0"``, ``"completeness.0"``).

    Raises
    ------
    InvalidOptionError
        For an unknown language or sanity verdict.
    """
    catalogue(lang)
    if sanity is not None and sanity not in SANITY:
        raise InvalidOptionError(
            f"unknown sanity verdict {sanity!r} (valid: {', '.join(SANITY)}, or None when "
            "the method was not checked)"
        )
    method = method_term(explanation.method)
    foci = explanation.focus() if sanity != "failed" else ()
    completeness = getattr(explanation, "completeness", None)  # path methods
    checks = completeness() if completeness is not None else ()
    findings: list[Finding] = []
    for row in range(len(explanation)):
        findings += _target(explanation, row, method)
        if sanity == "failed":
            findings.append(
                Finding("explanation.unreliable", {"method": method}, "sanity", "unreliable")
            )
        else:
            findings.append(_focus(explanation, row, method, foci[row], sanity))
        if checks:
            findings.append(_completeness(checks[row], row))
    return Description("explanation", tuple(findings))


def _target(explanation: _Explained, row: int, method: Any) -> list[Finding]:
    index = int(explanation.targets[row])
    values: dict[str, Any] = {"method": method, "score": float(explanation.scores[row])}
    names = explanation.class_names
    if index < 0:
        key = "explanation.target.custom"
    elif names is not None and index < len(names):
        key, values["label"], values["index"] = "explanation.target", names[index], index
    else:
        key, values["index"] = "explanation.target.unnamed", index
    if len(explanation) > 1:
        key, values["image"] = key + ".image", int(explanation.image_index[row])
    findings = [Finding(key, values, f"targets.{row}", "note")]
    if explanation.predicted is not None and index >= 0:
        top = int(explanation.predicted[row])
        if top != index:
            if names is not None and top < len(names):
                values = {"label": names[top], "index": top}
                findings.append(
                    Finding("explanation.predicted", values, f"predicted.{row}", "note")
                )
            else:
                values = {"index": top}
                key = "explanation.predicted.unnamed"
                findings.append(Finding(key, values, f"predicted.{row}", "note"))
    return findings


def _focus(
    explanation: _Explained, row: int, method: Any, spot: Any, sanity: str | None
) -> Finding:
    evidence = f"focus.{row}"
    if spot.region is None:
        finite = bool(torch.isfinite(explanation.attributions[row]).all())
        key = "explanation.focus.zero" if finite else "explanation.focus.nonfinite"
        return Finding(key, {"method": method}, evidence, "note")
    hedge, claim = _HEDGES[sanity]
    lift = spot.concentration / spot.top_fraction
    degree = "concentrated" if lift >= CONCENTRATED else "moderate"
    if lift < SPREAD:
        degree = "spread"
    values: dict[str, Any] = {
        "hedge": Term(hedge),
        "degree": Term(f"explanation.degree.{degree}"),
        "region": Term(f"region.{spot.region}"),
        "region_share": spot.region_share,
        "region_area": spot.region_area,
        "concentration": spot.concentration,
        "top_fraction": spot.top_fraction,
    }
    return Finding("explanation.focus", values, evidence, claim)


def _completeness(check: dict[str, float], row: int) -> Finding:
    values = {k: check[k] for k in ("sum", "difference", "relative_error")}
    ok = (
        math.isfinite(check["relative_error"]) and check["relative_error"] <= COMPLETENESS_TOLERANCE
    )
    key = "explanation.completeness.ok" if ok else "explanation.completeness.off"
    return Finding(key, values, f"completeness.{row}", "note" if ok else "hedged")
