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
from ..core.guard import check_inputs, guarded
from ..core.hooks import HookSet
from ..core.versions import library_versions
from ..errors import InvalidOptionError, LayerError
from ._engine import (
    CapturedForward,
    check_count,
    check_positive,
    check_seed,
    freeze,
    generators,
    unwrap,
)
from .objectives import total_variation_of
from .param import Normalization, resolve_normalization

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


@dataclass(frozen=True)
class _Options:
    normalization: Normalization
    steps: int
    lr: float
    tv_weight: float
    tv_beta: float
    alpha: float
    alpha_weight: float
    noise: float


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
    if batch_size is not None:
        check_count(batch_size, "batch_size")
    count, rows = len(x), len(names) * len(x)
    with torch.inference_mode(False):  # a caller's inference mode must not reach our tensors
        original = options.normalization.invert(x)
        found = original.new_empty(rows, *original.shape[1:])
        losses = original.new_empty(options.steps, rows)
        feature_error = original.new_empty(rows)
    total = rows * options.steps
    done = [0]

    def advance(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(min(done[0], total), total)

    with guarded(module, [x.device]), HookSet() as hooks:
        forward = CapturedForward(module, names, hooks, needs_output=False, example=x[:1])
        with torch.no_grad():
            captured = forward(x, original)
            targets = {name: captured.layers[name].detach() for name in names}

        def chunk(start: int, stop: int) -> None:
            layer_of = [names[r // count] for r in range(start, stop)]
            image_of = [r % count for r in range(start, stop)]
            images, trace, errors = _invert_rows(
                forward, options, original, targets, layer_of, image_of, seed, advance
            )
            found[start:stop] = images
            losses[:, start:stop] = trace
            feature_error[start:stop] = errors

        Budget(batch_size, x.device, layout="contiguous").run(rows, chunk)
    pixel_error = _pixel_error(found, original.repeat(len(names), 1, 1, 1))
    settings = freeze(
        {
            "steps": options.steps,
            "lr": options.lr,
            "tv_weight": options.tv_weight,
            "tv_beta": options.tv_beta,
            "alpha": options.alpha,
            "alpha_weight": options.alpha_weight,
            "noise": options.noise,
            "normalize": options.normalization.describe(),
        }
    )
    seconds = time.perf_counter() - started
    versions = library_versions()
    results = tuple(
        InversionResult(
            layer=name,
            images=found[i * count : (i + 1) * count],
            inputs=options.normalization(found[i * count : (i + 1) * count]),
            original=original,
            feature_error=feature_error[i * count : (i + 1) * count],
            pixel_error=pixel_error[i * count : (i + 1) * count],
            traces=losses[:, i * count : (i + 1) * count],
            settings=settings,
            seed=seed,
            seconds=seconds,
            versions=versions,
        )
        for i, name in enumerate(names)
    )
    return LayerInversions(
        layers=tuple(names),
        results=results,
        feature_error=feature_error.reshape(len(names), count),
        pixel_error=pixel_error.reshape(len(names), count),
        seconds=seconds,
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
    spread = start_image.flatten(1).std(dim=1).reshape(-1, 1, 1, 1)
    noise = torch.stack(
        [
            torch.randn(original.shape[1:], generator=g)
            for g in generators([seed + n for n in image_of])
        ]
    ).to(dtype=original.dtype, device=original.device)
    pixels = (means + options.noise * spread * noise).requires_grad_(True)
    groups = _groups(layer_of, index, targets)
    optimizer = torch.optim.Adam([pixels], lr=options.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / options.steps)
    trace = []
    for _ in range(options.steps):
        captured = forward(options.normalization(pixels), pixels)
        loss = _feature_loss(captured.layers, groups, len(pixels)) + _priors(pixels, means, options)
        trace.append(loss.detach())
        (grad,) = torch.autograd.grad(loss.sum(), pixels)
        pixels.grad = grad
        optimizer.step()
        schedule.step()
        if options.normalization.known:
            with torch.no_grad():
                pixels.clamp_(0.0, 1.0)
        advance(len(pixels))
    with torch.no_grad():
        captured = forward(options.normalization(pixels), pixels)
        errors = _feature_loss(captured.layers, groups, len(pixels)).sqrt()
    return pixels.detach(), torch.stack(trace), errors


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
