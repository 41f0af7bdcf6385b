"""Trust results in words: sanity verdicts (the rule, its calibration on our real models),
the hedging rules, and every number of every sentence (English and Chinese) round-tripping
to the result's JSON."""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from scipy import stats

import seethrough as st
from helpers import tiny_inputs, tiny_model
from seethrough.core.stats import holm, mean_ci
from seethrough.data.fashion_mnist import load_fashion_mnist
from seethrough.errors import InvalidInputError, InvalidOptionError
from seethrough.models.fashion_cnn import fashion_cnn
from seethrough.reporting.serialize import dumps, to_jsonable
from seethrough.trust import (
    CASCADE_THRESHOLD,
    THRESHOLD,
    ComparisonResult,
    RandomizationResult,
    RoarResult,
    SanityVerdict,
    cascade_verdict,
    compare_with_control,
    data_randomization,
    edge_similarity,
    efficient_mprt,
    holm_family,
    model_randomization,
    sanity_verdict,
    smooth_mprt,
)
from seethrough.trust.describe import verdict_finding
from seethrough.trust.faithfulness import MetricResult, deletion
from seethrough.words import Finding, Term
from words_helpers import assert_round_trip

LITE0_SAMPLES = ("chelsea", "coffee", "rocket", "astronaut", "motorcycle_left", "horse")


@pytest.fixture(scope="module")
def fashion() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    test = load_fashion_mnist("test")
    return fashion_cnn(), test.inputs(0, 24), test.labels[:24]


@pytest.fixture(scope="module")
def randomized(fashion: Any) -> RandomizationResult:
    model, x, y = fashion
    methods = ["gradient", "guided_backprop", "edge_detector", "random_noise"]
    return model_randomization(model, x, methods, target=y, metrics=("spearman_abs",))


def _method(finding: Finding) -> str:
    """The method a verdict's finding is about (its evidence: ``verdicts.<method>``)."""
    return finding.evidence.removeprefix("verdicts.")


def _verdicts(result: Any) -> dict[str, SanityVerdict]:
    return {v.method: v for v in result.verdicts()}


# ------------------------------------------------------------------------------ the rule


def _hand_t(values: list[float]) -> tuple[float, float]:
    """The Student-t 95 % interval of the mean, by hand: mean ± t(0.975, n−1)·s/√n."""
    a = np.array(values)
    half = stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / math.sqrt(len(a))
    return a.mean() - half, a.mean() + half


def test_verdict_rule_on_hand_values() -> None:
    """Passed / failed / inconclusive by where the Student-t interval of the mean lies
    against the threshold; the mean and interval are computed by hand."""
    low = [0.05, 0.1, 0.0, 0.12, 0.08, 0.02]
    v = sanity_verdict(low, method="m", test="model_randomization", step="s")
    assert (v.verdict, v.reason, v.n, v.statistic, v.steps) == ("passed", "below", 6, "step", 1)
    assert v.mean == pytest.approx(np.mean(low), abs=1e-15)
    assert v.ci is not None and v.ci == pytest.approx(_hand_t(low), abs=1e-12)
    assert v.ci[1] < THRESHOLD == v.threshold == 0.3
    same = [1.0] * 5
    v = sanity_verdict(same, method="m", test="model_randomization", step="s")
    assert (v.verdict, v.reason, v.mean, v.ci) == ("failed", "above", 1.0, (1.0, 1.0))
    wide = [0.0, 0.6, 0.1, 0.5, 0.3]  # mean 0.3: the interval contains the threshold
    v = sanity_verdict(wide, method="m", test="model_randomization", step="s")
    assert (v.verdict, v.reason) == ("inconclusive", "straddles")
    assert v.ci is not None and v.ci[0] < 0.3 < v.ci[1]
    # NaN (constant maps) are left out; fewer than two values: no interval
    v = sanity_verdict([float("nan"), 0.1], method="m", test="model_randomization", step="s")
    assert (v.verdict, v.reason, v.n, v.mean, v.ci) == ("inconclusive", "too_few", 1, 0.1, None)
    # no interval is None, not NaN: a one-image check writes JSON without a non-finite flag
    assert "nonfinite" not in to_jsonable(v)
    # a method whose own maps do not reproduce (self-check ≤ threshold) cannot pass
    v = sanity_verdict(low, method="m", test="model_randomization", step="s", self_check=0.25)
    assert (v.verdict, v.reason, v.self_check) == ("inconclusive", "noise_floor", 0.25)
    v = sanity_verdict(
        low, method="m", test="model_randomization", step="s", self_check=float("nan")
    )
    assert v.verdict == "passed" and v.self_check is None  # skipped self-check: not used
    # same seed, same verdict; the threshold is the caller's to move
    again = sanity_verdict(low, method="m", test="model_randomization", step="s")
    assert again == sanity_verdict(low, method="m", test="model_randomization", step="s")
    v = sanity_verdict(low, method="m", test="model_randomization", step="s", threshold=0.05)
    assert v.verdict == "inconclusive"
    with pytest.raises(InvalidOptionError, match="threshold"):
        sanity_verdict(low, method="m", test="model_randomization", step="s", threshold=math.nan)


