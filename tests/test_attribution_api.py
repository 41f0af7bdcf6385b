"""The attribution API after the split of ``base.py`` (issue 13) and the bad-input fixes of
issue 18: one option validator declared with each field (18 #1), controls kept out of the
method list, non-finite numbers detected on the computation side (18 #3), typed results,
explanations as data plotted through ``viz``, and a progress plan that ends at 100 %."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import seethrough as st
from helpers import METHOD_CASES, Snapshot, tiny_inputs, tiny_model
from seethrough._version import __version__
from seethrough.attribution import Details, Explanation, make_method, method_names
from seethrough.attribution.method import METHODS, Attribution
from seethrough.core.guard import finite_rows
from seethrough.errors import InvalidOptionError, NonFiniteError

# ---------------------------------------------------------------- one option validator


@pytest.mark.parametrize(
    ("method", "options", "message"),
    [
        # the three cases of issue 18 #1 (a TypeError traceback before)
        (
            "smoothgrad",
            {"noise": "abc"},
            r"smoothgrad: noise must be non-negative .*got 'abc' \(str\)",
        ),
        ("smoothgrad", {"noise": math.nan}, r"smoothgrad: noise must be non-negative .*got nan"),
        (
            "integrated_gradients",
            {"tolerance": "abc"},
            r"integrated_gradients: tolerance must be in \(0, 1\) .*got 'abc' \(str\)",
        ),
        # one per kind of check
        ("integrated_gradients", {"steps": 2.5}, r"steps must be a positive integer, got 2\.5"),
        ("smoothgrad", {"samples": True}, r"samples must be a positive integer, got True \(bool\)"),
        ("kernel_shap", {"samples": 3}, "samples must be an integer ≥ 4, got 3"),
        ("rise", {"probability": 1.5}, r"probability must be in \(0, 1\] .*got 1\.5"),
        ("occlusion", {"blur_sigma": math.inf}, r"blur_sigma must be positive .*got inf"),
        ("lime", {"kernel_width": 0}, r"kernel_width must be positive .*got 0 \(int\)"),
        ("score_cam", {"weighting": "probabilty"}, r"unknown weighting 'probabilty'; did you mean"),
        ("smoothgrad", {"variant": 3}, "variant must be one of 'smoothgrad', .*got 3 \\(int\\)"),
        ("grad_cam", {"relu": "yes"}, r"relu must be True or False, got 'yes' \(str\)"),
        ("grad_cam", {"layer": 3}, r"layer must be a string or None or a list of layer names"),
        ("smoothgrad", {"stdev": -1.0}, r"stdev must be non-negative .* or None, got -1\.0"),
        ("integrated_gradients", {"baseline": [0.0]}, r"baseline must be one of 'zeros', .*tensor"),
        ("lime", {"segments": 3}, "segments must be one of 'slic', .*integer mask tensor"),
        ("smoothgrad", {"base_options": [1]}, r"base_options must be a mapping.*got \[1\]"),
        ("occlusion", {"window": (3,)}, r"window must be a positive integer or \(height, width\)"),
        ("smoothgrad", {"noize": 0.1}, r"smoothgrad has no option 'noize'; did you mean 'noise'"),
    ],
)
def test_a_bad_option_names_the_method_the_option_what_it_accepts_and_the_value(
    method: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidOptionError, match=message):
        make_method(method, **options)


def test_construction_and_replacement_are_validated_too() -> None:
    with pytest.raises(InvalidOptionError, match="smoothgrad: noise must be"):
        st.SmoothGrad(noise="abc")  # type: ignore[arg-type]
    with pytest.raises(InvalidOptionError, match="smoothgrad: noise must be"):
        make_method(st.SmoothGrad(samples=2), noise=-0.5)
    with pytest.raises(
        InvalidOptionError, match=r"explain: unknown nonfinite 'ignore' \(valid: raise, warn\)"
    ):
        st.explain(tiny_model(), tiny_inputs(n=1), "gradient", nonfinite="ignore")  # type: ignore[call-overload]


def test_literal_values_as_the_cli_parses_them_are_accepted() -> None:
    """``--set noise=0`` arrives as the int 0, ``--set window=(4,4)`` as a tuple."""
    assert make_method("smoothgrad", noise=0, stdev=1).settings["noise"] == 0
    assert make_method("occlusion", window=(4, 4), stride=[2, 2]).strides() == (2, 2)
    assert make_method("integrated_gradients", baseline=0).settings["baseline"] == 0


def test_a_method_cannot_bypass_the_validator() -> None:
    with pytest.raises(TypeError, match=r"defines __post_init__; put checks .* in validate\(\)"):

        @dataclasses.dataclass(frozen=True, kw_only=True)
        class _Sloppy(st.Gradient):
            def __post_init__(self) -> None:
                pass


#: Options that a richer check than a declared one validates (and normalises).
CHECKED_ELSEWHERE = {"rectifiers"}  # core.rules.check_rectifiers


@pytest.mark.parametrize("name", method_names(include_controls=True))
def test_every_option_declares_its_check(name: str) -> None:
    """A new method's options go through the one validator: each field is declared with
    ``option(default, check=...)``."""
    unchecked = [
        f.name
        for f in dataclasses.fields(METHODS[name])
        if "seethrough.option_check" not in f.metadata and f.name not in CHECKED_ELSEWHERE
    ]
    assert not unchecked, f"{name}: options without a declared check: {unchecked}"


# ---------------------------------------------------------------- controls


def test_controls_are_registered_but_not_listed_as_methods() -> None:
    controls = {"edge_detector", "random_noise"}
    assert controls.isdisjoint(method_names())
    assert controls <= set(method_names(include_controls=True))
    assert {METHODS[n].kind for n in controls} == {"control"}
    assert {METHODS[n].kind for n in method_names()} == {"method"}
    ex = st.explain(tiny_model(), tiny_inputs(n=2), "edge_detector")  # still runs by name
    assert ex.method == "edge_detector"


# ---------------------------------------------------------------- non-finite numbers


class _NaNRows(nn.Module):
    """The tiny CNN, whose output is NaN for images whose first pixel is positive."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = tiny_model()

    def forward(self, x: Tensor) -> Tensor:
        out = self.inner(x)
        return torch.where((x[:, 0, 0, 0] > 0)[:, None], math.nan, out)


