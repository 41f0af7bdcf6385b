"""Regenerate docs/sanity-results.md (+ .json and figures): the sanity checks of Adebayo et
al. (2018) and the faithfulness metrics on our two models.

    PYTHONPATH=src python scripts/sanity_table.py            # both models (~30 min on 2 cores)
    PYTHONPATH=src python scripts/sanity_table.py --only fashion --images 200

* Fashion-MNIST CNN (shipped weights), the first ``--images`` test images (default 200):
  cascading and independent model randomization, data randomization (against the shipped
  random-label model), edge-map similarity, faithfulness and robustness metrics.
* EfficientNet-Lite0 on the six bundled photos: cascading randomization by block, edge-map
  similarity, deletion/insertion and sparseness.

Each of the paper's findings is then checked against a stated criterion and reported as
holding or not, with the numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

import seethrough as st
from seethrough.data import DEFAULT_SAMPLES
from seethrough.data.fashion_mnist import load_fashion_mnist
from seethrough.models.fashion_cnn import fashion_cnn
from seethrough.trust import data_randomization, edge_similarity_of, model_randomization
from seethrough.trust import faithfulness as fm
from seethrough.viz import plot_randomization_grid, plot_similarity_curves, save_figure

DOCS = Path(__file__).resolve().parents[1] / "docs"
METHODS = [
    "gradient",
    "gradient_x_input",
    "integrated_gradients",
    "smoothgrad",
    "guided_backprop",
    "grad_cam",
    "edge_detector",
    "random_noise",
]
OPTIONS = {"samples": 16, "steps": 128}  # SmoothGrad samples; IG's most path points


def fmt(v: float) -> str:
    return "–" if math.isnan(v) else f"{v:.2f}"


def curve_table(result: Any, metric: str) -> list[str]:
    head = ["method", "trained", *(s.name for s in result.steps)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in result.similarities:
        means, stds = s.mean(metric), s.std(metric)
        cells = [f"{fmt(float(m))} ± {fmt(float(d))}" for m, d in zip(means, stds)]
        lines.append(f"| {s.method} | 1 | " + " | ".join(cells) + " |")
    return lines


def foreground_table(result: Any, foreground: torch.Tensor) -> list[str]:
    """Spearman of the stored absolute reduced maps on the foreground pixels only."""
    from scipy.stats import spearmanr

    head = ["method", "trained", *(s.name for s in result.steps)]
    lines = ["| method | " + " | ".join(head[1:]) + " |", "|" + "---|" * len(head)]
    mask = foreground.numpy()
    for k, method in enumerate(result.methods):
        original = result.original_maps[k].numpy()
        cells = []
        for step in result.maps:
            new = step[k].numpy()
            values = [spearmanr(original[i][mask[i]], new[i][mask[i]])[0] for i in range(len(mask))]
            values = [v for v in values if not math.isnan(v)]
            mean = sum(values) / len(values) if values else float("nan")
            sd = (sum((v - mean) ** 2 for v in values) / max(1, len(values) - 1)) ** 0.5
            cells.append(f"{fmt(mean)} ± {fmt(sd)}")
        lines.append(f"| {method} | 1 | " + " | ".join(cells) + " |")
    return lines


def row_table(result: Any, metrics: tuple[str, ...]) -> list[str]:
    lines = ["| method | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for s in result.similarities:
        cells = [fmt(float(s.values(m)[0].nanmean())) for m in metrics]
        lines.append(f"| {s.method} | " + " | ".join(cells) + " |")
    return lines


def last(result: Any, method: str, metric: str = "spearman_abs") -> float:
    return float(result.similarity(method).mean(metric)[-1])


def faithfulness_rows(
    model: Any, explanations: list[Any], heavy: bool, batch_size: int | None = None
) -> tuple[list[str], dict]:
    metrics: dict[str, dict[str, float]] = {}
    for ex in explanations:
        found = {
            "deletion ↓": fm.deletion(model, ex, batch_size=batch_size).mean(),
            "insertion ↑": fm.insertion(model, ex, batch_size=batch_size).mean(),
            "sparseness ↑": fm.sparseness(ex).mean(),
        }
        if heavy:
            found["ROAD LeRF−MoRF ↑"] = fm.road(model, ex, batch_size=batch_size).mean()
            found["infidelity ↓"] = fm.infidelity(model, ex, batch_size=batch_size).mean()
            if ex.method not in ("edge_detector", "random_noise"):
                found["max-sensitivity ↓"] = fm.max_sensitivity(
                    model, ex, radius=0.1, batch_size=batch_size
                ).mean()
                found["input invariance (max rel. change) ↓"] = fm.input_invariance(
                    model, ex, batch_size=batch_size
                ).mean()
        metrics[ex.method] = found
        print(f"  faithfulness {ex.method} done", file=sys.stderr, flush=True)
    names = list(next(iter(metrics.values())).keys())
    lines = ["| method | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for method, found in metrics.items():
        lines.append(
            f"| {method} | " + " | ".join(fmt(found.get(n, float("nan"))) for n in names) + " |"
        )
    return lines, metrics


def verdict(ok: bool) -> str:
    return "**holds**" if ok else "**does not hold**"


def findings(cascade: Any, edges: Any, data: Any | None) -> list[str]:
    """The paper's findings, each with its criterion and our numbers."""
    g, gc = last(cascade, "gradient"), last(cascade, "grad_cam")
    gbp, gxi, ig = (
        last(cascade, m) for m in ("guided_backprop", "gradient_x_input", "integrated_gradients")
    )
    edge = {s.method: float(s.spearman_abs[0].nanmean()) for s in edges.similarities}
    half = (len(cascade.steps) - 1) // 2
    gbp_half = float(cascade.similarity("guided_backprop").mean("spearman_abs")[half])
    g_half = float(cascade.similarity("gradient").mean("spearman_abs")[half])
    out = [
        f"1. *Gradient and Grad-CAM maps lose their similarity under cascading randomization* "
        f"(criterion: rank correlation with the trained map < 0.3 after the last step): "
        f"gradient {g:.2f}, Grad-CAM {gc:.2f} — {verdict(g < 0.3 and gc < 0.3)}.",
        f"2. *Guided backprop keeps much of it* (criterion: ≥ 0.5 and above the gradient's, "
        f"(a) half-way down, after step {half + 1} of {len(cascade.steps)} "
        f"({cascade.steps[half].name}), (b) after the last step): (a) {gbp_half:.2f} vs "
        f"{g_half:.2f} — {verdict(gbp_half >= 0.5 and gbp_half > g_half)}; (b) {gbp:.2f} vs "
        f"{g:.2f} — {verdict(gbp >= 0.5 and gbp > g)}.",
        f"3. *Gradient × input and IG keep input structure* (criterion: after the last step "
        f"both stay ≥ 0.1 above the gradient's rank correlation): gradient × input "
        f"{gxi:.2f}, IG {ig:.2f} vs gradient {g:.2f} — {verdict(min(gxi, ig) >= g + 0.1)}. "
        f"(Their maps' rank correlation with the edge map: gradient × input "
        f"{edge['gradient_x_input']:.2f}, IG {edge['integrated_gradients']:.2f}, gradient "
        f"{edge['gradient']:.2f}.)",
    ]
    if data is not None:
        sim = {s.method: float(s.spearman_abs[0].nanmean()) for s in data.similarities}
        lost = sim["gradient"] < 0.3 and sim["grad_cam"] < 0.3
        out.append(
            f"4. *Data randomization: gradient and Grad-CAM maps of the random-label model differ "
            f"from the true-label model's, while gradient × input stays closer* (criterion: "
            f"gradient and Grad-CAM < 0.3; gradient × input above the gradient): gradient "
            f"{sim['gradient']:.2f}, Grad-CAM {sim['grad_cam']:.2f}, gradient × input "
            f"{sim['gradient_x_input']:.2f} — "
            f"{verdict(lost and sim['gradient_x_input'] > sim['gradient'])}."
        )
    cam = cascade.similarity("grad_cam").spearman_abs
    frozen = next(
        (
            k
            for k in range(len(cam) - 1)
            if torch.equal(
                cam[k:].round(decimals=4), cam[k : k + 1].round(decimals=4).expand_as(cam[k:])
            )
        ),
        None,
    )
    if frozen is not None and frozen < len(cam) - 1:
        out.append(
            f"Note: Grad-CAM's similarity is identical (to 4 decimals, every image) from step "
            f"{frozen + 1} ({cascade.steps[frozen].name}) "
            "on. Cause: with running statistics kept (the paper's choice), a randomized "
            "block's batch norm divides its now tiny outputs by the trained variance and "
            "subtracts the trained mean: its output is almost a constant, so nothing below it"
            " reaches the CAM layer any more. Measured by `scripts/sanity_bn_reset.py` (5 "
            "photos, block steps): with the statistics kept, Grad-CAM's mean similarity is "
            "−0.209 at each of the last five steps; with `reset_running_stats=True` it keeps "
            "moving (0.17, 0.06, −0.05, 0.20, −0.04), and the gradient's ends at 0.12 instead"
            " of −0.03."
        )
    return out


