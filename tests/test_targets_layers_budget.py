"""Targets, layer lookup and the memory budget."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import seethrough as st
from helpers import TinyCNN, tiny_inputs, tiny_model
from seethrough.core.budget import Budget, is_out_of_memory
from seethrough.core.layers import default_cam_layer, find_layer, trace_layers
from seethrough.core.targets import parse_target
from seethrough.errors import InvalidInputError, LayerError, TargetError

LABELS = ("tabby", "tiger cat", "espresso", "cup", "rocket")


def test_predicted_is_the_argmax() -> None:
    model, x = tiny_model(), tiny_inputs(n=4)
    ex = st.explain(model, x, "gradient")
    assert torch.equal(ex.targets, model(x).argmax(1))
    assert torch.equal(st.explain(model, x, "gradient", target="predicted").targets, ex.targets)


def test_index_name_list_and_tensor_targets() -> None:
    model, x = tiny_model(), tiny_inputs(n=3)
    assert st.explain(model, x, "gradient", target=2).targets.tolist() == [2, 2, 2]
    assert (
        st.explain(model, x, "gradient", target="espresso", labels=LABELS).targets.tolist()
        == [2] * 3
    )
    assert (
        st.explain(model, x, "gradient", target="Tiger Cat", labels=LABELS).targets.tolist()
        == [1] * 3
    )
    mixed = st.explain(model, x, "gradient", target=[0, "cup", 4], labels=LABELS)
    assert mixed.targets.tolist() == [0, 3, 4]
    assert st.explain(model, x, "gradient", target=torch.tensor([4, 3, 2])).targets.tolist() == [
        4,
        3,
        2,
    ]
    assert st.explain(model, x, "gradient", target="3").targets.tolist() == [3, 3, 3]
    assert mixed.target_names() == ["tabby (0)", "cup (3)", "rocket (4)"]


def test_per_image_targets_give_each_image_its_own_gradient() -> None:
    model, x = tiny_model(), tiny_inputs(n=2)
    both = st.explain(model, x, "gradient", target=[1, 4]).attributions
    first = st.explain(model, x[:1], "gradient", target=1).attributions
    second = st.explain(model, x[1:], "gradient", target=4).attributions
    torch.testing.assert_close(both, torch.cat([first, second]), rtol=0, atol=0)


def test_topk_explains_each_image_once_per_class() -> None:
    model, x = tiny_model(), tiny_inputs(n=2)
    ex = st.explain(model, x, "gradient", target="top3")
    expected = model(x).topk(3, dim=1).indices.reshape(-1)
    assert torch.equal(ex.targets, expected)
    assert ex.image_index.tolist() == [0, 0, 0, 1, 1, 1]
    single = st.explain(model, x[1:], "gradient", target=int(expected[4])).attributions
    torch.testing.assert_close(ex.attributions[4:5], single, rtol=0, atol=0)


def test_callable_target_picks_any_scalar() -> None:
    model, x = tiny_model(), tiny_inputs(n=2)
    ex = st.explain(model, x, "gradient", target=lambda out: out[:, 1] - out[:, 2])
    a = st.explain(model, x, "gradient", target=1).attributions
    b = st.explain(model, x, "gradient", target=2).attributions
    torch.testing.assert_close(ex.attributions, a - b)
    assert ex.targets.tolist() == [-1, -1]
    assert ex.target_names() == ["custom target", "custom target"]


class TupleOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = tiny_model()

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.inner(x), x.mean()


class LogitsOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = tiny_model()

    def forward(self, x: Tensor):  # type: ignore[no-untyped-def]
        from types import SimpleNamespace

        return SimpleNamespace(logits=self.inner(x), hidden=None)


@pytest.mark.parametrize("wrapper", [TupleOut, LogitsOut])
def test_tuple_and_logits_outputs(wrapper: type[nn.Module]) -> None:
    model = wrapper().eval()
    x = tiny_inputs(n=2)
    for method in ["gradient", "integrated_gradients", "grad_cam"]:
        ours = st.explain(model, x, method, target=3).attributions
        plain = st.explain(model.inner, x, method, target=3).attributions
        torch.testing.assert_close(ours, plain, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (5, r"target 5 is out of range: the model has 5 classes \(valid targets are 0 to 4\)"),
        (-1, "negative"),
        ([0, 9, 1], "target 9 is out of range"),
        ([0, 1], "got 2 targets for 3 images"),
        ("espreso", r"unknown class name 'espreso'; did you mean 'espresso'\?"),
        (torch.tensor([0.5, 1.0, 2.0]), "1-D integer class indices"),
        ("top9", r"top9 asks for more classes than the model has \(5\)"),
        (True, "boolean"),
        (3.5, "not understood"),
    ],
)
def test_bad_targets(target: object, message: str) -> None:
    model, x = tiny_model(), tiny_inputs(n=3)
    with pytest.raises(TargetError, match=message):
        st.explain(model, x, "gradient", target=target, labels=LABELS)


def test_class_name_without_labels() -> None:
    with pytest.raises(TargetError, match="no class labels"):
        parse_target("cup", 1, None)


def test_callable_returning_wrong_shape() -> None:
    with pytest.raises(
        TargetError, match=r"must return one score per image, a tensor of shape \(3,\)"
    ):
        st.explain(tiny_model(), tiny_inputs(n=3), "gradient", target=lambda out: out.sum())


def test_output_without_class_scores_is_explained_clearly() -> None:
    model = nn.Sequential(nn.Conv2d(3, 2, 1)).double().eval()
    with pytest.raises(InvalidInputError, match=r"shape \(2, 2, 12, 12\), not \(N, classes\)"):
        st.explain(model, tiny_inputs(n=2), "gradient")
    ok = st.explain(model, tiny_inputs(n=2), "gradient", target=lambda out: out[:, 0].sum((1, 2)))
    assert ok.attributions.shape == (2, 3, 12, 12)


def test_find_layer_suggests_close_names() -> None:
    model = tiny_model()
    assert find_layer(model, "conv2") is model.conv2
    with pytest.raises(LayerError, match=r"no layer 'conv_2' in TinyCNN; did you mean 'conv2'"):
        find_layer(model, "conv_2")
    with pytest.raises(LayerError, match="seethrough layers"):
        find_layer(model, "zzzzzz")


def test_trace_is_in_execution_order_and_counts_reuse() -> None:
    model = tiny_model()
    infos = trace_layers(model, tiny_inputs(n=1))
    names = [i.name for i in infos]
    assert names == ["conv1", "bn1", "conv2", "bn2", "relu", "conv3", "pool", "fc"]
    assert next(i for i in infos if i.name == "relu").calls == 2


def test_default_cam_layer_is_last_spatial_map_run_once() -> None:
    model = tiny_model()  # relu is reused (2 calls) so it is skipped; conv3 runs once
    assert default_cam_layer(model, tiny_inputs(n=1)) == "conv3"
    ex = st.explain(model, tiny_inputs(n=1), "grad_cam")
    assert ex.layer == "conv3"


def test_reused_layer_is_refused_for_cam() -> None:
    with pytest.raises(LayerError, match="runs more than once per forward pass"):
        st.explain(tiny_model(), tiny_inputs(n=1), "grad_cam", layer="relu")


def test_layer_with_flat_output_is_refused_for_cam() -> None:
    with pytest.raises(LayerError, match=r"outputs \(1, 5\) — choose an earlier layer"):
        st.explain(tiny_model(), tiny_inputs(n=1), "grad_cam", layer="fc")


def test_in_place_activation_after_cam_layer_does_not_corrupt_it() -> None:
    """bn1 is followed by ReLU(inplace=True): the captured map must be the pre-ReLU values."""
    model = tiny_model()
    x = tiny_inputs(n=2)
    ex = st.explain(model, x, "grad_cam", layer="bn1", target=0)
    acts = model.bn1(model.conv1(x)).detach()
    assert (acts < 0).any()
    # recompute by hand with autograd on a hooked copy of the forward
    a = acts.clone().requires_grad_()
    h = model.relu(a.clone())
    h = model.relu(model.bn2(model.conv2(h)))
    out = model.fc(model.pool(torch.relu(model.conv3(h))).flatten(1))
    (g,) = torch.autograd.grad(out[:, 0].sum(), a)
    expected = (g.mean((2, 3), keepdim=True) * acts).sum(1, keepdim=True)
    torch.testing.assert_close(ex.attributions, expected, rtol=1e-12, atol=1e-14)


class OOMAbove(nn.Module):
    """Raises a real CUDA out-of-memory error type when a pass has more than `limit` rows."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.inner = tiny_model()
        self.limit = limit
        self.sizes: list[int] = []

    def forward(self, x: Tensor) -> Tensor:
        self.sizes.append(len(x))
        if len(x) > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner(x)


