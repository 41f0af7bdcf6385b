"""Image sources for dataset runs: folders, list files, Fashion-MNIST, Python datasets.

:func:`open_source` turns what the user names into an :class:`ImageSource`, a map-style
``torch.utils.data.Dataset`` of :class:`Item` s. Decoding happens in ``__getitem__``, so a
``DataLoader`` with ``num_workers > 0`` decodes in its workers, overlapped with compute;
``collate_fn=collate_items`` stacks the good items into a :class:`Batch` and keeps the bad
ones (a file that cannot be decoded never stops a run: its item carries the reason).

Files are decoded by :func:`seethrough.data.load_image` (same rules: EXIF orientation,
grayscale and transparency handling, ``max_pixels``), so a dataset run sees exactly the
pixels a single-image run sees.

Folder layout follows torchvision's ``ImageFolder`` (one subfolder per class, labels from
the subfolder names sorted and numbered ``0..K-1``), with three deliberate differences:
hidden subfolders (``.ipynb_checkpoints``) are not classes; a class subfolder without images
is allowed (its class keeps its number); a folder without subfolders is an unlabelled list
of its images.
"""

from __future__ import annotations

import abc
import copy
import hashlib
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset

from seethrough.data.fashion_mnist import (
    FASHION_MNIST_CLASSES,
    FashionMNIST,
    fashion_mnist_root,
    load_fashion_mnist,
)
from seethrough.data.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    _check_max_pixels,
    _is_sample,
    _walk,
    load_image,
)
from seethrough.errors import ImageError, InvalidInputError, InvalidOptionError, suggest

__all__ = ["Batch", "ImageSource", "Item", "collate_items", "open_source"]

logger = logging.getLogger(__name__)

Transform = Callable[[Any], Tensor]
"""``transform(raw) -> Tensor (C, H, W)`` (a leading batch axis of 1 is dropped)."""

FASHION_PREFIX = "fashion-mnist"
_LIST_SUFFIXES = (".csv", ".parquet")
_ACCEPTED = (
    "'fashion-mnist', 'fashion-mnist:test' or 'fashion-mnist:train'; a folder of images "
    "(one subfolder per class); a .csv or .parquet file listing image paths and labels; "
    "an ImageSource; a map-style torch.utils.data.Dataset (items: a (C, H, W) tensor or a "
    "(tensor, label) pair; e.g. TensorDataset(x, labels)); or a DataLoader over one"
)
_RESIZE_FIX = "give a transform that resizes, e.g. the model's preprocessing (transform=...)"
_DATASET_SAMPLES = 16  # items a Python dataset's fingerprint reads


@dataclass(frozen=True, eq=False)
class Item:
    """One image of a source, decoded — or the reason it could not be.

    Attributes
    ----------
    index
        Position in the source, ``0 .. len(source) - 1``.
    path
        The file path as listed (folders: the folder as given joined with the file's path in
        it); ``"fashion-mnist:test#123"`` for Fashion-MNIST; ``"dataset#123"`` for a Python
        dataset.
    label
        Class index; ``-1`` when the source has no labels.
    pixels
        ``(C, H, W)`` tensor after the transform (the model input); ``None`` when the image
        could not be read.
    error
        One line saying why ``pixels`` is ``None`` (``None`` for a good item).
    """

    index: int
    path: str
    label: int
    pixels: Tensor | None
    error: str | None


@dataclass(frozen=True, eq=False)
class Batch:
    """Items collated by :func:`collate_items`.

    Attributes
    ----------
    indices
        ``(n,)`` int64 source positions of the good items, in the order given.
    paths
        The good items' paths (``n`` of them).
    labels
        ``(n,)`` int64 labels of the good items (``-1`` where unlabelled).
    inputs
        ``(n, C, H, W)`` the good items' pixels stacked; ``(0, 0, 0, 0)`` when none is good.
    failed
        The items that could not be read, in the order given.
    """

    indices: Tensor
    paths: tuple[str, ...]
    labels: Tensor
    inputs: Tensor
    failed: tuple[Item, ...]

    def __len__(self) -> int:
        return len(self.paths)

    def pin_memory(self) -> Batch:
        """A copy in pinned memory (``DataLoader(pin_memory=True)`` calls this)."""
        return replace(
            self,
            indices=self.indices.pin_memory(),
            labels=self.labels.pin_memory(),
            inputs=self.inputs.pin_memory(),
        )


