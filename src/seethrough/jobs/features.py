"""The features jobs: filters, feature maps, activation maximization, DeepDream, feature
inversion and top-activating examples → PNG figures and one JSON file each, written whole
or not at all.

Each job holds its output folder while it computes and writes only when everything
succeeded (:class:`~seethrough.reporting.output.OutputFolder`); the JSON file lists the files
of the run (``"files"``) so that ``--force`` can replace them, and an ``index.html`` shows
the run's settings and figures.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor

from ..core.datasets import model_source
from ..core.guard import guarded
from ..data.fashion_mnist import FASHION_MNIST_CLASSES, FashionMNIST
from ..data.images import LoadedImage
from ..data.sources import ImageSource
from ..errors import InvalidInputError, InvalidOptionError, SeethroughError
from ..inside import (
    dream,
    feature_maps,
    filters,
    invert,
    invert_layers,
    maximize,
    stability,
    top_examples,
)
from ..models.zoo import FASHION_CNN_PREPROCESS, LoadedModel
from ..reporting.html import PAGE, PageFigure, render_job_page
from ..reporting.output import OutputFolder, file_stems
from ..reporting.serialize import to_jsonable, write_json
from ..viz import (
    plot_dream,
    plot_feature_maps,
    plot_filters,
    plot_inversion,
    plot_top_examples,
    plot_traces,
    plot_visualization,
    save_figure,
)

__all__ = [
    "FeaturesJobResult",
    "load_dataset",
    "open_dataset",
    "run_dream",
    "run_filters",
    "run_invert",
    "run_maps",
    "run_maximize",
    "run_top_examples",
]

JobProgress = Callable[[str, int, int], None]
IMAGES_PER_MAPS_FIGURE = 4
CHANNELS_PER_TOP_FIGURE = 16


@dataclass(frozen=True)
class FeaturesJobResult:
    """What a features job wrote: the folder, the files, and the library's result."""

    out: Path
    files: tuple[str, ...]
    result: Any


def _device_of(net: LoadedModel) -> torch.device:
    return next((p.device for p in net.module.parameters()), torch.device("cpu"))


def _report(progress: JobProgress | None, name: str) -> Callable[[int, int], None] | None:
    return None if progress is None else (lambda done, total: progress(name, done, total))


class _Writer:
    """Collects figures, images and the JSON summary into the staging folder."""

    def __init__(self, staging: Path) -> None:
        self.staging = staging
        self.files: list[str] = []

    def figure(self, name: str, figure: Figure) -> None:
        save_figure(figure, self.staging / name)
        self.files.append(name)

    def image(self, name: str, pixels: Tensor) -> None:
        """A ``(C, H, W)`` image in [0, 1] as an 8-bit PNG."""
        array = pixels.detach().float().clamp(0, 1).mul(255).round().byte().cpu().numpy()
        array = array[0] if array.shape[0] == 1 else np.moveaxis(array[:3], 0, -1)
        Image.fromarray(array).save(self.staging / name)
        self.files.append(name)

    def summary(
        self,
        name: str,
        content: dict[str, Any],
        settings: dict[str, object],
        shows: dict[str, str],
    ) -> None:
        """``name`` (the JSON) and ``index.html``: ``settings`` as a table, then every PNG
        with the text of the longest prefix in ``shows`` that starts its name as its alt."""
        write_json(self.staging / name, {**content, "files": [*self.files, PAGE, name]})
        figures = [
            PageFigure(f, shows[max((p for p in shows if f.startswith(p)), key=len)])
            for f in self.files
            if f.endswith(".png")
        ]
        job = name.removesuffix(".json")
        title = f"seethrough features {job}: {content['model']}"
        page = render_job_page(title, settings, name, figures=figures)
        (self.staging / PAGE).write_text(page, encoding="utf-8")
        self.files.extend([PAGE, name])


def _images_json(images: Sequence[LoadedImage]) -> list[dict[str, str]]:
    return [{"name": im.name, "source": im.source} for im in images]