def test_out_of_memory_halves_the_chunk_and_gives_the_same_result() -> None:
    x = tiny_inputs(n=3)
    expected = st.explain(
        tiny_model(), x, "integrated_gradients", steps=8, rule="gausslegendre", batch_size=24
    )
    model = OOMAbove(limit=5).eval()
    ex = st.explain(model, x, "integrated_gradients", steps=8, rule="gausslegendre", batch_size=24)
    torch.testing.assert_close(ex.attributions, expected.attributions, rtol=1e-12, atol=1e-14)
    assert max(s for s in model.sizes if s <= 5) <= 5 and 24 in model.sizes
    assert model.sizes[-1] <= 5


def test_out_of_memory_at_one_row_is_raised() -> None:
    model = OOMAbove(limit=0).eval()
    with pytest.raises(torch.cuda.OutOfMemoryError):
        st.explain(model, tiny_inputs(n=1), "gradient")


def test_budget_validation_and_oom_detection() -> None:
    with pytest.raises(st.errors.InvalidOptionError, match="batch_size must be a positive"):
        Budget(0)
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    chunks: list[tuple[int, int]] = []
    Budget(4).run(10, lambda a, b: chunks.append((a, b)))
    assert chunks == [(0, 4), (4, 8), (8, 10)]


def test_progress_reports_rows_up_to_the_plan() -> None:
    seen: list[tuple[int, int]] = []
    st.explain(
        tiny_model(),
        tiny_inputs(n=2),
        "integrated_gradients",
        steps=6,
        rule="gausslegendre",
        batch_size=5,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen[-1] == (16, 16)  # 2 images × (6 steps + input + baseline passes)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_model_with_float32_and_float64_mismatch_is_explained() -> None:
    model = TinyCNN(dtype=torch.float32).eval()
    with pytest.raises(
        InvalidInputError,
        match=r"inputs are torch.float64 but the model's parameters are torch.float32",
    ):
        st.explain(model, tiny_inputs(n=1), "gradient")


class _ViewHead(nn.Module):
    """A classic small CNN whose head calls ``.view`` on a conv output: it cannot take
    channels-last input."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1).double()
        self.fc = nn.Linear(4 * 12 * 12, 5).double()

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.conv(x))
        return self.fc(h.view(h.shape[0], -1))


class _RawMemory(nn.Module):
    """Reads its input's memory as if it were contiguous (as a careless custom kernel
    would): channels-last input gives different logits, without any error."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = tiny_model()

    def forward(self, x: Tensor) -> Tensor:
        raw = torch.as_strided(x, x.shape, torch.empty(x.shape).stride())
        return self.inner(raw)


