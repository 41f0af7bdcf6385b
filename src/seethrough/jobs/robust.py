"""The robustness jobs, written whole or not at all
(:class:`~seethrough.reporting.output.OutputFolder`):

* :func:`run_attack` — FGSM or PGD on a set of images → the adversarial images as PNG
  files (pixels, through the model's preprocessing inverse), the exact adversarial inputs
  (``adversarial.safetensors``), a figure per image (clean, adversarial, the perturbation
  amplified), ``attack.json`` and ``index.html``;
* :func:`run_evaluate` — clean and robust accuracy per ε with the checks for gradient
  masking over a labelled dataset → ``evaluate.json``, the accuracy-vs-ε figure and
  ``index.html``;
* :func:`run_compare` — :func:`~seethrough.robust.compare` of several models on a
  labelled dataset (and, when asked, :func:`~seethrough.robust.fragility` of each) →
  ``compare.json``, the maps side by side per method, alignment against the training ε,
  the fragility figure and its adversarial inputs, and ``index.html``.

The pages say what the results say in words (the results' ``describe()``, in English or
Chinese); every number on them is in the JSON summary.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import Tensor

from ..core.budget import Budget
from ..core.guard import guarded
from ..core.passes import forward_logits
from ..data.images import LoadedImage
from ..errors import InvalidOptionError, suggest
from ..models.zoo import FASHION_CNN_PREPROCESS, FASHION_CNN_VARIANTS, LoadedModel
from ..reporting.html import PAGE, PageFigure, PageTable, number, render_job_page, words_table
from ..reporting.output import OutputFolder, file_stems
from ..reporting.serialize import to_jsonable, write_json
from ..robust import (
    AttackResult,
    FragilityResult,
    RobustnessComparison,
    RobustnessReport,
    compare,
    evaluate,
    fgsm,
    fragility,
    pgd,
)
from ..viz import (
    plot_adversarial,
    plot_alignment,
    plot_class_images,
    plot_comparison,
    plot_fragility,
    plot_robust_accuracy,
    save_figure,
)
from ..words import LANGUAGES
from .anatomy import LabelledData, labelled_folder

__all__ = [
    "ATTACK",
    "ATTACKS",
    "COMPARE",
    "EVALUATE",
    "FRAGILITY_TENSORS",
    "TENSORS",
    "AttackJobResult",
    "CompareJobResult",
    "EvaluateJobResult",
    "attack_options",
    "evaluation_data",
    "known_training_eps",
    "run_attack",
    "run_compare",
    "run_evaluate",
]

ATTACK = "attack.json"
EVALUATE = "evaluate.json"
TENSORS = "adversarial.safetensors"
"""The exact clean and adversarial model inputs of an attack (``inputs``, ``adversarial``)."""
COMPARE = "compare.json"
FRAGILITY_TENSORS = "fragility.safetensors"
"""The fragility attack's adversarial inputs, one tensor per model (keyed by its name)."""
ATTACKS: tuple[str, ...] = ("fgsm", "pgd")
FIGURE = "robust-accuracy.png"
ALIGNMENT_FIGURE = "alignment.png"
CLASS_IMAGES_FIGURE = "class-images.png"
FRAGILITY_FIGURE = "fragility.png"
FASHION = "fashion-mnist"
EVAL_BATCH = 100
"""Images per batch of :func:`run_evaluate` (one progress update each; the results do
not depend on it: image ``i`` draws from seed ``seed + i`` whatever its batch)."""
JobProgress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class AttackJobResult:
    """What :func:`run_attack` wrote: the folder, the library's result, the JSON summary
    (as written) and the files."""

    out: Path
    result: AttackResult
    summary: dict[str, Any]
    files: tuple[str, ...]


@dataclass(frozen=True)
class EvaluateJobResult:
    """What :func:`run_evaluate` wrote: the folder, the library's report, the JSON summary
    (as written) and the files."""

    out: Path
    result: RobustnessReport
    summary: dict[str, Any]
    files: tuple[str, ...]


@dataclass(frozen=True)
class CompareJobResult:
    """What :func:`run_compare` wrote: the folder, the library's comparison, the
    fragility result of each model (empty when not asked for), the JSON summary (as
    written) and the files."""

    out: Path
    result: RobustnessComparison
    fragility: Mapping[str, FragilityResult]
    summary: dict[str, Any]
    files: tuple[str, ...]


# --------------------------------------------------------------------------- attack


