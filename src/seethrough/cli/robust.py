"""``seethrough robust attack|evaluate|compare``: adversarial examples of images, robust
accuracy with the checks for gradient masking, and the comparison of several models'
explanations (the work is in :mod:`seethrough.jobs.robust` and :mod:`seethrough.robust`)."""

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
    from ..jobs.robust import AttackJobResult, CompareJobResult, EvaluateJobResult
    from ..models import LoadedModel

FASHION = "fashion-mnist"  # the built-in dataset that jobs.robust.evaluation_data knows

__all__ = [
    "ATTACKS",
    "COMPARE_METHODS",
    "EPS_SPACES",
    "FRAGILITY_METHODS",
    "NORMS",
    "parse_eps",
    "robust_group",
]

# The library's names (seethrough.robust.NORMS, EPS_SPACES, FRAGILITY_METHODS, compare's
# default methods; jobs.robust.ATTACKS), written here so that `seethrough --help` imports
# no torch; a test checks they agree.
ATTACKS: tuple[str, ...] = ("pgd", "fgsm")
NORMS: tuple[str, ...] = ("linf", "l2")
EPS_SPACES: tuple[str, ...] = ("pixels", "input")
COMPARE_METHODS: tuple[str, ...] = ("gradient", "integrated_gradients", "smoothgrad", "grad_cam")
"""The default ``--methods`` of ``compare`` (the library's default ``methods``)."""
FRAGILITY_METHODS: tuple[str, ...] = ("gradient", "gradient_x_input", "integrated_gradients")


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
    """Adversarial attacks (FGSM, PGD), robust accuracy with checks for gradient masking,
    and whether robust models explain better."""


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


def _single(radii: tuple[float, ...], flag: str = "--eps") -> float:
    if len(radii) == 1:
        return radii[0]
    if flag == "--eps":
        raise InvalidOptionError(
            "--eps takes one radius for an attack; 'seethrough robust evaluate' takes several"
        )
    raise InvalidOptionError(f"{flag} takes one radius, got {len(radii)}")


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


@robust_group.command("compare")
@click.option(
    "--models",
    required=True,
    metavar="MODELS",
    help="Two or more models on the same data, separated by commas, each as --model takes "
    "it (built-in name, file, 'package.module:object', ...); NAME=MODEL gives it a "
    "name: 'plain=fashion-cnn,robust=fashion-cnn-robust' shows them as plain and robust.",
)
@click.option(
    "--methods",
    default=",".join(COMPARE_METHODS),
    show_default=True,
    help="Attribution methods (see 'seethrough methods'), separated by commas.",
)
@labelled_data_options(100)
@click.option(
    "--judge",
    default=None,
    metavar="MODEL",
    help="An independent classifier on the same inputs (as --model): how often it "
    "recognises each model's activation-maximisation images as their class.",
)
@click.option(
    "--fragility-eps",
    default=None,
    metavar="EPS",
    help="Also attack each model's explanations (Ghorbani et al., 2019) at this ε, in the "
    "units of --eps-space (a number or a fraction such as 4/255).",
)
@named_option(
    "--fragility-method", "fragility method", FRAGILITY_METHODS, "The map the attack moves."
)
@named_option("--eps-space", "eps space", EPS_SPACES, "Units of --fragility-eps.")
@click.option(
    "--training-eps",
    default=None,
    metavar="NAME=EPS,...",
    help="Each model's training ε, for the alignment figure (the built-in Fashion CNNs' "
    "are known; a model without one is shown apart).",
)
@click.option("--no-sanity", is_flag=True, help="Skip the model-randomization sanity curves.")
@count_option("--sanity-images", "Images of the sanity curves (default: the first 16).")
@click.option("--no-faithfulness", is_flag=True, help="Skip deletion and insertion AUC.")
@click.option("--no-max-sensitivity", is_flag=True, help="Skip max-sensitivity.")
@click.option(
    "--no-activation-maximization",
    is_flag=True,
    help="Skip the class-logit activation-maximisation images.",
)
@count_option("--resamples", "Bootstrap resamples of every interval.", default=2000)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    metavar="DEVICE",
    help="Where the models run: auto (CUDA when available), cpu, cuda or cuda:N.",
)
@click.option(
    "--allow-pickle",
    is_flag=True,
    help="Allow loading plain pickles (runs code from the file: trusted files only).",
)
@seed_option
@batch_option
@choice_option("--lang", ("en", "zh"), "Language of the sentences.")
@output_options("seethrough-compare")
def compare_command(
    *,
    models: str,
    methods: str,
    data: str,
    limit: int,
    judge: str | None,
    fragility_eps: str | None,
    fragility_method: str,
    eps_space: str,
    training_eps: str | None,
    no_sanity: bool,
    sanity_images: int | None,
    no_faithfulness: bool,
    no_max_sensitivity: bool,
    no_activation_maximization: bool,
    resamples: int,
    device: str,
    allow_pickle: bool,
    seed: int,
    batch_size: int | None,
    lang: str,
    output: OutputChoice,
) -> None:
    """Do robust models explain better? Per model: clean accuracy, alignment (Etmann et
    al., 2019); per model and method: edge similarity, sanity curves, faithfulness,
    max-sensitivity; activation-maximisation images; with --fragility-eps, the fragility
    of the maps. Writes compare.json, the figures and index.html into --out."""
    named = _model_list(models)
    from ._methods import method_names

    chosen = method_names(methods)
    radius = (
        None
        if fragility_eps is None
        else _single(parse_eps(fragility_eps, "--fragility-eps"), "--fragility-eps")
    )
    trained = _training_eps(training_eps, [name for name, _ in named])
    _check_data(data)
    output.check()
    where = resolve_device(device)
    nets = [_other_model(spec, "--models", where, allow_pickle) for _, spec in named]
    referee = None if judge is None else _other_model(judge, "--judge", where, allow_pickle)
    from ..jobs.robust import evaluation_data, run_compare

    run_job(
        output,
        run_compare,
        nets,
        evaluation_data(nets[0], data, limit),
        names=[name for name, _ in named],
        methods=chosen,
        judge=referee,
        fragility_eps=radius,
        fragility_method=fragility_method,
        eps_space=eps_space,
        training_eps=trained,
        sanity=not no_sanity,
        sanity_images=sanity_images,
        faithfulness=not no_faithfulness,
        max_sensitivity=not no_max_sensitivity,
        activation_maximization=not no_activation_maximization,
        resamples=resamples,
        seed=seed,
        batch_size=batch_size,
        lang=lang,
        notes=_compare_notes,
    )


