"""Anatomy results in words: module cards, the whole run, ablation, probes and TCAV.

Every number a sentence shows is a value of the result's JSON
(:func:`seethrough.reporting.serialize.to_jsonable`); how strongly it is said follows the
evidence (:mod:`seethrough.words.findings`):

* **Ablation.** "The network relies on it" (``"finding"``) needs a drop in accuracy of at
  least :data:`RELIANCE` (5 percentage points) when the module's output is mean-ablated;
  smaller drops are a ``"note"`` ("barely changes accuracy"). This is a size rule on
  the images measured, not a significance test: a card keeps accuracies, not per-image
  outcomes.
* **Probes.** "Training made the classes more linearly readable here" (``"finding"``)
  needs the trained network's probe to beat the same probe on a randomly initialised
  copy (Alain & Bengio, 2016) on the same held-out images, with a paired sign-flip test
  p < :data:`ALPHA` (:func:`~seethrough.anatomy.probes.paired_p_value`) — Holm-corrected
  over the layers of a probe table or the cards of an anatomy run, which test one such
  claim each (:meth:`ProbeTable.p_values_holm`, :meth:`Anatomy.probe_p_holm`); a single
  card alone is a family of one. Otherwise the sentence is ``"hedged"``: a probe can
  read classes off random features too.
* **The class an ablation hurts most** is the largest of the per-class drops, picked
  after looking (and on a tenth of the images each): a ``"note"``, never a finding.
* **TCAV** (Kim et al., 2018). "The concept raises / lowers the class's score"
  (``"finding"``) only when the test is significant — both the score's and the CAV's
  rank tests below the result's ``alpha`` (:class:`~seethrough.anatomy.TcavResult`).
  A concept that is not significant is never called one the model uses: the sentence
  says there is no evidence (``"hedged"``), with the numbers; a concept that is not
  learnable at the layer says the test cannot tell (``"hedged"``).

The functions take the results structurally (``Any``): the result modules import this
module for their ``describe()`` methods, not the other way round (no import cycle).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..words import Claim, Description, Finding, Value, catalogue

__all__ = [
    "ALPHA",
    "RELIANCE",
    "describe_ablation",
    "describe_anatomy",
    "describe_card",
    "describe_probes",
    "describe_tcav",
]

RELIANCE = 0.05
"""Accuracy drop (a fraction of the images) from which "the network relies on it" is said."""

ALPHA = 0.05
"""Level of the paired test of a trained probe against the random network's."""


def _check_lang(lang: str) -> None:
    catalogue(lang)  # refuses an unknown language, naming the valid ones


def _class(index: int, names: Sequence[str] | None) -> str:
    """A class as shown: its name when known, else its index."""
    return names[index] if names is not None and 0 <= index < len(names) else str(index)


# ----------------------------------------------------------------------------- cards


def _ablation_finding(card: Any, prefix: str) -> Finding | None:
    if card.ablation is None or card.accuracy_drop is None:
        return None
    drop = card.accuracy_drop
    values: dict[str, Value] = {
        "name": card.name,
        "accuracy": card.ablation.accuracy,
        "drop": drop,
    }
    if drop >= RELIANCE:
        return Finding("anatomy.card.relies", values, f"{prefix}ablation", "finding")
    key = "anatomy.card.barely" if drop > 0 else "anatomy.card.not_lower"
    return Finding(key, values, f"{prefix}ablation", "note")


def _class_finding(card: Any, names: Sequence[str] | None, prefix: str) -> Finding | None:
    """The class whose accuracy drops most: a ``"note"`` (the largest of several per-class
    drops, each on a fraction of the images, untested)."""
    worst = card.worst_class
    if worst is None or card.class_accuracy_drop is None or card.ablation is None:
        return None
    drop = float(card.class_accuracy_drop[worst])
    if not drop > 0:
        return None
    values: dict[str, Value] = {
        "name": card.name,
        "cls": _class(worst, names),
        "drop": drop,
        "accuracy": float(card.ablation.class_accuracy[worst]),
        "count": int(card.ablation.class_counts[worst]),
    }
    return Finding("anatomy.card.class", values, f"{prefix}class_accuracy_drop", "note")


