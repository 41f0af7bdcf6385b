"""``seethrough anatomy``: what each module does, over a labelled dataset (wiring only;
the work is in :mod:`seethrough.jobs.anatomy`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..errors import InvalidOptionError
from ._shared import (
    ModelChoice,
    batch_option,
    check_output,
    load_net,
    model_options,
    output_options,
    progress_bars,
    seed_option,
)

__all__ = ["anatomy_command"]

FASHION = "fashion-mnist"


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
@click.option(
    "--limit",
    default=None,
    type=click.IntRange(min=1),
    help="Use the first N images of the data.",
)
@click.option(
    "--modules",
    default=None,
    help="Comma-separated module names (default: the network's blocks).",
)
@click.option("--no-sweep", is_flag=True, help="Skip the per-channel ablation sweeps.")
@click.option(
    "--sweep-size",
    default=2000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Images used by the channel sweeps.",
)
@click.option("--no-probes", is_flag=True, help="Skip the linear probes.")
@click.option(
    "--probe-size",
    default=5000,
    show_default=True,
    type=click.IntRange(min=2),
    help="Images used by the probes (a quarter held out).",
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
@click.option(
    "--runs",
    default=10,
    show_default=True,
    type=click.IntRange(min=2),
    help="Random sets per concept test.",
)
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
    sweep_size: int,
    no_probes: bool,
    probe_size: int,
    concepts: tuple[str, ...],
    concept_class: str | None,
    concept_layer: str | None,
    runs: int,
    seed: int,
    batch_size: int | None,
    out: str,
    force: bool,
    quiet: bool,
    model: ModelChoice,
) -> None:
    """What each module does: ablation (whole and per channel, per class), gradient
    sensitivity, linear probes against raw-pixel and random-network baselines, and TCAV
    for given concepts. Writes anatomy.json, anatomy.png and a card per module."""
    from ..jobs.anatomy import LabelledData, labelled_folder, run_anatomy

    named = _concepts(concepts)
    check_output(out, force)
    if data != FASHION and not Path(data).is_dir():
        raise InvalidOptionError(
            f"--data {data!r}: not '{FASHION}' and not a folder of class subfolders"
        )
    wanted = [m.strip() for m in modules.split(",")] if modules else None
    net = load_net(model, [*(wanted or []), *([concept_layer] if concept_layer else [])])
    index = _class_index(concept_class, net.labels)
    if data == FASHION:
        from ..data.fashion_mnist import load_fashion_mnist

        test = load_fashion_mnist("test")
        device = next((p.device for p in net.module.parameters()), None)
        source = LabelledData(test.inputs(0, limit).to(device), test.labels[:limit], FASHION)
    else:
        source = labelled_folder(net, data)
        source = LabelledData(source.inputs[:limit], source.labels[:limit], source.source)
    with progress_bars(not quiet) as progress:
        done = run_anatomy(
            net,
            source,
            Path(out),
            modules=wanted,
            channel_sweep=not no_sweep,
            sweep_size=sweep_size,
            probes=not no_probes,
            probe_size=probe_size,
            concepts=named,
            concept_class=index,
            concept_layer=concept_layer,
            runs=runs,
            seed=seed,
            batch_size=batch_size,
            force=force,
            progress=progress,
        )
    if not quiet:
        for card in done.result.cards:
            probe = f", probe {card.probe.test_accuracy:.3f}" if card.probe else ""
            click.echo(
                f"{card.name}: ablated, accuracy drops {card.accuracy_drop:.3f}{probe}", err=True
            )
        for t in done.concepts:
            verdict = "significant" if t.significant else "not significant"
            click.echo(
                f"concept {t.concept}: TCAV {t.mean:.2f} (p = {t.p_value:.3g}, {verdict})",
                err=True,
            )
    click.echo(f"wrote {len(done.files)} files to {done.out}")
