"""The explain job: images → explanations → PNG figures, raw tensors, JSON and index.html."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save
from torch import Tensor

from ..attribution.base import Method, explain_all
from ..attribution.explanation import Explanation
from ..core.budget import Budget
from ..core.guard import guarded
from ..core.passes import forward_logits
from ..core.targets import TargetLike
from ..data.images import LoadedImage
from ..errors import InvalidInputError, InvalidOptionError
from ..models.zoo import LoadedModel
from ..report.html import ImageSection, render_index
from ..viz import plot, save_figure
from .output import OutputFolder

__all__ = ["ExplainResult", "method_notes", "method_summary", "run_explain"]

SUMMARY = "summary.json"
INDEX = "index.html"
TENSORS = "attributions.safetensors"
FIGURES = "figures"
"""The progress name of the figure-writing step."""

JobProgress = Callable[[str, int, int], None]
"""``progress(step_name, done, planned)``: a method's rows, or ``"figures"``' images."""


@dataclass(frozen=True)
class ExplainResult:
    """What an explain job wrote."""

    out: Path
    explanations: tuple[Explanation, ...]
    files: tuple[str, ...]


Prediction = tuple[int, str, float]
"""(class index, class name, probability)."""


def _top_predictions(net: LoadedModel, x: Tensor, k: int = 5) -> list[list[Prediction]]:
    """Top-k classes and probabilities of each image (empty if the output has no logits)."""
    try:
        with guarded(net.module, [x.device]):
            logits = forward_logits(net.module, lambda a, b: x[a:b], len(x), Budget(None, x.device))
    except InvalidInputError:
        return [[] for _ in range(len(x))]
    probs = logits.float().softmax(dim=1)
    top = probs.topk(min(k, probs.shape[1]), dim=1)
    names = net.labels
    return [
        [
            (c, names[c] if names and c < len(names) else f"class {c}", float(p))
            for p, c in zip(values.tolist(), classes.tolist(), strict=True)
        ]
        for values, classes in zip(top.values, top.indices, strict=True)
    ]


def method_notes(ex: Explanation, row: int) -> list[str]:
    """Plain-language facts about one row of an explanation (completeness, layer, rule)."""
    notes = []
    if hasattr(ex, "completeness_error"):
        rel = float(ex.relative_completeness_error[row])  # type: ignore[attr-defined]
        notes.append(
            f"{ex.method}: attributions add up to the score difference from the baseline within "
            f"{100 * rel:.2g}% (completeness, {int(ex.path_points[row])} path points)"  # type: ignore[attr-defined]
        )
    if hasattr(ex, "layer"):
        notes.append(
            f"{ex.method}: map from layer {ex.layer} "
            f"at {tuple(ex.attributions.shape[2:])}, upsampled for display"
        )
    if hasattr(ex, "rule_applications"):
        notes.append(
            f"{ex.method}: rewrote {ex.rule_applications} ReLU-like nonlinearities per pass"
        )
    return notes


def _file_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "image"


def _write_tensors(path: Path, x: Tensor, explanations: Sequence[Explanation]) -> None:
    # save() + write_bytes rather than save_file, which creates the file with mode 0600.
    tensors = {"inputs": x.detach().cpu().contiguous()}
    metadata = {}
    for ex in explanations:
        tensors[f"{ex.method}.attributions"] = ex.attributions.detach().cpu().contiguous()
        tensors[f"{ex.method}.targets"] = ex.targets.cpu().contiguous()
        tensors[f"{ex.method}.image_index"] = ex.image_index.cpu().contiguous()
        metadata[ex.method] = json.dumps(_jsonable(dict(ex.settings)))
    path.write_bytes(save(tensors, metadata=metadata))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _summary(
    images: Sequence[LoadedImage],
    predictions: list[Any],
    explanations: Sequence[Explanation],
    net: LoadedModel,
) -> dict[str, Any]:
    methods = []
    for ex in explanations:
        rows = []
        for r in range(len(ex)):
            row: dict[str, Any] = {
                "image": images[int(ex.image_index[r])].name,
                "target": int(ex.targets[r]),
                "target_name": ex.target_names()[r],
                "score": float(ex.scores[r]),
            }
            if hasattr(ex, "relative_completeness_error"):
                row["relative_completeness_error"] = float(ex.relative_completeness_error[r])
            rows.append(row)
        entry = {
            "method": ex.method,
            "settings": _jsonable(dict(ex.settings)),
            "seed": ex.seed,
            "seconds": round(ex.seconds, 3),
            "rows": rows,
        }
        for key in ("layer", "rule_applications"):
            if hasattr(ex, key):
                entry[key] = getattr(ex, key)
        methods.append(entry)
    return {
        "model": net.name,
        "preprocess": net.preprocess.describe(),
        "versions": dict(explanations[0].versions) if explanations else {},
        "images": [
            {
                "name": im.name,
                "source": im.source,
                "predictions": [{"index": i, "class": c, "probability": p} for i, c, p in pred],
            }
            for im, pred in zip(images, predictions, strict=True)
        ],
        "methods": methods,
    }


def run_explain(
    net: LoadedModel,
    images: Sequence[LoadedImage],
    methods: Sequence[Method],
    out: str | os.PathLike[str],
    *,
    target: TargetLike = None,
    seed: int = 0,
    batch_size: int | None = None,
    force: bool = False,
    progress: JobProgress | None = None,
) -> ExplainResult:
    """Explain ``images`` with each of ``methods`` and write the results into ``out``.

    Writes ``<image>.png`` (the input and one heatmap per method), ``attributions.safetensors``
    (the preprocessed inputs and each method's raw attributions, targets and image
    indices, keyed ``"inputs"`` and ``"<method>.attributions"`` etc.), ``summary.json``
    and ``index.html``. The folder is checked before any work and written only when
    everything succeeded (see :class:`OutputFolder`); with ``force`` the previous
    run's results in it are replaced.

    ``progress(name, done, total)`` is called with each method's name as it runs, then
    with ``"figures"`` as the figures are drawn.
    """
    if not images:
        raise InvalidOptionError("no images to explain")
    _check_methods(methods)
    folder = OutputFolder(out, force, manifest=SUMMARY)
    device = next((p.device for p in net.module.parameters()), torch.device("cpu"))
    x = net.preprocess(list(images), device=device)
    predictions = _top_predictions(net, x)
    done: dict[str, Explanation] = {}
    # methods that read the plain pass over the images share it (one call, fewer passes)
    sharing = [m for m in methods if type(m).clean_pass_needs is not Method.clean_pass_needs]
    if len(sharing) > 1:
        label = ", ".join(m.name for m in sharing)
        report = (lambda d, t: progress(label, d, t)) if progress else None
        shared = explain_all(
            sharing, net, x, target, seed=seed, batch_size=batch_size, progress=report
        )
        done.update({m.name: ex for m, ex in zip(sharing, shared, strict=True)})
    for method in methods:
        if method.name in done:
            continue
        report = (lambda d, t, name=method.name: progress(name, d, t)) if progress else None
        done[method.name] = method.explain(
            net, x, target, seed=seed, batch_size=batch_size, progress=report
        )
    explanations = [done[m.name] for m in methods]
    with folder as staging:
        try:
            files = _write_all(
                staging,
                net=net,
                images=images,
                x=x,
                predictions=predictions,
                methods=methods,
                explanations=explanations,
                seed=seed,
                progress=progress,
            )
        except OSError as error:
            raise InvalidOptionError(
                f"cannot write to output folder {folder.out}: {error.strerror or error}"
            ) from error
    return ExplainResult(Path(out), tuple(explanations), files)


def _check_methods(methods: Sequence[Method]) -> None:
    names = [m.name for m in methods]
    if not names:
        raise InvalidOptionError("no methods given; name at least one")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidOptionError(f"method {twice[0]!r} is given twice; give each method once")


def _write_all(
    staging: Path,
    *,
    net: LoadedModel,
    images: Sequence[LoadedImage],
    x: Tensor,
    predictions: list[list[Prediction]],
    methods: Sequence[Method],
    explanations: Sequence[Explanation],
    seed: int,
    progress: JobProgress | None,
) -> tuple[str, ...]:
    """Every output file, into ``staging``; returns their names."""
    first = explanations[0]
    stems = _unique([_file_stem(im.name) for im in images])
    sections = []
    for i, image in enumerate(images):
        rows = [r for r in range(len(first)) if int(first.image_index[r]) == i]
        figure_name = f"{stems[i]}.png"
        save_figure(plot(explanations, rows=rows), staging / figure_name)
        if progress is not None:
            progress(FIGURES, i + 1, len(images))
        sections.append(
            ImageSection(
                name=image.name,
                source=image.source,
                figure=figure_name,
                predictions=[(f"{name} ({c})", p) for c, name, p in predictions[i]],
                targets=[first.target_names()[r] for r in rows],
                notes=[n for ex in explanations for n in method_notes(ex, rows[0])],
            )
        )
    _write_tensors(staging / TENSORS, x, explanations)
    summary = _summary(images, predictions, explanations, net)
    summary["seed"] = seed
    summary["files"] = sorted([*(f"{s}.png" for s in stems), TENSORS, SUMMARY, INDEX])
    run_info = {
        "model": f"{net.name} ({net.source})" if net.source != net.name else net.name,
        "preprocessing": net.preprocess.describe(),
        "methods": ", ".join(ex.method for ex in explanations),
        "seed": seed,
        "versions": ", ".join(f"{k} {v}" for k, v in summary["versions"].items()),
    }
    method_info = [(m.name, method_summary(type(m))) for m in methods]
    page = render_index("seethrough explain", sections, run_info, method_info)
    (staging / INDEX).write_text(page, encoding="utf-8")
    (staging / SUMMARY).write_text(
        json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return tuple(summary["files"])


def method_summary(cls: type[Method]) -> str:
    """The first paragraph of a method's docstring, as one line."""
    paragraph = (cls.__doc__ or "").strip().split("\n\n")[0]
    return " ".join(paragraph.split())


def _unique(stems: list[str]) -> list[str]:
    """Distinct file stems, also on case-insensitive file systems: ``a``, ``a-2``, ..."""
    used: set[str] = set()
    result = []
    for stem in stems:
        candidate, count = stem, 1
        while candidate.lower() in used:
            count += 1
            candidate = f"{stem}-{count}"
        used.add(candidate.lower())
        result.append(candidate)
    return result
