"""A multi-method call shares the plain forward/backward pass between the methods that
read it, and gives exactly the results of separate calls."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import seethrough as st
from helpers import Snapshot, tiny_inputs, tiny_model

SHARING = ["gradient", "gradient_x_input", "grad_cam", "guided_grad_cam"]


class Counting(nn.Module):
    """Counts forward calls and rows; optionally raises on the ``fail_on``-th call."""

    def __init__(self, inner: nn.Module, fail_on: int | None = None) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0
        self.rows = 0
        self.fail_on = fail_on

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        self.rows += len(x)
        if self.fail_on is not None and self.calls >= self.fail_on:
            raise RuntimeError("boom inside forward")
        return self.inner(x)


@pytest.mark.parametrize("target", [None, [1, 3, 0], "top2"])
def test_shared_pass_gives_the_results_of_separate_calls(target: object) -> None:
    x = tiny_inputs(n=3)
    together = st.explain(tiny_model(), x, SHARING, target=target)
    for method, ex in zip(SHARING, together):
        alone = st.explain(tiny_model(), x, method, target=target)
        assert ex.method == method
        torch.testing.assert_close(ex.attributions, alone.attributions, rtol=1e-12, atol=1e-14)
        assert torch.equal(ex.targets, alone.targets)
        torch.testing.assert_close(ex.scores, alone.scores, rtol=1e-12, atol=1e-14)
        assert torch.equal(ex.image_index, alone.image_index)
    assert together[2].layer == st.explain(tiny_model(), x, "grad_cam").layer


def test_shared_pass_saves_passes() -> None:
    x = tiny_inputs(n=4)
    separate = 0
    for method in SHARING:
        model = Counting(tiny_model()).eval()
        st.explain(model, x, method, target=2)
        separate += model.rows
    model = Counting(tiny_model()).eval()
    st.explain(model, x, SHARING, target=2)
    # one shared pass over the 4 images, plus guided grad-cam's own guided pass (its
    # rectifier rule changes the backward, so that pass cannot be shared), plus the
    # one-row trace that finds the default CAM layer (once per model)
    assert model.rows == 4 + 4 + 1
    assert separate == 4 + 4 + (4 + 1) + (8 + 1)


def test_methods_with_their_own_passes_are_not_shared() -> None:
    x = tiny_inputs(n=2)
    model = Counting(tiny_model()).eval()
    out = st.explain(
        model,
        x,
        ["gradient", "integrated_gradients"],
        target=1,
        steps=20,
        rule="gausslegendre",
        layout="contiguous",  # "auto" would add its 2-row layout probe to the count
    )
    # gradient alone (one method reading the clean pass: nothing to share) + IG's
    # 2 no-grad passes (input, baseline) and 20 path points per image
    assert model.rows == 2 + 2 + 2 + 40
    torch.testing.assert_close(
        out[0].attributions, st.explain(tiny_model(), x, "gradient", target=1).attributions
    )


def test_cams_on_different_layers_are_not_shared() -> None:
    x = tiny_inputs(n=2)
    model = Counting(tiny_model()).eval()
    cams = st.explain(
        model, x, [st.GradCam(layer="inner.conv2"), st.GradCam(layer="inner.conv3")], target=0
    )
    assert [c.layer for c in cams] == ["inner.conv2", "inner.conv3"]
    assert model.rows == 4


def test_shared_pass_leaves_the_model_untouched_when_it_raises() -> None:
    model = Counting(tiny_model(), fail_on=1).eval()
    x = tiny_inputs(n=2)
    before = Snapshot.take(model, x)
    with pytest.raises(RuntimeError, match="boom inside forward"):
        st.explain(model, x, SHARING)
    before.assert_unchanged(model, x)
    model.fail_on = None
    st.explain(model, x, SHARING)
    before.assert_unchanged(model, x)


def test_results_of_a_shared_call_do_not_alias_each_other() -> None:
    out = st.explain(tiny_model(), tiny_inputs(n=2), SHARING)
    pointers = [t.data_ptr() for ex in out for t in (ex.targets, ex.scores, ex.image_index)]
    assert len(set(pointers)) == len(pointers)


def test_explanations_record_the_top_class_their_own_pass_saw() -> None:
    model, x = tiny_model(), tiny_inputs(n=4)
    with torch.no_grad():
        top = model(x).argmax(dim=1)
    other = (top + 1) % 5  # a fixed class that is never the top one
    for ex in st.explain(model, x, ["gradient", "grad_cam"], other.tolist(), layer="conv3"):
        assert ex.predicted is not None and torch.equal(ex.predicted, top)
        assert torch.equal(ex.targets, other)
    # path methods see only altered inputs: the top class is known when the call
    # resolved the predicted class on the plain inputs, and not made up otherwise
    resolved = st.explain(model, x, "integrated_gradients", steps=4, rule="gausslegendre")
    assert resolved.predicted is not None and torch.equal(resolved.predicted, top)
    assert (
        st.explain(
            model, x, "integrated_gradients", other.tolist(), steps=4, rule="gausslegendre"
        ).predicted
        is None
    )
    # a multi-method call gives every result the same record
    mixed = st.explain(
        model,
        x,
        ["integrated_gradients", "gradient"],
        other.tolist(),
        steps=4,
        rule="gausslegendre",
    )
    assert all(ex.predicted is not None and torch.equal(ex.predicted, top) for ex in mixed)
