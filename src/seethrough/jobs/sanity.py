"""The sanity job: model-parameter randomization and the edge-map comparison on a set of
images → figures and ``sanity.json``, written whole or not at all."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..attribution import Method
from ..data.images import LoadedImage
from ..errors import InvalidOptionError
from ..models.zoo import LoadedModel
from ..reporting.output import OutputFolder, file_stems
from ..reporting.serialize import write_json
from ..trust.sanity import (
    METRICS,
    RandomizationResult,
    edge_similarity_of,
    model_randomization,
)
from ..viz import plot_randomization_grid, plot_similarity_curves, save_figure

__all__ = ["SANITY", "SanityJobResult", "run_sanity"]

SANITY = "sanity.json"
JobProgress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class SanityJobResult:
    out: Path
    result: RandomizationResult
    files: tuple[str, ...]


def run_sanity(
    net: LoadedModel,
    images: Sequence[LoadedImage],
    methods: Sequence[str | Method],
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
) -> SanityJobResult:
    """Run :func:`~seethrough.trust.model_randomization` and :func:`edge_similarity` on
    ``images`` and write ``sanity.json``, one similarity-curve figure per measure and the
    randomization grid of the first ``figures`` images into ``out`` (held by this run
    and written whole or not at all: :class:`~seethrough.reporting.output.OutputFolder`).
    ``methods`` are names or configured methods (``make_method(name, **options)``)."""
    if not images:
        raise InvalidOptionError("no images to check")
    with OutputFolder(out, force, manifest=SANITY) as staging:
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
        )
        edges = edge_similarity_of(result.original)  # the maps the check already made
        files: list[str] = []
        for metric in METRICS:
            name = f"similarity-{metric}.png"
            save_figure(plot_similarity_curves(result, metric), staging / name)
            files.append(name)
        shown = min(figures, len(images))
        stems = file_stems([im.name for im in images[:shown]], "image")
        for i in range(shown):
            name = f"randomization-{i:03d}-{stems[i]}.png"
            save_figure(plot_randomization_grid(result, i), staging / name)
            files.append(name)
            if progress:
                progress("figures", i + 1, shown)
        summary = {
            "model": net.name,
            "images": [{"name": im.name, "source": im.source} for im in images],
            "randomization": result,
            "edge_similarity": {
                s.method: {m: s.values(m)[0] for m in METRICS} for s in edges.similarities
            },
            "files": [*files, SANITY],
        }
        write_json(staging / SANITY, summary)
        files.append(SANITY)
    return SanityJobResult(Path(out), result, tuple(files))