def fashion(n: int, training: dict[str, Any], lines: list[str], record: dict[str, Any]) -> None:
    started = time.perf_counter()
    model, random_model = fashion_cnn(), fashion_cnn("random_labels")
    test = load_fashion_mnist("test")
    x, labels = test.inputs(0, n), test.labels[:n]
    foreground = test.images[:n] > 0
    opts = {**OPTIONS, "layer": "conv2"}
    say = lambda d, t: print(f"  fashion cascading {d}/{t}", file=sys.stderr, flush=True)  # noqa: E731
    big = {"batch_size": 256}  # 28×28 images: large chunks keep the small CNN busy
    cascade = model_randomization(model, x, METHODS, labels, progress=say, **big, **opts)
    independent = model_randomization(model, x, METHODS, labels, mode="independent", **big, **opts)
    data = data_randomization(model, random_model, x, METHODS, labels, **big, **opts)
    explanations = list(cascade.original)  # the trained model's maps, made once
    edges = edge_similarity_of(explanations)
    faith, faith_values = faithfulness_rows(model, explanations, heavy=True, batch_size=256)
    figures = DOCS / "sanity"
    save_figure(plot_similarity_curves(cascade), figures / "fashion-cascading-spearman_abs.png")
    save_figure(plot_similarity_curves(cascade, "ssim"), figures / "fashion-cascading-ssim.png")
    save_figure(plot_randomization_grid(cascade, 0), figures / "fashion-grid-0.png")
    acc = {k: training[k]["test_accuracy"] for k in ("true_labels", "random_labels")}
    lines += [
        f"## Fashion-MNIST CNN ({n} test images, the true label explained)",
        "",
        f"Test accuracy: true-label model {acc['true_labels']:.4f}, random-label model "
        f"{acc['random_labels']:.4f} (training accuracy on its permuted labels "
        f"{training['random_labels']['train_accuracy']:.4f}). Grad-CAM at `conv2`; "
        f"SmoothGrad {OPTIONS['samples']} samples; IG adaptive, at most {OPTIONS['steps']} "
        "points. Similarity = mean ± std over images; Spearman on absolute maps unless said.",
        "",
        "### Cascading model randomization (Spearman, absolute maps)",
        "",
        *curve_table(cascade, "spearman_abs"),
        "",
        "### Cascading model randomization (Spearman, absolute maps, garment pixels only)",
        "",
        "Fashion-MNIST's black background is about half of each image; a map that is small "
        "there on both models raises whole-image correlations. These rows rank only the "
        "garment's pixels (input > 0).",
        "",
        *foreground_table(cascade, foreground),
        "",
        "### Cascading model randomization (SSIM)",
        "",
        *curve_table(cascade, "ssim"),
        "",
        "### Cascading model randomization (rank correlation of HOG)",
        "",
        *curve_table(cascade, "hog"),
        "",
        "### Independent randomization (Spearman, absolute maps)",
        "",
        *curve_table(independent, "spearman_abs"),
        "",
        "### Data randomization: true-label vs random-label model",
        "",
        *row_table(data, ("spearman_abs", "spearman", "ssim", "hog")),
        "",
        "### Similarity to the edge map (Sobel)",
        "",
        *row_table(edges, ("spearman_abs", "ssim", "hog")),
        "",
        "### Faithfulness and robustness (means over images; ↑/↓: better)",
        "",
        *faith,
        "",
        "### The paper's findings on this model",
        "",
        *findings(cascade, edges, data),
        "",
        "![cascading](sanity/fashion-cascading-spearman_abs.png)",
        "![grid](sanity/fashion-grid-0.png)",
        "",
        f"({time.perf_counter() - started:.0f} s)",
        "",
    ]
    record["results"]["fashion"] = {
        "cascading": cascade.to_dict(),
        "independent": independent.to_dict(),
        "faithfulness": faith_values,
    }


