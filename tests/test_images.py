"""Tests for seethrough.data.images: samples, pixel conversion, folders and bad input."""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageFile

import seethrough.data.images as images_module
from seethrough.data import (
    DEFAULT_SAMPLES,
    SAMPLES,
    LoadedImage,
    load_image,
    load_images,
)
from seethrough.errors import ImageError, InvalidOptionError

EXIF_ORIENTATION = 0x0112


def _u8(values: object) -> np.ndarray:
    return np.asarray(values, dtype=np.uint8)


def _as_float(values: np.ndarray) -> np.ndarray:
    """The loader's 8-bit conversion, written out independently."""
    return (values.astype(np.float64) / 255.0).astype(np.float32)


def _raw_png(width: int, height: int, bit_depth: int, color_type: int, rows: bytes) -> bytes:
    """A minimal PNG written by hand (PIL cannot write 16-bit RGB or zero-size PNGs)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _noise(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# --- bundled samples -----------------------------------------------------------------------


def test_default_samples_are_samples() -> None:
    assert DEFAULT_SAMPLES == (
        "chelsea",
        "coffee",
        "rocket",
        "motorcycle_left",
        "astronaut",
        "camera",
    )
    assert set(DEFAULT_SAMPLES) <= set(SAMPLES)
    assert len(set(SAMPLES)) == len(SAMPLES)


@pytest.mark.parametrize("name", SAMPLES)
def test_every_sample_loads(name: str) -> None:
    image = load_image(f"sample:{name}")
    assert isinstance(image, LoadedImage)
    assert image.name == name
    assert image.source == f"sample:{name}"
    assert image.pixels.dtype == np.float32
    assert image.pixels.ndim == 3
    assert image.pixels.shape[2] == 3
    assert min(image.pixels.shape[:2]) >= 64
    assert image.pixels.min() >= 0.0
    assert image.pixels.max() <= 1.0
    assert image.pixels.max() > image.pixels.min()
    assert not image.pixels.flags.writeable


@pytest.mark.parametrize("name", ["chelsea", "coffee", "astronaut", "camera", "coins", "rocket"])
def test_sample_equals_skimage(name: str) -> None:
    expected = getattr(skimage.data, name)()
    if expected.ndim == 2:  # grayscale: three identical channels
        expected = np.repeat(expected[..., None], 3, axis=2)
    image = load_image(f"sample:{name}")
    assert image.pixels.shape == expected.shape
    np.testing.assert_array_equal(image.pixels, _as_float(expected))


def test_sample_modes_recorded() -> None:
    assert load_image("sample:camera").mode == "L"
    assert load_image("sample:chelsea").mode == "RGB"
    assert load_image("sample:logo").mode == "RGBA"


def test_ihc_alias_and_case_insensitive_names() -> None:
    alias = load_image("sample:ihc")
    full = load_image("sample:immunohistochemistry")
    assert alias.name == full.name == "immunohistochemistry"
    np.testing.assert_array_equal(alias.pixels, full.pixels)
    upper = load_image(" sample:Chelsea ")
    assert upper.name == "chelsea"
    np.testing.assert_array_equal(upper.pixels, load_image("sample:chelsea").pixels)


def test_sample_reads_the_bundled_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Samples go through the same file path as user files: no fetcher, no network."""
    Image.fromarray(_u8([[[1, 2, 3]]])).save(tmp_path / "chelsea.png")
    monkeypatch.setattr(images_module, "_sample_dir", lambda: tmp_path)
    image = load_image("sample:chelsea")
    np.testing.assert_array_equal(image.pixels, _as_float(_u8([[[1, 2, 3]]])))


# --- pixel conversion ----------------------------------------------------------------------


def test_grayscale_is_replicated(tmp_path: Path) -> None:
    gray = _noise((5, 7))
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    image = load_image(tmp_path / "g.png")
    assert image.mode == "L"
    assert image.pixels.shape == (5, 7, 3)
    for channel in range(3):
        np.testing.assert_array_equal(image.pixels[..., channel], _as_float(gray))


def test_bilevel_image(tmp_path: Path) -> None:
    bilevel = Image.new("1", (3, 1))
    bilevel.putpixel((1, 0), 1)
    bilevel.save(tmp_path / "b.png")
    image = load_image(tmp_path / "b.png")
    assert image.mode == "1"
    np.testing.assert_array_equal(image.pixels[0, :, 0], [0.0, 1.0, 0.0])
    np.testing.assert_array_equal(image.pixels[..., 0], image.pixels[..., 2])