def test_layout_auto_uses_channels_last_on_a_plain_cnn_and_gives_contiguous_results() -> None:
    model = tiny_model()
    budget = Budget(layout="auto")
    small = budget.arrange(model, tiny_inputs(n=4))
    assert budget.channels_last is None and small.is_contiguous()  # too few rows to probe
    large = budget.arrange(model, tiny_inputs(n=8))
    assert budget.channels_last is True
    assert large.is_contiguous(memory_format=torch.channels_last)
    x = tiny_inputs(n=9)
    auto = st.explain(model, x, "integrated_gradients", target=1, steps=8, rule="gausslegendre")
    plain = st.explain(
        model,
        x,
        "integrated_gradients",
        target=1,
        steps=8,
        rule="gausslegendre",
        layout="contiguous",
    )
    assert auto.attributions.is_contiguous()
    torch.testing.assert_close(auto.attributions, plain.attributions, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("model_cls", [_ViewHead, _RawMemory])
def test_layout_auto_falls_back_when_the_model_cannot_take_channels_last(
    model_cls: type[nn.Module], caplog: pytest.LogCaptureFixture
) -> None:
    model = model_cls().eval()
    x = tiny_inputs(n=10)
    budget = Budget(layout="auto")
    assert budget.arrange(model, x).is_contiguous()
    assert budget.channels_last is False
    if model_cls is _RawMemory:
        assert "change with the memory layout" in caplog.text
    auto = st.explain(model, x, "occlusion", target=2, window=4, stride=4)
    plain = st.explain(model, x, "occlusion", target=2, window=4, stride=4, layout="contiguous")
    assert torch.equal(auto.attributions, plain.attributions)


def test_layout_validation_and_forced_layouts() -> None:
    with pytest.raises(st.errors.InvalidOptionError, match="unknown layout 'nhwc'"):
        st.explain(tiny_model(), tiny_inputs(), "gradient", layout="nhwc")
    forced = Budget(layout="channels_last")
    assert forced.channels_last is True
    assert forced.arrange(tiny_model(), tiny_inputs(n=1)).is_contiguous(
        memory_format=torch.channels_last
    )
    assert Budget(layout="contiguous").arrange(tiny_model(), tiny_inputs(n=9)).is_contiguous()
    with pytest.raises(RuntimeError, match="view"):
        st.explain(_ViewHead().eval(), tiny_inputs(n=2), "gradient", layout="channels_last")


@pytest.mark.parametrize("method", ["score_cam", "ablation_cam", "occlusion"])
def test_progress_plan_counts_the_perturbed_rows(method: str) -> None:
    seen: list[tuple[int, int]] = []
    options = {"layer": "conv3"} if method != "occlusion" else {"window": 6, "stride": 6}
    st.explain(
        tiny_model(),
        tiny_inputs(n=2),
        method,
        target=1,
        batch_size=5,
        progress=lambda done, total: seen.append((done, total)),
        **options,
    )
    # clean pass (2 rows) + one row per channel (8) or window (4) of each image
    rows = 2 + 2 * (8 if method != "occlusion" else 4)
    assert seen[-1] == (rows, rows)


def test_labels_of_the_wrong_count_are_refused_on_the_first_pass() -> None:
    """The tester's case: ``explain(..., labels=3 names)`` on a 5-class model returned
    normally, naming classes with the wrong labels."""
    model = tiny_model()
    x = tiny_inputs(n=2)
    labels = ["a", "b", "c"]
    with pytest.raises(TargetError, match="the labels name 3 classes but the model outputs 5"):
        st.explain(model, x, "gradient", labels=labels)
    with pytest.raises(TargetError, match="the labels name 3 classes"):
        st.explain(model, x, "grad_cam", target="top2", labels=labels)
    right = [f"class {i}" for i in range(5)]
    assert st.explain(model, x, "gradient", labels=right).class_names == tuple(right)