def efficientnet(lines: list[str], record: dict[str, Any]) -> None:
    started = time.perf_counter()
    net = st.load_model("efficientnet-lite0")
    x = net.preprocess(st.load_images([f"sample:{s}" for s in DEFAULT_SAMPLES]))
    say = lambda d, t: print(f"  efficientnet cascading {d}/{t}", file=sys.stderr, flush=True)  # noqa: E731
    cascade = model_randomization(net, x, METHODS, progress=say, **OPTIONS)
    explanations = list(cascade.original)
    edges = edge_similarity_of(explanations)
    faith, faith_values = faithfulness_rows(net.module, explanations, heavy=False)
    figures = DOCS / "sanity"
    save_figure(plot_similarity_curves(cascade), figures / "effnet-cascading-spearman_abs.png")
    save_figure(plot_randomization_grid(cascade, 0), figures / "effnet-grid-0.png")
    lines += [
        f"## EfficientNet-Lite0 ({len(x)} bundled photos, the predicted class explained)",
        "",
        "Steps by block, logits first; Grad-CAM at the default layer (`_act_head`).",
        "",
        "### Cascading model randomization (Spearman, absolute maps)",
        "",
        *curve_table(cascade, "spearman_abs"),
        "",
        "### Cascading model randomization (SSIM)",
        "",
        *curve_table(cascade, "ssim"),
        "",
        "### Similarity to the edge map (Sobel)",
        "",
        *row_table(edges, ("spearman_abs", "ssim", "hog")),
        "",
        "### Faithfulness (means over images)",
        "",
        *faith,
        "",
        "### The paper's findings on this model",
        "",
        *findings(cascade, edges, None),
        "",
        "![cascading](sanity/effnet-cascading-spearman_abs.png)",
        "![grid](sanity/effnet-grid-0.png)",
        "",
        f"({time.perf_counter() - started:.0f} s)",
        "",
    ]
    record["results"]["efficientnet"] = {
        "cascading": cascade.to_dict(),
        "faithfulness": faith_values,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["fashion", "efficientnet"], default=None)
    parser.add_argument("--images", type=int, default=200)
    args = parser.parse_args()
    (DOCS / "sanity").mkdir(parents=True, exist_ok=True)
    training = json.loads(
        (Path(st.__file__).parent / "models" / "weights" / "fashion_cnn_training.json").read_text()
    )
    record: dict[str, Any] = {
        "versions": {"seethrough": st.__version__, "torch": torch.__version__},
        "results": {},
    }
    lines = [
        "# Sanity checks and faithfulness on our models",
        "",
        "Generated by `PYTHONPATH=src python scripts/sanity_table.py` "
        f"(seethrough {st.__version__}, torch {torch.__version__}, CPU). Do not edit by hand.",
        "",
    ]
    if args.only in (None, "fashion"):
        fashion(args.images, training, lines, record)
    if args.only in (None, "efficientnet"):
        efficientnet(lines, record)
    record["results"].setdefault("fashion_training", training)
    (DOCS / "sanity-results.md").write_text("\n".join(lines), encoding="utf-8")
    (DOCS / "sanity-results.json").write_text(json.dumps(record, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
