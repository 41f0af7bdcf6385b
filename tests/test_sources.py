"""Image sources for dataset runs (issue 15, part 1): folders, list files, Fashion-MNIST,
Python datasets; bad files become items with a reason; DataLoader workers give the same
batches as the main process."""

from __future__ import annotations

import os
import pickle
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import skimage.data
import torch
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from seethrough.data import Batch, ImageSource, Item, collate_items, load_image, open_source
from seethrough.data.fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist
from seethrough.errors import DatasetNotFoundError, InvalidInputError
from seethrough.models import Preprocess

# name -> (class folder, skimage loader, suffix): real photos, colour and grayscale, PNG and JPEG.
PHOTOS = {
    "chelsea": ("cat", skimage.data.chelsea, ".png"),
    "chelsea_small": ("cat", lambda: skimage.data.chelsea()[::3, ::3], ".jpg"),
    "coffee": ("cup", skimage.data.coffee, ".jpg"),
    "camera": ("misc", skimage.data.camera, ".png"),
    "rocket": ("misc/nested", skimage.data.rocket, ".png"),
}


def _photo_folder(root: Path) -> Path:
    for name, (folder, load, suffix) in PHOTOS.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(load()).save(root / folder / f"{name}{suffix}", quality=90)
    (root / "empty").mkdir()  # a class without images keeps its number
    (root / ".ipynb_checkpoints").mkdir()  # hidden: not a class
    Image.fromarray(skimage.data.coins()).save(root / ".ipynb_checkpoints" / "x.png")
    (root / "cat" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _photo_folder(tmp_path_factory.mktemp("photos") / "val")


@pytest.fixture(scope="module")
def fashion() -> ImageSource:
    return open_source("fashion-mnist:test")


def _items(source: ImageSource) -> list[Item]:
    return [source[i] for i in range(len(source))]


# ------------------------------------------------------------------ Fashion-MNIST


def test_fashion_items_equal_the_reference_inputs_bitwise(fashion: ImageSource) -> None:
    split = load_fashion_mnist("test")
    assert len(fashion) == 10_000 and fashion.classes == FASHION_MNIST_CLASSES
    assert fashion.spec == "fashion-mnist:test"
    for i in (0, 1, 4321, 9999):
        item = fashion[i]
        assert item.index == i and item.error is None
        assert item.path == f"fashion-mnist:test#{i}" and item.label == int(split.labels[i])
        assert item.pixels is not None and item.pixels.dtype == torch.float32
        assert torch.equal(item.pixels, split.inputs(i, i + 1)[0])
        assert fashion.record(i) == (item.path, item.label)
    batch = collate_items([fashion[i] for i in range(100, 164)])
    assert torch.equal(batch.inputs, split.inputs(100, 164))
    assert torch.equal(batch.labels, split.labels[100:164])
    assert torch.equal(batch.indices, torch.arange(100, 164))


def test_batched_fetch_equals_items_one_by_one(fashion: ImageSource) -> None:
    # what DataLoader calls with a batch sampler: the bulk Fashion path (one normalisation
    # for the batch), a head of it, and a source with a transform (one by one)
    head = open_source("fashion-mnist:test", limit=50)
    doubled = fashion.with_transform(lambda a: torch.from_numpy(a.astype("float32") * 2)[None])
    for source, wanted in ((fashion, [9999, 3, 3, -1, 0]), (head, [49, 0, 7]), (doubled, [5, 2])):
        bulk = source.__getitems__(wanted)
        alone = [source[i] for i in wanted]
        assert [(i.index, i.path, i.label, i.error) for i in bulk] == [
            (i.index, i.path, i.label, i.error) for i in alone
        ]
        for a, b in zip(bulk, alone):
            assert a.pixels is not None and b.pixels is not None
            assert a.pixels.dtype == b.pixels.dtype and torch.equal(a.pixels, b.pixels)
    with pytest.raises(IndexError):
        head.__getitems__([50])  # the head's end, though the split goes on
    loader = torch.utils.data.DataLoader(fashion, batch_size=64, collate_fn=collate_items)
    first = next(iter(loader))
    assert torch.equal(first.inputs, load_fashion_mnist("test").inputs(0, 64))


def test_fashion_spellings_and_raw_transform(fashion: ImageSource) -> None:
    assert open_source("fashion-mnist").spec == "fashion-mnist:test"
    assert len(open_source("Fashion-MNIST:train")) == 60_000
    raw = fashion.with_transform(lambda a: torch.from_numpy(a)[None])
    assert torch.equal(raw[7].pixels, load_fashion_mnist("test").images[7][None])  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="fashion-mnist:train"):
        open_source("fashion-mnist:val")


