"""The strategies job: a dataset run's maps → per-class mean maps and concentration, and
SpRAy clusters per class (Lapuschkin et al., 2019) → ``strategies.json``, figures and
``index.html``, written whole or not at all.

The run is read in bounded memory (:func:`seethrough.scale.class_maps` and
:func:`seethrough.scale.spray_run` stream its maps). The representatives of each cluster
are shown with their images when the run's source can be opened again (a folder, a list
file, Fashion-MNIST — not a Python dataset) and still lists the same images (its
fingerprint equals the run's): each image is made into the model's input as the run did,
then shown in pixels.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..data import open_run, open_source
from ..data.fashion_mnist import FASHION_MEAN, FASHION_STD
from ..errors import InvalidInputError, InvalidOptionError
from ..models import Preprocess
from ..reporting.html import PAGE, PageFigure, PageTable, number, render_job_page, words_table
from ..reporting.output import OutputFolder, file_stems
from ..reporting.serialize import to_jsonable, write_json
from ..scale import By, ClassMaps, SprayResult, class_maps, spray_run
from ..viz import plot_class_maps, plot_spray, save_figure

__all__ = ["STRATEGIES", "StrategiesJobResult", "run_strategies"]

STRATEGIES = "strategies.json"
CLASS_MAPS_FIGURE = "class-maps.png"
CLASS_MAPS_SIZE = 64
"""Mean maps are sum-pooled to at most this side (1,000 ImageNet classes × 224² would not
fit a page, nor memory as float64)."""
JobProgress = Callable[[str, int, int], None]
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StrategiesJobResult:
    """What a strategies job wrote, and what it found."""

    out: Path
    class_maps: ClassMaps
    spray: tuple[SprayResult, ...]
    files: tuple[str, ...]
    notes: tuple[str, ...]


def run_strategies(
    run: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    classes: Sequence[int | str] | None = None,
    method: str | None = None,
    by: By = "label",
    clusters: int | None = None,
    max_clusters: int = 10,
    size: int = 32,
    min_images: int = 20,
    seed: int = 0,
    lang: str = "en",
    force: bool = False,
    progress: JobProgress | None = None,
) -> StrategiesJobResult:
    """Per-class mean maps and SpRAy clusters of the run folder ``run``, written to ``out``.

    Parameters
    ----------
    run : path
        A run of :func:`seethrough.scale.explain_dataset` (finished or not: an unfinished
        run is analysed on its finished shards, and the page says so).
    out : path
        Output folder (held by this run, written whole or not at all).
    classes : sequence of int or str, optional
        The classes to cluster (indices or names); default: every class with at least
        ``min_images`` images.
    method : str, optional
        The stored maps to analyse; default: the run's first.
    by : {"label", "target", "predicted"}
        Which index column assigns an image to a class.
    clusters, max_clusters, size, seed
        :func:`seethrough.scale.spray` options (``clusters=None``: the eigengap chooses).
    min_images : int
        Classes with fewer images are not clustered (default 20: spectral clustering of a
        handful of maps says nothing).
    lang : {"en", "zh"}
        Language of the sentences.
    force, progress
        Replace an earlier job's results; ``progress(step, done, planned)``.

    Raises
    ------
    InvalidOptionError, InvalidInputError
        An unknown method or class, or a run without images.
    """
    if lang not in ("en", "zh"):
        raise InvalidOptionError(f"unknown language {lang!r} (valid: en, zh)")
    opened = open_run(Path(run))
    if len(opened) == 0:
        raise InvalidInputError(f"the run {run} has no explained images yet")
    chosen = method if method is not None else opened.names[0]
    with OutputFolder(out, force, manifest=STRATEGIES) as staging:
        summary = class_maps(opened, chosen, by=by, size=CLASS_MAPS_SIZE, seed=seed)
        wanted = _classes(summary, classes, min_images)
        results = []
        for cls in wanted:
            results.append(
                spray_run(
                    opened,
                    cls=cls,
                    method=chosen,
                    by=by,
                    size=size,
                    clusters=clusters,
                    max_clusters=max_clusters,
                    seed=seed,
                )
            )
            if progress is not None:
                progress("spray", len(results), len(wanted))
        files = _figures(opened, summary, results, staging)
        data = to_jsonable(
            {
                "run": str(run),
                "complete": bool(opened.complete),
                "images": len(opened),
                "method": chosen,
                "by": by,
                "class_maps": summary.to_dict(),
                "class_maps_description": summary.describe().to_dict(lang),
                "spray": [r.to_dict() for r in results],
                "spray_descriptions": [r.describe().to_dict(lang) for r in results],
                "lang": lang,
                "files": [*files, PAGE, STRATEGIES],
            }
        )
        write_json(staging / STRATEGIES, data)
        (staging / PAGE).write_text(_page(data, files), encoding="utf-8")
        files.extend([PAGE, STRATEGIES])
    notes = tuple(_notes(results, lang))
    return StrategiesJobResult(Path(out), summary, tuple(results), tuple(files), notes)


def _classes(
    summary: ClassMaps, classes: Sequence[int | str] | None, min_images: int
) -> list[int | str]:
    """The classes to cluster: those asked for (checked by ``spray_run``), else every
    class with at least ``min_images`` images."""
    if classes is not None:
        return [int(c) if isinstance(c, str) and c.strip().isdigit() else c for c in classes]
    found = [c for c, n in zip(summary.classes, summary.counts, strict=True) if n >= min_images]
    if not found:
        raise InvalidInputError(
            f"no class has {min_images} images or more (largest: {max(summary.counts)}); "
            "lower --min-images or explain more images"
        )
    return list(found)


def _figures(
    run: Any, summary: ClassMaps, results: Sequence[SprayResult], staging: Path
) -> list[str]:
    save_figure(plot_class_maps(summary), staging / CLASS_MAPS_FIGURE)
    files = [CLASS_MAPS_FIGURE]
    images = _images(
        run, sorted({r for res in results for c in res.clusters for r in c.representatives})
    )
    labels = [r.class_name or str(r.cls) for r in results]
    for result, stem in zip(results, file_stems(labels, "class"), strict=True):
        name = f"spray-{stem}.png"
        shown = {r: images[r] for c in result.clusters for r in c.representatives if r in images}
        save_figure(plot_spray(result, images=shown or None), staging / name)
        files.append(name)
    return files


def _images(run: Any, rows: Sequence[int]) -> dict[int, Tensor]:
    """Row → the image as the model saw it, in pixels ``(C, H, W)`` in [0, 1] (empty when
    the source cannot be opened again or has changed since the run)."""
    if not rows:
        return {}
    spec = (run.manifest.get("info") or {}).get("source") or ""
    note = run.config.get("transform")
    try:
        source = open_source(spec, label_column=None) if spec else None
    except (InvalidInputError, InvalidOptionError, OSError) as error:
        _log.info("the run's images are not shown: %s", error)
        return {}
    if source is None:
        return {}
    show: Callable[[Tensor], Tensor]
    if note == "fashion-mnist inputs":

        def show(x: Tensor) -> Tensor:
            return (x * FASHION_STD + FASHION_MEAN).clamp(0, 1)
    elif isinstance(note, Mapping) and "preprocess" in note:
        fields: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in note["preprocess"].items()
        }
        preprocess = Preprocess(**fields)
        source = source.with_transform(lambda raw: preprocess(raw)[0])

        def show(x: Tensor) -> Tensor:
            return preprocess.invert(x[None])[0]
    elif note is None:

        def show(x: Tensor) -> Tensor:
            return x
    else:
        return {}
    positions = np.asarray(run.index.column("index").to_numpy(zero_copy_only=False))
    shown = {}
    for row in rows:
        item = source[int(positions[row])]
        if item.pixels is not None:
            shown[row] = show(item.pixels.to(torch.float32))
    return shown


def _notes(results: Sequence[SprayResult], lang: str) -> list[str]:
    notes = []
    for result in results:
        flagged = [c for c in result.clusters if c.differs]
        name = result.class_name or str(result.cls)
        k = len(result.clusters)
        notes.append(
            f"{name}: {k} cluster{'s' if k > 1 else ''} of {int(result.settings['n'])} maps"
            + (f", {len(flagged)} differing from the rest of the class" if flagged else "")
        )
    return notes


def _page(data: Mapping[str, Any], files: Sequence[str]) -> str:
    rows = []
    for result in data["spray"]:
        for cluster in result["clusters"]:
            rows.append(
                [
                    result["class_name"] or result["cls"],
                    cluster["id"],
                    cluster["size"],
                    _interval(cluster["accuracy"]),
                    number(cluster["rest_accuracy"]),
                    _interval(cluster["confidence"]),
                    number(cluster["rest_confidence"]),
                    "yes" if cluster["differs"] else "no",
                ]
            )
    clusters = PageTable(
        "clusters",
        "SpRAy clusters",
        ["class", "cluster", "images", "accuracy", "rest", "confidence", "rest", "differs"],
        rows,
        note="accuracy and confidence of each cluster with a 95 % bootstrap interval, and of "
        "the rest of its class; 'differs': Fisher's exact test (accuracy) or a permutation "
        "test (confidence) against the rest, Holm-corrected, p < 0.05.",
        numeric=(1, 2, 3, 4, 5, 6),
    )
    said = [
        *data["class_maps_description"]["findings"],
        *(f for d in data["spray_descriptions"] for f in d["findings"]),
    ]
    figures = [PageFigure(name, _alt(name), "") for name in files]
    state = "" if data["complete"] else " The run is not finished: these are its finished shards."
    return render_job_page(
        "Strategies",
        {
            "run": data["run"],
            "method": data["method"],
            "images": data["images"],
            "classes by": data["by"],
        },
        STRATEGIES,
        tables=[words_table(said), clusters],
        figures=figures,
        intro="Where the model looks, class by class, and the groups of images it treats "
        "alike (spectral relevance analysis)." + state,
    )


def _alt(name: str) -> str:
    if name == CLASS_MAPS_FIGURE:
        return "The mean explanation map of each class."
    return (
        f"SpRAy for {name.removeprefix('spray-').removesuffix('.png')}: the eigenvalue "
        "spectrum with the chosen gap, and each cluster's mean map and representatives."
    )


def _interval(value: Mapping[str, Any] | None) -> str:
    if value is None:
        return "n/a"
    return f"{number(value['estimate'])} [{number(value['low'])}, {number(value['high'])}]"
