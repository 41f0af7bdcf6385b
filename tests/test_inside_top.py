"""Top-activating examples: the streamed top-k equals brute force over all activations,
ties go to the earlier image, receptive fields are exact (by hand and by gradients), crops
are the right pixels, and the model is left untouched."""

from __future__ import annotations

import importlib
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from helpers import Failing, Snapshot, tiny_inputs, tiny_model
from seethrough.data.fashion_mnist import load_fashion_mnist
from seethrough.errors import InvalidInputError, InvalidOptionError, LayerError
from seethrough.inside.receptive_field import Span, receptive_field
from seethrough.inside.top_examples import top_examples
from seethrough.models import load_model
from seethrough.models.fashion_cnn import fashion_cnn
from seethrough.reporting.serialize import to_jsonable


@pytest.fixture(scope="module")
def fashion() -> tuple[nn.Module, Tensor]:
    """The trained CNN and 300 real test images, in float64: rounding differences between
    chunked and whole-batch convolutions (~1e-15) stay far below the gaps between maxima."""
    return fashion_cnn().double(), load_fashion_mnist("test").inputs(0, 300).double()


def _fashion_layers(model: nn.Module) -> dict[str, Callable[[Tensor], Tensor]]:
    """The Fashion CNN computed by hand, layer by layer (no hooks)."""
    conv1 = model.conv1
    pool1 = lambda x: model.pool1(model.relu1(conv1(x)))  # noqa: E731
    conv2 = lambda x: model.conv2(pool1(x))  # noqa: E731
    pool2 = lambda x: model.pool2(model.relu2(conv2(x)))  # noqa: E731
    return {"conv1": conv1, "pool1": pool1, "conv2": conv2, "pool2": pool2}


