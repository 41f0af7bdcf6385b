"""Figures of :mod:`seethrough.anatomy`: one module card, and the whole network at a glance."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

__all__ = ["plot_anatomy", "plot_card"]


def _class_labels(names: Sequence[str] | None, classes: int) -> list[str]:
    if names is not None and len(names) == classes:
        return [str(n) for n in names]
    return [str(c) for c in range(classes)]


def plot_card(card: Any, class_names: Sequence[str] | None = None) -> Figure:
    """A module card: per-class effect of ablating it, its channels ranked by effect with
    the cumulative curve, per-class gradient sensitivity, and what a probe reads off it."""
    figure = Figure(figsize=(11, 6.4), layout="constrained")
    (a, b), (c, d) = figure.subplots(2, 2)
    figure.suptitle(
        f"{card.name} — module {card.module} ({card.kind}, output "
        f"{'×'.join(str(s) for s in card.output_shape)}, {card.parameters:,} parameters)"
    )
    if card.class_accuracy_drop is not None:
        drops = card.class_accuracy_drop.numpy()
        labels = _class_labels(class_names, len(drops))
        a.bar(range(len(drops)), drops, color="#b2182b")
        a.set_xticks(range(len(drops)), labels, rotation=45, ha="right", fontsize=7)
        a.set_ylabel("accuracy drop")
        a.set_title(f"mean-ablated whole output: overall drop {card.accuracy_drop:.3f}")
    else:
        a.set_axis_off()
    if card.channel_drop is not None and len(card.channel_drop):
        ranked = np.sort(card.channel_drop.numpy())[::-1]
        b.bar(range(len(ranked)), ranked, color="#4393c3", width=1.0, label="one channel")
        b.set_xlabel("channels, most harmful first")
        b.set_ylabel("accuracy drop")
        if card.cumulative:
            ks, vs = zip(*card.cumulative)
            twin = b.twinx()
            twin.plot(ks, vs, "o-", color="#d6604d", label="first k together")
            twin.set_ylabel("accuracy drop (cumulative)", color="#d6604d")
        b.set_title("zero-ablated channels")
    else:
        b.set_axis_off()
    if card.gradients is not None:
        grads = card.gradients.class_output_grad.numpy()
        c.bar(range(len(grads)), grads, color="#5aae61")
        c.set_xticks(
            range(len(grads)),
            _class_labels(class_names, len(grads)),
            rotation=45,
            ha="right",
            fontsize=7,
        )
        c.set_ylabel("mean ‖∂loss/∂output‖")
        c.set_title(f"gradient sensitivity (all images: {card.gradients.output_grad:.3g})")
    else:
        c.set_axis_off()
    d.set_axis_off()
    lines = []
    if card.probe is not None:
        lines.append(f"linear probe, held out: {card.probe.test_accuracy:.3f}")
        lines.append(f"  chance (most common class): {card.probe.chance:.3f}")
    if card.random_probe is not None:
        lines.append(f"  same layer, random network: {card.random_probe.test_accuracy:.3f}")
    if card.gradients is not None and card.gradients.param_grad is not None:
        lines.append(f"‖mean ∂loss/∂parameters‖: {card.gradients.param_grad:.3g}")
        if card.gradients.relative_param_grad is not None:
            lines.append(f"  relative to ‖parameters‖: {card.gradients.relative_param_grad:.3g}")
    d.text(0, 1, "\n".join(lines) or "no probe or gradients", va="top", family="monospace")
    return figure


def plot_anatomy(result: Any) -> Figure:
    """Per module: accuracy drop when ablated, gradient sensitivity, probe accuracy
    against the raw-pixel and random-network baselines."""
    cards = result.cards
    names = [c.name for c in cards]
    x = np.arange(len(cards))
    figure = Figure(figsize=(max(7.0, 1.1 * len(cards) + 3), 7.5), layout="constrained")
    a, b, c = figure.subplots(3, 1, sharex=True)
    a.bar(x, [c.accuracy_drop or 0.0 for c in cards], color="#b2182b")
    a.set_ylabel("accuracy drop\n(mean-ablated)")
    best = [float(c.channel_drop.max()) if c.channel_drop is not None else 0.0 for c in cards]
    a.plot(x, best, "o", color="#2166ac", label="worst single channel (zeroed)")
    a.legend(fontsize=8)
    b.bar(x, [c.gradients.output_grad if c.gradients else 0.0 for c in cards], color="#5aae61")
    b.set_ylabel("mean ‖∂loss/∂output‖")
    b.set_yscale("log")
    trained = [c.probe.test_accuracy if c.probe else np.nan for c in cards]
    random = [c.random_probe.test_accuracy if c.random_probe else np.nan for c in cards]
    c.plot(x, trained, "o-", label="trained network")
    c.plot(x, random, "s--", label="random network")
    if result.pixel_probe is not None:
        c.axhline(result.pixel_probe.test_accuracy, color="gray", ls=":", label="raw pixels")
        c.axhline(result.pixel_probe.chance, color="black", lw=0.8, label="chance")
    c.set_ylabel("probe accuracy\n(held out)")
    c.set_ylim(0, 1.02)
    c.legend(fontsize=8)
    c.set_xticks(x, names, rotation=30, ha="right")
    figure.suptitle(
        f"What each module does — baseline accuracy {result.baseline.accuracy:.3f} "
        f"on {result.settings.get('inputs', '?')} images"
    )
    return figure
