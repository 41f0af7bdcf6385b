"""Trust results in words: sanity verdicts, faithfulness against a random ranking, sMPRT,
eMPRT and ROAR.

Every number a sentence shows is a value of the result's JSON
(:func:`seethrough.reporting.serialize.to_jsonable`), and how strongly it is said follows
the evidence (:mod:`seethrough.words.findings`):

* a method that **failed** a randomization check (:mod:`.verdict`) gets one sentence,
  ``claim="unreliable"``, saying it is not reliable for this model — no statement about
  what its maps show;
* an **inconclusive** check (the interval contains the threshold, the method's maps are
  not reproducible, too few images) is ``"hedged"`` and says why;
* only a **passed** check is a ``"finding"``.

A cascading model randomization is judged over the whole cascade (each image's mean
similarity over the steps, :func:`~.verdict.cascade_verdict`); its sentences say so
(``sanity.cascade.*``) and name how many steps were averaged.

Faithfulness: a metric alone is ``"hedged"`` (a score means little without a random
ranking to compare with); against the control (:class:`~.verdict.ControlComparison`),
``"better"`` is a finding, ``"worse"`` unreliable, ``"indistinguishable"`` hedged — each
decided on the paired t-test's p-value Holm-corrected over the comparisons made together
(:func:`~.verdict.holm_family`), which the sentence states with the family's size.
ROAR follows its own verdicts the same way. sMPRT and eMPRT have no threshold (their
papers give none): their sentences are ``"note"``.

The functions take the results structurally (``Any``): the result modules import this
module for their ``describe()`` methods, not the other way round (no import cycle).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..words import Claim, Description, Finding, Term, catalogue, method_term

__all__ = [
    "describe_comparison",
    "describe_comparison_result",
    "describe_efficient_mprt",
    "describe_metric",
    "describe_randomization",
    "describe_roar",
    "describe_smooth_mprt",
    "verdict_finding",
]

_TESTS = {
    "model_randomization": "sanity.model",
    "data_randomization": "sanity.data",
    "edge_similarity": "sanity.edge",
}
# (test, verdict) -> claim; the edge map is a warning sign, never proof of unreliability
_CLAIMS: dict[tuple[str, str], Claim] = {
    ("model_randomization", "passed"): "finding",
    ("model_randomization", "failed"): "unreliable",
    ("data_randomization", "passed"): "finding",
    ("data_randomization", "failed"): "unreliable",
    ("edge_similarity", "passed"): "note",
    ("edge_similarity", "failed"): "hedged",
}
_EDGE_KEYS = {"below": "below", "above": "above"}


def _check_lang(lang: str) -> None:
    catalogue(lang)  # refuses an unknown language, naming the valid ones


def _metric_term(metric: str) -> Term | str:
    key = f"sanity.metric.{metric}"
    return Term(key) if key in catalogue("en") else metric


def verdict_finding(verdict: Any, evidence: str = "", mode: str = "cascading") -> Finding:
    """One :class:`~.verdict.SanityVerdict` as a sentence: failed → ``"unreliable"``
    ("not reliable for this model"), inconclusive → ``"hedged"`` with the reason,
    passed → ``"finding"`` (edge-map comparisons: ``"hedged"`` / ``"note"``).

    Parameters
    ----------
    verdict : SanityVerdict
    evidence : str
        Where the verdict is (default ``"verdicts.<method>"``, its place in the result's
        JSON).
    mode : {"cascading", "independent"}
        How a model randomization randomized (the sentence names what was randomized).
    """
    prefix = _TESTS[verdict.test]
    cascade = getattr(verdict, "statistic", "step") == "cascade_mean"
    values: dict[str, str | int | float | Term] = {
        "method": method_term(verdict.method),
        "metric": _metric_term(verdict.metric),
        "threshold": verdict.threshold,
        "n": verdict.n,
    }
    claim: Claim = _CLAIMS.get((verdict.test, verdict.verdict), "hedged")
    if verdict.reason == "too_few":
        key = f"{prefix}.too_few"
    elif verdict.reason == "noise_floor":
        key = f"{prefix}.noise_floor"
        values = {**values, "self_check": float(verdict.self_check or 0.0)}
    else:
        if verdict.test == "edge_similarity":
            outcome = _EDGE_KEYS.get(verdict.reason, "straddles")
        else:
            outcome = "straddles" if verdict.verdict == "inconclusive" else verdict.verdict
        key = f"sanity.cascade.{outcome}" if cascade else f"{prefix}.{outcome}"
        low, high = verdict.ci  # an interval: the reason is not "too_few"
        if cascade:
            values = {**values, "steps": verdict.steps}
        values = {
            **values,
            "step": verdict.step,
            "scope": Term(f"sanity.scope.{mode}"),
            "mean": verdict.mean,
            "low": low,
            "high": high,
            "level": verdict.level,
        }
    return Finding(key, values, evidence or f"verdicts.{verdict.method}", claim)


def _verdicts(verdicts: Iterable[Any], mode: str = "cascading") -> tuple[Finding, ...]:
    return tuple(verdict_finding(v, mode=mode) for v in verdicts)


def describe_randomization(result: Any, lang: str = "en") -> Description:
    """:meth:`RandomizationResult.describe`: one finding per method, from
    :meth:`RandomizationResult.verdicts` with its defaults (the JSON's ``"verdicts"``)."""
    _check_lang(lang)
    return Description("model_randomization", _verdicts(result.verdicts(), result.mode))


def describe_comparison_result(result: Any, lang: str = "en") -> Description:
    """:meth:`ComparisonResult.describe`: one finding per method (data randomization, or
    similarity to the input's edges), from its verdicts (the JSON's ``"verdicts"``)."""
    _check_lang(lang)
    return Description(result.test, _verdicts(result.verdicts()))


# ------------------------------------------------------------------------ faithfulness


def _faithfulness_term(metric: str) -> Term | str:
    key = f"faithfulness.metric.{metric}"
    return Term(key) if key in catalogue("en") else metric


def _direction(higher_is_better: bool) -> Term:
    return Term(f"faithfulness.direction.{'higher' if higher_is_better else 'lower'}")


def describe_metric(result: Any, lang: str = "en") -> Description:
    """:meth:`MetricResult.describe`: the mean score, hedged — a faithfulness score says
    little without a random ranking to compare with (use
    :meth:`MetricResult.compare_with` and describe the comparison)."""
    _check_lang(lang)
    finding = Finding(
        "faithfulness.score",
        {
            "method": method_term(result.method),
            "metric": _faithfulness_term(result.metric),
            "mean": result.mean(),
            "direction": _direction(result.higher_is_better),
        },
        "mean",
        "hedged",
    )
    return Description(result.metric, (finding,))


_COMPARISON_CLAIMS: dict[str, Claim] = {
    "better": "finding",
    "worse": "unreliable",
    "indistinguishable": "hedged",
}


def describe_comparison(comparison: Any, lang: str = "en") -> Description:
    """:meth:`ControlComparison.describe`: better than the random ranking → a finding,
    worse → not reliable for this model, indistinguishable → hedged (each decided on the
    Holm-corrected paired t-test); with the means, the mean difference, its interval, n,
    and the corrected p-value with the size of its family."""
    _check_lang(lang)
    if comparison.ci is None:
        values = {
            "method": method_term(comparison.method),
            "control": method_term(comparison.control),
            "metric": _faithfulness_term(comparison.metric),
            "n": comparison.n,
        }
        finding = Finding("faithfulness.too_few", values, "n", "hedged")
        return Description(comparison.metric, (finding,))
    low, high = comparison.ci
    finding = Finding(
        f"faithfulness.{comparison.verdict}",
        {
            "method": method_term(comparison.method),
            "control": method_term(comparison.control),
            "metric": _faithfulness_term(comparison.metric),
            "direction": _direction(comparison.higher_is_better),
            "mean": comparison.mean,
            "control_mean": comparison.control_mean,
            "difference": comparison.difference,
            "low": low,
            "high": high,
            "level": comparison.level,
            "n": comparison.n,
            "p": comparison.p_holm if comparison.p_holm is not None else comparison.p_value,
            "family": comparison.family,
            "alpha": comparison.alpha,
        },
        "verdict",
        _COMPARISON_CLAIMS[comparison.verdict],
    )
    return Description(comparison.metric, (finding,))


# ------------------------------------------------------------------------ sMPRT, eMPRT


def describe_smooth_mprt(result: Any, lang: str = "en") -> Description:
    """:meth:`SmoothMprtResult.describe`: the mean ρ after the last step and the
    self-check ceiling (``"note"``: the paper gives no threshold)."""
    _check_lang(lang)
    finding = Finding(
        "mprt.smooth",
        {
            "method": method_term(result.method),
            "step": result.after[-1],
            "mean": float(result.last.nanmean()),
            "ceiling": float(result.self_check.nanmean()),
        },
        "last_mean",
        "note",
    )
    return Description("smooth_mprt", (finding,))


def describe_efficient_mprt(result: Any, lang: str = "en") -> Description:
    """:meth:`EfficientMprtResult.describe`: the mean relative rise of the maps'
    complexity, next to the model's own (``"note"``: the paper gives no threshold)."""
    _check_lang(lang)
    finding = Finding(
        "mprt.efficient",
        {
            "method": method_term(result.method),
            "mean": float(result.score.nanmean()),
            "model_rise": float(result.model_score.nanmean()),
        },
        "mean_score",
        "note",
    )
    return Description("efficient_mprt", (finding,))


# -------------------------------------------------------------------------------- ROAR

_ROAR_CLAIMS: dict[str, Claim] = {
    "better": "finding",
    "worse": "unreliable",
    "indistinguishable": "hedged",
}


def _roar_finding(k: int, c: Any) -> Finding:
    return Finding(
        f"roar.{c.verdict}",
        {
            "method": method_term(c.method),
            "fraction": c.fraction,
            "difference": c.difference.estimate,
            "low": c.difference.low,
            "high": c.difference.high,
            "level": c.difference.level,
            "p": c.p_holm,
        },
        f"comparisons.{k}",
        _ROAR_CLAIMS[c.verdict],
    )


def describe_roar(result: Any, lang: str = "en", resamples: int = 10_000) -> Description:
    """:meth:`RoarResult.describe`: one finding per method × fraction, from
    :meth:`RoarResult.compare` (the JSON's ``"comparisons"`` with the same
    ``resamples``)."""
    _check_lang(lang)
    comparisons = result.compare(resamples=resamples)
    return Description("roar", tuple(_roar_finding(k, c) for k, c in enumerate(comparisons)))
