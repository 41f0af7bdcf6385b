"""Fashion-MNIST (Xiao et al., 2017) from local files: Debian's ``dataset-fashion-mnist``.

Nothing is downloaded. The four IDX files (``train-images-idx3-ubyte.gz`` …) are read from
``root``, else ``$SEETHROUGH_FASHION_MNIST``, else ``/usr/share/datasets/fashion-mnist``
(where ``apt-get install dataset-fashion-mnist`` puts them).
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import DatasetNotFoundError, InvalidInputError, InvalidOptionError

__all__ = [
    "FASHION_MEAN",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_ROOT",
    "FASHION_STD",
    "FashionMNIST",
    "fashion_mnist_root",
    "load_fashion_mnist",
]

FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
FASHION_MEAN = 0.2860
"""Mean of the 60,000 training images' pixel values in [0, 1] (the inputs' normalisation)."""
FASHION_STD = 0.3530
"""Standard deviation of the 60,000 training images' pixel values in [0, 1]."""
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60_000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10_000),
}
_IMAGES_MAGIC, _LABELS_MAGIC = 2051, 2049
_HOW_TO_GET = (
    "install Debian's package (apt-get install dataset-fashion-mnist), set "
    "SEETHROUGH_FASHION_MNIST to a folder with the four .gz files, or pass root="
)


@dataclass(frozen=True, eq=False)
class FashionMNIST:
    """One split: ``images`` ``(N, 28, 28)`` uint8 (garment bright on black), ``labels``
    ``(N,)`` int64 in 0–9 (see :data:`FASHION_MNIST_CLASSES`)."""

    images: Tensor
    labels: Tensor
    split: str
    root: Path

    def __len__(self) -> int:
        return len(self.labels)

    def inputs(self, start: int = 0, stop: int | None = None) -> Tensor:
        """Images ``start:stop`` as the reference CNN's input ``(n, 1, 28, 28)``: pixel
        values in [0, 1], normalised by the training set's mean and std
        (:data:`FASHION_MEAN`, :data:`FASHION_STD`)."""
        return _normalised(self.images[start:stop])

    def inputs_at(self, indices: Sequence[int] | Tensor) -> Tensor:
        """Images ``indices`` (any order, repeats allowed) as the reference CNN's input,
        ``(n, 1, 28, 28)``: the values :meth:`inputs` gives for each."""
        return _normalised(self.images[torch.as_tensor(indices, dtype=torch.long)])


def _normalised(images: Tensor) -> Tensor:
    x = images.to(torch.float32).div_(255.0)[:, None]
    return (x - FASHION_MEAN) / FASHION_STD


def fashion_mnist_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The folder the files are read from (see the module docstring)."""
    if root is not None:
        return Path(root)
    env = os.environ.get("SEETHROUGH_FASHION_MNIST")
    return Path(env) if env else FASHION_MNIST_ROOT


def _read_idx(path: Path, magic: int, dims: int) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as error:
        raise InvalidInputError(f"cannot read {path}: {error}; {_HOW_TO_GET}") from None
    header = np.frombuffer(data[: 4 * (1 + dims)], dtype=">i4")
    if len(header) != 1 + dims or int(header[0]) != magic:
        raise InvalidInputError(f"{path} is not an IDX file of the expected kind (magic {magic})")
    shape = tuple(int(d) for d in header[1:])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 * (1 + dims))
    if body.size != int(np.prod(shape)):
        raise InvalidInputError(
            f"{path} holds {body.size} bytes of data, expected {int(np.prod(shape))}; "
            "the file is truncated"
        )
    return body.reshape(shape)


def load_fashion_mnist(
    split: str = "test", root: str | os.PathLike[str] | None = None
) -> FashionMNIST:
    """Read one split (``"train"``: 60,000 images; ``"test"``: 10,000).

    Raises
    ------
    DatasetNotFoundError
        The files are not there (the message says how to get them).
    InvalidInputError
        A file is not a valid IDX file.
    """
    if split not in _FILES:
        raise InvalidOptionError(f"unknown split {split!r} (valid: train, test)")
    folder = fashion_mnist_root(root)
    images_name, labels_name, count = _FILES[split]
    for name in (images_name, labels_name):
        if not (folder / name).is_file():
            raise DatasetNotFoundError(
                f"Fashion-MNIST not found: no {folder / name}; {_HOW_TO_GET}"
            )
    images = _read_idx(folder / images_name, _IMAGES_MAGIC, 3)
    labels = _read_idx(folder / labels_name, _LABELS_MAGIC, 1)
    if images.shape != (count, 28, 28) or labels.shape != (count,) or labels.max() > 9:
        raise InvalidInputError(
            f"{folder} does not hold the Fashion-MNIST {split} split "
            f"(images {images.shape}, labels {labels.shape})"
        )
    return FashionMNIST(
        images=torch.from_numpy(images.copy()),
        labels=torch.from_numpy(labels.astype(np.int64)),
        split=split,
        root=folder,
    )
