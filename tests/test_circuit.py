"""Class circuits (issue 17, part 4): the fewest channels that keep a class's decisions.

Reference checks, each independent of the search code: the kept fraction and its counts
recomputed from per-image predictions of the test's own ablation hook; the greedy size
against an exhaustive search over every subset of a small trained layer; the pruned model
against the original with the test's own hook; Jaccard indices computed by hand.
"""

from __future__ import annotations

import dataclasses
import io
import math
import pickle
from typing import Any

import pytest
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

import seethrough as st
from helpers import Failing, Snapshot, tiny_model
from seethrough.data.fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist
from seethrough.decompose import Circuit, circuit, circuit_overlap
from seethrough.errors import InvalidInputError, InvalidOptionError, LayerError, ModelStateError
from seethrough.models.training import train_classifier
from seethrough.reporting.serialize import to_jsonable
from seethrough.viz import plot_circuit, plot_circuit_overlap
from words_helpers import assert_round_trip

Z95 = 1.6448536269514722  # one-sided 95 % normal quantile


class TinyFashion(nn.Module):
    """A small Fashion-MNIST CNN whose second conv has 8 channels: 2⁸ subsets."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, stride=2, padding=2)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(8 * 7 * 7, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.relu2(self.conv2(self.relu1(self.conv1(x)))).flatten(1))


class ViewByInputBatch(TinyFashion):
    """The same network, but it reads the batch size from the input (``view(n, -1)``):
    repeating a layer's output inside a hook breaks it."""

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        return self.fc(self.relu2(self.conv2(self.relu1(self.conv1(x)))).view(n, -1))


@pytest.fixture(scope="module")
def tiny() -> TinyFashion:
    train = load_fashion_mnist("train")
    torch.manual_seed(0)
    model = TinyFashion()
    train_classifier(model, train.inputs(0, 6000), train.labels[:6000], epochs=2, seed=0)
    return model.eval()


@pytest.fixture(scope="module")
def data() -> tuple[Tensor, Tensor]:
    test = load_fashion_mnist("test")
    return test.inputs(0, 1000), test.labels[:1000]


def _ablated(model: nn.Module, layer: str, keep: Tensor, fill: Tensor) -> Any:
    """The test's own ablation: a forward hook that fills the dropped channels."""
    mask = keep.reshape(1, -1, *([1] * (fill.dim() - 1)))
    module = dict(model.named_modules())[layer]
    return module.register_forward_hook(lambda m, i, o: torch.where(mask, o, fill))


def _predict(model: nn.Module, x: Tensor, layer: str, keep: Tensor, fill: Tensor) -> Tensor:
    handle = _ablated(model, layer, keep, fill)
    try:
        with torch.inference_mode():
            return model(x).argmax(dim=1)
    finally:
        handle.remove()


def _mean(model: nn.Module, x: Tensor, layer: str) -> Tensor:
    out: list[Tensor] = []
    module = dict(model.named_modules())[layer]
    handle = module.register_forward_hook(lambda m, i, o: out.append(o.double().sum(0)))
    with torch.inference_mode():
        model(x)
    handle.remove()
    return (out[0] / len(x)).float()


def _kept(pred: Tensor, full: Tensor, y: Tensor, cls: int, z: float = 0.0) -> float:
    """The definition, from per-image predictions: min(class-accuracy ratio, precision
    ratio), both lowered by z·sqrt(discordant images) on the circuit's counts."""
    member, said, base = y == cls, pred == cls, full == cls
    tp = int((said & member).sum())
    fp = int((said & ~member).sum())
    tp_f, fp_f = int((base & member).sum()), int((base & ~member).sum())
    tp_lo = max(0.0, tp - z * math.sqrt(int((said != base)[member].sum())))
    fp_hi = fp + z * math.sqrt(int((said != base)[~member].sum()))
    precision = tp_lo / (tp_lo + fp_hi) if tp_lo > 0 else 0.0
    return min(tp_lo / tp_f, precision / (tp_f / (tp_f + fp_f)))


