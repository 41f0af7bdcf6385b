"""``seethrough explain``: attribution maps for images (the work is in
:mod:`seethrough.jobs.explain`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import click

from ._methods import MethodChoice, method_choice
from ._shared import (
    ImageChoice,
    ModelChoice,
    OutputChoice,
    batch_option,
    image_options,
    load_inputs,
    model_options,
    nonfinite_option,
    output_options,
    run_job,
    seed_option,
)

if TYPE_CHECKING:
    from ..jobs.explain import ExplainResult

__all__ = ["DEFAULT_METHODS", "explain_command"]

# the gradient methods (a few minutes on a CPU); "all" adds the perturbation methods,
# which run the model hundreds to thousands of times per image
DEFAULT_METHODS = (
    "gradient,gradient_x_input,integrated_gradients,smoothgrad,guided_backprop,deconvnet,"
    "grad_cam,guided_grad_cam"
)


@click.command("explain")
@model_options()
@method_choice(
    DEFAULT_METHODS,
    "Comma-separated method names, or 'all' (see 'seethrough methods'). The default "
    "is every gradient method; perturbation methods (occlusion, rise, ...) run the model "
    "hundreds of times per image.",
)
@seed_option
@batch_option
@nonfinite_option
@image_options
@output_options("seethrough-out")
def explain_command(
    *,
    images: ImageChoice,
    model: ModelChoice,
    methods: MethodChoice,
    seed: int,
    batch_size: int | None,
    nonfinite: str,
    output: OutputChoice,
) -> None:
    """Explain IMAGES (files, folders, or sample:NAME; default: bundled photos).

    Writes a figure per image, index.html, summary.json and attributions.safetensors
    into --out. Fast methods are written first; the folder always holds a complete
    report (summary.json's "pending" lists the methods still running).
    """
    from ..jobs.explain import run_explain

    chosen = methods.resolve()  # checked before any image or model is loaded
    loaded, net = load_inputs(images, model, output, layers=chosen.layers, target=chosen.target)
    run_job(
        output,
        run_explain,
        net,
        loaded,
        chosen.methods,
        target=chosen.target,
        seed=seed,
        batch_size=batch_size,
        nonfinite=nonfinite,
        notes=_layers_used,
        opens="index.html",
    )


def _layers_used(result: ExplainResult) -> Iterator[str]:
    for ex in result.explanations:
        if getattr(ex, "layer", None):
            yield f"{ex.method}: layer {ex.layer}"  # type: ignore[attr-defined]
