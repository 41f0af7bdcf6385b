"""``seethrough sanity``: model-parameter randomization (the work is in
:mod:`seethrough.jobs.sanity`)."""

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
    choice_option,
    count_option,
    image_options,
    load_inputs,
    model_options,
    output_options,
    run_job,
    seed_option,
)

if TYPE_CHECKING:
    from ..jobs.sanity import SanityJobResult

__all__ = ["sanity_command"]


@click.command("sanity")
@model_options()
@method_choice(
    "gradient,gradient_x_input,integrated_gradients,smoothgrad,guided_backprop,grad_cam,"
    "edge_detector",
    "Comma-separated method names (controls: edge_detector, random_noise).",
)
@choice_option(
    "--mode",
    ["cascading", "independent"],
    "Randomize from the logits down, accumulating, or one step at a time.",
)
@choice_option(
    "--granularity",
    ["block", "module"],
    "Steps of blocks/stages, or of single parametrised modules.",
)
@click.option(
    "--follow-prediction",
    is_flag=True,
    help="Each randomized model explains its own top class (as the paper's code did); "
    "default: the class the trained model explained.",
)
@seed_option
@batch_option
@count_option("--figures", "Randomization grids for the first N images.", default=4, least=0)
@image_options
@output_options("seethrough-sanity")
def sanity_command(
    *,
    images: ImageChoice,
    model: ModelChoice,
    methods: MethodChoice,
    mode: str,
    granularity: str,
    follow_prediction: bool,
    seed: int,
    batch_size: int | None,
    figures: int,
    output: OutputChoice,
) -> None:
    """Model-parameter randomization (Adebayo et al., 2018) on IMAGES: does each map
    depend on the model? Writes similarity curves, randomization grids and sanity.json."""
    from ..jobs.sanity import run_sanity

    chosen = methods.resolve()
    loaded, net = load_inputs(images, model, output, layers=chosen.layers, target=chosen.target)
    run_job(
        output,
        run_sanity,
        net,
        loaded,
        list(chosen.methods),  # configured: a scoped --set reaches its method only
        mode=mode,
        granularity=granularity,
        follow_prediction=follow_prediction,
        target=chosen.target,
        seed=seed,
        batch_size=batch_size,
        figures=figures,
        notes=_correlations,
    )


def _correlations(done: SanityJobResult) -> Iterator[str]:
    last = done.result.steps[-1].name
    for s in done.result.similarities:
        value = float(s.mean("spearman_abs")[-1])
        yield f"{s.method}: rank correlation with the trained map after {last}: {value:.2f}"
