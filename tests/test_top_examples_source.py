"""Top-activating examples over a dataset read through the one reader (issue 15, part 5):
an image source gives the same hits as the tensor path on the same images (Fashion-MNIST
and a folder of real photos with a corrupt file), each hit names its source position and
path, unreadable files are skipped and counted, the source is streamed (never decoded
whole before the model runs), and the CLI ranks a folder given as --dataset."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import skimage.data
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from helpers import Snapshot, tiny_model
from seethrough.core.datasets import model_source
from seethrough.data import load_image
from seethrough.data.fashion_mnist import load_fashion_mnist
from seethrough.errors import InvalidOptionError
from seethrough.inside.top_examples import TopExamples, top_examples
from seethrough.models import load_model
from seethrough.models.preprocess import Preprocess
from test_cli import run_cli

FASHION_N = 300


def _assert_same_hits(a: TopExamples, b: TopExamples) -> None:
    """Bitwise the same ranking: values, positions, locations, boxes, kept images."""
    assert torch.equal(a.values, b.values)
    assert torch.equal(a.indices, b.indices)
    assert torch.equal(a.locations, b.locations) and torch.equal(a.boxes, b.boxes)
    assert set(a.images) == set(b.images)
    assert all(torch.equal(a.images[i], b.images[i]) for i in a.images)


@pytest.mark.parametrize("layer", ["conv2", "pool2"])
def test_fashion_mnist_source_equals_the_tensor_path(layer: str) -> None:
    net = load_model("fashion-cnn")
    source = model_source(net, "fashion-mnist:test", limit=FASHION_N).source
    x = load_fashion_mnist("test").inputs(0, FASHION_N)
    snapshot = Snapshot.take(net.module, x)
    # Equal batch sizes make equal forward batches (blocks of 50 from the source, chunks of
    # 50 of the tensor), so the float32 activations are bitwise the same.
    streamed = top_examples(net, source, layer, channels=[0, 5, 17], k=5, batch_size=50)
    whole = top_examples(net.module, x, layer, channels=[0, 5, 17], k=5, batch_size=50)
    snapshot.assert_unchanged(net.module, x)
    _assert_same_hits(streamed, whole)
    gaps = (whole.values[:, :-1] - whole.values[:, 1:]).abs()
    assert gaps[gaps > 0].min() > 1e-5  # the order does not hinge on rounding
    assert streamed.paths == tuple(
        tuple(f"fashion-mnist:test#{i}" for i in row) for row in whole.indices.tolist()
    )
    assert whole.paths == tuple(("",) * 5 for _ in range(3))  # tensors have no paths
    assert (streamed.count, streamed.skipped, whole.skipped) == (FASHION_N, 0, 0)


def test_fashion_mnist_spec_and_split_name_the_same_paths() -> None:
    """The spec string with a LoadedModel (streamed through the reader) and the
    FashionMNIST split (the old path): the same hits over the 10,000 test images, with the
    same paths."""
    net = load_model("fashion-cnn")
    by_spec = top_examples(net, "fashion-mnist:test", "conv1", channels=[0, 7], k=5)
    split = top_examples(net.module, load_fashion_mnist("test"), "conv1", channels=[0, 7], k=5)
    torch.testing.assert_close(by_spec.values, split.values, rtol=1e-6, atol=1e-6)
    assert torch.equal(by_spec.indices, split.indices)
    assert by_spec.paths == split.paths and by_spec.count == split.count == 10_000
    assert by_spec.paths[0][0] == f"fashion-mnist:test#{int(split.indices[0, 0])}"


PHOTOS: dict[str, tuple[str, Callable[[], object]]] = {
    "chelsea.png": ("cat", lambda: skimage.data.chelsea()[::4, ::4]),
    "chelsea_flip.jpg": ("cat", lambda: skimage.data.chelsea()[::4, ::-4]),
    "coffee.jpg": ("cup", lambda: skimage.data.coffee()[::4, ::4]),
    "astronaut.png": ("misc", lambda: skimage.data.astronaut()[::4, ::4]),
    "camera.png": ("misc", lambda: skimage.data.camera()[::4, ::4]),
    "rocket.jpg": ("misc", lambda: skimage.data.rocket()[::4, ::4]),
    "coins.png": ("misc", lambda: skimage.data.coins()[::4, ::4]),
}


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """Real photos in class subfolders, plus one corrupt file ('misc/broken.png')."""
    root = tmp_path / "photos"
    for name, (label, load) in PHOTOS.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(load()).save(root / label / name)  # type: ignore[arg-type]
    (root / "misc" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but not an image")
    return root


def _tiny_net() -> object:
    """A float64 CNN with a known preprocessing (32 × 32, no crop) and the folders' names."""
    return load_model(
        tiny_model(),
        preprocess=Preprocess(size=32, crop_fraction=1.0),
        labels=["cat", "cup", "misc", "dog", "car"],
    )