def _mask(size: int, channels: tuple[int, ...]) -> Tensor:
    keep = torch.zeros(size, dtype=torch.bool)
    keep[list(channels)] = True
    return keep


# ------------------------------------------------------------------ the search


@pytest.fixture(scope="module")
def every_subset(tiny: TinyFashion, data: tuple[Tensor, Tensor]) -> dict[tuple[int, ...], Tensor]:
    """The predictions with each of the 2⁸ subsets of relu2's channels kept (the test's
    own mean-ablation hook, mean over all the images)."""
    x, _ = data
    fill = _mean(tiny, x, "relu2")
    subsets = [tuple(c for c in range(8) if bits >> c & 1) for bits in range(256)]
    return {s: _predict(tiny, x, "relu2", _mask(8, s), fill) for s in subsets}


@pytest.mark.parametrize(("confidence", "z"), [(0.5, 0.0), (0.95, Z95)])
def test_greedy_is_within_1_2_of_the_exhaustive_minimum(
    tiny: TinyFashion,
    data: tuple[Tensor, Tensor],
    every_subset: dict[tuple[int, ...], Tensor],
    confidence: float,
    z: float,
) -> None:
    """Every class, keep 0.95: the greedy circuit has at most 1.2 × the channels of the
    smallest subset (of all 2⁸) whose kept fraction — computed here from the test's own
    hook — reaches keep on the same images."""
    x, y = data
    preds, subsets = every_subset, list(every_subset)
    full = preds[tuple(range(8))]
    for cls in range(10):
        found = circuit(
            tiny, (x, y), cls, layers="relu2", held_out=0, validation=0, confidence=confidence
        )
        smallest = min(len(s) for s in subsets if _kept(preds[s], full, y, cls, z) >= 0.95)
        assert found.size <= 1.2 * smallest, (cls, found.channels, smallest)
        chosen = found.channels["relu2"]
        assert _kept(preds[chosen], full, y, cls, z) >= 0.95  # it does keep the class
        assert found.search.kept_lower == pytest.approx(_kept(preds[chosen], full, y, cls, z))


def test_counts_equal_the_tests_own_ablation_on_search_and_held_out(
    tiny: TinyFashion, data: tuple[Tensor, Tensor]
) -> None:
    x, y = data
    found = circuit(tiny, (x, y), "Coat", layers="relu2", labels=FASHION_MNIST_CLASSES)
    cls = FASHION_MNIST_CLASSES.index("Coat")
    search, held = found.search_index, found.held_out_index
    assert held is not None and found.held_out is not None
    assert len(search) + len(held) == len(x)
    assert not set(search.tolist()) & set(held.tolist())
    fill = _mean(tiny, x[search], "relu2")  # the mean over the search images
    torch.testing.assert_close(found.fills["relu2"], fill, rtol=1e-6, atol=1e-7)
    keep = found.kept_mask("relu2")
    for rows, score in ((search, found.search), (held, found.held_out)):
        pred = _predict(tiny, x[rows], "relu2", keep, found.fills["relu2"])
        full = _predict(tiny, x[rows], "relu2", torch.ones(8, dtype=torch.bool), fill)
        member = y[rows] == cls
        assert score.images == int(member.sum())
        assert score.correct == int(((pred == cls) & member).sum())
        assert score.correct_full == int(((full == cls) & member).sum())
        assert score.false_positives == int(((pred == cls) & ~member).sum())
        assert score.false_positives_full == int(((full == cls) & ~member).sum())
        assert score.lost == int(((full == cls) & (pred != cls) & member).sum())
        assert score.kept == pytest.approx(_kept(pred, full, y[rows], cls))
        assert score.kept_lower == pytest.approx(_kept(pred, full, y[rows], cls, Z95))
    checked = found.validation_index
    assert checked is not None and found.validation is not None
    assert set(checked.tolist()) < set(search.tolist())
    pred = _predict(tiny, x[checked], "relu2", keep, found.fills["relu2"])
    full = _predict(tiny, x[checked], "relu2", torch.ones(8, dtype=torch.bool), fill)
    assert found.validation.correct == int(((pred == cls) & (y[checked] == cls)).sum())
    # every move was verified on these images: the final circuit keeps the class there
    assert found.validation.kept_lower >= found.keep
    assert found.validation.kept_lower == pytest.approx(_kept(pred, full, y[checked], cls, Z95))


