"""What each module of the Fashion-MNIST CNN does: the results table in docs/.

    PYTHONPATH=src python scripts/anatomy_table.py

Writes docs/anatomy-results.md, docs/anatomy-results.json and docs/anatomy/*.png from the
real test set (Debian's dataset-fashion-mnist): ablation (whole module, every channel,
cumulative), gradient sensitivity, linear probes on the classes and on a surrogate task
against raw-pixel and random-network baselines, and TCAV for two concepts. About 10
minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path
from typing import Any

import torch

from seethrough.anatomy import anatomy, probe_layers, surrogate_labels, tcav
from seethrough.data.fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist
from seethrough.models.fashion_cnn import fashion_cnn
from seethrough.viz import plot_anatomy, plot_card, save_figure

ROOT = Path(__file__).resolve().parents[1]
SURROGATE = {
    "tops": [0, 2, 4, 6],  # T-shirt/top, Pullover, Coat, Shirt
    "trousers and dresses": [1, 3],
    "footwear": [5, 7, 9],  # Sandal, Sneaker, Ankle boot
    "bags": [8],
}


def fmt(v: float | None, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def half_way(card: Any, baseline: float, chance: float) -> str:
    """Fewest channels (most harmful first) whose joint ablation takes accuracy half-way
    to chance."""
    target = (baseline - chance) / 2
    for k, drop in card.cumulative:
        if drop >= target:
            return str(k)
    return f"> {card.cumulative[-1][0]}" if card.cumulative else "–"


def concept_tests(model: Any, train: Any, x: Any, y: Any) -> tuple[list[Any], int, int]:
    """TCAV for class "Ankle boot" at two depths: a footwear concept, trousers, and a
    random control; Bonferroni over the tests."""
    xtr, ytr = train.inputs(0, 12000), train.labels[:12000]
    footwear = xtr[(ytr == 5) | (ytr == 7)][:60]  # sandals and sneakers, no boots
    trousers = xtr[ytr == 1][:60]
    pool = xtr[6000:12000]
    random_concept = xtr[:60]
    boots = x[y == 9][:300]
    concepts = []
    tests = [
        (layer, name, examples)
        for layer in ("conv2", "fc1")
        for name, examples in (
            ("footwear", footwear),
            ("trousers", trousers),
            ("random images", random_concept),
        )
    ]
    alpha = 0.05 / len(tests)  # Bonferroni over the table's tests
    for layer, name, examples in tests:
        concepts.append(
            tcav(model, layer, examples, pool, boots, 9, concept_name=name, alpha=alpha)
        )
    return concepts, len(tests), len(boots)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--sweep", type=int, default=2000)
    args = parser.parse_args()
    started = time.perf_counter()
    model = fashion_cnn()
    test, train = load_fashion_mnist("test"), load_fashion_mnist("train")
    x, y = test.inputs(0, args.images), test.labels[: args.images]
    result = anatomy(
        model,
        x,
        y,
        sweep_size=args.sweep,
        probe_size=args.images,
        class_names=FASHION_MNIST_CLASSES,
    )
    names = [c.module for c in result.cards]
    surrogate = surrogate_labels(y, SURROGATE)
    groups = probe_layers(model, x, surrogate, names, seed=0)
    concepts, tests, boots = concept_tests(model, train, x, y)
    seconds = time.perf_counter() - started

    base = result.baseline.accuracy
    pixels = result.pixel_probe
    assert pixels is not None and groups.pixels is not None
    chance = pixels.chance
    lines = [
        "# What each module of the Fashion-MNIST CNN does",
        "",
        "Made by `PYTHONPATH=src python scripts/anatomy_table.py` "
        f"({seconds / 60:.1f} min on this machine, torch {torch.__version__}). "
        f"Model: `fashion_cnn()` (test accuracy {base:.4f} on the {len(x)} test images used). "
        "Whole-module ablation, gradients and probes use all of them; channel sweeps the "
        f"first {args.sweep}. Each block is taken at its output (conv1, conv2: before their "
        "ReLU).",
        "",
        "## Per block",
        "",
        "| block | output | parameters | mean-ablated: accuracy drop | worst single channel: "
        "drop (class most hurt, its drop) | channels to lose half the accuracy | "
        "mean ‖∂loss/∂output‖ | ‖∂loss/∂θ‖ / ‖θ‖ | probe: classes | probe, random network |"
        " probe: surrogate task |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for k, card in enumerate(result.cards):
        drops = card.channel_drop
        assert drops is not None and card.channel_class_drop is not None
        worst = int(drops.argmax())
        per_class = card.channel_class_drop.nan_to_num(nan=-1.0)
        c, cls = divmod(int(per_class.argmax()), per_class.shape[1])
        hurt = f"{FASHION_MNIST_CLASSES[cls]} {float(per_class[c, cls]):.3f} (channel {c})"
        g = card.gradients
        lines.append(
            f"| {card.name} | {'×'.join(map(str, card.output_shape))} | {card.parameters:,} | "
            f"{fmt(card.accuracy_drop)} | {float(drops[worst]):.3f} (channel {worst}); "
            f"{hurt} | {half_way(card, base, chance)} of {len(drops)} | "
            f"{fmt(g.output_grad if g else None)} | "
            f"{fmt(g.relative_param_grad if g else None, 4)} | "
            f"{fmt(card.probe.test_accuracy if card.probe else None)} | "
            f"{fmt(card.random_probe.test_accuracy if card.random_probe else None)} | "
            f"{groups.trained[k].test_accuracy:.3f} (random net "
            f"{groups.random[k].test_accuracy if groups.random else float('nan'):.3f}) |"
        )
    lines += [
        f"| raw pixels (baseline) | 1×28×28 | – | – | – | – | – | – | {pixels.test_accuracy:.3f} "
        f"| – | {groups.pixels.test_accuracy:.3f} |",
        "",
        f"Chance (most common class among held-out rows): {chance:.3f} for the classes, "
        f"{groups.pixels.chance:.3f} for the surrogate task "
        f"({', '.join(f'{k}: {v}' for k, v in SURROGATE.items())}).",
        "",
        "## What it says",
        "",
    ]
    probe_acc = [c.probe.test_accuracy for c in result.cards if c.probe]
    rising = all(a <= b + 1e-9 for a, b in itertools.pairwise(probe_acc))
    above = all(
        c.probe.test_accuracy > pixels.test_accuracy
        and c.random_probe is not None
        and c.probe.test_accuracy >= c.random_probe.test_accuracy - 0.01
        for c in result.cards
        if c.probe
    )
    below = [
        f"{c.name} ({c.probe.test_accuracy:.3f} vs pixels {pixels.test_accuracy:.3f}, "
        f"random network {c.random_probe.test_accuracy:.3f})"
        for c in result.cards
        if c.probe
        and c.random_probe is not None
        and (
            c.probe.test_accuracy <= pixels.test_accuracy
            or c.probe.test_accuracy < c.random_probe.test_accuracy
        )
    ]
    grads = [(c.name, c.gradients.output_grad) for c in result.cards if c.gradients]
    lines += [
        "- **Probe accuracy "
        + ("rises with depth" if rising else "does not rise monotonically with depth")
        + "**: "
        + ", ".join(f"{c.name} {c.probe.test_accuracy:.3f}" for c in result.cards if c.probe)
        + f"; raw pixels {pixels.test_accuracy:.3f}. "
        + (
            "Every block is above the raw-pixel baseline and at or above the random network."
            if above
            else "Not above both baselines: "
            + "; ".join(below)
            + ". Outputs larger than 4,096 features are average-pooled to fit (conv1: "
            "32×28×28 → 32×11×11), which costs the early layers resolution the raw pixels keep."
        ),
        "- The random network's early layers probe about as well as the trained ones "
        "(random convolutions keep the image's information; Jarrett et al. 2009); the gap "
        "opens at fc1 and fc2, where training made the classes linearly separable.",
        "- **Mean-ablating a whole block takes accuracy to chance** in this plain "
        "sequential network: nothing downstream can do without it. Single channels matter "
        "little on average; the table gives the most harmful one, and how many channels "
        "(most harmful first) must go before accuracy falls half-way to chance.",
        "- Gradient sensitivity (mean ‖∂loss/∂output‖ per image): "
        + ", ".join(f"{n} {v:.3f}" for n, v in grads)
        + (
            " — falling with depth."
            if all(a >= b for (_, a), (_, b) in itertools.pairwise(grads))
            else " — not monotone in depth."
        )
        + " Relative parameter gradients (‖∂loss/∂θ‖ / ‖θ‖) say which block the loss still "
        "pulls on most.",
        "",
        "## Concepts (TCAV) for class *Ankle boot*",
        "",
        f"{boots} test images of ankle boots; concepts of 60 training images; "
        "10 random sets of 60 from 6,000 training images; two-sided Welch t-test against "
        f"random-vs-random CAVs and a binomial test of the CAVs' accuracy, each at "
        f"α = 0.05 / {tests} (Bonferroni over the table's tests).",
        "",
        "| layer | concept | TCAV score (mean ± std) | random-concept scores | p (t-test) | "
        "CAV accuracy | p (CAV vs chance) | significant |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in concepts:
        lines.append(
            f"| {t.layer} | {t.concept} | {t.mean:.2f} ± {float(t.scores.std()):.2f} | "
            f"{float(t.null_scores.mean()):.2f} | {t.p_value:.3g} | "
            f"{float(t.cav_accuracy.mean()):.2f} | {t.cav_p_value:.3g} | "
            f"{'yes' if t.significant else 'no'} |"
        )
    lines += [
        "",
        "A score that is not significant means nothing, whatever its value — the random "
        "concept's scores show why: an arbitrary set of 60 images gets a consistent, "
        "high-looking score across runs (they share the examples), and the t-test alone "
        "would pass it. Its CAVs barely tell it from other random images, which is what "
        "the second test catches.",
        "",
        "Figures: `docs/anatomy/anatomy.png` (all blocks), `docs/anatomy/card-*.png` "
        "(one per block).",
        "",
    ]
    docs = ROOT / "docs"
    figures = docs / "anatomy"
    figures.mkdir(parents=True, exist_ok=True)
    save_figure(plot_anatomy(result), figures / "anatomy.png")
    for card in result.cards:
        save_figure(plot_card(card, FASHION_MNIST_CLASSES), figures / f"card-{card.name}.png")
    (docs / "anatomy-results.md").write_text("\n".join(lines), encoding="utf-8")
    record = {
        "anatomy": result.to_dict(),
        "surrogate": {"groups": SURROGATE, "probes": groups.to_dict()},
        "tcav": [t.to_dict() for t in concepts],
        "seconds": round(seconds, 1),
    }
    (docs / "anatomy-results.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
