"""The figure that links concept-relevance channels to what they detect: for each channel,
its activation-maximization image and its top-activating dataset examples.

Concept relevance (Achtibat et al., 2023) names the channels of a layer that carry a
prediction; a channel is only a number until it is shown what excites it. Each row of
:func:`plot_concept_links` is one channel: the image optimised to excite it
(:func:`seethrough.inside.maximize`, pixels in [0, 1] as optimised) and the receptive-field
crops of the dataset images that excite it most (:func:`seethrough.inside.top_examples`,
shown through the model's preprocessing inverse, each titled with its dataset index and
activation). The row's label says where the channel ranked among the explained images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..errors import InvalidOptionError
from .heatmap import display_images

if TYPE_CHECKING:
    from ..decompose.concepts import ConceptRelevance
    from ..inside.maximize import Visualization
    from ..inside.top_examples import TopExamples

__all__ = ["plot_concept_links"]

_FONT = 7
_CELL = 1.25  # inches per tile


def _pixels(images: Any) -> np.ndarray:
    """Optimised images ``(K, C, H, W)`` in [0, 1] as RGB ``(K, H, W, 3)``, unscaled."""
    x = images.detach().float().clamp(0, 1)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    elif x.shape[1] != 3:
        x = x.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def _ranked_in(result: ConceptRelevance, channel: int) -> str:
    """Where ``channel`` is a top channel: ``img 0 #1 (23%)``, one per row."""
    parts = []
    for row in range(len(result.top_channels)):
        ids = result.top_channels[row].tolist()
        if channel in ids:
            k = ids.index(channel)
            share = float(result.top_share[row, k])
            parts.append(f"img {int(result.image_index[row])} #{k + 1} ({share:.0%})")
    return "\n".join(parts[:3] + ([f"+{len(parts) - 3} more"] if len(parts) > 3 else []))


def plot_concept_links(
    result: ConceptRelevance,
    channels: Sequence[int],
    *,
    examples: TopExamples | None = None,
    visualization: Visualization | None = None,
    transform: Any = None,
) -> Figure:
    """Rows: ``channels`` of ``result.layer``; columns: the channel's activation-
    maximization image (when ``visualization`` is given), then its top-activating
    examples (when ``examples`` is given).

    Parameters
    ----------
    result : ConceptRelevance
        From :func:`seethrough.decompose.concepts`; labels each row with the images the
        channel ranked top for (its rank and share of the absolute relevance).
    channels : sequence of int
        Channel ids, each present in ``examples.channels`` and, in the same order as
        ``channels``, in ``visualization`` (one objective per channel).
    examples : TopExamples, optional
        From :func:`seethrough.inside.top_examples` for (at least) these channels.
    visualization : Visualization, optional
        From :func:`seethrough.inside.maximize`, row ``i`` for ``channels[i]``.
    transform : optional
        The model's preprocessing (its ``invert`` shows the examples' pixels); default:
        the result's.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    InvalidOptionError
        No channels, neither ``examples`` nor ``visualization``, a channel missing from
        ``examples``, or a ``visualization`` with another number of images.
    """
    wanted = [int(c) for c in channels]
    if not wanted or (examples is None and visualization is None):
        raise InvalidOptionError(
            "plot_concept_links needs channels and at least one of examples= (top_examples) "
            "or visualization= (maximize)"
        )
    rows: list[int] = []
    if examples is not None:
        listed = examples.channels.tolist()
        missing = [c for c in wanted if c not in listed]
        if missing:
            raise InvalidOptionError(
                f"channels {missing} are not in the top examples (they hold {listed})"
            )
        rows = [listed.index(c) for c in wanted]
    if visualization is not None and len(visualization.images) != len(wanted):
        raise InvalidOptionError(
            f"the visualization has {len(visualization.images)} images for {len(wanted)} "
            "channels; give one objective per channel, in the same order"
        )
    first = 1 if visualization is not None else 0
    k = examples.k if examples is not None else 0
    columns = first + k
    figure = Figure(figsize=(_CELL * columns + 1.4, _CELL * len(wanted) + 0.8))
    figure.set_layout_engine("constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(wanted), columns, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if visualization is not None:
        pictures = _pixels(visualization.images)
        for r, value in enumerate(visualization.values.tolist()):
            axes[r][0].imshow(pictures[r])
            axes[r][0].set_title(f"maximised {value:.3g}", fontsize=_FONT - 1)
    if examples is not None:
        shown = {
            i: display_images(examples.images[i][None], transform or result.input_transform)[0]
            for i in examples.images
        }
        for r, row in enumerate(rows):
            for j in range(k):
                ax = axes[r][first + j]
                top, left, bottom, right = (int(v) for v in examples.boxes[row, j])
                index = int(examples.indices[row, j])
                ax.imshow(shown[index][top:bottom, left:right], interpolation="nearest")
                ax.set_title(f"#{index}  {float(examples.values[row, j]):.3g}", fontsize=_FONT - 1)
    for r, channel in enumerate(wanted):
        axes[r][0].set_ylabel(f"ch {channel}\n{_ranked_in(result, channel)}", fontsize=_FONT - 1)
    parts = []
    if visualization is not None:
        steps = int(visualization.traces.shape[0])
        parts.append(f"first column: the image optimised to excite the channel ({steps} steps)")
    if examples is not None:
        parts.append(
            f"then the {k} dataset crops that excite it most (of {examples.count} images; "
            "title: image index, activation)"
        )
    layer = examples.layer if examples is not None else result.layer
    figure.suptitle(
        f"what the top channels of {result.layer} detect, at {layer}: " + "; ".join(parts),
        fontsize=_FONT + 1,
        wrap=True,
    )
    return figure
