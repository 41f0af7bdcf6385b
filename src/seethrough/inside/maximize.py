"""Activation maximization: images that excite a unit, a channel, a class or a direction.

Gradient ascent on a parametrized image (Erhan et al. 2009; Olah et al. 2017, "Feature
Visualization", Distill — the method and choices of Lucid/Lucent): each step renders the
images from their parametrization (:mod:`~seethrough.inside.param`), transforms them at
random (:mod:`~seethrough.inside.transforms`), normalises them as the model expects, runs
the model once for the whole batch and moves the parametrization with Adam along the
gradient of the objectives (:mod:`~seethrough.inside.objectives`).

*Batching.* A list of K objectives (``channels(layer, range(C))``) is optimised as K images
in one batch: one forward and one backward pass per step, whatever K. Row ``i`` draws all its
random numbers (initialisation and transforms) from a generator seeded with ``seed + i``, its
loss is its own score (the batch loss is the sum), and Adam updates every element
independently — so a batch of K equals K separate runs with seeds ``seed + i``: bitwise on
the CPU through convolutions (measured on the tiny float64 model and the float32
Fashion-MNIST CNN); through a linear layer BLAS may round a batch (gemm) and one image (gemv)
one ulp apart, so class-logit objectives agree to 1e-12 in float64. The only exception is
:func:`~seethrough.inside.objectives.diversity`, which couples the images on purpose; such
calls run as one batch.

*The model is untouched* (DESIGN.md rule 1): every call runs inside
:func:`~seethrough.core.guarded` with one :class:`~seethrough.core.HookSet` holding exactly
one capture per layer the objectives read, removed when the call ends or raises. The forward
pass stops after the last layer needed unless an objective reads the class scores.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.budget import Budget
from ..errors import InvalidOptionError
from ._engine import (
    CapturedForward,
    adam_descent,
    check_batch_size,
    check_count,
    check_positive,
    check_seed,
    freeze,
    generators,
    guarded_forward,
    model_dtype,
    progress_counter,
    resolve_device,
    run_record,
    unwrap,
)
from .objectives import Objective, as_objective, compile_objectives, gram_matrices
from .param import PARAMETRIZATIONS, Normalization, make_param, resolve_normalization
from .transforms import Pipeline, make_pipeline

__all__ = ["StabilityResult", "Visualization", "evaluate", "maximize", "stability"]

Progress = Callable[[int, int], None]


@dataclass(frozen=True, eq=False, kw_only=True)
class Visualization:
    """Images optimised to maximise objectives, with how the objectives rose.

    Attributes
    ----------
    images : Tensor
        ``(K, C, H, W)`` on the CPU, values in [0, 1] (before the model's normalisation).
    objectives : tuple of str
        Each row's objective, by name.
    traces : Tensor
        ``(steps, K)``: each row's objective at each step, before that step's update, on the
        transformed image the optimiser saw.
    initial_values, values : Tensor
        ``(K,)``: the objective on the initial and on the final image, framed as the
        optimiser saw them (the transforms' padding) but without the random moves —
        deterministic, and comparable across runs and libraries (:func:`evaluate`).
    seeds : tuple of int
        Row ``i`` drew its random numbers from ``seeds[i]``.
    settings : Mapping[str, Any]
        The options used.
    seed : int
        The call's ``seed`` (``seeds[0]`` for :func:`maximize`).
    seconds : float
        Wall-clock time of the call.
    versions : Mapping[str, str]
        seethrough and torch versions.
    """

    images: Tensor
    objectives: tuple[str, ...]
    traces: Tensor
    initial_values: Tensor
    values: Tensor
    seeds: tuple[int, ...]
    settings: Mapping[str, Any]
    seed: int
    seconds: float
    versions: Mapping[str, str]


@dataclass(frozen=True, eq=False, kw_only=True)
class StabilityResult:
    """The same objective optimised from several seeds, and how different the solutions are.

    All distances are means over the pairs of solutions (the final images, framed as in
    ``Visualization.values``);
    0 means identical solutions, larger means more different (``higher_is_better`` does not
    apply: a feature with one preferred stimulus gives small distances, an under-constrained
    objective large ones).

    Attributes
    ----------
    visualization : Visualization
        The solutions, row ``i`` from ``seeds[i]``.
    seeds : tuple of int
    layer : str or None
        Where activations were compared (``None``: the model's class scores).
    activation_distance : float
        Mean over pairs of ``1 − cos`` between the solutions' flattened activations at
        ``layer`` — sensitive to *where* a pattern appears.
    gram_distance : float or None
        Mean over pairs of ``1 − cos`` between their channel Gram matrices (the similarity
        that :func:`~seethrough.inside.objectives.diversity` penalises) — blind to position,
        so shifted copies of one pattern count as the same solution. ``None`` for
        non-spatial layers.
    pixel_distance : float
        Mean over pairs of the root-mean-square pixel difference, in [0, 1] pixel units.
    pairwise_activation, pairwise_gram, pairwise_pixel : Tensor or None
        The ``(S, S)`` matrices behind the means.
    value_spread : float
        Standard deviation of the final objective values over the seeds divided by the
        absolute mean: whether the seeds reach the same height.
    """

    visualization: Visualization
    seeds: tuple[int, ...]
    layer: str | None
    activation_distance: float
    gram_distance: float | None
    pixel_distance: float
    pairwise_activation: Tensor
    pairwise_gram: Tensor | None
    pairwise_pixel: Tensor
    value_spread: float


# --------------------------------------------------------------------------- setup


@dataclass(frozen=True)
class _Setup:
    module: nn.Module
    objectives: tuple[Objective, ...]
    normalization: Normalization
    pipeline: Pipeline
    param: str
    size: tuple[int, int]
    channels: int
    input_size: tuple[int, int] | None
    steps: int
    lr: float
    sd: float
    decorrelate: bool
    device: torch.device
    dtype: torch.dtype
    batch_size: int | None
    settings: Mapping[str, Any]

    @property
    def layers(self) -> list[str]:
        found: dict[str, None] = {}
        for objective in self.objectives:
            for _, term in objective.terms:
                if term.layer is not None:
                    found[term.layer] = None
        return list(found)

    @property
    def needs_output(self) -> bool:
        return any(o.needs_output for o in self.objectives)

    @property
    def couples_rows(self) -> bool:
        return any(o.couples_rows for o in self.objectives)

    def model_input(self, images: Tensor) -> Tensor:
        """Images in [0, 1] → the model's input (resized if asked, normalised)."""
        if self.input_size is not None and tuple(images.shape[-2:]) != self.input_size:
            images = F.interpolate(
                images, size=self.input_size, mode="bilinear", align_corners=False, antialias=True
            )
        return self.normalization(images)


def _size(value: object, what: str) -> tuple[int, int]:
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return check_count(value[0], what, 4), check_count(value[1], what, 4)
    side = check_count(value, what, 4)
    return side, side


def _channels(module: nn.Module, preprocess: Any, channels: int | None) -> int:
    if channels is not None:
        return check_count(channels, "channels")
    if preprocess is not None and hasattr(preprocess, "channels"):
        return int(preprocess.channels)
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            return int(layer.in_channels)
    return 3


def _objectives(objective: object) -> tuple[Objective, ...]:
    if isinstance(objective, (list, tuple)):
        found = tuple(as_objective(o) for o in objective)
        if not found:
            raise InvalidOptionError("no objectives given; pass one objective or a list of them")
        return found
    return (as_objective(objective),)


def _setup(model: Any, objective: object, options: Mapping[str, Any]) -> _Setup:
    module, preprocess = unwrap(model)
    if options["param"] not in PARAMETRIZATIONS:
        raise InvalidOptionError(
            f"unknown param {options['param']!r} (valid: {', '.join(PARAMETRIZATIONS)})"
        )
    size_option = options["size"]
    if size_option is None:
        size_option = getattr(preprocess, "size", 224)
    size = _size(size_option, "size")
    input_size = (
        None if options["input_size"] is None else _size(options["input_size"], "input_size")
    )
    channels = _channels(module, preprocess, options["channels"])
    normalization = resolve_normalization(options["normalize"], preprocess)
    normalization.check_channels(channels)
    batch_size = check_batch_size(options["batch_size"])
    objectives = _objectives(objective)
    settings = {
        "param": options["param"],
        "size": size,
        "input_size": input_size,
        "channels": channels,
        "steps": check_count(options["steps"], "steps"),
        "lr": check_positive(options["lr"], "lr"),
        "transforms": options["transforms"] if isinstance(options["transforms"], str) else None,
        "decorrelate": bool(options["decorrelate"]),
        "sd": check_positive(options["sd"], "sd"),
        "normalize": normalization.describe(),
    }
    pipeline = make_pipeline(options["transforms"])
    settings["transforms"] = repr(pipeline.transforms) if pipeline.transforms else "none"
    if options["transforms"] == "standard":
        settings["transforms"] = "standard"
    return _Setup(
        module=module,
        objectives=objectives,
        normalization=normalization,
        pipeline=pipeline,
        param=options["param"],
        size=size,
        channels=channels,
        input_size=input_size,
        steps=settings["steps"],
        lr=settings["lr"],
        sd=settings["sd"],
        decorrelate=settings["decorrelate"],
        device=resolve_device(module, options["device"]),
        dtype=model_dtype(module),
        batch_size=batch_size,
        settings=freeze(settings),
    )


# --------------------------------------------------------------------------- the optimisation


@dataclass
class _Outputs:
    images: Tensor
    traces: Tensor
    initial: Tensor
    final: Tensor
    kept: list[tuple[int, Tensor]]


def _optimize(
    setup: _Setup,
    seeds: Sequence[int],
    progress: Progress | None,
    keep: str | None = None,
) -> _Outputs:
    """Run the optimisation of every row (in chunks that fit) inside the model guard.

    ``keep``: a layer (or ``""`` for the class scores) whose values on the final images are
    returned too.
    """
    rows = len(setup.objectives)
    with torch.inference_mode(False):  # a caller's inference mode must not reach our tensors
        out = _Outputs(
            images=torch.empty(rows, setup.channels, *setup.size, dtype=setup.dtype),
            traces=torch.empty(setup.steps, rows, dtype=setup.dtype),
            initial=torch.empty(rows, dtype=setup.dtype),
            final=torch.empty(rows, dtype=setup.dtype),
            kept=[],
        )
    layers = setup.layers + ([keep] if keep and keep not in setup.layers else [])
    limit = _row_limit(setup)
    advance = progress_counter(progress, rows * setup.steps)
    with guarded_forward(
        setup.module,
        setup.device,
        layers,
        needs_output=setup.needs_output or keep == "",
        example=lambda: _grey(setup),
        objectives=setup.objectives,
    ) as forward:
        Budget(limit, setup.device, layout="contiguous").run(
            rows,
            lambda start, stop: _chunk(setup, forward, seeds, start, stop, out, keep, advance),
        )
    return out


def _grey(setup: _Setup) -> Tensor:
    """One mid-grey model input of the size the optimiser's passes use."""
    size = setup.pipeline.output_size(setup.size)
    grey = torch.full((1, setup.channels, *size), 0.5, dtype=setup.dtype, device=setup.device)
    return setup.model_input(grey)


def _row_limit(setup: _Setup) -> int | None:
    """Most rows per chunk: the user's ``batch_size``, or all rows when an objective couples
    them (then a smaller ``batch_size`` is an error)."""
    rows, limit = len(setup.objectives), setup.batch_size
    if not setup.couples_rows:
        return limit
    if limit is not None and limit < rows:
        raise InvalidOptionError(
            f"diversity compares the {rows} images with each other, so they run as one "
            f"batch; batch_size={limit} is too small (leave it as None)"
        )
    return rows


def _chunk(
    setup: _Setup,
    forward: CapturedForward,
    seeds: Sequence[int],
    start: int,
    stop: int,
    out: _Outputs,
    keep: str | None,
    advance: Callable[[int], None],
) -> None:
    """Optimise rows ``start:stop`` from scratch and write their results into ``out``."""
    gens = generators(seeds[start:stop])
    param = make_param(
        setup.param,
        gens,
        channels=setup.channels,
        size=setup.size,
        dtype=setup.dtype,
        device=setup.device,
        sd=setup.sd,
        decorrelate=setup.decorrelate,
    )
    uniforms = setup.pipeline.draw(gens, setup.steps)
    plan = compile_objectives(setup.objectives[start:stop], setup.device, setup.dtype)
    with torch.no_grad():
        initial = plan(_evaluate(setup, forward, param()))

    def loss(step: int) -> Tensor:  # minus the scores: Adam descends
        image = param()
        transformed = setup.pipeline(image, uniforms[:, step])
        return -plan(forward(setup.model_input(transformed), image))

    trace = -adam_descent(param.tensors, loss, steps=setup.steps, lr=setup.lr, advance=advance)
    with torch.no_grad():
        final_images = param()
        captured = _evaluate(setup, forward, final_images)
        final = plan(captured)
    out.images[start:stop] = final_images.cpu()
    out.traces[:, start:stop] = trace.cpu()
    out.initial[start:stop] = initial.cpu()
    out.final[start:stop] = final.cpu()
    if keep is not None:
        kept = captured.output if keep == "" else captured.layers[keep]
        assert kept is not None
        out.kept.append((start, kept.detach().cpu()))


def _evaluate(setup: _Setup, forward: CapturedForward, images: Tensor) -> Any:
    """One pass on ``images`` framed as the optimiser saw them (padding, no random moves)."""
    return forward(setup.model_input(setup.pipeline.frame(images)), images)


def _visualization(
    setup: _Setup, out: _Outputs, seeds: Sequence[int], seed: int, started: float
) -> Visualization:
    return Visualization(
        images=out.images,
        objectives=tuple(o.name for o in setup.objectives),
        traces=out.traces,
        initial_values=out.initial,
        values=out.final,
        seeds=tuple(int(s) for s in seeds),
        **run_record(setup.settings, seed, started),
    )


def maximize(
    model: nn.Module | Any,
    objective: Objective | str | Sequence[Objective | str],
    *,
    param: str = "fourier",
    size: int | tuple[int, int] | None = None,
    steps: int = 256,
    lr: float = 0.05,
    transforms: object = "standard",
    seed: int = 0,
    batch_size: int | None = None,
    progress: Progress | None = None,
    device: str | torch.device | None = None,
    normalize: Any = None,
    channels: int | None = None,
    input_size: int | tuple[int, int] | None = None,
    decorrelate: bool = True,
    sd: float = 0.01,
) -> Visualization:
    """Optimise images to maximise one objective, or one image per objective of a list.

    Parameters
    ----------
    model : nn.Module or LoadedModel
        In eval mode. A ``LoadedModel`` supplies its input size, channels and normalisation.
    objective : Objective, "layer:channel", or a list of them
        One objective (one image), or K objectives optimised as K images in one batch.
    param : {"fourier", "pixel"}
        Image parametrization (:mod:`~seethrough.inside.param`).
    size : int or (int, int), optional
        Image size; the ``LoadedModel``'s input size by default, else 224.
    steps : int
        Adam steps.
    lr : float
        Adam's learning rate (Lucent's default 0.05).
    transforms : "standard", None or list of Transform
        Random transforms before each step (:mod:`~seethrough.inside.transforms`);
        ``"standard"`` pads by 12 pixels, so the model sees ``size + 24``.
    seed : int
        Row ``i`` draws its initialisation and transforms from a generator seeded with
        ``seed + i``.
    batch_size : int, optional
        Most images optimised at once (``None``: 16 on the CPU; on CUDA what fits in
        memory). Chunks are optimised one after the other; results do not change.
    progress : callable, optional
        ``progress(row_steps_done, row_steps_total)`` after each step.
    device : str or torch.device, optional
        Must be the model's device (the default); the model is never moved.
    normalize : optional
        The model's input normalisation of [0, 1] pixels: ``(mean, std)``, a ``Preprocess``,
        a callable, or ``False`` for none. Default: the ``LoadedModel``'s, else none.
    channels : int, optional
        Image channels; default from the ``LoadedModel``, else the first ``Conv2d``'s input
        channels, else 3.
    input_size : int or (int, int), optional
        Resize the transformed image to this size before the model (for models with a fixed
        input size; Lucent's ``fixed_image_size``).
    decorrelate : bool
        Colour decorrelation of 3-channel images.
    sd : float
        Standard deviation of the random initialisation.

    Returns
    -------
    Visualization

    Raises
    ------
    LayerError
        An objective names a layer the model does not have (close matches suggested).
    InvalidOptionError
        An unknown option, a channel or position out of the layer's range (valid range
        named), or an image size the model cannot run.
    TargetError
        A class index out of the model's range.
    ModelStateError
        The model is in training mode.
    """
    started = time.perf_counter()
    seed = check_seed(seed)
    setup = _setup(model, objective, _options(locals()))
    seeds = [seed + i for i in range(len(setup.objectives))]
    out = _optimize(setup, seeds, progress)
    return _visualization(setup, out, seeds, seed, started)


def evaluate(
    model: nn.Module | Any,
    objective: Objective | str | Sequence[Objective | str],
    images: Tensor,
    *,
    transforms: object = "standard",
    normalize: Any = None,
    input_size: int | tuple[int, int] | None = None,
) -> Tensor:
    """Score ``images`` in [0, 1] under objectives as :func:`maximize` scores its final
    images (``Visualization.values``): framed by the transforms' padding, no random moves.

    Parameters
    ----------
    model : nn.Module or LoadedModel
        In eval mode.
    objective : Objective, "layer:channel", or a list with one objective per image
        One objective scores every image.
    images : Tensor
        ``(K, C, H, W)`` pixels in [0, 1] (e.g. ``Visualization.images``, or another
        library's renders); moved to the model's device.
    transforms, normalize, input_size
        As in :func:`maximize`; only the transforms' padding is applied.

    Returns
    -------
    Tensor
        ``(K,)`` on the CPU.
    """
    unwrap(model)  # a wrong model is reported before wrong images
    if not isinstance(images, Tensor) or images.dim() != 4:
        raise InvalidOptionError("images must be a (K, C, H, W) tensor of pixels in [0, 1]")
    found = _objectives(objective)
    if len(found) == 1:
        found = found * len(images)
    options = dict(
        _MAXIMIZE_DEFAULTS, transforms=transforms, normalize=normalize, input_size=input_size
    )
    options["size"] = tuple(images.shape[-2:])
    options["channels"] = images.shape[1]
    setup = _setup(model, list(found), options)
    pixels = images.detach().to(dtype=setup.dtype, device=setup.device)
    with guarded_forward(
        setup.module,
        setup.device,
        setup.layers,
        needs_output=setup.needs_output,
        example=lambda: setup.model_input(setup.pipeline.frame(pixels[:1])),
        objectives=setup.objectives,
    ) as forward:
        plan = compile_objectives(setup.objectives, setup.device, setup.dtype)
        with torch.no_grad():
            return plan(_evaluate(setup, forward, pixels)).cpu()


_OPTION_NAMES = (
    "param",
    "size",
    "steps",
    "lr",
    "transforms",
    "batch_size",
    "device",
    "normalize",
    "channels",
    "input_size",
    "decorrelate",
    "sd",
)


def _options(values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: values[name] for name in _OPTION_NAMES}


def stability(
    model: nn.Module | Any,
    objective: Objective | str,
    *,
    seeds: Sequence[int] = (0, 1, 2, 3),
    layer: str | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> StabilityResult:
    """Optimise one objective from several seeds in one batch and measure how different the
    solutions are — whether optimisation finds one preferred stimulus or arbitrary images.

    Parameters
    ----------
    model, objective
        As in :func:`maximize` (one objective).
    seeds : sequence of int
        At least two distinct seeds; row ``i`` starts from ``seeds[i]``.
    layer : str, optional
        Where to compare the solutions' activations; default: the layer of the objective's
        first layer term, or the class scores when it has none.
    progress : callable, optional
        As in :func:`maximize`.
    **options
        Any option of :func:`maximize` except ``seed``.

    Returns
    -------
    StabilityResult
    """
    started = time.perf_counter()
    one = as_objective(objective)
    if "seed" in options:
        raise InvalidOptionError("stability takes seeds=, not seed=")
    unknown = sorted(set(options) - set(_OPTION_NAMES))
    if unknown:
        raise InvalidOptionError(
            f"unknown option(s) {', '.join(unknown)} (valid: {', '.join(_OPTION_NAMES)})"
        )
    seed_list = [check_seed(s) for s in seeds]
    if len(seed_list) < 2 or len(set(seed_list)) != len(seed_list):
        raise InvalidOptionError(f"stability needs at least two distinct seeds, got {seeds!r}")
    defaults = _options(_MAXIMIZE_DEFAULTS | options)
    setup = _setup(model, [one] * len(seed_list), defaults)
    keep = layer if layer is not None else next(iter(_term_layers(one)), "")
    out = _optimize(setup, seed_list, progress, keep=keep)
    kept = torch.cat([values for _, values in sorted(out.kept, key=lambda item: item[0])])
    vis = _visualization(setup, out, seed_list, seed_list[0], started)
    return _stability_result(vis, seed_list, keep or None, kept)


_MAXIMIZE_DEFAULTS: dict[str, Any] = {
    "param": "fourier",
    "size": None,
    "steps": 256,
    "lr": 0.05,
    "transforms": "standard",
    "batch_size": None,
    "device": None,
    "normalize": None,
    "channels": None,
    "input_size": None,
    "decorrelate": True,
    "sd": 0.01,
}


def _term_layers(objective: Objective) -> list[str]:
    return [t.layer for _, t in objective.terms if t.layer is not None]


def _mean_pairs(matrix: Tensor) -> float:
    count = matrix.shape[0]
    upper = torch.triu_indices(count, count, offset=1)
    return float(matrix[upper[0], upper[1]].mean())


def _cosine_distances(vectors: Tensor) -> Tensor:
    unit = F.normalize(vectors.flatten(1).double(), dim=1)
    return (1.0 - unit @ unit.T).clamp(min=0.0)


def _stability_result(
    vis: Visualization, seeds: Sequence[int], layer: str | None, kept: Tensor
) -> StabilityResult:
    activation = _cosine_distances(kept)
    gram = _cosine_distances(gram_matrices(kept.double())) if kept.dim() == 4 else None
    pixels = vis.images.flatten(1).double()
    pixel = torch.cdist(pixels, pixels) / pixels.shape[1] ** 0.5
    values = vis.values.double()
    spread = float(values.std() / values.mean().abs().clamp(min=1e-12))
    return StabilityResult(
        visualization=vis,
        seeds=tuple(seeds),
        layer=layer,
        activation_distance=_mean_pairs(activation),
        gram_distance=None if gram is None else _mean_pairs(gram),
        pixel_distance=_mean_pairs(pixel),
        pairwise_activation=activation,
        pairwise_gram=gram,
        pairwise_pixel=pixel,
        value_spread=spread,
    )
