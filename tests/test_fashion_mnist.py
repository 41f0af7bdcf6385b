"""Fashion-MNIST from Debian's package, the reference CNN and its shipped weights.

These tests read the real data set (``apt-get install dataset-fashion-mnist``; ``.ci/run``
installs it). Without it they fail with the loader's own message, not a skip: a missing
data set is a broken environment, not a passing test.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

from seethrough.data.fashion_mnist import (
    FASHION_MEAN,
    FASHION_MNIST_CLASSES,
    FASHION_STD,
    fashion_mnist_root,
    load_fashion_mnist,
)
from seethrough.errors import DatasetNotFoundError, InvalidInputError, InvalidOptionError
from seethrough.models.fashion_cnn import FashionCNN, fashion_cnn, packaged_weights
from seethrough.models.training import accuracy, train_classifier
from seethrough.models.zoo import FASHION_CNN_PREPROCESS


@pytest.fixture(scope="module")
def test_split():  # type: ignore[no-untyped-def]
    return load_fashion_mnist("test")


def test_both_splits_have_the_published_sizes_and_class_balance(test_split) -> None:  # type: ignore[no-untyped-def]
    train = load_fashion_mnist("train")
    assert train.images.shape == (60_000, 28, 28) and train.images.dtype == torch.uint8
    assert test_split.images.shape == (10_000, 28, 28)
    # Fashion-MNIST is balanced: 6,000 training and 1,000 test images per class.
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    assert torch.bincount(test_split.labels).tolist() == [1000] * 10
    assert len(FASHION_MNIST_CLASSES) == 10
    pixels = train.images.to(torch.float64) / 255
    assert abs(float(pixels.mean()) - FASHION_MEAN) < 1e-4
    assert abs(float(pixels.std()) - FASHION_STD) < 1e-4


def test_inputs_are_normalised_single_channel(test_split) -> None:  # type: ignore[no-untyped-def]
    x = test_split.inputs(0, 4)
    assert x.shape == (4, 1, 28, 28) and x.dtype == torch.float32
    expected = (test_split.images[:4, None].float() / 255 - FASHION_MEAN) / FASHION_STD
    torch.testing.assert_close(x, expected)
    # the fashion-cnn model's preprocessing is the same normalisation: it inverts the inputs
    # to the images (float32 rounding of one multiply-add: well under one grey level)
    pixels = test_split.images[:4, None].double() / 255
    shown = FASHION_CNN_PREPROCESS.invert(x).double()
    torch.testing.assert_close(shown, pixels, rtol=0, atol=1e-6)


def test_missing_data_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("test", root=tmp_path)
    monkeypatch.setenv("SEETHROUGH_FASHION_MNIST", str(tmp_path))
    assert fashion_mnist_root() == tmp_path
    with pytest.raises(InvalidOptionError, match="unknown split 'val'"):
        load_fashion_mnist("val")


def test_corrupt_files_are_refused(tmp_path: Path) -> None:
    real = fashion_mnist_root()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        with gzip.open(real / name) as f:
            data = f.read()
        with gzip.open(tmp_path / name, "wb") as f:
            f.write(data[: len(data) // 2] if "images" in name else data)
    with pytest.raises(InvalidInputError, match="truncated"):
        load_fashion_mnist("test", root=tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(InvalidInputError, match="cannot read"):
        load_fashion_mnist("test", root=tmp_path)


def test_shipped_model_reaches_90_percent_on_the_real_test_set(test_split) -> None:  # type: ignore[no-untyped-def]
    model = fashion_cnn()
    acc = accuracy(model, test_split.inputs(), test_split.labels)
    record = json.loads((packaged_weights().parent / "fashion_cnn_training.json").read_text())
    assert acc >= 0.90, acc
    assert abs(acc - record["true_labels"]["test_accuracy"]) < 1e-4  # the record is this model's


def test_random_label_model_memorised_its_labels_and_does_not_generalise(test_split) -> None:  # type: ignore[no-untyped-def]
    record = json.loads((packaged_weights().parent / "fashion_cnn_training.json").read_text())
    info = record["random_labels"]
    train = load_fashion_mnist("train")
    n = info["training_images"]
    permutation = torch.randperm(n, generator=torch.Generator().manual_seed(1))
    labels = train.labels[:n][permutation]
    model = fashion_cnn("random_labels")
    train_acc = accuracy(model, train.inputs(0, n), labels)
    test_acc = accuracy(model, test_split.inputs(), test_split.labels)
    assert abs(train_acc - info["train_accuracy"]) < 1e-4
    assert train_acc >= 0.9  # memorised
    assert test_acc < 0.2  # chance is 0.1: nothing about garments was learned


def test_training_is_reproducible_and_learns_a_small_subset() -> None:
    split = load_fashion_mnist("test")
    x, y = split.inputs(0, 512), split.labels[:512]
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = FashionCNN()
        log = train_classifier(model, x, y, epochs=3, batch_size=64, seed=5)
        runs.append((model.state_dict(), log))
    for key, value in runs[0][0].items():
        assert torch.equal(value, runs[1][0][key]), key
    assert runs[0][1].losses == runs[1][1].losses
    assert runs[0][1].losses[-1] < runs[0][1].losses[0]
    assert not model.training and all(p.grad is None for p in model.parameters())
