"""Anatomy results in words: module cards, the whole run, ablation, probes and TCAV — the
hedging rules, and every number of every sentence (English and Chinese) round-tripping to
the result's JSON."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from helpers import tiny_inputs, tiny_model
from seethrough.anatomy import (
    Ablation,
    Anatomy,
    ModuleCard,
    ablate,
    anatomy,
    paired_p_value,
    probe_layers,
    tcav,
)
from seethrough.anatomy.describe import RELIANCE
from seethrough.core.stats import holm, paired_test
from seethrough.data.fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist
from seethrough.errors import InvalidOptionError
from seethrough.models.fashion_cnn import fashion_cnn
from seethrough.reporting.serialize import dumps, to_jsonable
from words_helpers import assert_round_trip


@pytest.fixture(scope="module")
def run() -> Anatomy:
    test = load_fashion_mnist("test")
    x, y = test.inputs(0, 400), test.labels[:400]
    return anatomy(
        fashion_cnn(),
        x,
        y,
        ["conv2", "fc1", "fc2"],
        class_names=FASHION_MNIST_CLASSES,
        sweep_size=64,
        gradients=False,
    )


# ------------------------------------------------------------------ the Fashion CNN


def test_anatomy_of_the_fashion_cnn_in_words(run: Anatomy) -> None:
    description = run.describe()
    data = to_jsonable(run)
    assert_round_trip(description, data)
    keys = [f.key for f in description.findings]
    assert keys[:3] == ["anatomy.baseline", "anatomy.pixels", "anatomy.most"]
    most = description.findings[2]
    worst = max(range(len(run.cards)), key=lambda k: run.cards[k].accuracy_drop or 0.0)
    assert (
        most.values["name"] == run.cards[worst].name and most.evidence == f"cards.{worst}.ablation"
    )
    # every card's findings point into its card, and each card says something
    for k, card in enumerate(run.cards):
        own = [f for f in description.findings if f.evidence.startswith(f"cards.{k}.")]
        assert own and all(f.values["name"] == card.name for f in own)
    zh = description.text("zh")
    assert "下降最多" in zh and "网络依赖它" in zh
    # the cards' probe claims are one family: Holm-corrected over the cards with a p-value
    corrected = run.probe_p_holm()
    assert data["probe_p_holm"] == list(corrected) and data["probe_family"] == 3
    raw = [c.probe_p_value for c in run.cards]
    assert all(p is not None for p in raw)
    assert list(corrected) == pytest.approx(holm([float(p) for p in raw if p is not None]))
    for k in range(len(run.cards)):
        probe = next(f for f in description.findings if f.evidence == f"cards.{k}.probe_accuracy")
        assert probe.key.endswith("_holm") and probe.values["p"] == corrected[k]
        assert probe.values["family"] == 3 and "Holm-corrected over 3 modules" in probe.text()
    dumps(run)  # strict JSON, with the probe p-values


def test_a_card_says_relies_only_from_the_stated_drop(run: Anatomy) -> None:
    """Mean-ablating any of these modules drops accuracy by ~80 points: a finding, with the
    class it hurts most (by name) and its accuracy after; the numbers are the card's."""
    card = run.card("conv2")
    description = card.describe(class_names=FASHION_MNIST_CLASSES)
    assert_round_trip(description, to_jsonable(card))
    ablation, klass = description.findings[:2]
    assert ablation.key == "anatomy.card.relies" and ablation.claim == "finding"
    assert card.accuracy_drop is not None and card.accuracy_drop >= RELIANCE
    worst = card.worst_class
    assert worst is not None and klass.values["cls"] == FASHION_MNIST_CLASSES[worst]
    # the largest of ten per-class drops, picked after looking: a note, not a finding
    assert klass.key == "anatomy.card.class" and klass.claim == "note"
    assert card.ablation is not None
    assert klass.values["count"] == int(card.ablation.class_counts[worst])
    assert "not a tested difference" in klass.text("en")
    # just under the rule: a note that it barely matters, and no class sentence
    small = dataclasses.replace(card, accuracy_drop=RELIANCE - 0.001)
    found = small.describe().findings
    assert found[0].key == "anatomy.card.barely" and found[0].claim == "note"
    assert all(f.key != "anatomy.card.class" for f in found)
    not_lower = dataclasses.replace(card, accuracy_drop=-0.01).describe().findings[0]
    assert not_lower.key == "anatomy.card.not_lower"
    # without names, the class is its index (a number of the JSON)
    plain = card.describe().findings[1]
    assert plain.values["cls"] == str(worst)
    assert_round_trip(card.describe(), to_jsonable(card))