def run_filters(
    net: LoadedModel,
    layer: str,
    out: str | os.PathLike[str],
    *,
    mode: str = "auto",
    chosen: Sequence[int] | None = None,
    force: bool = False,
) -> FeaturesJobResult:
    """The filters of ``layer`` → ``filters.png`` and ``filters.json``."""
    with OutputFolder(out, force, manifest="filters.json") as staging:
        result = filters(net, layer)
        writer = _Writer(staging)
        writer.figure("filters.png", plot_filters(result, mode=mode, filters=chosen))
        writer.summary(
            "filters.json",
            {"model": net.name, "filters": result},
            {"model": net.name, "layer": layer, "mode": mode},
            {"filters": f"the filters (weights) of layer {layer}"},
        )
    return FeaturesJobResult(Path(out), tuple(writer.files), result)


def run_maps(
    net: LoadedModel,
    images: Sequence[LoadedImage],
    layer: str,
    out: str | os.PathLike[str],
    *,
    channels: Any = "top",
    k: int = 16,
    order: str = "mean",
    batch_size: int | None = None,
    force: bool = False,
) -> FeaturesJobResult:
    """Feature maps of ``layer`` for ``images`` → ``maps-NNN.png`` (four images each) and
    ``maps.json`` (per-channel statistics)."""
    with OutputFolder(out, force, manifest="maps.json") as staging:
        x = net.preprocess(list(images), device=_device_of(net))
        result = feature_maps(
            net, x, layer, channels=channels, k=k, order=order, batch_size=batch_size
        )
        writer = _Writer(staging)
        for g, a in enumerate(range(0, len(images), IMAGES_PER_MAPS_FIGURE)):
            shown = list(range(a, min(a + IMAGES_PER_MAPS_FIGURE, len(images))))
            figure = plot_feature_maps(
                result,
                images=shown,
                transform=net.preprocess,
                names=[im.name for im in images],
            )
            writer.figure(f"maps-{g:03d}.png", figure)
        summary = {"model": net.name, "images": _images_json(images), "maps": result}
        writer.summary(
            "maps.json",
            summary,
            {"model": net.name, "layer": layer, "images": len(images), "channels": k},
            {"maps-": f"feature maps of layer {layer}: the strongest channels, four images each"},
        )
    return FeaturesJobResult(Path(out), tuple(writer.files), result)


def run_maximize(
    net: LoadedModel,
    objectives: Sequence[str],
    out: str | os.PathLike[str],
    *,
    seeds: int = 0,
    seed: int = 0,
    options: dict[str, Any] | None = None,
    force: bool = False,
    progress: JobProgress | None = None,
) -> FeaturesJobResult:
    """Activation maximization of each objective → ``maximize.png`` (the images),
    ``maximize-traces.png`` and ``maximize.json``. With ``seeds`` ≥ 2 (one objective), the
    stability check instead: the solutions from ``seeds`` seeds and their distances."""
    if seeds and len(objectives) != 1:
        raise InvalidOptionError("--stability checks one objective; give exactly one")
    settings = dict(options or {})
    report = _report(progress, "optimization steps")
    summary: dict[str, Any]
    with OutputFolder(out, force, manifest="maximize.json") as staging:
        if seeds:
            check = stability(
                net, objectives[0], seeds=range(seed, seed + seeds), progress=report, **settings
            )
            vis, summary = check.visualization, {"stability": check}
        else:
            vis = maximize(net, list(objectives), seed=seed, progress=report, **settings)
            check, summary = None, {"maximize": vis}
        names = [f"{o} (seed {s})" for o, s in zip(vis.objectives, vis.seeds)]
        grid = plot_visualization(vis)
        traces = plot_traces(
            vis.traces, names, title="objective during optimization", ylabel="objective"
        )
        writer = _Writer(staging)
        writer.figure("maximize.png", grid)
        writer.figure("maximize-traces.png", traces)
        writer.summary(
            "maximize.json",
            {"model": net.name, **summary},
            {"model": net.name, "objectives": ", ".join(objectives), "seed": seed},
            {
                "maximize": "images optimized to maximize each objective",
                "maximize-traces": "each objective's value during the optimization",
            },
        )
    return FeaturesJobResult(Path(out), tuple(writer.files), check if check is not None else vis)


