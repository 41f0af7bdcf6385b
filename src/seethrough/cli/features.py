"""``seethrough features``: look inside the network. Wiring only: the work is in
:mod:`seethrough.inside` and :mod:`seethrough.jobs.features`.

Every subcommand writes PNG figures and one JSON file into ``--out``, whole or not at
all; bad input is one line on stderr and exit code 2 (see :mod:`seethrough.cli`).

``top-examples --dataset fashion-mnist`` uses the built-in ``fashion-cnn`` unless
``--model`` names another model (which must then take Fashion-MNIST's (N, 1, 28, 28)).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import click

from ..errors import InvalidOptionError
from ._shared import (
    ImageChoice,
    ModelChoice,
    OutputChoice,
    batch_option,
    choice_option,
    count_option,
    image_options,
    layer_option,
    load_inputs,
    load_net,
    lr_option,
    model_options,
    output_options,
    run_job,
    seed_option,
    steps_option,
)

__all__ = ["FASHION_CNN", "features"]


@click.group("features", context_settings={"help_option_names": ["-h", "--help"]})
def features() -> None:
    """Look inside the network: filters, feature maps, feature visualization, DeepDream,
    feature inversion and top-activating examples (PNG figures and JSON)."""


FASHION_CNN = "fashion-cnn"
_RANGE = re.compile(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?")
_MOST_CHANNELS = 100_000


def _channel_list(text: str, option: str) -> list[int]:
    """``"0,3,8-11"`` → ``[0, 3, 8, 9, 10, 11]``."""
    found: list[int] = []
    for part in text.split(","):
        match = _RANGE.fullmatch(part)
        if match is None:
            raise InvalidOptionError(
                f"{option} {text!r}: expected channel numbers and ranges, e.g. 0,3,8-11"
            )
        first, last = int(match[1]), int(match[2] or match[1])
        if last < first or last - first > _MOST_CHANNELS:
            raise InvalidOptionError(f"{option} {text!r}: range {part.strip()} is empty")
        found.extend(range(first, last + 1))
    return found


def _layers(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise InvalidOptionError("--layer is empty; name a layer (see 'seethrough layers')")
    return names


def _given(**options: Any) -> dict[str, Any]:
    """The options the user set (the library's defaults stand for the rest)."""
    return {k: v for k, v in options.items() if v is not None}


@features.command("filters")
@model_options()
@layer_option
@choice_option(
    "--mode",
    ["auto", "rgb", "kernels", "channels", "norms"],
    "rgb: colour tiles (3 input channels); kernels: one tile per filter (1 input "
    "channel); channels: filters × input channels; norms: L2 norm per (filter, input).",
)
@click.option("--filters", "chosen", default=None, help="Filters to show, e.g. 0-7,12.")
@output_options("seethrough-filters")
def filters_command(
    *, model: ModelChoice, layer: str, mode: str, chosen: str | None, output: OutputChoice
) -> None:
    """The weights of a conv layer as an image grid → filters.png, filters.json."""
    from ..jobs.features import run_filters

    picked = _channel_list(chosen, "--filters") if chosen is not None else None
    net = load_net(model, output=output)
    run_job(output, run_filters, net, layer, mode=mode, chosen=picked, bars=False)


@features.command("maps")
@model_options()
@layer_option
@click.option(
    "--channels",
    default="top",
    show_default=True,
    help="'top' (the --k strongest by --order), 'all', or channel numbers, e.g. 0-7,12.",
)
@count_option("--k", "For top.", default=16)
@choice_option(
    "--order",
    ["mean", "max", "index"],
    "Sort channels by mean or max activation over the images, or by index.",
)
@batch_option
@image_options
@output_options("seethrough-maps")
def maps_command(
    *,
    images: ImageChoice,
    model: ModelChoice,
    layer: str,
    channels: str,
    k: int,
    order: str,
    batch_size: int | None,
    output: OutputChoice,
) -> None:
    """Feature maps of IMAGES (default: bundled photos) at a layer → maps-NNN.png,
    maps.json."""
    from ..jobs.features import run_maps

    wanted: Any = {"all": None, "top": "top"}.get(channels.strip(), "list")
    if wanted == "list":
        wanted = _channel_list(channels, "--channels")
    if wanted == "top" and order == "index":
        raise InvalidOptionError("--channels top ranks by --order mean or max, not index")
    loaded, net = load_inputs(images, model, output, layers=[layer])
    run_job(
        output,
        run_maps,
        net,
        loaded,
        layer,
        channels=wanted,
        k=k,
        order=order,
        batch_size=batch_size,
        bars=False,
    )


@features.command("maximize")
@model_options()
@click.option("--layer", default=None, help="Layer whose --channels to visualize.")
@click.option("--channels", default="0-7", show_default=True, help="With --layer, e.g. 0-7,12.")
@click.option(
    "--objective",
    "objectives",
    multiple=True,
    metavar="LAYER:CHANNEL",
    help="An objective (repeatable), instead of or besides --layer/--channels.",
)
@steps_option()
@count_option("--size", "Image size in pixels.")
@count_option(
    "--input-size",
    "Resize the transformed image to this size for the model (models with a fixed input "
    "size; default for fashion-cnn: 28).",
)
@click.option(
    "--param", type=click.Choice(["fourier", "pixel"]), default=None, help="Parametrization."
)
@lr_option()
@click.option(
    "--stability",
    "seeds",
    default=0,
    type=click.IntRange(min=0),
    help="Optimise the one objective from this many seeds (≥ 2) and measure how different "
    "the solutions are.",
)
@seed_option
@batch_option
@output_options("seethrough-maximize")
def maximize_command(
    *,
    model: ModelChoice,
    layer: str | None,
    channels: str,
    objectives: tuple[str, ...],
    seeds: int,
    seed: int,
    output: OutputChoice,
    **options: Any,  # the optimisation's settings: the library's own names and checks
) -> None:
    """Activation maximization: images that excite channels → maximize.png,
    maximize-traces.png, maximize.json."""
    from ..jobs.features import run_maximize

    wanted = list(objectives)
    if layer is not None:
        wanted += [f"{layer}:{c}" for c in _channel_list(channels, "--channels")]
    if not wanted:
        raise InvalidOptionError(
            "nothing to visualize: give --layer (with --channels) or --objective"
        )
    if seeds == 1:
        raise InvalidOptionError("--stability needs at least 2 seeds")
    net = load_net(model, [o.rpartition(":")[0].strip() or o for o in wanted], output)
    if options["input_size"] is None and model.spec == FASHION_CNN:
        options["input_size"] = net.preprocess.size  # its linear head takes 28 × 28 only
    run_job(output, run_maximize, net, wanted, seeds=seeds, seed=seed, options=_given(**options))


@features.command("dream")
@model_options()
@layer_option
@count_option("--channel", "Only this channel.", least=0)
@count_option("--octaves", "Pyramid levels.")
@click.option("--octave-scale", default=None, type=float, help="Size ratio between levels.")
@steps_option("Steps per octave.")
@lr_option("Step size.")
@count_option("--jitter", "Largest random roll.", least=0)
@seed_option
@batch_option
@image_options
@output_options("seethrough-dream")
def dream_command(
    *,
    images: ImageChoice,
    model: ModelChoice,
    layer: str,
    channel: int | None,
    seed: int,
    output: OutputChoice,
    **options: Any,  # the optimisation's settings: the library's own names and checks
) -> None:
    """DeepDream: amplify what a layer sees in IMAGES → dream-NNN-NAME.png, dream.png,
    dream.json."""
    from ..inside.objectives import channel as channel_objective
    from ..jobs.features import run_dream

    loaded, net = load_inputs(images, model, output, layers=[layer])
    objective: Any = layer if channel is None else channel_objective(layer, channel)
    run_job(output, run_dream, net, loaded, objective, seed=seed, options=_given(**options))


@features.command("invert")
@model_options()
@click.option("--layer", required=True, help="Layer(s) to invert from, separated by commas.")
@steps_option()
@lr_option()
@click.option("--tv-weight", default=None, type=click.FloatRange(min=0), help="TV prior weight.")
@seed_option
@batch_option
@image_options
@output_options("seethrough-invert")
def invert_command(
    *,
    images: ImageChoice,
    model: ModelChoice,
    layer: str,
    seed: int,
    output: OutputChoice,
    **options: Any,  # the optimisation's settings: the library's own names and checks
) -> None:
    """Feature inversion: reconstruct IMAGES from a layer's activations → inversion.png,
    inversion.json."""
    from ..jobs.features import run_invert

    layers = _layers(layer)
    loaded, net = load_inputs(images, model, output, layers=layers)
    run_job(output, run_invert, net, loaded, layers, seed=seed, options=_given(**options))


@features.command("top-examples")
@model_options()
@layer_option
@click.option(
    "--dataset",
    default=None,
    metavar="DATA",
    help="Rank a dataset instead of IMAGES, read a batch at a time: 'fashion-mnist' (its "
    "test set; model: fashion-cnn unless --model is given), 'fashion-mnist:train', a folder "
    "of images (one subfolder per class, or flat) or a .csv/.parquet list of paths. "
    "Unreadable files are skipped and counted.",
)
@count_option("--limit", "Only the first N dataset images.")
@click.option("--channels", default="all", show_default=True, help="'all' or e.g. 0-7,12.")
@count_option("--k", "Per channel.", default=9)
@batch_option
@image_options
@output_options("seethrough-top-examples")
@click.pass_context
def top_examples_command(
    ctx: click.Context,
    *,
    images: ImageChoice,
    model: ModelChoice,
    layer: str,
    dataset: str | None,
    limit: int | None,
    channels: str,
    k: int,
    batch_size: int | None,
    output: OutputChoice,
) -> None:
    """The images that excite each channel most, cropped to the strongest unit's receptive
    field, over IMAGES (files or folders) or --dataset → top-examples-NNN.png,
    top-examples.json."""
    from ..jobs.features import open_dataset, run_top_examples

    if bool(images.images) == bool(dataset):
        raise InvalidOptionError(
            "give image files or folders, or --dataset DATA (not both, not neither)"
        )
    if limit is not None and dataset is None:
        raise InvalidOptionError("--limit goes with --dataset")
    picked = None if channels.strip() == "all" else _channel_list(channels, "--channels")
    source: Any  # the images, or the dataset
    if dataset is None:
        source, net = load_inputs(images, model, output, layers=[layer])
    else:
        fashion = dataset.strip().lower().startswith("fashion-mnist")
        if fashion and ctx.get_parameter_source("spec") != click.core.ParameterSource.COMMANDLINE:
            model = dataclasses.replace(model, spec=FASHION_CNN)
        net = load_net(model, [layer], output)
        source = open_dataset(net, dataset, limit)
    run_job(
        output, run_top_examples, net, source, layer, channels=picked, k=k, batch_size=batch_size
    )
