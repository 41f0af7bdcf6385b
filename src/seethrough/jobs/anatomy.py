"""The anatomy job: module cards over a labelled dataset → ``anatomy.json``, an overview
figure and one card figure per module, written whole or not at all.

The dataset is streamed (:func:`labelled_source`: a folder of class subfolders or
Fashion-MNIST as an :class:`~seethrough.data.ImageSource` of the model's inputs), so its
size is bounded by the disk, not the memory; :func:`labelled_data` still loads tensors
for the jobs that need them whole."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..anatomy import Anatomy, TcavResult, anatomy, tcav
from ..core.datasets import model_source
from ..data.sources import ImageSource, open_source
from ..errors import InvalidInputError, InvalidOptionError
from ..models.zoo import LoadedModel
from ..reporting.html import PAGE, PageFigure, PageTable, number, render_job_page
from ..reporting.output import OutputFolder, file_stems
from ..reporting.serialize import to_jsonable, write_json
from ..viz import plot_anatomy, plot_card, save_figure

__all__ = [
    "ANATOMY",
    "AnatomyJobResult",
    "LabelledData",
    "LabelledSource",
    "labelled_data",
    "labelled_folder",
    "labelled_source",
    "run_anatomy",
]

ANATOMY = "anatomy.json"
_FASHION_MNIST = "fashion-mnist"
JobProgress = Callable[[str, int, int], None]


@dataclass(frozen=True, eq=False)
class LabelledData:
    """Model inputs ``(N, C, H, W)``, class indices ``(N,)`` and where they came from."""

    inputs: Tensor
    labels: Tensor
    source: str


@dataclass(frozen=True, eq=False)
class LabelledSource:
    """A labelled dataset streamed as the model's inputs, and where it came from."""

    images: ImageSource
    source: str


@dataclass(frozen=True)
class AnatomyJobResult:
    out: Path
    result: Anatomy
    concepts: tuple[TcavResult, ...]
    files: tuple[str, ...]


def labelled_folder(net: LoadedModel, folder: str | os.PathLike[str]) -> LabelledData:
    """Images in ``folder/<class>/…``: each subfolder is named after a class of the model
    (a label name, or a class index) and holds that class's images."""
    from ..data import load_images

    root = Path(folder)
    if not root.is_dir():
        raise InvalidInputError(f"{root} is not a folder of class subfolders")
    names = list(net.labels or [])
    xs, ys = [], []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if sub.name in names:
            index = names.index(sub.name)
        elif sub.name.isdigit():
            index = int(sub.name)
        else:
            raise InvalidInputError(
                f"subfolder {sub.name!r} of {root} names no class of the model; name each "
                "subfolder after a class (its label or its index)"
            )
        images = load_images(sub)
        xs.append(net.preprocess(images))
        ys.append(torch.full((len(images),), index, dtype=torch.long))
    if not xs:
        raise InvalidInputError(f"{root} has no class subfolders (expected {root}/<class>/…)")
    return LabelledData(torch.cat(xs), torch.cat(ys), str(root))


def _class_subfolders(net: LoadedModel, root: Path) -> None:
    """Refuse a folder without class subfolders, or one named after no class of the model
    (the rule and messages of :func:`labelled_folder`)."""
    if not root.is_dir():
        raise InvalidInputError(f"{root} is not a folder of class subfolders")
    names = list(net.labels or [])
    subs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for sub in subs:
        if sub.name not in names and not sub.name.isdigit():
            raise InvalidInputError(
                f"subfolder {sub.name!r} of {root} names no class of the model; name each "
                "subfolder after a class (its label or its index)"
            )
    if not subs:
        raise InvalidInputError(f"{root} has no class subfolders (expected {root}/<class>/…)")


def labelled_source(
    net: LoadedModel, data: str | os.PathLike[str], limit: int | None = None
) -> LabelledSource:
    """The first ``limit`` images (all when ``None``) of ``data`` as a source of the
    model's inputs, read in batches by the job: ``"fashion-mnist"`` (its test set as the
    Fashion-MNIST CNN takes it, the inputs :func:`labelled_data` gives) or a folder of
    class subfolders (named as for :func:`labelled_folder`; each image through the
    model's preprocessing; unreadable files are skipped and counted)."""
    if str(data) == _FASHION_MNIST:
        return LabelledSource(open_source("fashion-mnist:test", limit=limit), _FASHION_MNIST)
    root = Path(data)
    _class_subfolders(net, root)
    return LabelledSource(model_source(net, root, limit=limit).source, str(root))


