"""``seethrough anatomy``: what each module does, over a labelled dataset (wiring only;
the work is in :mod:`seethrough.jobs.anatomy`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import InvalidOptionError
from ._shared import (
    ModelChoice,
    OutputChoice,
    batch_option,
    count_option,
    load_net,
    model_options,
    output_options,
    run_job,
    seed_option,
)

if TYPE_CHECKING:
    from ..jobs.anatomy import AnatomyJobResult

__all__ = ["anatomy_command"]

FASHION = "fashion-mnist"  # the built-in dataset that jobs.anatomy.labelled_source knows


def _concepts(values: tuple[str, ...]) -> dict[str, str]:
    found: dict[str, str] = {}
    for value in values:
        name, sep, folder = value.partition("=")
        if not sep or not name or not folder:
            raise InvalidOptionError(f"--concept {value!r}: expected NAME=FOLDER")
        if not Path(folder).is_dir():
            raise InvalidOptionError(f"--concept {value!r}: {folder} is not a folder")
        found[name] = folder
    return found


def _class_index(text: str | None, labels: Any) -> int | None:
    if text is None:
        return None
    from ..core.targets import parse_target

    target = parse_target(text if not text.isdigit() else int(text), 1, labels)
    assert target.indices is not None
    return int(target.indices[0])


@click.command("anatomy")
@click.option(
    "--data",
    default=FASHION,
    show_default=True,
    help="'fashion-mnist' (its test set) or a folder with one subfolder of images per class.",
)
@count_option("--limit", "Use the first N images of the data.")
@click.option(
    "--modules",
    default=None,
    help="Comma-separated module names (default: the network's blocks).",
)
@click.option("--no-sweep", is_flag=True, help="Skip the per-channel ablation sweeps.")
@count_option("--sweep-size", "Images used by the channel sweeps.", default=2000)
@click.option("--no-probes", is_flag=True, help="Skip the linear probes.")
@count_option(
    "--probe-size", "Images used by the probes (a quarter held out).", default=5000, least=2
)
@click.option(
    "--concept",
    "concepts",
    multiple=True,
    metavar="NAME=FOLDER",
    help="A concept's example images, for TCAV (repeatable).",
)
@click.option("--concept-class", default=None, help="Class whose TCAV scores are computed.")
@click.option("--concept-layer", default=None, help="Layer where concepts are tested.")
@count_option("--runs", "Random sets per concept test.", default=10, least=2)
@seed_option
@batch_option
@output_options("seethrough-anatomy")
@model_options("fashion-cnn", "As for 'explain'; default: the project's Fashion-MNIST CNN.")
def anatomy_command(
    *,
    data: str,
    limit: int | None,
    modules: str | None,
    no_sweep: bool,
    no_probes: bool,
    concepts: tuple[str, ...],
    concept_class: str | None,
    concept_layer: str | None,
    output: OutputChoice,
    model: ModelChoice,
    **settings: Any,  # --sweep-size, --probe-size, --runs, --seed, --batch-size: as given
) -> None:
    """What each module does: ablation (whole and per channel, per class), gradient
    sensitivity, linear probes against raw-pixel and random-network baselines, and TCAV
    for given concepts. Writes anatomy.json, anatomy.png and a card per module."""
    from ..jobs.anatomy import labelled_source, run_anatomy

    named = _concepts(concepts)
    if data != FASHION and not Path(data).is_dir():
        raise InvalidOptionError(
            f"--data {data!r}: not '{FASHION}' and not a folder of class subfolders"
        )
    if modules is not None and not any(m.strip() for m in modules.split(",")):
        raise InvalidOptionError("--modules is empty; name modules (see 'seethrough layers')")
    wanted = [m.strip() for m in modules.split(",") if m.strip()] if modules else None
    net = load_net(model, [*(wanted or []), *([concept_layer] if concept_layer else [])], output)
    index = _class_index(concept_class, net.labels)
    if not named and (concept_class is not None or concept_layer is not None):
        given = "--concept-class" if concept_class is not None else "--concept-layer"
        raise InvalidOptionError(f"{given} needs --concept NAME=FOLDER (it sets up TCAV)")
    run_job(
        output,
        run_anatomy,
        net,
        labelled_source(net, data, limit),
        modules=wanted,
        channel_sweep=not no_sweep,
        probes=not no_probes,
        concepts=named,
        concept_class=index,
        concept_layer=concept_layer,
        notes=_findings,
        **settings,
    )


def _findings(done: AnatomyJobResult) -> Iterator[str]:
    for card in done.result.cards:
        probe = f", probe {card.probe.test_accuracy:.3f}" if card.probe else ""
        yield f"{card.name}: ablated, accuracy drops {card.accuracy_drop:.3f}{probe}"
    for t in done.concepts:
        verdict = "significant" if t.significant else "not significant"
        yield f"concept {t.concept}: TCAV {t.mean:.2f} (p = {t.p_value:.3g}, {verdict})"
