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
from seethrough.data.shards import (
    RUN_FORMAT,
    Run,
    RunMismatchError,
    RunWriter,
    ShardPlan,
    atomic_write,
    open_run,
)
from seethrough.data.sources import Batch, ImageSource, Item, collate_items, open_source

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_SAMPLES",
    "IMAGE_EXTENSIONS",
    "SAMPLES",
    "Batch",
    "ImageSource",
    "Item",
    "LoadedImage",
    "collate_items",
    "load_image",
    "load_images",
    "open_source",
    "RUN_FORMAT",
    "Run",
    "RunMismatchError",
    "RunWriter",
    "ShardPlan",
    "atomic_write",
    "open_run",
]
