"""Regenerate docs/sanity-results.md (+ .json and figures): the sanity checks of Adebayo et
al. (2018), sMPRT and eMPRT (Hedström et al., 2023) and the faithfulness metrics on our
two models, every number with a 95 % bootstrap interval over images.

    PYTHONPATH=src python scripts/sanity_table.py            # both models (~20 min, 2 idle cores)
    PYTHONPATH=src python scripts/sanity_table.py --only fashion --images 16 --quick \\
        --out /tmp/sanity-small                              # a smoke run (~1 min)

* Fashion-MNIST CNN (shipped weights), the first ``--images`` test images (default 200;
  the verdicts were the same for three randomization seeds already at 48):
  cascading and independent model randomization, data randomization (against the shipped
  random-label model), edge-map similarity, sMPRT and eMPRT, faithfulness and robustness
  metrics, and the paper's findings re-tested with other randomization seeds.
* EfficientNet-Lite0 on the six bundled photos: cascading randomization by block, edge-map
  similarity, eMPRT, deletion/insertion and sparseness.

Each of the paper's findings is checked against a stated criterion with a sign-flip test
over images (``seethrough.core.stats.paired_test``), Holm-corrected across the findings of
its table; a finding *holds* or *does not hold* only where the corrected p < 0.05, and is
reported as undecided at this sample size otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import seethrough as st
from seethrough.attribution import DeepShap, Lrp
from seethrough.core.baselines import make_baseline
from seethrough.core.relevance import make_composite
from seethrough.core.stats import Interval, holm, mean_ci, paired_test
from seethrough.data import DEFAULT_SAMPLES
from seethrough.data.fashion_mnist import load_fashion_mnist
from seethrough.models.fashion_cnn import fashion_cnn
from seethrough.reporting.serialize import dumps, to_jsonable
from seethrough.trust import (
    data_randomization,
    edge_similarity_of,
    efficient_mprt,
    model_randomization,
    smooth_mprt,
)
from seethrough.trust import faithfulness as fm
from seethrough.trust.sanity import method_label
from seethrough.viz import plot_randomization_grid, plot_similarity_curves, save_figure

DOCS = Path(__file__).resolve().parents[1] / "docs"
RELU_CAM = st.GradCam(relu=True)
# issue 17: the decomposition methods (DeepSHAP needs each model's reference batch, so
# ``deepshap_for`` adds it per model, after these)
LRP_EPSILON = Lrp(composite=make_composite("epsilon", bias=False))
LRP_AB = Lrp(composite="alpha1_beta0")
NEW_METHODS: list[Any] = ["lrp", LRP_EPSILON, LRP_AB, "deeplift"]
METHODS: list[Any] = [
    "gradient",
    "gradient_x_input",
    "integrated_gradients",
    "smoothgrad",
    "guided_backprop",
    "grad_cam",
    RELU_CAM,
    "guided_grad_cam",
    "edge_detector",
    "random_noise",
    *NEW_METHODS,
]
# the methods the findings need (the seed reruns explain only these)
FINDING_METHODS: list[Any] = [
    "gradient",
    "gradient_x_input",
    "integrated_gradients",
    "guided_backprop",
    RELU_CAM,
    "guided_grad_cam",
    "lrp",
    LRP_AB,
    "deeplift",
]
# sMPRT averages many noisy copies per map: the path and sampling methods are left out
SMPRT_METHODS: list[Any] = [
    "gradient",
    "gradient_x_input",
    "guided_backprop",
    "grad_cam",
    RELU_CAM,
    "guided_grad_cam",
    "edge_detector",
    "random_noise",
    "lrp",
    LRP_EPSILON,
    LRP_AB,
    "deeplift",
]  # DeepSHAP is left out of sMPRT: K DeepLIFT passes per noisy copy
SHOWN = {
    "grad_cam": "grad_cam (raw, no ReLU)",
    "grad_cam(relu=True)": "grad_cam (ReLU, as the paper)",
    "lrp": "lrp (ε-z⁺-♭, epsilon_plus_flat)",
    method_label(LRP_EPSILON): "lrp (ε, no bias)",
    method_label(LRP_AB): "lrp (α1β0)",
    "deeplift": "deeplift (zeros)",
}
NEW_LABELS = [method_label(m) for m in NEW_METHODS]
# the comparators the new methods' claims pair with (``--methods`` recomputes them)
COMPARATORS: list[Any] = ["gradient", "gradient_x_input", "guided_backprop"]
GC = "grad_cam(relu=True)"
ALPHA = 0.05
FASHION_CAM_LAYER = "relu2"


@dataclass(frozen=True)
class Settings:
    """What a run costs: the full run's defaults, or ``--quick``'s."""

    smoothgrad_samples: int
    ig_steps: int
    copies: int
    seeds: tuple[int, ...]
    resamples: int
    robust_images: int

    @classmethod
    def of(cls, args: argparse.Namespace) -> Settings:
        seeds = tuple(int(s) for s in args.seeds.split(",") if s.strip())
        if args.quick:
            return cls(4, 65, 4, seeds[:1], 2000, min(8, args.robust_images))
        return cls(16, args.ig_steps, args.copies, seeds, 10_000, args.robust_images)

    def options(self) -> dict[str, Any]:
        return {"samples": self.smoothgrad_samples, "steps": self.ig_steps}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def shown(label: str) -> str:
    if label.startswith("deepshap("):
        return "deepshap (reference batch)"
    return SHOWN.get(label, label)


def deepshap_for(references: torch.Tensor) -> DeepShap:
    return DeepShap(baselines=references)


def fashion_references(k: int = 16, seed: int = 0) -> torch.Tensor:
    """DeepSHAP's references on Fashion-MNIST: ``k`` training images drawn with ``seed``."""
    train = load_fashion_mnist("train")
    order = torch.randperm(len(train.labels), generator=torch.Generator().manual_seed(seed))
    return torch.cat([train.inputs(int(i), int(i) + 1) for i in order[:k]])


def photo_references(x: torch.Tensor, sigma: float = 10.0) -> torch.Tensor:
    """DeepSHAP's references on the photos: the six bundled photos blurred (σ pixels)."""
    return make_baseline("blur", x, blur_sigma=sigma).detach()


# ----------------------------------------------------------------- intervals and cells