def test_same_seed_same_circuit_and_another_seed_another_split(
    tiny: TinyFashion, data: tuple[Tensor, Tensor]
) -> None:
    x, y = data
    a = circuit(tiny, (x, y), 4, layers="relu2", seed=3)
    b = circuit(tiny, (x, y), 4, layers="relu2", seed=3)
    c = circuit(tiny, (x, y), 4, layers="relu2", seed=4)
    assert a.channels == b.channels and a.order == b.order and a.search == b.search
    assert a.held_out == b.held_out and torch.equal(a.fills["relu2"], b.fills["relu2"])
    assert torch.equal(a.search_index, b.search_index)
    assert not torch.equal(a.search_index, c.search_index)


def test_a_model_that_reads_the_batch_size_runs_unbatched_with_the_same_result(
    tiny: TinyFashion, data: tuple[Tensor, Tensor]
) -> None:
    x, y = data[0][:300], data[1][:300]
    other = ViewByInputBatch()
    other.load_state_dict(tiny.state_dict())
    other.eval()
    a = circuit(tiny, (x, y), 1, layers="relu2")
    b = circuit(other, (x, y), 1, layers="relu2")
    assert a.settings["batched"] and not b.settings["batched"]
    assert a.channels == b.channels and a.search == b.search and a.held_out == b.held_out


def test_several_layers_form_one_circuit_and_zero_ablation(
    tiny: TinyFashion, data: tuple[Tensor, Tensor]
) -> None:
    x, y = data[0][:400], data[1][:400]
    found = circuit(tiny, (x, y), 7, layers=["relu1", "relu2"], ablation="zero", held_out=0)
    assert found.layers == ("relu1", "relu2") and found.total == 14
    assert found.size == sum(len(v) for v in found.channels.values())
    assert found.held_out is None and found.held_out_index is None
    assert all(torch.equal(f, torch.zeros_like(f)) for f in found.fills.values())
    pruned = found.pruned_model()
    handles = [_ablated(tiny, n, found.kept_mask(n), found.fills[n]) for n in found.layers]
    try:
        with torch.inference_mode():
            expected = tiny(x)
    finally:
        for h in handles:
            h.remove()
    with torch.inference_mode():
        torch.testing.assert_close(pruned(x), expected, rtol=0, atol=0)


# ------------------------------------------------------------------ pruned model


def test_pruned_model_equals_the_original_with_the_ablation_hook(
    tiny: TinyFashion, data: tuple[Tensor, Tensor]
) -> None:
    x, y = data
    before = Snapshot.take(tiny)
    found = circuit(tiny, (x, y), 2, layers="relu2")
    pruned = found.pruned_model()
    before.assert_unchanged(tiny)
    assert pruned is not tiny
    assert dict(pruned.named_parameters())["conv1.weight"] is not tiny.conv1.weight
    with torch.inference_mode():
        expected = None
        handle = _ablated(tiny, "relu2", found.kept_mask("relu2"), found.fills["relu2"])
        try:
            expected = tiny(x)
        finally:
            handle.remove()
        torch.testing.assert_close(pruned(x), expected, rtol=0, atol=0)
        # the search's counts are the pruned model's decisions
        held = found.held_out_index
        assert held is not None and found.held_out is not None
        said = pruned(x[held]).argmax(dim=1) == 2
        assert int((said & (y[held] == 2)).sum()) == found.held_out.correct
    before.assert_unchanged(tiny)
    # a real module: pickles, moves dtype, and a circuit of it stacks its own buffers
    copy = pickle.loads(pickle.dumps(pruned))
    with torch.inference_mode():
        torch.testing.assert_close(copy(x[:8]), pruned(x[:8]), rtol=0, atol=0)
        wide = pruned.double()
        torch.testing.assert_close(wide(x[:8].double()).float(), expected[:8], atol=1e-4, rtol=0)
    again = circuit(copy, (x, y), 2, layers="relu2", held_out=0).pruned_model()
    buffers = dict(again.named_buffers())
    assert {"relu2.circuit_kept", "relu2.circuit_kept_1"} <= set(buffers)