def test_the_interval_covers_the_true_mean_at_small_n() -> None:
    """The report's quick check judges 3–4 images: its 95 % interval must cover the true
    mean in about 95 % of samples. 2,000 seeded draws of n = 4 (and n = 3) normal values
    with a known mean: the Student-t interval covers it in ≥ 93 % (measured 94.8 %,
    95.0 %); the percentile bootstrap used before covered it in ~80 % and ~75 %
    (anti-conservative: too narrow)."""
    rng = np.random.default_rng(2026)
    truth, draws = 0.25, 2000
    for n in (3, 4):
        covered = booted = 0
        for k in range(draws):
            values = rng.normal(truth, 0.15, n)
            v = sanity_verdict(values.tolist(), method="m", test="model_randomization", step="s")
            assert v.ci is not None
            covered += v.ci[0] <= truth <= v.ci[1]
            if k < 500:  # the old interval, for the record (bootstrap is slower)
                (b,) = mean_ci(values, resamples=2000, seed=k)
                booted += b.low <= truth <= b.high
        assert covered / draws >= 0.93, (n, covered / draws)
        assert covered / draws <= 0.97, (n, covered / draws)  # not trivially wide
        assert booted / 500 < 0.88, (n, booted / 500)


def test_cascade_verdict_by_hand() -> None:
    """Over the cascade: each image's mean over the steps, then the t interval over images
    against CASCADE_THRESHOLD (0.4). A method that keeps its maps while the top steps are
    randomized fails even if the last step is low (guided backprop's pattern)."""
    # steps × images: 0.95 → 0.1, like guided backprop on Lite0
    keeps = torch.tensor(
        [[0.95, 0.97, 0.96], [0.8, 0.75, 0.78], [0.5, 0.55, 0.45], [0.1, 0.0, 0.05]]
    )
    v = cascade_verdict(keeps, method="gbp", steps=["fc", "b2", "b1", "stem"])
    per_image = keeps.double().mean(dim=0).numpy()
    assert (v.verdict, v.reason, v.statistic, v.steps, v.step) == (
        "failed",
        "above",
        "cascade_mean",
        4,
        "stem",
    )
    assert v.mean == pytest.approx(per_image.mean(), abs=1e-12)
    assert v.ci == pytest.approx(_hand_t(per_image.tolist()), abs=1e-12)
    assert v.threshold == CASCADE_THRESHOLD == 0.4
    # the same last step judged alone passes: the rule that missed the paper's example
    last = sanity_verdict(keeps[-1], method="gbp", test="model_randomization", step="stem")
    assert last.verdict == "passed"
    drops = torch.tensor([[0.4, 0.5, 0.45], [0.1, 0.2, 0.15], [0.05, 0.0, 0.1], [0.0, 0.02, -0.02]])
    assert cascade_verdict(drops, method="g", steps=["a", "b", "c", "d"]).verdict == "passed"
    # a step with no value (constant maps) is left out of that image's mean
    holes = drops.clone()
    holes[1, 0] = float("nan")
    v = cascade_verdict(holes, method="g", steps=["a", "b", "c", "d"])
    expected = float(holes.double().nanmean(dim=0).mean())
    assert v.n == 3 and v.mean == pytest.approx(expected, abs=1e-12)
    with pytest.raises(InvalidInputError, match="one row per step"):
        cascade_verdict(drops, method="g", steps=["a", "b"])


