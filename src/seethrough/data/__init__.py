"""Image sources: files, folders and bundled sample photos."""

from seethrough.data.images import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_SAMPLES,
    IMAGE_EXTENSIONS,
    SAMPLES,
    LoadedImage,
    load_image,
    load_images,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_SAMPLES",
    "IMAGE_EXTENSIONS",
    "SAMPLES",
    "LoadedImage",
    "load_image",
    "load_images",
]
