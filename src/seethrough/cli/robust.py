"""``seethrough robust attack|evaluate``: adversarial examples of images, and robust
accuracy with the checks for gradient masking (the work is in
:mod:`seethrough.jobs.robust` and :mod:`seethrough.robust`)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import InvalidOptionError
from ._shared import (
    ImageChoice,
    ModelChoice,
    OutputChoice,
    _current_folder_importable,
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
    resolve_device,
    run_job,
    seed_option,
)

if TYPE_CHECKING:
    from ..jobs.robust import AttackJobResult, EvaluateJobResult
    from ..models import LoadedModel

FASHION = "fashion-mnist"  # the built-in dataset that jobs.robust.evaluation_data knows

__all__ = ["ATTACKS", "EPS_SPACES", "NORMS", "parse_eps", "robust_group"]

# The library's names (seethrough.robust.NORMS, EPS_SPACES; jobs.robust.ATTACKS), written
# here so that `seethrough --help` imports no torch; a test checks they agree.
ATTACKS: tuple[str, ...] = ("pgd", "fgsm")
NORMS: tuple[str, ...] = ("linf", "l2")
EPS_SPACES: tuple[str, ...] = ("pixels", "input")


def parse_eps(text: str, flag: str = "--eps") -> tuple[float, ...]:
    """``--eps`` text → radii: numbers or fractions (``4/255``), separated by commas."""
    values = []
    for part in (p.strip() for p in text.split(",")):
        try:
            value = float(Fraction(part)) if "/" in part else float(part)
        except (ValueError, ZeroDivisionError):
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise InvalidOptionError(
                f"{flag} {text!r}: {part!r} is not a non-negative number; give ε as a number "
                "or a fraction such as 4/255 (several: separated by commas)"
            )
        values.append(value)
    return tuple(values)


def _true_labels(text: str | None) -> list[int | str] | None:
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    if any(p == "" for p in parts):
        raise InvalidOptionError(
            f"--true-labels {text!r} has an empty item; give one class per image, separated "
            "by commas"
        )
    return [int(p) if p.lstrip("+-").isdigit() else p for p in parts]


def _attack_target(text: str) -> Any:
    """``--target`` → what the attacks take: ``"predicted"``, ``"true"`` or classes."""
    from ._methods import target

    word = text.strip().lower()
    if word in ("predicted", "true"):
        return word
    return target(text)


@click.group("robust")
def robust_group() -> None:
    """Adversarial attacks (FGSM, PGD) and robust accuracy with checks for gradient masking."""


@robust_group.command("attack")
@model_options()
@named_option("--attack", "attack", ATTACKS, "The attack: PGD (Madry et al., 2018) or FGSM.")
@click.option(
    "--eps",
    default="4/255",
    show_default=True,
    help="Radius of the ball: a number or a fraction such as 4/255.",
)
@named_option(
    "--eps-space",
    "eps space",
    EPS_SPACES,
    "Units of --eps and --step-size: pixels in [0, 1], or the model's (normalised) input.",
)
@named_option("--norm", "norm", NORMS, "The ball: L∞ (a box) or L2 (PGD only).")
@count_option("--steps", "PGD steps (default 10).")
@click.option(
    "--step-size",
    default=None,
    type=click.FloatRange(min=0, min_open=True),
    help="PGD step, in the units of --eps (default 2.5·ε/steps).",
)
@count_option("--restarts", "PGD random starts (default 1); only images not yet fooled restart.")
@click.option(
    "--target",
    default="predicted",
    show_default=True,
    help="'predicted' (move each image away from its clean prediction), 'true' (away from "
    "its true class: needs --true-labels), or a class index or name, or one per image "
    "separated by commas (a targeted attack).",
)
@click.option(
    "--true-labels",
    default=None,
    metavar="CLASSES",
    help="The true class of each image (index or name), separated by commas.",
)
@seed_option
@batch_option
@count_option("--figures", "Figures for the first N images.", default=6, least=0)
@choice_option("--lang", ("en", "zh"), "Language of the sentences.")
@image_options
@output_options("seethrough-attack")
def attack_command(
    *,
    images: ImageChoice,
    model: ModelChoice,
    attack: str,
    eps: str,
    eps_space: str,
    norm: str,
    steps: int | None,
    step_size: float | None,
    restarts: int | None,
    target: str,
    true_labels: str | None,
    seed: int,
    batch_size: int | None,
    figures: int,
    lang: str,
    output: OutputChoice,
) -> None:
    """Attack IMAGES (files, folders, or sample:NAME; default: bundled photos).

    Writes the adversarial images (PNG), adversarial.safetensors, a figure per image,
    attack.json and index.html into --out.
    """
    from ..jobs.robust import attack_options, run_attack

    radius = _single(parse_eps(eps))
    attack_options(attack, norm, steps, step_size, restarts)  # FGSM takes no PGD settings
    chosen = _attack_target(target)
    labels = _true_labels(true_labels)
    if chosen == "true" and labels is None:
        raise InvalidOptionError(
            "--target true needs --true-labels (the true class of each image, separated by "
            "commas); or attack the clean prediction with --target predicted"
        )
    targeted = chosen not in ("predicted", "true")
    loaded, net = load_inputs(images, model, output, target=chosen if targeted else None)
    if labels is not None:
        _check_labels(labels, len(loaded), net.labels)
    run_job(
        output,
        run_attack,
        net,
        loaded,
        attack=attack,
        eps=radius,
        eps_space=eps_space,
        norm=norm,
        steps=steps,
        step_size=step_size,
        restarts=restarts,
        target=chosen,
        labels=labels,
        seed=seed,
        batch_size=batch_size,
        figures=figures,
        lang=lang,
        notes=_attack_notes,
    )


def _single(radii: tuple[float, ...]) -> float:
    if len(radii) != 1:
        raise InvalidOptionError(
            "--eps takes one radius for an attack; 'seethrough robust evaluate' takes several"
        )
    return radii[0]


def _check_labels(labels: list[int | str], n: int, names: Any) -> None:
    """One true class per image, each a class of the model (before any work)."""
    from ..core.targets import parse_target

    if len(labels) != n:
        raise InvalidOptionError(
            f"--true-labels gives {len(labels)} classes for {n} images; give one per image, "
            "separated by commas"
        )
    parse_target(labels, n, names)


def _attack_notes(done: AttackJobResult) -> Iterator[str]:
    for row in done.summary["images"]:
        clean, adv = row["clean"], row["adversarial"]
        yield (
            f"{row['name']}: {clean['label']} ({clean['probability']:.2f}) → {adv['label']} "
            f"({adv['probability']:.2f}), margin {row['margin']:.3g}"
        )
    yield done.result.describe().text(done.summary["lang"])


@robust_group.command("evaluate")
@model_options("fashion-cnn", "As for 'explain'; default: the project's Fashion-MNIST CNN.")
@labelled_data_options(1000)
@click.option(
    "--eps",
    default="0.05,0.1,0.2",
    show_default=True,
    help="Radii, separated by commas (numbers or fractions such as 4/255).",
)
@named_option("--eps-space", "eps space", EPS_SPACES, "Units of --eps.")
@named_option("--norm", "norm", NORMS, "The ball: L∞ (a box) or L2.")
@count_option("--steps", "PGD steps.", default=20)
@count_option("--restarts", "PGD random starts; only images not yet fooled restart.", default=1)
@click.option(
    "--transfer-from",
    default=None,
    metavar="MODEL",
    help="Another model on the same inputs (as --model): PGD made on it must not fool more "
    "images than the attack on the model itself (a check for gradient masking).",
)
@seed_option
@batch_option
@choice_option("--lang", ("en", "zh"), "Language of the sentences.")
@output_options("seethrough-evaluate")
def evaluate_command(
    *,
    model: ModelChoice,
    data: str,
    limit: int,
    eps: str,
    eps_space: str,
    norm: str,
    steps: int,
    restarts: int,
    transfer_from: str | None,
    seed: int,
    batch_size: int | None,
    lang: str,
    output: OutputChoice,
) -> None:
    """Clean and robust accuracy per ε under PGD, with checks for gradient masking
    (more steps, larger ε, a transfer attack, a large ε). Writes evaluate.json,
    robust-accuracy.png and index.html into --out."""
    from ..jobs.robust import evaluation_data, run_evaluate

    radii = parse_eps(eps)
    _check_data(data)
    net = load_net(model, output=output)
    source = None if transfer_from is None else _transfer_model(transfer_from, model)
    run_job(
        output,
        run_evaluate,
        net,
        evaluation_data(net, data, limit),
        eps=radii,
        eps_space=eps_space,
        norm=norm,
        steps=steps,
        restarts=restarts,
        transfer_from=source,
        seed=seed,
        batch_size=batch_size,
        lang=lang,
        notes=_evaluate_notes,
    )


def _check_data(data: str) -> None:
    """``--data`` of a form :func:`~seethrough.jobs.robust.evaluation_data` knows (before
    the model is loaded; that function checks it against the model)."""
    name, _, split = data.partition(":")
    if name == FASHION and split in ("", "test", "train"):
        return
    if name == FASHION:
        raise InvalidOptionError(
            f"--data {data!r}: unknown split {split!r} (valid: {FASHION}:test, {FASHION}:train)"
        )
    if not Path(data).is_dir():
        raise InvalidOptionError(
            f"--data {data!r}: not '{FASHION}[:test|train]' and not a folder of class subfolders"
        )


def _transfer_model(spec: str, model: ModelChoice) -> LoadedModel:
    """The ``--transfer-from`` model, on ``--device``, its errors naming that flag."""
    from ..models import load_model
    from ..models.zoo import argument_names

    with _current_folder_importable(), argument_names(spec="--transfer-from {}"):
        return load_model(
            spec, device=resolve_device(model.device), allow_pickle=model.allow_pickle
        )


def _evaluate_notes(done: EvaluateJobResult) -> Iterator[str]:
    report = done.result
    yield f"clean accuracy {report.clean_accuracy.format(3)} ({report.n} images)"
    for e, robust in zip(report.eps, report.robust_accuracy, strict=True):
        yield f"ε = {e:.4g}: robust accuracy {robust.format(3)}"
    if report.masking_suspected:
        yield "gradient masking suspected: see the warnings above and the page's checks"