def _channel_finding(card: Any, prefix: str) -> Finding | None:
    if card.channel_drop is None or not card.channel_order:
        return None
    channel = card.channel_order[0]
    drop = float(card.channel_drop[channel])
    if not drop > 0:
        return None
    values: dict[str, Value] = {"name": card.name, "channel": channel, "drop": drop}
    return Finding("anatomy.card.channel", values, f"{prefix}channel_drop", "note")


def _probe_finding(
    card: Any, prefix: str, holm: tuple[float | None, int] | None = None
) -> Finding | None:
    """The card's probe against the random network's; ``holm``: the card's p-value
    Holm-corrected over an anatomy run's cards, and their number (None: the card alone)."""
    if card.probe is None:
        return None
    values: dict[str, Value] = {
        "name": card.name,
        "accuracy": card.probe.test_accuracy,
    }
    p = card.probe_p_value if holm is None else holm[0]
    if card.random_probe is None or p is None:
        return Finding("anatomy.card.probe", values, f"{prefix}probe_accuracy", "note")
    random = card.random_probe.test_accuracy
    values = {**values, "random": random, "p": p}
    gain = p < ALPHA and card.probe.test_accuracy > random
    key = "anatomy.card.probe_gain" if gain else "anatomy.card.probe_no_gain"
    if holm is not None:
        values = {**values, "family": holm[1]}
        key += "_holm"
    claim: Claim = "finding" if gain else "hedged"
    return Finding(key, values, f"{prefix}probe_accuracy", claim)


def _card_findings(
    card: Any,
    names: Sequence[str] | None,
    prefix: str = "",
    holm: tuple[float | None, int] | None = None,
) -> tuple[Finding, ...]:
    ablation = _ablation_finding(card, prefix)
    found = [
        ablation,
        _class_finding(card, names, prefix) if ablation and ablation.claim == "finding" else None,
        _channel_finding(card, prefix),
        _probe_finding(card, prefix, holm),
    ]
    return tuple(f for f in found if f is not None)


def describe_card(
    card: Any, lang: str = "en", class_names: Sequence[str] | None = None
) -> Description:
    """:meth:`ModuleCard.describe`: ablation (and, when the network relies on the
    module, the class it matters most for), its most important channel, and its probe
    against the random network's (module docstring for the rules)."""
    _check_lang(lang)
    return Description(f"module {card.name}", _card_findings(card, class_names))


def describe_anatomy(result: Any, lang: str = "en") -> Description:
    """:meth:`Anatomy.describe`: the baseline accuracy, the raw-pixel probe, the module
    the network relies on most, then every card's findings (evidence ``cards.<k>.…``)."""
    _check_lang(lang)
    found = [
        Finding(
            "anatomy.baseline",
            {"accuracy": result.baseline.accuracy, "n": int(result.settings["inputs"])},
            "baseline",
            "note",
        )
    ]
    if result.pixel_probe is not None:
        values: dict[str, Value] = {
            "accuracy": result.pixel_probe.test_accuracy,
            "chance": result.pixel_probe.chance,
        }
        found.append(Finding("anatomy.pixels", values, "pixel_probe_accuracy", "note"))
    measured = [(k, c) for k, c in enumerate(result.cards) if c.ablation is not None]
    if measured:
        k, card = max(measured, key=lambda kc: kc[1].accuracy_drop or 0.0)
        relies = (card.accuracy_drop or 0.0) >= RELIANCE
        assert card.ablation is not None
        values = {"name": card.name, "accuracy": card.ablation.accuracy}
        claim: Claim = "finding" if relies else "note"
        key = "anatomy.most" if relies else "anatomy.none"
        found.append(Finding(key, values, f"cards.{k}.ablation", claim))
    names = result.class_names
    corrected = result.probe_p_holm()
    family = sum(c.probe_p_value is not None for c in result.cards)
    for k, card in enumerate(result.cards):
        found.extend(_card_findings(card, names, f"cards.{k}.", (corrected[k], family)))
    return Description("anatomy", tuple(found))