class ImageSource(Dataset[Item], abc.ABC):
    """A numbered, reopenable list of images; a map-style ``Dataset`` of :class:`Item` s.

    Subclasses hold only picklable state (paths, labels, split names), so a source travels
    to ``DataLoader`` workers and Ray actors. ``source[i]`` decodes and transforms image
    ``i``; it never raises for a bad file: the :class:`Item` then has ``pixels=None`` and
    the reason in ``error``.

    Attributes
    ----------
    spec
        How to open the source again with :func:`open_source` (``"fashion-mnist:test"``,
        an absolute folder or list-file path), or ``""`` for a Python dataset.
    classes
        Class names by index, when the source knows them (folder names sorted, list labels
        sorted, Fashion-MNIST's names, a dataset's ``classes``); ``None`` otherwise, and
        when a ``classes=`` mapping numbered them.
    """

    spec: str
    classes: tuple[str, ...] | None
    _transform: Transform | None = None

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def record(self, index: int) -> tuple[str, int]:
        """``(path, label)`` of item ``index`` without decoding it (cheap for files and
        Fashion-MNIST; a Python dataset has to load the item to know its label)."""

    @abc.abstractmethod
    def fingerprint(self) -> str:
        """SHA-256 hex digest of the list of images: every ``(path, label)`` in order, plus
        each file's size for files and the pixel data for Fashion-MNIST. It changes when an
        image is added, removed, renamed, relabelled or resized on disk, and not otherwise
        (a run's configuration hash includes it, so a resumed run sees the same list)."""

    @abc.abstractmethod
    def _raw(self, index: int) -> Any:
        """The decoded image handed to the transform (may raise :class:`ImageError`)."""

    @abc.abstractmethod
    def _default_input(self, index: int, raw: Any) -> Tensor:
        """The model input when no transform is given."""

    @property
    def transform(self) -> Transform | None:
        """The transform applied to each decoded image (``None``: the default input)."""
        return self._transform

    def with_transform(self, transform: Transform | None) -> ImageSource:
        """A copy of this source that applies ``transform`` (``None``: the default input).

        ``transform(raw) -> Tensor (C, H, W)``; a result shaped ``(1, C, H, W)`` (what
        ``Preprocess`` returns for one image) loses its leading axis. ``raw`` is, for files,
        the :func:`~seethrough.data.load_image` pixels — ``(H, W, 3)`` float32 in ``[0, 1]``;
        for Fashion-MNIST the ``(28, 28)`` uint8 image; for a Python dataset its item's
        first element.
        """
        if transform is not None and not callable(transform):
            raise InvalidInputError(
                f"transform must be callable (raw image -> (C, H, W) tensor), "
                f"got {type(transform).__name__}"
            )
        twin = copy.copy(self)
        twin._transform = transform
        return twin

    def __getitem__(self, index: int) -> Item:
        index = self._position(index)
        path, label = self.record(index)
        try:
            raw = self._raw(index)
        except ImageError as error:
            logger.debug("skipping %s: %s", path, error)
            return Item(index=index, path=path, label=label, pixels=None, error=str(error))
        if self._transform is None:
            pixels = self._default_input(index, raw)
        else:
            pixels = _as_input(self._transform(raw), path)
        return Item(index=index, path=path, label=label, pixels=pixels, error=None)

    def __getitems__(self, indices: Sequence[int]) -> list[Item]:
        """Items ``indices``, as ``[source[i] for i in indices]`` — what a ``DataLoader``
        with a batch sampler calls (torch's batched fetch). Without a transform, a source
        that makes its default inputs in bulk (Fashion-MNIST: one normalisation for the
        batch instead of one per image) does so; the values are the same as one by one."""
        positions = [self._position(i) for i in indices]
        bulk = self._default_inputs(positions) if self._transform is None else None
        if bulk is None:
            return [self[p] for p in positions]
        return [
            Item(index=p, path=path, label=label, pixels=pixels, error=None)
            for p, (path, label), pixels in zip(positions, self._records(positions), bulk)
        ]

    def _records(self, positions: Sequence[int]) -> list[tuple[str, int]]:
        """:meth:`record` of each of ``positions`` (sources override it to read in bulk)."""
        return [self.record(p) for p in positions]

    def _default_inputs(self, positions: Sequence[int]) -> Tensor | None:
        """The default inputs of ``positions`` made at once, ``(n, C, H, W)``; ``None``
        (the default): this source makes them one by one (decoding may fail per image)."""
        return None

    def __repr__(self) -> str:
        named = f"{len(self.classes)} classes" if self.classes is not None else "no class names"
        return f"<{type(self).__name__} {self.spec!r}: {len(self)} images, {named}>"

    def _position(self, index: int) -> int:
        if isinstance(index, Tensor):
            index = int(index.item())
        position = int(index)
        if position != index or isinstance(index, bool):
            raise InvalidInputError(f"source index must be an integer, got {index!r}")
        size = len(self)
        if position < 0:
            position += size
        if not 0 <= position < size:
            raise IndexError(f"index {index} out of range for a source of {size} images")
        return position


