"""A card per module: what ablation, gradients and probes say about it, joined.

:func:`anatomy` runs the analyses of this package over a labelled dataset for a list of
modules (default: the network's blocks, each taken at its output — :mod:`.blocks`) and
returns one :class:`ModuleCard` per module:

* ``ablation`` — the whole output mean-ablated (every unit set to its mean over the
  reference set): overall and per-class accuracy drop;
* ``channel_drop`` — each channel zero-ablated on its own (a batched sweep), its
  accuracy drop (``channel_class_drop``: per class, ``(C, classes)``); and the
  cumulative curve of ablating the most harmful channels first;
* ``gradients`` — the module's gradient sensitivity (:mod:`.gradients`);
* ``probe`` / ``random_probe`` — held-out accuracy of a linear probe on the module's
  output, for the trained network and a randomly initialised copy (:mod:`.probes`).

The labelled dataset may be an :class:`~seethrough.data.ImageSource` of model inputs
(:func:`seethrough.core.datasets.model_source`) instead of tensors: every analysis then
streams it in batches (memory: one batch plus each analysis's own per-class or
per-feature state), and the ``sweep_size`` / ``probe_size`` subsets are the source's first
images. Unreadable images are skipped by each analysis and counted
(``Anatomy.settings["skipped"]``).

Cards are frozen, written as JSON by :func:`seethrough.reporting.serialize.to_jsonable` and drawn
by :func:`seethrough.viz.plot_card`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..core.datasets import stream
from ..core.guard import unwrap_model
from ..core.layers import find_layer
from ..data.sources import ImageSource, open_source
from ..errors import InvalidInputError, InvalidOptionError
from ..words import Description
from .ablation import (
    Ablation,
    AblationResult,
    Evaluation,
    ablate,
    check_labelled,
    check_source,
)
from .blocks import chosen_modules, output_shapes
from .gradients import GradientAnalysis, ModuleGradients, gradient_analysis
from .probes import (
    PIXELS,
    Probe,
    ProbeTable,
    holm_family_map,
    model_device,
    paired_p_value,
    probe_layers,
)

__all__ = ["Anatomy", "ModuleCard", "anatomy"]

CURVE_POINTS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

Data = Tensor | ImageSource
"""Model inputs: a tensor ``(N, C, H, W)`` (labels apart) or a labelled source."""


@dataclass(frozen=True, eq=False)
class ModuleCard:
    """Everything measured about one module (module docstring); absent parts are None."""

    name: str
    module: str
    kind: str
    output_shape: tuple[int, ...]
    parameters: int
    ablation: Evaluation | None
    accuracy_drop: float | None
    class_accuracy_drop: Tensor | None
    channel_drop: Tensor | None
    channel_class_drop: Tensor | None
    cumulative: tuple[tuple[int, float], ...]
    gradients: ModuleGradients | None
    probe: Probe | None
    random_probe: Probe | None
    extras: dict[str, Any] = field(default_factory=dict)
    channel_order: tuple[int, ...] = ()
    """Channels from the most harmful to the least on the sweep images (the order of
    ``cumulative``): to re-measure a chosen channel on images it was not chosen on."""

    @property
    def worst_class(self) -> int | None:
        """The class whose accuracy drops most when the module is ablated."""
        if self.class_accuracy_drop is None:
            return None
        return int(torch.nan_to_num(self.class_accuracy_drop, nan=-1.0).argmax())

    @property
    def probe_p_value(self) -> float | None:
        """:func:`~seethrough.anatomy.probes.paired_p_value` of the trained network's probe
        against the random network's (None when either is missing)."""
        if self.probe is None or self.random_probe is None:
            return None
        return paired_p_value(self.probe, self.random_probe)

    def describe(self, lang: str = "en", class_names: Sequence[str] | None = None) -> Description:
        """What ablation, channels and probes say about this module, in words
        (:func:`seethrough.anatomy.describe.describe_card`); ``class_names`` name the
        classes (default: their indices)."""
        from .describe import describe_card

        return describe_card(self, lang, class_names)