def test_fashion_missing_files_say_how_to_get_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEETHROUGH_FASHION_MNIST", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        open_source("fashion-mnist:test")


def test_fashion_pickles_small_and_equal(fashion: ImageSource) -> None:
    blob = pickle.dumps(fashion)
    assert len(blob) < 10_000  # the pixels are reloaded, not shipped
    again = pickle.loads(blob)
    assert torch.equal(again[5].pixels, fashion[5].pixels)  # type: ignore[arg-type]
    assert again.fingerprint() == fashion.fingerprint()


# ------------------------------------------------------------------------ folders


def test_folder_labels_order_and_pixels_equal_load_image(photos: Path) -> None:
    source = open_source(photos)
    # Sorted visible folder names, numbered 0..K-1 (torchvision's rule); "empty" keeps 1.
    assert source.classes == ("cat", "cup", "empty", "misc")
    expected = [
        ("cat/chelsea.png", 0),
        ("cat/chelsea_small.jpg", 0),
        ("cup/coffee.jpg", 1),
        ("misc/camera.png", 3),
        ("misc/nested/rocket.png", 3),
    ]
    assert [source.record(i) for i in range(len(source))] == [
        (os.path.join(os.fspath(photos), *rel.split("/")), label) for rel, label in expected
    ]
    for item in _items(source):
        assert item.error is None and item.pixels is not None
        reference = load_image(item.path).pixels
        assert torch.equal(item.pixels, torch.from_numpy(reference.copy()).permute(2, 0, 1))
    assert source.spec == os.path.abspath(photos)


def test_folder_with_class_mapping(photos: Path) -> None:
    mapping = {"cat": 281, "cup": 968, "misc": 999, "empty": 5}
    source = open_source(photos, classes=mapping)
    assert [source.record(i)[1] for i in range(len(source))] == [281, 281, 968, 999, 999]
    assert source.classes is None
    with pytest.raises(InvalidInputError, match=r"'cup'.*did you mean 'cups'\?.*classes="):
        open_source(photos, classes={"cat": 0, "cups": 1, "misc": 2})


def test_flat_folder_is_unlabelled(tmp_path: Path) -> None:
    for name in ("b", "a"):
        Image.fromarray(skimage.data.camera()[::8, ::8]).save(tmp_path / f"{name}.png")
    source = open_source(tmp_path)
    assert [source.record(i) for i in range(2)] == [
        (str(tmp_path / "a.png"), -1),
        (str(tmp_path / "b.png"), -1),
    ]
    assert source.classes is None


def test_transform_gets_load_image_pixels_and_resizes(photos: Path) -> None:
    preprocess = Preprocess(size=32)
    source = open_source(photos, transform=preprocess)
    batch = collate_items(_items(source))
    assert batch.inputs.shape == (5, 3, 32, 32) and not batch.failed
    for i, path in enumerate(batch.paths):
        assert torch.equal(batch.inputs[i], preprocess(load_image(path))[0])


def test_mixed_sizes_name_two_paths_and_the_fix(photos: Path) -> None:
    items = _items(open_source(photos))
    with pytest.raises(InvalidInputError) as caught:
        collate_items(items[:2])
    message = str(caught.value)
    assert (
        "chelsea.png is (3, 300, 451)" in message
        and "chelsea_small.jpg is (3, 100, 151)" in message
    )
    assert "transform" in message and "preprocessing" in message


def test_fingerprint_changes_with_the_list_only(tmp_path: Path) -> None:
    root = _photo_folder(tmp_path / "val")
    first = open_source(root).fingerprint()
    assert open_source(root).fingerprint() == first
    assert open_source(os.path.relpath(root)).fingerprint() == first  # cwd does not matter
    (root / "cat" / "readme.txt").write_text("still not an image")
    assert open_source(root).fingerprint() == first
    shutil.copy(root / "cup" / "coffee.jpg", root / "cup" / "coffee2.jpg")  # added
    added = open_source(root).fingerprint()
    assert added != first
    os.rename(root / "cup" / "coffee2.jpg", root / "cup" / "coffee3.jpg")  # renamed
    renamed = open_source(root).fingerprint()
    assert renamed not in (first, added)
    os.rename(root / "cup" / "coffee3.jpg", root / "misc" / "coffee3.jpg")  # relabelled
    relabelled = open_source(root).fingerprint()
    assert relabelled not in (first, added, renamed)
    (root / "misc" / "coffee3.jpg").unlink()
    assert open_source(root).fingerprint() == first
    with open(root / "cat" / "chelsea.png", "ab") as fh:  # rewritten on disk
        fh.write(b"\0")
    assert open_source(root).fingerprint() != first