# ----------------------------------------------------------------- on the Fashion CNN


def test_model_randomization_verdicts_on_the_fashion_cnn(randomized: RandomizationResult) -> None:
    """Adebayo et al.'s example on real Fashion-MNIST test images (24 here): judged over
    the cascade, guided backprop (mean over the 4 steps 0.63 [0.62, 0.64]) and the edge
    detector (1.00) fail, the gradient (0.13 [0.11, 0.15]) passes; random noise
    (self-check 0.00) cannot be judged."""
    got = _verdicts(randomized)
    assert {m: v.verdict for m, v in got.items()} == {
        "gradient": "passed",
        "guided_backprop": "failed",
        "edge_detector": "failed",
        "random_noise": "inconclusive",
    }
    assert got["random_noise"].reason == "noise_floor"
    # over the cascade: down to its last step, each image's mean over the 4 steps
    assert all(v.step == "conv1" and v.n == 24 and v.steps == 4 for v in got.values())
    assert all(v.statistic == "cascade_mean" for v in got.values())
    values = randomized.similarity("gradient").spearman_abs.mean(dim=0)
    assert got["gradient"].mean == pytest.approx(float(values.mean()), abs=1e-12)
    gbp = got["guided_backprop"]
    assert gbp.ci is not None and gbp.ci[0] > 0.55  # measured 0.63 [0.62, 0.64]
    # the verdicts are in the JSON, as the result computes them
    data = to_jsonable(randomized)
    assert data["verdicts"]["edge_detector"]["verdict"] == "failed"
    assert data["verdicts"]["gradient"]["mean"] == got["gradient"].mean
    # another step, by name or index (judged alone, against THRESHOLD)
    first = randomized.verdicts(step="fc2")
    assert first == randomized.verdicts(step=0) and first[0].step == "fc2"
    assert first[0].statistic == "step" and first[0].threshold == THRESHOLD
    with pytest.raises(InvalidOptionError, match="no step 'fc9'"):
        randomized.verdicts(step="fc9")
    with pytest.raises(InvalidOptionError, match="step must be"):
        randomized.verdicts(step=4)


def test_model_randomization_in_words(randomized: RandomizationResult) -> None:
    description = randomized.describe()
    assert_round_trip(description, to_jsonable(randomized))
    claims = {_method(f): f.claim for f in description.findings}
    assert claims == {
        "gradient": "finding",
        "guided_backprop": "unreliable",
        "edge_detector": "unreliable",
        "random_noise": "hedged",
    }
    texts = {_method(f): f.text("en") for f in description.findings}
    assert "not reliable for this model" in texts["edge_detector"]
    assert "passed" in texts["gradient"] and "from the logits down to conv1" in texts["gradient"]
    assert "averaged over the 4 steps" in texts["gradient"]
    assert "not reliable for this model" in texts["guided_backprop"]
    assert "cannot judge" in texts["random_noise"]
    # methods are named in the reader's language
    assert description.findings[0].values["method"] == Term("method.gradient")
    assert texts["gradient"].startswith("Gradient passed the model randomization check")
    # (spacing between a name and Chinese text is the renderer's: compared without spaces)
    first = description.findings[0].text("zh").replace(" ", "")
    assert first.startswith("梯度通过了模型随机化检验")
    zh = description.text("zh").replace(" ", "")
    assert "边缘检测器（对照）对该模型不可靠" in zh and "通过了模型随机化检验" in zh
    with pytest.raises(InvalidOptionError, match="unknown language"):
        randomized.describe("fr")