def test_rgba_composited_over_white(tmp_path: Path) -> None:
    rgba = _u8([[[200, 100, 50, 0], [200, 100, 50, 255], [200, 100, 50, 128]]])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    image = load_image(tmp_path / "a.png")
    assert image.mode == "RGBA"
    a = 128 / 255
    half = [200 / 255 * a + (1 - a), 100 / 255 * a + (1 - a), 50 / 255 * a + (1 - a)]
    expected = np.array([[[1.0, 1.0, 1.0], [200 / 255, 100 / 255, 50 / 255], half]])
    np.testing.assert_allclose(image.pixels, expected, rtol=0, atol=1e-7)


def test_gray_alpha_composited_over_white(tmp_path: Path) -> None:
    Image.fromarray(_u8([[[100, 0], [100, 255]]]), mode="LA").save(tmp_path / "la.png")
    image = load_image(tmp_path / "la.png")
    assert image.mode == "LA"
    np.testing.assert_allclose(image.pixels[0, 0], [1.0, 1.0, 1.0], rtol=0, atol=1e-7)
    np.testing.assert_allclose(image.pixels[0, 1], [100 / 255] * 3, rtol=0, atol=1e-7)


def test_palette_colours(tmp_path: Path) -> None:
    palette_image = Image.new("P", (3, 1))
    palette_image.putpalette([255, 0, 0, 0, 0, 255, 10, 20, 30] + [0] * (256 * 3 - 9))
    for x, index in enumerate([2, 0, 1]):
        palette_image.putpixel((x, 0), index)
    palette_image.save(tmp_path / "p.png")
    image = load_image(tmp_path / "p.png")
    assert image.mode == "P"
    np.testing.assert_array_equal(
        image.pixels, _as_float(_u8([[[10, 20, 30], [255, 0, 0], [0, 0, 255]]]))
    )


def test_palette_transparency_over_white(tmp_path: Path) -> None:
    palette_image = Image.new("P", (2, 1))
    palette_image.putpalette([255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))
    palette_image.putpixel((1, 0), 1)
    palette_image.save(tmp_path / "pt.png", transparency=1)
    image = load_image(tmp_path / "pt.png")
    np.testing.assert_array_equal(image.pixels, [[[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]]])


