"""A card per module: what ablation, gradients and probes say about it, joined.

:func:`anatomy` runs the analyses of this package over a labelled dataset for a list of
modules (default: the network's blocks, each taken at its output — for EfficientNet-Lite0
the stem, each MBConv stage, the head and the classifier; for a plain CNN each conv and
linear layer) and returns one :class:`ModuleCard` per module:

* ``ablation`` — the whole output mean-ablated (every unit set to its mean over the
  reference set): overall and per-class accuracy drop;
* ``channel_drop`` — each channel zero-ablated on its own (a batched sweep), its
  accuracy drop (``channel_class_drop``: per class, ``(C, classes)``); and the
  cumulative curve of ablating the most harmful channels first;
* ``gradients`` — the module's gradient sensitivity (:mod:`.gradients`);
* ``probe`` / ``random_probe`` — held-out accuracy of a linear probe on the module's
  output, for the trained network and a randomly initialised copy (:mod:`.probes`).

Cards are frozen, written as JSON by :func:`seethrough.report.serialize.to_jsonable` and drawn
by :func:`seethrough.viz.plot_card`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..core.layers import find_layer
from ..errors import InvalidOptionError
from .ablation import Ablation, AblationResult, Evaluation, ablate, check_labelled
from .gradients import GradientAnalysis, ModuleGradients, gradient_analysis
from .probes import PIXELS, Probe, ProbeTable, probe_layers

__all__ = ["Anatomy", "ModuleCard", "anatomy", "block_outputs"]

CURVE_POINTS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


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

    def card(self, name: str) -> ModuleCard:
        for c in self.cards:
            if name in (c.name, c.module):
                return c
        raise InvalidOptionError(
            f"no card {name!r} (cards: {', '.join(c.name for c in self.cards)})"
        )


def block_outputs(model: nn.Module, example: Tensor) -> list[tuple[str, str]]:
    """``(block name, module whose output is the block's output)`` in execution order:
    the blocks of :func:`seethrough.core.steps.randomization_steps` (a stage
    ``_blocks.1-2`` ends at ``_blocks.2``; a conv followed by its norm ends at the norm)."""
    from ..core.steps import randomization_steps

    names = dict(model.named_modules())
    out = []
    for step in randomization_steps(model, example, "block"):
        last = step.modules[-1]
        head, _, tail = step.name.rpartition(".")
        if "-" in tail and f"{head}.{tail.split('-')[1]}" in names:
            out.append((step.name, f"{head}.{tail.split('-')[1]}"))
        elif step.name in names and last.startswith(step.name + "."):
            out.append((step.name, step.name))
        else:
            out.append((step.name, last))
    return out


def _shapes(model: nn.Module, example: Tensor) -> dict[str, tuple[int, ...]]:
    """Each module's output shape (without the batch dimension), from one traced pass."""
    from ..core.guard import guarded
    from ..core.layers import trace_layers

    with guarded(model, [example.device]):
        return {info.name: info.shape[1:] for info in trace_layers(model, example)}


def _cumulative(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    module: str,
    order: list[int],
    base: float,
    seed: int,
    batch_size: int | None,
) -> tuple[tuple[int, float], ...]:
    counts = [k for k in CURVE_POINTS if k < len(order)] + [len(order)]
    ablations = [Ablation(module, tuple(order[:k]), "zero") for k in counts]
    result = ablate(model, x, y, ablations, seed=seed, batch_size=batch_size)
    return tuple((k, base - e.accuracy) for k, e in zip(counts, result.evaluations))


def anatomy(
    model: nn.Module | Any,
    inputs: Tensor,
    labels: Tensor,
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

    ``modules``: dotted module names (default: :func:`block_outputs`). Whole-module
    ablation and gradients use every input; channel sweeps the first ``sweep_size``,
    probes the first ``probe_size`` (``None``: all). ``progress(stage, done, total)``.
    """
    from ..core.guard import unwrap_model as _unwrap

    started = time.perf_counter()
    module, labels_of_model, _ = _unwrap(model, class_names)
    x, y = check_labelled(inputs, labels, module)
    if modules is None:
        named = block_outputs(module, x[:1])
    else:
        for m in modules:
            find_layer(module, m)
        named = [(m, m) for m in modules]
    names = [m for _, m in named]
    shapes = _shapes(module, x[:1])

    def report(stage: str) -> Callable[[int, int], None] | None:
        if progress is None:
            return None
        return lambda done, total: progress(stage, done, total)

    whole = ablate(
        module,
        x,
        y,
        [Ablation(m, None, "mean") for m in names],
        seed=seed,
        batch_size=batch_size,
        progress=report("ablation"),
    )
    grads = (
        gradient_analysis(module, x, y, names, batch_size=batch_size, progress=report("gradients"))
        if gradients
        else None
    )
    sx, sy = x[:sweep_size], y[:sweep_size]
    sweeps: dict[str, AblationResult] = {}
    if channel_sweep:
        for m in names:
            shape = shapes.get(m, ())
            if len(shape) >= 1:
                sweeps[m] = ablate(
                    module,
                    sx,
                    sy,
                    [Ablation(m, (c,), "zero") for c in range(shape[0])],
                    seed=seed,
                    batch_size=batch_size,
                    progress=report(f"channels of {m}"),
                )
    table = (
        probe_layers(
            module,
            x[:probe_size],
            y[:probe_size],
            names,
            seed=seed,
            batch_size=batch_size,
            progress=report("probes"),
        )
        if probes
        else None
    )
    cards = []
    for k, (title, m) in enumerate(named):
        sweep = sweeps.get(m)
        curve: tuple[tuple[int, float], ...] = ()
        order: list[int] = []
        if sweep is not None:
            order = sweep.ranking()
            curve = _cumulative(module, sx, sy, m, order, sweep.baseline.accuracy, seed, batch_size)
        found = find_layer(module, m)
        cards.append(
            ModuleCard(
                name=title,
                module=m,
                kind=type(found).__name__,
                output_shape=shapes.get(m, ()),
                parameters=sum(p.numel() for p in found.parameters()),
                ablation=whole.evaluations[k],
                accuracy_drop=float(whole.accuracy_drop[k]),
                class_accuracy_drop=whole.class_accuracy_drop[k],
                channel_drop=sweep.accuracy_drop if sweep is not None else None,
                channel_class_drop=sweep.class_accuracy_drop if sweep is not None else None,
                cumulative=curve,
                gradients=grads.module(m) if grads is not None else None,
                probe=table.trained[k] if table is not None else None,
                random_probe=table.random[k] if table is not None and table.random else None,
                channel_order=tuple(order),
            )
        )
    return Anatomy(
        cards=tuple(cards),
        baseline=whole.baseline,
        pixel_probe=table.pixels if table is not None else None,
        class_names=tuple(labels_of_model) if labels_of_model else None,
        gradients=grads,
        probes=table,
        seconds=time.perf_counter() - started,
        settings={
            "inputs": len(x),
            "sweep_size": len(sx),
            "probe_size": len(x[:probe_size]),
            "seed": seed,
            "modules": [m for _, m in named],
            "layer_name_of_pixels": PIXELS,
        },
    )
