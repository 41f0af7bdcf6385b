"""``seethrough decompose concepts|circuit``: which channels carry a prediction's
relevance and what they detect, and the smallest sub-network that keeps a class's
decisions (the work is in :mod:`seethrough.jobs.decompose` and
:mod:`seethrough.decompose`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import InvalidOptionError
from ._methods import target as parse_target_text
from ._shared import (
    ImageChoice,
    ModelChoice,
    OutputChoice,
    batch_option,
    choice_option,
    count_option,
    image_options,
    labelled_data_options,
    load_inputs,
    load_net,
    model_options,
    named_option,
    output_options,
    run_job,
    seed_option,
)

if TYPE_CHECKING:
    from ..jobs.decompose import CircuitJobResult, ConceptsJobResult

__all__ = ["ABLATIONS", "COMPOSITES", "DEFAULT_LAYERS", "RANKS", "decompose_group"]

# The library's names (core.relevance.composite_names(), decompose.RANKS, ABLATIONS,
# jobs.decompose.DEFAULT_LAYERS), written here so that `seethrough --help` imports no
# torch; a test checks they agree.
COMPOSITES: tuple[str, ...] = (
    "epsilon_plus_flat",
    "epsilon",
    "epsilon_plus",
    "epsilon_gamma_box",
    "epsilon_alpha2_beta1",
    "alpha1_beta0",
)
RANKS: tuple[str, ...] = ("signed", "abs")
ABLATIONS: tuple[str, ...] = ("mean", "zero")
DEFAULT_LAYERS = {"efficientnet-lite0": "_blocks.12"}
STEPS = 64  # jobs.decompose.STEPS
FASHION = "fashion-mnist"


def _check_data(data: str, subject: str) -> None:
    """``--data`` of a form the job knows (before loading; the job checks it against the
    model)."""
    name, _, split = data.partition(":")
    if name == FASHION and split not in ("", "test", "train"):
        raise InvalidOptionError(
            f"--data {data!r}: unknown split {split!r} (valid: {FASHION}:test, {FASHION}:train)"
        )
    if name != FASHION and not Path(data).is_dir():
        raise InvalidOptionError(
            f"--data {data!r}: not '{FASHION}[:test|train]' and not a folder of {subject}"
        )


@click.group("decompose")
def decompose_group() -> None:
    """Decompose a prediction onto the channels that carry it (concept relevance), and the
    network into the channels each class needs (class circuits)."""


@decompose_group.command("concepts")
@model_options()
@click.option(
    "--layer",
    default=None,
    help="Dotted layer name whose channels are decomposed (see 'seethrough layers'); "
    "default for efficientnet-lite0: _blocks.12, required for other models.",
)
@count_option("--top", "Channels per image with a conditional heatmap.", default=6)
@click.option(
    "--target",
    default=None,
    help="'predicted' (default), a class index or name, 'top3', or one per image separated "
    "by commas.",
)
@named_option(
    "--rank", "rank", RANKS, "Top channels by signed relevance (for the class) or magnitude."
)
@named_option("--composite", "composite", COMPOSITES, "The LRP rules (see 'docs/lrp.md').")
@click.option(
    "--data",
    default=None,
    help="A dataset to link each top channel to its top-activating images: a folder of "
    "images (subfolders too), or 'fashion-mnist[:test|train]' for the Fashion-MNIST CNN.",
)
@count_option("--limit", "Use the first N images of --data.")
@count_option("--examples", "Top-activating images per channel (with --data).", default=9)
@count_option(
    "--steps",
    f"Activation-maximization steps per linked channel (default {STEPS}; one image is "
    "optimised per channel).",
)
@click.option(
    "--no-visualize", is_flag=True, help="Skip the activation-maximization image per channel."
)
@seed_option
@batch_option
@choice_option("--lang", ("en", "zh"), "Language of the sentences.")
@image_options
@output_options("seethrough-concepts")
def concepts_command(
    *,
    images: ImageChoice,
    model: ModelChoice,
    layer: str | None,
    top: int,
    target: str | None,
    rank: str,
    composite: str,
    data: str | None,
    limit: int | None,
    examples: int,
    steps: int | None,
    no_visualize: bool,
    seed: int,
    batch_size: int | None,
    lang: str,
    output: OutputChoice,
) -> None:
    """Concept relevance (CRP) of IMAGES (files, folders, or sample:NAME; default: bundled
    photos): the channels of --layer that carry each prediction, where in the image, and
    what each detects.

    Writes concepts.json, concepts.safetensors, concepts-NNN.png, links-NNN.png and
    index.html into --out.
    """
    from ..jobs.decompose import concept_data, run_concepts

    if layer is None:
        layer = DEFAULT_LAYERS.get(model.spec) if model.factory is None else None
        if layer is None:
            which = model.factory or model.spec
            raise InvalidOptionError(
                f"--layer is required for model {which!r} (the default, _blocks.12, is "
                "efficientnet-lite0's); 'seethrough layers' lists a model's layers"
            )
    if data is not None:
        _check_data(data, "images")
    elif limit is not None:
        raise InvalidOptionError("--limit goes with --data")
    if no_visualize and steps is not None:
        raise InvalidOptionError(
            "--steps sets the activation maximization that --no-visualize skips"
        )
    chosen = parse_target_text(target)
    loaded, net = load_inputs(images, model, output, layers=[layer], target=chosen)
    dataset = None if data is None else concept_data(net, data, limit)
    run_job(
        output,
        run_concepts,
        net,
        loaded,
        layer,
        target=chosen,
        top=top,
        rank=rank,
        composite=composite,
        data=dataset,
        examples=examples,
        visualize=not no_visualize,
        steps=STEPS if steps is None else steps,
        seed=seed,
        batch_size=batch_size,
        lang=lang,
        notes=_concept_notes,
    )


def _concept_notes(done: ConceptsJobResult) -> Iterator[str]:
    if done.linked_layer != done.result.layer:
        yield (
            f"channels linked at {done.linked_layer}: the batch norm folded into "
            f"{done.result.layer} (its channels are conv and batch norm together)"
        )
    yield from done.result.describe().sentences(done.summary["lang"])


@decompose_group.command("circuit")
@model_options("fashion-cnn", "As for 'explain'; default: the project's Fashion-MNIST CNN.")
@labelled_data_options(2000)
@click.option(
    "--class",
    "classes",
    required=True,
    metavar="CLASSES",
    help="The class (index or name); several, separated by commas, also give the "
    "class × class overlap of their circuits.",
)
@click.option(
    "--keep",
    default=0.95,
    show_default=True,
    type=click.FloatRange(min=0, max=1, min_open=True),
    help="Share of the class's accuracy and precision the circuit must keep.",
)
@click.option(
    "--layers",
    default=None,
    help="Comma-separated layers whose channels form the circuit (default: the last "
    "spatial feature map; pool2 for the Fashion-MNIST CNN).",
)
@named_option("--ablation", "ablation", ABLATIONS, "Dropped channels: their mean, or zero.")
@click.option(
    "--held-out",
    default=0.5,
    show_default=True,
    type=click.FloatRange(min=0, max=1, max_open=True),
    help="Share of the images held out of the search, to score the circuit on new images.",
)
@click.option(
    "--save-pruned",
    is_flag=True,
    help="Also write each circuit's pruned model's state dict (pruned-CLASS.safetensors).",
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=int,
    help="Seed of the split into search and held-out images (the search is deterministic).",
)
@count_option(
    "--batch-size", "Rows (images × candidate circuits) per pass after the layers (default 1024)."
)
@choice_option("--lang", ("en", "zh"), "Language of the sentences.")
@output_options("seethrough-circuit")
def circuit_command(
    *,
    model: ModelChoice,
    data: str,
    limit: int,
    classes: str,
    keep: float,
    layers: str | None,
    ablation: str,
    held_out: float,
    save_pruned: bool,
    seed: int,
    batch_size: int | None,
    lang: str,
    output: OutputChoice,
) -> None:
    """Class circuits: the fewest channels of --layers that keep each class's decisions
    with the others ablated, scored on held-out images. Writes circuit.json,
    circuit-CLASS.png, circuit-overlap.png (several classes) and index.html into --out."""
    from ..jobs.decompose import class_indices, run_circuit
    from ..jobs.robust import evaluation_data

    wanted = _class_list(classes)
    chosen = _layer_list(layers)
    _check_data(data, "class subfolders")
    net = load_net(model, chosen or (), output)
    indices = class_indices(net, wanted)
    run_job(
        output,
        run_circuit,
        net,
        evaluation_data(net, data, limit),
        indices,
        layers=chosen,
        keep=keep,
        ablation=ablation,
        held_out=held_out,
        seed=seed,
        batch_size=batch_size,
        save_pruned=save_pruned,
        lang=lang,
        notes=_circuit_notes,
    )


def _class_list(text: str) -> list[int | str]:
    parts = [p.strip() for p in text.split(",")]
    if any(p == "" for p in parts):
        raise InvalidOptionError(
            f"--class {text!r} has an empty item; give classes separated by commas"
        )
    return [int(p) if p.lstrip("+-").isdigit() else p for p in parts]


def _layer_list(text: str | None) -> list[str] | None:
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise InvalidOptionError("--layers is empty; name layers (see 'seethrough layers')")
    return parts


def _circuit_notes(done: CircuitJobResult) -> Iterator[str]:
    for c in done.circuits:
        held = "" if c.held_out is None else f", held-out kept {c.held_out.kept:.3f}"
        yield f"{c.class_name}: {c.size} of {c.total} channels{held}"