@dataclass(frozen=True, eq=False)
class Anatomy:
    """The cards of an :func:`anatomy` run, with the baselines they are read against."""

    cards: tuple[ModuleCard, ...]
    baseline: Evaluation
    pixel_probe: Probe | None
    class_names: tuple[str, ...] | None
    gradients: GradientAnalysis | None
    probes: ProbeTable | None
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)

    def describe(self, lang: str = "en") -> Description:
        """The run in words: the baselines, the module the network relies on most, and
        every card (:func:`seethrough.anatomy.describe.describe_anatomy`)."""
        from .describe import describe_anatomy

        return describe_anatomy(self, lang)

    def probe_p_holm(self) -> tuple[float | None, ...]:
        """Per card, its :attr:`ModuleCard.probe_p_value` Holm-corrected over the cards
        that have one (None where it is None): saying "training made the classes more
        readable" of several modules is a family of claims."""
        raw = {str(k): c.probe_p_value for k, c in enumerate(self.cards)}
        corrected = holm_family_map(raw)
        return tuple(corrected[str(k)] for k in range(len(self.cards)))

    def card(self, name: str) -> ModuleCard:
        for c in self.cards:
            if name in (c.name, c.module):
                return c
        raise InvalidOptionError(
            f"no card {name!r} (cards: {', '.join(c.name for c in self.cards)})"
        )


@dataclass(frozen=True, eq=False)
class _Sweep:
    """One module's channel sweep: each channel zero-ablated alone (``result``), the
    channels from the most harmful to the least, and the cumulative curve in that order:
    ``(k, accuracy drop with the first k channels ablated together)``."""

    result: AblationResult
    order: tuple[int, ...]
    cumulative: tuple[tuple[int, float], ...]


@dataclass(frozen=True, eq=False)
class _Run:
    """What every analysis of one :func:`anatomy` call shares: the network, the seed,
    the batch size and the progress callback (``progress(stage, done, total)``)."""

    module: nn.Module
    seed: int
    batch_size: int | None
    progress: Callable[[str, int, int], None] | None

    def report(self, stage: str) -> Callable[[int, int], None] | None:
        progress = self.progress
        if progress is None:
            return None
        return lambda done, total: progress(stage, done, total)

    def ablate(
        self, x: Data, y: Tensor | None, ablations: list[Ablation], stage: str | None = None
    ) -> AblationResult:
        report = self.report(stage) if stage is not None else None
        return ablate(
            self.module,
            x,
            y,
            ablations,
            seed=self.seed,
            batch_size=self.batch_size,
            progress=report,
        )

    def mean_ablation(self, x: Data, y: Tensor | None, names: list[str]) -> AblationResult:
        """Each module's whole output mean-ablated, one module at a time."""
        return self.ablate(x, y, [Ablation(m, None, "mean") for m in names], "ablation")

    def gradients(self, x: Data, y: Tensor | None, names: list[str]) -> GradientAnalysis:
        report = self.report("gradients")
        return gradient_analysis(
            self.module, x, y, names, batch_size=self.batch_size, progress=report
        )

    def channel_sweeps(
        self, x: Data, y: Tensor | None, names: list[str], shapes: dict[str, tuple[int, ...]]
    ) -> dict[str, _Sweep]:
        """The sweep of every module whose output has channels (a dimension past the batch)."""
        return {m: self.sweep(x, y, m, shapes[m][0]) for m in names if shapes.get(m, ())}

    def sweep(self, x: Data, y: Tensor | None, name: str, channels: int) -> _Sweep:
        alone = [Ablation(name, (c,), "zero") for c in range(channels)]
        result = self.ablate(x, y, alone, f"channels of {name}")
        order = result.ranking()
        curve = self.cumulative(x, y, name, order, result.baseline.accuracy)
        return _Sweep(result, tuple(order), curve)

    def cumulative(
        self, x: Data, y: Tensor | None, name: str, order: list[int], base: float
    ) -> tuple[tuple[int, float], ...]:
        """``(k, base − accuracy)`` with the first ``k`` channels of ``order`` zero-ablated
        together, for ``k`` in :data:`CURVE_POINTS` below the channel count, and all."""
        counts = [k for k in CURVE_POINTS if k < len(order)] + [len(order)]
        together = [Ablation(name, tuple(order[:k]), "zero") for k in counts]
        result = self.ablate(x, y, together)
        return tuple((k, base - e.accuracy) for k, e in zip(counts, result.evaluations))

    def probes(self, x: Data, y: Tensor | None, names: list[str]) -> ProbeTable:
        report = self.report("probes")
        return probe_layers(
            self.module, x, y, names, seed=self.seed, batch_size=self.batch_size, progress=report
        )


