"""LRP: seethrough against Zennit 0.4.6 and against the model's own forward+backward, same run.

    PYTHONPATH=src python benchmarks/bench_lrp.py                     # CPU, all three models
    PYTHONPATH=src python benchmarks/bench_lrp.py --device cuda --batch 32 --repeats 10
    PYTHONPATH=src python benchmarks/bench_lrp.py --quick             # 112 px, 3 repeats

Per model (torchvision VGG-16 and ResNet-18 with random weights, EfficientNet-Lite0 with its
weights) and composite, at the same batch, input and targets:

- ``ours``: ``st.explain(model, x, "lrp", target=t, composite=c, batch_size=batch)`` — the
  whole public call (guard, target checks, the pass, conservation);
- ``zennit``: ``Gradient(model, Composite(canonizers=[...]))`` called with
  ``attr_output = onehot × logit`` on a deep copy of the model; the composite is registered
  once outside the clock (the call alone is timed, which favours Zennit);
- ``roofline``: the model's own forward and backward to the input (parameters frozen, as
  ``st.explain(..., "gradient")`` runs them): the floor for any backward-pass method.

``relative_l2_vs_zennit`` (largest ``‖ours − zennit‖₂`` over smallest ``‖zennit‖₂`` of the
batch) is information, not a check: the two differ where Zennit leaves each merged batch norm
at ``x / √(1 + eps)`` and where it skips functional ops (Lite0's residual additions); the
tests compare them where they should agree.

Median of ``--repeats`` after one warm-up of each, interleaved; the ratios of the fastest
runs too (on a shared machine the minimum is the less noisy estimate of the work done). Writes
``benchmarks/results-lrp-<date>.json`` (every raw time and the environment) and prints a
Markdown table with ``zennit / ours`` (goal ≥ 1.0) and ``roofline / ours`` (goal ≥ 0.9).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from zennit.attribution import Gradient
from zennit.canonizers import SequentialMergeBatchNorm
from zennit.composites import LAYER_MAP_BASE, EpsilonGammaBox, EpsilonPlusFlat, LayerMapComposite
from zennit.rules import Epsilon
from zennit.torchvision import ResNetCanonizer, VGGCanonizer
from zennit.types import Convolution

import seethrough as st

ROOT = Path(__file__).resolve().parent
PHOTOS = ["chelsea", "coffee", "rocket", "motorcycle_left", "astronaut", "camera"]


def load(name: str, size: int) -> tuple[nn.Module, Tensor, Callable[[], Any], Any]:
    """The model (eval), the preprocessed photos at ``size``, Zennit's canonizer and the
    box bounds ``(low, high)`` per channel."""
    net = st.load_model("efficientnet-lite0")
    pre = net.preprocess
    pre = type(pre)(
        size=size,
        crop_fraction=pre.crop_fraction,
        mean=pre.mean,
        std=pre.std,
        interpolation=pre.interpolation,
    )
    x = pre(st.load_images([f"sample:{p}" for p in PHOTOS]))
    mean = torch.tensor(pre.mean).view(1, 3, 1, 1)
    std = torch.tensor(pre.std).view(1, 3, 1, 1)
    bounds = ((0 - mean) / std, (1 - mean) / std)
    torch.manual_seed(0)
    if name == "vgg16":
        return torchvision.models.vgg16(weights=None).eval(), x, VGGCanonizer, bounds
    if name == "resnet18":
        return torchvision.models.resnet18(weights=None).eval(), x, ResNetCanonizer, bounds
    if name == "efficientnet-lite0":
        return net.module.eval(), x, SequentialMergeBatchNorm, bounds
    raise SystemExit(f"unknown model {name!r} (vgg16, resnet18, efficientnet-lite0)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="vgg16,resnet18,efficientnet-lite0")
    parser.add_argument("--composites", default="epsilon_plus_flat,epsilon_gamma_box,epsilon")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--quick", action="store_true", help="112 px, 3 repeats")
    parser.add_argument("--json", default="", help="output path (default: results-lrp-<date>)")
    args = parser.parse_args()
    if args.quick:
        args.size, args.repeats = 112, 3
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows: list[dict[str, Any]] = []
    for model_name in args.models.split(","):
        model, photos, canonizer, (low, high) = load(model_name, args.size)
        model = model.to(device)
        x = photos.repeat((args.batch + len(photos) - 1) // len(photos), 1, 1, 1)[: args.batch]
        x = x.to(device)
        low, high = low.to(device), high.to(device)
        with torch.no_grad():
            targets = model(x).argmax(1)
        theirs_model = copy.deepcopy(model)
        for composite in args.composites.split(","):
            rows.append(
                measure(model, theirs_model, x, targets, composite, canonizer, low, high, args)
                | {"model": model_name}
            )
            print(f"{model_name} {composite}: done", file=sys.stderr)
    report(rows, args, device)


def measure(
    model: nn.Module,
    theirs_model: nn.Module,
    x: Tensor,
    targets: Tensor,
    composite: str,
    canonizer: Callable[[], Any],
    low: Tensor,
    high: Tensor,
    args: argparse.Namespace,
) -> dict[str, Any]:
    device = x.device
    options = {"low": low, "high": high} if composite == "epsilon_gamma_box" else {}
    theirs_composite = zennit_composite(composite, canonizer, low, high)
    onehot = F.one_hot(targets, 1000).to(x.dtype)
    params = list(model.parameters())

    def ours() -> Tensor:
        ex = st.explain(
            model, x, "lrp", target=targets, composite=composite, batch_size=len(x), **options
        )
        return ex.attributions

    def theirs() -> Tensor:
        _, relevance = attributor(x, lambda out: onehot * out)
        return relevance

    def roofline() -> Tensor:
        flags = [p.requires_grad for p in params]
        try:
            for p in params:
                p.requires_grad_(False)
            leaf = x.detach().requires_grad_()
            out = model(leaf)
            (grad,) = torch.autograd.grad(out.gather(1, targets[:, None]).sum(), leaf)
        finally:
            for p, flag in zip(params, flags):
                p.requires_grad_(flag)
        return grad

    def clock(fn: Callable[[], Tensor]) -> tuple[float, Tensor]:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start, result

    times: dict[str, list[float]] = {"ours": [], "zennit": [], "roofline": []}
    with Gradient(theirs_model, theirs_composite) as attributor:
        a, b = ours(), theirs()  # warm-up
        roofline()
        gap = float((a - b).flatten(1).norm(dim=1).max() / b.flatten(1).norm(dim=1).min())
        difference = gap if math.isfinite(gap) else None  # strict JSON
        for _ in range(args.repeats):
            for name, fn in (("ours", ours), ("zennit", theirs), ("roofline", roofline)):
                times[name].append(clock(fn)[0])
    medians = {k: statistics.median(v) for k, v in times.items()}
    fastest = {k: min(v) for k, v in times.items()}
    return {
        "composite": composite,
        "times_s": times,
        "median_s": medians,
        "min_s": fastest,
        "zennit_over_ours": medians["zennit"] / medians["ours"],
        "roofline_over_ours": medians["roofline"] / medians["ours"],
        "zennit_over_ours_min": fastest["zennit"] / fastest["ours"],
        "roofline_over_ours_min": fastest["roofline"] / fastest["ours"],
        "relative_l2_vs_zennit": difference,
    }


def zennit_composite(name: str, canonizer: Callable[[], Any], low: Tensor, high: Tensor) -> Any:
    """Zennit's composite of the same name; for ``"epsilon"`` (none in Zennit 0.4.6) its
    base map with ``Epsilon`` on convolutions and linear layers (ours also uses ε, not Norm,
    at sums and pooling: the same cost)."""
    if name == "epsilon_gamma_box":
        return EpsilonGammaBox(low=low, high=high, canonizers=[canonizer()])
    if name == "epsilon_plus_flat":
        return EpsilonPlusFlat(canonizers=[canonizer()])
    if name == "epsilon":
        layer_map = [*LAYER_MAP_BASE, (Convolution, Epsilon()), (nn.Linear, Epsilon())]
        return LayerMapComposite(layer_map, canonizers=[canonizer()])
    raise SystemExit(f"no Zennit composite for {name!r}")


def report(rows: list[dict[str, Any]], args: argparse.Namespace, device: torch.device) -> None:
    environment = {
        "device": str(device),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "cuda": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
        "note": "2-core CPU shared with other jobs: absolute times are noisy, ratios are same-run",
    }
    settings = {k: v for k, v in vars(args).items() if k != "json"}
    print(
        f"LRP, {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, batch "
        f"{args.batch}, {args.size} px, median of {args.repeats}"
    )
    print(
        "| model | composite | ours s | Zennit s | roofline s | Zennit/ours | roofline/ours "
        "| Zennit/ours (min) | roofline/ours (min) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        m = r["median_s"]
        print(
            f"| {r['model']} | {r['composite']} | {m['ours']:.3f} | {m['zennit']:.3f} | "
            f"{m['roofline']:.3f} | {r['zennit_over_ours']:.2f} | {r['roofline_over_ours']:.2f} "
            f"| {r['zennit_over_ours_min']:.2f} | {r['roofline_over_ours_min']:.2f} |"
        )
    date = time.strftime("%Y-%m-%d")
    suffix = "" if device.type == "cpu" else f"-{device.type}"
    path = Path(args.json) if args.json else ROOT / f"results-lrp{suffix}-{date}.json"
    path.write_text(
        json.dumps({"settings": settings, "environment": environment, "rows": rows}, indent=2)
        + "\n",
        encoding="utf-8",
    )
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