# --------------------------------------------------------------------- list files


def _lists(root: Path) -> tuple[Path, Path]:
    """The photo folder as a CSV (class names) and a Parquet list (class indices)."""
    folder = open_source(root)
    rows = [folder.record(i) for i in range(len(folder))]
    relative = [os.path.relpath(path, root) for path, _ in rows]
    names = [folder.classes[label] for _, label in rows]  # type: ignore[index]
    csv = root / "list.csv"
    csv.write_text("path,label,note\n" + "".join(f"{p},{n},x\n" for p, n in zip(relative, names)))
    parquet = root / "list.parquet"
    table = pa.table({"file": relative, "cls": pa.array([label for _, label in rows], pa.int64())})
    pq.write_table(table, parquet)
    return csv, parquet


def test_csv_and_parquet_give_the_same_items(tmp_path: Path) -> None:
    root = _photo_folder(tmp_path / "val")
    csv, parquet = _lists(root)
    by_name = open_source(csv, classes={"cat": 0, "cup": 1, "misc": 3})
    by_index = open_source(parquet, path_column="file", label_column="cls")
    folder = open_source(root)
    for source in (by_name, by_index):
        assert len(source) == len(folder) == 5
        for mine, theirs in zip(_items(source), _items(folder)):
            assert mine.label == theirs.label
            assert not os.path.isabs(mine.path) and Path(root, mine.path) == Path(theirs.path)
            assert torch.equal(mine.pixels, theirs.pixels)  # type: ignore[arg-type]
    # Without a mapping, label names are sorted and numbered (the folder had "empty" too).
    names = open_source(csv)
    assert names.classes == ("cat", "cup", "misc")
    assert [names.record(i)[1] for i in range(5)] == [0, 0, 1, 2, 2]
    unlabelled = open_source(csv, label_column=None)
    assert {unlabelled.record(i)[1] for i in range(5)} == {-1}
    # Same images and labels, whatever the list's format; other labels, another fingerprint.
    assert by_name.fingerprint() == by_index.fingerprint() != names.fingerprint()
    csv.write_text(csv.read_text().replace("coffee.jpg", "coffee.JPG"))
    assert open_source(csv, label_column=None).fingerprint() != unlabelled.fingerprint()


def test_list_errors_name_columns_and_option(tmp_path: Path) -> None:
    csv = tmp_path / "list.csv"
    csv.write_text("file,target\na.png,0\n")
    with pytest.raises(InvalidInputError) as caught:
        open_source(csv, path_column="file")
    message = str(caught.value)
    assert "no column 'label'" in message and "'file', 'target'" in message
    assert "label_column=" in message and "--label-column" in message
    with pytest.raises(InvalidInputError, match=r"no column 'path'.*path_column=.*--path-column"):
        open_source(csv, label_column="target")
    csv.write_text("path,label\na.png,cat\nb.png,\n")
    with pytest.raises(InvalidInputError, match=r"row 2 has no 'label'"):
        open_source(csv)
    csv.write_text("path,label\na.png,3\nb.png,-1\n")
    with pytest.raises(InvalidInputError, match=r"row 2 has 'label' = -1"):
        open_source(csv)
    csv.write_text("path,label\na.png,1\nb.png,cat\nc.png,3\n")
    with pytest.raises(InvalidInputError, match=r"row 3 has 'label' = 3.*0 \.\. 1"):
        open_source(csv, classes={"cat": 0, "dog": 1})
    csv.write_text("path,label\na.png,1\nb.png,cat\nc.png,cats\n")
    with pytest.raises(InvalidInputError, match=r"'cats' in row 3.*did you mean 'cat'"):
        open_source(csv, classes={"cat": 0, "dog": 1})
    csv.write_text("path,label\na.png,1\nb.png,cat\n")
    mixed = open_source(csv, classes={"cat": 0, "dog": 1})
    assert [mixed.record(i)[1] for i in range(2)] == [1, 0]
    (tmp_path / "list.txt").write_text("a.png\n")
    with pytest.raises(InvalidInputError, match=r"neither a folder nor a \.csv or \.parquet"):
        open_source(tmp_path / "list.txt")
    with pytest.raises(InvalidInputError, match="no such list file"):
        open_source(tmp_path / "missing.parquet")
    csv.write_text("path,label\n")
    with pytest.raises(InvalidInputError, match="lists no images"):
        open_source(csv)