@dataclass(frozen=True, eq=False)
class _Measured:
    """What the analyses measured over all modules; :meth:`card` reads one module's share
    (``k``: the module's place in the list the analyses were given)."""

    module: nn.Module
    shapes: dict[str, tuple[int, ...]]
    whole: AblationResult
    gradients: GradientAnalysis | None
    sweeps: dict[str, _Sweep]
    probes: ProbeTable | None

    def card(self, k: int, title: str, name: str) -> ModuleCard:
        found = find_layer(self.module, name)
        sweep, table, grads = self.sweeps.get(name), self.probes, self.gradients
        return ModuleCard(
            name=title,
            module=name,
            kind=type(found).__name__,
            output_shape=self.shapes.get(name, ()),
            parameters=sum(p.numel() for p in found.parameters()),
            ablation=self.whole.evaluations[k],
            accuracy_drop=float(self.whole.accuracy_drop[k]),
            class_accuracy_drop=self.whole.class_accuracy_drop[k],
            channel_drop=sweep.result.accuracy_drop if sweep is not None else None,
            channel_class_drop=sweep.result.class_accuracy_drop if sweep is not None else None,
            cumulative=sweep.cumulative if sweep is not None else (),
            gradients=grads.module(name) if grads is not None else None,
            probe=table.trained[k] if table is not None else None,
            random_probe=table.random[k] if table is not None and table.random else None,
            channel_order=sweep.order if sweep is not None else (),
        )


def anatomy(
    model: nn.Module | Any,
    inputs: Tensor | ImageSource,
    labels: Tensor | None,
    modules: Sequence[str] | None = None,
    *,
    channel_sweep: bool = True,
    sweep_size: int | None = 2000,
    probes: bool = True,
    probe_size: int | None = 5000,
    gradients: bool = True,
    seed: int = 0,
    batch_size: int | None = None,
    class_names: Sequence[str] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> Anatomy:
    """One :class:`ModuleCard` per module (module docstring).

    ``inputs``: a tensor ``(N, C, H, W)`` with ``labels`` ``(N,)``, or an
    ``ImageSource`` of labelled model inputs with ``labels=None`` (streamed; module
    docstring). ``modules``: dotted module names (default:
    :func:`~seethrough.anatomy.block_outputs`). Whole-module ablation and gradients use
    every input; channel sweeps the first ``sweep_size``, probes the first ``probe_size``
    (``None``: all). ``progress(stage, done, total)``.
    """
    started = time.perf_counter()
    module, labels_of_model, _ = unwrap_model(model, class_names)
    if isinstance(inputs, ImageSource):
        check_source(inputs, labels, "anatomy")
        x: Data = inputs
        y = None
        example = _first_input(inputs, model_device(module))
    else:
        x, y = check_labelled(inputs, labels, module)
        example = x[:1]
    named = chosen_modules(module, example, modules)
    names = [m for _, m in named]
    shapes = output_shapes(module, example)
    run = _Run(module, seed, batch_size, progress)
    (sx, sy), (px, py) = _head(x, y, sweep_size), _head(x, y, probe_size)
    measured = _Measured(
        module,
        shapes,
        whole=run.mean_ablation(x, y, names),
        gradients=run.gradients(x, y, names) if gradients else None,
        sweeps=run.channel_sweeps(sx, sy, names, shapes) if channel_sweep else {},
        probes=run.probes(px, py, names) if probes else None,
    )
    settings: dict[str, Any] = {
        "inputs": len(x),
        "sweep_size": len(sx),
        "probe_size": len(px),
        "seed": seed,
        "modules": names,
        "layer_name_of_pixels": PIXELS,
    }
    if isinstance(x, ImageSource):
        settings["skipped"] = measured.whole.skipped
    return Anatomy(
        cards=tuple(measured.card(k, title, m) for k, (title, m) in enumerate(named)),
        baseline=measured.whole.baseline,
        pixel_probe=measured.probes.pixels if measured.probes is not None else None,
        class_names=tuple(labels_of_model) if labels_of_model else None,
        gradients=measured.gradients,
        probes=measured.probes,
        seconds=time.perf_counter() - started,
        settings=settings,
    )


def _head(x: Data, y: Tensor | None, size: int | None) -> tuple[Data, Tensor | None]:
    """The first ``size`` images (all when ``None``): rows of a tensor, or the first
    images of a source (``open_source(..., limit=size)``; unreadable ones included in the
    count and skipped by the analyses, as in the whole source)."""
    if isinstance(x, ImageSource):
        return (x if size is None or size >= len(x) else open_source(x, limit=size)), None
    return x[:size], None if y is None else y[:size]


def _first_input(source: ImageSource, device: Any) -> Tensor:
    """``(1, C, H, W)``: the source's first readable image, on ``device`` (to find the
    modules' output shapes)."""
    for batch in stream(source, 16):
        if len(batch):
            return batch.inputs[:1].to(device)
    raise InvalidInputError(f"none of the {len(source)} images of {source!r} could be read")
