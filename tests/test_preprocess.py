"""Preprocess: crop geometry, resizing, normalisation, inversion, input kinds and validation."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch.testing import assert_close

from seethrough.errors import InvalidInputError, InvalidOptionError
from seethrough.models import IMAGENET_MEAN, IMAGENET_STD, Preprocess

IDENTITY = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}


@dataclass
class FakeLoadedImage:
    """Duck type of seethrough.data.LoadedImage: only .pixels matters."""

    pixels: np.ndarray


def test_constant_image_gives_normalised_constant() -> None:
    image = np.full((8, 4, 3), 0.2, dtype=np.float32)
    pre = Preprocess(size=6, crop_fraction=1.0)
    x = pre(image)
    assert x.shape == (1, 3, 6, 6)
    assert x.dtype == torch.float32
    expected = (0.2 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert_close(x, expected[None, :, None, None].expand(1, 3, 6, 6), rtol=0, atol=1e-6)


def test_uint8_is_scaled_to_unit_range() -> None:
    image = np.full((5, 5, 3), 51, dtype=np.uint8)  # 51 / 255 = 0.2
    x = Preprocess(size=5, crop_fraction=1.0, **IDENTITY)(image)
    assert_close(x, torch.full((1, 3, 5, 5), 0.2), rtol=0, atol=1e-7)


def test_sixteen_bit_precision_survives() -> None:
    image = np.full((4, 4, 3), 1000, dtype=np.uint16)  # not representable in 8 bits
    x = Preprocess(size=4, crop_fraction=1.0, **IDENTITY)(image)
    assert_close(x, torch.full((1, 3, 4, 4), 1000 / 65535), rtol=0, atol=1e-8)


def test_eight_by_four_takes_the_central_square() -> None:
    # Row r holds value r / 10; the central 4×4 square of an 8×4 image is rows 2..5.
    rows = np.arange(8, dtype=np.float32)[:, None, None] / 10
    image = np.broadcast_to(rows, (8, 4, 3)).copy()
    x = Preprocess(size=4, crop_fraction=1.0, **IDENTITY)(image)
    expected = torch.tensor([0.2, 0.3, 0.4, 0.5])[None, None, :, None].expand(1, 3, 4, 4)
    assert_close(x, expected, rtol=0, atol=0)


def test_crop_fraction_half_of_300_by_200() -> None:
    # Short side 200 → a 100×100 crop at rows 100..199, columns 50..149: exactly the marked block.
    image = np.zeros((300, 200, 3), dtype=np.float32)
    block = np.random.default_rng(0).random((100, 100, 3), dtype=np.float32)
    image[100:200, 50:150] = block
    pre = Preprocess(size=100, crop_fraction=0.5, **IDENTITY)
    assert_close(pre(image)[0], torch.from_numpy(block).permute(2, 0, 1), rtol=0, atol=0)
    # Downscaled, a constant block stays constant only if no pixel outside it is sampled.
    image[100:200, 50:150] = 1.0
    for interpolation in ("bilinear", "bicubic"):
        small = Preprocess(size=50, crop_fraction=0.5, interpolation=interpolation, **IDENTITY)
        assert_close(small(image), torch.ones(1, 3, 50, 50), rtol=0, atol=1e-6)


def test_resize_is_antialiased_interpolate_on_the_crop() -> None:
    image = np.random.default_rng(1).random((120, 90, 3), dtype=np.float32)
    pre = Preprocess(size=32, crop_fraction=0.8, interpolation="bilinear", **IDENTITY)
    crop = torch.from_numpy(image[24:96, 9:81]).permute(2, 0, 1)[None]  # side round(0.8 * 90)
    expected = F.interpolate(
        crop, size=(32, 32), mode="bilinear", align_corners=False, antialias=True
    ).clamp(0, 1)
    assert_close(pre(image), expected, rtol=0, atol=0)


def test_matches_torchvision_resize_256_crop_224() -> None:
    import torchvision.transforms.v2 as transforms

    # With a 256 px short side our 0.875 crop needs no resize, and torchvision's resize is a
    # no-op: both reduce to the same centre crop.
    image = np.random.default_rng(2).random((256, 300, 3), dtype=np.float32)
    tensor = torch.from_numpy(image).permute(2, 0, 1)
    pipeline = transforms.Compose(
        [
            transforms.Resize(256, antialias=True),
            transforms.CenterCrop(224),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    assert_close(Preprocess(crop_fraction=0.875)(image)[0], pipeline(tensor), rtol=0, atol=1e-6)


def test_invert_recovers_the_resized_pixels() -> None:
    image = np.random.default_rng(3).random((64, 80, 3), dtype=np.float32)
    pre = Preprocess(size=48, crop_fraction=1.0)
    crop = torch.from_numpy(image[:, 8:72]).permute(2, 0, 1)[None]
    resized = F.interpolate(
        crop, size=(48, 48), mode="bicubic", align_corners=False, antialias=True
    ).clamp(0, 1)
    assert_close(pre.invert(pre(image)), resized, rtol=0, atol=1e-6)


def test_invert_clamps_to_display_range() -> None:
    pre = Preprocess(mean=(0.5,) * 3, std=(0.25,) * 3)
    x = torch.tensor([-10.0, -2.0, 0.0, 2.0, 10.0]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    expected = torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    assert_close(pre.invert(x), expected, rtol=0, atol=0)


def test_grayscale_model_gets_luma() -> None:
    image = np.empty((4, 4, 3), dtype=np.float32)
    image[...] = (0.2, 0.6, 1.0)
    pre = Preprocess(size=4, crop_fraction=1.0, channels=1, mean=(0.5,), std=(0.5,))
    luma = 0.299 * 0.2 + 0.587 * 0.6 + 0.114 * 1.0
    x = pre(image)
    assert x.shape == (1, 1, 4, 4)
    assert_close(x, torch.full((1, 1, 4, 4), (luma - 0.5) / 0.5), rtol=0, atol=1e-6)
    assert pre.invert(x).shape == (1, 1, 4, 4)


def test_grayscale_image_for_rgb_model_is_replicated() -> None:
    image = np.linspace(0, 1, 36, dtype=np.float32).reshape(6, 6)
    x = Preprocess(size=6, crop_fraction=1.0, **IDENTITY)(image)
    assert_close(x[0], torch.from_numpy(image).expand(3, 6, 6), rtol=0, atol=0)


def test_input_kinds_agree() -> None:
    rgb = np.random.default_rng(4).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    pre = Preprocess(size=16)
    reference = pre(rgb)
    as_float = rgb.astype(np.float32) / 255
    for image in (Image.fromarray(rgb), as_float, FakeLoadedImage(as_float)):
        assert_close(pre(image), reference, rtol=0, atol=1e-6)


def test_sequence_of_images_of_different_sizes() -> None:
    images = [np.full((h, w, 3), v, dtype=np.float32) for h, w, v in ((10, 20, 0.1), (31, 7, 0.9))]
    x = Preprocess(size=5, **IDENTITY)([FakeLoadedImage(images[0]), images[1]])
    assert x.shape == (2, 3, 5, 5)
    assert_close(x[:, 0, 0, 0], torch.tensor([0.1, 0.9]), rtol=0, atol=1e-6)


def test_device_argument() -> None:
    x = Preprocess(size=8)(np.zeros((8, 8, 3), dtype=np.float32), device="cpu")
    assert x.device == torch.device("cpu")


def test_describe_is_one_line() -> None:
    text = Preprocess(interpolation="bilinear").describe()
    assert "\n" not in text
    assert "bilinear" in text
    assert "224×224" in text


def test_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Preprocess().size = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"size": 0}, "size must be a positive integer"),
        ({"size": 22.5}, "size must be a positive integer"),
        ({"crop_fraction": 0.0}, r"crop_fraction must be in \(0, 1\]"),
        ({"crop_fraction": 1.5}, r"crop_fraction must be in \(0, 1\]"),
        ({"interpolation": "nearest"}, "unknown interpolation 'nearest'; valid: bicubic, bilinear"),
        ({"channels": 2}, "channels must be 1 or 3"),
        ({"mean": (0.5, 0.5)}, "mean needs 3 finite values"),
        ({"std": (0.5, 0.0, 0.5)}, "std values must be positive"),
        ({"channels": 1}, "mean needs 1 finite values"),
    ],
)
def test_invalid_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidOptionError, match=message):
        Preprocess(**options)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((4, 4, 4), dtype=np.float32), r"expected an image of shape \(H, W, 3\)"),
        (np.zeros((1, 4, 4, 3), dtype=np.float32), r"got \(1, 4, 4, 3\)"),
        (np.zeros(12, dtype=np.float32), r"\(H, W, 3\) RGB or \(H, W\) grayscale"),
        (np.full((4, 4, 3), 200.0, dtype=np.float32), r"must be in \[0, 1\].*divide 8-bit"),
        (np.zeros((4, 4, 3), dtype=np.int64), "unsupported pixel dtype int64"),
        ("cat.jpg", "cannot preprocess a str"),
        (torch.zeros(3, 4, 4), "cannot preprocess a Tensor"),
        ([], "no images given"),
    ],
)
def test_invalid_images(images: Any, message: str) -> None:
    with pytest.raises(InvalidOptionError, match=message):
        Preprocess()(images)


def test_invert_checks_shape() -> None:
    with pytest.raises(InvalidInputError, match=r"expected a \(N, 3, H, W\) tensor"):
        Preprocess().invert(torch.zeros(3, 4, 4))