def labelled_data(
    net: LoadedModel, data: str | os.PathLike[str], limit: int | None = None
) -> LabelledData:
    """The first ``limit`` images (all when ``None``) of ``data``, on the model's device:
    ``"fashion-mnist"``, its test set (as the Fashion-MNIST CNN takes it), or a folder of
    class subfolders (see :func:`labelled_folder`)."""
    if data == _FASHION_MNIST:
        from ..data.fashion_mnist import load_fashion_mnist

        test = load_fashion_mnist("test")
        found = LabelledData(test.inputs(0, limit), test.labels[:limit], _FASHION_MNIST)
    else:
        found = labelled_folder(net, data)
    device = next((p.device for p in net.module.parameters()), torch.device("cpu"))
    return LabelledData(found.inputs[:limit].to(device), found.labels[:limit], found.source)


def _concepts(
    net: LoadedModel,
    data: LabelledData | LabelledSource,
    concepts: Mapping[str, str],
    concept_class: int | None,
    layer: str | None,
    runs: int,
    seed: int,
) -> tuple[TcavResult, ...]:
    if not concepts:
        return ()
    if concept_class is None or layer is None:
        raise InvalidOptionError("--concept needs --concept-class and --concept-layer")
    from ..data import load_images

    pool: Tensor | ImageSource
    members: Tensor | ImageSource
    if isinstance(data, LabelledSource):
        pool, members = data.images, _Subset.of_class(data.images, concept_class)
    else:
        pool, members = data.inputs, data.inputs[data.labels == concept_class]
    if len(members) == 0:
        raise InvalidInputError(f"the data hold no image of class {concept_class}")
    results = []
    for name, folder in concepts.items():
        examples: Tensor | ImageSource
        if isinstance(data, LabelledSource):
            examples = model_source(net, folder).source
        else:
            examples = net.preprocess(load_images(folder))
        results.append(
            tcav(
                net.module,
                layer,
                examples,
                pool,
                members,
                concept_class,
                concept_name=name,
                runs=runs,
                seed=seed,
            )
        )
    return tuple(results)


def run_anatomy(
    net: LoadedModel,
    data: LabelledData | LabelledSource,
    out: str | os.PathLike[str],
    *,
    modules: Sequence[str] | None = None,
    channel_sweep: bool = True,
    sweep_size: int | None = 2000,
    probes: bool = True,
    probe_size: int | None = 5000,
    concepts: Mapping[str, str] | None = None,
    concept_class: int | None = None,
    concept_layer: str | None = None,
    runs: int = 10,
    seed: int = 0,
    batch_size: int | None = None,
    force: bool = False,
    progress: JobProgress | None = None,
) -> AnatomyJobResult:
    """Run :func:`~seethrough.anatomy.anatomy` (and TCAV for ``concepts``: name → folder)
    and write ``anatomy.json``, ``anatomy.png``, ``card-<module>.png`` and ``index.html``
    into ``out`` (held by this run, written whole or not at all: see
    :class:`~seethrough.reporting.output.OutputFolder`). ``data``: tensors
    (:func:`labelled_data`) or a source streamed in batches (:func:`labelled_source`)."""
    inputs, labels = (
        (data.images, None) if isinstance(data, LabelledSource) else (data.inputs, data.labels)
    )
    with OutputFolder(out, force, manifest=ANATOMY) as staging:
        result = anatomy(
            net,
            inputs,
            labels,
            modules,
            channel_sweep=channel_sweep,
            sweep_size=sweep_size,
            probes=probes,
            probe_size=probe_size,
            seed=seed,
            batch_size=batch_size,
            progress=progress,
        )
        tested = _concepts(
            net, data, dict(concepts or {}), concept_class, concept_layer, runs, seed
        )
        files = ["anatomy.png"]
        save_figure(plot_anatomy(result), staging / "anatomy.png")
        stems = file_stems([card.name for card in result.cards], "module")
        for card, stem in zip(result.cards, stems, strict=True):
            name = f"card-{stem}.png"
            save_figure(plot_card(card, result.class_names), staging / name)
            files.append(name)
        summary: dict[str, Any] = {
            "model": net.name,
            "data": data.source,
            "anatomy": result,
            "concepts": tested,
            "files": [*files, PAGE, ANATOMY],
        }
        content = to_jsonable(summary)
        write_json(staging / ANATOMY, content)
        (staging / PAGE).write_text(_page(content, files), encoding="utf-8")
        files.extend([PAGE, ANATOMY])
    return AnatomyJobResult(Path(out), result, tested, tuple(files))


