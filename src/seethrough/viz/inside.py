"""Figures of the network's inside: filters, feature maps, top-activating examples,
activation-maximization images, DeepDream and feature inversions.

The results hold raw numbers; every display choice is made here and said on the figure:
filters share one symmetric scale per grid (grey/white = 0, so a weak filter looks weak and a
dead one — all weights 0 — is neutral and marked "dead"), feature maps share one colour
scale per channel across the images shown (diverging around 0 when the channel has negative
values), and crops are cut from the whole image as displayed (so their brightness is that
of the image, not stretched per crop).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from torch import Tensor

from ..errors import InvalidOptionError
from .heatmap import DIVERGING, SEQUENTIAL, display_images

if TYPE_CHECKING:
    from ..inside.dream import DreamResult
    from ..inside.feature_maps import FeatureMaps
    from ..inside.filters import Filters
    from ..inside.inversion import InversionResult, LayerInversions
    from ..inside.maximize import Visualization
    from ..inside.top_examples import TopExamples

__all__ = [
    "FILTER_MODES",
    "plot_dream",
    "plot_feature_maps",
    "plot_filters",
    "plot_inversion",
    "plot_top_examples",
    "plot_traces",
    "plot_visualization",
]

FILTER_MODES = ("auto", "rgb", "kernels", "channels", "norms")
_FONT = 7
_CELL = 1.1  # inches per tile


def _figure(rows: int, cols: int, cell: float = _CELL, extra: float = 0.5) -> Figure:
    figure = Figure(figsize=(cell * cols + 0.3, cell * rows + extra), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _tiles(figure: Figure, count: int, columns: int) -> list[Axes]:
    """``count`` axes in a grid ``columns`` wide, without ticks; unused cells removed."""
    cols = max(1, min(columns, count))
    rows = math.ceil(count / cols)
    axes = list(figure.subplots(rows, cols, squeeze=False).flat)
    for ax in axes[count:]:
        ax.remove()
    for ax in axes[:count]:
        ax.set_xticks([])
        ax.set_yticks([])
    return axes[:count]


def _check_columns(columns: int) -> None:
    if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
        raise InvalidOptionError(f"columns must be a positive integer, got {columns!r}")


def _pick(chosen: Sequence[int] | None, available: int, limit: int, what: str) -> list[int]:
    """Positions to show: the given ones (validated) or the first ``limit``."""
    if chosen is None:
        return list(range(min(available, limit)))
    picked = list(chosen)
    if not picked:
        raise InvalidOptionError(f"no {what} to show: the list is empty")
    for p in picked:
        if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p < available:
            raise InvalidOptionError(f"{what} {p!r} is out of range (0–{available - 1})")
    return picked


def _symmetric(weights: Tensor) -> tuple[Tensor, float]:
    """Scale a grid of filters by one number, the largest |w| among them, into [-1, 1].

    One scale per grid, not per filter: a per-filter scale stretches a filter of tiny
    weights to full contrast, so weak and dead filters look as alive as the strongest.
    Returns the scaled weights and the scale (0 when every weight is 0).
    """
    scale = float(weights.abs().max()) if weights.numel() else 0.0
    return (weights / scale if scale > 0 else weights.clone()), scale


def _dead(weights: Tensor) -> list[bool]:
    """Per filter (first dimension): are all its weights exactly 0?"""
    return (weights.flatten(1) == 0).all(dim=1).tolist()


def _mark_dead(ax: Axes) -> None:
    """Frame a dead filter's tile in red (its title says "dead")."""
    for spine in ax.spines.values():
        spine.set_edgecolor("red")
        spine.set_linewidth(1.5)


def _scale_note(scale: float) -> str:
    return f"one scale for the grid: |w| = {scale:.3g} is full colour; dead = all weights 0"


def _diverging(values: np.ndarray) -> np.ndarray:
    """RGB for values already in [-1, 1] (white = 0)."""
    return np.asarray(colormaps[DIVERGING]((np.clip(values, -1, 1) + 1) / 2)[..., :3])


def _filter_mode(f: Filters, mode: str) -> str:
    if mode not in FILTER_MODES:
        raise InvalidOptionError(f"unknown mode {mode!r} (valid: {', '.join(FILTER_MODES)})")
    per_filter = f.weights.shape[1]
    if mode == "rgb" and per_filter != 3:
        raise InvalidOptionError(
            f"mode 'rgb' needs 3 input channels per filter; {f.layer} has {per_filter} — "
            "use 'channels' or 'norms'"
        )
    if mode != "auto":
        return mode
    return {3: "rgb", 1: "kernels"}.get(per_filter, "norms")