def _items(text: str, flag: str, what: str) -> list[str]:
    parts = [p.strip() for p in text.split(",")]
    if any(p == "" for p in parts):
        raise InvalidOptionError(
            f"{flag} {text!r} has an empty item; give {what} separated by commas"
        )
    return parts


def _model_list(text: str) -> list[tuple[str, str]]:
    """``--models`` → (name, spec) pairs: ``NAME=SPEC`` or ``SPEC`` (named after itself)."""
    named = []
    for part in _items(text, "--models", "two or more models"):
        name, sep, spec = part.partition("=")
        name, spec = (name.strip(), spec.strip()) if sep else (part, part)
        if not name or not spec:
            raise InvalidOptionError(
                f"--models item {part!r}: give NAME=MODEL (both non-empty) or a MODEL"
            )
        named.append((name, spec))
    names = [name for name, _ in named]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidOptionError(
            f"--models names {twice[0]!r} twice; give each model once, or name the copies "
            f"(NAME=MODEL, e.g. a={twice[0]},b={twice[0]})"
        )
    if len(named) < 2:
        raise InvalidOptionError(
            f"--models {text!r} names one model; a comparison needs two or more, separated "
            "by commas"
        )
    return named


def _training_eps(text: str | None, names: list[str]) -> dict[str, float]:
    """``--training-eps NAME=EPS,...`` → {model name: ε}, each name one of ``--models``."""
    if text is None:
        return {}
    found: dict[str, float] = {}
    for part in _items(text, "--training-eps", "NAME=EPS pairs"):
        name, sep, value = (p.strip() for p in part.partition("="))
        if not sep:
            raise InvalidOptionError(
                f"--training-eps item {part!r} is not NAME=EPS (e.g. robust=0.1)"
            )
        if name not in names:
            from ..errors import suggest

            raise InvalidOptionError(
                f"--training-eps names {name!r}, not a model of --models"
                f"{suggest(name, names)} (valid: {', '.join(names)})"
            )
        found[name] = _single(parse_eps(value, "--training-eps"), "--training-eps")
    return found


def _other_model(spec: str, flag: str, device: str, allow_pickle: bool) -> LoadedModel:
    """A model of ``--models`` or ``--judge``, on ``device``, its errors naming ``flag``."""
    from ..models import load_model
    from ..models.zoo import argument_names

    with _current_folder_importable(), argument_names(spec=flag + " {}"):
        return load_model(spec, device=device, allow_pickle=allow_pickle)


def _compare_notes(done: CompareJobResult) -> Iterator[str]:
    for m in done.result.models:
        yield (
            f"{m.name}: clean accuracy {m.clean_accuracy.format(3)}, alignment "
            f"{m.alignment.format(3)}"
        )
    for name, r in done.fragility.items():
        noise = r.median_random_intersection
        random = "" if noise is None else f" (random ±ε: {noise:.3f})"
        yield (
            f"{name}: fragility attack, median top-{r.settings.top_k} intersection "
            f"{r.median_intersection:.3f}{random}"
        )
    yield from done.result.describe().sentences(done.summary["lang"])
