"""The sanity job: model-parameter randomization and the edge-map comparison on a set of
images → figures and ``sanity.json``, written whole or not at all."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data.images import LoadedImage
from ..errors import InvalidOptionError
from ..models.zoo import LoadedModel
from ..trust.sanity import (
    METRICS,
    RandomizationResult,
    edge_similarity_of,
    model_randomization,
)
from ..viz import plot_randomization_grid, plot_similarity_curves, save_figure
from .output import OutputFolder

__all__ = ["SANITY", "SanityJobResult", "run_sanity"]

SANITY = "sanity.json"
JobProgress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class SanityJobResult:
    out: Path
    result: RandomizationResult
    files: tuple[str, ...]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "image"


def _clean(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 6)


def run_sanity(
    net: LoadedModel,
    images: Sequence[LoadedImage],
    methods: Sequence[str],
    out: str | os.PathLike[str],
    *,
    mode: str = "cascading",
    granularity: str = "block",
    follow_prediction: bool = False,
    target: Any = None,
    seed: int = 0,
    batch_size: int | None = None,
    figures: int = 4,
    force: bool = False,
    progress: JobProgress | None = None,
    options: Mapping[str, Any] | None = None,
) -> SanityJobResult:
    """Run :func:`~seethrough.trust.model_randomization` and :func:`edge_similarity` on
    ``images`` and write ``sanity.json``, one similarity-curve figure per measure and the
    randomization grid of the first ``figures`` images into ``out``."""
    if not images:
        raise InvalidOptionError("no images to check")
    folder = OutputFolder(out, force, manifest=SANITY)
    device = next((p.device for p in net.module.parameters()), torch.device("cpu"))
    x = net.preprocess(list(images), device=device)
    report = (lambda d, t: progress("randomization steps", d, t)) if progress else None
    result = model_randomization(
        net,
        x,
        list(methods),
        target,
        mode=mode,
        granularity=granularity,
        follow_prediction=follow_prediction,
        seed=seed,
        batch_size=batch_size,
        progress=report,
        **dict(options or {}),
    )
    edges = edge_similarity_of(result.original)  # the maps the check already made
    with folder as staging:
        files: list[str] = []
        for metric in METRICS:
            name = f"similarity-{metric}.png"
            save_figure(plot_similarity_curves(result, metric), staging / name)
            files.append(name)
        shown = min(figures, len(images))
        for i in range(shown):
            name = f"randomization-{i:03d}-{_safe(images[i].name)}.png"
            save_figure(plot_randomization_grid(result, i), staging / name)
            files.append(name)
            if progress:
                progress("figures", i + 1, shown)
        summary = {
            "model": net.name,
            "images": [{"name": im.name, "source": im.source} for im in images],
            "randomization": result.to_dict(),
            "edge_similarity": {
                s.method: {m: [_clean(float(v)) for v in s.values(m)[0]] for m in METRICS}
                for s in edges.similarities
            },
            "files": [*files, SANITY],
        }
        (staging / SANITY).write_text(json.dumps(summary, indent=1), encoding="utf-8")
        files.append(SANITY)
    return SanityJobResult(Path(out), result, tuple(files))
