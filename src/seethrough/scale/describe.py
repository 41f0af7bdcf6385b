"""Dataset-level results in words: SpRAy strategies and per-class maps.

Every number a sentence shows is a value of the result's ``to_dict()``; how strongly it
is said follows the evidence (:mod:`seethrough.words.findings`):

* **A candidate "Clever Hans" strategy** (``"finding"``) is a SpRAy cluster whose
  accuracy or mean confidence differs from the rest of its class with a Holm-corrected
  p below the result's ``settings["alpha"]`` (:data:`~seethrough.scale.spray.ALPHA`,
  0.05; Fisher's exact test, a permutation test).
  It is a *candidate*: the test says the cluster's outcome differs, the mean map and the
  representative images say why — the sentence asks the reader to look.
* **The number of clusters** comes from the eigengap heuristic, a rule of thumb, not a
  test: a ``"note"``. So are the other clusters' sizes.
* **No cluster differs** is ``"hedged"``: clusters with the same outcome can still be
  different strategies.
* **The most and least concentrated classes** are the extremes of K classes, picked
  after looking: a ``"note"`` with their bootstrap intervals.

The functions take the results structurally (``Any``): the result modules import this
module for their ``describe()`` methods.
"""

from __future__ import annotations

from typing import Any

from ..words import Description, Finding, Term, Value, method_term

__all__ = ["describe_class_maps", "describe_spray"]


def _method(method: str | None) -> Value:
    return method_term(method) if method else Term("scale.maps.unnamed")


def _spray_class(result: Any) -> Value:
    if result.class_name:
        return str(result.class_name)
    return str(result.cls) if result.cls is not None else Term("scale.class.unnamed")


def _summary(result: Any) -> Finding:
    k = len(result.clusters)
    values: dict[str, Value] = {
        "n": int(result.settings.get("n", len(result.assignment))),
        "method": _method(result.method),
        "cls": _spray_class(result),
        "k": k,
        "gap": result.gap,
        "eigengap": result.eigengap,
    }
    if result.settings.get("clusters") is not None:
        key = "scale.spray.summary_fixed"
    else:
        key = "scale.spray.one" if k == 1 else "scale.spray.summary"
    return Finding(key, values, "eigenvalues", "note")


def _cluster(cluster: Any, alpha: float, said: bool = True) -> Finding:
    values: dict[str, Value] = {"id": cluster.id, "size": cluster.size, "share": cluster.share}
    evidence = f"clusters.{cluster.id}"
    if cluster.differs and said:
        if cluster.accuracy_p is not None and cluster.accuracy_p < alpha:
            values.update(
                accuracy=cluster.accuracy.estimate, rest=cluster.rest_accuracy, p=cluster.accuracy_p
            )
            return Finding("scale.spray.differs.accuracy", values, evidence, "finding")
        values.update(
            confidence=cluster.confidence.estimate,
            rest=cluster.rest_confidence,
            p=cluster.confidence_p,
        )
        return Finding("scale.spray.differs.confidence", values, evidence, "finding")
    if cluster.accuracy is not None and cluster.rest_accuracy is not None:
        values.update(accuracy=cluster.accuracy.estimate, rest=cluster.rest_accuracy)
        return Finding("scale.spray.cluster.accuracy", values, evidence, "note")
    return Finding("scale.spray.cluster", values, evidence, "note")


def describe_spray(result: Any) -> Description:
    """What a :class:`~seethrough.scale.SprayResult` says (module docstring)."""
    findings = [_summary(result)]
    alpha = float(result.settings["alpha"])
    differing = [c for c in result.clusters if c.differs]
    if len(result.clusters) == 2 and len(differing) == 2:
        # with two clusters, "the rest" of one is the other: one sentence says it (about
        # the smaller, the likelier odd one out); the larger gets its plain note
        differing = differing[1:]
    others = [c for c in result.clusters if c not in differing]
    findings += [_cluster(c, alpha) for c in differing]
    findings += [_cluster(c, alpha, said=False) for c in others]
    tests = _tests(result)
    if len(result.clusters) > 1 and tests and not differing:
        values: dict[str, Value] = {"tests": tests, "alpha": alpha}
        findings.append(Finding("scale.spray.none_differs", values, "clusters", "hedged"))
    if not tests and len(result.clusters) > 1:
        findings.append(Finding("scale.spray.no_outcomes", {}, "clusters", "note"))
    return Description("spray", tuple(findings))


def _tests(result: Any) -> int:
    return sum((c.accuracy_p is not None) + (c.confidence_p is not None) for c in result.clusters)


def _class_name(result: Any, i: int) -> str:
    return result.names[i] if result.names is not None else str(result.classes[i])


def describe_class_maps(result: Any) -> Description:
    """What a :class:`~seethrough.scale.ClassMaps` says (module docstring)."""
    values: dict[str, Value] = {
        "method": _method(result.method),
        "classes": len(result.classes),
        "n": int(sum(result.counts)),
        "by": Term(f"scale.by.{result.by}"),
    }
    findings = [Finding("scale.classes.summary", values, "classes", "note")]
    measured = [i for i, c in enumerate(result.concentration) if c is not None]
    if measured:
        most = max(measured, key=lambda i: result.concentration[i].estimate)
        least = min(measured, key=lambda i: result.concentration[i].estimate)
        top = result.settings.get("top", 0.1)
        shown: dict[str, Value] = {"top": top, "classes": len(result.classes)}
        for name, i in (("most", most), ("least", least)):
            interval = result.concentration[i]
            shown.update(
                {
                    name: _class_name(result, i),
                    f"{name}_share": interval.estimate,
                    f"{name}_low": interval.low,
                    f"{name}_high": interval.high,
                    f"{name}_n": interval.n,
                }
            )
        key = (
            "scale.classes.concentration"
            if len(measured) > 1
            else "scale.classes.concentration.one"
        )
        findings.append(Finding(key, shown, "classes.concentration", "note"))
    return Description("class_maps", tuple(findings))