def intervals(values: Any, resamples: int) -> list[Interval]:
    """Bootstrap intervals of the mean over images (rows), one per column; NaN-safe."""
    array = np.asarray(values, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return mean_ci(array, resamples=resamples)


def cell(iv: Interval) -> str:
    return "–" if not math.isfinite(iv.estimate) else iv.format(2)


def finite(values: Any) -> int:
    return int(np.isfinite(np.asarray(values, dtype=np.float64)).sum())


def curve_table(result: Any, metric: str, resamples: int, record: dict[str, Any]) -> list[str]:
    """Per method: the self-check (ceiling) and each step's similarity, mean [95 % CI]."""
    head = ["method", "self-check", *(s.name for s in result.steps)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in result.similarities:
        values = s.values(metric).numpy().T  # (N, steps)
        check = s.self_check_values.get(metric)
        ivs = intervals(values, resamples)
        check_iv = intervals(check.numpy(), resamples)[0] if check is not None else None
        cells = [cell(check_iv) if check_iv is not None else "–", *(cell(iv) for iv in ivs)]
        lines.append(f"| {shown(s.method)} | " + " | ".join(cells) + " |")
        record[s.method] = {
            "self_check": to_jsonable(check_iv) if check_iv is not None else None,
            "steps": {st_.name: to_jsonable(iv) for st_, iv in zip(result.steps, ivs)},
        }
    return lines


def foreground_table(
    result: Any, foreground: torch.Tensor, resamples: int, record: dict[str, Any]
) -> list[str]:
    """Spearman of the stored absolute reduced maps on the foreground pixels only."""
    from scipy.stats import spearmanr

    head = ["method", *(s.name for s in result.steps)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    mask = foreground.numpy()
    for k, method in enumerate(result.methods):
        original = result.original_maps[k].numpy()
        columns = []
        for step in result.maps:
            new = step[k].numpy()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                columns.append(
                    [spearmanr(original[i][mask[i]], new[i][mask[i]])[0] for i in range(len(mask))]
                )
        ivs = intervals(np.array(columns).T, resamples)
        lines.append(f"| {shown(method)} | " + " | ".join(cell(iv) for iv in ivs) + " |")
        record[method] = {st_.name: to_jsonable(iv) for st_, iv in zip(result.steps, ivs)}
    return lines


def row_table(
    result: Any, metrics: tuple[str, ...], resamples: int, record: dict[str, Any]
) -> list[str]:
    lines = ["| method | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for s in result.similarities:
        values = np.stack([s.values(m)[0].numpy() for m in metrics], axis=1)  # (N, metrics)
        ivs = intervals(values, resamples)
        lines.append(f"| {shown(s.method)} | " + " | ".join(cell(iv) for iv in ivs) + " |")
        record[s.method] = {m: to_jsonable(iv) for m, iv in zip(metrics, ivs)}
    return lines


# ------------------------------------------------------------------------ findings


@dataclass(frozen=True)
class Test:
    """One tested claim: ``values`` per image should be > 0 (``sign`` +1) or < 0 (−1)."""

    key: str
    claim: str
    values: np.ndarray
    sign: int
    shown: str  # what the numbers are, for the sentence


@dataclass(frozen=True)
class Decided:
    test: Test
    interval: Interval
    p: float
    p_holm: float

    @property
    def verdict(self) -> str:
        if self.p_holm >= ALPHA or not math.isfinite(self.interval.estimate):
            return "undecided at this n"
        right = math.copysign(1, self.interval.estimate) == self.test.sign
        return "holds" if right else "does not hold"

    def to_dict(self) -> dict[str, Any]:
        return {
            "claim": self.test.claim,
            "tested": self.test.shown,
            "direction": ">" if self.test.sign > 0 else "<",
            "mean_difference": to_jsonable(self.interval),
            "n": finite(self.test.values),
            "p": self.p,
            "p_holm": self.p_holm,
            "verdict": self.verdict,
        }


def decide(tests: Sequence[Test], resamples: int) -> list[Decided]:
    """Sign-flip test of each claim's per-image values against 0, Holm across them."""
    ps = [paired_test(t.values, resamples=resamples) for t in tests]
    adjusted = holm(ps)
    return [
        Decided(t, intervals(t.values, resamples)[0], p, q) for t, p, q in zip(tests, ps, adjusted)
    ]


def step_values(result: Any, method: str, step: int) -> np.ndarray:
    return result.similarity(method).spearman_abs[step].numpy()


def cascade_tests(cascade: Any) -> list[Test]:
    """The paper's claims about cascading randomization (Spearman, absolute maps)."""
    last, half = len(cascade.steps) - 1, (len(cascade.steps) - 1) // 2
    half_name = f"after step {half + 1} of {len(cascade.steps)} ({cascade.steps[half].name})"
    g, gc = step_values(cascade, "gradient", last), step_values(cascade, GC, last)
    gbp_h, g_h = (
        step_values(cascade, "guided_backprop", half),
        step_values(cascade, "gradient", half),
    )
    gbp = step_values(cascade, "guided_backprop", last)
    gxi = step_values(cascade, "gradient_x_input", last)
    ig = step_values(cascade, "integrated_gradients", last)
    ggc_h = step_values(cascade, "guided_grad_cam", half)
    ggc = step_values(cascade, "guided_grad_cam", last)
    return [
        Test("1a", "the gradient loses its similarity: ρ < 0.3 after the last step",
             g - 0.3, -1, "ρ − 0.3"),
        Test("1b", "Grad-CAM (ReLU) loses its similarity: ρ < 0.3 after the last step",
             gc - 0.3, -1, "ρ − 0.3"),
        Test("2a", f"guided backprop keeps it half-way: ρ > 0.5 {half_name}",
             gbp_h - 0.5, 1, "ρ − 0.5"),
        Test("2b", f"guided backprop stays above the gradient half-way ({half_name})",
             gbp_h - g_h, 1, "ρ(GBP) − ρ(gradient)"),
        Test("2c", "guided backprop keeps it to the end: ρ > 0.5 after the last step",
             gbp - 0.5, 1, "ρ − 0.5"),
        Test("2d", "guided backprop stays above the gradient after the last step",
             gbp - g, 1, "ρ(GBP) − ρ(gradient)"),
        Test("3a", "gradient × input stays ≥ 0.1 above the gradient after the last step",
             gxi - g - 0.1, 1, "ρ(G×I) − ρ(gradient) − 0.1"),
        Test("3b", "IG stays ≥ 0.1 above the gradient after the last step",
             ig - g - 0.1, 1, "ρ(IG) − ρ(gradient) − 0.1"),
        Test("5a", f"Guided Grad-CAM keeps its similarity half-way: ρ > 0.5 {half_name}",
             ggc_h - 0.5, 1, "ρ − 0.5"),
        Test("5b", "Guided Grad-CAM stays above Grad-CAM (ReLU) after the last step",
             ggc - gc, 1, "ρ(Guided Grad-CAM) − ρ(Grad-CAM)"),
    ]  # fmt: skip


def data_tests(data: Any) -> list[Test]:
    sim = {s.method: s.spearman_abs[0].numpy() for s in data.similarities}
    return [
        Test("4a", "data randomization: the gradient's maps differ, ρ < 0.3",
             sim["gradient"] - 0.3, -1, "ρ − 0.3"),
        Test("4b", "data randomization: Grad-CAM (ReLU)'s maps differ, ρ < 0.3",
             sim[GC] - 0.3, -1, "ρ − 0.3"),
        Test("4c", "data randomization: gradient × input stays closer than the gradient",
             sim["gradient_x_input"] - sim["gradient"], 1, "ρ(G×I) − ρ(gradient)"),
    ]  # fmt: skip


# "|…|" would split a markdown table cell
ABS_DL = "abs(ρ(DeepLIFT) − ρ(G×I)) − 0.1"
# text of earlier runs' parts that a merge rewrites (the old form broke the table)
LEGACY_TEXT = {"|ρ(DeepLIFT) − ρ(G×I)| − 0.1": ABS_DL}


def new_method_tests(cascade: Any, data: Any = None) -> list[Test]:
    """Claims about the decomposition methods (issue 17): Sixt, Granz & Landgraf (2020)
    predict that z⁺/αβ-rule LRP maps stop depending on the upper layers; DeepLIFT with a
    zero reference on a ReLU network should track gradient × input."""
    last, half = len(cascade.steps) - 1, (len(cascade.steps) - 1) // 2
    half_name = f"after step {half + 1} of {len(cascade.steps)} ({cascade.steps[half].name})"
    ab = method_label(LRP_AB)
    lrp_h, ab_h = step_values(cascade, "lrp", half), step_values(cascade, ab, half)
    lrp, abl = step_values(cascade, "lrp", last), step_values(cascade, ab, last)
    g, gxi = step_values(cascade, "gradient", last), step_values(cascade, "gradient_x_input", last)
    dl = step_values(cascade, "deeplift", last)
    shap = next(m for m in cascade.methods if m.startswith("deepshap("))
    ds = step_values(cascade, shap, last)
    tests = [
        Test("L1", f"LRP (ε-z⁺-♭) keeps its similarity (Sixt et al.): ρ > 0.5 {half_name}",
             lrp_h - 0.5, 1, "ρ − 0.5"),
        Test("L2", f"LRP (α1β0) keeps its similarity (Sixt et al.): ρ > 0.5 {half_name}",
             ab_h - 0.5, 1, "ρ − 0.5"),
        Test("L3", "LRP (α1β0) keeps it to the end: ρ > 0.5 after the last step",
             abl - 0.5, 1, "ρ − 0.5"),
        Test("L4", "LRP (ε-z⁺-♭) stays above the gradient after the last step",
             lrp - g, 1, "ρ(LRP) − ρ(gradient)"),
        Test("D1", "DeepLIFT (zeros) stays within 0.1 of gradient × input after the last step",
             np.abs(dl - gxi) - 0.1, -1, ABS_DL),
        Test("D2", "DeepSHAP stays ≥ 0.1 above the gradient after the last step",
             ds - g - 0.1, 1, "ρ(DeepSHAP) − ρ(gradient) − 0.1"),
    ]  # fmt: skip
    if data is not None:
        sim = {s.method: s.spearman_abs[0].numpy() for s in data.similarities}
        tests += [
            Test("L5", "data randomization: LRP (ε-z⁺-♭)'s maps differ, ρ < 0.3",
                 sim["lrp"] - 0.3, -1, "ρ − 0.3"),
            Test("D3", "data randomization: DeepLIFT stays within 0.1 of gradient × input",
                 np.abs(sim["deeplift"] - sim["gradient_x_input"]) - 0.1, -1,
                 ABS_DL),
        ]  # fmt: skip
    return tests


def agreement_table(
    explanations: Sequence[Any], labels: Sequence[str], resamples: int, record: dict[str, Any]
) -> list[str]:
    """Per image, Spearman of each new method's absolute channel-summed map with gradient ×
    input's and the gradient's, on the trained model: how alike the maps are."""
    from scipy.stats import spearmanr

    def reduced(label: str) -> np.ndarray:
        ex = explanations[list(labels).index(label)]
        return ex.attributions.abs().sum(1).flatten(1).numpy()

    refs = ("gradient_x_input", "gradient")
    lines = ["| method | ρ with gradient × input | ρ with the gradient |", "|---|---|---|"]
    for label in labels:
        if label not in NEW_LABELS and not label.startswith("deepshap("):
            continue
        mine = reduced(label)
        columns = []
        for ref in refs:
            other = reduced(ref)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                columns.append([spearmanr(a, b)[0] for a, b in zip(mine, other)])
        ivs = intervals(np.array(columns).T, resamples)
        lines.append(f"| {shown(label)} | " + " | ".join(cell(iv) for iv in ivs) + " |")
        record[label] = {r: to_jsonable(iv) for r, iv in zip(refs, ivs)}
    return lines


def new_methods_text(
    cascade: Any, decided: Sequence[Decided], agreement: list[str], fashion: bool
) -> list[str]:
    """The decomposition methods' claims, their agreement with gradient × input, and what
    the numbers say about Sixt et al.'s prediction, in sentences made from the numbers."""
    references = (
        "DeepSHAP's references: 16 Fashion-MNIST training images drawn with seed 0 (the same "
        "16 for every image)"
        if fashion
        else "DeepSHAP's references: the six photos blurred (Gaussian, σ = 10 px), the same six "
        "for every image (each image's own blurred copy among them)"
    )
    by_key = {d.test.key: d for d in decided}

    def said(key: str) -> str:
        d = by_key[key]
        return f"{d.test.shown} = {cell(d.interval)}, Holm p {d.p_holm:.2g}: {d.verdict}"

    last = cascade.steps[-1].name
    rho = {
        m: float(np.nanmean(step_values(cascade, m, len(cascade.steps) - 1)))
        for m in ("lrp", method_label(LRP_AB), "gradient", "gradient_x_input", "deeplift")
    }
    epsilon = (
        "`epsilon` with `bias=False` (ε everywhere, the biases take no relevance), "
        if method_label(LRP_EPSILON) in cascade.methods
        else "(not `epsilon` with `bias=False`: its maps are NaN on every photo of this model), "
    )
    return [
        "### The decomposition methods (issue 17): LRP, DeepLIFT, DeepSHAP",
        "",
        "LRP with the composites `epsilon_plus_flat` (the default: ♭ on the first layer, "
        f"z⁺ on convs, ε on dense layers), {epsilon}and `alpha1_beta0` (α1β0, i.e. z⁺, on "
        "every conv and dense layer); DeepLIFT (rescale) against a zero reference; "
        f"{references}. Their rows in the tables above come from the same run. Sixt, "
        "Granz & Landgraf (2020) prove that "
        "z⁺/αβ rules make the map converge to one that no longer depends on the upper "
        "layers: a cascade that randomizes the output side first should leave such maps "
        "nearly unchanged. The claims below are their own Holm family.",
        "",
        *findings_lines(decided),
        "",
        f"Measured: {said('L1')} (L1); {said('L2')} (L2). After the last step ({last}) the "
        f"mean ρ is {rho['lrp']:.2f} for LRP ε-z⁺-♭ and {rho[method_label(LRP_AB)]:.2f} "
        f"for α1β0, against {rho['gradient']:.2f} for the gradient and "
        f"{rho['gradient_x_input']:.2f} for gradient × input. DeepLIFT ends at "
        f"{rho['deeplift']:.2f}: {said('D1')} (D1).",
        "",
        "How alike the maps are on the trained model (Spearman of the absolute maps, per image):",
        "",
        *agreement,
        "",
    ]


def findings_lines(decided: Sequence[Decided]) -> list[str]:
    lines = [
        "| # | claim (criterion) | tested per image | mean [95 % CI] | n | p | Holm p | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for d in decided:
        lines.append(
            f"| {d.test.key} | {d.test.claim} | {d.test.shown} | {cell(d.interval)} | "
            f"{finite(d.test.values)} | {d.p:.2g} | {d.p_holm:.2g} | **{d.verdict}** |"
        )
    return lines


FINDINGS_NOTE = (
    "Each claim is tested with a two-sided sign-flip permutation test of the per-image "
    "values against 0 (exact for n ≤ 16, 10,000 random flips beyond), the p-values "
    "Holm-corrected across the claims of this table. *holds* / *does not hold*: corrected "
    f"p < {ALPHA} with the mean on the claimed / the other side; otherwise undecided at "
    "this n. ρ: Spearman rank correlation of the absolute maps with the trained model's."
)


def frozen_note(cascade: Any) -> list[str]:
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
    if frozen is None or frozen >= len(cam) - 1:
        return []
    return [
        f"Note: Grad-CAM's similarity is identical (to 4 decimals, every image) from step "
        f"{frozen + 1} ({cascade.steps[frozen].name}) on. Cause: with running statistics "
        "kept (the paper's choice), a randomized block's batch norm divides its now tiny "
        "outputs by the trained variance and subtracts the trained mean: its output is almost "
        "a constant, so nothing below it reaches the CAM layer any more "
        "(`scripts/sanity_bn_reset.py` measures it with `reset_running_stats=True`).",
        "",
    ]


# ------------------------------------------------------------------ sMPRT and eMPRT


def smprt_table(
    smooth: Sequence[Any], plain: Sequence[Any], resamples: int, record: dict[str, Any]
) -> list[str]:
    lines = [
        "| method | self-check (two noise draws) | sMPRT ρ, fully randomized ↓ | same without "
        "denoising (1 copy) ↓ |",
        "|---|---|---|---|",
    ]
    for s, p in zip(smooth, plain):
        check, score, bare = intervals(
            np.stack([s.self_check.numpy(), s.last.numpy(), p.last.numpy()], axis=1), resamples
        )
        lines.append(f"| {shown(s.method)} | {cell(check)} | {cell(score)} | {cell(bare)} |")
        record[s.method] = {
            "self_check": to_jsonable(check),
            "smprt": to_jsonable(score),
            "without_denoising": to_jsonable(bare),
            "per_image": to_jsonable(s),
        }
    return lines


def emprt_table(results: Sequence[Any], resamples: int, record: dict[str, Any]) -> list[str]:
    lines = [
        "| method | complexity, trained | complexity, randomized | eMPRT: relative rise ↑ |",
        "|---|---|---|---|",
    ]
    for r in results:
        ivs = intervals(
            np.stack(
                [r.complexity_trained.numpy(), r.complexity_random.numpy(), r.score.numpy()],
                axis=1,
            ),
            resamples,
        )
        lines.append(f"| {shown(r.method)} | " + " | ".join(cell(iv) for iv in ivs) + " |")
        record[r.method] = {
            "complexity_trained": to_jsonable(ivs[0]),
            "complexity_random": to_jsonable(ivs[1]),
            "score": to_jsonable(ivs[2]),
            "per_image": to_jsonable(r),
        }
    model = intervals(
        np.stack(
            [
                results[0].model_complexity_trained.numpy(),
                results[0].model_complexity_random.numpy(),
            ],
            axis=1,
        ),
        resamples,
    )
    record["model_complexity"] = {"trained": to_jsonable(model[0]), "random": to_jsonable(model[1])}
    return [
        *lines,
        "",
        f"The model's own complexity (entropy of its softmax output, nats): trained "
        f"{cell(model[0])}, fully randomized {cell(model[1])}.",
    ]


def mprt_sections(
    model: Any,
    x: torch.Tensor,
    target: Any,
    layer: str | None,
    settings: Settings,
    record: dict[str, Any],
    smooth: bool,
    batch_size: int | None,
    methods: Sequence[Any] = METHODS,
    smprt_methods: Sequence[Any] = SMPRT_METHODS,
    path_options: bool = True,
) -> list[str]:
    started = time.perf_counter()
    cam: dict[str, Any] = {"layer": layer} if layer is not None else {}
    lines: list[str] = []
    if smooth:
        common: dict[str, Any] = {"every_step": False, "batch_size": batch_size, **cam}
        denoised = smooth_mprt(model, x, smprt_methods, target, copies=settings.copies, **common)
        plain = smooth_mprt(model, x, smprt_methods, target, copies=1, **common)
        say(f"  sMPRT done ({time.perf_counter() - started:.0f} s)")
        record["smprt"] = {}
        lines += [
            "### sMPRT: denoised maps, input side first (Hedström et al., 2023)",
            "",
            f"Each map is the mean over {settings.copies} copies of the input "
            f"({settings.copies - 1} with Gaussian noise σ = 0.1 × the image's range, one "
            "clean); ρ = Spearman of the "
            "absolute, channel-summed, second-moment-normalised maps of the trained and the fully "
            "randomized model (every block re-initialised, input side first). The self-check "
            "compares two noise draws on the trained model: the ceiling. Lower ρ = the map "
            "depends more on the parameters.",
            "",
            *smprt_table(denoised, plain, settings.resamples, record["smprt"]),
            "",
        ]
    emprt_started = time.perf_counter()
    opts = {**(settings.options() if path_options else {}), **cam}
    results = efficient_mprt(model, x, methods, target, batch_size=batch_size, **opts)
    say(f"  eMPRT done ({time.perf_counter() - emprt_started:.0f} s)")
    record["emprt"] = {}
    lines += [
        "### eMPRT: rise in explanation complexity (Hedström et al., 2023)",
        "",
        "Complexity = entropy (nats) of the histogram (100 equal-width bins) of the absolute, "
        "channel-summed map; eMPRT = (randomized − trained) / trained for the fully randomized "
        "model (every block re-initialised, input side first). Higher = the map reacts more to "
        "the destroyed parameters.",
        "",
        *emprt_table(results, settings.resamples, record["emprt"]),
        "",
    ]
    return lines


# --------------------------------------------------------------------- faithfulness


def faithfulness_rows(
    model: Any,
    explanations: list[Any],
    labels: Sequence[str],
    resamples: int,
    robust: list[Any] | None = None,
    batch_size: int | None = None,
) -> tuple[list[str], dict[str, Any]]:
    """Faithfulness of every method's maps; with ``robust`` (the same methods' maps of a
    subset of the images) also ROAD, infidelity and the robustness metrics, which
    re-explain perturbed inputs, on that subset."""
    metrics: dict[str, dict[str, Any]] = {}
    for k, (label, ex) in enumerate(zip(labels, explanations)):
        found = {
            "deletion ↓": fm.deletion(model, ex, batch_size=batch_size).scores,
            "insertion ↑": fm.insertion(model, ex, batch_size=batch_size).scores,
            "sparseness ↑": fm.sparseness(ex).scores,
        }
        if robust is not None:
            sub = robust[k]
            found["ROAD LeRF−MoRF ↑"] = fm.road(model, ex, batch_size=batch_size).scores
            found["infidelity ↓"] = fm.infidelity(model, ex, batch_size=batch_size).scores
            # DeepSHAP's reference batch is a tensor option, which re-explaining refuses
            reexplainable = ex.method != "deepshap"
            if ex.method not in ("edge_detector", "random_noise") and reexplainable:
                found["max-sensitivity ↓ ¹"] = fm.max_sensitivity(
                    model, sub, radius=0.1, batch_size=batch_size
                ).scores
                found["input invariance (max rel. change) ↓ ¹"] = fm.input_invariance(
                    model, sub, batch_size=batch_size
                ).scores
        metrics[label] = found
        say(f"  faithfulness {label} done")
    names = list(next(iter(metrics.values())).keys())
    lines = ["| method | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    record: dict[str, Any] = {}
    for label, found in metrics.items():
        ivs = {n: intervals(found[n].cpu().numpy(), resamples)[0] for n in found}
        lines.append(
            f"| {shown(label)} | "
            + " | ".join(cell(ivs[n]) if n in ivs else "–" for n in names)
            + " |"
        )
        record[label] = {n: to_jsonable(iv) for n, iv in ivs.items()}
    return lines, record


# ------------------------------------------------------------------------- sections


def seed_section(
    model: Any,
    x: torch.Tensor,
    labels: torch.Tensor,
    cascade: Any,
    settings: Settings,
    record: dict[str, Any],
    extra: Sequence[Any] = (),
) -> list[str]:
    """The cascade's findings re-tested with other randomization seeds (weights and the
    stochastic methods' noise); the same n and settings."""
    if not settings.seeds:
        return []
    runs = {cascade.seed: decide(cascade_tests(cascade), settings.resamples)}
    new_runs = {cascade.seed: decide(new_method_tests(cascade), settings.resamples)}
    for seed in settings.seeds:
        started = time.perf_counter()
        again = model_randomization(
            model,
            x,
            [*FINDING_METHODS, *extra],
            labels,
            seed=seed,
            metrics=("spearman_abs",),
            self_check=False,
            batch_size=256,
            layer=FASHION_CAM_LAYER,
            steps=settings.ig_steps,
        )
        runs[seed] = decide(cascade_tests(again), settings.resamples)
        new_runs[seed] = decide(new_method_tests(again), settings.resamples)
        say(f"  seed {seed} rerun done ({time.perf_counter() - started:.0f} s)")
    seeds = list(runs)
    lines = [
        "| # | claim | " + " | ".join(f"seed {s}" for s in seeds) + " | same verdict |",
        "|---|---|" + "---|" * len(seeds) + "---|",
    ]
    stable = 0
    new_start = len(runs[seeds[0]])
    for s in seeds:  # the new methods' claims: their own Holm family, listed after
        runs[s] = [*runs[s], *new_runs[s]]
    for k, first in enumerate(runs[seeds[0]]):
        verdicts = [runs[s][k].verdict for s in seeds]
        cells = [
            f"{runs[s][k].interval.estimate:+.2f}, p_Holm {runs[s][k].p_holm:.2g}: {v}"
            for s, v in zip(seeds, verdicts)
        ]
        same = len(set(verdicts)) == 1
        stable += same
        lines.append(
            f"| {first.test.key} | {first.test.claim} | "
            + " | ".join(cells)
            + f" | {'yes' if same else '**no**'} |"
        )
    record["seed_stability"] = {str(s): [d.to_dict() for d in runs[s]] for s in seeds}
    return [
        "### Do the verdicts survive another randomization seed?",
        "",
        f"The cascade's claims re-tested with randomization seeds {', '.join(map(str, seeds))} "
        "(each seed draws new weights for every step and new noise for the stochastic "
        f"methods; {len(x)} images, Holm within each seed's family of "
        f"{new_start} claims, and of the {len(runs[seeds[0]]) - new_start} claims about the "
        "new methods). Cells: mean tested value, corrected p, verdict. "
        f"**{stable} of {len(runs[seeds[0]])} verdicts are the same for every seed.**",
        "",
        *lines,
        "",
    ]


def fashion(
    n: int, settings: Settings, training: dict[str, Any], out: Path, lines: list[str],
    record: dict[str, Any],
) -> None:  # fmt: skip
    started = time.perf_counter()
    model, random_model = fashion_cnn(), fashion_cnn("random_labels")
    test = load_fashion_mnist("test")
    x, labels = test.inputs(0, n), test.labels[:n]
    foreground = test.images[:n] > 0
    shap = deepshap_for(fashion_references())
    methods = [*METHODS, shap]
    opts: dict[str, Any] = {**settings.options(), "layer": FASHION_CAM_LAYER}
    big: dict[str, Any] = {"batch_size": 256}  # 28×28 images: large chunks keep the small CNN busy
    timings: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        began = time.perf_counter()
        value = fn()
        timings[name] = round(time.perf_counter() - began, 1)
        say(f"  fashion {name} done ({timings[name]:.0f} s)")
        return value

    progress = lambda d, t: say(f"  fashion cascading {d}/{t}")  # noqa: E731
    cascade = timed(
        "cascading",
        lambda: model_randomization(model, x, methods, labels, progress=progress, **big, **opts),
    )
    independent = timed(
        "independent",
        lambda: model_randomization(
            model,
            x,
            methods,
            labels,
            mode="independent",
            metrics=("spearman_abs",),
            self_check=False,
            **big,
            **opts,
        ),
    )
    data = timed(
        "data randomization",
        lambda: data_randomization(model, random_model, x, methods, labels, **big, **opts),
    )
    explanations = list(cascade.original)  # the trained model's maps, made once
    edges = edge_similarity_of(explanations, labels=cascade.methods)
    rec: dict[str, Any] = {"tables": {}}
    tables = rec["tables"]
    for key in ("cascading", "cascading_foreground", "cascading_ssim", "cascading_hog",
                "independent", "data", "edges"):  # fmt: skip
        tables[key] = {}
    mprt = timed(
        "sMPRT and eMPRT",
        lambda: mprt_sections(
            model,
            x,
            labels,
            FASHION_CAM_LAYER,
            settings,
            rec,
            smooth=True,
            batch_size=1024,
            methods=methods,
        ),
    )
    k = min(n, settings.robust_images)
    robust = st.explain(model, x[:k], methods, labels[:k], **big, **opts)
    faith, faith_record = timed(
        "faithfulness",
        lambda: faithfulness_rows(
            model, explanations, cascade.methods, settings.resamples, robust, batch_size=256
        ),
    )
    decided = sorted(
        decide(cascade_tests(cascade) + data_tests(data), settings.resamples),
        key=lambda d: d.test.key,
    )
    decided_new = decide(new_method_tests(cascade, data), settings.resamples)
    seeds = timed(
        "seed reruns", lambda: seed_section(model, x, labels, cascade, settings, rec, [shap])
    )
    tables["agreement"] = {}
    agreement = agreement_table(explanations, cascade.methods, settings.resamples,
                                tables["agreement"])  # fmt: skip
    figures = out / "sanity"
    save_figure(plot_similarity_curves(cascade), figures / "fashion-cascading-spearman_abs.png")
    save_figure(plot_similarity_curves(cascade, "ssim"), figures / "fashion-cascading-ssim.png")
    save_figure(plot_randomization_grid(cascade, 0), figures / "fashion-grid-0.png")
    acc = {k: training[k]["test_accuracy"] for k in ("true_labels", "random_labels")}
    r = settings.resamples
    lines += [
        f"## Fashion-MNIST CNN ({n} test images, the true label explained)",
        "",
        f"Test accuracy: true-label model {acc['true_labels']:.4f}, random-label model "
        f"{acc['random_labels']:.4f} (training accuracy on its permuted labels "
        f"{training['random_labels']['train_accuracy']:.4f}). Grad-CAM, its ReLU form and "
        f"Guided Grad-CAM at `{FASHION_CAM_LAYER}` (the rectified activations of the last "
        f"conv layer); SmoothGrad {settings.smoothgrad_samples} samples; IG adaptive, at most "
        f"{settings.ig_steps} points. Every cell: mean over images [95 % bootstrap interval, "
        f"{r} resamples]; similarity = Spearman of the absolute maps unless said. The "
        "self-check column compares the trained model's map with a second run with another "
        "seed: 1 for deterministic methods, the noise ceiling for stochastic ones. Every "
        "randomized model is explained with its own seed, so `random_noise` shows the noise "
        "floor.",
        "",
        "### Cascading model randomization (Spearman, absolute maps)",
        "",
        *curve_table(cascade, "spearman_abs", r, tables["cascading"]),
        "",
        "### Cascading model randomization (Spearman, absolute maps, garment pixels only)",
        "",
        "Fashion-MNIST's black background is about half of each image; a map that is small "
        "there on both models raises whole-image correlations. These rows rank only the "
        "garment's pixels (input > 0).",
        "",
        *foreground_table(cascade, foreground, r, tables["cascading_foreground"]),
        "",
        "### Cascading model randomization (SSIM)",
        "",
        *curve_table(cascade, "ssim", r, tables["cascading_ssim"]),
        "",
        "### Cascading model randomization (Pearson correlation of HOG, as the paper)",
        "",
        *curve_table(cascade, "hog", r, tables["cascading_hog"]),
        "",
        "### Independent randomization (Spearman, absolute maps)",
        "",
        *curve_table(independent, "spearman_abs", r, tables["independent"]),
        "",
        "### Data randomization: true-label vs random-label model",
        "",
        *row_table(data, ("spearman_abs", "spearman", "ssim", "hog"), r, tables["data"]),
        "",
        "### Similarity to the edge map (Sobel)",
        "",
        *row_table(edges, ("spearman_abs", "ssim", "hog"), r, tables["edges"]),
        "",
        *mprt,
        "### Faithfulness and robustness (↑/↓: better)",
        "",
        *faith,
        "",
        f"¹ On the first {k} images: these re-explain 10 perturbed copies of every image.",
        "",
        "### The paper's findings on this model",
        "",
        FINDINGS_NOTE,
        "",
        *findings_lines(decided),
        "",
        *new_methods_text(cascade, decided_new, agreement, fashion=True),
        *frozen_note(cascade),
        *seeds,
        "![cascading](sanity/fashion-cascading-spearman_abs.png)",
        "![grid](sanity/fashion-grid-0.png)",
        "",
        f"({time.perf_counter() - started:.0f} s: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
        + ")",
        "",
    ]
    rec.update(
        {
            "cascading": to_jsonable(cascade),
            "independent": to_jsonable(independent),
            "faithfulness": faith_record,
            "findings": [d.to_dict() for d in decided],
            "new_method_findings": [d.to_dict() for d in decided_new],
            "seconds": timings,
        }
    )
    record["results"]["fashion"] = rec


def efficientnet(settings: Settings, out: Path, lines: list[str], record: dict[str, Any]) -> None:
    started = time.perf_counter()
    net = st.load_model("efficientnet-lite0")
    x = net.preprocess(st.load_images([f"sample:{s}" for s in DEFAULT_SAMPLES]))
    # LRP-ε without biases gives NaN maps on Lite0 (every photo): left out there
    methods = [*(m for m in METHODS if m is not LRP_EPSILON), deepshap_for(photo_references(x))]
    progress = lambda d, t: say(f"  efficientnet cascading {d}/{t}")  # noqa: E731
    cascade = model_randomization(net, x, methods, progress=progress, **settings.options())
    explanations = list(cascade.original)
    edges = edge_similarity_of(explanations, labels=cascade.methods)
    rec: dict[str, Any] = {"tables": {"cascading": {}, "cascading_ssim": {}, "edges": {}}}
    tables = rec["tables"]
    mprt = mprt_sections(
        net,
        x,
        cascade.original[0].targets,
        None,
        settings,
        rec,
        smooth=False,
        batch_size=None,
        methods=methods,
    )
    r = settings.resamples
    faith, faith_record = faithfulness_rows(net.module, explanations, cascade.methods, r)
    decided = decide(cascade_tests(cascade), r)
    decided_new = decide(new_method_tests(cascade), r)
    tables["agreement"] = {}
    agreement = agreement_table(explanations, cascade.methods, r, tables["agreement"])
    figures = out / "sanity"
    save_figure(plot_similarity_curves(cascade), figures / "effnet-cascading-spearman_abs.png")
    save_figure(plot_randomization_grid(cascade, 0), figures / "effnet-grid-0.png")
    lines += [
        f"## EfficientNet-Lite0 ({len(x)} bundled photos, the predicted class explained)",
        "",
        "Steps by block, logits first; Grad-CAM, its ReLU form and Guided Grad-CAM at the "
        "default layer (`_act_head`). With 6 images the intervals are wide and the exact "
        "sign-flip test cannot go below p = 2/64: these rows illustrate, the Fashion-MNIST "
        "rows decide.",
        "",
        "### Cascading model randomization (Spearman, absolute maps)",
        "",
        *curve_table(cascade, "spearman_abs", r, tables["cascading"]),
        "",
        "### Cascading model randomization (SSIM)",
        "",
        *curve_table(cascade, "ssim", r, tables["cascading_ssim"]),
        "",
        "### Similarity to the edge map (Sobel)",
        "",
        *row_table(edges, ("spearman_abs", "ssim", "hog"), r, tables["edges"]),
        "",
        *mprt,
        "### Faithfulness (↑/↓: better)",
        "",
        *faith,
        "",
        "### The paper's findings on this model",
        "",
        FINDINGS_NOTE,
        "",
        *findings_lines(decided),
        "",
        *new_methods_text(cascade, decided_new, agreement, fashion=False),
        *frozen_note(cascade),
        "![cascading](sanity/effnet-cascading-spearman_abs.png)",
        "![grid](sanity/effnet-grid-0.png)",
        "",
        f"({time.perf_counter() - started:.0f} s)",
        "",
    ]
    rec.update(
        {
            "cascading": to_jsonable(cascade),
            "faithfulness": faith_record,
            "findings": [d.to_dict() for d in decided],
            "new_method_findings": [d.to_dict() for d in decided_new],
        }
    )
    record["results"]["efficientnet"] = rec


NEW_BEGIN = "<!-- new-methods-run: begin (scripts/sanity_table.py --methods new) -->"
NEW_END = "<!-- new-methods-run: end -->"


def new_methods_only(  # noqa: PLR0915
    args: argparse.Namespace, settings: Settings, training: dict[str, Any], out: Path
) -> None:
    """``--methods new``: only the decomposition methods' rows (and the comparators their
    claims pair with), written as a marked section into the existing sanity-results.md
    (before the deviations) and under ``new_methods_run`` in its JSON; nothing else in
    either file changes."""
    started = time.perf_counter()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    r = settings.resamples
    fashion_part: list[str] = []
    lite_part: list[str] = []
    rec: dict[str, Any] = {"settings": {**settings.__dict__, "images": args.images}}
    deterministic = [*COMPARATORS, *NEW_METHODS]
    if args.only in (None, "fashion"):
        model, random_model = fashion_cnn(), fashion_cnn("random_labels")
        test = load_fashion_mnist("test")
        x, labels = test.inputs(0, args.images), test.labels[: args.images]
        shap = deepshap_for(fashion_references())
        methods = [*deterministic, shap]
        big: dict[str, Any] = {"batch_size": 256}  # no CAM among these: no layer
        progress = lambda d, t: say(f"  fashion cascading {d}/{t}")  # noqa: E731
        cascade = model_randomization(model, x, methods, labels, progress=progress, **big)
        data = data_randomization(model, random_model, x, methods, labels, **big)
        say(f"  fashion data randomization done ({time.perf_counter() - started:.0f} s)")
        f: dict[str, Any] = {"tables": {"cascading": {}, "data": {}, "agreement": {}}}
        mprt = mprt_sections(
            model, x, labels, None, settings, f, smooth=True, batch_size=1024,
            methods=methods, smprt_methods=deterministic, path_options=False,
        )  # fmt: skip
        explanations = list(cascade.original)
        k = min(args.images, settings.robust_images)
        robust = st.explain(model, x[:k], methods, labels[:k], **big)
        faith, f["faithfulness"] = faithfulness_rows(
            model, explanations, cascade.methods, r, robust, batch_size=256
        )
        decided = decide(new_method_tests(cascade, data), r)
        agreement = agreement_table(explanations, cascade.methods, r, f["tables"]["agreement"])
        f["findings"] = [d.to_dict() for d in decided]
        fashion_part += [
            f"### Fashion-MNIST CNN, the decomposition methods ({args.images} test images)",
            "",
            "#### Cascading model randomization (Spearman, absolute maps)",
            "",
            *curve_table(cascade, "spearman_abs", r, f["tables"]["cascading"]),
            "",
            "#### Data randomization: true-label vs random-label model",
            "",
            *row_table(data, ("spearman_abs", "spearman", "ssim", "hog"), r, f["tables"]["data"]),
            "",
            *(ln.replace("### ", "#### ", 1) for ln in mprt),
            "#### Faithfulness and robustness (↑/↓: better)",
            "",
            *faith,
            "",
            f"¹ On the first {k} images; not for DeepSHAP (re-explaining perturbed copies "
            "refuses a tensor option such as its reference batch).",
            "",
            *(ln.replace("### ", "#### ", 1) for ln in new_methods_text(
                cascade, decided, agreement, fashion=True)),
        ]  # fmt: skip
        f["seconds"] = round(time.perf_counter() - started, 1)
        rec["fashion"] = f
        say(f"  fashion done ({time.perf_counter() - started:.0f} s)")
    if args.only in (None, "efficientnet"):
        began = time.perf_counter()
        net = st.load_model("efficientnet-lite0")
        x = net.preprocess(st.load_images([f"sample:{s}" for s in DEFAULT_SAMPLES]))
        # LRP-ε without biases gives NaN maps on Lite0 (every photo): left out there
        lite = [m for m in deterministic if m is not LRP_EPSILON]
        methods = [*lite, deepshap_for(photo_references(x))]
        progress = lambda d, t: say(f"  efficientnet cascading {d}/{t}")  # noqa: E731
        cascade = model_randomization(net, x, methods, progress=progress)
        e: dict[str, Any] = {"tables": {"cascading": {}, "agreement": {}}}
        mprt = mprt_sections(
            net, x, cascade.original[0].targets, None, settings, e, smooth=False,
            batch_size=None, methods=methods, path_options=False,
        )  # fmt: skip
        explanations = list(cascade.original)
        faith, e["faithfulness"] = faithfulness_rows(net.module, explanations, cascade.methods, r)
        decided = decide(new_method_tests(cascade), r)
        agreement = agreement_table(explanations, cascade.methods, r, e["tables"]["agreement"])
        e["findings"] = [d.to_dict() for d in decided]
        lite_part += [
            f"### EfficientNet-Lite0, the decomposition methods ({len(x)} bundled photos)",
            "",
            "#### Cascading model randomization (Spearman, absolute maps)",
            "",
            *curve_table(cascade, "spearman_abs", r, e["tables"]["cascading"]),
            "",
            *(ln.replace("### ", "#### ", 1) for ln in mprt),
            "#### Faithfulness (↑/↓: better)",
            "",
            *faith,
            "",
            *(ln.replace("### ", "#### ", 1) for ln in new_methods_text(
                cascade, decided, agreement, fashion=False)),
        ]  # fmt: skip
        e["seconds"] = round(time.perf_counter() - began, 1)
        rec["efficientnet"] = e
    quick = " --quick" if args.quick else ""
    command = "PYTHONPATH=src python scripts/sanity_table.py --methods new" + quick
    for key, part in (("fashion", fashion_part), ("efficientnet", lite_part)):
        if key in rec:
            rec[key].update(date=when, command=command + f" --only {key}"
                              + (f" --images {args.images}" if key == "fashion" else ""),
                              settings=rec["settings"])  # fmt: skip
            part.append(f"({rec[key]['seconds']:.0f} s, run of {when})")
            part.append("")
    merge_new_methods(out, rec, {"fashion": fashion_part, "efficientnet": lite_part})


NEW_HEADS = {
    "fashion": "### Fashion-MNIST CNN, the decomposition methods",
    "efficientnet": "### EfficientNet-Lite0, the decomposition methods",
}


def merge_new_methods(out: Path, rec: dict[str, Any], parts: dict[str, list[str]]) -> None:
    """Write the models this run computed into the marked section of sanity-results.md
    (keeping the other model's part from an earlier run) and under ``new_methods_run``
    in the JSON, each model with its run's date and command."""
    md_path, json_path = out / "sanity-results.md", out / "sanity-results.json"
    text = md_path.read_text(encoding="utf-8") if md_path.exists() else ""
    record = json.loads(json_path.read_text(encoding="utf-8")) if json_path.exists() else {}
    runs = record.get("new_methods_run", {})
    if "date" in runs:  # one run for both models, from before per-model merging
        runs = {
            m: {**runs[m], "date": runs["date"], "settings": runs["settings"],
                "command": "PYTHONPATH=src python scripts/sanity_table.py --methods new "
                f"--only {m}" + (f" --images {runs['settings']['images']}"
                                  if m == "fashion" else "")}
            for m in NEW_HEADS if m in runs
        }  # fmt: skip
    old: list[str] = []
    if NEW_BEGIN in text:
        head, rest = text.split(NEW_BEGIN, 1)
        old = rest.split(NEW_END, 1)[0].splitlines()
        text = head + rest.split(NEW_END, 1)[1].lstrip("\n")
    kept: dict[str, list[str]] = {}
    starts = sorted((i, m) for i, ln in enumerate(old) for m, h in NEW_HEADS.items()
                    if ln.startswith(h))  # fmt: skip
    for k, (i, m) in enumerate(starts):
        stop = starts[k + 1][0] if k + 1 < len(starts) else len(old)
        kept[m] = old[i:stop]
        for before, after in LEGACY_TEXT.items():
            kept[m] = [ln.replace(before, after) for ln in kept[m]]
        if kept[m][-1].strip():
            kept[m].append("")
    for m in NEW_HEADS:
        if m in rec:
            kept[m] = parts[m]
            runs[m] = json.loads(dumps(rec[m]))
    origin = "; ".join(
        f"{'Fashion-MNIST' if m == 'fashion' else 'EfficientNet-Lite0'} rows: run of "
        f"{runs[m]['date']} (`{runs[m]['command']}`)"
        for m in NEW_HEADS
        if m in runs
    )
    block = [
        NEW_BEGIN,
        "## The decomposition methods (LRP, DeepLIFT, DeepSHAP): separate runs",
        "",
        f"**These rows come from separate runs: {origin}.** Everything outside this "
        "section comes from the last full run (its settings are under `settings` in "
        "sanity-results.json) and does not include these methods; the gradient, gradient "
        "× input and guided backprop rows here are recomputed in these runs so that the "
        "claims pair them with the new methods image by image (SmoothGrad/IG settings do "
        "not apply). A full run (`PYTHONPATH=src python scripts/sanity_table.py`) puts the "
        "new methods into every table above and drops this section.",
        "",
        *(ln for m in NEW_HEADS if m in kept for ln in kept[m]),
        NEW_END,
        "",
    ]
    marker = "## Deviations from the papers"
    if marker in text:
        head, tail = text.split(marker, 1)
        text = head + "\n".join(block) + "\n" + marker + tail
    else:
        text = text + "\n".join(block) + "\n"
    md_path.write_text(text, encoding="utf-8")
    record["new_methods_run"] = runs
    json_path.write_text(dumps(record), encoding="utf-8")


def deviations(settings: Settings) -> list[str]:
    """Where these tables differ from the papers, one line each."""
    items = [
        "**HOG similarity** is the Pearson correlation of the HOG descriptors, as Adebayo et "
        "al.; earlier versions of these tables used Spearman's rank correlation "
        '(`hog_similarity(..., correlation="spearman")` still gives it).',
        "**Map reduction**: SSIM and HOG compare the absolute reduced map (channel sum of "
        "|values|, clipped at the 99th percentile) for every method, where the paper's "
        "notebook min–max scaled each RGB map; Grad-CAM and gradients then compare on the "
        "same footing.",
        "**Grad-CAM** appears twice: raw (no ReLU, the scale the other methods keep) and in "
        "the paper's form with ReLU; the paper's findings are tested on the ReLU form. On "
        f"the Fashion CNN all CAMs use `{FASHION_CAM_LAYER}` (rectified activations); at "
        "`conv2` (before the ReLU) the map is negative at every pixel of these images and "
        "its ReLU form is zero.",
        "**Explained class**: every randomized model explains the class the trained model "
        "explained (the true label for Fashion-MNIST); the paper's code explained each "
        "model's own prediction (`follow_prediction=True`).",
        "**Steps** follow execution order, by block (stages of repeated blocks together); "
        "each step is re-initialised by the layer's own PyTorch initialisation from seed "
        "`seed + 1 + k`, batch-norm running statistics kept as in the paper (the paper "
        "re-initialised from a truncated normal).",
        "**Stochastic methods** (SmoothGrad, `random_noise`) draw independent noise for every "
        "model and for the self-check; the paper does not say how its noise was seeded.",
        f"**SmoothGrad** uses {settings.smoothgrad_samples} samples (σ = 0.15 × range), "
        "**IG** an adaptive rule with at most "
        f"{settings.ig_steps} points and a zero baseline, where the paper used fixed settings.",
        "**Fashion-MNIST**: 28 × 28 maps, so HOG uses 4-pixel cells (16 at 224 px as in the "
        "paper), and a garment-pixels-only Spearman table is added.",
        "**sMPRT** (Hedström et al.) compares only the trained and the fully randomized model "
        f"(Quantus's `skip_layers`), with {settings.copies} copies (the paper: 50 on "
        "ImageNet), and leaves out IG and SmoothGrad (their cost times the copies); layers "
        "in execution order, each step from its own seed (Quantus: registration order, one "
        "global seed); maps summed over channels as `quantus.explain`.",
        "**eMPRT** uses the absolute map (Quantus's default is the signed map) and 100 fixed "
        "bins; the second-moment normalisation of Binder et al. (2023) is applied to every "
        "map, and cannot change either score (Spearman's ρ and an equal-width histogram "
        "ignore a positive scale).",
        "**Statistics**: every cell is a mean with a 95 % percentile-bootstrap interval over "
        "images; every finding a sign-flip test, Holm-corrected — the paper reports means "
        "and figures without intervals.",
    ]
    return ["## Deviations from the papers", "", *(f"- {item}" for item in items), ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", choices=["fashion", "efficientnet"], default=None)
    parser.add_argument("--images", type=int, default=200, help="Fashion-MNIST test images")
    parser.add_argument("--ig-steps", type=int, default=128, help="IG's most path points")
    parser.add_argument("--seeds", default="1,2", help="extra randomization seeds (Fashion)")
    parser.add_argument("--copies", type=int, default=20, help="sMPRT noisy copies per map")
    parser.add_argument(
        "--robust-images",
        type=int,
        default=50,
        help="Fashion images for max-sensitivity and input invariance (they re-explain)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: SmoothGrad 4 samples, IG ≤ 65 points, 4 sMPRT copies, one "
        "extra seed, 2,000 bootstrap resamples",
    )
    parser.add_argument("--out", type=Path, default=DOCS, help="folder for the results")
    parser.add_argument(
        "--methods",
        choices=["new"],
        default=None,
        help="'new': compute only the decomposition methods (LRP, DeepLIFT, DeepSHAP) and "
        "their comparators, and merge them as a marked, dated section into the existing "
        "sanity-results.md/.json without recomputing the other rows",
    )
    args = parser.parse_args()
    settings = Settings.of(args)
    out: Path = args.out
    (out / "sanity").mkdir(parents=True, exist_ok=True)
    training = json.loads(
        (Path(st.__file__).parent / "models" / "weights" / "fashion_cnn_training.json").read_text()
    )
    if args.methods == "new":
        new_methods_only(args, settings, training, out)
        return
    record: dict[str, Any] = {
        "versions": {"seethrough": st.__version__, "torch": torch.__version__},
        "settings": {**settings.__dict__, "seeds": list(settings.seeds), "images": args.images},
        "results": {},
    }
    started = time.perf_counter()
    lines = [
        "# Sanity checks and faithfulness on our models",
        "",
        "Generated by `PYTHONPATH=src python scripts/sanity_table.py` "
        f"(seethrough {st.__version__}, torch {torch.__version__}, CPU). Do not edit by hand.",
        "",
    ]
    if args.only in (None, "fashion"):
        fashion(args.images, settings, training, out, lines, record)
    if args.only in (None, "efficientnet"):
        efficientnet(settings, out, lines, record)
    lines += deviations(settings)
    lines.append(f"(total {time.perf_counter() - started:.0f} s)")
    record["results"].setdefault("fashion_training", training)
    (out / "sanity-results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "sanity-results.json").write_text(dumps(record), encoding="utf-8")


if __name__ == "__main__":
    main()
