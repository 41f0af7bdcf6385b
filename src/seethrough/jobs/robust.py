"""The robustness jobs, written whole or not at all
(:class:`~seethrough.reporting.output.OutputFolder`):

* :func:`run_attack` — FGSM or PGD on a set of images → the adversarial images as PNG
  files (pixels, through the model's preprocessing inverse), the exact adversarial inputs
  (``adversarial.safetensors``), a figure per image (clean, adversarial, the perturbation
  amplified), ``attack.json`` and ``index.html``;
* :func:`run_evaluate` — clean and robust accuracy per ε with the checks for gradient
  masking over a labelled dataset → ``evaluate.json``, the accuracy-vs-ε figure and
  ``index.html``.

The pages say what the results say in words (the results' ``describe()``, in English or
Chinese); every number on them is in the JSON summary.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
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
from ..models.zoo import FASHION_CNN_PREPROCESS, LoadedModel
from ..reporting.html import PAGE, PageFigure, PageTable, number, render_job_page, words_table
from ..reporting.output import OutputFolder, file_stems
from ..reporting.serialize import to_jsonable, write_json
from ..robust import AttackResult, RobustnessReport, evaluate, fgsm, pgd
from ..viz import plot_adversarial, plot_robust_accuracy, save_figure
from ..words import LANGUAGES
from .anatomy import LabelledData, labelled_folder

__all__ = [
    "ATTACK",
    "ATTACKS",
    "EVALUATE",
    "TENSORS",
    "AttackJobResult",
    "EvaluateJobResult",
    "attack_options",
    "evaluation_data",
    "run_attack",
    "run_evaluate",
]

ATTACK = "attack.json"
EVALUATE = "evaluate.json"
TENSORS = "adversarial.safetensors"
"""The exact clean and adversarial model inputs of an attack (``inputs``, ``adversarial``)."""
ATTACKS: tuple[str, ...] = ("fgsm", "pgd")
FIGURE = "robust-accuracy.png"
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