def plot_filters(
    f: Filters,
    *,
    mode: str = "auto",
    filters: Sequence[int] | None = None,
    in_channels: Sequence[int] | None = None,
    columns: int = 8,
    limit: int = 64,
) -> Figure:
    """The filters of a conv layer as a grid of tiles, titled with the layer and its shape.

    Parameters
    ----------
    f : Filters
        From :func:`seethrough.inside.filters`.
    mode : {"auto", "rgb", "kernels", "channels", "norms"}
        ``"rgb"``: one colour tile per filter (3 input channels, e.g. a first layer), 0 is
        mid-grey; ``"kernels"``: one tile per filter of one input channel each (depthwise
        or grey-scale first layers), diverging colours, white = 0; ``"channels"``: rows of
        filters, columns of input channels; ``"norms"``: the L2 norm of every (filter,
        input channel) kernel as one heatmap. ``"auto"``: rgb for 3 channels per filter,
        kernels for 1, norms otherwise. The tiles of one figure share one symmetric scale
        (the largest |w| among the filters shown), so a weak filter looks weak; a dead
        filter (all weights 0) is neutral, titled "dead" and framed in red.
    filters : sequence of int, optional
        Which filters (default: the first ``limit``; for ``"channels"`` the first 8).
    in_channels : sequence of int, optional
        For ``"channels"``: which of each filter's input channels (default: the first 16).
    columns : int
        Tiles per row for ``"rgb"`` and ``"kernels"``.
    limit : int
        Most filters shown by default.

    Returns
    -------
    matplotlib.figure.Figure
    """
    _check_columns(columns)
    chosen_mode = _filter_mode(f, mode)
    title = f"{f.layer} — weights {'×'.join(str(s) for s in f.shape)}"
    if f.depthwise:
        title += " (depthwise)"
    elif f.grouped:
        title += f" ({f.groups} groups)"
    if chosen_mode == "norms":
        return _plot_norms(f, title)
    default = 8 if chosen_mode == "channels" else limit
    picked = _pick(filters, f.out_channels, default, "filter")
    weights = f.weights[picked].double()
    dead = _dead(weights)
    w, scale = _symmetric(weights)
    if chosen_mode == "channels":
        return _plot_channels(f, w, picked, dead, in_channels, f"{title}\n{_scale_note(scale)}")
    count = len(picked)
    figure = _figure(math.ceil(count / min(columns, count)), min(columns, count))
    for ax, o, tile, is_dead in zip(_tiles(figure, count, columns), picked, w, dead):
        if chosen_mode == "rgb":
            ax.imshow((0.5 + 0.5 * tile).permute(1, 2, 0).clamp(0, 1).numpy())
        else:
            ax.imshow(_diverging(tile[0].numpy()))
        ax.set_title(f"{o} dead" if is_dead else str(o), fontsize=_FONT)
        if is_dead:
            _mark_dead(ax)
    how = "RGB, mid-grey = 0" if chosen_mode == "rgb" else "red > 0 > blue"
    figure.suptitle(f"{title}\n{_scale_note(scale)}; {how}", fontsize=_FONT + 1)
    return figure


def _plot_channels(
    f: Filters,
    w: Tensor,
    picked: list[int],
    dead: list[bool],
    in_channels: Sequence[int] | None,
    title: str,
) -> Figure:
    inputs = _pick(in_channels, w.shape[1], 16, "input channel")
    figure = _figure(len(picked), len(inputs))
    axes = figure.subplots(len(picked), len(inputs), squeeze=False)
    for r, o in enumerate(picked):
        first = f.input_channels(o).start
        for c, i in enumerate(inputs):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.imshow(_diverging(w[r, i].numpy()))
            if r == 0:
                ax.set_title(f"in {first + i}", fontsize=_FONT)
            if c == 0:
                ax.set_ylabel(f"filter {o} dead" if dead[r] else f"filter {o}", fontsize=_FONT)
            if dead[r]:
                _mark_dead(ax)
    figure.suptitle(
        f"{title}\nrows: filters, columns: input channels; red > 0 > blue", fontsize=_FONT + 1
    )
    return figure