def run_dream(
    net: LoadedModel,
    images: Sequence[LoadedImage],
    objective: Any,
    out: str | os.PathLike[str],
    *,
    seed: int = 0,
    options: dict[str, Any] | None = None,
    force: bool = False,
    progress: JobProgress | None = None,
) -> FeaturesJobResult:
    """DeepDream on ``images`` → ``dream-NNN-NAME.png`` (each dreamed image), ``dream.png``
    (originals beside the dreams) and ``dream.json``."""
    with OutputFolder(out, force, manifest="dream.json") as staging:
        x = net.preprocess(list(images), device=_device_of(net))
        tell = _report(progress, "dream steps")
        result = dream(net, x, objective, seed=seed, progress=tell, **(options or {}))
        figure = plot_dream(result)
        pixels = result.images
        if float(pixels.min()) < 0 or float(pixels.max()) > 1:  # normalisation unknown
            pixels = net.preprocess.invert(result.inputs)
        writer = _Writer(staging)
        stems = file_stems([image.name for image in images], "image")
        for i, stem in enumerate(stems):
            writer.image(f"dream-{i:03d}-{stem}.png", pixels[i])
        writer.figure("dream.png", figure)
        summary = {"model": net.name, "images": _images_json(images), "dream": result}
        writer.summary(
            "dream.json",
            summary,
            {"model": net.name, "objective": str(objective), "images": len(images), "seed": seed},
            {"dream-": "a dreamed image", "dream.png": "each original image beside its dream"},
        )
    return FeaturesJobResult(Path(out), tuple(writer.files), result)


def run_invert(
    net: LoadedModel,
    images: Sequence[LoadedImage],
    layers: Sequence[str],
    out: str | os.PathLike[str],
    *,
    seed: int = 0,
    options: dict[str, Any] | None = None,
    force: bool = False,
    progress: JobProgress | None = None,
) -> FeaturesJobResult:
    """Feature inversion of ``images`` from each of ``layers`` → ``inversion.png`` and
    ``inversion.json`` (feature and pixel errors per layer and image)."""
    report = _report(progress, "inversion steps")
    settings = options or {}
    result: Any
    with OutputFolder(out, force, manifest="inversion.json") as staging:
        x = net.preprocess(list(images), device=_device_of(net))
        if len(layers) == 1:
            result = invert(net, x, layers[0], seed=seed, progress=report, **settings)
        else:
            result = invert_layers(net, x, list(layers), seed=seed, progress=report, **settings)
        writer = _Writer(staging)
        writer.figure("inversion.png", plot_inversion(result))
        summary = {"model": net.name, "images": _images_json(images), "inversion": result}
        writer.summary(
            "inversion.json",
            summary,
            {"model": net.name, "layers": ", ".join(layers), "images": len(images), "seed": seed},
            {"inversion": "each image beside its reconstruction from each layer's features"},
        )
    return FeaturesJobResult(Path(out), tuple(writer.files), result)


def _image_blocks(net: LoadedModel, images: Sequence[LoadedImage]) -> Iterator[Tensor]:
    """Preprocess a folder's images a block at a time, as the top-k streams them."""
    device = _device_of(net)
    for a in range(0, len(images), 64):
        yield net.preprocess(list(images[a : a + 64]), device=device)


def _check_runs_on(net: LoadedModel, example: Tensor) -> None:
    """Refuse, in one line, a model that cannot take Fashion-MNIST's (N, 1, 28, 28)."""
    param = next(net.module.parameters(), None)
    if param is not None:
        example = example.to(device=param.device, dtype=param.dtype)
    try:
        with guarded(net.module), torch.inference_mode():
            net.module(example)
    except SeethroughError:
        raise  # e.g. a model in training mode: its own message
    except RuntimeError as error:
        raise InvalidOptionError(
            f"model {net.name} cannot run on Fashion-MNIST images (N, 1, 28, 28): "
            f"{str(error).splitlines()[0]}; use --model fashion-cnn"
        ) from None


def load_dataset(name: str, limit: int | None = None) -> FashionMNIST:
    """The first ``limit`` images (all when ``None``) of the test split of dataset ``name``
    (``"fashion-mnist"``), for :func:`run_top_examples`."""
    if name != "fashion-mnist":
        raise InvalidOptionError(f"unknown dataset {name!r}; the one dataset is 'fashion-mnist'")
    from ..data.fashion_mnist import load_fashion_mnist

    data = load_fashion_mnist("test")
    return replace(data, images=data.images[:limit], labels=data.labels[:limit])


