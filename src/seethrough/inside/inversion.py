"""Feature inversion: how much of the input a layer keeps.

Mahendran & Vedaldi (2015), "Understanding Deep Image Representations by Inverting Them":
find an image ``x`` whose representation at a layer matches the original's, under natural
image priors,

    x* = argmin  ‖Φ(x) − Φ(x₀)‖² / ‖Φ(x₀)‖²  +  λ_TV · TV_β(x)  +  λ_α · mean |x − m₀|^α

with ``TV_β(x) = mean |∂y x|^β + mean |∂x x|^β`` (:func:`~seethrough.inside.objectives.
total_variation_of`), ``m₀`` the original's mean colour, starting from that mean colour plus
noise. A layer that keeps the whole image gives a reconstruction close to the original; a
layer that keeps only what the classifier needs gives a plausible image that differs from it.

Reported per image and layer:

``feature_error``
    ``‖Φ(x*) − Φ(x₀)‖ / ‖Φ(x₀)‖`` — how well the optimisation matched the layer.
``pixel_error``
    ``‖x* − x₀‖ / ‖x₀ − m₀‖`` — how far the reconstruction is from the original, relative to
    the original's own contrast: 0 is a perfect copy, 1 is as far as a flat image of the
    mean colour.

:func:`invert_layers` inverts several layers in one batch (one forward pass per step for all
layers and images). Image ``n`` starts from the same noise (seed ``seed + n``) for every layer,
so the layers are compared from identical starts, and ``invert_layers(...)`` row ``l`` equals
``invert(..., layers[l])``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..core.budget import Budget
from ..core.guard import check_inputs
from ..errors import InvalidOptionError, LayerError
from ._engine import (
    CapturedForward,
    Options,
    RunRecord,
    adam_descent,
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
from .objectives import total_variation_of
from .param import resolve_normalization

__all__ = ["InversionResult", "LayerInversions", "invert", "invert_layers"]


@dataclass(frozen=True, eq=False, kw_only=True)
class InversionResult:
    """Reconstructions of images from one layer's activations.

    Attributes
    ----------
    layer : str
    images : Tensor
        ``(N, C, H, W)`` reconstructions in pixel space ([0, 1] when the normalisation is
        known, else the model's input space), on the inputs' device.
    inputs : Tensor
        The reconstructions as model inputs.
    original : Tensor
        The user's images in the space of ``images``.
    feature_error, pixel_error : Tensor
        ``(N,)``, defined in the module docstring (lower is closer).
    traces : Tensor
        ``(steps, N)``: the loss being minimised at each step.
    settings, seed, seconds, versions
        As in :class:`~seethrough.inside.Visualization`.
    """

    layer: str
    images: Tensor
    inputs: Tensor
    original: Tensor
    feature_error: Tensor
    pixel_error: Tensor
    traces: Tensor
    settings: Mapping[str, Any]
    seed: int
    seconds: float
    versions: Mapping[str, str]


@dataclass(frozen=True, eq=False, kw_only=True)
class LayerInversions:
    """Inversions of the same images from several layers: what each layer keeps.

    Attributes
    ----------
    layers : tuple of str
    results : tuple of InversionResult
        One per layer, in order.
    feature_error, pixel_error : Tensor
        ``(L, N)`` per layer and image.
    seconds : float
        Wall-clock time of the whole call.
    """

    layers: tuple[str, ...]
    results: tuple[InversionResult, ...]
    feature_error: Tensor
    pixel_error: Tensor
    seconds: float

    def table(self) -> list[dict[str, Any]]:
        """One row per layer: mean feature and pixel error over the images."""
        return [
            {
                "layer": layer,
                "feature_error": round(float(self.feature_error[i].mean()), 6),
                "pixel_error": round(float(self.pixel_error[i].mean()), 6),
            }
            for i, layer in enumerate(self.layers)
        ]


@dataclass(frozen=True, kw_only=True)
class _Options(Options):
    steps: int
    lr: float
    tv_weight: float
    tv_beta: float
    alpha: float
    alpha_weight: float
    noise: float


@dataclass(frozen=True)
class _Found:
    """Every row's reconstruction; row ``l · N + n`` inverts image ``n`` at layer ``l``."""

    images: Tensor
    traces: Tensor
    feature_error: Tensor


def invert(
    model: nn.Module | Any,
    inputs: Tensor,
    layer: str,
    *,
    steps: int = 200,
    lr: float = 0.02,
    tv_weight: float = 1.0,
    tv_beta: float = 2.0,
    alpha: float = 6.0,
    alpha_weight: float = 0.0,
    noise: float = 0.1,
    seed: int = 0,
    batch_size: int | None = None,
    normalize: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> InversionResult:
    """Reconstruct ``inputs`` from ``layer``'s activations (Mahendran & Vedaldi 2015).

    Parameters
    ----------
    model : nn.Module or LoadedModel
        In eval mode.
    inputs : Tensor
        ``(N, C, H, W)`` preprocessed images as the model expects, on its device.
    layer : str
        The layer to invert.
    steps : int
        Adam steps on the pixels.
    lr : float
        Adam's learning rate (pixel units), decayed linearly to 0 over the steps.
    tv_weight, tv_beta : float
        Weight and exponent ``β ≥ 1`` of the total-variation prior (means over pixels, so
        the weight does not depend on the image size).
    alpha, alpha_weight : float
        Exponent and weight of the α-norm prior on ``x − m₀`` (off by default).
    noise : float
        Standard deviation of the starting noise, relative to the original's standard
        deviation.
    seed : int
        Image ``n`` starts from noise drawn with seed ``seed + n``.
    batch_size : int, optional
        Most rows (images × layers) optimised at once; results do not depend on it.
    normalize : optional
        The model's input normalisation (see :func:`~seethrough.inside.maximize`); when
        known, reconstructions are clamped to [0, 1] pixels.
    progress : callable, optional
        ``progress(row_steps_done, row_steps_total)``.

    Returns
    -------
    InversionResult
    """
    return invert_layers(
        model,
        inputs,
        [layer],
        steps=steps,
        lr=lr,
        tv_weight=tv_weight,
        tv_beta=tv_beta,
        alpha=alpha,
        alpha_weight=alpha_weight,
        noise=noise,
        seed=seed,
        batch_size=batch_size,
        normalize=normalize,
        progress=progress,
    ).results[0]


def invert_layers(
    model: nn.Module | Any,
    inputs: Tensor,
    layers: Sequence[str],
    *,
    steps: int = 200,
    lr: float = 0.02,
    tv_weight: float = 1.0,
    tv_beta: float = 2.0,
    alpha: float = 6.0,
    alpha_weight: float = 0.0,
    noise: float = 0.1,
    seed: int = 0,
    batch_size: int | None = None,
    normalize: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> LayerInversions:
    """Invert the same images from each of ``layers`` in one batch; see :func:`invert` for
    the parameters. ``table()`` of the result lists the errors per layer."""
    started = time.perf_counter()
    module, preprocess = unwrap(model)
    x = check_inputs(inputs, module)
    seed = check_seed(seed)
    names = _check_layers(layers)
    options = _Options(
        normalization=resolve_normalization(normalize, preprocess),
        steps=check_count(steps, "steps"),
        lr=check_positive(lr, "lr"),
        tv_weight=check_positive(tv_weight, "tv_weight", zero=True),
        tv_beta=_at_least_one(tv_beta, "tv_beta"),
        alpha=_at_least_one(alpha, "alpha"),
        alpha_weight=check_positive(alpha_weight, "alpha_weight", zero=True),
        noise=check_positive(noise, "noise", zero=True),
    )
    batch_size = check_batch_size(batch_size)
    with torch.inference_mode(False):  # a caller's inference mode must not reach our tensors
        original = options.normalization.invert(x)
    found = _invert_all(module, x, original, names, options, seed, batch_size, progress)
    pixel_error = _pixel_error(found.images, original.repeat(len(names), 1, 1, 1))
    record = run_record(options.settings, seed, started)
    return LayerInversions(
        layers=tuple(names),
        results=_results(names, options, original, found, pixel_error, record),
        feature_error=found.feature_error.reshape(len(names), len(x)),
        pixel_error=pixel_error.reshape(len(names), len(x)),
        seconds=record["seconds"],
    )


def _invert_all(
    module: nn.Module,
    x: Tensor,
    original: Tensor,
    names: Sequence[str],
    options: _Options,
    seed: int,
    batch_size: int | None,
    progress: Callable[[int, int], None] | None,
) -> _Found:
    """Invert every image of ``x`` from every layer, in chunks of rows that fit, inside the
    model guard; ``original`` is ``x`` in pixel space."""
    count, rows = len(x), len(names) * len(x)
    with torch.inference_mode(False):
        found = _Found(
            images=original.new_empty(rows, *original.shape[1:]),
            traces=original.new_empty(options.steps, rows),
            feature_error=original.new_empty(rows),
        )
    advance = progress_counter(progress, rows * options.steps)
    with guarded_forward(
        module, x.device, names, needs_output=False, example=lambda: x[:1]
    ) as forward:
        with torch.no_grad():
            captured = forward(x, original)
            targets = {name: captured.layers[name].detach() for name in names}

        def chunk(start: int, stop: int) -> None:
            layer_of = [names[r // count] for r in range(start, stop)]
            image_of = [r % count for r in range(start, stop)]
            images, trace, errors = _invert_rows(
                forward, options, original, targets, layer_of, image_of, seed, advance
            )
            found.images[start:stop] = images
            found.traces[:, start:stop] = trace
            found.feature_error[start:stop] = errors

        Budget(batch_size, x.device, layout="contiguous").run(rows, chunk)
    return found


def _results(
    names: Sequence[str],
    options: _Options,
    original: Tensor,
    found: _Found,
    pixel_error: Tensor,
    record: RunRecord,
) -> tuple[InversionResult, ...]:
    """One result per layer: its block of ``len(original)`` rows."""
    count = len(original)
    blocks = [slice(i * count, (i + 1) * count) for i in range(len(names))]
    return tuple(
        InversionResult(
            layer=name,
            images=found.images[rows],
            inputs=options.normalization(found.images[rows]),
            original=original,
            feature_error=found.feature_error[rows],
            pixel_error=pixel_error[rows],
            traces=found.traces[:, rows],
            **record,
        )
        for name, rows in zip(names, blocks)
    )


def _check_layers(layers: object) -> list[str]:
    if isinstance(layers, str) or not isinstance(layers, Sequence) or not layers:
        raise InvalidOptionError(f"layers must be a non-empty list of layer names, got {layers!r}")
    names = list(layers)
    for name in names:
        if not isinstance(name, str) or not name:
            raise LayerError(f"a layer name (str) is needed, got {name!r}")
    if len(set(names)) != len(names):
        raise InvalidOptionError(f"layers are repeated: {names}")
    return names


def _at_least_one(value: object, what: str) -> float:
    number = check_positive(value, what)
    if number < 1.0:
        raise InvalidOptionError(f"{what} must be ≥ 1, got {value!r}")
    return number


def _channel_means(images: Tensor) -> Tensor:
    return images.mean(dim=(2, 3), keepdim=True)


def _pixel_error(found: Tensor, original: Tensor) -> Tensor:
    contrast = (original - _channel_means(original)).flatten(1).norm(dim=1)
    return (found - original).flatten(1).norm(dim=1) / contrast.clamp(min=1e-12)


def _invert_rows(
    forward: CapturedForward,
    options: _Options,
    original: Tensor,
    targets: Mapping[str, Tensor],
    layer_of: Sequence[str],
    image_of: Sequence[int],
    seed: int,
    advance: Callable[[int], None],
) -> tuple[Tensor, Tensor, Tensor]:
    """Reconstruct one chunk of rows; row ``r`` inverts image ``image_of[r]`` at
    ``layer_of[r]``. Returns the images, the loss trace ``(steps, R)`` and the final
    relative feature errors."""
    index = torch.tensor(image_of, device=original.device)
    start_image = original.index_select(0, index)
    means = _channel_means(start_image)
    noisy = _noisy_start(start_image, means, options.noise, [seed + n for n in image_of])
    pixels = noisy.requires_grad_(True)
    groups = _groups(layer_of, index, targets)

    def loss(step: int) -> Tensor:
        captured = forward(options.normalization(pixels), pixels)
        return _feature_loss(captured.layers, groups, len(pixels)) + _priors(pixels, means, options)

    trace = adam_descent(
        [pixels],
        loss,
        steps=options.steps,
        lr=options.lr,
        advance=advance,
        decay=True,
        project=(lambda: pixels.clamp_(0.0, 1.0)) if options.normalization.known else None,
    )
    with torch.no_grad():
        captured = forward(options.normalization(pixels), pixels)
        errors = _feature_loss(captured.layers, groups, len(pixels)).sqrt()
    return pixels.detach(), trace, errors


def _noisy_start(images: Tensor, means: Tensor, noise: float, seeds: Sequence[int]) -> Tensor:
    """The mean colours ``means`` plus Gaussian noise of ``noise`` times each image's standard
    deviation; row ``r`` draws its noise with seed ``seeds[r]``."""
    spread = images.flatten(1).std(dim=1).reshape(-1, 1, 1, 1)
    draws = torch.stack([torch.randn(images.shape[1:], generator=g) for g in generators(seeds)]).to(
        dtype=images.dtype, device=images.device
    )
    return means + noise * spread * draws


@dataclass(frozen=True)
class _Group:
    layer: str
    rows: Tensor
    target: Tensor
    energy: Tensor


def _groups(layer_of: Sequence[str], index: Tensor, targets: Mapping[str, Tensor]) -> list[_Group]:
    groups = []
    for name in dict.fromkeys(layer_of):
        rows = torch.tensor([r for r, n in enumerate(layer_of) if n == name], device=index.device)
        target = targets[name].index_select(0, index.index_select(0, rows))
        energy = target.flatten(1).square().sum(dim=1).clamp(min=1e-12)
        groups.append(_Group(name, rows, target, energy))
    return groups


def _feature_loss(layers: Mapping[str, Tensor], groups: Sequence[_Group], rows: int) -> Tensor:
    """``‖Φ(x) − Φ(x₀)‖² / ‖Φ(x₀)‖²`` per row."""
    loss: Tensor | None = None
    for group in groups:
        acts = layers[group.layer].index_select(0, group.rows)
        value = (acts - group.target).flatten(1).square().sum(dim=1) / group.energy
        part = value.new_zeros(rows).index_add(0, group.rows, value)
        loss = part if loss is None else loss + part
    assert loss is not None
    return loss


def _priors(pixels: Tensor, means: Tensor, options: _Options) -> Tensor:
    prior = options.tv_weight * total_variation_of(pixels, options.tv_beta)
    if options.alpha_weight:
        norm = (pixels - means).abs().pow(options.alpha).flatten(1).mean(dim=1)
        prior = prior + options.alpha_weight * norm
    return prior