# --------------------------------------------------------------------------- ablation


def describe_ablation(result: Any, lang: str = "en") -> Description:
    """:meth:`AblationResult.describe`: the baseline accuracy, then each ablation's
    accuracy and drop (a ``"finding"`` from :data:`RELIANCE` on, else a ``"note"``)."""
    _check_lang(lang)
    found = [
        Finding("ablation.baseline", {"accuracy": result.baseline.accuracy}, "baseline", "note")
    ]
    drops = result.accuracy_drop.tolist()
    for k, (ablation, evaluation, drop) in enumerate(
        zip(result.ablations, result.evaluations, drops, strict=True)
    ):
        values: dict[str, Value] = {
            "name": ablation.name,
            "accuracy": evaluation.accuracy,
            "drop": drop,
        }
        key = "ablation.drop" if drop > 0 else "ablation.not_lower"
        claim: Claim = "finding" if drop >= RELIANCE else "note"
        found.append(Finding(key, values, f"ablations.{k}", claim))
    return Description("ablation", tuple(found))


# ----------------------------------------------------------------------------- probes


def describe_probes(table: Any, lang: str = "en") -> Description:
    """:meth:`ProbeTable.describe`: the raw-pixel probe, then each layer's probe against
    the random network's (``"finding"`` only with a paired p, Holm-corrected over the
    table's layers, below :data:`ALPHA`)."""
    _check_lang(lang)
    found = []
    if table.pixels is not None:
        pixels: dict[str, Value] = {
            "accuracy": table.pixels.test_accuracy,
            "chance": table.pixels.chance,
        }
        found.append(Finding("probes.pixels", pixels, "pixels", "note"))
    p_values = table.p_values_holm()
    family = sum(p is not None for p in p_values.values())
    random = table.random or (None,) * len(table.layers)
    for name, trained, untrained in zip(table.layers, table.trained, random, strict=True):
        p = p_values[name]
        values: dict[str, Value] = {
            "layer": name,
            "accuracy": trained.test_accuracy,
        }
        if untrained is None or p is None:
            found.append(Finding("probes.plain", values, f"layers.{name}", "note"))
            continue
        values = {**values, "random": untrained.test_accuracy, "p": p, "family": family}
        gain = p < ALPHA and trained.test_accuracy > untrained.test_accuracy
        claim: Claim = "finding" if gain else "hedged"
        key = "probes.gain" if gain else "probes.no_gain"
        found.append(Finding(key, values, f"layers.{name}", claim))
    return Description("probes", tuple(found))


# ------------------------------------------------------------------------------- TCAV


def describe_tcav(result: Any, lang: str = "en", class_name: str | None = None) -> Description:
    """:meth:`TcavResult.describe` (module docstring for the rules): a concept that is
    not learnable or not significant is never said to be used by the model."""
    _check_lang(lang)
    null_mean = float(result.null_means.mean())
    values: dict[str, Value] = {
        "concept": result.concept,
        "layer": result.layer,
        "cls": class_name if class_name is not None else str(result.target),
        "mean": result.mean,
        "null_mean": null_mean,
        "null_std": float(result.null_means.std()),
        "examples": result.examples,
        "p": result.p_value,
        "cav_p": result.cav_p_value,
        "alpha": result.alpha,
    }
    if not result.cav_p_value < result.alpha:
        finding = Finding("tcav.not_learnable", values, "cav_p_value", "hedged")
    elif not result.p_value < result.alpha:
        finding = Finding("tcav.not_significant", values, "p_value", "hedged")
    else:
        key = "tcav.raises" if result.mean > null_mean else "tcav.lowers"
        finding = Finding(key, values, "p_value", "finding")
    return Description("tcav", (finding,))
