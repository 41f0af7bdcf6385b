"""Where a map focuses (hand-computed), explanations in words (every number round-trips to
the JSON, in English and Chinese) and the hedging rules of a sanity verdict."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

import seethrough as st
from helpers import METHOD_CASES, tiny_inputs, tiny_model
from seethrough.attribution import Explanation, PathExplanation
from seethrough.attribution.describe import COMPLETENESS_TOLERANCE, describe_explanation
from seethrough.core.focus import Focus, focus, region_of
from seethrough.errors import InvalidInputError, InvalidOptionError
from seethrough.reporting.serialize import to_jsonable
from words_helpers import assert_round_trip

# ------------------------------------------------------------------ focus, by hand


def test_focus_of_a_single_pixel() -> None:
    maps = torch.zeros(1, 6, 6)
    maps[0, 0, 5] = 2.0
    (spot,) = focus(maps)
    assert spot == Focus(
        region="top-right",
        region_share=1.0,
        region_area=4 / 36,  # rows 0-1, columns 4-5
        row=0.5 / 6,
        col=5.5 / 6,
        peak_row=0.5 / 6,
        peak_col=5.5 / 6,
        peak_region="top-right",
        concentration=1.0,  # the top ceil(3.6) = 4 pixels hold everything
        top_fraction=0.1,
    )


def test_focus_of_a_uniform_map() -> None:
    """10 × 10: grid rows/columns are pixels 0-2, 3-6, 7-9 (centres (i + 0.5)/10 times 3,
    floored), so the centre cell has 16 of the 100 pixels and the largest share."""
    (spot,) = focus(torch.ones(1, 10, 10))
    assert spot.region == "centre"
    assert spot.region_share == pytest.approx(0.16, abs=1e-15)
    assert spot.region_area == pytest.approx(0.16, abs=1e-15)
    assert (spot.row, spot.col) == (pytest.approx(0.5), pytest.approx(0.5))
    assert spot.concentration == pytest.approx(0.1, abs=1e-15)  # an even map: top_fraction
    assert (spot.peak_row, spot.peak_col) == (0.05, 0.05)  # ties: the first pixel


def test_focus_centroid_share_and_concentration_by_hand() -> None:
    maps = torch.tensor([[[1.0, 0.0, 0.0, 3.0], [0.0, 0.0, 0.0, 0.0]]])
    (spot,) = focus(maps)
    # H = 2: rows 0 → grid row 0, 1 → grid row 2; W = 4: columns 0 | 1, 2 | 3
    assert spot.region == "top-right" and spot.peak_region == "top-right"
    assert spot.region_share == 0.75 and spot.region_area == 1 / 8
    assert spot.row == 0.25  # (1 + 3) · 0.25 / 4
    assert spot.col == (1 * 0.125 + 3 * 0.875) / 4
    assert (spot.peak_row, spot.peak_col) == (0.25, 0.875)
    assert spot.concentration == 0.75  # top ceil(0.8) = 1 pixel


def test_concentration_counts_exactly_a_tenth_of_the_pixels() -> None:
    """0.1 · 100 is 10.000000000000002 in floating point: the top 10 pixels, not 11."""
    maps = torch.zeros(1, 10, 10)
    maps.view(-1)[:11] = 1.0
    (spot,) = focus(maps)
    assert spot.concentration == pytest.approx(10 / 11, abs=1e-15)


def test_a_map_with_nothing_in_it_has_no_region() -> None:
    zero, nonfinite = focus(torch.stack([torch.zeros(4, 4), torch.full((4, 4), math.inf)]))
    for spot in (zero, nonfinite):
        assert spot.region is None and spot.peak_region is None
        assert math.isnan(spot.region_share) and math.isnan(spot.concentration)


def test_focus_rejects_bad_input() -> None:
    with pytest.raises(InvalidInputError, match=r"\(N, H, W\)"):
        focus(torch.ones(1, 1, 4, 4))
    with pytest.raises(InvalidInputError, match=r"maps.abs\(\)"):
        focus(-torch.ones(1, 4, 4))
    with pytest.raises(InvalidOptionError, match=r"\(0, 1\]"):
        focus(torch.ones(1, 4, 4), top_fraction=0.0)
    assert region_of(0.0, 0.0) == "top-left" and region_of(1.0, 0.5) == "bottom"
    assert region_of(0.5, 0.34) == "centre"
    with pytest.raises(InvalidInputError, match="fractions"):
        region_of(1.2, 0.5)


# ------------------------------------------------------------------ explanations, by hand


def _explanation(
    attributions: torch.Tensor, kind: type[Explanation] = Explanation, **fields: Any
) -> Any:
    n = attributions.shape[0]
    values: dict[str, Any] = {
        "method": "gradient",
        "attributions": attributions,
        "inputs": torch.zeros(n, 3, *attributions.shape[2:]),
        "targets": torch.arange(n),
        "scores": torch.linspace(1.5, 2.5, n),
        "image_index": torch.arange(n),
        "resolution": "input",
        "display": "signed",
        "settings": {},
        "seed": 0,
        "class_names": ("cat", "dog", "bird"),
    }
    values.update(fields)
    return kind(**values)


def test_explanation_focus_counts_negative_evidence_and_sums_channels() -> None:
    a = torch.zeros(1, 3, 6, 6)
    a[0, 0, 0, 0] = -2.0  # top left, negative
    a[0, 1, 5, 5] = 1.0  # bottom right, positive
    (spot,) = _explanation(a).focus()
    assert spot.region == "top-left" and spot.region_share == pytest.approx(2 / 3)


def test_layer_maps_are_upsampled_before_their_focus() -> None:
    """A 3 × 3 CAM with weight in its centre cell, upsampled to 12 × 12 (bilinear): the
    weight stays in the centre cell, and the centroid in the middle."""
    cam = torch.zeros(1, 1, 3, 3)
    cam[0, 0, 1, 1] = 1.0
    ex = _explanation(cam, resolution="layer", inputs=torch.zeros(1, 3, 12, 12))
    (spot,) = ex.focus()
    assert spot.region == "centre" and (spot.row, spot.col) == (0.5, 0.5)
    assert spot.region_area == 16 / 144


def test_json_keeps_every_field_and_adds_focus_and_completeness() -> None:
    a = torch.zeros(2, 3, 6, 6)
    a[:, 0, 0, 5] = 1.0
    ex = _explanation(a)
    data = to_jsonable(ex)
    assert {f for f in ex.__dataclass_fields__} < set(data)
    assert data["focus"][0]["region"] == "top-right" and data["focus"][1]["concentration"] == 1.0
    path = _path(a, errors=[0.5, -0.05])
    data = to_jsonable(path)
    assert data["completeness"] == [
        {"sum": 2.0, "difference": 1.5, "error": 0.5, "relative_error": pytest.approx(1 / 3)},
        {
            "sum": 2.0,
            "difference": 2.05,
            "error": -0.05,
            "relative_error": pytest.approx(0.05 / 2.05),
        },
    ]
    assert "focus" in data and "completeness_error" in data


def _path(a: torch.Tensor, errors: list[float]) -> PathExplanation:
    """Attributions summing to 2 per row (given ``a`` with ones), and baselines so that
    completeness_error = sum - (score - baseline) is ``errors``."""
    n = a.shape[0]
    a = a * (2.0 / a.flatten(1).sum(1)).view(n, 1, 1, 1)
    scores = torch.full((n,), 3.0, dtype=torch.float64)
    error = torch.tensor(errors, dtype=torch.float64)
    baseline = scores - (2.0 - error)
    return _explanation(
        a.double(),
        PathExplanation,
        method="integrated_gradients",
        scores=scores,
        baselines=torch.zeros_like(a),
        baseline_scores=baseline,
        completeness_error=error,
        path_points=torch.full((n,), 16),
        inputs=torch.zeros(n, 3, *a.shape[2:], dtype=torch.float64),
    )


# ------------------------------------------------------------------ hedging rules


def _claims(description: Any, key: str) -> list[str]:
    return [f.claim for f in description.findings if f.key == key]


@pytest.fixture
def ex() -> Explanation:
    a = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    return _explanation(a)


def test_a_failed_sanity_check_makes_no_claim_about_the_image(ex: Explanation) -> None:
    description = ex.describe(sanity="failed")
    claims = {f.claim for f in description.findings}
    assert claims == {"note", "unreliable"}
    assert not any(f.key.startswith("explanation.focus") for f in description.findings)
    assert not any(
        isinstance(v, st.words.Term) and v.key.startswith("region.")
        for f in description.findings
        for v in f.values.values()
    )
    assert "is not reliable for this model" in description.text("en")
    assert "对此模型不可靠" in description.text("zh")
    for word in ("focus", "centre", "concentrated", "spread"):
        assert word not in description.text("en")


@pytest.mark.parametrize(
    ("sanity", "claim", "english", "chinese"),
    [
        (None, "hedged", "Hypothesis (not sanity-checked on this model): ", "假设（未在此模型上"),
        (
            "inconclusive",
            "hedged",
            "Hypothesis (sanity check inconclusive",
            "假设（在此模型上的合理性检验无定论",
        ),
        (
            "passed",
            "finding",
            "Sanity check passed: the map is strongest in",
            "已通过合理性检验：解释图在",
        ),
    ],
)
def test_where_the_map_lies_is_claimed_only_as_far_as_the_sanity_check_allows(
    ex: Explanation, sanity: str | None, claim: str, english: str, chinese: str
) -> None:
    description = ex.describe(sanity=sanity)
    assert _claims(description, "explanation.focus") == [claim]
    focus_finding = next(f for f in description.findings if f.key == "explanation.focus")
    assert english in focus_finding.text("en") and chinese in focus_finding.text("zh")
    assert _claims(description, "explanation.target") == ["note"]


def test_unknown_verdicts_and_languages_are_refused(ex: Explanation) -> None:
    with pytest.raises(InvalidOptionError, match="passed, failed, inconclusive"):
        ex.describe(sanity="ok")
    with pytest.raises(InvalidOptionError, match="unknown language 'de'"):
        ex.describe(lang="de")


@pytest.mark.parametrize(
    ("hot", "degree"),
    [
        (100, "spread"),
        (51, "spread"),
        (50, "moderate"),  # 0.2 = 2 × top_fraction: no longer spread
        (21, "moderate"),
        (20, "concentrated"),  # 0.5 = 5 × top_fraction
        (4, "concentrated"),
    ],
)
def test_how_concentrated_a_map_is_said(hot: int, degree: str) -> None:
    """10 × 10 maps with ``hot`` pixels of 1 and the rest 0: the top 10 pixels hold
    10/hot of it. Thresholds: < 2 × top_fraction spread, >= 5 × concentrated."""
    a = torch.zeros(1, 1, 10, 10)
    a.view(-1)[torch.randperm(100, generator=torch.Generator().manual_seed(hot))[:hot]] = 1.0
    (finding,) = [f for f in _explanation(a).describe().findings if f.key == "explanation.focus"]
    assert finding.values["concentration"] == pytest.approx(min(1.0, 10 / hot))
    assert finding.values["degree"] == st.words.Term(f"explanation.degree.{degree}")


def test_zero_and_nonfinite_maps_point_nowhere() -> None:
    a = torch.zeros(2, 1, 4, 4)
    a[1, 0, 0, 0] = math.nan
    description = _explanation(a).describe(sanity="passed")
    keys = [f.key for f in description.findings]
    assert "explanation.focus.zero" in keys and "explanation.focus.nonfinite" in keys
    assert "explanation.focus" not in keys


def test_targets_predictions_and_image_numbers(ex: Explanation) -> None:
    a = torch.ones(3, 1, 4, 4)
    many = _explanation(
        a,
        targets=torch.tensor([1, -1, 7]),
        predicted=torch.tensor([0, 2, 7]),
        image_index=torch.tensor([0, 0, 1]),
    )
    description = many.describe()
    keys = [f.key for f in description.findings]
    assert keys[:2] == ["explanation.target.image", "explanation.predicted"]
    assert "explanation.target.custom.image" in keys  # -1: a callable target, no prediction
    assert "explanation.target.unnamed.image" in keys  # 7: beyond the class names
    text = description.text("en")
    assert "Image 0: Gradient explains the class “dog” (index 1)" in text
    assert "The model's own top class is “cat” (index 0)." in text
    assert_round_trip(description, to_jsonable(many))
    single = ex.describe()
    assert single.findings[0].key == "explanation.target"  # one row: no image number
    assert_round_trip(single, to_jsonable(ex))


def test_completeness_is_judged_against_the_papers_five_percent() -> None:
    a = torch.ones(2, 1, 4, 4)
    path = _path(a, errors=[0.1, -0.09])  # relative errors 0.1/1.9 > 5 %, 0.09/2.09 < 5 %
    relative = [c["relative_error"] for c in path.completeness()]
    assert relative[0] > COMPLETENESS_TOLERANCE > relative[1]
    description = describe_explanation(path)
    found = [(f.key, f.claim) for f in description.findings if "completeness" in f.key]
    assert found == [
        ("explanation.completeness.off", "hedged"),
        ("explanation.completeness.ok", "note"),
    ]
    assert "use more steps" in description.text("en") and "请增加步数" in description.text("zh")
    assert_round_trip(description, to_jsonable(path))


# ------------------------------------------------------------------ the real model


@pytest.fixture(scope="module")
def chelsea() -> tuple[st.LoadedModel, torch.Tensor]:
    net = st.load_model("efficientnet-lite0")
    return net, net.preprocess(st.load_images(["sample:chelsea"]))


@pytest.mark.parametrize("sanity", [None, "passed", "inconclusive", "failed"])
def test_grad_cam_on_chelsea_in_words(
    chelsea: tuple[st.LoadedModel, torch.Tensor], sanity: str | None
) -> None:
    """Chelsea is a cat's face filling the frame; Grad-CAM's peak is its left eye.
    Measured (2026-12-06): peak at (0.50, 0.22), centroid (0.51, 0.47), concentration
    0.165 (spread: the whole face counts), largest share 15 % in the centre left."""
    net, x = chelsea
    ex = st.explain(net, x, "grad_cam")
    (spot,) = ex.focus()
    assert spot.peak_region == "left" and spot.region == "left"
    assert 1 / 3 < spot.row < 2 / 3 and 1 / 3 < spot.col < 2 / 3
    description = ex.describe(sanity=sanity)
    assert_round_trip(description, to_jsonable(ex))
    assert "“tiger cat” (index 282)" in description.text("en")


def test_integrated_gradients_on_chelsea_in_words(
    chelsea: tuple[st.LoadedModel, torch.Tensor],
) -> None:
    net, x = chelsea
    ex = st.explain(net, x, "integrated_gradients", rule="riemann_trapezoid", steps=16)
    description = ex.describe(sanity="passed")
    assert any(f.key.startswith("explanation.completeness") for f in description.findings)
    assert_round_trip(description, to_jsonable(ex))


@pytest.mark.filterwarnings("ignore:integrated gradients.*reached steps:UserWarning")
@pytest.mark.parametrize("method", list(METHOD_CASES))
def test_every_method_describes_itself_with_numbers_from_its_json(method: str) -> None:
    """On the tiny CNN (two images, so rows carry image numbers), in English and Chinese."""
    model, x = tiny_model(), tiny_inputs(n=2)
    ex = st.explain(model, x, method, **METHOD_CASES[method])
    for sanity in (None, "failed"):
        assert_round_trip(ex.describe(sanity=sanity), to_jsonable(ex))
