"""``seethrough sanity``: model-parameter randomization (the work is in
:mod:`seethrough.jobs.sanity`)."""

from __future__ import annotations

from pathlib import Path

import click

from . import _methods
from ._shared import (
    ModelChoice,
    batch_option,
    check_output,
    load_inputs,
    model_options,
    output_options,
    progress_bars,
    recursive_option,
    seed_option,
)

__all__ = ["sanity_command"]


@click.command("sanity")
@click.argument("images", nargs=-1)
@model_options()
@click.option(
    "--methods",
    default="gradient,gradient_x_input,integrated_gradients,smoothgrad,guided_backprop,"
    "grad_cam,edge_detector",
    show_default=True,
    help="Comma-separated method names (controls: edge_detector, random_noise).",
)
@click.option(
    "--mode",
    type=click.Choice(["cascading", "independent"]),
    default="cascading",
    show_default=True,
    help="Randomize from the logits down, accumulating, or one step at a time.",
)
@click.option(
    "--granularity",
    type=click.Choice(["block", "module"]),
    default="block",
    show_default=True,
    help="Steps of blocks/stages, or of single parametrised modules.",
)
@click.option(
    "--follow-prediction",
    is_flag=True,
    help="Each randomized model explains its own top class (as the paper's code did); "
    "default: the class the trained model explained.",
)
@_methods.target_option
@_methods.cam_layer_option
@_methods.set_option
@seed_option
@batch_option
@click.option(
    "--figures",
    default=4,
    show_default=True,
    type=click.IntRange(min=0),
    help="Randomization grids for the first N images.",
)
@recursive_option
@output_options("seethrough-sanity")
def sanity_command(
    *,
    images: tuple[str, ...],
    model: ModelChoice,
    methods: str,
    mode: str,
    granularity: str,
    follow_prediction: bool,
    target: str | None,
    layer: str | None,
    settings: tuple[str, ...],
    seed: int,
    batch_size: int | None,
    figures: int,
    recursive: bool,
    out: str,
    force: bool,
    quiet: bool,
) -> None:
    """Model-parameter randomization (Adebayo et al., 2018) on IMAGES: does each map
    depend on the model? Writes similarity curves, randomization grids and sanity.json."""
    from ..attribution import make_method
    from ..jobs.sanity import run_sanity

    names = _methods.method_names(methods)
    options = _methods.method_options(settings, names, layer)
    for n in names:
        make_method(n, **options[n])
    flat = {k: v for per in options.values() for k, v in per.items()}
    wanted = _methods.target(target)
    model.check()
    check_output(out, force)

    layers = _methods.layer_names(layer)
    loaded, net = load_inputs(images, model, recursive=recursive, layers=layers, target=wanted)
    with progress_bars(not quiet) as progress:
        done = run_sanity(
            net,
            loaded,
            names,
            Path(out),
            mode=mode,
            granularity=granularity,
            follow_prediction=follow_prediction,
            target=wanted,
            seed=seed,
            batch_size=batch_size,
            figures=figures,
            force=force,
            progress=progress,
            options=flat,
        )
    if not quiet:
        last = done.result.steps[-1].name
        for s in done.result.similarities:
            value = float(s.mean("spearman_abs")[-1])
            click.echo(
                f"{s.method}: rank correlation with the trained map after {last}: {value:.2f}",
                err=True,
            )
    click.echo(f"wrote {len(done.files)} files to {done.out}")
