"""``seethrough explain``: attribution maps for images (the work is in
:mod:`seethrough.jobs.explain`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import click

from ..errors import InvalidOptionError
from ._methods import MethodChoice, method_choice, method_names, method_options
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
    from ..attribution import Method
    from ..jobs.explain import ExplainResult
    from ..models import LoadedModel

__all__ = ["DEFAULT_METHODS", "explain_command"]

# the gradient methods (a few minutes on a CPU); "all" adds the perturbation methods,
# which run the model hundreds to thousands of times per image
DEFAULT_METHODS = (
    "gradient,gradient_x_input,integrated_gradients,smoothgrad,guided_backprop,deconvnet,"
    "grad_cam,guided_grad_cam"
)
REFERENCE_OPTIONS = {"deepshap": "baselines", "expected_gradients": "references"}
"""The methods that take a batch of reference images, and the option that holds it."""


@click.command("explain")
@model_options()
@method_choice(
    DEFAULT_METHODS,
    "Comma-separated method names, or 'all' (see 'seethrough methods'). The default "
    "is every gradient method; perturbation methods (occlusion, rise, ...) run the model "
    "hundreds of times per image.",
)
@click.option(
    "--references",
    default=None,
    metavar="SOURCE",
    help="Reference images of deepshap (and of expected_gradients): a folder (all its "
    "images, subfolders too) or an image file, or 'fashion-mnist[:train|test]' (its first "
    "100 images). Default for deepshap: the 24 bundled sample photos.",
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
    references: str | None,
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

    pending = _pending_references(methods, references)
    chosen = methods.resolve(pending)  # checked before any image or model is loaded
    loaded, net = load_inputs(images, model, output, layers=chosen.layers, target=chosen.target)
    configured, described = _with_references(chosen.methods, set(pending), net, references)
    if described is not None and not output.quiet:
        click.echo(f"seethrough: references of {', '.join(pending)}: {described}", err=True)
    run_job(
        output,
        run_explain,
        net,
        loaded,
        configured,
        references=described,
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


def _pending_references(methods: MethodChoice, references: str | None) -> dict[str, Any]:
    """The methods among ``--methods`` that get their reference images from
    ``--references`` (deepshap always: its default references; expected_gradients when
    given), each with a stand-in batch so that its other options are checked before the
    model is loaded (:func:`_with_references` puts the images in)."""
    names = method_names(methods.methods)
    takers = [n for n in names if n in REFERENCE_OPTIONS]
    if references is not None and not takers:
        raise InvalidOptionError(
            "--references is used by deepshap and expected_gradients, and neither is among "
            "--methods"
        )
    chosen = [n for n in takers if n == "deepshap" or references is not None]
    settings = method_options(methods.settings, names, methods.layer)
    for name in chosen:
        if REFERENCE_OPTIONS[name] in settings[name]:
            raise InvalidOptionError(
                f"--set {name}.{REFERENCE_OPTIONS[name]}: the reference images come from "
                "--references SOURCE (a folder, an image file or fashion-mnist[:train|test])"
            )
    if not chosen:
        return {}
    import torch

    stand_in = torch.zeros(1, 1)  # a batch of one: passes the option checks
    return {name: {REFERENCE_OPTIONS[name]: stand_in} for name in chosen}


def _with_references(
    methods: Sequence[Method], pending: set[str], net: LoadedModel, source: str | None
) -> tuple[list[Method], str | None]:
    """``methods`` with the reference images of ``source`` in place of the stand-ins,
    and what those images are, in words (``None`` when no method takes them)."""
    if not pending:
        return list(methods), None
    from ..jobs.explain import load_references

    batch, described = load_references(net, source)
    return [
        dataclasses.replace(m, **{REFERENCE_OPTIONS[m.name]: batch}) if m.name in pending else m
        for m in methods
    ], described
