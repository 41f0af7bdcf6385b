"""The explain job: images → explanations → PNG figures, raw tensors, JSON and index.html.

Fast methods run first and the report is published after each step, so the first
results are on disk within about a minute even when the slow methods take many more
(:func:`schedule`): the methods that share one plain pass over the images (gradient,
gradient × input, gradient CAMs) make the first step, the other methods that need one
or two passes per image (guided backpropagation, deconvnet) the second;
every slower method (integrated gradients, SmoothGrad, perturbation methods...) then runs
on its own, cheapest first. After each step the whole report — every image's figure with
the methods done so far (in the order asked for), ``attributions.safetensors``,
``summary.json`` and ``index.html`` — is written to the staging folder and moved into
place file by file, the index last, so the folder always holds a complete, valid report;
until the last step, ``summary.json`` lists the methods still to run (``"pending"``) and
the page says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save
from torch import Tensor

from ..attribution import Explanation, Method, explain
from ..attribution.run import NonFiniteMode
from ..core.budget import Budget
from ..core.guard import guarded
from ..core.passes import forward_logits
from ..core.targets import TargetLike
from ..data.images import LoadedImage
from ..errors import InvalidInputError, InvalidOptionError
from ..models.zoo import LoadedModel
from ..reporting.html import ImageSection, render_index
from ..reporting.output import OutputFolder, file_stems
from ..reporting.serialize import dumps, to_jsonable
from ..viz import plot, save_figure

__all__ = [
    "FAST_PASSES",
    "REFERENCES_LIMIT",
    "ExplainResult",
    "load_references",
    "method_notes",
    "method_summary",
    "run_explain",
    "schedule",
]

SUMMARY = "summary.json"
INDEX = "index.html"
TENSORS = "attributions.safetensors"
FIGURES = "figures"
"""The progress name of the figure-writing step."""
FAST_PASSES = 2
"""Methods with at most this many passes per image run together, in the first step."""

JobProgress = Callable[[str, int, int], None]
"""``progress(step_name, done, planned)``: a step's rows, or ``"figures"``' images."""


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
    if hasattr(ex, "relative_summation_error"):  # DeepLIFT, DeepSHAP
        rel = float(ex.relative_summation_error[row])
        count = len(ex.references)  # type: ignore[attr-defined]
        against = (
            f"the mean over {count} references" if ex.method == "deepshap" else "its reference"
        )
        notes.append(
            f"{ex.method}: attributions add up to the score difference from {against} "
            f"within {100 * rel:.2g}% (summation to delta)"
        )
    if hasattr(ex, "conservation"):  # LRP
        kept = float(ex.conservation[row])
        notes.append(
            f"{ex.method}: the input relevance adds up to {kept:.3g} × the score "
            f"(composite {ex.composite}; biases and stabilisers take the rest)"  # type: ignore[attr-defined]
        )
    if hasattr(ex, "layer"):
        size = tuple(ex.attributions.shape[2:])
        if size == tuple(ex.inputs.shape[2:]):
            notes.append(f"{ex.method}: uses layer {ex.layer}; map at the input's size {size}")
        else:
            notes.append(f"{ex.method}: map from layer {ex.layer} at {size}, upsampled for display")
    if hasattr(ex, "rule_applications"):
        notes.append(
            f"{ex.method}: rewrote {ex.rule_applications} ReLU-like nonlinearities per pass"
        )
    if ex.nonfinite_rows and row in ex.nonfinite_rows:
        notes.append(f"{ex.method}: this map or score is not finite (NaN or infinite)")
    return notes


def schedule(methods: Sequence[Method]) -> list[list[Method]]:
    """The steps of a run, fastest first.

    First the methods that read the plain pass over the images (gradient, gradient ×
    input, gradient CAMs: one pass for all of them), then the other fast methods (at
    most :data:`FAST_PASSES` passes per image) together, then each slower method alone,
    cheapest first (ties: the order given)."""
    cost = {m.name: m.planned_rows(1) for m in methods}
    fast = [m for m in methods if cost[m.name] <= FAST_PASSES]
    sharing = [m for m in fast if type(m).clean_pass_needs is not Method.clean_pass_needs]
    first = sharing if len(sharing) > 1 else []
    rest = [m for m in fast if m not in first]
    slow = sorted((m for m in methods if cost[m.name] > FAST_PASSES), key=lambda m: cost[m.name])
    return [step for step in (first, rest) if step] + [[m] for m in slow]


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
    nonfinite: NonFiniteMode = "raise",
    references: str | None = None,
) -> ExplainResult:
    """Explain ``images`` with each of ``methods`` and write the results into ``out``.

    Writes ``<image>.png`` (the input and one heatmap per method), ``attributions.safetensors``
    (the preprocessed inputs and each method's raw attributions, targets and image
    indices, keyed ``"inputs"`` and ``"<method>.attributions"`` etc.), ``summary.json``
    and ``index.html``. The folder is checked before any work and held by this run
    (see :class:`~seethrough.reporting.output.OutputFolder`); fast methods run first and the
    report is published after each step (module docstring). A failure before the first
    step is published leaves the folder as it was; with ``force`` the previous run's
    results are replaced when the first step is published.

    ``progress(name, done, total)`` is called with each step's method names as it runs,
    then with ``"figures"`` as the figures are drawn. ``nonfinite`` is
    :func:`~seethrough.attribution.explain`'s: ``"raise"`` stops before anything is
    published; ``"warn"`` marks the rows (``summary.json``: ``null`` scores with a
    ``"nonfinite"`` flag, ``nonfinite_rows`` per method). ``references``: what the
    reference images of DeepSHAP or expected gradients are, in words (from
    :func:`load_references`), for the page and ``summary.json``.
    """
    if not images:
        raise InvalidOptionError("no images to explain")
    _check_methods(methods)
    folder = OutputFolder(out, force, manifest=SUMMARY)
    with folder as staging:
        device = next((p.device for p in net.module.parameters()), torch.device("cpu"))
        x = net.preprocess(list(images), device=device)
        report = _Report(staging, net, images, x, _top_predictions(net, x), methods, seed)
        report.references = references
        finished: dict[str, Explanation] = {}
        files: tuple[str, ...] = ()
        for step in schedule(methods):
            label = ", ".join(m.name for m in step)
            tell = (lambda d, t, label=label: progress(label, d, t)) if progress else None
            try:
                found = explain(
                    net,
                    x,
                    list(step),
                    target,
                    seed=seed,
                    batch_size=batch_size,
                    progress=tell,
                    nonfinite=nonfinite,
                )
            except BaseException as error:  # also Ctrl-C: the published report says so
                if finished:
                    _mark_stopped(report, folder, finished, error)
                raise
            finished.update({m.name: ex for m, ex in zip(step, found, strict=True)})
            try:
                files = report.write(finished, progress)
                folder.publish(last=(TENSORS, SUMMARY, INDEX))
            except OSError as error:
                raise InvalidOptionError(
                    f"cannot write to output folder {folder.out}: {error.strerror or error}"
                ) from error
    return ExplainResult(Path(out), tuple(finished[m.name] for m in methods), files)


def _mark_stopped(
    report: _Report, folder: OutputFolder, finished: dict[str, Explanation], error: BaseException
) -> None:
    """Republish the report of the steps that finished, saying the rest will not come
    (it would otherwise list them as still running and reload forever)."""
    reason = "interrupted" if isinstance(error, KeyboardInterrupt) else type(error).__name__
    with contextlib.suppress(Exception):  # the error being raised matters more
        report.write(finished, None, stopped=reason)
        folder.publish(last=(TENSORS, SUMMARY, INDEX))


def _check_methods(methods: Sequence[Method]) -> None:
    names = [m.name for m in methods]
    if not names:
        raise InvalidOptionError("no methods given; name at least one")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidOptionError(f"method {twice[0]!r} is given twice; give each method once")


class _Report:
    """Writes the whole report for the methods done so far into the staging folder."""

    def __init__(
        self,
        staging: Path,
        net: LoadedModel,
        images: Sequence[LoadedImage],
        x: Tensor,
        predictions: list[list[Prediction]],
        methods: Sequence[Method],
        seed: int,
    ) -> None:
        self.staging, self.net, self.images, self.x = staging, net, images, x
        self.predictions, self.methods, self.seed = predictions, methods, seed
        self.stems = file_stems([im.name for im in images], "image")
        self.files = sorted([*(f"{s}.png" for s in self.stems), TENSORS, SUMMARY, INDEX])
        self.references: str | None = None

    def write(
        self,
        finished: dict[str, Explanation],
        progress: JobProgress | None,
        stopped: str | None = None,
    ) -> tuple[str, ...]:
        """Every file of the report, into the staging folder; returns their names.
        ``stopped``: why the run ended before the methods not in ``finished`` ran."""
        explanations = [finished[m.name] for m in self.methods if m.name in finished]
        pending = [m.name for m in self.methods if m.name not in finished]
        sections = self._figures(explanations, progress)
        _write_tensors(self.staging / TENSORS, self.x, explanations)
        summary = _summary(self.images, self.predictions, explanations, self.net)
        summary["seed"] = self.seed
        if self.references is not None:
            summary["references"] = self.references
        summary["pending"] = [] if stopped else pending
        summary["not_run"] = pending if stopped else []
        summary["files"] = self.files
        (self.staging / SUMMARY).write_text(dumps(summary, indent=2), encoding="utf-8")
        run_info = {
            "model": self.net.name
            if self.net.source == self.net.name
            else f"{self.net.name} ({self.net.source})",
            "preprocessing": self.net.preprocess.describe(),
            "methods": ", ".join(ex.method for ex in explanations),
            "seed": self.seed,
            **({"references": self.references} if self.references is not None else {}),
            "versions": ", ".join(f"{k} {v}" for k, v in summary["versions"].items()),
        }
        method_info = [
            (m.name, method_summary(type(m))) for m in self.methods if m.name in finished
        ]
        status = None
        if pending and stopped:
            status = (
                f"Incomplete report: the run stopped ({stopped}) at "
                f"{time.strftime('%H:%M:%S')} after {len(explanations)} of "
                f"{len(self.methods)} methods; not run: {', '.join(pending)}."
            )
        elif pending:
            status = (
                f"Partial report, written {time.strftime('%H:%M:%S')}: "
                f"{len(explanations)} of {len(self.methods)} methods. Still to run when it "
                f"was written: {', '.join(pending)}. This page reloads until the run ends."
            )
        page = render_index(
            "seethrough explain", sections, run_info, method_info, status, running=not stopped
        )
        (self.staging / INDEX).write_text(page, encoding="utf-8")
        return tuple(self.files)

    def _figures(
        self, explanations: Sequence[Explanation], progress: JobProgress | None
    ) -> list[ImageSection]:
        first = explanations[0]
        sections = []
        for i, image in enumerate(self.images):
            rows = [r for r in range(len(first)) if int(first.image_index[r]) == i]
            figure_name = f"{self.stems[i]}.png"
            save_figure(plot(explanations, rows=rows), self.staging / figure_name)
            if progress is not None:
                progress(FIGURES, i + 1, len(self.images))
            sections.append(
                ImageSection(
                    name=image.name,
                    source=image.source,
                    figure=figure_name,
                    predictions=[(f"{name} ({c})", p) for c, name, p in self.predictions[i]],
                    targets=[first.target_names()[r] for r in rows],
                    notes=[n for ex in explanations for n in method_notes(ex, rows[0])],
                )
            )
        return sections


def _write_tensors(path: Path, x: Tensor, explanations: Sequence[Explanation]) -> None:
    # save() + write_bytes rather than save_file, which creates the file with mode 0600.
    tensors = {"inputs": x.detach().cpu().contiguous()}
    metadata = {}
    for ex in explanations:
        tensors[f"{ex.method}.attributions"] = ex.attributions.detach().cpu().contiguous()
        tensors[f"{ex.method}.targets"] = ex.targets.cpu().contiguous()
        tensors[f"{ex.method}.image_index"] = ex.image_index.cpu().contiguous()
        settings = to_jsonable(dict(ex.settings))
        metadata[ex.method] = json.dumps(settings, ensure_ascii=False, allow_nan=False)
    path.write_bytes(save(tensors, metadata=metadata))


def _summary(
    images: Sequence[LoadedImage],
    predictions: list[list[Prediction]],
    explanations: Sequence[Explanation],
    net: LoadedModel,
) -> dict[str, Any]:
    methods = []
    for ex in explanations:
        rows = []
        names = ex.target_names()
        for r in range(len(ex)):
            row: dict[str, Any] = {
                "image": images[int(ex.image_index[r])].name,
                "target": int(ex.targets[r]),
                "target_name": names[r],
                "score": ex.scores[r],
            }
            for check in ("relative_completeness_error", "relative_summation_error"):
                if hasattr(ex, check):
                    row[check] = getattr(ex, check)[r]
            if hasattr(ex, "conservation"):  # LRP: Σ relevance / score
                row["conservation"] = ex.conservation[r]
            rows.append(row)
        entry: dict[str, Any] = {
            "method": ex.method,
            "settings": ex.settings,
            "seed": ex.seed,
            "seconds": ex.seconds,
            "rows": rows,
        }
        for key in ("layer", "rule_applications", "composite", "rules", "rewritten"):
            if hasattr(ex, key):
                entry[key] = getattr(ex, key)
        if ex.nonfinite_rows:
            entry["nonfinite_rows"] = ex.nonfinite_rows
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


def method_summary(cls: type[Method]) -> str:
    """The first paragraph of a method's docstring, as one line."""
    paragraph = (cls.__doc__ or "").strip().split("\n\n")[0]
    return " ".join(paragraph.split())


