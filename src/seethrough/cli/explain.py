"""``seethrough explain``: attribution maps for images (the work is in
:mod:`seethrough.jobs.explain`)."""

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

__all__ = ["DEFAULT_METHODS", "explain_command"]

# the gradient methods (a few minutes on a CPU); "all" adds the perturbation methods,
# which run the model hundreds to thousands of times per image
DEFAULT_METHODS = (
    "gradient,gradient_x_input,integrated_gradients,smoothgrad,guided_backprop,deconvnet,"
    "grad_cam,guided_grad_cam"
)


@click.command("explain")
@click.argument("images", nargs=-1)
@model_options()
@click.option(
    "--methods",
    default=DEFAULT_METHODS,
    show_default=True,
    help="Comma-separated method names, or 'all' (see 'seethrough methods'). The default "
    "is every gradient method; perturbation methods (occlusion, rise, ...) run the model "
    "hundreds of times per image.",
)
@_methods.target_option
@_methods.cam_layer_option
@_methods.set_option
@seed_option
@batch_option
@recursive_option
@output_options("seethrough-out")
def explain_command(
    *,
    images: tuple[str, ...],
    model: ModelChoice,
    methods: str,
    target: str | None,
    layer: str | None,
    settings: tuple[str, ...],
    seed: int,
    batch_size: int | None,
    recursive: bool,
    out: str,
    force: bool,
    quiet: bool,
) -> None:
    """Explain IMAGES (files, folders, or sample:NAME; default: bundled photos).

    Writes a figure per image, index.html, summary.json and attributions.safetensors
    into --out. Fast methods are written first; the folder always holds a complete
    report (summary.json's "pending" lists the methods still running).
    """
    from ..attribution import make_method
    from ..jobs.explain import run_explain

    # Everything that can be checked cheaply is checked before any image or model is loaded.
    names = _methods.method_names(methods)
    options = _methods.method_options(settings, names, layer)
    chosen = [make_method(n, **options[n]) for n in names]
    wanted = _methods.target(target)
    model.check()
    check_output(out, force)

    layers = _methods.layer_names(layer)
    loaded, net = load_inputs(images, model, recursive=recursive, layers=layers, target=wanted)
    with progress_bars(not quiet) as progress:
        result = run_explain(
            net,
            loaded,
            chosen,
            Path(out),
            target=wanted,
            seed=seed,
            batch_size=batch_size,
            force=force,
            progress=progress,
        )
    if not quiet:
        for ex in result.explanations:
            if getattr(ex, "layer", None):
                click.echo(f"{ex.method}: layer {ex.layer}", err=True)  # type: ignore[attr-defined]
    click.echo(
        f"wrote {len(result.files)} files to {result.out} (open {result.out / 'index.html'})"
    )
