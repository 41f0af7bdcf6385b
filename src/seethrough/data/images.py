"""Load image files, folders and bundled sample photos as RGB float arrays in ``[0, 1]``.

Every source becomes a :class:`LoadedImage` whose ``pixels`` are ``float32``, shaped
``(H, W, 3)``, RGB, read-only. The conversion rules, applied after the EXIF orientation:

- grayscale (``"1"``, ``"L"``, ``"I;16*"``, ``"I"``, ``"F"``) is replicated to three channels;
- transparency (``"RGBA"``, ``"LA"``, ``"PA"``, a transparent palette index or colour key) is
  alpha-composited over **white**, the background an image viewer shows and the one that
  keeps a transparent logo's dark strokes visible;
- 8-bit data is divided by 255; 16-bit data (``"I;16"``, ``"I;16B"``, ...) by 65535, and
  ``"I"`` (32-bit integers, which PIL uses for some 16-bit files) is clipped to
  ``[0, 65535]`` then divided by 65535. PIL reads 16-bit RGB PNGs as 8-bit ``"RGB"``;
- ``"F"`` (float) data that lies at or below 1 is clipped to ``[0, 1]``; otherwise it is
  divided by its maximum and negative values are clipped to 0;
- any other mode (``"CMYK"``, ``"YCbCr"``, ``"HSV"``, ...) goes through PIL's RGB conversion;
- multi-frame files (GIF, TIFF) yield their first frame.

PIL's global settings (``Image.MAX_IMAGE_PIXELS``, ``ImageFile.LOAD_TRUNCATED_IMAGES``) are
never changed: truncated files raise, and the size limit is this module's ``max_pixels``.
"""

from __future__ import annotations

import logging
import os
import struct
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from seethrough.errors import ImageError, InvalidOptionError, suggest

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_SAMPLES",
    "IMAGE_EXTENSIONS",
    "SAMPLES",
    "LoadedImage",
    "load_image",
    "load_images",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 89_478_485
"""Largest ``width * height`` accepted by default (PIL's own default bomb limit)."""

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
)
"""File extensions (lower case) that folder loading picks up."""

SAMPLE_PREFIX = "sample:"

# Sample name -> file name in scikit-image's data folder (all ship with the package, no download).
_SAMPLE_FILES: dict[str, str] = {
    "astronaut": "astronaut.png",
    "brick": "brick.png",
    "camera": "camera.png",
    "cell": "cell.png",
    "chelsea": "chelsea.png",
    "clock": "clock_motion.png",
    "coffee": "coffee.png",
    "coins": "coins.png",
    "color": "color.png",
    "grass": "grass.png",
    "gravel": "gravel.png",
    "horse": "horse.png",
    "hubble_deep_field": "hubble_deep_field.jpg",
    "immunohistochemistry": "ihc.png",
    "logo": "logo.png",
    "microaneurysms": "microaneurysms.png",
    "moon": "moon.png",
    "motorcycle_left": "motorcycle_left.png",
    "motorcycle_right": "motorcycle_right.png",
    "page": "page.png",
    "phantom": "phantom.png",
    "retina": "retina.jpg",
    "rocket": "rocket.jpg",
    "text": "text.png",
}
_SAMPLE_ALIASES: dict[str, str] = {"ihc": "immunohistochemistry"}

SAMPLES: tuple[str, ...] = tuple(_SAMPLE_FILES)
"""Names usable as ``"sample:NAME"`` (``"ihc"`` is accepted for ``"immunohistochemistry"``)."""

DEFAULT_SAMPLES: tuple[str, ...] = (
    "chelsea",
    "coffee",
    "rocket",
    "motorcycle_left",
    "astronaut",
    "camera",
)
"""The samples the main job explains when the user gives no images."""

_SIXTEEN_BIT_MAX = 65535.0
_TRANSPARENT_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
# Modes whose transparency is a key (palette index or colour) in ``info["transparency"]``.
_KEYED_MODES = frozenset({"P", "L", "RGB"})


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """One decoded image.

    Attributes
    ----------
    name
        Short name for output files: the file stem or the sample name (unique within a
        :func:`load_images` result).
    source
        The source as given: a path, or ``"sample:NAME"``.
    pixels
        ``float32`` array ``(H, W, 3)``, RGB, values in ``[0, 1]``, read-only.
    mode
        PIL mode of the file before conversion (``"RGB"``, ``"L"``, ``"RGBA"``, ``"I;16"``, ...).
    """

    name: str
    source: str
    pixels: np.ndarray
    mode: str

    def __post_init__(self) -> None:
        pixels = self.pixels
        if pixels.dtype != np.float32 or pixels.ndim != 3 or pixels.shape[2] != 3:
            raise ImageError(
                f"{self.source}: pixels must be float32 (H, W, 3), "
                f"got {pixels.dtype} {tuple(pixels.shape)}"
            )
        pixels.flags.writeable = False