REFERENCES_LIMIT = 100
"""Images taken from a Fashion-MNIST split as references (SHAP suggests about 100)."""
_FASHION = "fashion-mnist"


def load_references(
    net: LoadedModel, source: str | None = None, limit: int = REFERENCES_LIMIT
) -> tuple[Tensor, str]:
    """The reference batch ``(K, C, H, W)`` of DeepSHAP (or expected gradients) as the
    model takes it, on its device, and what it is in words.

    ``source``: ``None`` — every bundled sample photo (:data:`~seethrough.data.SAMPLES`)
    through the model's preprocessing, a fixed set that does not depend on the images
    explained; ``"fashion-mnist"`` or ``"fashion-mnist:train"`` / ``":test"`` — the first
    ``limit`` images of that split (the Fashion-MNIST CNN's preprocessing only); else an
    image file or a folder (searched recursively) — all its images.

    Raises
    ------
    InvalidOptionError
        A Fashion-MNIST split for a model with another preprocessing, an unknown split.
    ImageError
        No image at ``source``, or one that cannot be read.
    """
    from ..data import SAMPLES, load_images

    device = next((p.device for p in net.module.parameters()), torch.device("cpu"))
    name, _, split = (source or "").partition(":")
    if source is None:
        images = load_images([f"sample:{s}" for s in SAMPLES])
        said = f"the {len(images)} bundled sample photos"
    elif name == _FASHION:
        return _fashion_references(net, source, split or "train", limit, device)
    else:
        images = load_images(source, recursive=True)  # none there: ImageError
        said = f"{len(images)} images from {source}"
    return net.preprocess(images, device=device), said


def _fashion_references(
    net: LoadedModel, source: str, split: str, limit: int, device: torch.device
) -> tuple[Tensor, str]:
    from ..data.fashion_mnist import load_fashion_mnist
    from ..models.zoo import FASHION_CNN_PREPROCESS

    if split not in ("train", "test"):
        raise InvalidOptionError(
            f"--references {source!r}: unknown split {split!r} (valid: {_FASHION}:train, "
            f"{_FASHION}:test)"
        )
    if net.preprocess != FASHION_CNN_PREPROCESS:
        raise InvalidOptionError(
            f"--references {source!r} holds 28×28 grayscale images normalised for the "
            f"Fashion-MNIST CNN, but {net.name} takes {net.preprocess.describe()}; give a "
            "folder of images instead"
        )
    found = load_fashion_mnist(split)
    inputs = found.inputs(0, limit).to(device)
    return inputs, f"the first {len(inputs)} images of {_FASHION}:{split}"