def _plot_norms(f: Filters, title: str) -> Figure:
    norms = f.norms().numpy()
    figure = Figure(figsize=(7.0, 5.0), layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    image = ax.imshow(norms, cmap=SEQUENTIAL, aspect="auto", interpolation="nearest")
    figure.colorbar(image, ax=ax, label="L2 norm of the kernel")
    ax.set_xlabel("input channel (within the filter's group)", fontsize=_FONT + 1)
    ax.set_ylabel("filter (output channel)", fontsize=_FONT + 1)
    ax.set_title(f"{title}\nL2 norm of each (filter, input channel) kernel", fontsize=_FONT + 1)
    return figure


def plot_feature_maps(
    fm: FeatureMaps,
    *,
    images: Sequence[int] | None = None,
    channels: int = 16,
    transform: Any = None,
    names: Sequence[str] | None = None,
) -> Figure:
    """Rows: images (the input first); columns: the chosen channels' maps, in ``fm``'s order.

    Each channel has one colour scale across the rows shown: diverging and symmetric about
    0 when the channel has negative values, sequential from 0 otherwise.

    Parameters
    ----------
    fm : FeatureMaps
        From :func:`seethrough.inside.feature_maps`.
    images : sequence of int, optional
        Which images (default: the first 4).
    channels : int
        Most channels shown (the first of ``fm.channels``).
    transform : optional
        The model's preprocessing (its ``invert`` shows the input as pixels).
    names : sequence of str, optional
        A name per image of ``fm`` (default: its index).

    Returns
    -------
    matplotlib.figure.Figure
    """
    rows = _pick(images, len(fm), 4, "image")
    if names is not None and len(names) != len(fm):
        raise InvalidOptionError(f"names has {len(names)} entries for {len(fm)} images")
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise InvalidOptionError(f"channels must be a positive integer, got {channels!r}")
    shown = min(channels, len(fm.channels))
    maps = fm.activations[rows][:, :shown].detach().double().cpu()
    pictures = display_images(fm.inputs[rows], transform)
    figure = _figure(len(rows), shown + 1)
    axes = figure.subplots(len(rows), shown + 1, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for r in range(len(rows)):
        axes[r][0].imshow(pictures[r])
        label = f"image {rows[r]}" if names is None else names[rows[r]]
        axes[r][0].set_ylabel(label, fontsize=_FONT)
    axes[0][0].set_title("input", fontsize=_FONT)
    for c in range(shown):
        values = maps[:, c]
        signed = bool((values < 0).any())
        scale = float(values.abs().max()) or 1.0
        norm = Normalize(-scale if signed else 0.0, scale)
        cmap = colormaps[DIVERGING if signed else SEQUENTIAL]
        for r in range(len(rows)):
            axes[r][c + 1].imshow(cmap(norm(values[r].numpy()))[..., :3])
        axes[0][c + 1].set_title(f"ch {int(fm.channels[c])}\n±{scale:.3g}", fontsize=_FONT)
    h, w = fm.map_size
    figure.suptitle(
        f"{fm.layer} — feature maps {h}×{w}, {shown} of {fm.layer_channels} channels "
        f"({fm.selection}, by {fm.order}); one colour scale per channel (column title)",
        fontsize=_FONT + 1,
    )
    return figure


def plot_top_examples(
    te: TopExamples,
    *,
    channels: Sequence[int] | None = None,
    transform: Any = None,
    limit: int = 16,
) -> Figure:
    """Rows: channels; columns: the top-k crops (the strongest unit's receptive field), each
    titled with its dataset index and activation.

    Parameters
    ----------
    te : TopExamples
        From :func:`seethrough.inside.top_examples`.
    channels : sequence of int, optional
        Which rows of ``te`` (positions in ``te.channels``; default: the first ``limit``).
    transform : optional
        The model's preprocessing (its ``invert`` shows pixels).
    limit : int
        Most rows shown by default.

    Returns
    -------
    matplotlib.figure.Figure
    """
    rows = _pick(channels, len(te.channels), limit, "channel row")
    shown = {i: display_images(te.images[i][None], transform)[0] for i in te.images}
    figure = _figure(len(rows), te.k, extra=0.7)
    axes = figure.subplots(len(rows), te.k, squeeze=False)
    for r, row in enumerate(rows):
        for j in range(te.k):
            ax = axes[r][j]
            ax.set_xticks([])
            ax.set_yticks([])
            top, left, bottom, right = (int(v) for v in te.boxes[row, j])
            index = int(te.indices[row, j])
            ax.imshow(shown[index][top:bottom, left:right], interpolation="nearest")
            ax.set_title(f"#{index}  {float(te.values[row, j]):.3g}", fontsize=_FONT - 1)
            if j == 0:
                ax.set_ylabel(f"ch {int(te.channels[row])}", fontsize=_FONT)
    field = te.receptive_field
    figure.suptitle(
        f"{te.layer} — top {te.k} of {te.count} images per channel (title: image index, "
        f"strongest activation); crops: receptive field {field.size[0]}×{field.size[1]}, "
        f"stride {field.stride[0]}, clipped to the image",
        fontsize=_FONT + 1,
        wrap=True,
    )
    return figure


def _pixels(images: Tensor) -> np.ndarray:
    """Images ``(N, C, H, W)`` as RGB: as they are when in [0, 1], else min-max per image."""
    x = images.detach().float().cpu()
    if float(x.min()) >= 0.0 and float(x.max()) <= 1.0:
        x = x if x.shape[1] != 1 else x.expand(-1, 3, -1, -1)
        return x[:, :3].permute(0, 2, 3, 1).numpy()
    return display_images(x)


def plot_visualization(vis: Visualization, *, columns: int = 8) -> Figure:
    """The K optimised images, each titled with its objective and final value."""
    _check_columns(columns)
    count = len(vis.images)
    cols = min(columns, count)
    figure = _figure(math.ceil(count / cols), cols, cell=1.5, extra=0.6)
    pictures = _pixels(vis.images)
    for ax, picture, name, value in zip(
        _tiles(figure, count, columns), pictures, vis.objectives, vis.values
    ):
        ax.imshow(picture)
        ax.set_title(f"{name}\n{float(value):.3g}", fontsize=_FONT - 1)
    steps = int(vis.traces.shape[0])
    figure.suptitle(
        f"activation maximization — {count} objective(s), {steps} steps "
        "(title: objective, final value)",
        fontsize=_FONT + 1,
    )
    return figure


def plot_dream(result: DreamResult, *, images: Sequence[int] | None = None) -> Figure:
    """Rows: images; columns: the original and the dreamed image."""
    rows = _pick(images, len(result.images), 8, "image")
    originals, dreamed = _pixels(result.original[rows]), _pixels(result.images[rows])
    figure = _figure(len(rows), 2, cell=2.4, extra=0.6)
    axes = figure.subplots(len(rows), 2, squeeze=False)
    first, last = result.traces[0], result.traces[-1]
    for r, row in enumerate(rows):
        for c, (picture, label) in enumerate(
            [(originals[r], f"original  {float(first[row]):.3g}"), (dreamed[r], "dreamed")]
        ):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.imshow(picture)
            ax.set_title(label if c == 0 else f"{label}  {float(last[row]):.3g}", fontsize=_FONT)
    sizes = " → ".join(f"{h}×{w}" for h, w in result.sizes)
    figure.suptitle(
        f"DeepDream — {result.objective}\noctaves {sizes}; titles: objective before the "
        "first and before the last step",
        fontsize=_FONT + 1,
    )
    return figure


def plot_inversion(
    result: InversionResult | LayerInversions, *, images: Sequence[int] | None = None
) -> Figure:
    """Rows: images; columns: the original, then the reconstruction from each layer, titled
    with the layer and its feature and pixel errors."""
    results = list(getattr(result, "results", [result]))
    first = results[0]
    rows = _pick(images, len(first.images), 8, "image")
    figure = _figure(len(rows), 1 + len(results), cell=1.8, extra=0.7)
    axes = figure.subplots(len(rows), 1 + len(results), squeeze=False)
    originals = _pixels(first.original[rows])
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for r in range(len(rows)):
        axes[r][0].imshow(originals[r])
    axes[0][0].set_title("original", fontsize=_FONT)
    for c, one in enumerate(results, start=1):
        pictures = _pixels(one.images[rows])
        for r, row in enumerate(rows):
            axes[r][c].imshow(pictures[r])
            axes[r][c].set_title(
                f"{one.layer}\nfeat {float(one.feature_error[row]):.3g} "
                f"pix {float(one.pixel_error[row]):.3g}",
                fontsize=_FONT - 1,
            )
    figure.suptitle(
        "feature inversion — reconstructions from each layer's activations "
        "(feat: relative feature error, pix: pixel error; lower is closer)",
        fontsize=_FONT + 1,
        wrap=True,
    )
    return figure


def plot_traces(traces: Tensor, names: Sequence[str], *, title: str, ylabel: str) -> Figure:
    """One line per column of ``traces`` ``(steps, K)``: how an objective or loss evolved."""
    values = traces.detach().double().cpu().numpy()
    if values.ndim != 2 or values.shape[1] != len(names):
        raise InvalidOptionError(
            f"traces must be (steps, {len(names)}) for {len(names)} names, got {values.shape}"
        )
    figure = Figure(figsize=(5.5, 3.4), layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    for k, name in enumerate(names):
        ax.plot(np.arange(len(values)), values[:, k], linewidth=1, label=name)
    ax.set_xlabel("step", fontsize=_FONT + 1)
    ax.set_ylabel(ylabel, fontsize=_FONT + 1)
    ax.set_title(title, fontsize=_FONT + 2)
    if len(names) <= 12:
        ax.legend(fontsize=_FONT - 1, ncols=2)
    return figure