def test_rgb_colour_key_transparency_over_white(tmp_path: Path) -> None:
    rgb = Image.fromarray(_u8([[[10, 20, 30], [1, 2, 3]]]))
    rgb.save(tmp_path / "key.png", transparency=(10, 20, 30))
    image = load_image(tmp_path / "key.png")
    np.testing.assert_array_equal(image.pixels[0, 0], [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(image.pixels[0, 1], _as_float(_u8([1, 2, 3])))


def test_16_bit_grayscale_keeps_precision(tmp_path: Path) -> None:
    values = np.array([[0, 1, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    image = load_image(tmp_path / "g16.png")
    assert image.mode.startswith("I;16")
    expected = np.array([0.0, 1 / 65535, 32768 / 65535, 1.0])
    for channel in range(3):
        np.testing.assert_allclose(image.pixels[0, :, channel], expected, rtol=0, atol=1e-7)
    assert image.pixels[0, 1, 0] > 0.0  # 1/65535 would be lost in 8 bits


def test_16_bit_rgb_png_is_read_as_8_bit_by_pil(tmp_path: Path) -> None:
    rgb16 = np.array([[[65535, 32768, 0], [256, 257, 65280]]], dtype=">u2")
    rows = b"".join(b"\x00" + row.tobytes() for row in rgb16)
    (tmp_path / "rgb16.png").write_bytes(_raw_png(2, 1, 16, 2, rows))
    image = load_image(tmp_path / "rgb16.png")
    assert image.mode == "RGB"  # PIL keeps the high byte
    np.testing.assert_array_equal(image.pixels, _as_float((rgb16 >> 8).astype(np.uint8)))


def test_32_bit_integer_image_is_clipped_to_16_bits(tmp_path: Path) -> None:
    values = np.array([[-5, 0, 1000, 65535, 70000]], dtype=np.int32)
    Image.fromarray(values, mode="I").save(tmp_path / "i.tif")
    image = load_image(tmp_path / "i.tif")
    assert image.mode == "I"
    expected = [0.0, 0.0, 1000 / 65535, 1.0, 1.0]
    np.testing.assert_allclose(image.pixels[0, :, 1], expected, rtol=0, atol=1e-7)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([-0.25, 0.0, 0.5, 1.0], [0.0, 0.0, 0.5, 1.0]),  # [0, 1]-like: clipped
        ([-1.0, 0.0, 2.0, 4.0], [0.0, 0.0, 0.5, 1.0]),  # beyond 1: divided by the maximum
    ],
)
def test_float_image(tmp_path: Path, values: list[float], expected: list[float]) -> None:
    Image.fromarray(np.array([values], dtype=np.float32), mode="F").save(tmp_path / "f.tif")
    image = load_image(tmp_path / "f.tif")
    assert image.mode == "F"
    np.testing.assert_allclose(image.pixels[0, :, 2], expected, rtol=0, atol=1e-7)


def test_cmyk_converted_by_pil(tmp_path: Path) -> None:
    cmyk = Image.fromarray(_noise((3, 4, 4)), mode="CMYK")
    cmyk.save(tmp_path / "c.tif")
    image = load_image(tmp_path / "c.tif")
    assert image.mode == "CMYK"
    np.testing.assert_array_equal(image.pixels, _as_float(np.asarray(cmyk.convert("RGB"))))


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_exif_orientation_6_rotates_clockwise(tmp_path: Path, suffix: str) -> None:
    stored = np.zeros((20, 40, 3), dtype=np.uint8)  # 20 high, 40 wide
    stored[:4, :4] = [255, 0, 0]  # mark the stored top-left corner
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    path = tmp_path / f"o{suffix}"
    Image.fromarray(stored).save(path, exif=exif, **({"quality": 100} if suffix == ".jpg" else {}))
    image = load_image(path)
    assert image.pixels.shape == (40, 20, 3)
    # Orientation 6: turn 90° clockwise to display; the top-left corner moves to the top-right.
    np.testing.assert_allclose(image.pixels[1, -2], [1.0, 0.0, 0.0], rtol=0, atol=0.05)
    np.testing.assert_allclose(image.pixels[1, 1], [0.0, 0.0, 0.0], rtol=0, atol=0.05)
    if suffix == ".png":
        np.testing.assert_array_equal(image.pixels, _as_float(np.rot90(stored, k=-1)))


def test_multi_frame_gif_gives_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (3, 2), colour) for colour in [(255, 0, 0), (0, 255, 0)]]
    frames[0].save(tmp_path / "m.gif", save_all=True, append_images=frames[1:])
    with Image.open(tmp_path / "m.gif") as gif:
        assert gif.n_frames == 2
    image = load_image(tmp_path / "m.gif")
    np.testing.assert_array_equal(image.pixels, np.broadcast_to([1.0, 0.0, 0.0], (2, 3, 3)))


def test_loaded_image_is_frozen_and_read_only(tmp_path: Path) -> None:
    Image.fromarray(_noise((2, 2, 3))).save(tmp_path / "x.png")
    image = load_image(str(tmp_path / "x.png"))
    assert image.name == "x"
    assert image.source == str(tmp_path / "x.png")
    with pytest.raises(ValueError, match="read-only"):
        image.pixels[0, 0, 0] = 0.5
    with pytest.raises(AttributeError):
        image.name = "y"  # type: ignore[misc]


def test_loaded_image_rejects_wrong_pixels() -> None:
    with pytest.raises(ImageError, match=r"float32 \(H, W, 3\)"):
        LoadedImage(name="x", source="x", pixels=np.zeros((2, 2)), mode="L")


def test_max_pixels_boundary(tmp_path: Path) -> None:
    Image.new("RGB", (100, 50)).save(tmp_path / "x.png")
    assert load_image(tmp_path / "x.png", max_pixels=5000).pixels.shape == (50, 100, 3)
    with pytest.raises(ImageError, match="more than max_pixels=4,999"):
        load_image(tmp_path / "x.png", max_pixels=4999)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_max_pixels_must_be_positive_int(bad: object) -> None:
    with pytest.raises(InvalidOptionError, match="max_pixels must be a positive integer"):
        load_image("sample:camera", max_pixels=bad)  # type: ignore[arg-type]


# --- folders -------------------------------------------------------------------------------


def _write(path: Path, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 3), (value, value, value)).save(path)
    return path


