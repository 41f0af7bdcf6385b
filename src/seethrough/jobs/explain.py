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
from safetensors.torch import save_file
from torch import Tensor

from ..attribution.base import Method
from ..attribution.explanation import Explanation
from ..core.budget import Budget
from ..core.guard import guarded
from ..core.passes import forward_logits
from ..core.targets import TargetLike
from ..data.images import LoadedImage
from ..errors import InvalidInputError
from ..models.zoo import LoadedModel
from ..report.html import ImageSection, render_index
from ..viz import plot, save_figure
from .output import OutputFolder

__all__ = ["ExplainResult", "method_notes", "run_explain"]

JobProgress = Callable[[str, int, int], None]
"""``progress(method_name, rows_done, rows_planned)``."""


@dataclass(frozen=True)
class ExplainResult:
    """What an explain job wrote."""

    out: Path
    explanations: tuple[Explanation, ...]
    files: tuple[str, ...]


def _top_predictions(net: LoadedModel, x: Tensor, k: int = 5) -> list[list[tuple[str, float]]]:
    """Top-k class names and probabilities of each image (empty if the output has no logits)."""
    try:
        with guarded(net.module, [x.device]):
            logits = forward_logits(net.module, lambda a, b: x[a:b], len(x), Budget(None, x.device))
    except InvalidInputError:
        return [[] for _ in range(len(x))]
    probs = logits.float().softmax(dim=1)
    top = probs.topk(min(k, probs.shape[1]), dim=1)
    names = net.labels
    return [
        [(names[c] if names and c < len(names) else f"class {c}", float(p))
         for p, c in zip(values.tolist(), classes.tolist())]
        for values, classes in zip(top.values, top.indices)
    ]


def method_notes(ex: Explanation, row: int) -> list[str]:
    """Plain-language facts about one row of an explanation (completeness, layer, rule)."""
    notes = []
    if hasattr(ex, "completeness_error"):
        rel = float(ex.relative_completeness_error[row])  # type: ignore[attr-defined]
        notes.append(
            f"{ex.method}: attributions add up to the score difference from the baseline within "
            f"{100 * rel:.2g}% (completeness, {ex.settings['steps']} steps)"
        )
    if hasattr(ex, "layer"):
        notes.append(f"{ex.method}: map from layer {ex.layer} "  # type: ignore[attr-defined]
                     f"at {tuple(ex.attributions.shape[2:])}, upsampled for display")
    if hasattr(ex, "rule_applications"):
        notes.append(f"{ex.method}: rewrote {ex.rule_applications} ReLU-like "  # type: ignore[attr-defined]
                     "nonlinearities per pass")
    return notes


def _file_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "image"


def _write_tensors(path: Path, x: Tensor, explanations: Sequence[Explanation]) -> None:
    tensors = {"inputs": x.detach().cpu().contiguous()}
    metadata = {}
    for ex in explanations:
        tensors[f"{ex.method}.attributions"] = ex.attributions.detach().cpu().contiguous()
        tensors[f"{ex.method}.targets"] = ex.targets.cpu().contiguous()
        tensors[f"{ex.method}.image_index"] = ex.image_index.cpu().contiguous()
        metadata[ex.method] = json.dumps(_jsonable(dict(ex.settings)))
    save_file(tensors, str(path), metadata=metadata)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _summary(images: Sequence[LoadedImage], predictions: list[Any],
             explanations: Sequence[Explanation], net: LoadedModel) -> dict[str, Any]:
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
        entry = {"method": ex.method, "settings": _jsonable(dict(ex.settings)),
                 "seed": ex.seed, "seconds": round(ex.seconds, 3), "rows": rows}
        for key in ("layer", "rule_applications"):
            if hasattr(ex, key):
                entry[key] = getattr(ex, key)
        methods.append(entry)
    return {
        "model": net.name,
        "preprocess": net.preprocess.describe(),
        "versions": dict(explanations[0].versions) if explanations else {},
        "images": [{"name": im.name, "source": im.source,
                    "predictions": [{"class": c, "probability": p} for c, p in pred]}
                   for im, pred in zip(images, predictions)],
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

    Writes ``<image>.png`` (input and one overlay per method), ``attributions.safetensors``
    (raw attributions per method), ``summary.json`` and ``index.html``. The folder is
    checked before any work and written only when everything succeeded.
    """
    folder = OutputFolder(out, force)
    device = next((p.device for p in net.module.parameters()), torch.device("cpu"))
    x = net.preprocess(list(images), device=device)
    predictions = _top_predictions(net, x)
    explanations = []
    for method in methods:
        report = (lambda d, t, name=method.name: progress(name, d, t)) if progress else None
        explanations.append(method.explain(net, x, target, seed=seed, batch_size=batch_size,
                                           progress=report))
    stems = _unique([_file_stem(im.name) for im in images])
    sections = []
    with folder as staging:
        for i, image in enumerate(images):
            rows = [r for r in range(len(explanations[0])) if int(explanations[0].image_index[r]) == i]
            figure_name = f"{stems[i]}.png"
            save_figure(plot(explanations, rows=rows), staging / figure_name)
            notes = [n for ex in explanations for n in method_notes(ex, rows[0])]
            sections.append(ImageSection(
                name=image.name, source=image.source, figure=figure_name,
                predictions=predictions[i],
                targets=[explanations[0].target_names()[r] for r in rows], notes=notes,
            ))
        _write_tensors(staging / "attributions.safetensors", x, explanations)
        summary = _summary(images, predictions, explanations, net)
        (staging / "summary.json").write_text(json.dumps(summary, indent=2))
        run_info = {
            "model": net.name, "preprocessing": net.preprocess.describe(),
            "methods": ", ".join(m.name for m in methods), "seed": seed,
            "versions": ", ".join(f"{k} {v}" for k, v in summary["versions"].items()),
        }
        method_info = [(m.name, (type(m).__doc__ or "").strip().splitlines()[0]) for m in methods]
        page = render_index("seethrough explain", sections, run_info, method_info)
        (staging / "index.html").write_text(page, encoding="utf-8")
        files = tuple(sorted(p.name for p in staging.iterdir()))
    return ExplainResult(Path(out), tuple(explanations), files)


def _unique(stems: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    result = []
    for stem in stems:
        seen[stem] = seen.get(stem, 0) + 1
        result.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return result
