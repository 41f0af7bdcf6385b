"""DeepDream: amplify what a layer sees in a user's image.

Mordvintsev, Olah & Tyka (2015), "Inceptionism: Going Deeper into Neural Networks" and the
``deepdream`` notebook: gradient *ascent* on the image itself, with

* normalised steps ``x ← x + lr · g / mean|g|`` (per image), so ``lr`` is the mean change per
  pixel and step in pixel units;
* random jitter: the image is rolled by up to ``jitter`` pixels (per image, per step) before
  the gradient is taken and rolled back after;
* an octave pyramid: the image is processed from ``octaves`` sizes, smallest first, each
  ``octave_scale`` times larger than the one before; the detail added at one octave is
  upsampled and carried to the next.

The objective is by default the mean square of a layer
(:func:`~seethrough.inside.objectives.layer_objective`, the notebook's L2 objective);
any :class:`~seethrough.inside.objectives.Objective` works. When the model's normalisation is
known (a ``LoadedModel`` or ``normalize=``) the images are edited in pixel space and clamped
to [0, 1] after each step, as the notebook clips to valid pixel values.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.budget import Budget
from ..core.guard import check_inputs
from ..errors import InvalidOptionError
from ._engine import (
    CapturedForward,
    Options,
    check_batch_size,
    check_count,
    check_positive,
    check_seed,
    generators,
    guarded_forward,
    progress_counter,
    run_record,
    unwrap,
)
from .objectives import Objective, Plan, as_objective, compile_objectives, layer_objective
from .param import resolve_normalization

__all__ = ["DreamResult", "dream"]


@dataclass(frozen=True, eq=False, kw_only=True)
class DreamResult:
    """Dreamed images.

    Attributes
    ----------
    images : Tensor
        ``(N, C, H, W)`` the dreamed images in pixel space (values in [0, 1] when the
        normalisation is known; otherwise the model's input space), on the inputs' device.
    inputs : Tensor
        The same images as model inputs (normalised).
    original : Tensor
        ``(N, C, H, W)`` the user's images in the space of ``images``.
    objective : str
        The objective's name.
    traces : Tensor
        ``(octaves × steps, N)``: the objective before each step.
    sizes : tuple of (int, int)
        The octaves' image sizes, smallest first.
    settings, seed, seconds, versions
        As in :class:`~seethrough.inside.Visualization`.
    """

    images: Tensor
    inputs: Tensor
    original: Tensor
    objective: str
    traces: Tensor
    sizes: tuple[tuple[int, int], ...]
    settings: Mapping[str, Any]
    seed: int
    seconds: float
    versions: Mapping[str, str]


def octave_sizes(height: int, width: int, octaves: int, scale: float) -> list[tuple[int, int]]:
    """Image sizes of the pyramid, smallest first; the last is ``(height, width)``."""
    sizes = [
        (max(1, round(height / scale**k)), max(1, round(width / scale**k))) for k in range(octaves)
    ]
    return sizes[::-1]


def _resize(images: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(images.shape[-2:]) == size:
        return images
    shrink = size[0] < images.shape[-2]
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def _roll(images: Tensor, shifts: Tensor) -> Tensor:
    """Roll each image ``i`` by ``shifts[i] = (dy, dx)`` pixels (circularly)."""
    return torch.stack(
        [
            torch.roll(image, (int(dy), int(dx)), dims=(-2, -1))
            for image, (dy, dx) in zip(images, shifts)
        ]
    )


@dataclass(frozen=True, kw_only=True)
class _Dream(Options):
    objective: Objective
    octaves: int
    octave_scale: float
    steps: int
    lr: float
    jitter: int
    not_settings: ClassVar[tuple[str, ...]] = ("objective",)


def dream(
    model: nn.Module | Any,
    inputs: Tensor,
    objective: str | Objective,
    *,
    octaves: int = 4,
    octave_scale: float = 1.4,
    steps: int = 10,
    lr: float = 0.01,
    jitter: int = 32,
    seed: int = 0,
    batch_size: int | None = None,
    normalize: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> DreamResult:
    """DeepDream ``inputs`` on a layer (or any objective); see the module docstring.

    Parameters
    ----------
    model : nn.Module or LoadedModel
        In eval mode.
    inputs : Tensor
        ``(N, C, H, W)`` preprocessed images as the model expects (``net.preprocess(...)``),
        on the model's device. Not modified.
    objective : str or Objective
        A layer name (its mean square is raised) or an objective.
    octaves : int
        Number of pyramid levels.
    octave_scale : float
        Size ratio between consecutive levels (> 1).
    steps : int
        Gradient steps per octave.
    lr : float
        Mean change per pixel and step (pixel units: 0.01 ≈ 2.5 grey levels of 255).
    jitter : int
        Largest random roll, in pixels, per axis.
    seed : int
        Image ``i`` draws its jitter from a generator seeded with ``seed + i``.
    batch_size : int, optional
        Most images dreamed at once (results do not depend on it).
    normalize : optional
        The model's input normalisation (see :func:`~seethrough.inside.maximize`);
        default: the ``LoadedModel``'s, else none (then no clamping).
    progress : callable, optional
        ``progress(image_steps_done, image_steps_total)``.

    Returns
    -------
    DreamResult
    """
    started = time.perf_counter()
    module, preprocess = unwrap(model)
    x = check_inputs(inputs, module)
    seed = check_seed(seed)
    options = _Dream(
        objective=_objective(objective),
        normalization=resolve_normalization(normalize, preprocess),
        octaves=check_count(octaves, "octaves"),
        octave_scale=_check_scale(octave_scale),
        steps=check_count(steps, "steps"),
        lr=check_positive(lr, "lr"),
        jitter=check_count(jitter, "jitter", 0),
    )
    batch_size = check_batch_size(batch_size)
    with torch.inference_mode(False):  # a caller's inference mode must not reach our tensors
        original = options.normalization.invert(x)
    sizes = octave_sizes(x.shape[2], x.shape[3], options.octaves, options.octave_scale)
    dreamed, traces = _dream_all(module, options, original, sizes, seed, batch_size, progress)
    return DreamResult(
        images=dreamed,
        inputs=options.normalization(dreamed),
        original=original,
        objective=options.objective.name,
        traces=traces,
        sizes=tuple(sizes),
        **run_record(options.settings, seed, started),
    )


def _objective(objective: str | Objective) -> Objective:
    """A layer name means its mean square (the notebook's L2 objective)."""
    return layer_objective(objective) if isinstance(objective, str) else as_objective(objective)


def _check_scale(value: object) -> float:
    scale = check_positive(value, "octave_scale")
    if scale <= 1.0:
        raise InvalidOptionError(f"octave_scale must be > 1, got {value!r}")
    return scale


def _dream_all(
    module: nn.Module,
    options: _Dream,
    original: Tensor,
    sizes: Sequence[tuple[int, int]],
    seed: int,
    batch_size: int | None,
    progress: Callable[[int, int], None] | None,
) -> tuple[Tensor, Tensor]:
    """Dream every row of ``original`` (pixel space) in chunks that fit, inside the model
    guard; row ``i`` draws its jitter from seed ``seed + i``. Returns the dreamed images and
    the traces ``(octaves × steps, N)``."""
    count = len(original)
    with torch.inference_mode(False):
        dreamed = torch.empty_like(original)
        traces = original.new_empty(options.octaves * options.steps, count)
    seeds = [seed + i for i in range(count)]
    limit = count if options.objective.couples_rows else batch_size  # coupled rows: one batch
    advance = progress_counter(progress, count * options.octaves * options.steps)
    with guarded_forward(
        module,
        original.device,
        sorted(options.objective.layers),
        needs_output=options.objective.needs_output,
        example=lambda: options.normalization(_resize(original[:1], sizes[0])),
        objectives=[options.objective],
    ) as forward:

        def chunk(start: int, stop: int) -> None:
            images, trace = _dream_rows(
                forward, options, original[start:stop], sizes, seeds[start:stop], advance
            )
            dreamed[start:stop] = images
            traces[:, start:stop] = trace

        Budget(limit, original.device, layout="contiguous").run(count, chunk)
    return dreamed, traces


def _dream_rows(
    forward: CapturedForward,
    options: _Dream,
    original: Tensor,
    sizes: Sequence[tuple[int, int]],
    seeds: Sequence[int],
    advance: Callable[[int], None],
) -> tuple[Tensor, Tensor]:
    """Dream the rows ``original`` (pixel space) through the octave pyramid."""
    rows = len(original)
    plan = compile_objectives([options.objective] * rows, original.device, original.dtype)
    span = 2 * options.jitter + 1
    shifts = (
        torch.stack(
            [
                torch.randint(span, (options.octaves * options.steps, 2), generator=g)
                for g in generators(seeds)
            ],
            dim=1,
        )
        - options.jitter
    )  # (octaves × steps, rows, 2)
    detail = torch.zeros_like(_resize(original, sizes[0]))
    trace = []
    image = original
    for octave, size in enumerate(sizes):
        base = _resize(original, size)
        image = base + _resize(detail, size)
        for step in range(options.steps):
            shift = shifts[octave * options.steps + step]
            image, score = _ascend(forward, plan, options, image, shift)
            trace.append(score)
            advance(rows)
        detail = image - base
    return image, torch.stack(trace)


def _ascend(
    forward: CapturedForward, plan: Plan, options: _Dream, image: Tensor, shift: Tensor
) -> tuple[Tensor, Tensor]:
    """One normalised gradient-ascent step on jittered images; returns them and the scores."""
    rolled = _roll(image, shift).requires_grad_(True)
    scores = plan(forward(options.normalization(rolled), rolled))
    (grad,) = torch.autograd.grad(scores.sum(), rolled)
    scale = grad.abs().flatten(1).mean(dim=1).clamp(min=1e-12)
    stepped = rolled.detach() + options.lr * grad / scale.reshape(-1, 1, 1, 1)
    image = _roll(stepped, -shift)
    if options.normalization.known:
        image = image.clamp(0.0, 1.0)
    return image, scores.detach()
