"""Concept relevance (CRP): seethrough against zennit-crp 0.6.0, same run, equal batch.

    PYTHONPATH=src python benchmarks/bench_concepts.py                  # CPU, both models
    PYTHONPATH=src python benchmarks/bench_concepts.py --device cuda --images 8 --repeats 10

Per model — torchvision VGG-16 with batch norm (random weights) at ``features.40``, and
EfficientNet-Lite0 (its weights) at ``_blocks.12`` — on the bundled photos at 224 px, the
predicted class, the top ``--top`` channels with one conditional heatmap each:

- ``ours``: ``st.decompose.concepts(model, x, layer, top=top, batch_size=top)`` — the whole
  public call (guard, checks, channel relevance, the top channels' conditional heatmaps);
- ``crp``: zennit-crp's ``CondAttribution`` on a deep copy of the model with Zennit's
  ``EpsilonPlusFlat`` and the model's canonizer: one call with ``{"y": t}`` and
  ``record_layer=[layer]`` for the channel relevance, then, per image, one call with the
  ``top`` conditions ``{"y": t, layer: [c]}`` (one batch of ``top`` rows, as ours);
- ``lrp``: ``st.explain(model, x, "lrp")`` — one plain LRP heatmap, for scale.

zennit-crp runs the whole network forward and backward for each batch of conditions; ours
runs the part below the layer only (the relevance at the layer is reused). On Lite0 Zennit
0.4.6 has no rule for the residual additions (it passes the gradient there), so its numbers
differ from ours; the timing still compares the same amount of work. Median of
``--repeats`` after one warm-up of each, interleaved. Writes
``benchmarks/results-concepts-<date>.json`` and prints a Markdown table with ``crp / ours``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torchvision
from crp.attribution import CondAttribution
from crp.concepts import ChannelConcept
from torch import Tensor, nn
from zennit.canonizers import SequentialMergeBatchNorm
from zennit.composites import EpsilonPlusFlat
from zennit.torchvision import VGGCanonizer

import seethrough as st
from seethrough.decompose import concepts

ROOT = Path(__file__).resolve().parent
PHOTOS = ["chelsea", "coffee", "rocket", "motorcycle_left", "astronaut", "camera"]


def load(name: str, images: int, device: str) -> tuple[nn.Module, Tensor, str, Callable[[], Any]]:
    """The model (eval, on ``device``), the photos, the layer and Zennit's canonizer."""
    net = st.load_model("efficientnet-lite0")
    x = net.preprocess(st.load_images([f"sample:{p}" for p in (PHOTOS * 4)[:images]]))
    torch.manual_seed(0)
    if name == "vgg16_bn":
        model = torchvision.models.vgg16_bn(weights=None).eval()
        return model.to(device), x.to(device), "features.40", VGGCanonizer
    if name == "efficientnet-lite0":
        return net.module.eval().to(device), x.to(device), "_blocks.12", SequentialMergeBatchNorm
    raise SystemExit(f"unknown model {name!r} (vgg16_bn, efficientnet-lite0)")


def crp_call(
    model: nn.Module, x: Tensor, layer: str, top: int, canonizer: Callable[[], Any]
) -> Callable[[], Tensor]:
    """zennit-crp's channel relevance and top channels' conditional heatmaps."""
    copy_ = copy.deepcopy(model)
    attribution = CondAttribution(copy_)
    composite = EpsilonPlusFlat(canonizers=[canonizer()])
    with torch.no_grad():
        targets = copy_(x).argmax(1).tolist()

    def run() -> Tensor:
        data = x.clone().requires_grad_(True)
        first = attribution(data, [{"y": [t]} for t in targets], composite, record_layer=[layer])
        relevance = ChannelConcept().attribute(first.relevances[layer], abs_norm=False)
        chosen = torch.argsort(relevance, dim=1, descending=True)[:, :top]
        maps = []
        for row, target in enumerate(targets):
            conditions = [{"y": [target], layer: [int(c)]} for c in chosen[row]]
            one = x[row : row + 1].clone().requires_grad_(True)
            maps.append(attribution(one, conditions, composite).heatmap)
        return torch.stack(maps)

    return run


def timed(fn: Callable[[], Any], device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--models", default="vgg16_bn,efficientnet-lite0")
    parser.add_argument("--images", type=int, default=1)
    parser.add_argument("--top", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for name in args.models.split(","):
        model, x, layer, canonizer = load(name, args.images, args.device)
        calls: dict[str, Callable[[], Any]] = {
            "ours": lambda m=model, x=x, layer=layer: concepts(
                m, x, layer, top=args.top, batch_size=args.top
            ),
            "crp": crp_call(model, x, layer, args.top, canonizer),
            "lrp": lambda m=model, x=x: st.explain(m, x, "lrp", batch_size=args.top),
        }
        times: dict[str, list[float]] = {k: [] for k in calls}
        for fn in calls.values():
            fn()  # warm-up
        for _ in range(args.repeats):
            for key, fn in calls.items():
                times[key].append(timed(fn, args.device))
        median = {k: statistics.median(v) for k, v in times.items()}
        rows.append({"model": name, "layer": layer, "times": times, "median": median})
        print(
            f"| {name} | {layer} | {median['ours']:.2f} s | {median['crp']:.2f} s | "
            f"{median['crp'] / median['ours']:.2f} | {median['lrp']:.2f} s |",
            flush=True,
        )
    result = {
        "benchmark": "concepts",
        "images": args.images,
        "top": args.top,
        "repeats": args.repeats,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "rows": rows,
    }
    out = ROOT / f"results-concepts-{time.strftime('%Y-%m-%d')}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