@pytest.mark.slow
def test_fashion_cnn_coat_circuit_keeps_the_class_on_held_out_images() -> None:
    """The issue's check: on the real Fashion-MNIST CNN, the pruned model's class
    accuracy for Coat on held-out images is within keep of the full model's."""
    net = st.load_model("fashion-cnn")
    test = load_fashion_mnist("test")
    x, y = test.inputs(0, 2000), test.labels[:2000]
    before = Snapshot.take(net.module)
    found = circuit(net, (x, y), "Coat", keep=0.95)
    before.assert_unchanged(net.module)
    assert found.layers == ("pool2",) and found.size < found.total
    held = found.held_out
    assert found.held_out_index is not None and held is not None
    pruned = found.pruned_model()
    with torch.inference_mode():
        said = pruned(x[found.held_out_index]).argmax(dim=1) == 4
        full = net.module(x[found.held_out_index]).argmax(dim=1) == 4
    member = y[found.held_out_index] == 4
    correct, correct_full = int((said & member).sum()), int((full & member).sum())
    assert (correct, correct_full) == (held.correct, held.correct_full)
    assert correct >= 0.95 * correct_full  # class accuracy within keep, held out
    assert held.kept >= 0.95  # and precision too


# ------------------------------------------------------------------ overlap


def test_jaccard_matrix_by_hand(tiny: TinyFashion, data: tuple[Tensor, Tensor]) -> None:
    x, y = data[0][:300], data[1][:300]
    base = circuit(tiny, (x, y), 1, layers=["relu1", "relu2"], held_out=0)

    def made(name: str, relu1: tuple[int, ...], relu2: tuple[int, ...]) -> Circuit:
        return dataclasses.replace(base, class_name=name, channels={"relu1": relu1, "relu2": relu2})

    a = made("a", (0, 1), (2, 3))  # {r1:0, r1:1, r2:2, r2:3}
    b = made("b", (1,), (3, 4, 5))  # shares r1:1, r2:3 → 2 of 6
    c = made("c", (), ())
    d = made("d", (), ())
    result = circuit_overlap([a, b, c, d])
    expected = torch.tensor(
        [
            [1.0, 2 / 6, 0.0, 0.0],
            [2 / 6, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 1.0],  # two empty circuits: identical sets
            [0.0, 0.0, 1.0, 1.0],
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(result.jaccard, expected, rtol=0, atol=1e-15)
    assert result.shared.tolist() == [[4, 2, 0, 0], [2, 4, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert result.classes == ("a", "b", "c", "d")
    words = result.describe()
    assert [f.key for f in words.findings] == [
        "decompose.circuit_overlap.most",
        "decompose.circuit_overlap.least",
    ]
    assert words.findings[0].values["a"] == "c" and words.findings[0].values["b"] == "d"
    assert_round_trip(words, to_jsonable(result))
    with pytest.raises(InvalidInputError, match="different layers"):
        circuit_overlap([a, circuit(tiny, (x, y), 1, layers="relu2", held_out=0)])
    with pytest.raises(InvalidInputError, match="at least one"):
        circuit_overlap([])
    assert isinstance(plot_circuit_overlap(result), Figure)


# ------------------------------------------------------------------ words and figures


def test_describe_round_trips_and_hedges_a_held_out_shortfall(
    tiny: TinyFashion, data: tuple[Tensor, Tensor]
) -> None:
    x, y = data[0][:500], data[1][:500]
    found = circuit(tiny, (x, y), "Coat", layers="relu2", labels=FASHION_MNIST_CLASSES)
    words = found.describe()
    assert words.findings[0].key == "decompose.circuit.size"
    assert_round_trip(words, to_jsonable(found))
    assert "Coat" in words.text("en") and "Coat" in words.text("zh")
    assert found.held_out is not None
    short = dataclasses.replace(
        found, held_out=dataclasses.replace(found.held_out, kept=found.keep - 0.1)
    )
    finding = short.describe().findings[-1]
    assert (finding.key, finding.claim) == ("decompose.circuit.held_out_short", "hedged")
    none = dataclasses.replace(found, held_out=None).describe().findings[-1]
    assert none.key == "decompose.circuit.no_held_out"
    buffer = io.BytesIO()
    plot_circuit(found).savefig(buffer, format="png")
    assert buffer.getvalue()[:4] == b"\x89PNG"


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"keep": 0}, InvalidOptionError, r"keep must be a fraction in \(0, 1\]"),
        ({"keep": 1.5}, InvalidOptionError, r"keep must be a fraction in \(0, 1\]"),
        ({"keep": -0.2}, InvalidOptionError, r"keep must be a fraction in \(0, 1\]"),
        ({"keep": True}, InvalidOptionError, r"keep must be a fraction"),
        ({"confidence": 1.0}, InvalidOptionError, r"confidence must be in \[0.5, 1\)"),
        ({"ablation": "median"}, InvalidOptionError, "unknown ablation 'median'"),
        ({"held_out": 1.0}, InvalidOptionError, r"held_out must be a share"),
        ({"swaps": -1}, InvalidOptionError, "swaps must be"),
        ({"cls": "Coatt"}, InvalidInputError, "unknown class 'Coatt'; did you mean 'Coat'"),
        ({"cls": 10}, InvalidInputError, "give an index 0 to 9"),
        ({"layers": "relu9"}, LayerError, "no layer 'relu9'.*did you mean"),
        ({"layers": ["relu2", "relu2"]}, LayerError, "lists a layer twice"),
    ],
)
def test_bad_input_is_a_clear_error_and_the_model_is_untouched(
    tiny: TinyFashion,
    data: tuple[Tensor, Tensor],
    options: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    x, y = data[0][:200], data[1][:200]
    kwargs: dict[str, Any] = {"cls": "Coat", "layers": "relu2", **options}
    before = Snapshot.take(tiny, x)
    with pytest.raises(error, match=message):
        circuit(tiny, (x, y), labels=FASHION_MNIST_CLASSES, **kwargs)
    before.assert_unchanged(tiny, x)


def test_bad_data_reused_layers_and_training_mode_are_clear_errors(
    tiny: TinyFashion, data: tuple[Tensor, Tensor]
) -> None:
    x, y = data[0][:200], data[1][:200]
    with pytest.raises(InvalidInputError, match="one label per input"):
        circuit(tiny, (x, y[:10]), 1)
    with pytest.raises(InvalidInputError, match="labels must be a 1-D integer tensor"):
        circuit(tiny, (x, y.float()), 1)
    with pytest.raises(InvalidInputError, match="must be \\(inputs, labels\\)"):
        circuit(tiny, x, 1)
    with pytest.raises(InvalidInputError, match="is a name but the model has no labels"):
        circuit(tiny, (x, y), "Coat")
    reused = tiny_model()  # its ReLU module runs twice per pass
    images = torch.randn(20, 3, 8, 8, dtype=torch.float64)
    with pytest.raises(LayerError, match="runs 2 times per forward pass"):
        circuit(reused, (images, torch.arange(20) % 5), 1, layers="relu")
    tiny.train()
    try:
        with pytest.raises(ModelStateError, match="training mode"):
            circuit(tiny, (x, y), 1, layers="relu2")
    finally:
        tiny.eval()


def test_model_untouched_when_the_search_raises_midway(
    tiny: TinyFashion, data: tuple[Tensor, Tensor]
) -> None:
    x, y = data[0][:200], data[1][:200]
    failing = Failing(tiny, fail_on=6).eval()
    before = Snapshot.take(failing, x)
    with pytest.raises(RuntimeError, match="boom"):
        circuit(failing, (x, y), 1, layers="inner.relu2")
    before.assert_unchanged(failing, x)
    assert failing.calls >= 6  # it failed during the search, not before