def test_folder_sorted_and_filtered(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _write(tmp_path / "b.png", 20)
    _write(tmp_path / "a.jpg", 10)
    _write(tmp_path / "C.PNG", 30)
    _write(tmp_path / ".hidden.png", 40)
    (tmp_path / "notes.txt").write_text("not an image")
    _write(tmp_path / "sub" / "d.png", 50)
    with caplog.at_level("DEBUG", logger="seethrough.data.images"):
        loaded = load_images(tmp_path)
    assert [image.name for image in loaded] == ["C", "a", "b"]
    assert [image.source for image in loaded] == [
        str(tmp_path / n) for n in ["C.PNG", "a.jpg", "b.png"]
    ]
    assert "notes.txt" in caplog.text


def test_folder_recursive(tmp_path: Path) -> None:
    _write(tmp_path / "b.png")
    _write(tmp_path / "a" / "z.png")
    _write(tmp_path / "a" / "y" / "x.png")
    _write(tmp_path / ".git" / "hidden.png")
    assert [image.name for image in load_images(tmp_path)] == ["b"]
    assert [image.name for image in load_images(str(tmp_path), recursive=True)] == ["x", "z", "b"]


def test_duplicate_stems_made_unique(tmp_path: Path) -> None:
    _write(tmp_path / "one" / "cat.png", 1)
    _write(tmp_path / "one" / "cat.jpg", 2)
    _write(tmp_path / "two" / "cat.png", 3)
    _write(tmp_path / "two" / "cat-2.png", 4)
    loaded = load_images([tmp_path / "one", tmp_path / "two"])
    assert [image.name for image in loaded] == ["cat", "cat-2", "cat-2-2", "cat-3"]
    assert [image.source for image in loaded] == [
        str(tmp_path / "one" / "cat.jpg"),
        str(tmp_path / "one" / "cat.png"),
        str(tmp_path / "two" / "cat-2.png"),
        str(tmp_path / "two" / "cat.png"),
    ]
    assert len({image.name for image in loaded}) == len(loaded)


def test_mixed_sources_keep_order(tmp_path: Path) -> None:
    path = _write(tmp_path / "camera.png", 7)
    loaded = load_images(["sample:camera", path, "sample:chelsea"])
    assert [image.name for image in loaded] == ["camera", "camera-2", "chelsea"]
    np.testing.assert_array_equal(loaded[1].pixels, np.full((3, 4, 3), 7 / 255, np.float32))
    assert [image.name for image in load_images("sample:coffee")] == ["coffee"]


def test_folder_without_images_hints_recursive(tmp_path: Path) -> None:
    _write(tmp_path / "sub" / "a.png")
    with pytest.raises(ImageError, match=r"contains no image files .*pass recursive=True"):
        load_images(tmp_path)


# --- bad input -----------------------------------------------------------------------------


def _valid_png(path: Path) -> Path:
    Image.fromarray(_noise((64, 64, 3))).save(path)
    return path


def _truncated(path: Path) -> Path:
    if path.suffix == ".png":
        _valid_png(path)
    else:
        Image.fromarray(_noise((64, 64, 3))).save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _corrupt_header(path: Path) -> Path:
    data = bytearray(_valid_png(path).read_bytes())
    data[12:20] = b"XXXXXXXX"  # the IHDR chunk
    path.write_bytes(bytes(data))
    return path


def _corrupt_data(path: Path) -> Path:
    data = bytearray(_valid_png(path).read_bytes())
    data[100:140] = bytes(40)  # inside the compressed pixel stream
    path.write_bytes(bytes(data))
    return path


def _folder_with_empty_jpg(tmp: Path) -> Path:
    _write(tmp / "d" / "a.png")
    (tmp / "d" / "b.jpg").write_bytes(b"")
    return tmp / "d"


def _folder_with_text(tmp: Path) -> Path:
    (tmp / "d").mkdir()
    (tmp / "d" / "readme.txt").write_text("hi")
    return tmp / "d"


BadCase = Callable[[Path], object]

BAD_INPUTS: list[tuple[str, BadCase, str]] = [
    ("missing file", lambda t: load_image(t / "nope.png"), r"^no such file: .*nope\.png$"),
    (
        "folder to load_image",
        load_image,
        r"is a folder, not an image file; use load_images\(\)",
    ),
    (
        "zero-byte file",
        lambda t: load_image(_empty(t / "e.png")),
        r"e\.png is empty \(0 bytes\)",
    ),
    (
        "text named .png",
        lambda t: load_image(_text(t / "t.png")),
        r"t\.png is not an image PIL can read \(",
    ),
    (
        "truncated PNG",
        lambda t: load_image(_truncated(t / "tr.png")),
        r"tr\.png is truncated or corrupt \(image file is truncated",
    ),
    (
        "truncated JPEG",
        lambda t: load_image(_truncated(t / "tr.jpg")),
        r"tr\.jpg is truncated or corrupt \(image file is truncated",
    ),
    (
        "corrupt header",
        lambda t: load_image(_corrupt_header(t / "h.png")),
        r"h\.png is not an image PIL can read",
    ),
    (
        "corrupt data",
        lambda t: load_image(_corrupt_data(t / "d.png")),
        r"d\.png is truncated or corrupt \(broken data stream",
    ),
    (
        "zero-size PNG",
        lambda t: load_image(_bytes(t / "z.png", _raw_png(0, 1, 8, 0, b"\x00"))),
        r"z\.png is not an image PIL can read",
    ),
    (
        "decompression bomb",
        lambda t: load_image(_write_size(t / "big.png", 100, 100), max_pixels=5000),
        r"big\.png has 100x100 = 10,000 pixels, more than max_pixels=5,000; "
        r"pass a larger max_pixels=",
    ),
    (
        "unknown sample",
        lambda t: load_image("sample:chelsae"),
        r"unknown sample 'chelsae' \(valid: astronaut, .*\); did you mean 'chelsea'\?$",
    ),
    ("bare sample:", lambda t: load_image("sample:"), r"names no sample; use 'sample:NAME'"),
    ("empty list", lambda t: load_images([]), r"^no image sources given"),
    (
        "folder without images",
        lambda t: load_images(_folder_with_text(t)),
        r"folder .*d contains no image files \(looked for \.png, \.jpg, ",
    ),
    ("empty folder", load_images, r"contains no image files"),
    (
        "zero-byte .jpg in folder",
        lambda t: load_images(_folder_with_empty_jpg(t)),
        r"b\.jpg is empty \(0 bytes\)",
    ),
    ("missing in a list", lambda t: load_images(["sample:camera", t / "x.png"]), r"no such file"),
    ("non-path in a list", lambda t: load_images([3]), r"must be paths or 'sample:NAME', got 3"),
]


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _text(path: Path) -> Path:
    path.write_text("this is not a picture\n")
    return path


def _write_size(path: Path, width: int, height: int) -> Path:
    Image.new("RGB", (width, height)).save(path)
    return path


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make_call", "message"),
    [pytest.param(call, message, id=name) for name, call, message in BAD_INPUTS],
)
def test_bad_input_raises_one_clear_line(tmp_path: Path, make_call: BadCase, message: str) -> None:
    max_pixels, load_truncated = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    fds = _open_fds()
    with pytest.raises(ImageError, match=message) as raised:
        make_call(tmp_path)
    assert "\n" not in str(raised.value)
    assert raised.value.__cause__ is None
    assert _open_fds() == fds  # no file left open on the error path
    assert max_pixels == Image.MAX_IMAGE_PIXELS
    assert ImageFile.LOAD_TRUNCATED_IMAGES is load_truncated