def run_attack(
    net: LoadedModel,
    images: Sequence[LoadedImage],
    out: str | os.PathLike[str],
    *,
    attack: str = "pgd",
    eps: float = 4 / 255,
    eps_space: str = "pixels",
    norm: str = "linf",
    steps: int | None = None,
    step_size: float | None = None,
    restarts: int | None = None,
    target: Any = "predicted",
    labels: Any = None,
    seed: int = 0,
    batch_size: int | None = None,
    figures: int = 6,
    lang: str = "en",
    force: bool = False,
    progress: JobProgress | None = None,
) -> AttackJobResult:
    """Attack ``images`` with :func:`~seethrough.robust.fgsm` or
    :func:`~seethrough.robust.pgd` and write the results into ``out``.

    Parameters
    ----------
    net : LoadedModel
        Its preprocessing makes the inputs, gives the valid range and the pixel units,
        and turns the adversarial inputs back into pixels.
    images : sequence of LoadedImage
    out : path
        The output folder (held by this run, written whole or not at all).
    attack : {"fgsm", "pgd"}
    eps, eps_space, norm, target, labels, seed, batch_size
        As for :func:`~seethrough.robust.pgd` (``target="predicted"`` by default:
        each image's clean prediction, no labels needed).
    steps, step_size, restarts
        PGD only (``None``: the library's defaults).
    figures : int
        Figures (clean, adversarial, perturbation) for the first ``figures`` images.
    lang : {"en", "zh"}
        Language of the sentences in ``attack.json`` and on the page.
    force, progress
        Replace an earlier run's results; ``progress(step, done, planned)``.

    Returns
    -------
    AttackJobResult

    Raises
    ------
    InvalidOptionError
        An unknown attack or language, PGD-only settings with FGSM, no images, and every
        option the attack itself refuses.
    """
    method = _choice("attack", attack, ATTACKS)
    options = attack_options(method, norm, steps, step_size, restarts)
    _check_lang(lang)
    if not images:
        raise InvalidOptionError("no images to attack")
    with OutputFolder(out, force, manifest=ATTACK) as staging:
        x = net.preprocess(list(images), device=_device(net))
        run = fgsm if method == "fgsm" else pgd
        result = run(
            net,
            x,
            eps=eps,
            eps_space=eps_space,
            target=target,
            labels=labels,
            seed=seed,
            batch_size=batch_size,
            progress=(lambda d, t: progress("attack", d, t)) if progress else None,
            **options,
        )
        files, rows = _write_attack(net, images, x, result, staging, figures, progress)
        summary = to_jsonable(
            {
                "model": net.name,
                "attack": result,
                "images": rows,
                "true_labels": None if labels is None else _true(net, labels, len(x)),
                "description": result.describe().to_dict(lang),
                "lang": lang,
                "files": [*files, PAGE, ATTACK],
            }
        )
        write_json(staging / ATTACK, summary)
        (staging / PAGE).write_text(_attack_page(summary), encoding="utf-8")
        files.extend([PAGE, ATTACK])
    return AttackJobResult(Path(out), result, summary, tuple(files))


def _choice(name: str, value: Any, valid: Sequence[str]) -> str:
    if isinstance(value, str) and value.lower() in valid:
        return value.lower()
    hint = suggest(value, valid) if isinstance(value, str) else ""
    raise InvalidOptionError(f"unknown {name} {value!r}{hint} (valid: {', '.join(valid)})")


def _check_lang(lang: str) -> None:
    if lang not in LANGUAGES:
        raise InvalidOptionError(f"unknown language {lang!r} (valid: {', '.join(LANGUAGES)})")


def attack_options(
    method: str, norm: str, steps: int | None, step_size: float | None, restarts: int | None
) -> dict[str, Any]:
    """The keyword arguments of ``method`` (``"fgsm"`` or ``"pgd"``) among the PGD-only
    settings that were given (not ``None``).

    Raises
    ------
    InvalidOptionError
        FGSM (one L∞ step of size ε) with another norm, steps, a step size or restarts.
    """
    given = {"steps": steps, "step_size": step_size, "restarts": restarts}
    given = {k: v for k, v in given.items() if v is not None}
    if method == "pgd":
        return {"norm": norm, **given}
    if isinstance(norm, str) and norm.lower() != "linf":
        raise InvalidOptionError(
            f"FGSM is an L∞ attack (one step along the gradient's sign), not {norm!r}; "
            "use --attack pgd for the L2 ball"
        )
    if given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise InvalidOptionError(f"{flags}: PGD settings; FGSM takes one step of size ε")
    return {}


def _device(net: LoadedModel) -> torch.device:
    return next((p.device for p in net.module.parameters()), torch.device("cpu"))


def _label(net: LoadedModel, index: int) -> str:
    names = net.labels
    return names[index] if names and index < len(names) else f"class {index}"


def _true(net: LoadedModel, labels: Any, n: int) -> list[dict[str, Any]]:
    from ..core.targets import parse_target

    indices = parse_target(list(labels), n, net.labels).indices
    assert indices is not None
    return [{"class": c, "label": _label(net, c)} for c in indices.tolist()]


def _probabilities(net: LoadedModel, x: Tensor) -> Tensor:
    """Softmax of the model's logits ``(N, classes)``, float32 on the CPU."""
    with guarded(net.module, [x.device]):
        logits = forward_logits(net.module, lambda a, b: x[a:b], len(x), Budget(None, x.device))
    return logits.float().softmax(dim=1).cpu()