def test_probes_claim_a_gain_only_with_a_paired_test(run: Anatomy) -> None:
    """fc1 and fc2 beat the random network's probe on the same held-out images (p ≈ 1e-4,
    Holm-corrected over the 3 layers ≈ 3e-4): findings; conv2 does not (measured 77.0 %
    against 75.0 %, p = 0.73): hedged. The sentences state the corrected p."""
    table = run.probes
    assert table is not None
    p = table.p_values()
    for name, trained, random in zip(table.layers, table.trained, table.random or ()):
        right, wrong = trained.test_correct, random.test_correct
        assert right is not None and wrong is not None
        assert p[name] == paired_test(right.double().numpy(), wrong.double().numpy())
    description = table.describe()
    claims = {f.values.get("layer"): f.claim for f in description.findings}
    assert claims == {None: "note", "conv2": "hedged", "fc1": "finding", "fc2": "finding"}
    data = to_jsonable(table)
    assert data["p_values"] == p
    corrected = table.p_values_holm()
    raw = [float(v) for v in p.values() if v is not None]
    assert len(raw) == 3 and list(corrected.values()) == pytest.approx(holm(raw))
    assert data["p_values_holm"] == corrected and data["p_family"] == 3
    for f in description.findings[1:]:
        assert f.values["p"] == corrected[str(f.values["layer"])] and f.values["family"] == 3
    assert_round_trip(description, data)
    card = run.card("conv2")
    probe = next(f for f in card.describe().findings if "probe" in f.key)
    assert probe.key == "anatomy.card.probe_no_gain" and probe.claim == "hedged"
    assert "need not come from training" in probe.text("en")


def test_paired_p_value_needs_the_same_rows() -> None:
    model, x = tiny_model(), tiny_inputs(n=40)
    y = torch.arange(40) % 3
    table = probe_layers(model, x, y, ["conv2"])
    assert table.random is not None and table.pixels is not None
    trained, random = table.trained[0], table.random[0]
    assert paired_p_value(trained, random) is not None
    assert random.test_index is not None
    moved = dataclasses.replace(random, test_index=torch.flip(random.test_index, (0,)))
    assert paired_p_value(trained, moved) is None
    assert paired_p_value(trained, dataclasses.replace(random, test_correct=None)) is None
    no_random = dataclasses.replace(table, random=None)
    found = no_random.describe().findings
    assert [f.key for f in found] == ["probes.pixels", "probes.plain"]
    assert_round_trip(no_random.describe(), to_jsonable(no_random))


def test_ablation_result_in_words() -> None:
    model, x = tiny_model().eval(), tiny_inputs(n=30)
    y = torch.arange(30) % 5
    result = ablate(model, x, y, [Ablation("conv2", (0, 1)), Ablation("bn1", None, "mean")])
    description = result.describe()
    assert description.findings[0].key == "ablation.baseline"
    drops = result.accuracy_drop.tolist()
    for finding, drop in zip(description.findings[1:], drops):
        assert finding.key == ("ablation.drop" if drop > 0 else "ablation.not_lower")
        assert finding.claim == ("finding" if drop >= RELIANCE else "note")
    assert_round_trip(description, to_jsonable(result))


# ------------------------------------------------------------------------------ TCAV


class Planted(nn.Module):
    """Class 1's logit is the total of channel 0 at ``feat``; class 0's that of channel 1
    (as in tests/test_anatomy.py)."""

    def __init__(self) -> None:
        super().__init__()
        self.feat = nn.Conv2d(2, 2, 1, bias=False).double()
        with torch.no_grad():
            self.feat.weight.copy_(torch.eye(2)[:, :, None, None])

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.feat(x)).sum(dim=(2, 3))
        return torch.stack([h[:, 1], h[:, 0]], dim=1)


@pytest.fixture(scope="module")
def planted() -> dict[str, Any]:
    model = Planted().eval()
    g = torch.Generator().manual_seed(0)
    pool = torch.randn(5000, 2, 4, 4, generator=g, dtype=torch.float64)
    concept = torch.randn(30, 2, 4, 4, generator=g, dtype=torch.float64)
    concept[:, 0] += 2.0  # strong channel 0, which drives class 1
    inputs = torch.randn(40, 2, 4, 4, generator=g, dtype=torch.float64)
    return {"model": model, "pool": pool, "concept": concept, "inputs": inputs}