class _Head(ImageSource):
    """The first ``n`` images of another source (``open_source(..., limit=n)``)."""

    def __init__(self, base: ImageSource, n: int) -> None:
        self.base = base
        self.n = min(n, len(base))
        self.spec = base.spec
        self.classes = base.classes
        self._transform = base.transform

    def __len__(self) -> int:
        return self.n

    def record(self, index: int) -> tuple[str, int]:
        return self.base.record(index)

    def fingerprint(self) -> str:
        # the whole source's fingerprint and the count: a change anywhere in the source
        # counts (conservative: a resumed run refuses rather than mix two lists)
        text = f"{self.base.fingerprint()}\nfirst {self.n}"
        return hashlib.sha256(text.encode()).hexdigest()

    def _raw(self, index: int) -> Any:
        return self.base._raw(index)

    def _default_input(self, index: int, raw: Any) -> Tensor:
        return self.base._default_input(index, raw)

    def _default_inputs(self, positions: Sequence[int]) -> Tensor | None:
        return self.base._default_inputs(positions)

    def _records(self, positions: Sequence[int]) -> list[tuple[str, int]]:
        return self.base._records(positions)


# ------------------------------------------------------------------------ files


class _FileSource(ImageSource):
    """Image files: a folder (ImageFolder layout or flat) or a list file."""

    def __init__(
        self,
        *,
        spec: str,
        paths: Sequence[str],
        files: Sequence[str],
        names: Sequence[str],
        labels: np.ndarray,
        classes: tuple[str, ...] | None,
        max_pixels: int,
    ) -> None:
        self.spec = spec
        self.classes = classes
        self._paths = tuple(paths)  # as listed: Item.path
        self._files = tuple(files)  # what is opened
        self._names = tuple(names)  # what the fingerprint hashes (independent of cwd)
        self._labels = np.asarray(labels, dtype=np.int64)
        self._max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self._paths)

    def record(self, index: int) -> tuple[str, int]:
        return self._paths[index], int(self._labels[index])

    def fingerprint(self) -> str:
        digest = hashlib.sha256(f"files\t{self._kind}\n".encode())
        for name, file, label in zip(self._names, self._files, self._labels.tolist()):
            digest.update(f"{name}\t{label}\t{_file_size(file)}\n".encode())
        return digest.hexdigest()

    @property
    def _kind(self) -> str:
        return "list" if self.spec.lower().endswith(_LIST_SUFFIXES) else "folder"

    def _raw(self, index: int) -> np.ndarray:
        file = self._files[index]
        try:
            pixels = load_image(file, max_pixels=self._max_pixels).pixels
        except OSError as error:  # e.g. an I/O error on a network file system
            raise ImageError(f"cannot read {file}: {error}") from None
        return _writable(pixels)

    def _default_input(self, index: int, raw: np.ndarray) -> Tensor:
        return torch.from_numpy(raw).permute(2, 0, 1).contiguous()


def _file_size(file: str) -> int:
    try:
        return os.stat(file).st_size
    except OSError:
        return -1


def _writable(pixels: np.ndarray) -> np.ndarray:
    """``load_image`` returns read-only pixels; ours to hand on, so make them writable
    (``torch.from_numpy`` warns on read-only arrays) without copying when possible."""
    try:
        pixels.flags.writeable = True
    except ValueError:
        return pixels.copy()
    return pixels


