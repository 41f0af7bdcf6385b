"""Time seethrough's DeepLIFT against Captum's and against the doubled-batch roofline.

For each model: the same inputs, zero baseline and targets go to
``st.explain(model, x, "deeplift", batch_size=N)`` and to Captum's
``DeepLift(model).attribute(x, baselines=0, target=t)`` — both run the N inputs and their
N references as one batch of 2N rows, forward and backward — and to the *roofline*: the
model's own forward and backward pass over 2N rows with respect to the input (parameters
frozen). Calls alternate (ours, Captum, roofline, ours, ...) after ``--warmup`` rounds; the
median of ``--repeats`` rounds is reported, and the largest difference between the two
results says whether both did the same work.

Models: ``resnet18`` (torchvision, ``weights=None``, init seeded with 0, its ReLUs as
separate modules and a clone between the stem's ReLU and a 2×2 max pool, the network on
which Captum 0.9 and ours agree: see tests/test_deeplift.py), ``fashion-cnn`` (the
project's Fashion-MNIST CNN: Captum runs it but reads stale gradients where a ReLU module
feeds a MaxPool module, captum#1104), ``efficientnet-lite0`` (Captum does not hook
``nn.ReLU6`` and returns gradient × Δx: cheaper, and not DeepLIFT).

Usage::

    PYTHONPATH=src python benchmarks/bench_deeplift.py                 # CPU defaults
    PYTHONPATH=src python benchmarks/bench_deeplift.py --device cuda --batch 64
    PYTHONPATH=src python benchmarks/bench_deeplift.py --models fashion-cnn --repeats 9
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import captum
import torch
import torchvision
from captum.attr import DeepLift
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock

import seethrough as st

MODELS = ("resnet18", "fashion-cnn", "efficientnet-lite0")
DEFAULT_JSON = Path(__file__).parent / "results-deeplift-2026-12-06.json"
NOTES = {
    "resnet18": "same computation (Captum-compatible ResNet-18)",
    "fashion-cnn": "Captum reads stale gradients at ReLU→MaxPool (captum#1104)",
    "efficientnet-lite0": "Captum skips nn.ReLU6: gradient × Δx, not DeepLIFT",
}


class Clone(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.clone()


class SeparateBlock(BasicBlock):
    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu_out(self.bn2(self.conv2(out)) + identity)


def resnet18() -> nn.Module:
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None)
    net.relu = nn.Sequential(nn.ReLU(), Clone())
    net.maxpool = nn.MaxPool2d(2, 2)
    for m in net.modules():
        if isinstance(m, BasicBlock):
            m.__class__ = SeparateBlock
            m.relu, m.relu_out = nn.ReLU(), nn.ReLU()
    return net.eval()


def model_and_inputs(name: str, batch: int, device: torch.device) -> tuple[nn.Module, Tensor]:
    if name == "resnet18":
        net, size = resnet18(), 224
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(batch, 3, size, size, generator=gen)
    elif name == "fashion-cnn":
        from seethrough.data.fashion_mnist import load_fashion_mnist

        loaded = st.load_model("fashion-cnn")
        net, x = loaded.module, load_fashion_mnist("test").inputs(0, batch)
    else:
        loaded = st.load_model(name)
        photos = loaded.preprocess(st.load_images(["sample:chelsea", "sample:rocket"]))
        net, x = loaded.module, photos.repeat((batch + 1) // 2, 1, 1, 1)[:batch]
    return net.to(device).eval(), x.to(device)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def roofline(model: nn.Module, x: Tensor, target: Tensor) -> Callable[[], Tensor]:
    """The model's forward and backward over the doubled batch, input gradient only."""
    pair = torch.cat([x, torch.zeros_like(x)])
    classes = torch.cat([target, target])
    frozen = [p for p in model.parameters() if p.requires_grad]

    def run() -> Tensor:
        for p in frozen:
            p.requires_grad_(False)
        try:
            leaf = pair.detach().requires_grad_(True)
            out = model(leaf)
            (grad,) = torch.autograd.grad(out.gather(1, classes[:, None]).sum(), leaf)
            return grad
        finally:
            for p in frozen:
                p.requires_grad_(True)

    return run


def measure(
    name: str, batch: int, args: argparse.Namespace, device: torch.device
) -> dict[str, Any]:
    model, x = model_and_inputs(name, batch, device)
    with torch.no_grad():
        target = model(x).argmax(1)
    captum_dl = DeepLift(model, multiply_by_inputs=True)
    baseline = torch.zeros_like(x)

    def ours() -> Tensor:
        return st.explain(model, x, "deeplift", target=target, batch_size=batch).attributions

    def theirs() -> Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return captum_dl.attribute(x, baselines=baseline, target=target).detach()

    roof = roofline(model, x, target)
    calls = {"ours": ours, "captum": theirs, "roofline": roof}
    for _ in range(args.warmup):
        for fn in calls.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(args.repeats):
        for key, fn in calls.items():
            times[key].append(timed(fn, device))
    a, b = ours(), theirs()
    median = {k: statistics.median(v) for k, v in times.items()}
    return {
        "model": name,
        "batch": batch,
        "rows_per_pass": 2 * batch,
        "times_s": times,
        "median_s": median,
        "ours_over_captum_speed": median["captum"] / median["ours"],
        "ours_over_roofline_speed": median["roofline"] / median["ours"],
        "captum_over_roofline_speed": median["roofline"] / median["captum"],
        "max_abs_difference": float((a - b).abs().max()),
        "max_abs_attribution": float(b.abs().max()),
        "note": NOTES[name],
    }


def environment(device: torch.device) -> dict[str, Any]:
    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "torch": torch.__version__,
        "captum": captum.__version__,
        "seethrough": st.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
        "device": str(device),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument(
        "--batch", default="4", help="inputs per call (2× rows per pass); a comma list runs each"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    results = [
        measure(name, int(batch), args, device)
        for name in args.models.split(",")
        for batch in args.batch.split(",")
    ]
    env = environment(device)
    print(
        f"DeepLIFT, {device}, torch {env['torch']}, "
        f"captum {env['captum']}, threads {env['threads']}, median of {args.repeats}"
    )
    print(
        "| model | batch (rows) | ours s | Captum s | roofline s | ours/Captum speed "
        "| ours/roofline | note |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        m = r["median_s"]
        print(
            f"| {r['model']} | {r['batch']} ({r['rows_per_pass']}) | {m['ours']:.3f} | "
            f"{m['captum']:.3f} | {m['roofline']:.3f} | "
            f"{r['ours_over_captum_speed']:.2f}× | {r['ours_over_roofline_speed']:.2f} | "
            f"{r['note']} |"
        )
    args.json.write_text(json.dumps({"environment": env, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