def test_a_significant_concept_is_a_finding(planted: dict[str, Any]) -> None:
    p = planted
    found = tcav(p["model"], "feat", p["concept"], p["pool"], p["inputs"], 1, runs=8,
                 null_sets=149, concept_name="stripes")  # fmt: skip
    assert found.significant
    description = found.describe(class_name="one")
    (finding,) = description.findings
    assert finding.key == "tcav.raises" and finding.claim == "finding"
    assert "raises the score of the class one" in finding.text("en")
    assert finding.values["null_mean"] == pytest.approx(float(found.null_means.mean()))
    assert_round_trip(description, to_jsonable(found))
    assert_round_trip(found.describe(), to_jsonable(found))  # the class as its index


def test_a_concept_that_is_not_significant_is_never_called_used(planted: dict[str, Any]) -> None:
    """Random pool images as the 'concept': not significant → 'no evidence', hedged, and no
    sentence says the concept raises the class's score."""
    p = planted
    random = tcav(p["model"], "feat", p["pool"][:30], p["pool"][30:], p["inputs"], 1, runs=8,
                  concept_name="random")  # fmt: skip
    assert not random.significant
    (finding,) = random.describe().findings
    assert finding.claim == "hedged"
    assert finding.key in ("tcav.not_significant", "tcav.not_learnable")
    en, zh = finding.text("en"), finding.text("zh")
    assert "raises the score" not in en and "提高了" not in zh
    assert_round_trip(random.describe(), to_jsonable(random))
    # each rule on its own: a learnable concept whose score is ordinary; one with no
    # direction (the CAV test fails first, whatever the score's p-value)
    ordinary = dataclasses.replace(random, cav_p_value=0.001, p_value=0.4)
    assert ordinary.describe().findings[0].key == "tcav.not_significant"
    assert "No evidence that the model uses the concept random" in ordinary.describe().text()
    aimless = dataclasses.replace(random, cav_p_value=0.3, p_value=0.001)
    assert aimless.describe().findings[0].key == "tcav.not_learnable"
    lowered = dataclasses.replace(
        random, cav_p_value=0.001, p_value=0.001, scores=torch.zeros_like(random.scores)
    )
    assert lowered.significant
    finding = lowered.describe().findings[0]
    assert finding.key == "tcav.lowers" and finding.claim == "finding"
    assert "for fewer inputs than random directions do" in finding.text()
    assert_round_trip(lowered.describe(), to_jsonable(lowered))


def test_unknown_language_is_refused(run: Anatomy) -> None:
    with pytest.raises(InvalidOptionError, match="unknown language"):
        run.describe("de")
    card: ModuleCard = run.cards[0]
    with pytest.raises(InvalidOptionError, match="unknown language"):
        card.describe("de")
    assert np.isfinite(card.accuracy_drop or 0.0)


def test_several_concepts_in_a_report_are_one_family(planted: dict[str, Any]) -> None:
    """The report tests several TCAV concepts at α divided by their number (Bonferroni):
    a concept with p = 0.03 is significant alone, not as one of three; the sentence shows
    the corrected α (a number of the concept's JSON)."""
    from seethrough.reporting.build import _bonferroni_concepts

    p = planted
    found = tcav(p["model"], "feat", p["concept"], p["pool"], p["inputs"], 1, runs=8,
                 null_sets=149, concept_name="stripes")  # fmt: skip
    assert found.p_value < 0.05 / 3 and found.cav_p_value < 0.05 / 3
    weak = dataclasses.replace(found, concept="dots", p_value=0.03)
    assert weak.significant and weak.describe().findings[0].claim == "finding"
    assert _bonferroni_concepts((weak,)) == (weak,)  # one concept: nothing to correct
    family = _bonferroni_concepts((found, weak, dataclasses.replace(weak, concept="waves")))
    assert [t.alpha for t in family] == pytest.approx([0.05 / 3] * 3)
    assert [t.significant for t in family] == [True, False, False]
    said = family[1].describe().findings[0]
    assert said.key == "tcav.not_significant" and said.claim == "hedged"
    assert "α = 0.017" in said.text("en")
    assert_round_trip(family[1].describe(), to_jsonable(family[1]))