def _statistics(net: LoadedModel, x: Tensor) -> tuple[Tensor, Tensor]:
    """The preprocessing's per-channel mean and std, shaped to broadcast over ``x``."""
    pre = net.preprocess
    mean = torch.tensor(pre.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(pre.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return mean, std


def _eight_bit(net: LoadedModel, adversarial: Tensor) -> tuple[np.ndarray, Tensor]:
    """The adversarial inputs as 8-bit pixels ``(N, H, W, C)`` (what the PNG files hold)
    and those pixels preprocessed again: the model's input when a PNG is read back."""
    pixels = net.preprocess.invert(adversarial.detach())  # [0, 1], clamped
    levels = torch.round(pixels * 255)
    mean, std = _statistics(net, adversarial)
    reread = (levels / 255 - mean) / std
    as_bytes = levels.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return as_bytes, reread


def _norms(delta: Tensor) -> list[dict[str, float]]:
    flat = delta.detach().double().reshape(len(delta), -1)
    linf, l2 = flat.abs().amax(1).tolist(), flat.norm(dim=1).tolist()
    return [{"linf": a, "l2": b} for a, b in zip(linf, l2, strict=True)]


def _write_png(pixels: np.ndarray, path: Path) -> None:
    if pixels.shape[2] == 1:
        Image.fromarray(pixels[:, :, 0]).save(path)  # 2-D uint8: grayscale ("L")
    else:
        Image.fromarray(pixels).save(path)


def _write_attack(
    net: LoadedModel,
    images: Sequence[LoadedImage],
    x: Tensor,
    result: AttackResult,
    staging: Path,
    figures: int,
    progress: JobProgress | None,
) -> tuple[list[str], list[dict[str, Any]]]:
    """The PNG files, the tensors and the figures; one JSON row per image."""
    adv = result.adversarial
    clean_p, adv_p = _probabilities(net, x), _probabilities(net, adv)
    as_bytes, reread = _eight_bit(net, adv)
    png_p = _probabilities(net, reread)
    _, std = _statistics(net, x)
    pixel_norms, input_norms = _norms((adv - x) * std), _norms(adv - x)
    stems = file_stems([im.name for im in images], "image")
    classes = result.classes.tolist()
    shown = min(figures, len(images))
    files: list[str] = []
    rows: list[dict[str, Any]] = []
    for i, image in enumerate(images):
        png = f"adversarial-{i:03d}-{stems[i]}.png"
        _write_png(as_bytes[i], staging / png)
        files.append(png)
        png_class = int(png_p[i].argmax())
        fooled = png_class == classes[i] if result.settings.targeted else png_class != classes[i]
        rows.append(
            {
                "name": image.name,
                "source": image.source,
                "clean": _prediction(net, clean_p[i]),
                "adversarial": _prediction(net, adv_p[i]),
                "attacked_class": {"class": classes[i], "label": _label(net, classes[i])},
                "success": bool(result.success[i]),
                "margin": result.margin[i],
                "restart": int(result.restart[i]),
                "perturbation_pixels": pixel_norms[i],
                "perturbation_input": input_norms[i],
                "png": {"file": png, **_prediction(net, png_p[i]), "success": fooled},
                "figure": f"attack-{i:03d}-{stems[i]}.png" if i < shown else None,
            }
        )
    save_file(
        {"inputs": x.detach().cpu().contiguous(), "adversarial": adv.detach().cpu().contiguous()},
        str(staging / TENSORS),
    )
    files.append(TENSORS)
    for i in range(shown):
        captions = [(_caption("clean", rows[i]["clean"]), _caption("adv.", rows[i]["adversarial"]))]
        figure = plot_adversarial(
            x[i : i + 1], adv[i : i + 1], net.preprocess, captions=captions, names=[images[i].name]
        )
        save_figure(figure, staging / rows[i]["figure"])
        files.append(rows[i]["figure"])
        if progress:
            progress("figures", i + 1, shown)
    return files, rows


def _prediction(net: LoadedModel, probabilities: Tensor) -> dict[str, Any]:
    index = int(probabilities.argmax())
    return {
        "class": index,
        "label": _label(net, index),
        "probability": probabilities[index],
    }


def _caption(kind: str, prediction: dict[str, Any]) -> str:
    return f"{kind}: {prediction['label']} ({float(prediction['probability']):.2f})"


def _attack_page(data: dict[str, Any]) -> str:
    """``index.html`` of an attack: settings, the sentences, one row per image, figures."""
    s = data["attack"]["settings"]
    method = s["method"].upper()
    kind = "targeted" if s["targeted"] else "untargeted"
    settings: dict[str, object] = {
        "model": data["model"],
        "images": len(data["images"]),
        "attack": f"{method}, {'L∞' if s['norm'] == 'linf' else 'L2'} ball, {kind}",
        "ε": f"{number(s['eps'], 6)} ({_space(s['eps_space'])})",
        "steps": s["steps"],
        "step size": f"{number(s['step_size'], 6)} ({_space(s['eps_space'])})",
        "random start": "yes" if s["random_start"] else "no",
        "restarts": s["restarts"],
        "valid range (input units)": _range(s["valid_low"], s["valid_high"]),
        "seeds": f"{s['seeds'][0]} to {s['seeds'][1]} (one per image)",
        "success rate": f"{100 * data['attack']['success_rate']:.1f}%",
    }
    rows = [
        [
            r["name"],
            _shown(r["clean"]),
            r["attacked_class"]["label"],
            _shown(r["adversarial"]),
            "yes" if r["success"] else "no",
            number(r["margin"]),
            number(r["perturbation_pixels"]["linf"], 5),
            number(r["perturbation_pixels"]["l2"], 4),
            "yes" if r["png"]["success"] else "no",
        ]
        for r in data["images"]
    ]
    per_image = PageTable(
        "images",
        "Per image",
        [
            "image",
            "clean prediction",
            "attacked class",
            "adversarial prediction",
            "success",
            "margin",
            "L∞ (pixels)",
            "L2 (pixels)",
            "PNG still succeeds",
        ],
        rows,
        note="Margin: the attacked class's logit minus the best other class's, on the "
        "adversarial image (untargeted: negative when fooled; targeted: positive when the "
        "target class was reached). Perturbation sizes are in pixel units of [0, 1]. The PNG "
        "files hold 8-bit pixels at the model's input size: rounding can undo part of a "
        "small perturbation, so the last column says whether the rounded image, normalised, "
        "still succeeds. Loading a PNG through the model's preprocessing crops and resizes it "
        "again, which changes the pixels the attack chose: give the model its pixels as they "
        f"are. {TENSORS} holds the exact adversarial inputs.",
        numeric=(5, 6, 7),
    )
    pictures = [
        PageFigure(
            r["figure"],
            f"{r['name']}: the clean image, the adversarial image and the perturbation "
            "between them, amplified",
        )
        for r in data["images"]
        if r["figure"] is not None
    ]
    return render_job_page(
        f"seethrough robust attack: {data['model']}",
        settings,
        ATTACK,
        tables=[words_table(data["description"]["findings"]), per_image],
        figures=pictures,
        intro="An adversarial attack looks for a small change of each image, inside a ball of "
        "radius ε around it and inside the range of valid pixels, that changes the model's "
        "decision (FGSM: Goodfellow et al., 2015; PGD: Madry et al., 2018).",
    )


def _space(space: str) -> str:
    return "pixel units of [0, 1]" if space == "pixels" else "input units"


def _range(low: Any, high: Any) -> str:
    if low is None or high is None:
        return "not clipped"
    ranges = [f"[{number(a, 4)}, {number(b, 4)}]" for a, b in zip(low, high, strict=True)]
    if len(set(ranges)) == 1 and len(ranges) > 1:
        return f"{ranges[0]} (every channel)"
    return ", ".join(ranges)


def _shown(prediction: dict[str, Any]) -> str:
    return f"{prediction['label']} ({prediction['probability']:.2f})"


# --------------------------------------------------------------------------- evaluate


def evaluation_data(net: LoadedModel, data: str, limit: int | None = None) -> LabelledData:
    """The first ``limit`` images of ``data`` with their true classes, on the model's device.

    ``data``: ``"fashion-mnist"`` or ``"fashion-mnist:test"`` (the test split),
    ``"fashion-mnist:train"``, as the Fashion-MNIST CNN takes them (the model's
    preprocessing must be that CNN's); or a folder with one subfolder of images per class
    (:func:`~seethrough.jobs.anatomy.labelled_folder`).

    Raises
    ------
    InvalidOptionError
        Neither form; a Fashion-MNIST split for a model with another preprocessing.
    """
    name, _, split = data.partition(":")
    if name == FASHION:
        split = split or "test"
        if split not in ("test", "train"):
            raise InvalidOptionError(
                f"--data {data!r}: unknown split {split!r} (valid: {FASHION}:test, {FASHION}:train)"
            )
        if net.preprocess != FASHION_CNN_PREPROCESS:
            raise InvalidOptionError(
                f"--data {data!r} holds 28×28 grayscale images normalised for the Fashion-MNIST "
                f"CNN, but {net.name} takes {net.preprocess.describe()}; give --data a folder of "
                "class subfolders for this model"
            )
        from ..data.fashion_mnist import load_fashion_mnist

        found = load_fashion_mnist(split)
        inputs, labels, source = found.inputs(0, limit), found.labels[:limit], f"{FASHION}:{split}"
    elif Path(data).is_dir():
        folder = labelled_folder(net, data)
        inputs, labels, source = folder.inputs[:limit], folder.labels[:limit], folder.source
    else:
        raise InvalidOptionError(
            f"--data {data!r}: not '{FASHION}[:test|train]' and not a folder of class subfolders"
        )
    return LabelledData(inputs.to(_device(net)), labels, source)


def run_evaluate(
    net: LoadedModel,
    data: LabelledData,
    out: str | os.PathLike[str],
    *,
    eps: Sequence[float] = (0.05, 0.1, 0.2),
    eps_space: str = "pixels",
    norm: str = "linf",
    steps: int = 20,
    restarts: int = 1,
    transfer_from: LoadedModel | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    lang: str = "en",
    force: bool = False,
    progress: JobProgress | None = None,
) -> EvaluateJobResult:
    """Run :func:`~seethrough.robust.evaluate` on ``data`` and write ``evaluate.json``,
    the accuracy-vs-ε figure and ``index.html`` into ``out`` (held by this run, written
    whole or not at all).

    ``eps``, ``eps_space``, ``norm``, ``steps``, ``restarts``, ``transfer_from``, ``seed``,
    ``batch_size``: as for :func:`~seethrough.robust.evaluate` (ε in pixel units by
    default; the other checks with their defaults). ``lang``: of the sentences.
    """
    _check_lang(lang)
    n = len(data.labels)
    with OutputFolder(out, force, manifest=EVALUATE) as staging:
        batches = [
            (data.inputs[i : i + EVAL_BATCH], data.labels[i : i + EVAL_BATCH])
            for i in range(0, n, EVAL_BATCH)
        ]
        report = evaluate(
            net,
            batches,
            eps=list(eps),
            norm=norm,
            steps=steps,
            restarts=restarts,
            eps_space=eps_space,
            seed=seed,
            batch_size=batch_size,
            transfer_from=transfer_from,
            progress=(lambda d, _: progress("attacked images", d, n)) if progress else None,
        )
        save_figure(plot_robust_accuracy(report), staging / FIGURE)
        summary = to_jsonable(
            {
                "model": net.name,
                "data": data.source,
                "transfer_from": None if transfer_from is None else transfer_from.name,
                "report": report,
                "description": report.describe().to_dict(lang),
                "lang": lang,
                "files": [FIGURE, PAGE, EVALUATE],
            }
        )
        write_json(staging / EVALUATE, summary)
        (staging / PAGE).write_text(_evaluate_page(summary), encoding="utf-8")
    return EvaluateJobResult(Path(out), report, summary, (FIGURE, PAGE, EVALUATE))


_CHECK_NAMES = {
    "more_steps": "more steps",
    "larger_eps": "larger ε",
    "transfer": "transfer attack",
    "large_eps": "large ε",
}


def _evaluate_page(data: dict[str, Any]) -> str:
    """``index.html`` of an evaluation: settings, sentences, accuracy per ε, the checks."""
    r = data["report"]
    s = r["settings"]
    space = _space(s["eps_space"])
    settings: dict[str, object] = {
        "model": data["model"],
        "data": data["data"],
        "images": r["n"],
        "clean accuracy": _interval(r["clean_accuracy"]),
        "attack": f"PGD-{s['steps']}, {'L∞' if s['norm'] == 'linf' else 'L2'} ball, ε in {space}",
        "step": f"{number(s['step_fraction'], 4)} · ε",
        "random starts": s["restarts"],
        "more-steps check": "not run" if s["check_steps"] is None else f"{s['check_steps']} steps",
        "large-ε check": "not run" if s["large_eps"] is None else number(s["large_eps"], 4),
        "transfer check": data["transfer_from"] or "not run",
        "seed": f"{s['seed']} (image i: seed + i)",
    }
    accuracy = PageTable(
        "accuracy",
        "Accuracy per ε",
        ["ε", "robust accuracy", "interval", "worst case", "interval"],
        [
            [
                number(e, 4),
                number(robust["estimate"]),
                _bounds(robust),
                number(worst["estimate"]),
                _bounds(worst),
            ]
            for e, robust, worst in zip(
                r["eps"], r["robust_accuracy"], r["worst_case_accuracy"], strict=True
            )
        ],
        note=f"ε in {space}. Robust accuracy: the share of images classified correctly both "
        "clean and under the attack (images misclassified clean are not attacked). Worst "
        "case: the share that survives every attack run at that ε (the more-steps and "
        f"transfer checks included). Intervals: {s['level']:.0%} percentile bootstrap over "
        "the images.",
        numeric=(0, 1, 3),
    )
    checks = PageTable(
        "checks",
        "Checks for gradient masking",
        ["check", "ε", "passed", "accuracy", "must not exceed", "gained", "lost", "p (Holm)"],
        [
            [
                _CHECK_NAMES.get(c["name"], c["name"]),
                number(c["eps"], 4),
                "yes" if c["passed"] else "NO",
                number(c["accuracy"]),
                number(c["bound"]),
                c["gained"],
                c["lost"],
                number(c["p_value"], 4),
            ]
            for c in r["checks"]
        ],
        note="A model that hides its gradients looks robust to a gradient attack without "
        "being robust (Athalye et al., 2018; Carlini et al., 2019). More steps, a larger ε "
        "or a transfer attack must not leave more images correct than the attack itself "
        "(exact one-sided McNemar test on the images the two disagree on — gained against "
        f"lost — Holm-corrected, level {s['alpha']:g}); at an ε that reaches every valid "
        f"input, accuracy must be at most {s['large_eps_accuracy']:.0%}.",
        numeric=(1, 3, 4, 5, 6, 7),
    )
    figure = PageFigure(
        FIGURE,
        "accuracy against ε: clean accuracy at ε = 0 and robust accuracy under PGD at each ε, "
        "with bootstrap intervals",
    )
    return render_job_page(
        f"seethrough robust evaluate: {data['model']}",
        settings,
        EVALUATE,
        tables=[words_table(data["description"]["findings"]), accuracy, checks],
        figures=[figure],
        intro="Clean and robust accuracy under PGD (Madry et al., 2018) at each ε, and "
        "checks that the attack was strong enough for the numbers to be trusted.",
    )


def _interval(value: dict[str, Any]) -> str:
    return f"{number(value['estimate'])} {_bounds(value)}"


def _bounds(value: dict[str, Any]) -> str:
    return f"[{number(value['low'])}, {number(value['high'])}]"


# --------------------------------------------------------------------------- compare


def known_training_eps(net: LoadedModel) -> float | None:
    """The L∞ ε (pixel units) a built-in Fashion-MNIST CNN was adversarially trained at:
    0 for the plainly trained ``fashion-cnn``, the PGD ε of ``fashion-cnn-pgd-*`` and
    ``fashion-cnn-robust``; ``None`` for every other model (the gradient-regularised one
    included: it was not trained against a ball)."""
    if net.name not in FASHION_CNN_VARIANTS or net.source != net.name:
        return None  # not built in, or built-in architecture with the user's weights
    weights = FASHION_CNN_VARIANTS[net.name]
    if weights == "true_labels":
        return 0.0
    kind, _, value = weights.partition("_")
    return float(value) if kind == "pgd" else None


def run_compare(
    nets: Sequence[LoadedModel],
    data: LabelledData,
    out: str | os.PathLike[str],
    *,
    names: Sequence[str] | None = None,
    methods: Sequence[str] = ("gradient", "integrated_gradients", "smoothgrad", "grad_cam"),
    judge: LoadedModel | None = None,
    fragility_eps: float | None = None,
    fragility_method: str = "gradient",
    eps_space: str = "pixels",
    training_eps: Mapping[str, float] | None = None,
    sanity: bool = True,
    sanity_images: int | None = None,
    faithfulness: bool = True,
    max_sensitivity: bool = True,
    activation_maximization: bool = True,
    resamples: int = 2000,
    seed: int = 0,
    batch_size: int | None = None,
    lang: str = "en",
    force: bool = False,
    progress: JobProgress | None = None,
) -> CompareJobResult:
    """Run :func:`~seethrough.robust.compare` of ``nets`` on ``data`` (and, with
    ``fragility_eps``, :func:`~seethrough.robust.fragility` of each model) and write the
    results into ``out`` (held by this run, written whole or not at all).

    Parameters
    ----------
    nets : sequence of LoadedModel
        Two or more models with the same preprocessing (``compare`` checks it).
    data : LabelledData
        Their inputs and true classes (e.g. :func:`evaluation_data`).
    out : path
    names, methods, judge, sanity, sanity_images, faithfulness, max_sensitivity,
    activation_maximization, resamples, seed, batch_size
        As for :func:`~seethrough.robust.compare` (``names``: the models' own by default).
    fragility_eps : float, optional
        Also run the explanation-fragility attack on each model at this ε.
    fragility_method, eps_space
        The map the fragility attack moves, and the units of ``fragility_eps``.
    training_eps : mapping of model name to float, optional
        Each model's training ε for the alignment figure; the built-in Fashion CNNs'
        (:func:`known_training_eps`) need not be given.
    lang : {"en", "zh"}
        Language of the sentences.
    force, progress
        Replace an earlier run's results; ``progress(step, done, planned)``.

    Returns
    -------
    CompareJobResult

    Raises
    ------
    InvalidOptionError, InvalidInputError
        An unknown language, and what ``compare`` and ``fragility`` refuse.
    """
    _check_lang(lang)
    labels = list(names) if names is not None else [net.name for net in nets]
    known = {n: known_training_eps(net) for n, net in zip(labels, nets, strict=False)}
    with OutputFolder(out, force, manifest=COMPARE) as staging:
        study = compare(
            list(nets),
            data.inputs,
            data.labels,
            methods=tuple(methods),
            names=labels,
            judge=judge,
            sanity=sanity,
            sanity_images=sanity_images,
            faithfulness=faithfulness,
            max_sensitivity=max_sensitivity,
            activation_maximization=activation_maximization,
            resamples=resamples,
            seed=seed,
            batch_size=batch_size,
            progress=_step(progress, "compare"),
        )
        fragile: dict[str, FragilityResult] = {}
        for name, net in zip(labels, nets, strict=True):
            if fragility_eps is None:
                break
            fragile[name] = fragility(
                net,
                data.inputs,
                method=fragility_method,
                eps=fragility_eps,
                eps_space=eps_space,
                labels=data.labels,
                seed=seed,
                batch_size=batch_size,
                progress=_step(progress, f"fragility: {name}"),
            )
        eps = {n: e for n, e in {**known, **(training_eps or {})}.items() if e is not None}
        files = _write_compare(nets[0], study, fragile, eps, staging)
        summary = to_jsonable(
            {
                "models": labels,
                "sources": [net.source for net in nets],
                "data": data.source,
                "images": len(data.labels),
                "judge": None if judge is None else judge.name,
                "training_eps": {n: eps.get(n) for n in labels},
                "comparison": study.to_dict(),
                "fragility": {n: _fragility_summary(r) for n, r in fragile.items()},
                "description": study.describe().to_dict(lang),
                "fragility_description": {
                    n: r.describe().to_dict(lang) for n, r in fragile.items()
                },
                "lang": lang,
                "files": [*files, PAGE, COMPARE],
            }
        )
        write_json(staging / COMPARE, summary)
        (staging / PAGE).write_text(_compare_page(summary), encoding="utf-8")
        files.extend([PAGE, COMPARE])
    return CompareJobResult(Path(out), study, fragile, summary, tuple(files))


def _step(progress: JobProgress | None, name: str) -> Callable[[int, Any], None] | None:
    """``progress(done, total)`` of a library call as the job's step ``name``."""
    if progress is None:
        return None
    report = progress
    return lambda done, total: report(name, done, total if total is not None else done)


_FRAGILITY_TENSORS = ("adversarial", "maps", "adversarial_maps")
"""Fragility fields written to :data:`FRAGILITY_TENSORS` (``<model>/<field>``), not the JSON."""


def _fragility_summary(result: FragilityResult) -> dict[str, Any]:
    """A fragility result for the JSON: every field but the images and maps (those are in
    :data:`FRAGILITY_TENSORS`), and how many images kept their label."""
    fields = {
        f.name: getattr(result, f.name)
        for f in dataclasses.fields(result)
        if f.name not in _FRAGILITY_TENSORS
    }
    return {**fields, "labels_kept": int(result.label_kept.sum())}


def _write_compare(
    net: LoadedModel,
    study: RobustnessComparison,
    fragile: Mapping[str, FragilityResult],
    eps: Mapping[str, float],
    staging: Path,
) -> list[str]:
    """The figures (maps per method, alignment, activation maximisation, fragility) and
    the fragility attack's images and maps; returns the files' names."""
    figures: list[tuple[str, Any]] = []
    stems = file_stems(study.method_names, "method")
    for method, stem in zip(study.method_names, stems, strict=True):
        shown = plot_comparison(study, method, transform=net.preprocess)
        figures.append((_maps_figure(stem), shown))
    figures.append((ALIGNMENT_FIGURE, plot_alignment(study, eps)))
    if any(m.am_images is not None for m in study.models):
        shown = plot_class_images(study, transform=net.preprocess, class_names=net.labels)
        figures.append((CLASS_IMAGES_FIGURE, shown))
    if fragile:
        figures.append((FRAGILITY_FIGURE, plot_fragility(fragile)))
    files = []
    for name, figure in figures:
        save_figure(figure, staging / name)
        files.append(name)
    if fragile:
        tensors = {
            f"{model}/{field}": getattr(result, field).detach().cpu().contiguous()
            for model, result in fragile.items()
            for field in _FRAGILITY_TENSORS
        }
        save_file(tensors, str(staging / FRAGILITY_TENSORS))
        files.append(FRAGILITY_TENSORS)
    return files


def _maps_figure(stem: str) -> str:
    return f"maps-{stem}.png"


def _estimate(value: dict[str, Any] | None) -> str:
    """An :class:`~seethrough.robust.Estimate` of the JSON as ``value [low, high]``."""
    if value is None:
        return "–"
    return f"{number(value['value'])} [{number(value['low'])}, {number(value['high'])}]"


_METHOD_COLUMNS = {
    "edge_ssim": "edge SSIM",
    "edge_spearman": "edge Spearman",
    "deletion": "deletion AUC ↓",
    "insertion": "insertion AUC ↑",
    "max_sensitivity": "max-sensitivity ↓",
    "sanity_final": "sanity ρ after the cascade ↓",
}


def _compare_page(data: dict[str, Any]) -> str:
    """``index.html`` of a comparison: settings, sentences, a row per model, a row per
    model × method, the fragility attack's numbers, the figures."""
    c = data["comparison"]
    s = c["settings"]
    settings: dict[str, object] = {
        "models": ", ".join(
            name if name == source else f"{name} ({source})"
            for name, source in zip(data["models"], data["sources"], strict=True)
        ),
        "data": f"{data['data']} ({data['images']} images, each explained for its true class)",
        "methods": ", ".join(c["method_names"]),
        "intervals": f"{s['level']:.0%} percentile bootstrap over the images "
        f"({s['resamples']} resamples, seed {s['seed']})",
        "alignment": "pixel units" if s["alignment_space"] == "pixels" else "input units",
        "sanity curves": "not run"
        if s["sanity_images"] is None
        else f"first {s['sanity_images']} images, cascading randomization by "
        f"{s['sanity_granularity']}",
        "deletion, insertion": f"{s['faithfulness_steps']} steps, baselines "
        f"{s['deletion_baseline']} / {s['insertion_baseline']}"
        if s["faithfulness"]
        else "not run",
        "max-sensitivity": "not run"
        if s["sensitivity_images"] is None
        else f"first {s['sensitivity_images']} images, box of half-width "
        f"{number(s['sensitivity_radius'], 4)} ({_space(_units(s))}), "
        f"{s['sensitivity_samples']} samples",
        "activation maximisation": f"{s['am_steps']} steps, {s['am_per_class']} per class, "
        f"transforms: {s['am_transforms']}"
        if s["activation_maximization"]
        else "not run",
        "judge": data["judge"] or "none",
    }
    tables = [words_table(data["description"]["findings"]), _models_table(data)]
    tables.append(_methods_table(c))
    if s["sanity_images"] is not None:
        tables.append(_sanity_table(c))
    if data["fragility"]:
        tables.append(_fragility_table(data["fragility"]))
        for i, (name, said) in enumerate(data["fragility_description"].items()):
            words = words_table(said["findings"])
            title = f"{name}: fragility in words"
            tables.append(dataclasses.replace(words, id=f"fragility-words-{i}", title=title))
    return render_job_page(
        "seethrough robust compare: " + ", ".join(data["models"]),
        settings,
        COMPARE,
        tables=tables,
        figures=_compare_figures(data),
        intro="Do adversarially trained models explain better? The same images, classes "
        "and explanation methods on every model: how well each image lines up with the "
        "gradient of its class margin (alignment, Etmann et al., 2019), how much the maps "
        "look like the image's edges, whether they pass the model-randomization sanity "
        "check (Adebayo et al., 2018), how faithful and how stable they are, and what the "
        "model's classes look like to it (activation maximisation).",
    )


def _units(settings: dict[str, Any]) -> str:
    return "pixels" if settings["preprocess"] is not None else "input"


def _models_table(data: dict[str, Any]) -> PageTable:
    c = data["comparison"]
    rows = []
    for m in c["models"]:
        eps = data["training_eps"].get(m["name"])
        recognised = m["recognised"]
        shown = (
            "–"
            if recognised is None
            else f"{m['recognised_count']}/{recognised['n']} {_estimate(recognised)}"
        )
        rows.append(
            [
                m["name"],
                "–" if eps is None else number(eps, 4),
                _estimate(m["clean_accuracy"]),
                _estimate(m["alignment"]),
                shown,
            ]
        )
    return PageTable(
        "models",
        "Per model",
        ["model", "training ε", "clean accuracy", "alignment (median)", "AM recognised"],
        rows,
        note="Alignment: |⟨x, ∇Ψ⟩| / (‖x‖ ‖∇Ψ‖) with Ψ the true class's logit minus the "
        "largest other logit (Etmann et al., 2019); higher: the gradient looks more like "
        "the image. Training ε: the L∞ radius (pixel units) the model was adversarially "
        "trained at (0: plain training; –: not known or not adversarially trained). AM "
        "recognised: how many of the model's activation-maximisation images the judge "
        "classifies as their class, with the exact (Clopper–Pearson) interval.",
        numeric=(1,),
    )


def _methods_table(c: dict[str, Any]) -> PageTable:
    rows = [
        [r["model"], r["method"], *(_estimate(r[k]) for k in _METHOD_COLUMNS)] for r in c["methods"]
    ]
    statistics = c["settings"]["statistics"]
    return PageTable(
        "methods",
        "Per model and method",
        ["model", "method", *_METHOD_COLUMNS.values()],
        rows,
        note="Edge SSIM and Spearman: similarity of the map to the image's Sobel edges "
        "(high is not a virtue: an edge detector scores 1). Deletion and insertion: area "
        "under the class probability as the most (least) important pixels are removed "
        "(Petsiuk et al., 2018). Max-sensitivity: the largest change of the map under "
        "small input noise (Yeh et al., 2019). Sanity: Spearman ρ of the absolute maps "
        "before and after randomizing every layer (lower: the map depends on the "
        "weights). Statistics: "
        + ", ".join(f"{_METHOD_COLUMNS[k]} {statistics[k]}" for k in _METHOD_COLUMNS)
        + "; – : not run.",
    )


def _sanity_table(c: dict[str, Any]) -> PageTable:
    rows = [
        [r["model"], r["method"], " → ".join(number(v, 2) for v in r["sanity_curve"])]
        for r in c["methods"]
        if r["sanity_curve"] is not None
    ]
    layers: list[str] = next((r["sanity_layers"] for r in c["methods"] if r["sanity_layers"]), [])
    return PageTable(
        "sanity",
        "Sanity curves",
        ["model", "method", "median Spearman ρ, step by step"],
        rows,
        note="Cascading model randomization (Adebayo et al., 2018): the median Spearman ρ "
        "of the absolute maps with the trained model's, first for a second run on the "
        "trained model, then after randomizing each block, logits first ("
        + " → ".join(layers)
        + "). A map that stays near 1 does not depend on what the model learnt.",
    )


def _fragility_table(fragile: dict[str, Any]) -> PageTable:
    first = next(iter(fragile.values()))["settings"]
    rows = [
        [
            name,
            number(r["median_intersection"]),
            number(r["median_random_intersection"]),
            number(r["median_spearman"]),
            number(r["median_random_spearman"]),
            number(r["p_value"], 4),
            f"{r['labels_kept']}/{r['n']}",
        ]
        for name, r in fragile.items()
    ]
    return PageTable(
        "fragility",
        "Explanation fragility",
        [
            "model",
            "top-k intersection (attack)",
            "(random ±ε)",
            "Spearman ρ (attack)",
            "(random ±ε)",
            "p",
            "label kept",
        ],
        rows,
        note=f"The top-k attack of Ghorbani et al. (2019) on the {first['method']} map: "
        f"{first['steps']} sign steps inside the L∞ ball of ε = {number(first['eps'], 4)} "
        f"({_space(first['eps_space'])}), keeping the prediction; k = {first['top_k']}. "
        "Medians over the images of the share of the clean map's top-k pixels still in "
        "the top k, and of the rank correlation of the two maps (lower: the map moved "
        "further); the same for one random ±ε sign perturbation. p: paired sign-flip test "
        "that the attack and the noise move the maps equally.",
        numeric=(1, 2, 3, 4, 5),
    )


def _compare_figures(data: dict[str, Any]) -> list[PageFigure]:
    methods = data["comparison"]["method_names"]
    figures = [
        PageFigure(
            _maps_figure(stem),
            f"{method}: the same images' maps side by side, one column per model, each "
            "map scaled to its own 99.5th percentile",
        )
        for method, stem in zip(methods, file_stems(methods, "method"), strict=True)
    ]
    if ALIGNMENT_FIGURE in data["files"]:
        figures.append(
            PageFigure(
                ALIGNMENT_FIGURE,
                "median alignment of each model with its bootstrap interval, against the "
                "ε the model was trained at; models without one shown apart",
            )
        )
    if CLASS_IMAGES_FIGURE in data["files"]:
        figures.append(
            PageFigure(
                CLASS_IMAGES_FIGURE,
                "each model's class-logit activation-maximisation image of every class",
            )
        )
    if FRAGILITY_FIGURE in data["files"]:
        figures.append(
            PageFigure(
                FRAGILITY_FIGURE,
                "per model, the top-k intersection and Spearman ρ of each image's map "
                "before and after the fragility attack, next to random ±ε noise",
            )
        )
    return figures