def _brute_force(maps: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per channel, the k images with the largest maximum (stable: earlier image first on
    ties), their values and the flat position of each maximum."""
    best, where = maps.flatten(2).max(dim=2)  # (N, C)
    order = torch.sort(best, dim=0, descending=True, stable=True).indices[:k]
    return best.gather(0, order).T, order.T, where.gather(0, order).T


@pytest.mark.parametrize(("layer", "batch_size"), [("conv2", None), ("pool2", 7), ("conv1", 64)])
def test_top_k_equals_brute_force_on_real_fashion_images(
    fashion: tuple[nn.Module, Tensor], layer: str, batch_size: int | None
) -> None:
    model, x = fashion
    snapshot = Snapshot.take(model, x)
    te = top_examples(model, x, layer, k=6, batch_size=batch_size)
    snapshot.assert_unchanged(model, x)
    with torch.no_grad():
        maps = _fashion_layers(model)[layer](x)
    values, indices, where = _brute_force(maps, 6)
    torch.testing.assert_close(te.values, values, rtol=1e-12, atol=1e-12)
    gaps = (values[:, :-1] - values[:, 1:]).abs()
    assert gaps[gaps > 0].min() > 1e-9  # so the order cannot hinge on rounding
    assert torch.equal(te.indices, indices)
    width = maps.shape[3]
    assert torch.equal(te.locations[..., 0] * width + te.locations[..., 1], where)
    assert te.count == 300 and te.layer_channels == maps.shape[1]
    assert set(te.images) == set(te.indices.flatten().tolist())  # only the hits are kept


def test_tiny_model_iterable_of_batches_and_chosen_channels() -> None:
    model = tiny_model()
    x = tiny_inputs(23, seed=5)
    batches = [(x[a : a + 5], torch.zeros(5)) for a in range(0, 23, 5)]  # DataLoader-like
    te = top_examples(model, batches, "bn2", channels=[7, 0, 3], k=4, batch_size=3)
    with torch.no_grad():
        maps = model.bn2(model.conv2(model.relu(model.bn1(model.conv1(x)))))[:, [7, 0, 3]]
    values, indices, where = _brute_force(maps, 4)
    torch.testing.assert_close(te.values, values, rtol=1e-12, atol=1e-12)
    assert torch.equal(te.indices, indices) and te.channels.tolist() == [7, 0, 3]
    assert torch.equal(te.locations[..., 0] * 12 + te.locations[..., 1], where)
    assert te.count == 23


def test_ties_go_to_the_earlier_image_and_the_first_position() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3)).double().eval()
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.copy_(torch.tensor([0.5, -1.0]))  # every unit of every image ties
    x = torch.randn(10, 1, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    te = top_examples(model, x, "0", k=4, batch_size=3)
    assert te.indices.tolist() == [[0, 1, 2, 3]] * 2
    assert te.locations.flatten(0, 1).tolist() == [[0, 0]] * 8
    assert te.values.tolist() == [[0.5] * 4, [-1.0] * 4]


def test_fewer_images_than_k_gives_all_of_them() -> None:
    model = tiny_model()
    te = top_examples(model, tiny_inputs(3), "conv1", k=9)
    assert te.k == 3 and sorted(te.indices[0].tolist()) == [0, 1, 2]


# Receptive field of the Fashion CNN, by hand. Along one axis, unit i of a layer sees input
# pixels [offset + i*jump, offset + i*jump + size); a window (kernel k, stride s, padding p)
# maps (size, jump, offset) to (size + (k-1)*jump, jump*s, offset - p*jump):
#   input                       (1, 1,  0)
#   conv1  5×5, pad 2, stride 1 (1 + 4*1 = 5,   1,  0 - 2*1 = -2)
#   pool1  2×2, stride 2        (5 + 1*1 = 6,   2, -2)
#   conv2  5×5, pad 2, stride 1 (6 + 4*2 = 14,  2, -2 - 2*2 = -6)
#   pool2  2×2, stride 2        (14 + 1*2 = 16, 4, -6)
FASHION_FIELDS = {
    "conv1": Span(5, 1, -2),
    "pool1": Span(6, 2, -2),
    "conv2": Span(14, 2, -6),
    "pool2": Span(16, 4, -6),
}


def _gradient_box(
    forward: Callable[[Tensor], Tensor], row: int, col: int, size: int
) -> tuple[int, int, int, int]:
    """The bounding box of the input pixels with a non-zero gradient of unit (row, col),
    over 64 random inputs (each ReLU pattern and max-pool choice hides some pixels; the
    union over many inputs reveals them all)."""
    x = torch.randn(64, 1, size, size, generator=torch.Generator().manual_seed(0))
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(forward(x)[:, :, row, col].sum(), x)
    hit = grad.abs().sum(dim=(0, 1)) > 0
    rows, cols = hit.any(dim=1).nonzero()[:, 0], hit.any(dim=0).nonzero()[:, 0]
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


@pytest.mark.parametrize("layer", list(FASHION_FIELDS))
def test_fashion_cnn_receptive_fields_by_hand_and_by_gradients(layer: str) -> None:
    model = fashion_cnn()
    x = load_fashion_mnist("test").inputs(0, 1)
    snapshot = Snapshot.take(model, x)
    field = receptive_field(model, layer, x)
    snapshot.assert_unchanged(model, x)
    span = FASHION_FIELDS[layer]
    assert (field.rows, field.cols) == (span, span)
    assert field.size == (span.size,) * 2 and field.stride == (span.jump,) * 2
    assert field.start == (span.offset,) * 2
    h = field.map_size[0]
    forward = _fashion_layers(model)[layer]
    for row, col in [(0, 0), (h // 2, h // 2 - 1), (h - 1, 1), (h - 1, h - 1)]:
        assert field.box(row, col) == _gradient_box(forward, row, col, 28), (row, col)


def test_global_layers_see_the_whole_image() -> None:
    model = fashion_cnn()
    x = load_fashion_mnist("test").inputs(0, 1)
    field = receptive_field(model, "fc1", x)
    assert field.stride == (0, 0) and field.box(0, 0) == (0, 0, 28, 28)
    pooled = receptive_field(tiny_model(), "pool", tiny_inputs(1))  # adaptive pool to 1×1
    assert pooled.box(0, 0) == (0, 0, 12, 12)


def test_tensorflow_same_padding_of_efficientnet() -> None:
    # F.pad before each conv: at 224 px the stem (3×3, stride 2) pads 0 before and 1 after,
    # so unit i sees [2i, 2i+3); block 0's depthwise 3×3 pads 1: (3+2*2, 2, 0-1*2);
    # block 1's depthwise 3×3 stride 2 at 112 px pads 0 before: (7+2*2, 4, -2).
    net = load_model("efficientnet-lite0")
    x = torch.zeros(1, 3, 224, 224)
    assert receptive_field(net, "_conv_stem", x).rows == Span(3, 2, 0)
    assert receptive_field(net, "_blocks.0", x).cols == Span(7, 2, -2)
    field = receptive_field(net, "_blocks.1", x)
    assert field.rows == Span(11, 4, -2) and field.map_size == (56, 56)


def test_boxes_and_crops_are_the_strongest_units_pixels(
    fashion: tuple[nn.Module, Tensor],
) -> None:
    model, x = fashion
    te = top_examples(model, x[:100], "pool2", channels=[3, 10], k=5)
    field = te.receptive_field
    crops = te.crops()
    assert len(crops) == 2 and all(len(row) == 5 for row in crops)
    for r in range(2):
        for j in range(5):
            row, col = te.locations[r, j].tolist()
            top, left, bottom, right = field.box(row, col)
            assert te.boxes[r, j].tolist() == [top, left, bottom, right]
            assert (top, left) == (max(0, 4 * row - 6), max(0, 4 * col - 6))
            assert (bottom, right) == (min(28, 4 * row + 10), min(28, 4 * col + 10))
            image = x[int(te.indices[r, j])]
            assert torch.equal(crops[r][j], image[:, top:bottom, left:right])
    d = to_jsonable(te)
    assert d["receptive_field"]["size"] == [16, 16] and d["images_seen"] == 100
    assert d["channels"][1]["hits"][0]["image"] == int(te.indices[1, 0])


def test_fashion_mnist_dataset_object_is_streamed_in_blocks(
    monkeypatch: pytest.MonkeyPatch, fashion: tuple[nn.Module, Tensor]
) -> None:
    top = importlib.import_module("seethrough.inside.top_examples")  # the module, not the function

    model, x = fashion
    data = load_fashion_mnist("test")
    small = type(data)(data.images[:300], data.labels[:300], data.split, data.root)
    monkeypatch.setattr(top, "BLOCK_ROWS", 128)  # three blocks
    done: list[tuple[int, int]] = []
    te = top_examples(model, small, "conv2", k=3, progress=lambda d, t: done.append((d, t)))
    reference = top_examples(model, x, "conv2", k=3)
    assert torch.equal(te.indices, reference.indices)
    torch.testing.assert_close(te.values, reference.values, rtol=1e-12, atol=1e-12)
    assert done[-1] == (300, 300) and len(done) >= 3


INPUTS = "tiny inputs"


@pytest.mark.parametrize(
    ("data", "kwargs", "error", "message"),
    [
        ("imagenet", {}, InvalidOptionError, "unknown dataset 'imagenet'"),
        (torch.zeros(3, 12, 12), {}, InvalidInputError, "add a batch dimension"),
        ([torch.zeros(0, 3, 12, 12)], {}, InvalidInputError, "nothing to explain"),
        ([], {}, InvalidInputError, "the dataset is empty"),
        (["x"], {}, InvalidInputError, "a dataset batch must be a tensor"),
        (None, {}, InvalidInputError, "cannot stream a NoneType"),
        (INPUTS, {"k": 0}, InvalidOptionError, "k must be a positive integer"),
        (INPUTS, {"channels": [8]}, InvalidOptionError, "channel 8 is out of range"),
        (INPUTS, {"layer": "relu"}, LayerError, "runs more than once"),
        (INPUTS, {"layer": "conv4"}, LayerError, "no layer 'conv4'"),
    ],
)
def test_bad_input_raises_and_leaves_the_model_untouched(
    data: object, kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    model = tiny_model()
    source = tiny_inputs(4) if data is INPUTS else data
    snapshot = Snapshot.take(model)
    options = {"layer": "conv2", **kwargs}
    with pytest.raises(error, match=message):
        top_examples(model, source, **options)  # type: ignore[arg-type]
    snapshot.assert_unchanged(model)


def test_batches_of_different_shapes_are_refused() -> None:
    model = tiny_model()
    with pytest.raises(InvalidInputError, match="every image must have the same shape"):
        top_examples(model, [tiny_inputs(2), tiny_inputs(2, size=10)], "conv2")


def test_error_in_forward_leaves_everything_unchanged() -> None:
    model = Failing(tiny_model(), fail_on=4).eval()
    snapshot = Snapshot.take(model)
    with pytest.raises(RuntimeError, match="boom"):
        top_examples(model, tiny_inputs(6), "inner.conv2", batch_size=2)
    snapshot.assert_unchanged(model)


def test_top_examples_figure_rows_are_channels_and_columns_the_hits(
    fashion: tuple[nn.Module, Tensor],
) -> None:
    from seethrough.viz import plot_top_examples

    model, x = fashion
    te = top_examples(model, x[:50], "conv2", channels=[4, 9, 1], k=3)
    figure = plot_top_examples(te, channels=[0, 2])
    assert len(figure.axes) == 2 * 3
    assert figure.get_suptitle().startswith("conv2 — top 3 of 50 images")
    first = figure.axes[0]
    assert first.get_ylabel() == "ch 4"
    assert first.get_title() == f"#{int(te.indices[0, 0])}  {float(te.values[0, 0]):.3g}"
    top, left, bottom, right = te.boxes[0, 0].tolist()
    assert first.get_images()[0].get_array().shape[:2] == (bottom - top, right - left)