def _open_folder(folder: Path, mapping: Mapping[str, int] | None, max_pixels: int) -> ImageSource:
    subfolders = sorted(
        entry.name
        for entry in os.scandir(folder)
        if entry.is_dir() and not entry.name.startswith(".")
    )
    if not subfolders:
        return _flat_folder(folder, max_pixels)
    loose = _images_in(folder, recursive=False)
    if loose:
        logger.warning(
            "%s: %d image(s) directly in the folder are not in a class subfolder; skipped",
            folder,
            len(loose),
        )
    per_class = {name: _images_in(folder / name, recursive=True) for name in subfolders}
    if not any(per_class.values()):
        raise InvalidInputError(
            f"folder {folder} holds no images in its class subfolders; {_LAYOUT}"
        )
    numbers = _class_numbers([n for n in subfolders if per_class[n]], subfolders, mapping, folder)
    paths: list[str] = []
    names: list[str] = []
    labels: list[int] = []
    for name in subfolders:
        for relative in per_class[name]:
            paths.append(os.path.join(os.fspath(folder), name, *relative.parts))
            names.append("/".join((name, *relative.parts)))
            labels.append(numbers[name])
    return _FileSource(
        spec=os.path.abspath(folder),
        paths=paths,
        files=paths,
        names=names,
        labels=np.asarray(labels, dtype=np.int64),
        classes=None if mapping is not None else tuple(subfolders),
        max_pixels=max_pixels,
    )


_LAYOUT = (
    "expected one subfolder per class holding image files "
    f"({', '.join(IMAGE_EXTENSIONS)}), or image files directly in the folder (unlabelled)"
)


def _flat_folder(folder: Path, max_pixels: int) -> ImageSource:
    files = _images_in(folder, recursive=False)
    if not files:
        raise InvalidInputError(f"folder {folder} holds no images; {_LAYOUT}")
    paths = [os.path.join(os.fspath(folder), *relative.parts) for relative in files]
    return _FileSource(
        spec=os.path.abspath(folder),
        paths=paths,
        files=paths,
        names=["/".join(relative.parts) for relative in files],
        labels=np.full(len(paths), -1, dtype=np.int64),
        classes=None,
        max_pixels=max_pixels,
    )


def _images_in(folder: Path, *, recursive: bool) -> list[Path]:
    """Image files under ``folder`` (hidden ones skipped) relative to it, sorted by parts."""
    if recursive:
        found = _walk(folder)
    else:
        found = [
            Path(e.name) for e in os.scandir(folder) if e.is_file() and not e.name.startswith(".")
        ]
    return sorted((p for p in found if p.suffix.lower() in IMAGE_EXTENSIONS), key=lambda p: p.parts)


def _class_numbers(
    used: Sequence[str], every: Sequence[str], mapping: Mapping[str, int] | None, where: Path
) -> dict[str, int]:
    """Folder name -> class index: sorted order, or the mapping (checked for ``used``)."""
    if mapping is None:
        return {name: number for number, name in enumerate(every)}
    return {name: _lookup(name, mapping, f"class folder {name!r} in {where}") for name in used}


def _lookup(name: str, mapping: Mapping[str, int], what: str) -> int:
    if name in mapping:
        return _class_index(mapping[name], what)
    shown = ", ".join(repr(k) for k in list(mapping)[:8]) + (", ..." if len(mapping) > 8 else "")
    raise InvalidInputError(
        f"{what} is not a class the model knows (e.g. {shown}){suggest(name, mapping)}; "
        "use one of the model's class names, or pass classes= mapping names to indices"
    )