# ----------------------------------------------------------------------- bad files


def _bad_folder(root: Path) -> Path:
    (root / "a").mkdir(parents=True)
    good = root / "a" / "0_good.png"
    Image.fromarray(skimage.data.camera()[::16, ::16]).save(good)
    whole = good.read_bytes()
    (root / "a" / "1_truncated.png").write_bytes(whole[: len(whole) // 2])
    (root / "a" / "2_text.png").write_text("this is not an image")
    (root / "a" / "3_empty.jpg").write_bytes(b"")
    shutil.copy(good, root / "a" / "4_good.png")
    return root


def test_bad_files_become_items_with_a_reason(tmp_path: Path) -> None:
    source = open_source(_bad_folder(tmp_path / "bad"))
    items = _items(source)
    assert [item.error is None for item in items] == [True, False, False, False, True]
    for item in items[1:4]:
        assert item.pixels is None and item.error and "\n" not in item.error
        assert item.path in item.error
    assert "truncated or corrupt" in items[1].error  # type: ignore[operator]
    assert "not an image" in items[2].error  # type: ignore[operator]
    assert "empty" in items[3].error  # type: ignore[operator]
    batch = collate_items(items)
    assert batch.indices.tolist() == [0, 4] and len(batch) == 2
    assert [item.index for item in batch.failed] == [1, 2, 3]
    assert torch.equal(batch.inputs[0], batch.inputs[1])
    none_good = collate_items(items[1:4])
    assert none_good.inputs.shape == (0, 0, 0, 0) and none_good.labels.shape == (0,)


def test_missing_listed_file_is_a_bad_item(tmp_path: Path) -> None:
    Image.fromarray(skimage.data.camera()[::16, ::16]).save(tmp_path / "here.png")
    csv = tmp_path / "list.csv"
    csv.write_text("path,label\nhere.png,0\ngone.png,1\n")
    items = _items(open_source(csv))
    assert items[0].error is None
    assert items[1].pixels is None and "no such file" in items[1].error  # type: ignore[operator]


def test_folder_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(
        InvalidInputError, match=r"holds no images; expected one subfolder per class"
    ):
        open_source(empty)
    (empty / "notes.txt").write_text("x")
    with pytest.raises(InvalidInputError, match="holds no images"):
        open_source(empty)
    (empty / "cat").mkdir()
    (empty / "dog").mkdir()
    with pytest.raises(InvalidInputError, match="no images in its class subfolders"):
        open_source(empty)
    with pytest.raises(InvalidInputError, match="no such file or folder"):
        open_source(tmp_path / "nowhere")


# ----------------------------------------------------------------- Python datasets


def test_tensor_dataset_and_loader() -> None:
    x = torch.randn(5, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([3, 1, 4, 1, 5])
    dataset = TensorDataset(x, y)
    source = open_source(dataset)
    assert source.spec == "" and len(source) == 5 and source.classes is None
    for i, item in enumerate(_items(source)):
        assert item.path == f"dataset#{i}" and item.label == int(y[i])
        assert torch.equal(item.pixels, x[i])  # type: ignore[arg-type]
    loader = DataLoader(dataset, batch_size=2, shuffle=True)
    assert open_source(loader).record(2) == ("dataset#2", 4)
    doubled = open_source(dataset, transform=lambda t: 2 * t)
    assert torch.equal(doubled[3].pixels, 2 * x[3])  # type: ignore[arg-type]
    unlabelled = open_source(_Plain(x))
    assert unlabelled[1].label == -1 and torch.equal(unlabelled[1].pixels, x[1])  # type: ignore[arg-type]


class _Plain(torch.utils.data.Dataset[torch.Tensor]):
    def __init__(self, x: torch.Tensor) -> None:
        self.x = x
        self.classes = ["a", "b"]

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.x[i]


def test_dataset_fingerprint_and_bad_items() -> None:
    x = torch.randn(40, 1, 3, 3, generator=torch.Generator().manual_seed(1))
    y = torch.arange(40) % 3
    base = open_source(TensorDataset(x, y)).fingerprint()
    assert open_source(TensorDataset(x.clone(), y.clone())).fingerprint() == base
    changed = x.clone()
    changed[0, 0, 0, 0] += 1  # item 0 is always in the sample
    assert open_source(TensorDataset(changed, y)).fingerprint() != base
    assert open_source(TensorDataset(x[:39], y[:39])).fingerprint() != base
    assert open_source(_Plain(x)).classes == ("a", "b")

    class Triples(_Plain):
        def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:  # type: ignore[override]
            return self.x[i], 0, 0

    with pytest.raises(InvalidInputError, match=r"3 parts.*\(tensor, label\) pair"):
        open_source(Triples(x))[0]
    with pytest.raises(InvalidInputError, match="not a tensor; give transform="):
        open_source(_NumpyItems(x))[0]


class _NumpyItems(_Plain):
    def __getitem__(self, i: int) -> np.ndarray:  # type: ignore[override]
        return self.x[i].numpy()


class _Stream(IterableDataset[torch.Tensor]):
    def __iter__(self) -> Iterator[torch.Tensor]:
        yield torch.zeros(1)


def test_unsupported_data_names_what_is_accepted() -> None:
    for bad in (42, [torch.zeros(3, 2, 2)], torch.zeros(2, 3, 4, 4)):
        with pytest.raises(InvalidInputError, match=r"fashion-mnist.*folder.*\.csv.*Dataset"):
            open_source(bad)
    with pytest.raises(InvalidInputError, match="map-style"):
        open_source(_Stream())


# ------------------------------------------------------------- source behaviour


def test_image_source_passes_through_with_transform(fashion: ImageSource) -> None:
    assert open_source(fashion) is fashion
    scaled = open_source(fashion, transform=lambda a: torch.ones(1, 2, 2))
    assert scaled is not fashion and scaled.transform is not None and fashion.transform is None
    assert torch.equal(scaled[0].pixels, torch.ones(1, 2, 2))  # type: ignore[arg-type]
    assert fashion[0].pixels.shape == (1, 28, 28)  # type: ignore[union-attr]
    assert fashion[-1].index == 9999
    with pytest.raises(IndexError):
        fashion[10_000]
    with pytest.raises(InvalidInputError, match=r"\(C, H, W\)"):
        open_source(fashion, transform=lambda a: torch.ones(28, 28))[0]


def test_pickled_file_sources_give_the_same_items(tmp_path: Path) -> None:
    root = _photo_folder(tmp_path / "val")
    csv, _ = _lists(root)
    for source in (open_source(root), open_source(csv, transform=Preprocess(size=16))):
        again = pickle.loads(pickle.dumps(source))
        assert again.fingerprint() == source.fingerprint() and again.spec == source.spec
        for mine, theirs in zip(_items(again), _items(source)):
            assert (mine.path, mine.label) == (theirs.path, theirs.label)
            assert torch.equal(mine.pixels, theirs.pixels)  # type: ignore[arg-type]


def _batches(source: ImageSource, workers: int, **kw: object) -> list[Batch]:
    loader = DataLoader(
        source,
        batch_size=3,
        num_workers=workers,
        collate_fn=collate_items,
        **kw,  # type: ignore[arg-type]
    )
    return list(loader)


def _same(a: list[Batch], b: list[Batch]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.equal(x.indices, y.indices) and torch.equal(x.labels, y.labels)
        assert x.paths == y.paths and torch.equal(x.inputs, y.inputs)
        assert [(i.index, i.error) for i in x.failed] == [(i.index, i.error) for i in y.failed]


def test_dataloader_workers_give_the_same_batches(tmp_path: Path, fashion: ImageSource) -> None:
    bad = open_source(_bad_folder(tmp_path / "bad"), transform=Preprocess(size=8))
    _same(_batches(bad, 0), _batches(bad, 2))
    subset = list(range(50, 80))
    _same(_batches(fashion, 0, sampler=subset), _batches(fashion, 2, sampler=subset))
    ctx = {"multiprocessing_context": "spawn"}
    _same(_batches(fashion, 0, sampler=subset[:6]), _batches(fashion, 1, sampler=subset[:6], **ctx))


@pytest.mark.gpu  # pinned memory needs a GPU (benchmarks/gpu.sh runs the gpu tests)
def test_batch_pins_memory(fashion: ImageSource) -> None:
    batch = next(iter(DataLoader(fashion, batch_size=4, collate_fn=collate_items, pin_memory=True)))
    assert batch.inputs.is_pinned() and batch.indices.is_pinned()
