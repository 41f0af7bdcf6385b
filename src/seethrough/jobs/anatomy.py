"""The anatomy job: module cards over a labelled dataset → ``anatomy.json``, an overview
figure and one card figure per module, written whole or not at all."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..anatomy import Anatomy, TcavResult, anatomy, tcav
from ..errors import InvalidInputError, InvalidOptionError
from ..models.zoo import LoadedModel
from ..reporting.output import OutputFolder, file_stems
from ..reporting.serialize import write_json
from ..viz import plot_anatomy, plot_card, save_figure

__all__ = [
    "ANATOMY",
    "AnatomyJobResult",
    "LabelledData",
    "labelled_data",
    "labelled_folder",
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
    data: LabelledData,
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

    members = data.inputs[data.labels == concept_class]
    if len(members) == 0:
        raise InvalidInputError(f"the data hold no image of class {concept_class}")
    results = []
    for name, folder in concepts.items():
        examples = net.preprocess(load_images(folder))
        results.append(
            tcav(
                net.module,
                layer,
                examples,
                data.inputs,
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
    data: LabelledData,
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
    and write ``anatomy.json``, ``anatomy.png`` and ``card-<module>.png`` into ``out``
    (held by this run, written whole or not at all: see
    :class:`~seethrough.reporting.output.OutputFolder`)."""
    with OutputFolder(out, force, manifest=ANATOMY) as staging:
        result = anatomy(
            net,
            data.inputs,
            data.labels,
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
            "files": [*files, ANATOMY],
        }
        write_json(staging / ANATOMY, summary)
        files.append(ANATOMY)
    return AnatomyJobResult(Path(out), result, tested, tuple(files))