def _class_index(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InvalidInputError(
            f"classes= maps {what} to {value!r}; class indices are integers >= 0"
        )
    return int(value)


# -------------------------------------------------------------------- list files


def _open_list(
    file: Path,
    mapping: Mapping[str, int] | None,
    path_column: str,
    label_column: str | None,
    max_pixels: int,
) -> ImageSource:
    table = _read_table(file, path_column, label_column)
    listed = _column_strings(table, path_column, file)
    if not listed:
        raise InvalidInputError(f"{file} lists no images")
    base = os.path.dirname(os.path.abspath(file))
    files = [p if os.path.isabs(p) or _is_sample(p) else os.path.join(base, p) for p in listed]
    if label_column is None:
        labels, classes = np.full(len(listed), -1, dtype=np.int64), None
    else:
        labels, classes = _labels(table.column(label_column), mapping, file, label_column)
    return _FileSource(
        spec=os.path.abspath(file),
        paths=listed,
        files=files,
        names=listed,
        labels=labels,
        classes=classes,
        max_pixels=max_pixels,
    )


def _read_table(file: Path, path_column: str, label_column: str | None) -> Any:
    import pyarrow as pa

    wanted = [path_column] if label_column is None else [path_column, label_column]
    try:
        if file.suffix.lower() == ".csv":
            import pyarrow.csv as pacsv

            # Paths (and labels, decided below) as text: "007" stays "007".
            options = pacsv.ConvertOptions(column_types={name: pa.string() for name in wanted})
            table = pacsv.read_csv(file, convert_options=options)
        else:
            import pyarrow.parquet as pq

            table = pq.read_table(file)
    except (pa.ArrowInvalid, OSError) as error:
        raise InvalidInputError(f"cannot read the list {file}: {error}") from None
    for name, option, flag in (
        (path_column, "path_column", "--path-column"),
        (label_column, "label_column", "--label-column"),
    ):
        if name is not None and name not in table.column_names:
            found = ", ".join(repr(c) for c in table.column_names) or "none"
            unlabelled = (
                "; or label_column=None for an unlabelled list" if option == "label_column" else ""
            )
            raise InvalidInputError(
                f"{file} has no column {name!r} (columns found: {found})"
                f"{suggest(name, table.column_names)}; "
                f"pass {option}=NAME (CLI: {flag} NAME){unlabelled}"
            )
    return table


def _column_strings(table: Any, column: str, file: Path) -> list[str]:
    values = table.column(column).to_pylist()
    for row, value in enumerate(values):
        if value is None or not str(value).strip():
            raise InvalidInputError(
                f"{file}: row {row + 1} has no {column!r}; fill it or remove the row"
            )
    return [str(v).strip() for v in values]


def _labels(
    column: Any, mapping: Mapping[str, int] | None, file: Path, name: str
) -> tuple[np.ndarray, tuple[str, ...] | None]:
    import pyarrow as pa

    values = column.to_pylist()
    for row, value in enumerate(values):
        if value is None or (isinstance(value, str) and not value.strip()):
            raise InvalidInputError(
                f"{file}: row {row + 1} has no {name!r}; fill it, or pass label_column=None "
                "for an unlabelled list"
            )
    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return _index_labels([float(v) for v in values], mapping, file, name), None
    texts = [str(v).strip() for v in values]
    if mapping is not None:
        # Names through the mapping; numbers the mapping does not list are class indices.
        labels = [
            _lookup(t, mapping, f"label {t!r} in row {row + 1} of {file}")
            if t in mapping or not _is_integer_text(t)
            else int(_index_labels([float(t)], mapping, file, name, row)[0])
            for row, t in enumerate(texts)
        ]
        return np.asarray(labels, dtype=np.int64), None
    if all(_is_integer_text(t) for t in texts):
        return _index_labels([float(t) for t in texts], None, file, name), None
    names = tuple(sorted(set(texts)))
    number = {n: i for i, n in enumerate(names)}
    return np.asarray([number[t] for t in texts], dtype=np.int64), names


def _is_integer_text(text: str) -> bool:
    return text.lstrip("+-").isdigit()


def _index_labels(
    values: list[float], mapping: Mapping[str, int] | None, file: Path, name: str, first: int = 0
) -> np.ndarray:
    limit = None if not mapping else max(int(v) for v in mapping.values()) + 1
    for row, value in enumerate(values, start=first):
        whole = math.isfinite(value) and value == int(value)
        if not whole or value < 0 or (limit is not None and value >= limit):
            bound = f"0 .. {limit - 1}" if limit is not None else ">= 0"
            raise InvalidInputError(
                f"{file}: row {row + 1} has {name!r} = {value:g}; class indices must be whole "
                f"numbers in {bound} (or give class names)"
            )
    return np.asarray(values, dtype=np.int64)


# ----------------------------------------------------------------- Fashion-MNIST


class _FashionSource(ImageSource):
    """One Fashion-MNIST split (Xiao et al., 2017), read from local files."""

    def __init__(self, split: str) -> None:
        self._split = split
        self._root = os.path.abspath(fashion_mnist_root())
        self._data: FashionMNIST | None = load_fashion_mnist(split, root=self._root)
        self._length = len(self._data)
        self._digest: str | None = None
        self.spec = f"{FASHION_PREFIX}:{split}"
        self.classes = FASHION_MNIST_CLASSES

    def __getstate__(self) -> dict[str, Any]:
        # Workers and actors reload the files instead of receiving 47 MB of pixels.
        return {**self.__dict__, "_data": None}

    @property
    def data(self) -> FashionMNIST:
        if self._data is None:
            self._data = load_fashion_mnist(self._split, root=self._root)
        return self._data

    def __len__(self) -> int:
        return self._length

    def record(self, index: int) -> tuple[str, int]:
        return f"{self.spec}#{index}", int(self.data.labels[index])

    def fingerprint(self) -> str:
        if self._digest is None:
            data = self.data
            digest = hashlib.sha256(f"{self.spec}\n".encode())
            for index, label in enumerate(data.labels.tolist()):
                digest.update(f"{self.spec}#{index}\t{label}\n".encode())
            digest.update(b"pixels\t" + hashlib.sha256(data.images.numpy().tobytes()).digest())
            self._digest = digest.hexdigest()
        return self._digest

    def _raw(self, index: int) -> np.ndarray:
        return self.data.images[index].numpy().copy()

    def _default_input(self, index: int, raw: np.ndarray) -> Tensor:
        return self.data.inputs(index, index + 1)[0]

    def _default_inputs(self, positions: Sequence[int]) -> Tensor:
        return self.data.inputs_at(positions)

    def _records(self, positions: Sequence[int]) -> list[tuple[str, int]]:
        labels = self.data.labels[torch.as_tensor(positions, dtype=torch.long)].tolist()
        return [(f"{self.spec}#{p}", label) for p, label in zip(positions, labels)]


def _open_fashion(spec: str) -> ImageSource:
    split = spec[len(FASHION_PREFIX) :].lstrip(":").strip().lower() or "test"
    if split not in ("test", "train"):
        raise InvalidInputError(
            f"unknown Fashion-MNIST split {split!r} in {spec!r}; use 'fashion-mnist:test' or "
            "'fashion-mnist:train'"
        )
    return _FashionSource(split)


# ----------------------------------------------------------------- Python datasets


class _DatasetSource(ImageSource):
    """A map-style ``torch.utils.data.Dataset`` whose items are already model inputs."""

    def __init__(self, dataset: Dataset[Any]) -> None:
        self._dataset = dataset
        self.spec = ""
        names = getattr(dataset, "classes", None)
        ok = isinstance(names, Sequence) and all(isinstance(n, str) for n in names)
        self.classes = tuple(names) if ok and names else None

    def __len__(self) -> int:
        return len(self._dataset)  # type: ignore[arg-type]

    def record(self, index: int) -> tuple[str, int]:
        return f"dataset#{index}", self._split(index)[1]

    def fingerprint(self) -> str:
        """SHA-256 of the dataset's type, length and :data:`_DATASET_SAMPLES` evenly spaced
        items (label and tensor bytes). Deviation from the file sources: a Python dataset has
        no list of files, and reading every item would double a run's cost, so a change to an
        item outside the sample goes unnoticed."""
        size = len(self)
        kind = type(self._dataset)
        digest = hashlib.sha256(
            f"dataset\t{kind.__module__}.{kind.__qualname__}\t{size}\n".encode()
        )
        for index in sorted(
            {round(i) for i in np.linspace(0, size - 1, min(size, _DATASET_SAMPLES))}
        ):
            raw, label = self._split(index)
            digest.update(f"{index}\t{label}\t{_content_digest(raw)}\n".encode())
        return digest.hexdigest()

    def _split(self, index: int) -> tuple[Any, int]:
        item = self._dataset[index]
        if isinstance(item, (tuple, list)):
            if len(item) != 2:
                raise InvalidInputError(
                    f"dataset item {index} has {len(item)} parts; expected a (C, H, W) tensor "
                    "or a (tensor, label) pair"
                )
            return item[0], _label_of(item[1], index)
        return item, -1

    def _raw(self, index: int) -> Any:
        return self._split(index)[0]

    def __getitem__(self, index: int) -> Item:
        index = self._position(index)
        raw, label = self._split(index)
        path = f"dataset#{index}"
        if self._transform is not None:
            raw = self._transform(raw)
        elif not isinstance(raw, Tensor):
            raise InvalidInputError(
                f"dataset item {index} holds a {type(raw).__name__}, not a tensor; give "
                "transform= that turns it into the model's (C, H, W) input"
            )
        return Item(index=index, path=path, label=label, pixels=_as_input(raw, path), error=None)

    def _default_input(self, index: int, raw: Any) -> Tensor:  # pragma: no cover - unused
        return _as_input(raw, f"dataset#{index}")


def _label_of(value: Any, index: int) -> int:
    if value is None:
        return -1
    if isinstance(value, Tensor) and value.numel() == 1 and not value.is_floating_point():
        value = value.item()
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    raise InvalidInputError(
        f"dataset item {index} has label {value!r}; labels must be integer class indices "
        "(or None for unlabelled)"
    )


def _content_digest(raw: Any) -> str:
    if isinstance(raw, Tensor):
        flat = raw.detach().cpu().contiguous().reshape(-1)
        head = f"{raw.dtype}{tuple(raw.shape)}".encode()
        return hashlib.sha256(head + flat.view(torch.uint8).numpy().tobytes()).hexdigest()
    array = np.asarray(raw)
    return hashlib.sha256(f"{array.dtype}{array.shape}".encode() + array.tobytes()).hexdigest()


def _as_input(x: Any, path: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise InvalidInputError(
            f"{path}: the transform returned a {type(x).__name__}; "
            "it must return a (C, H, W) tensor"
        )
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 3:
        raise InvalidInputError(
            f"{path}: the model input has shape {tuple(x.shape)}; expected (C, H, W) — "
            "give a transform that returns one image's (C, H, W) tensor"
        )
    return x


# ------------------------------------------------------------------------ public


def open_source(
    data: Any,
    *,
    classes: Mapping[str, int] | None = None,
    transform: Transform | None = None,
    path_column: str = "path",
    label_column: str | None = "label",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    limit: int | None = None,
) -> ImageSource:
    """Open anything a dataset run accepts as an :class:`ImageSource`.

    Parameters
    ----------
    data
        - ``"fashion-mnist"`` (the test split), ``"fashion-mnist:test"``,
          ``"fashion-mnist:train"``: Fashion-MNIST (Xiao et al., 2017) from local files
          (:func:`~seethrough.data.fashion_mnist.load_fashion_mnist`).
        - A folder in ``ImageFolder`` layout: one subfolder per class, images in it
          (recursively, :data:`~seethrough.data.IMAGE_EXTENSIONS`, hidden files skipped),
          ordered by class then by sorted path. A folder without subfolders: its images,
          unlabelled.
        - A ``.csv`` or ``.parquet`` file with one row per image: ``path_column`` (relative
          paths are relative to the list file's folder) and ``label_column`` (class indices,
          or class names).
        - An :class:`ImageSource`: returned as is (with ``transform`` when given).
        - A map-style ``torch.utils.data.Dataset`` (with ``__len__``) whose items are a
          ``(C, H, W)`` tensor (unlabelled) or a ``(tensor, label)`` pair: already model
          inputs. Its ``classes`` attribute, if a list of names, becomes ``classes``.
        - A ``DataLoader``: its ``dataset``. The loader's sampler, batch size and workers
          are not used — the run's shard plan decides order and batches.
    classes
        Folder name or label string → class index (for folders and list files; ignored for
        the other sources). Without it, folder names (and non-numeric list labels) are
        sorted and numbered ``0..K-1`` — torchvision's ``ImageFolder`` rule — and the
        source's ``classes`` lists them.
    transform
        ``transform(raw) -> Tensor (C, H, W)``, see :meth:`ImageSource.with_transform`.
        Without it, files give ``(3, H, W)`` pixels in ``[0, 1]`` and Fashion-MNIST gives
        the reference CNN's normalised input (``FashionMNIST.inputs``), exactly.
    path_column, label_column
        Column names in a list file; ``label_column=None`` for an unlabelled list.
    max_pixels
        Images larger than this are bad items (see :func:`~seethrough.data.load_image`).
    limit
        Only the first ``limit`` images (all when ``None`` or when the source has fewer).

    Returns
    -------
    ImageSource

    Raises
    ------
    InvalidInputError
        ``data`` is none of the above, a folder holds no images, a list lacks a column or a
        label, or a class name is unknown to ``classes`` (with close matches).
    DatasetNotFoundError
        Fashion-MNIST's files are not on this machine (the message says how to get them).
    """
    _check_max_pixels(max_pixels)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InvalidOptionError(f"limit must be a positive integer (or None), got {limit!r}")
    source = _open_any(data, classes, path_column, label_column, max_pixels)
    if limit is not None and limit < len(source):
        source = _Head(source, limit)
    return source if transform is None else source.with_transform(transform)


def _open_any(
    data: Any,
    classes: Mapping[str, int] | None,
    path_column: str,
    label_column: str | None,
    max_pixels: int,
) -> ImageSource:
    if isinstance(data, DataLoader):
        data = data.dataset
    if isinstance(data, ImageSource):
        return data
    if isinstance(data, (str, os.PathLike)):
        source = _open_spec(data, classes, path_column, label_column, max_pixels)
    elif isinstance(data, IterableDataset):
        raise InvalidInputError(
            f"a {type(data).__name__} is an iterable dataset; dataset runs need a map-style "
            "dataset (with __len__ and __getitem__) so that shards can be resumed"
        )
    elif isinstance(data, Dataset) and hasattr(data, "__len__"):
        source = _DatasetSource(data)
    else:
        raise InvalidInputError(
            f"cannot read images from a {type(data).__name__}; give {_ACCEPTED}"
        )
    return source


def _open_spec(
    data: str | os.PathLike[str],
    classes: Mapping[str, int] | None,
    path_column: str,
    label_column: str | None,
    max_pixels: int,
) -> ImageSource:
    text = os.fspath(data)
    if (
        isinstance(data, str)
        and text.strip().lower().startswith(FASHION_PREFIX)
        and not Path(text).exists()
    ):
        return _open_fashion(text.strip().lower())
    path = Path(text)
    if path.is_dir():
        return _open_folder(path, classes, max_pixels)
    if path.suffix.lower() in _LIST_SUFFIXES:
        if not path.is_file():
            raise InvalidInputError(f"no such list file: {path}")
        return _open_list(path, classes, path_column, label_column, max_pixels)
    if not path.exists():
        raise InvalidInputError(f"no such file or folder: {path}; give {_ACCEPTED}")
    raise InvalidInputError(
        f"{path} is neither a folder nor a .csv or .parquet list; give {_ACCEPTED}"
    )


def collate_items(items: Sequence[Item]) -> Batch:
    """Stack the good items into a :class:`Batch`, keeping the bad ones aside.

    For ``DataLoader(source, batch_size=..., collate_fn=collate_items)``.

    Raises
    ------
    InvalidInputError
        Good items have different shapes (the message names two of them and the fix: a
        transform that resizes, e.g. the model's preprocessing).
    """
    good = [item for item in items if item.pixels is not None]
    failed = tuple(item for item in items if item.pixels is None)
    if good:
        first = good[0]
        for item in good[1:]:
            if item.pixels.shape != first.pixels.shape:  # type: ignore[union-attr]
                raise InvalidInputError(
                    f"images differ in size: {first.path} is {tuple(first.pixels.shape)} "  # type: ignore[union-attr]
                    f"but {item.path} is {tuple(item.pixels.shape)}; {_RESIZE_FIX}"  # type: ignore[union-attr]
                )
        inputs = torch.stack([item.pixels for item in good])  # type: ignore[misc]
    else:
        inputs = torch.empty((0, 0, 0, 0))
    return Batch(
        indices=torch.tensor([item.index for item in good], dtype=torch.int64),
        paths=tuple(item.path for item in good),
        labels=torch.tensor([item.label for item in good], dtype=torch.int64),
        inputs=inputs,
        failed=failed,
    )
