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
from ..reporting.html import PAGE, PageFigure, PageTable, number, render_job_page
from ..reporting.output import OutputFolder, file_stems
from ..reporting.serialize import to_jsonable, write_json
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
    ``methods`` are names or configured methods (``make_method(name, **options)``); an
    ``index.html`` shows the figures and the similarity tables."""
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
            "files": [*files, PAGE, SANITY],
        }
        data = to_jsonable(summary)
        write_json(staging / SANITY, data)
        (staging / PAGE).write_text(_page(data, files), encoding="utf-8")
        files.extend([PAGE, SANITY])
    return SanityJobResult(Path(out), result, tuple(files))


def _page(data: dict[str, Any], figures: Sequence[str]) -> str:
    """``index.html``: settings, similarity after the last step, edge comparison, figures."""
    run = data["randomization"]
    steps = [step["name"] for step in run["steps"]]
    methods = run["methods"]
    settings = {
        "model": data["model"],
        "images": len(data["images"]),
        "methods": ", ".join(methods),
        "mode": run["mode"],
        "granularity": run["granularity"],
        "steps (in order)": ", ".join(steps),
        "seed": run["seed"],
    }
    tables = [_verdict_table(run), _similarity_table(methods, steps), _edges_table(data)]
    pictures = [PageFigure(name, _figure_alt(data, name)) for name in figures]
    return render_job_page(
        f"seethrough sanity: {data['model']}",
        settings,
        SANITY,
        tables=tables,
        figures=pictures,
        intro="Model-parameter randomization (Adebayo et al., 2018): the model's layers are "
        "re-initialised one step at a time and each method's map is compared to its map "
        "on the trained model.",
    )


def _verdict_table(run: dict[str, Any]) -> PageTable:
    """Each method's sanity verdict with its interval (``RandomizationResult.verdicts``)."""
    rows = [
        [
            name,
            v["verdict"],
            number(v["mean"]),
            "–" if v["ci"] is None else f"[{number(v['ci'][0])}, {number(v['ci'][1])}]",
            number(v["threshold"]),
            v["n"],
            v["reason"] or "",
        ]
        for name, v in run["verdicts"].items()
    ]
    return PageTable(
        "verdicts",
        "Verdict per method",
        ["method", "verdict", "similarity", "95% interval", "threshold", "images", "why"],
        rows,
        note="Passed when the 95% interval (Student t, over the images) of the similarity lies "
        "below the threshold, failed when above, inconclusive otherwise; in cascading mode "
        "each image's similarity is averaged over all the steps (docs/report.md).",
        numeric=(2, 3, 4, 5),
    )


def _similarity_table(methods: dict[str, Any], steps: Sequence[str]) -> PageTable:
    """Each method's mean similarity after the last step, per metric, and its self-check."""
    return PageTable(
        "similarity",
        f"Similarity to the trained model's map after the last step ({steps[-1]})"
        if steps
        else "Similarity to the trained model's map",
        ["method", *METRICS, "self-check (spearman_abs)"],
        [
            [
                name,
                *(
                    number(m[metric]["mean"][-1] if m[metric]["mean"] else None)
                    for metric in METRICS
                ),
                number(m["self_check"].get("spearman_abs")),
            ]
            for name, m in methods.items()
        ],
        note="Mean over the images. A method that explains the model should lose its "
        "similarity as the model is randomized (values near 0); near 1 means the map "
        "does not depend on the weights. The self-check is the similarity of two runs "
        "on the trained model: the most any step can reach.",
        numeric=tuple(range(1, len(METRICS) + 2)),
    )


def _edges_table(data: dict[str, Any]) -> PageTable:
    """Per image, each method's similarity to the edge detector's map."""
    return PageTable(
        "edges",
        "Similarity to an edge detector's map (per image)",
        ["method", *METRICS],
        [
            [name, *(", ".join(number(v) for v in values[m]) for m in METRICS)]
            for name, values in data["edge_similarity"].items()
        ],
        note="High values mean the map could be an edge detector's: it may show the "
        "image more than the model.",
    )


def _figure_alt(data: dict[str, Any], name: str) -> str:
    if name.startswith("similarity-"):
        metric = name.removeprefix("similarity-").removesuffix(".png")
        return f"similarity ({metric}) to the trained model's map per step, one curve per method"
    image = data["images"][int(name.split("-")[1])]["name"]  # randomization-NNN-<stem>.png
    return f"each method's map of {image} as the model is randomized step by step"