def test_one_image_verdicts_write_json_without_warnings(fashion: Any, tmp_path: Any) -> None:
    """A quick check on one image is inconclusive ("too few"), and its JSON holds no
    non-finite number (write_json would warn about one)."""
    from seethrough.reporting.serialize import write_json

    model, x, y = fashion
    result = model_randomization(model, x[:1], ["gradient"], target=y[:1], metrics=("ssim",))
    (v,) = result.verdicts()  # spearman_abs was not computed: the measure that was
    assert (v.metric, v.verdict, v.reason, v.n) == ("ssim", "inconclusive", "too_few", 1)
    (none,) = result.verdicts(metric="spearman_abs")  # not computed: no value at all
    assert (none.n, none.mean, none.ci) == (0, None, None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_json(tmp_path / "r.json", {"verdicts": result.verdicts(metric="ssim")})
    description = result.describe()
    assert description.findings[0].key == "sanity.model.too_few"
    assert_round_trip(description, to_jsonable(result))


def test_independent_randomization_names_the_one_step(fashion: Any) -> None:
    model, x, y = fashion
    result = model_randomization(
        model, x[:6], ["gradient"], target=y[:6], mode="independent", metrics=("spearman_abs",)
    )
    text = result.describe().text("en")
    assert "after randomizing only conv1" in text and "from the logits" not in text
    assert_round_trip(result.describe(), to_jsonable(result))


def test_data_randomization_in_words(fashion: Any) -> None:
    model, x, y = fashion
    result = data_randomization(
        model, fashion_cnn("random_labels"), x, ["gradient", "edge_detector"], target=y
    )
    assert isinstance(result, ComparisonResult) and result.test == "data_randomization"
    assert {v.method: v.verdict for v in result.verdicts()} == {
        "gradient": "passed",  # 0.10 [0.09, 0.11] on 200 images
        "edge_detector": "failed",  # 1.00: the edge map does not need the model
    }
    description = result.describe()
    assert [f.claim for f in description.findings] == ["finding", "unreliable"]
    assert "not reliable for this model" in description.findings[1].text("en")
    data = to_jsonable(result)
    assert set(data["verdicts"]) == {"gradient", "edge_detector"}
    assert_round_trip(description, data)
    dumps(result)  # strict JSON


def test_edge_similarity_is_a_warning_never_unreliable(fashion: Any) -> None:
    model, x, y = fashion
    result = edge_similarity(model, x, ["gradient", "edge_detector"], target=y)
    description = result.describe()
    edge = next(f for f in description.findings if _method(f) == "edge_detector")
    assert edge.claim == "hedged" and "resemble the input's edges" in edge.text("en")
    assert all(f.claim != "unreliable" for f in description.findings)
    assert_round_trip(description, to_jsonable(result))


# ------------------------------------------------------------------- hedging rules


_OUTCOMES = [
    ("passed", "below", "finding"),
    ("failed", "above", "unreliable"),
    ("inconclusive", "straddles", "hedged"),
    ("inconclusive", "too_few", "hedged"),
]
_CASES = [
    *(("model_randomization", *o) for o in _OUTCOMES),
    ("model_randomization", "inconclusive", "noise_floor", "hedged"),
    *(("data_randomization", *o) for o in _OUTCOMES),  # no self-check: no noise floor
]


@pytest.mark.parametrize(("test", "verdict", "reason", "claim"), _CASES)
def test_a_failed_check_never_yields_a_positive_claim(
    test: str, verdict: str, reason: str, claim: str
) -> None:
    v = SanityVerdict(
        method="m",
        test=test,
        verdict=verdict,  # type: ignore[arg-type]
        reason=reason,  # type: ignore[arg-type]
        metric="spearman_abs",
        step="layer",
        mean=0.4,
        ci=(0.35, 0.45),
        threshold=0.3,
        n=10,
        self_check=0.2 if reason == "noise_floor" else None,
    )
    finding = verdict_finding(v)
    assert finding.claim == claim and finding.evidence == "verdicts.m"
    for lang in ("en", "zh"):
        text = finding.text(lang)
        unreliable = "not reliable for this model" in text or "对该模型不可靠" in text
        positive = "passed" in text or "通过了" in text
        assert unreliable == (verdict == "failed"), text
        assert positive == (verdict == "passed"), text


# ------------------------------------------------------------------- calibration


def test_adebayo_example_on_efficientnet_lite0() -> None:
    """Adebayo et al. (2018), Fig. 2, on our ImageNet model: guided backprop's maps stay
    similar while the top layers are randomized (ρ 0.99 after the logits, 0.77 half-way),
    so judged over the cascade it fails (measured 0.60 [0.54, 0.65], 6 photos), and the
    gradient passes (0.21 [0.12, 0.30] < 0.4); the edge detector fails (1.00) and
    random noise cannot be judged (self-check 0.00). Judged on the last step alone — the
    old rule — guided backprop passed (0.09): the regression this test pins."""
    net = st.load_model("efficientnet-lite0")
    x = net.preprocess(st.load_images([f"sample:{s}" for s in LITE0_SAMPLES]))
    methods = ["gradient", "guided_backprop", "edge_detector", "random_noise"]
    result = model_randomization(net, x, methods, metrics=("spearman_abs",))
    got = _verdicts(result)
    assert {m: v.verdict for m, v in got.items()} == {
        "gradient": "passed",
        "guided_backprop": "failed",
        "edge_detector": "failed",
        "random_noise": "inconclusive",
    }
    assert got["edge_detector"].ci == pytest.approx((1.0, 1.0))
    assert got["random_noise"].reason == "noise_floor"
    assert got["gradient"].step == "_conv_stem" and got["gradient"].steps == 10
    gbp = result.similarity("guided_backprop").spearman_abs
    assert float(gbp[0].mean()) > 0.9  # the top (logits) randomized: the map barely moves
    last = {v.method: v.verdict for v in result.verdicts(step=-1)}
    assert last["guided_backprop"] == "passed"  # what the last step alone says
    assert_round_trip(result.describe(), to_jsonable(result))


# ------------------------------------------------------------------- faithfulness


def _metric(name: str, method: str, scores: list[float], higher: bool) -> MetricResult:
    return MetricResult(
        name, method, torch.tensor(scores, dtype=torch.float64), higher, (0.0, 1.0), "ref", {}
    )


def test_comparison_with_the_random_control_by_hand() -> None:
    """Deletion (lower is better): a method below the control on every image is better;
    the mean difference, its t interval and the paired t-test are the per-image
    differences' (checked against scipy)."""
    method = _metric("deletion", "grad", [0.1, 0.2, 0.15, 0.12, 0.3, 0.05], False)
    control = _metric("deletion", "random_noise", [0.4, 0.5, 0.45, 0.3, 0.6, 0.35], False)
    c = method.compare_with(control)
    diff = (method.scores - control.scores).numpy()
    assert c.verdict == "better" and c.n == 6 and c.family == 1 and c.p_holm == c.p_value
    assert c.difference == pytest.approx(diff.mean(), abs=1e-15)
    assert c.ci == pytest.approx(_hand_t(diff.tolist()), abs=1e-12)
    assert c.p_value == pytest.approx(stats.ttest_1samp(diff, 0.0).pvalue, rel=1e-9)
    assert c.mean == pytest.approx(method.mean()) and c.control_mean == pytest.approx(
        control.mean()
    )
    finding = c.describe().findings[0]
    assert finding.claim == "finding" and "better than a random ranking" in finding.text()
    assert "Holm-corrected over 1 comparison" in finding.text()
    assert_round_trip(c.describe(), to_jsonable(c))
    # the same numbers for insertion (higher is better): worse than random → unreliable
    worse = compare_with_control(
        _metric("insertion", "grad", method.scores.tolist(), True),
        _metric("insertion", "random_noise", control.scores.tolist(), True),
    )
    assert worse.verdict == "worse"
    finding = worse.describe().findings[0]
    assert finding.claim == "unreliable" and "not reliable for this model" in finding.text()
    assert "更忠实" not in finding.text("zh")
    # no consistent difference: hedged
    mixed = compare_with_control(
        _metric("deletion", "grad", [0.1, 0.5, 0.2, 0.4], False),
        _metric("deletion", "random_noise", [0.3, 0.3, 0.3, 0.3], False),
    )
    assert mixed.verdict == "indistinguishable"
    assert mixed.describe().findings[0].claim == "hedged"
    assert_round_trip(mixed.describe(), to_jsonable(mixed))
    one = compare_with_control(method, dataclasses.replace(control, scores=control.scores * np.nan))
    assert (one.n, one.ci, one.mean, one.verdict) == (0, None, None, "indistinguishable")
    assert one.describe().findings[0].key == "faithfulness.too_few"
    assert_round_trip(one.describe(), to_jsonable(one))
    with pytest.raises(InvalidInputError, match="same metric"):
        compare_with_control(method, _metric("insertion", "r", [0.1] * 6, True))
    with pytest.raises(InvalidInputError, match="same images"):
        compare_with_control(method, _metric("deletion", "r", [0.1] * 5, False))


def _raw_p(comparisons: Any) -> list[float]:
    """The comparisons' uncorrected p-values (each has one here)."""
    found = [c.p_value for c in comparisons]
    assert all(p is not None for p in found)
    return [float(p) for p in found if p is not None]


def test_better_than_random_needs_the_holm_corrected_test() -> None:
    """Several methods × metrics against the random ranking are one family: a comparison
    whose own p is below 0.05 but whose Holm-corrected p is not is no longer "better"
    (the report corrects deletion and insertion of every method together)."""
    control = _metric("deletion", "random_noise", [0.5, 0.5, 0.5, 0.5], False)
    clear = _metric("deletion", "a", [0.1, 0.12, 0.09, 0.11], False)  # p ≈ 1e-5
    weak = _metric("deletion", "b", [0.3, 0.42, 0.25, 0.4], False)  # p ≈ 0.02
    null = _metric("deletion", "c", [0.45, 0.55, 0.52, 0.49], False)
    alone = [m.compare_with(control) for m in (clear, weak, null)]
    assert [c.verdict for c in alone] == ["better", "better", "indistinguishable"]
    assert 0.01 < (alone[1].p_value or 1) < 0.05
    family = holm_family(alone)
    assert [c.family for c in family] == [3, 3, 3]
    assert [c.p_holm for c in family] == pytest.approx(holm(_raw_p(alone)))
    assert [c.verdict for c in family] == ["better", "indistinguishable", "indistinguishable"]
    assert [c.p_value for c in family] == [c.p_value for c in alone]  # the raw p is kept
    assert holm_family(family) == family  # correcting again changes nothing
    said = family[1].describe().findings[0]
    assert said.claim == "hedged" and "Holm-corrected over 3 comparison" in said.text()
    assert_round_trip(family[1].describe(), to_jsonable(family[1]))


def test_the_report_corrects_its_comparisons_together() -> None:
    """reporting.build judges every method × (deletion, insertion) comparison of a report
    as one Holm family before any summary sentence calls a method better than random."""
    from seethrough.reporting.build import Faithfulness, _holm_corrected

    families = []
    for name, higher in (("deletion", False), ("insertion", True)):
        control = _metric(name, "random_noise", [0.5, 0.5, 0.5, 0.5], higher)
        sign = 1.0 if higher else -1.0
        methods = [
            _metric(name, "a", [0.5 + sign * d for d in (0.4, 0.38, 0.41, 0.39)], higher),
            _metric(name, "b", [0.5 + sign * d for d in (0.2, 0.08, 0.25, 0.1)], higher),
        ]
        comparisons = tuple(m.compare_with(control) for m in methods)
        families.append(Faithfulness(name, tuple(methods), control, comparisons))
    raw = [c for f in families for c in f.comparisons]
    assert [c.verdict for c in raw] == ["better"] * 4
    corrected = [c for f in _holm_corrected(tuple(families)) for c in f.comparisons]
    assert [c.family for c in corrected] == [4] * 4
    assert [c.p_holm for c in corrected] == pytest.approx(holm(_raw_p(raw)))
    assert [c.verdict for c in corrected] == [
        "better" if p < 0.05 else "indistinguishable" for p in holm(_raw_p(raw))
    ]
    assert "indistinguishable" in [c.verdict for c in corrected]


def test_deletion_against_random_on_the_fashion_cnn(fashion: Any) -> None:
    """A real metric: its score alone is hedged; against the random-noise ranking the
    sentence carries the comparison's numbers."""
    model, x, y = fashion
    grad, noise = st.explain(model, x, ["integrated_gradients", "random_noise"], target=y)
    ours, control = deletion(model, grad, steps=10), deletion(model, noise, steps=10)
    alone = ours.describe()
    assert alone.findings[0].claim == "hedged"
    assert_round_trip(alone, to_jsonable(ours))
    comparison = ours.compare_with(control)
    # integrated gradients: 0.08 [0.07, 0.10] against 0.42 [0.39, 0.46] (200 images)
    assert comparison.verdict == "better" and comparison.n == 24
    assert_round_trip(comparison.describe(), to_jsonable(comparison))


def test_every_metric_type_describes_its_mean() -> None:
    """The subclasses (ROAD, infidelity, input invariance, localisation) too: the mean is
    in each one's JSON and the sentence is hedged."""
    from seethrough.trust.faithfulness import infidelity, input_invariance, road, sparseness
    from seethrough.trust.localisation import energy_pointing_game, pointing_game

    model, x = tiny_model(), tiny_inputs(n=2)
    ex = st.explain(model, x, "gradient", target=1)
    mask = torch.zeros(2, *x.shape[2:], dtype=torch.bool)
    mask[:, :3] = True
    results = [
        road(model, ex, percentages=(30, 60)),
        infidelity(model, ex, samples=3),
        input_invariance(model, ex),
        sparseness(ex),
        pointing_game(ex, mask),
        energy_pointing_game(ex, mask),
    ]
    for result in results:
        data = to_jsonable(result)
        assert data["mean"] == result.mean(), type(result).__name__
        (finding,) = result.describe().findings
        assert finding.claim == "hedged" and finding.key == "faithfulness.score"
        assert isinstance(finding.values["metric"], Term), result.metric
        assert_round_trip(result.describe(), data)


# ------------------------------------------------------------------ sMPRT, eMPRT, ROAR


def test_mprt_results_in_words() -> None:
    model, x = tiny_model().eval(), tiny_inputs(n=3)
    smooth = smooth_mprt(model, x, "gradient", 1, copies=3)
    assert smooth.describe().findings[0].claim == "note"
    assert_round_trip(smooth.describe(), to_jsonable(smooth))
    emprt = efficient_mprt(model, x, "gradient", 1)
    data = to_jsonable(emprt)
    assert data["mean_score"] == pytest.approx(float(emprt.score.nanmean()))
    assert_round_trip(emprt.describe(), data)


def _roar(method_correct: list[list[int]], random_correct: list[list[int]]) -> RoarResult:
    correct = torch.tensor([method_correct, random_correct], dtype=torch.bool)[:, None]
    return RoarResult(
        methods=("gradient", "random"),
        fractions=(0.5,),
        removed=(392,),
        seeds=tuple(range(correct.shape[2])),
        correct=correct,
        reference_correct=None,
        unretrained_correct=None,
        settings={},
        attribution_seconds={},
        seconds=0.0,
    )


def test_roar_in_words_follows_its_verdicts() -> None:
    """Retrained accuracy lower than the random ranking's (the method removed what the
    model needs) is a finding; higher is unreliable; the numbers are the JSON's."""
    n = 40
    hit = [[1] * n, [1] * n]
    low = [[1] * 10 + [0] * 30, [1] * 12 + [0] * 28]
    for method, random, verdict, claim in (
        (low, hit, "better", "finding"),
        (hit, low, "worse", "unreliable"),
    ):
        result = _roar(method, random)
        description = result.describe()
        (finding,) = description.findings
        assert finding.key == f"roar.{verdict}" and finding.claim == claim
        assert_round_trip(description, to_jsonable(result))