def open_dataset(
    net: LoadedModel, spec: str, limit: int | None = None
) -> FashionMNIST | ImageSource:
    """The dataset ``spec`` for :func:`run_top_examples`: ``"fashion-mnist"`` as
    :func:`load_dataset` gives it; anything else (``"fashion-mnist:train"``, a folder of
    images, a ``.csv``/``.parquet`` list) as an image source of ``net``'s inputs, read a
    batch at a time (:func:`~seethrough.core.datasets.model_source`)."""
    if spec == "fashion-mnist":
        return load_dataset(spec, limit)
    return model_source(net, spec, limit=limit).source


def run_top_examples(
    net: LoadedModel,
    source: Sequence[LoadedImage] | FashionMNIST | ImageSource,
    layer: str,
    out: str | os.PathLike[str],
    *,
    channels: Sequence[int] | None = None,
    k: int = 9,
    batch_size: int | None = None,
    force: bool = False,
    progress: JobProgress | None = None,
) -> FeaturesJobResult:
    """Top-``k`` images per channel of ``layer`` over a folder's images, a Fashion-MNIST
    split or an image source (streamed; see :func:`open_dataset`) →
    ``top-examples-NNN.png`` (16 channels each: the receptive-field crops) and
    ``top-examples.json``."""
    if isinstance(source, FashionMNIST) and len(source) == 0:
        raise InvalidInputError("no Fashion-MNIST images to rank (--limit 0?)")
    with OutputFolder(out, force, manifest="top-examples.json") as staging:
        result, content, transform = _top_examples(
            net, source, layer, channels, k, batch_size, _report(progress, "images")
        )
        groups = list(range(0, len(result.channels), CHANNELS_PER_TOP_FIGURE))
        writer = _Writer(staging)
        for g, a in enumerate(groups):
            rows = list(range(a, min(a + CHANNELS_PER_TOP_FIGURE, len(result.channels))))
            figure = plot_top_examples(result, channels=rows, transform=transform)
            writer.figure(f"top-examples-{g:03d}.png", figure)
            if progress is not None:
                progress("figures", g + 1, len(groups))
        writer.summary(
            "top-examples.json",
            {"model": net.name, **content},
            {"model": net.name, "layer": layer, "examples per channel": k},
            {"top-examples-": f"for each channel of {layer}, the image crops that excite it most"},
        )
    return FeaturesJobResult(Path(out), tuple(writer.files), result)


def _top_examples(
    net: LoadedModel,
    source: Sequence[LoadedImage] | FashionMNIST | ImageSource,
    layer: str,
    channels: Sequence[int] | None,
    k: int,
    batch_size: int | None,
    report: Callable[[int, int], None] | None,
) -> tuple[Any, dict[str, Any], Any]:
    """The top examples, the JSON content (hits named) and the figures' transform."""
    names: Any
    if isinstance(source, FashionMNIST):
        _check_runs_on(net, source.inputs(0, 1))
        data: Any = source
        transform: Any = FASHION_CNN_PREPROCESS
        names = [f"{i}: {FASHION_MNIST_CLASSES[int(c)]}" for i, c in enumerate(source.labels)]
        described: Any = {"dataset": f"fashion-mnist {source.split}", "images": len(source)}
    elif isinstance(source, ImageSource):
        data, transform, names = source, net.preprocess, None  # names: the hits' paths
        described = {"dataset": source.spec, "images": len(source)}
    else:
        data, transform = _image_blocks(net, source), net.preprocess
        names = [im.name for im in source]
        described = {"images": _images_json(source)}
    result = top_examples(
        net, data, layer, channels=channels, k=k, batch_size=batch_size, progress=report
    )
    content = to_jsonable(result)
    for row, channel in enumerate(content["channels"]):
        for rank, hit in enumerate(channel["hits"]):
            hit["name"] = names[hit["image"]] if names is not None else result.paths[row][rank]
    if names is None:
        described["skipped"] = result.skipped
    return result, {**described, "top_examples": content}, transform