class _Subset(ImageSource):
    """Some images of another source, by position (the images of one class, for TCAV)."""

    def __init__(self, base: ImageSource, positions: Sequence[int]) -> None:
        self.base, self.positions = base, list(positions)
        self.spec, self.classes = base.spec, base.classes
        self._transform = base.transform

    @classmethod
    def of_class(cls, base: ImageSource, label: int) -> _Subset:
        """The images of ``base`` labelled ``label`` (labels read without decoding)."""
        return cls(base, [i for i in range(len(base)) if base.record(i)[1] == label])

    def __len__(self) -> int:
        return len(self.positions)

    def record(self, index: int) -> tuple[str, int]:
        return self.base.record(self.positions[index])

    def fingerprint(self) -> str:
        chosen = ",".join(map(str, self.positions))
        return hashlib.sha256(f"{self.base.fingerprint()}\n{chosen}".encode()).hexdigest()

    def _raw(self, index: int) -> Any:
        return self.base._raw(self.positions[index])

    def _default_input(self, index: int, raw: Any) -> Tensor:
        return self.base._default_input(self.positions[index], raw)


def _class_name(data: dict[str, Any], index: int | None) -> str:
    names = data["anatomy"]["class_names"]
    if index is None:
        return "–"
    return f"{names[index]} ({index})" if names and index < len(names) else str(index)


def _page(data: dict[str, Any], figures: Sequence[str]) -> str:
    """``index.html``: settings, one row per module card, the TCAV concepts, the figures."""
    result = data["anatomy"]
    settings = {
        "model": data["model"],
        "data": data["data"],
        "accuracy of the model": number(result["baseline"]["accuracy"]),
        "probe accuracy on raw pixels": number(result["pixel_probe_accuracy"]),
        "chance": number(result["chance"]),
        "seconds": number(result["seconds"], 1),
    }
    tables = [_cards_table(data), *([_concepts_table(data)] if data["concepts"] else [])]
    pictures = [PageFigure(name, _figure_alt(name)) for name in figures]
    return render_job_page(
        f"seethrough anatomy: {data['model']}",
        settings,
        ANATOMY,
        tables=tables,
        figures=pictures,
    )


def _cards_table(data: dict[str, Any]) -> PageTable:
    """One row per module card."""
    result = data["anatomy"]
    return PageTable(
        "cards",
        "Module cards",
        [
            "card",
            "module",
            "kind",
            "output",
            "parameters",
            "accuracy drop (ablated)",
            "most affected class",
            "probe accuracy",
            "probe accuracy, random network",
        ],
        [
            [
                c["name"],
                c["module"],
                c["kind"],
                "×".join(str(s) for s in c["output_shape"]),
                c["parameters"],
                number(c["accuracy_drop"]),
                _class_name(data, c["worst_class"]),
                number(c["probe_accuracy"]),
                number(c["random_probe_accuracy"]),
            ]
            for c in result["cards"]
        ],
        note="Accuracy drop: the model's accuracy minus its accuracy with the module's "
        "output replaced by its mean (positive: the model needs the module). Probe: a "
        "linear classifier trained on the module's output; compare it with the random "
        "network's and the raw pixels' to see what the training added.",
        numeric=(4, 5, 7, 8),
    )


def _concepts_table(data: dict[str, Any]) -> PageTable:
    """The TCAV concepts, with their significance."""
    return PageTable(
        "concepts",
        "Concepts (TCAV)",
        ["concept", "layer", "class", "TCAV score", "p-value", "significant"],
        [
            [
                t["concept"],
                t["layer"],
                _class_name(data, t["target"]),
                number(t["mean"]),
                number(t["p_value"], 4),
                "yes" if t["significant"] else "no",
            ]
            for t in data["concepts"]
        ],
        note="The TCAV score is the share of the class's images whose logit rises along the "
        "concept's direction; only a significant score (against random concept sets) says "
        "the model uses the concept.",
        numeric=(3, 4),
    )


def _figure_alt(name: str) -> str:
    if name == "anatomy.png":
        return "per module: accuracy drop when ablated, gradient sensitivity and probe accuracy"
    card = name.removeprefix("card-").removesuffix(".png")
    return (
        f"module card {card}: per-class effect of ablating it, its channels ranked by "
        "effect, gradient sensitivity, probe"
    )
