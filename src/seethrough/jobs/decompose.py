"""The decomposition jobs, written whole or not at all
(:class:`~seethrough.reporting.output.OutputFolder`):

* :func:`run_concepts` — concept relevance (CRP) of a layer for a set of images, each top
  channel linked to what it detects: its activation-maximization image and, given a
  dataset, its top-activating examples → ``concepts.json``, ``concepts.safetensors`` (the
  raw heatmaps), ``concepts-NNN.png`` (four images each), ``links-NNN.png`` (twelve
  channels each) and ``index.html``;
* :func:`run_circuit` — the class circuit of each class asked for, and how the circuits
  overlap → ``circuit.json``, ``circuit-<class>.png``, ``circuit-overlap.png`` (several
  classes), optionally ``pruned-<class>.safetensors`` (the pruned model's state dict),
  and ``index.html``.

The pages say what the results say in words (the results' ``describe()``, in English or
Chinese); every number on them is in the JSON summary.

Linking a channel to examples and to activation maximization (``decompose`` may not import
``inside``: the link is made here). Concept relevance folds each batch norm into the conv
before it, so the channel of such a conv is conv + batch norm; a hook on the conv in a
plain forward pass sees the conv's output *before* the batch norm. The links are therefore
made at the batch norm (:func:`link_layer`), whose output is exactly what concept
relevance decomposes; the page says so.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save
from torch import Tensor, nn

from ..core.layers import find_layer
from ..data.fashion_mnist import FASHION_MNIST_CLASSES, FashionMNIST
from ..data.images import LoadedImage
from ..decompose import (
    Circuit,
    CircuitOverlap,
    ConceptRelevance,
    circuit,
    circuit_overlap,
    concepts,
)
from ..errors import InvalidInputError, InvalidOptionError, TargetError
from ..inside import TopExamples, Visualization, maximize, top_examples
from ..inside import channels as channel_objectives
from ..models.zoo import FASHION_CNN_PREPROCESS, LoadedModel
from ..reporting.html import PAGE, PageFigure, PageTable, number, render_job_page, words_table
from ..reporting.output import OutputFolder, file_stems
from ..reporting.serialize import to_jsonable, write_json
from ..viz import plot_circuit, plot_circuit_overlap, plot_concept_links, plot_concepts, save_figure
from ..words import LANGUAGES
from .anatomy import LabelledData

__all__ = [
    "CIRCUIT",
    "CONCEPTS",
    "DEFAULT_LAYERS",
    "HEATMAPS",
    "STEPS",
    "CircuitJobResult",
    "ConceptData",
    "ConceptsJobResult",
    "class_indices",
    "concept_data",
    "link_layer",
    "run_circuit",
    "run_concepts",
]

CONCEPTS = "concepts.json"
CIRCUIT = "circuit.json"
HEATMAPS = "concepts.safetensors"
"""The raw tensors of a concepts run: ``inputs``, ``channel_relevance``, ``top_channels``,
``heatmaps`` (each top channel's conditional heatmap), ``heatmap`` (all channels) and,
when made, ``maximization`` (the activation-maximization images, one per linked channel)."""
DEFAULT_LAYERS = {"efficientnet-lite0": "_blocks.12"}
"""The layer :func:`run_concepts` decomposes when none is given, per built-in model."""
STEPS = 64
"""Activation-maximization steps per linked channel by default (the library's are 256: the
job optimises one image per linked channel, up to ``top`` × images of them)."""
ROWS_PER_FIGURE = 4
CHANNELS_PER_FIGURE = 12
_FASHION = "fashion-mnist"
JobProgress = Callable[[str, int, int], None]


# --------------------------------------------------------------------------- concepts


@dataclass(frozen=True, eq=False)
class ConceptData:
    """A dataset to link channels to: what :func:`~seethrough.inside.top_examples`
    streams (a Fashion-MNIST split, or a folder's images), a name per image, where it
    came from and how to show its images."""

    data: FashionMNIST | tuple[LoadedImage, ...]
    names: tuple[str, ...]
    source: str
    transform: Any

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class ConceptsJobResult:
    """What :func:`run_concepts` wrote: the folder, the library's results, the JSON
    summary (as written) and the files."""

    out: Path
    result: ConceptRelevance
    linked_layer: str
    examples: TopExamples | None
    visualization: Visualization | None
    summary: dict[str, Any]
    files: tuple[str, ...]


def concept_data(net: LoadedModel, data: str, limit: int | None = None) -> ConceptData:
    """The first ``limit`` images of ``data``: ``"fashion-mnist"`` (its test split),
    ``"fashion-mnist:test"`` or ``":train"`` — for the Fashion-MNIST CNN's preprocessing
    only —, or a folder (its images, subfolders included, sorted by name).

    Raises
    ------
    InvalidOptionError
        An unknown split, a Fashion-MNIST split for a model with another preprocessing,
        or neither form.
    """
    name, _, split = data.partition(":")
    if name == _FASHION:
        split = split or "test"
        if split not in ("test", "train"):
            raise InvalidOptionError(
                f"--data {data!r}: unknown split {split!r} (valid: {_FASHION}:test, "
                f"{_FASHION}:train)"
            )
        if net.preprocess != FASHION_CNN_PREPROCESS:
            raise InvalidOptionError(
                f"--data {data!r} holds 28×28 grayscale images normalised for the "
                f"Fashion-MNIST CNN, but {net.name} takes {net.preprocess.describe()}; give "
                "--data a folder of images for this model"
            )
        from ..data.fashion_mnist import load_fashion_mnist

        found = load_fashion_mnist(split)
        cut = replace(found, images=found.images[:limit], labels=found.labels[:limit])
        names = tuple(f"{i}: {FASHION_MNIST_CLASSES[int(c)]}" for i, c in enumerate(cut.labels))
        return ConceptData(cut, names, f"{_FASHION}:{split}", FASHION_CNN_PREPROCESS)
    if not Path(data).is_dir():
        raise InvalidOptionError(
            f"--data {data!r}: not '{_FASHION}[:test|train]' and not a folder of images"
        )
    from ..data import load_images

    images = tuple(load_images(data, recursive=True)[:limit])
    return ConceptData(images, tuple(im.name for im in images), data, net.preprocess)


def _foldable(layer: nn.Module, bn: nn.Module) -> bool:
    """A batch norm that concept relevance folds into ``layer`` (the rule of
    :class:`~seethrough.core.relevance.RelevanceRule`'s canonization: the next child of the
    same parent, in eval mode, with running statistics, one per output channel)."""
    kinds = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
    if not isinstance(layer, kinds) or not isinstance(bn, nn.modules.batchnorm._BatchNorm):
        return False
    channels = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
    return (
        bn.running_mean is not None
        and bn.running_var is not None
        and not bn.training
        and bn.num_features == channels
    )


def link_layer(module: nn.Module, layer: str) -> str:
    """Where ``layer``'s channels are linked to examples and activation maximization:
    ``layer`` itself, or — for a conv or linear layer whose batch norm concept relevance
    folds into it — that batch norm, whose output is what concept relevance decomposes
    (module docstring)."""
    found = find_layer(module, layer)
    parent_name, _, _ = layer.rpartition(".")
    parent = find_layer(module, parent_name) if parent_name else module
    children = [(k, c) for k, c in parent._modules.items() if c is not None]
    for (_, a), (name, b) in pairwise(children):
        if a is found and _foldable(a, b):
            return f"{parent_name}.{name}" if parent_name else name
    return layer


def _order(top_channels: Tensor) -> list[int]:
    """The top channels of every row, each once, in order of first appearance."""
    seen: dict[int, None] = {}
    for c in top_channels.flatten().tolist():
        seen.setdefault(int(c), None)
    return list(seen)


def _device(net: LoadedModel) -> torch.device:
    return next((p.device for p in net.module.parameters()), torch.device("cpu"))


def _check_lang(lang: str) -> None:
    if lang not in LANGUAGES:
        raise InvalidOptionError(f"unknown language {lang!r} (valid: {', '.join(LANGUAGES)})")


def _blocks(net: LoadedModel, images: Sequence[LoadedImage]) -> Iterator[Tensor]:
    """A folder's images preprocessed a block at a time, as the top-k streams them."""
    device = _device(net)
    for a in range(0, len(images), 64):
        yield net.preprocess(list(images[a : a + 64]), device=device)


def _examples(
    net: LoadedModel,
    data: ConceptData,
    layer: str,
    ids: list[int],
    k: int,
    batch_size: int | None,
    progress: JobProgress | None,
) -> TopExamples:
    if not len(data):
        raise InvalidInputError(f"--data {data.source}: no images to rank (--limit 0?)")
    stream: Any = data.data if isinstance(data.data, FashionMNIST) else _blocks(net, data.data)
    report = (lambda d, _: progress("top examples", d, len(data))) if progress else None
    return top_examples(
        net, stream, layer, channels=ids, k=k, batch_size=batch_size, progress=report
    )


def _visualize(
    net: LoadedModel,
    layer: str,
    ids: list[int],
    steps: int,
    seed: int,
    batch_size: int | None,
    progress: JobProgress | None,
) -> Visualization:
    """One image per channel, at the model's own input size (the random padding of the
    standard transforms is resized away: models with a fixed-size head run too)."""
    report = (lambda d, t: progress("activation maximization", d, t)) if progress else None
    return maximize(
        net,
        channel_objectives(layer, ids),
        steps=steps,
        seed=seed,
        batch_size=batch_size,
        input_size=net.preprocess.size,
        progress=report,
    )


def run_concepts(
    net: LoadedModel,
    images: Sequence[LoadedImage],
    layer: str,
    out: str | os.PathLike[str],
    *,
    target: Any = None,
    top: int = 6,
    rank: str = "signed",
    composite: str = "epsilon_plus_flat",
    data: ConceptData | None = None,
    examples: int = 9,
    visualize: bool = True,
    steps: int = STEPS,
    seed: int = 0,
    batch_size: int | None = None,
    lang: str = "en",
    force: bool = False,
    progress: JobProgress | None = None,
) -> ConceptsJobResult:
    """Run :func:`~seethrough.decompose.concepts` on ``images`` at ``layer`` and link
    every top channel to what it detects; write the results into ``out``.

    Parameters
    ----------
    net : LoadedModel
        Its preprocessing makes the inputs and shows them.
    images : sequence of LoadedImage
    layer : str
        Dotted name of the layer whose channels are decomposed.
    out : path
        The output folder (held by this run, written whole or not at all).
    target, top, rank, composite, batch_size
        As for :func:`~seethrough.decompose.concepts` (``target=None``: the prediction).
    data : ConceptData, optional
        A dataset (:func:`concept_data`): each linked channel's ``examples``
        top-activating images (:func:`~seethrough.inside.top_examples`).
    visualize : bool
        Optimise an image per linked channel (:func:`~seethrough.inside.maximize`, ``steps``
        Adam steps, image ``i`` seeded ``seed + i``, the model's input size).
    lang : {"en", "zh"}
        Language of the sentences.
    force, progress
        Replace an earlier run's results; ``progress(step, done, planned)``.

    Returns
    -------
    ConceptsJobResult
        The linked channels are the top channels of every image, each once, in order
        of first appearance.

    Raises
    ------
    InvalidOptionError, LayerError, TargetError
        What :func:`~seethrough.decompose.concepts` refuses (``top`` larger than the
        layer's channels, an unknown layer or composite...), an unknown language, no images.
    """
    _check_lang(lang)
    if not images:
        raise InvalidOptionError("no images to decompose")
    linked = link_layer(net.module, layer)
    with OutputFolder(out, force, manifest=CONCEPTS) as staging:
        x = net.preprocess(list(images), device=_device(net))
        if progress:
            progress("concept relevance", 0, 1)
        result = concepts(
            net,
            x,
            layer,
            target="predicted" if target is None else target,
            top=top,
            rank=rank,
            composite=composite,
            batch_size=batch_size,
        )
        if progress:
            progress("concept relevance", 1, 1)
        ids = _order(result.top_channels)
        tops = None
        if data is not None:
            tops = _examples(net, data, linked, ids, examples, batch_size, progress)
        vis = _visualize(net, linked, ids, steps, seed, batch_size, progress) if visualize else None
        files = _write_concepts(net, result, ids, tops, vis, data, staging, progress)
        summary = to_jsonable(
            {
                "model": net.name,
                "images": [{"name": im.name, "source": im.source} for im in images],
                "layer": layer,
                "linked_layer": linked,
                "concepts": result,
                "channels": [{"channel": c, "top_in_rows": _rows_of(result, c)} for c in ids],
                "data": None if data is None else {"source": data.source, "images": len(data)},
                "top_examples": None if tops is None else _named(to_jsonable(tops), data),
                "visualization": vis,
                "description": result.describe().to_dict(lang),
                "lang": lang,
                "files": [*files, PAGE, CONCEPTS],
            }
        )
        write_json(staging / CONCEPTS, summary)
        (staging / PAGE).write_text(_concepts_page(summary, files), encoding="utf-8")
        files.extend([PAGE, CONCEPTS])
    return ConceptsJobResult(Path(out), result, linked, tops, vis, summary, tuple(files))


def _rows_of(result: ConceptRelevance, channel: int) -> list[int]:
    return [r for r in range(len(result.top_channels)) if channel in result.top_channels[r]]


def _named(content: dict[str, Any], data: ConceptData | None) -> dict[str, Any]:
    """The top examples' JSON with each hit's image named."""
    assert data is not None
    for channel in content["channels"]:
        for hit in channel["hits"]:
            hit["name"] = data.names[hit["image"]]
    return content


def _write_concepts(
    net: LoadedModel,
    result: ConceptRelevance,
    ids: list[int],
    tops: TopExamples | None,
    vis: Visualization | None,
    data: ConceptData | None,
    staging: Path,
    progress: JobProgress | None,
) -> list[str]:
    """The raw tensors and the figures; their file names."""
    tensors = {
        "inputs": result.inputs,
        "channel_relevance": result.channel_relevance,
        "top_channels": result.top_channels,
        "heatmaps": result.heatmaps,
        "heatmap": result.heatmap,
    }
    if vis is not None:
        tensors["maximization"] = vis.images
    # save() + write_bytes rather than save_file, which creates the file with mode 0600
    plain = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    (staging / HEATMAPS).write_bytes(save(plain, metadata={"layer": result.layer}))
    files = [HEATMAPS]
    groups = [
        list(range(a, min(a + ROWS_PER_FIGURE, len(result.scores))))
        for a in range(0, len(result.scores), ROWS_PER_FIGURE)
    ]
    links = [ids[a : a + CHANNELS_PER_FIGURE] for a in range(0, len(ids), CHANNELS_PER_FIGURE)]
    total = len(groups) + (len(links) if tops is not None or vis is not None else 0)
    for g, rows in enumerate(groups):
        name = f"concepts-{g:03d}.png"
        save_figure(plot_concepts(result, rows=rows, transform=net.preprocess), staging / name)
        files.append(name)
        if progress:
            progress("figures", len(files) - 1, total)
    if tops is None and vis is None:
        return files
    for g, chosen in enumerate(links):
        part = None
        if vis is not None:
            start = g * CHANNELS_PER_FIGURE
            part = replace(
                vis,
                images=vis.images[start : start + len(chosen)],
                values=vis.values[start : start + len(chosen)],
            )
        figure = plot_concept_links(
            result,
            chosen,
            examples=tops,
            visualization=part,
            transform=data.transform if data is not None else net.preprocess,
        )
        name = f"links-{g:03d}.png"
        save_figure(figure, staging / name)
        files.append(name)
        if progress:
            progress("figures", len(files) - 1, total)
    return files


def _class_name(names: Sequence[str] | None, index: int) -> str:
    if index < 0:
        return "target score"
    return names[index] if names and index < len(names) else f"class {index}"


def _concepts_page(data: dict[str, Any], files: Sequence[str]) -> str:
    """``index.html`` of a concepts run: settings, sentences, one row per explained
    image, one row per linked channel, the figures."""
    c = data["concepts"]
    s = c["settings"]
    linked = data["linked_layer"]
    vis = data["visualization"]
    settings: dict[str, object] = {
        "model": data["model"],
        "images": len(data["images"]),
        "layer": f"{c['layer']} ({c['layer_channels']} channels)",
        "composite": f"{c['composite']} (batch norms folded: {'yes' if s['canonize'] else 'no'})",
        "top channels": f"{s['top']} per image, by {c['rank']} relevance",
        "linked at": linked
        if linked == c["layer"]
        else f"{linked} (the batch norm folded into {c['layer']})",
        "dataset": "none (no top examples)"
        if data["data"] is None
        else f"{data['data']['source']} ({data['data']['images']} images)",
        "activation maximization": "not run"
        if vis is None
        else f"{vis['settings']['steps']} steps, seeds {vis['seeds'][0]} to {vis['seeds'][-1]}",
    }
    names = c["class_names"]
    image_names = [im["name"] for im in data["images"]]
    rows = []
    for r, channels in enumerate(c["top_channels"]):
        picked = ", ".join(
            f"{ch} ({number(100 * share, 1)}%)"
            for ch, share in zip(channels, c["top_share"][r], strict=True)
        )
        rows.append(
            [
                image_names[c["image_index"][r]],
                _class_name(names, c["targets"][r]),
                number(c["scores"][r]),
                number(c["total_relevance"][r]),
                picked,
                f"{number(100 * c['coverage'][r], 1)}%",
            ]
        )
    per_image = PageTable(
        "images",
        "Per image",
        ["image", "class", "score", "relevance at the layer", "top channels (share)", "top share"],
        rows,
        note="Score: the class's logit, the relevance put at the output. Relevance at the "
        "layer: what the LRP rules pass down to the layer's output, summed (not the whole "
        "score: biases and stabilisers above it absorb or add relevance). Share: a "
        "channel's relevance over the layer's absolute relevance (negative: the channel "
        "speaks against the class); top share: what the top channels carry together.",
        numeric=(2, 3, 5),
    )
    tables = [
        words_table(data["description"]["findings"]),
        per_image,
        _channels_table(data, image_names),
    ]
    link_note = (
        ""
        if linked == c["layer"]
        else f" Concept relevance folds the batch norm {linked} into {c['layer']}, so a "
        f"channel of {c['layer']} here is conv and batch norm together; its examples and "
        f"its optimised image are therefore those of {linked}'s output."
    )
    figures = [
        PageFigure(f, _concepts_alt(f, c["layer"], linked)) for f in files if f.endswith(".png")
    ]
    return render_job_page(
        f"seethrough decompose concepts: {data['model']}",
        settings,
        CONCEPTS,
        tables=tables,
        figures=figures,
        intro="Concept relevance (CRP; Achtibat et al., 2023) splits an LRP explanation at "
        "a layer: which channels carry the relevance of each prediction, and each top "
        "channel's conditional heatmap shows where in the image its evidence lies. Each "
        "channel is linked to what it detects: the image optimised to excite it and, given "
        "a dataset, the images that excite it most." + link_note + f" The raw heatmaps are "
        f"in {HEATMAPS}.",
    )


def _channels_table(data: dict[str, Any], image_names: list[str]) -> PageTable:
    """One row per linked channel: where it ranked, its optimised image's activation and
    its strongest examples."""
    c = data["concepts"]
    vis = data["visualization"]
    tops = data["top_examples"]
    hits = {ch["channel"]: ch["hits"] for ch in tops["channels"]} if tops is not None else {}
    rows = []
    for i, entry in enumerate(data["channels"]):
        channel = entry["channel"]
        ranked = []
        for r in entry["top_in_rows"]:
            k = c["top_channels"][r].index(channel)
            ranked.append(f"{image_names[c['image_index'][r]]} #{k + 1}")
        examples = ", ".join(
            f"{h['name']} ({number(h['value'])})" for h in hits.get(channel, [])[:3]
        )
        rows.append(
            [
                channel,
                "; ".join(ranked),
                "–" if vis is None else number(vis["values"][i]),
                examples or "–",
            ]
        )
    return PageTable(
        "channels",
        "Channels and what they detect",
        ["channel", "top channel of (rank)", "optimised image's activation", "strongest examples"],
        rows,
        note="Optimised image's activation: the channel's mean activation on the image "
        "optimised to excite it (framed as the optimiser saw it, without the random moves). "
        "Strongest examples: the dataset images whose strongest unit of the channel is "
        "strongest, with that activation. Both rank by activation, not by relevance.",
        numeric=(0, 2),
    )


def _concepts_alt(name: str, layer: str, linked: str) -> str:
    if name.startswith("concepts-"):
        return (
            f"for each image: the image, the relevance of all channels of {layer}, and each top "
            "channel's conditional heatmap (red for, blue against the class)"
        )
    return (
        f"for each top channel of {layer}: the image optimised to excite it and the dataset "
        f"crops that excite it most, at {linked}"
    )


# --------------------------------------------------------------------------- circuits


@dataclass(frozen=True)
class CircuitJobResult:
    """What :func:`run_circuit` wrote: the folder, the circuits (one per class), their
    overlap (several classes), the JSON summary (as written) and the files."""

    out: Path
    circuits: tuple[Circuit, ...]
    overlap: CircuitOverlap | None
    summary: dict[str, Any]
    files: tuple[str, ...]


def run_circuit(
    net: LoadedModel,
    data: LabelledData,
    classes: Sequence[int | str],
    out: str | os.PathLike[str],
    *,
    layers: Sequence[str] | None = None,
    keep: float = 0.95,
    ablation: str = "mean",
    held_out: float = 0.5,
    seed: int = 0,
    batch_size: int | None = None,
    save_pruned: bool = False,
    lang: str = "en",
    force: bool = False,
    progress: JobProgress | None = None,
) -> CircuitJobResult:
    """Run :func:`~seethrough.decompose.circuit` for each of ``classes`` on ``data`` (and
    :func:`~seethrough.decompose.circuit_overlap` for several) and write the results
    into ``out``.

    Parameters
    ----------
    net : LoadedModel
    data : LabelledData
        Inputs and true classes (e.g. :func:`~seethrough.jobs.robust.evaluation_data`).
    classes : sequence of int or str
        Class indices or names, each once.
    out : path
        The output folder (held by this run, written whole or not at all).
    layers, keep, ablation, held_out, seed, batch_size
        As for :func:`~seethrough.decompose.circuit` (the same for every class).
    save_pruned : bool
        Also write each circuit's pruned model's state dict
        (:meth:`~seethrough.decompose.Circuit.pruned_model`) as ``pruned-<class>.safetensors``.
    lang : {"en", "zh"}
        Language of the sentences.
    force, progress
        Replace an earlier run's results; ``progress(step, done, planned)`` after each
        class.

    Returns
    -------
    CircuitJobResult

    Raises
    ------
    InvalidOptionError, InvalidInputError, LayerError
        What :func:`~seethrough.decompose.circuit` refuses, no class or one given twice,
        an unknown language.
    """
    _check_lang(lang)
    indices = class_indices(net, classes)
    found: list[Circuit] = []
    with OutputFolder(out, force, manifest=CIRCUIT) as staging:
        for i, cls in enumerate(indices):
            if progress:
                progress("circuits", i, len(classes))
            found.append(
                circuit(
                    net,
                    (data.inputs, data.labels),
                    cls,
                    layers=None if layers is None else list(layers),
                    keep=keep,
                    ablation=ablation,
                    held_out=held_out,
                    seed=seed,
                    batch_size=batch_size,
                )
            )
            if progress:
                progress("circuits", i + 1, len(classes))
        overlap = circuit_overlap(found) if len(found) > 1 else None
        files = _write_circuits(found, overlap, staging, save_pruned)
        summary = to_jsonable(
            {
                "model": net.name,
                "data": data.source,
                "images": len(data.labels),
                "circuits": found,
                "overlap": overlap,
                "description": [c.describe().to_dict(lang) for c in found]
                + ([overlap.describe().to_dict(lang)] if overlap is not None else []),
                "lang": lang,
                "files": [*files, PAGE, CIRCUIT],
            }
        )
        write_json(staging / CIRCUIT, summary)
        (staging / PAGE).write_text(_circuit_page(summary, files), encoding="utf-8")
        files.extend([PAGE, CIRCUIT])
    return CircuitJobResult(Path(out), tuple(found), overlap, summary, tuple(files))


def class_indices(net: LoadedModel, classes: Sequence[int | str]) -> list[int]:
    """``classes`` (indices or names of the model's labels) as class indices.

    Raises
    ------
    InvalidOptionError
        No class, or one given twice.
    TargetError
        An unknown class name (close matches suggested) or an index out of range (when the
        model's labels say how many classes it has).
    """
    from ..core.targets import parse_target

    if not classes:
        raise InvalidOptionError("no class given; name at least one")
    indices = []
    for cls in classes:
        target = parse_target(cls, 1, net.labels)
        assert target.indices is not None
        index = int(target.indices[0])
        count = len(net.labels) if net.labels is not None else None
        if count is not None and not 0 <= index < count:
            raise TargetError(
                f"class {cls} is out of range: the model has {count} classes (0 to {count - 1})"
            )
        if index in indices:
            raise InvalidOptionError(f"class {cls!r} is given twice; give each class once")
        indices.append(index)
    return indices


def _write_circuits(
    found: Sequence[Circuit], overlap: CircuitOverlap | None, staging: Path, save_pruned: bool
) -> list[str]:
    stems = file_stems([c.class_name for c in found], "class")
    files: list[str] = []
    for c, stem in zip(found, stems, strict=True):
        name = f"circuit-{stem}.png"
        save_figure(plot_circuit(c), staging / name)
        files.append(name)
        if save_pruned:
            state = c.pruned_model().state_dict()
            plain = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
            meta = {"class": c.class_name, "layers": ",".join(c.layers), "ablation": c.ablation}
            pruned = f"pruned-{stem}.safetensors"
            (staging / pruned).write_bytes(save(plain, metadata=meta))
            files.append(pruned)
    if overlap is not None:
        save_figure(plot_circuit_overlap(overlap), staging / "circuit-overlap.png")
        files.append("circuit-overlap.png")
    return files


def _score_cells(score: dict[str, Any] | None) -> list[str]:
    if score is None:
        return ["–"] * 5
    return [
        f"{number(score['class_accuracy'])} / {number(score['class_accuracy_full'])}",
        f"{number(score['precision'])} / {number(score['precision_full'])}",
        number(score["kept"]),
        str(score["images"]),
        str(score["false_positives"]),
    ]


def _circuit_page(data: dict[str, Any], files: Sequence[str]) -> str:
    """``index.html`` of a circuit run: settings, sentences, one row per class, the
    overlap matrix, the figures."""
    first = data["circuits"][0]
    settings: dict[str, object] = {
        "model": data["model"],
        "data": f"{data['data']} ({data['images']} images)",
        "layers": ", ".join(
            f"{name} ({first['layer_channels'][name]} channels)" for name in first["layers"]
        ),
        "keep": f"{number(100 * first['keep'], 1)}% of the class's accuracy and precision",
        "ablation": "each dropped channel replaced by its mean"
        if first["ablation"] == "mean"
        else "dropped channels set to zero",
        "confidence": number(first["confidence"], 2),
        "images": f"{first['settings']['search_images']} searched (of them "
        f"{first['settings']['validation_images']} verifying each move), "
        f"{first['settings']['held_out_images']} held out",
        "seed": first["seed"],
    }
    rows = [
        [
            c["class_name"],
            f"{c['size']} / {c['total']}",
            *_score_cells(c["search"]),
            *_score_cells(c["held_out"]),
            c["evaluations"],
            number(c["seconds"], 1),
        ]
        for c in data["circuits"]
    ]
    classes = PageTable(
        "circuits",
        "Circuits",
        [
            "class",
            "channels kept",
            "search: class accuracy (circuit / all)",
            "precision (circuit / all)",
            "kept",
            "class images",
            "false positives",
            "held out: class accuracy (circuit / all)",
            "precision (circuit / all)",
            "kept",
            "class images",
            "false positives",
            "circuits evaluated",
            "seconds",
        ],
        rows,
        note="Kept: the smaller of the circuit's class accuracy and precision over the full "
        "network's (the circuit keeps the class when it is at least keep). Held-out images "
        "were not used to find the circuit. False positives: images of other classes the "
        "circuit labels as the class.",
        numeric=(4, 5, 6, 9, 10, 11, 12, 13),
    )
    tables = [words_table(f for d in data["description"] for f in d["findings"]), classes]
    overlap = data["overlap"]
    if overlap is not None:
        tables.append(
            PageTable(
                "overlap",
                "Overlap (Jaccard index)",
                ["class", *overlap["classes"]],
                [
                    [name, *(number(v, 2) for v in values)]
                    for name, values in zip(overlap["classes"], overlap["jaccard"], strict=True)
                ],
                note="Shared channels over the channels of either circuit (1 on the diagonal).",
                numeric=tuple(range(1, len(overlap["classes"]) + 1)),
            )
        )
    pruned = [f for f in files if f.endswith(".safetensors")]
    figures = [PageFigure(f, _circuit_alt(f)) for f in files if f.endswith(".png")]
    return render_job_page(
        f"seethrough decompose circuit: {data['model']}",
        settings,
        CIRCUIT,
        tables=tables,
        figures=figures,
        intro="A class circuit is the smallest set of channels that keeps the class's "
        "decisions — its accuracy and its precision, each within keep of the full "
        "network's — while every other channel of the layers is ablated; found greedily by "
        "ablation effect, then refined by dropping and exchanging channels."
        + (
            f" {', '.join(pruned)}: each circuit's pruned model's state dict (the model's "
            "weights plus, per circuit layer, the buffers circuit_kept and circuit_fill; "
            "Circuit.pruned_model() adds the forward hook that applies them)."
            if pruned
            else ""
        ),
    )


def _circuit_alt(name: str) -> str:
    if name == "circuit-overlap.png":
        return "the class × class Jaccard index of the circuits' channels"
    return (
        "the circuit's kept fraction as the greedy search adds channels, the kept channels "
        "of each layer, and class accuracy and precision with all channels and the circuit"
    )