def test_bomb_warning_range_obeys_max_pixels(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Between PIL's limit and twice it PIL only warns; max_pixels alone decides."""
    _valid_png(tmp_path / "x.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # 4096 px: PIL warns, does not raise
    with pytest.raises(ImageError, match="more than max_pixels=4,000"):
        load_image(tmp_path / "x.png", max_pixels=4000)
    assert load_image(tmp_path / "x.png", max_pixels=5000).pixels.shape == (64, 64, 3)


def test_pil_hard_limit_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _valid_png(tmp_path / "x.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 > 2 * 1000: PIL raises
    with pytest.raises(ImageError, match=r"x\.png is too large for PIL .*cannot raise"):
        load_image(tmp_path / "x.png")


def test_permission_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = _valid_png(tmp_path / "locked.png")

    def refuse(*args: object, **kwargs: object) -> object:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(images_module, "open", refuse, raising=False)
    with pytest.raises(ImageError, match=r"cannot read .*locked\.png: permission denied"):
        load_image(path)


def test_successful_loads_leave_no_file_open(tmp_path: Path) -> None:
    _write(tmp_path / "a.png")
    _truncated(tmp_path / "b.jpg").rename(tmp_path / "b.bin")
    fds = _open_fds()
    load_images([tmp_path, "sample:camera", "sample:rocket"])
    assert _open_fds() == fds