def test_folder_of_photos_with_a_corrupt_file_equals_the_tensor_path(
    photos: Path, caplog: pytest.LogCaptureFixture
) -> None:
    net = _tiny_net()
    source = model_source(net, photos).source
    records = [source.record(i)[0] for i in range(len(source))]
    good = [i for i, path in enumerate(records) if not path.endswith("broken.png")]
    assert len(records) == 8 and len(good) == 7  # the corrupt file is listed, in order
    x = net.preprocess([load_image(records[i]) for i in good]).double()  # type: ignore[attr-defined]
    module = net.module  # type: ignore[attr-defined]
    snapshot = Snapshot.take(module)
    with caplog.at_level(logging.WARNING, logger="seethrough.inside.top_examples"):
        streamed = top_examples(net, str(photos), "conv2", k=3, batch_size=2)
    snapshot.assert_unchanged(module)
    whole = top_examples(module, x, "conv2", k=3, batch_size=2)
    # Positions in the source skip over the corrupt file; the activations agree to float64
    # rounding (the corrupt file leaves a forward batch of one image where the tensor
    # path has two).
    expected = torch.tensor(good)[whole.indices]
    assert torch.equal(streamed.indices, expected)
    torch.testing.assert_close(streamed.values, whole.values, rtol=1e-12, atol=1e-12)
    gaps = (whole.values[:, :-1] - whole.values[:, 1:]).abs()
    assert gaps[gaps > 0].min() > 1e-9
    assert torch.equal(streamed.boxes, whole.boxes)
    assert streamed.paths == tuple(tuple(records[i] for i in row) for row in expected.tolist())
    assert all(Path(p).is_file() for row in streamed.paths for p in row)
    for i, j in zip(good, range(len(good)), strict=True):
        if i in streamed.images:
            assert torch.equal(streamed.images[i], x[j])
    assert (streamed.count, streamed.skipped) == (7, 1)
    assert "skipped 1 unreadable image(s) of 8" in caplog.text and "broken.png" in caplog.text


def test_list_file_gives_the_folder_result(photos: Path) -> None:
    net = _tiny_net()
    source = model_source(net, photos).source
    rows = ["path,label"] + [
        f"{source.record(i)[0]},{source.record(i)[1]}" for i in range(len(source))
    ]
    listing = photos.parent / "list.csv"
    listing.write_text("\n".join(rows) + "\n")
    a = top_examples(net, photos, "conv1", k=2)  # a Path works as well as a str
    b = top_examples(net, str(listing), "conv1", k=2)
    c = top_examples(net, str(listing), "conv1", k=2, num_workers=2)  # decoded in workers
    _assert_same_hits(a, b)
    _assert_same_hits(a, c)
    assert a.paths == b.paths == c.paths and b.skipped == c.skipped == 1


class _Counted(Dataset[tuple[Tensor, int]]):
    """Fashion-MNIST inputs as a Python dataset that counts the images it has served."""

    def __init__(self, n: int) -> None:
        self.data = load_fashion_mnist("test")
        self.n, self.served = n, 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        self.served += 1
        return self.data.inputs(i, i + 1)[0], int(self.data.labels[i])


def test_a_source_is_streamed_not_decoded_whole() -> None:
    """When the model first runs, only the first block has been read; every image is
    read once; only the hits' images are kept. Loading the dataset before ranking (e.g.
    stacking every item into one tensor) fails the first check."""
    net = load_model("fashion-cnn")
    counted = _Counted(2_000)
    source = model_source(net, counted).source
    seen_at_forward: list[int] = []
    handle = net.module.register_forward_pre_hook(
        lambda module, args: seen_at_forward.append(counted.served)
    )
    try:
        te = top_examples(net, source, "conv2", channels=[3, 9], k=4, batch_size=100)
    finally:
        handle.remove()
    assert seen_at_forward[0] <= 100 and counted.served == 2_000
    assert len(seen_at_forward) >= 20  # one forward or more per block of 100
    assert len(te.images) <= 2 * 4 and te.count == 2_000
    assert te.paths[0][0].startswith("dataset#")
    reference = top_examples(
        net.module,
        counted.data.inputs(0, 2_000),
        "conv2",
        channels=[3, 9],
        k=4,
        batch_size=100,
    )
    _assert_same_hits(te, reference)


def test_a_folder_needs_the_models_preprocessing(photos: Path) -> None:
    model = tiny_model()
    snapshot = Snapshot.take(model)
    with pytest.raises(InvalidOptionError, match=r"needs the model.s preprocessing.*LoadedModel"):
        top_examples(model, str(photos), "conv2")
    snapshot.assert_unchanged(model)


def test_cli_ranks_a_folder_given_as_dataset(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A flat folder (unlabelled: any model's class names do) of the photos and the corrupt
    # file; the Fashion CNN's preprocessing makes each photo a 28 × 28 grey input.
    flat = tmp_path / "flat"
    flat.mkdir()
    for file in sorted(photos.rglob("*.*")):
        (flat / file.name).write_bytes(file.read_bytes())
    out = tmp_path / "out"
    result = run_cli(
        capsys, "features", "top-examples", "--dataset", str(flat), "--model",
        "fashion-cnn", "--device", "cpu", "--layer", "conv1", "--channels", "0-1", "--k", "3",
        "-q", "--out", str(out),
    )  # fmt: skip
    assert result.code == 0, result.err
    summary = json.loads((out / "top-examples.json").read_text(encoding="utf-8"))
    net = load_model("fashion-cnn")
    expected = top_examples(net, flat, "conv1", channels=[0, 1], k=3)
    found = summary["top_examples"]["channels"]
    assert [[h["image"] for h in c["hits"]] for c in found] == expected.indices.tolist()
    assert [[h["name"] for h in c["hits"]] for c in found] == [list(r) for r in expected.paths]
    assert (summary["images"], summary["skipped"]) == (8, 1)
    assert Path(summary["dataset"]).resolve() == flat.resolve()


def test_cli_bad_dataset_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    result = run_cli(
        capsys, "features", "top-examples", "--dataset", "no-such-folder", "--model",
        "fashion-cnn", "--device", "cpu", "--layer", "conv1", "-q", "--out", str(out),
    )  # fmt: skip
    assert result.code == 2, result.err
    assert "no such file or folder: no-such-folder" in result.err
    assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
    assert sorted(p.name for p in tmp_path.iterdir()) == []
