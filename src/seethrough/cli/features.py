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
from pathlib import Path
from typing import Any

import click

from ..errors import InvalidOptionError
from ._shared import (
    ModelChoice,
    batch_option,
    check_output,
    layer_option,
    load_inputs,
    load_net,
    model_options,
    output_options,
    progress_bars,
    recursive_option,
    seed_option,
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
@click.option(
    "--mode",
    type=click.Choice(["auto", "rgb", "kernels", "channels", "norms"]),
    default="auto",
    show_default=True,
    help="rgb: colour tiles (3 input channels); kernels: one tile per filter (1 input "
    "channel); channels: filters × input channels; norms: L2 norm per (filter, input).",
)
@click.option("--filters", "chosen", default=None, help="Filters to show, e.g. 0-7,12.")
@output_options("seethrough-filters")
def filters_command(
    *,
    model: ModelChoice,
    layer: str,
    mode: str,
    chosen: str | None,
    out: str,
    force: bool,
    quiet: bool,
) -> None:
    """The weights of a conv layer as an image grid → filters.png, filters.json."""
    from ..jobs.features import run_filters

    picked = _channel_list(chosen, "--filters") if chosen is not None else None
    model.check()
    check_output(out, force)
    net = load_net(model)
    done = run_filters(net, layer, Path(out), mode=mode, chosen=picked, force=force)
    click.echo(f"wrote {len(done.files)} files to {done.out}")


@features.command("maps")
@click.argument("images", nargs=-1)
@model_options()
@layer_option
@click.option(
    "--channels",
    default="top",
    show_default=True,
    help="'top' (the --k strongest by --order), 'all', or channel numbers, e.g. 0-7,12.",
)
@click.option("--k", default=16, show_default=True, type=click.IntRange(min=1), help="For top.")
@click.option(
    "--order",
    type=click.Choice(["mean", "max", "index"]),
    default="mean",
    show_default=True,
    help="Sort channels by mean or max activation over the images, or by index.",
)
@batch_option
@recursive_option
@output_options("seethrough-maps")
def maps_command(
    *,
    images: tuple[str, ...],
    layer: str,
    channels: str,
    k: int,
    order: str,
    batch_size: int | None,
    recursive: bool,
    model: ModelChoice,
    out: str,
    force: bool,
    quiet: bool,
) -> None:
    """Feature maps of IMAGES (default: bundled photos) at a layer → maps-NNN.png,
    maps.json."""
    from ..jobs.features import run_maps

    wanted: Any = {"all": None, "top": "top"}.get(channels.strip(), "list")
    if wanted == "list":
        wanted = _channel_list(channels, "--channels")
    if wanted == "top" and order == "index":
        raise InvalidOptionError("--channels top ranks by --order mean or max, not index")
    model.check()
    check_output(out, force)
    loaded, net = load_inputs(images, model, recursive=recursive, layers=[layer])
    done = run_maps(
        net,
        loaded,
        layer,
        Path(out),
        channels=wanted,
        k=k,
        order=order,
        batch_size=batch_size,
        force=force,
    )
    click.echo(f"wrote {len(done.files)} files to {done.out}")


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
@click.option("--steps", default=None, type=click.IntRange(min=1), help="Optimizer steps.")
@click.option("--size", default=None, type=click.IntRange(min=1), help="Image size in pixels.")
@click.option(
    "--input-size",
    default=None,
    type=click.IntRange(min=1),
    help="Resize the transformed image to this size for the model (models with a fixed input "
    "size; default for fashion-cnn: 28).",
)
@click.option(
    "--param", type=click.Choice(["fourier", "pixel"]), default=None, help="Parametrization."
)
@click.option("--lr", default=None, type=click.FloatRange(min=0, min_open=True), help="Adam lr.")
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
    layer: str | None,
    channels: str,
    objectives: tuple[str, ...],
    steps: int | None,
    size: int | None,
    input_size: int | None,
    param: str | None,
    lr: float | None,
    seeds: int,
    seed: int,
    batch_size: int | None,
    model: ModelChoice,
    out: str,
    force: bool,
    quiet: bool,
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
    model.check()
    check_output(out, force)
    net = load_net(model, [o.rpartition(":")[0].strip() or o for o in wanted])
    if input_size is None and model.spec == FASHION_CNN:
        input_size = net.preprocess.size  # its linear head takes 28 × 28 inputs only
    options = _given(
        steps=steps,
        size=size,
        input_size=input_size,
        param=param,
        lr=lr,
        batch_size=batch_size,
    )
    with progress_bars(not quiet) as progress:
        done = run_maximize(
            net,
            wanted,
            Path(out),
            seeds=seeds,
            seed=seed,
            options=options,
            force=force,
            progress=progress,
        )
    click.echo(f"wrote {len(done.files)} files to {done.out}")


@features.command("dream")
@click.argument("images", nargs=-1)
@model_options()
@layer_option
@click.option("--channel", default=None, type=click.IntRange(min=0), help="Only this channel.")
@click.option("--octaves", default=None, type=click.IntRange(min=1), help="Pyramid levels.")
@click.option("--octave-scale", default=None, type=float, help="Size ratio between levels.")
@click.option("--steps", default=None, type=click.IntRange(min=1), help="Steps per octave.")
@click.option("--lr", default=None, type=click.FloatRange(min=0, min_open=True), help="Step size.")
@click.option("--jitter", default=None, type=click.IntRange(min=0), help="Largest random roll.")
@seed_option
@batch_option
@recursive_option
@output_options("seethrough-dream")
def dream_command(
    *,
    images: tuple[str, ...],
    layer: str,
    channel: int | None,
    octaves: int | None,
    octave_scale: float | None,
    steps: int | None,
    lr: float | None,
    jitter: int | None,
    seed: int,
    batch_size: int | None,
    recursive: bool,
    model: ModelChoice,
    out: str,
    force: bool,
    quiet: bool,
) -> None:
    """DeepDream: amplify what a layer sees in IMAGES → dream-NNN-NAME.png, dream.png,
    dream.json."""
    from ..inside.objectives import channel as channel_objective
    from ..jobs.features import run_dream

    model.check()
    check_output(out, force)
    loaded, net = load_inputs(images, model, recursive=recursive, layers=[layer])
    objective: Any = layer if channel is None else channel_objective(layer, channel)
    options = _given(
        octaves=octaves,
        octave_scale=octave_scale,
        steps=steps,
        lr=lr,
        jitter=jitter,
        batch_size=batch_size,
    )
    with progress_bars(not quiet) as progress:
        done = run_dream(
            net,
            loaded,
            objective,
            Path(out),
            seed=seed,
            options=options,
            force=force,
            progress=progress,
        )
    click.echo(f"wrote {len(done.files)} files to {done.out}")


@features.command("invert")
@click.argument("images", nargs=-1)
@model_options()
@click.option("--layer", required=True, help="Layer(s) to invert from, separated by commas.")
@click.option("--steps", default=None, type=click.IntRange(min=1), help="Optimizer steps.")
@click.option("--lr", default=None, type=click.FloatRange(min=0, min_open=True), help="Adam lr.")
@click.option("--tv-weight", default=None, type=click.FloatRange(min=0), help="TV prior weight.")
@seed_option
@batch_option
@recursive_option
@output_options("seethrough-invert")
def invert_command(
    *,
    images: tuple[str, ...],
    layer: str,
    steps: int | None,
    lr: float | None,
    tv_weight: float | None,
    seed: int,
    batch_size: int | None,
    recursive: bool,
    model: ModelChoice,
    out: str,
    force: bool,
    quiet: bool,
) -> None:
    """Feature inversion: reconstruct IMAGES from a layer's activations → inversion.png,
    inversion.json."""
    from ..jobs.features import run_invert

    layers = _layers(layer)
    model.check()
    check_output(out, force)
    loaded, net = load_inputs(images, model, recursive=recursive, layers=layers)
    options = _given(steps=steps, lr=lr, tv_weight=tv_weight, batch_size=batch_size)
    with progress_bars(not quiet) as progress:
        done = run_invert(
            net,
            loaded,
            layers,
            Path(out),
            seed=seed,
            options=options,
            force=force,
            progress=progress,
        )
    click.echo(f"wrote {len(done.files)} files to {done.out}")


@features.command("top-examples")
@click.argument("images", nargs=-1)
@model_options()
@layer_option
@click.option(
    "--dataset",
    type=click.Choice(["fashion-mnist"]),
    default=None,
    help="Rank the Fashion-MNIST test set instead of IMAGES (model: fashion-cnn unless "
    "--model is given).",
)
@click.option(
    "--limit", default=None, type=click.IntRange(min=1), help="Only the first N dataset images."
)
@click.option("--channels", default="all", show_default=True, help="'all' or e.g. 0-7,12.")
@click.option("--k", default=9, show_default=True, type=click.IntRange(min=1), help="Per channel.")
@batch_option
@recursive_option
@output_options("seethrough-top-examples")
@click.pass_context
def top_examples_command(
    ctx: click.Context,
    *,
    images: tuple[str, ...],
    layer: str,
    dataset: str | None,
    limit: int | None,
    channels: str,
    k: int,
    batch_size: int | None,
    recursive: bool,
    model: ModelChoice,
    out: str,
    force: bool,
    quiet: bool,
) -> None:
    """The images that excite each channel most, cropped to the strongest unit's receptive
    field, over IMAGES (files or folders) or --dataset → top-examples-NNN.png,
    top-examples.json."""
    from ..jobs.features import run_top_examples

    if bool(images) == bool(dataset):
        raise InvalidOptionError(
            "give image files or folders, or --dataset fashion-mnist (not both, not neither)"
        )
    if limit is not None and dataset is None:
        raise InvalidOptionError("--limit goes with --dataset")
    picked = None if channels.strip() == "all" else _channel_list(channels, "--channels")
    model_given = ctx.get_parameter_source("model_spec") == click.core.ParameterSource.COMMANDLINE
    if dataset is not None and not model_given:
        model = dataclasses.replace(model, spec=FASHION_CNN)
    model.check()
    check_output(out, force)
    if dataset is not None:
        from ..data.fashion_mnist import load_fashion_mnist

        data = load_fashion_mnist("test")
        if limit is not None:
            data = type(data)(data.images[:limit], data.labels[:limit], data.split, data.root)
        net = load_net(model, [layer])
        source: Any = data
    else:
        source, net = load_inputs(images, model, recursive=recursive, layers=[layer])
    with progress_bars(not quiet) as progress:
        done = run_top_examples(
            net,
            source,
            layer,
            Path(out),
            channels=picked,
            k=k,
            batch_size=batch_size,
            force=force,
            progress=progress,
        )
    click.echo(f"wrote {len(done.files)} files to {done.out}")