def load_image(
    source: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> LoadedImage:
    """Load one image file or bundled sample.

    Parameters
    ----------
    source
        Path to an image file, or ``"sample:NAME"`` with ``NAME`` in :data:`SAMPLES`.
    max_pixels
        Refuse images with more than this many pixels (``width * height``), a guard against
        decompression bombs. PIL's own hard limit (``2 * Image.MAX_IMAGE_PIXELS``) still applies.

    Returns
    -------
    LoadedImage

    Raises
    ------
    ImageError
        The source is missing, a folder, empty, not an image, truncated, corrupt, or too large.
    """
    _check_max_pixels(max_pixels)
    text = os.fspath(source)
    if _is_sample(source):
        name = _sample_name(text)
        path = _sample_dir() / _SAMPLE_FILES[name]
        return _load_file(path, name=name, source=text, max_pixels=max_pixels)
    path = Path(text)
    return _load_file(path, name=path.stem, source=text, max_pixels=max_pixels)


def load_images(
    sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    recursive: bool = False,
) -> list[LoadedImage]:
    """Load files, folders and samples, in order, with unique names.

    Parameters
    ----------
    sources
        One source or a sequence of them. A folder expands to its image files
        (:data:`IMAGE_EXTENSIONS`, hidden files skipped) sorted by name.
    max_pixels
        See :func:`load_image`.
    recursive
        Also load images in the subfolders of folder sources.

    Returns
    -------
    list of LoadedImage
        Names made unique by suffixing ``-2``, ``-3``, ... to repeated stems.

    Raises
    ------
    ImageError
        No sources, a folder without images, or any source :func:`load_image` refuses.
    """
    _check_max_pixels(max_pixels)
    items = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    if not items:
        raise ImageError("no image sources given; pass a file, a folder or 'sample:NAME'")
    images: list[LoadedImage] = []
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            raise ImageError(f"image sources must be paths or 'sample:NAME', got {item!r}")
        if not _is_sample(item) and Path(item).is_dir():
            files = _folder_images(Path(item), recursive=recursive)
            images.extend(load_image(file, max_pixels=max_pixels) for file in files)
        else:
            images.append(load_image(item, max_pixels=max_pixels))
    return _unique_names(images)


def _check_max_pixels(max_pixels: int) -> None:
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise InvalidOptionError(f"max_pixels must be a positive integer, got {max_pixels!r}")


def _is_sample(source: str | os.PathLike[str]) -> bool:
    return isinstance(source, str) and source.strip().lower().startswith(SAMPLE_PREFIX)


def _sample_name(source: str) -> str:
    name = source.strip()[len(SAMPLE_PREFIX) :].strip().lower()
    name = _SAMPLE_ALIASES.get(name, name)
    if name in _SAMPLE_FILES:
        return name
    valid = ", ".join(SAMPLES)
    if not name:
        raise ImageError(f"{source!r} names no sample; use 'sample:NAME' with NAME one of {valid}")
    hint = suggest(name, [*SAMPLES, *_SAMPLE_ALIASES])
    raise ImageError(f"unknown sample {name!r} (valid: {valid}){hint}")


def _sample_dir() -> Path:
    # Import here: scikit-image is only needed for samples and is slow to import.
    import skimage.data

    return Path(os.path.dirname(skimage.data.__file__))


def _load_file(path: Path, *, name: str, source: str, max_pixels: int) -> LoadedImage:
    if path.is_dir():
        raise ImageError(
            f"{path} is a folder, not an image file; use load_images() to load the images in it"
        )
    try:
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size == 0:
                raise ImageError(f"{path} is empty (0 bytes); re-export or re-download it")
            pixels, mode = _decode(fh, path, max_pixels)
    except FileNotFoundError:
        raise ImageError(f"no such file: {path}") from None
    except PermissionError:
        raise ImageError(f"cannot read {path}: permission denied; check its permissions") from None
    except IsADirectoryError:
        raise ImageError(f"{path} is a folder, not an image file") from None
    return LoadedImage(name=name, source=source, pixels=pixels, mode=mode)


def _decode(fh: IO[bytes], path: Path, max_pixels: int) -> tuple[np.ndarray, str]:
    """Open, size-check, fully decode, orient and convert one file."""
    try:
        with warnings.catch_warnings():
            # Our own max_pixels check below decides; PIL's warning would only duplicate it,
            # and raising it would refuse images the caller allowed with a larger max_pixels.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(fh) as image:
                _check_size(image, path, max_pixels)
                image.load()  # full decode here, so truncation is detected inside this try
                mode = image.mode
                oriented = ImageOps.exif_transpose(image)
                return _to_rgb(oriented, path), mode
    except ImageError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageError(
            f"{path} is too large for PIL ({error}); max_pixels= cannot raise this hard limit"
        ) from None
    except UnidentifiedImageError:
        raise ImageError(
            f"{path} is not an image PIL can read (unknown format or damaged header)"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as error:
        raise ImageError(
            f"{path} is truncated or corrupt ({error}); re-export or re-download it"
        ) from None


def _check_size(image: Image.Image, path: Path, max_pixels: int) -> None:
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(f"{path} has zero size ({width}x{height})")
    if width * height > max_pixels:
        raise ImageError(
            f"{path} has {width}x{height} = {width * height:,} pixels, more than "
            f"max_pixels={max_pixels:,}; pass a larger max_pixels= if you trust this file"
        )


def _to_rgb(image: Image.Image, path: Path) -> np.ndarray:
    """Convert a decoded PIL image to float32 ``(H, W, 3)`` RGB in ``[0, 1]``."""
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(image).astype(np.float64)
        return _gray_to_rgb(np.clip(values, 0.0, _SIXTEEN_BIT_MAX) / _SIXTEEN_BIT_MAX)
    if mode == "F":
        return _gray_to_rgb(_scale_float(np.asarray(image).astype(np.float64), path))
    if mode in _TRANSPARENT_MODES or (mode in _KEYED_MODES and "transparency" in image.info):
        rgba = np.asarray(image.convert("RGBA")).astype(np.float64) / 255.0
        return _over_white(rgba)
    if mode in ("1", "L"):
        return _gray_to_rgb(np.asarray(image.convert("L")).astype(np.float64) / 255.0)
    try:
        rgb = image.convert("RGB")
    except ValueError:
        raise ImageError(
            f"{path} has pixel mode {mode!r}, which PIL cannot turn into RGB"
        ) from None
    return _finish(np.asarray(rgb).astype(np.float64) / 255.0)


def _scale_float(values: np.ndarray, path: Path) -> np.ndarray:
    if not np.isfinite(values).all():
        raise ImageError(f"{path} contains NaN or infinite pixel values")
    peak = float(values.max())
    if peak > 1.0:
        values = values / peak
    return np.clip(values, 0.0, 1.0)


def _over_white(rgba: np.ndarray) -> np.ndarray:
    alpha = rgba[..., 3:]
    return _finish(rgba[..., :3] * alpha + (1.0 - alpha))


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return _finish(np.repeat(gray[..., None], 3, axis=2))


def _finish(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb, dtype=np.float32)


def _folder_images(folder: Path, *, recursive: bool) -> list[Path]:
    """Image files in ``folder`` (and its subfolders if ``recursive``), sorted by name."""
    candidates = sorted(_walk(folder) if recursive else _list(folder), key=lambda p: p.parts)
    files: list[Path] = []
    for relative in candidates:
        if relative.suffix.lower() in IMAGE_EXTENSIONS:
            files.append(folder / relative)
        else:
            logger.debug("skipping %s: not an image extension", folder / relative)
    if not files:
        hint = ""
        if not recursive and any(_visible_dirs(folder)):
            hint = "; pass recursive=True (CLI: --recursive) to look in its subfolders"
        looked = ", ".join(IMAGE_EXTENSIONS)
        raise ImageError(f"folder {folder} contains no image files (looked for {looked}){hint}")
    return files


def _list(folder: Path) -> list[Path]:
    return [
        Path(entry.name)
        for entry in os.scandir(folder)
        if entry.is_file() and not entry.name.startswith(".")
    ]


def _walk(folder: Path) -> list[Path]:
    found: list[Path] = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        base = Path(root).relative_to(folder)
        found.extend(base / name for name in names if not name.startswith("."))
    return found


def _visible_dirs(folder: Path) -> list[str]:
    return [e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith(".")]


def _unique_names(images: list[LoadedImage]) -> list[LoadedImage]:
    used: set[str] = set()
    unique: list[LoadedImage] = []
    for image in images:
        name, count = image.name, 1
        while name in used:
            count += 1
            name = f"{image.name}-{count}"
        used.add(name)
        unique.append(image if name == image.name else replace(image, name=name))
    return unique
