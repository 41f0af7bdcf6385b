"""What a report holds: its JSON (every number shown), figures, raw maps and embeddings.

:class:`ReportContent` is the one value the report job builds and every output reads:
the HTML page (:mod:`~seethrough.reporting.html`) and the TensorBoard events
(:mod:`~seethrough.reporting.tensorboard`). The page and the events show only what
``data`` holds (written as ``report.json``), so every number a reader sees is in the JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Embedding", "ReportContent"]


@dataclass(frozen=True, eq=False)
class Embedding:
    """Features of one layer for the TensorBoard projector.

    ``features`` ``(N, D)``; ``labels`` one class label per row; ``thumbnails``
    ``(N, 3, h, w)`` float in [0, 1] (displayable images, not model inputs).
    """

    layer: str
    features: np.ndarray
    labels: tuple[str, ...]
    thumbnails: np.ndarray


@dataclass(frozen=True, eq=False)
class ReportContent:
    """A report: ``data`` is ``report.json`` (plain JSON values, schema in ``data["schema"]``).

    ``figures`` maps a figure id (as referenced from ``data``) to PNG bytes; ``maps`` maps
    ``(image id, method)`` to the raw channel-summed attribution map ``(H, W)`` (for
    histograms); ``embedding`` holds probe features when the report had labelled data.
    """

    data: Mapping[str, Any]
    figures: Mapping[str, bytes] = field(default_factory=dict)
    maps: Mapping[tuple[str, str], np.ndarray] = field(default_factory=dict)
    embedding: Embedding | None = None