class _NaNGradient(torch.autograd.Function):
    """Identity forward; a NaN input gradient for the images whose first pixel is positive."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        ctx.bad = x[:, 0, 0, 0] > 0
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return torch.where(ctx.bad[:, None, None, None], math.nan, grad)


class _NaNGradientRows(_NaNRows):
    def forward(self, x: Tensor) -> Tensor:
        return self.inner(_NaNGradient.apply(x))


def _nan_inputs() -> Tensor:
    x = tiny_inputs(n=3)
    assert (x[:, 0, 0, 0] > 0).tolist() == [False, False, True]  # row 2 is the NaN row
    return x


@pytest.mark.parametrize("method", list(METHOD_CASES))
def test_a_nan_model_output_raises_naming_rows_and_step_and_leaves_the_model(method: str) -> None:
    model, x = _NaNRows().eval(), _nan_inputs()
    before = Snapshot.take(model, x)
    with pytest.raises(NonFiniteError, match=rf"{method}: .*not finite .*rows \[2\] on the"):
        st.explain(model, x, method, **METHOD_CASES[method])
    before.assert_unchanged(model, x)


def test_the_clean_pass_error_reads_as_the_issue_asks() -> None:
    with pytest.raises(NonFiniteError) as raised:
        st.explain(_NaNRows().eval(), _nan_inputs(), "gradient")
    assert str(raised.value).startswith(
        "gradient: the model's target score is not finite (NaN or inf) for rows [2] on the "
        "clean forward pass"
    )
    assert "nonfinite='warn'" in str(raised.value)


@pytest.mark.parametrize(
    ("method", "step"),
    [("gradient", "the clean backward pass"), ("guided_backprop", "the guided backward pass")],
)
def test_a_nan_gradient_under_a_finite_output_is_caught(method: str, step: str) -> None:
    model, x = _NaNGradientRows().eval(), _nan_inputs()
    before = Snapshot.take(model, x)
    with pytest.raises(NonFiniteError, match=rf"gradient is not finite .*rows \[2\] on {step}"):
        st.explain(model, x, method)
    before.assert_unchanged(model, x)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_finite_rows_finds_every_kind_of_non_finite_number(dtype: torch.dtype) -> None:
    big = torch.finfo(dtype).max
    x = torch.zeros(6, 2, 3, 3, dtype=dtype)
    x[0] = big  # the largest finite number: t · 0 stays 0 (no overflow in the sum)
    x[1, 1, 2, 2] = math.nan
    x[2, 0, 0, 0] = math.inf
    x[3, 0, 1, 0] = -math.inf
    x[4] = -0.0
    x[5, 0] = big
    x[5, 1] = -big  # a row summing past the range is still finite
    expected = [True, False, False, False, True, True]
    assert finite_rows(x).tolist() == expected
    assert finite_rows(x).tolist() == torch.isfinite(x.flatten(1)).all(1).tolist()
    assert finite_rows(torch.arange(4)).tolist() == [True] * 4  # integers are finite
    assert finite_rows(torch.zeros(0, 3)).tolist() == []


def test_a_nan_in_the_top_k_pass_is_caught_before_the_classes_are_picked() -> None:
    with pytest.raises(NonFiniteError, match=r"rows \[2\] on the forward pass that picks the top"):
        st.explain(_NaNRows().eval(), _nan_inputs(), "gradient", target="top2")


#: Their random references (uniform noise) or noisy copies of rows 0 and 1 reach the NaN
#: region too: those rows' maps are finite but not the clean model's (named in the steps).
REACH_THE_NAN_REGION = {"expected_gradients", "smoothgrad"}


@pytest.mark.parametrize("method", list(METHOD_CASES))
def test_warn_continues_marks_the_rows_and_keeps_the_finite_ones(method: str) -> None:
    model, x = _NaNRows().eval(), _nan_inputs()
    options = METHOD_CASES[method]
    with pytest.warns(RuntimeWarning, match=rf"{method}: non-finite numbers: .*rows \[2\]"):
        ex = st.explain(model, x, method, nonfinite="warn", **options)
    assert ex.nonfinite_rows == (2,)
    assert any("rows [2] on the clean forward pass" in step for step in ex.nonfinite_steps)
    assert not bool(torch.isfinite(ex.scores[2]))
    clean = st.explain(model.inner, x, method, **options)
    assert clean.nonfinite_rows == () and clean.nonfinite_steps == ()
    if method in REACH_THE_NAN_REGION:
        assert len(ex.nonfinite_steps) > 1
    else:
        torch.testing.assert_close(
            ex.attributions[:2], clean.attributions[:2], rtol=1e-10, atol=1e-12
        )


# ---------------------------------------------------------------- typed results


@pytest.mark.parametrize("name", method_names(include_controls=True))
def test_a_result_type_adds_exactly_its_details_fields(name: str) -> None:
    """What a method returns besides the common fields is declared once, in a ``Details``
    dataclass that its explanation type inherits; no string-keyed extras."""
    result_type = METHODS[name].result_type
    common = {f.name for f in dataclasses.fields(Explanation)}
    added = {f.name for f in dataclasses.fields(result_type)} - common
    details = {
        f.name
        for base in result_type.__mro__
        if issubclass(base, Details) and not issubclass(base, Explanation)
        for f in dataclasses.fields(base)
    }
    assert added == details
    assert "extra" not in {f.name for f in dataclasses.fields(Attribution)}


def test_grad_cam_and_its_siblings_share_one_implementation() -> None:
    from seethrough.attribution.cams._base import _LayerCam
    from seethrough.attribution.cams.gradient import _GradientCam

    for name in ("grad_cam", "grad_cam_pp", "xgrad_cam", "hires_cam", "layer_cam"):
        assert issubclass(METHODS[name], _GradientCam)
    cams = [cls for cls in METHODS.values() if issubclass(cls, _LayerCam)]
    assert len(cams) == 9
    for cls in cams:  # layer and relu are declared once, on the CAM base
        assert {"layer", "relu"}.isdisjoint(vars(cls).get("__annotations__", {})), cls


# ---------------------------------------------------------------- data only, plotted by viz


def test_an_explanation_is_plotted_by_viz_not_by_itself(tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    from seethrough.viz import plot, save_figure

    ex = st.explain(tiny_model(), tiny_inputs(n=2), "gradient")
    assert not hasattr(ex, "plot") and not hasattr(ex, "save")
    figure = plot(ex)  # one explanation, or a sequence of them
    assert isinstance(figure, Figure)
    path = save_figure(figure, tmp_path / "one.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert ex.versions["seethrough"] == __version__


# ---------------------------------------------------------------- progress


def test_progress_ends_at_the_plan_when_the_adaptive_rule_stops_early() -> None:
    seen: list[tuple[int, int]] = []
    ex = st.explain(
        tiny_model(),
        tiny_inputs(n=2),
        "integrated_gradients",
        progress=lambda done, total: seen.append((done, total)),
    )
    rows = 2 + 2 + int(ex.path_points.sum())  # clean, baselines, path points
    assert seen[-1] == (rows, rows)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
