"""PGD: seethrough's :func:`~seethrough.robust.pgd` against ``torchattacks.PGD``, same run.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_attacks.py \
        --json benchmarks/results-attacks-2026-12-06.json
    PYTHONPATH=src python benchmarks/bench_attacks.py --device cuda --json out.json

Both attack the same images with the same settings (L∞, ε, step, steps, random start, one
restart, the whole batch in one pass): the Fashion-MNIST CNN on real test images (ε = 0.1 in
pixels) and EfficientNet-Lite0 on the sample photos (ε = 4/255 in pixels), each model wrapped
so that both libraries attack pixels in [0, 1] (torchattacks' convention; ours is then
``valid_range=(0, 1)``). Ours also runs one extra forward pass for the margins and success it
returns, which torchattacks does not compute; it is timed in. torchattacks runs on a deep copy
(it calls ``model.eval()``). Times are the median of ``--repeats`` after one warm-up of each;
the ratio is torchattacks / ours (> 1: ours is faster), in wall time and in process CPU
time (steadier on a shared machine with one thread: ``OMP_NUM_THREADS=1``). Ours runs with
``layout="auto"`` (channels-last on the CPU when verified) and, as a second row,
``layout="contiguous"``.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torchattacks
from torch import Tensor, nn

import seethrough as st
from seethrough.data.fashion_mnist import load_fashion_mnist
from seethrough.robust import pgd


class Pixels(nn.Module):
    """``model ∘ normalise``: takes pixels in [0, 1], as torchattacks expects."""

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean).reshape(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).reshape(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        mean, std = self.get_buffer("mean"), self.get_buffer("std")
        return self.model((x - mean) / std)


def _case(name: str, device: torch.device, images: int) -> tuple[nn.Module, Tensor, Tensor]:
    if name == "fashion-cnn":
        net = st.load_model("fashion-cnn")
        test = load_fashion_mnist("test")
        x = test.images[:images].float().div(255)[:, None]
        y = test.labels[:images]
    else:
        net = st.load_model("efficientnet-lite0")
        names = ["chelsea", "coffee", "rocket", "motorcycle_left", "astronaut", "camera"]
        batch = net.preprocess(st.load_images([f"sample:{n}" for n in names]))
        x = net.preprocess.invert(batch).repeat((images + len(names) - 1) // len(names), 1, 1, 1)
        x = x[:images]
        with torch.no_grad():
            y = net.module(net.preprocess(st.load_images([f"sample:{n}" for n in names])))
        y = y.argmax(1).repeat((images + len(names) - 1) // len(names))[:images]
    model = Pixels(net.module, net.preprocess.mean, net.preprocess.std).eval().to(device)
    return model, x.to(device), y.to(device)


def _clock(fn: Callable[[], Any], device: torch.device) -> tuple[float, float]:
    """Wall and process CPU seconds of ``fn()``."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, time.process_time() - cpu


def _bench(
    name: str, eps: float, args: argparse.Namespace, device: torch.device
) -> list[dict[str, Any]]:
    model, x, y = _case(name, device, args.images)
    theirs_model = copy.deepcopy(model)
    alpha = 2.5 * eps / args.steps
    attack = torchattacks.PGD(theirs_model, eps=eps, alpha=alpha, steps=args.steps)

    def ours(layout: str) -> Callable[[], Any]:
        return lambda: pgd(
            model,
            x,
            eps=eps,
            steps=args.steps,
            step_size=alpha,
            labels=y,
            valid_range=(0.0, 1.0),
            batch_size=len(x),
            layout=layout,
        )

    def theirs() -> Any:
        return attack(x, y)

    runs = {"auto": ours("auto"), "contiguous": ours("contiguous"), "torchattacks": theirs}
    times: dict[str, list[float]] = {key: [] for key in runs}
    cpu: dict[str, list[float]] = {key: [] for key in runs}
    for fn in runs.values():
        fn()  # warm-up
    for _ in range(args.repeats):
        for key, fn in runs.items():  # interleaved: a busy machine slows all alike
            wall, used = _clock(fn, device)
            times[key].append(wall)
            cpu[key].append(used)
    t_theirs = statistics.median(times["torchattacks"])
    c_theirs = statistics.median(cpu["torchattacks"])
    rows = []
    for layout in ("auto", "contiguous"):
        t_ours = statistics.median(times[layout])
        c_ours = statistics.median(cpu[layout])
        rows.append(
            {
                "model": name,
                "images": len(x),
                "eps_pixels": eps,
                "steps": args.steps,
                "layout": layout,
                "ours_s": t_ours,
                "torchattacks_s": t_theirs,
                "ratio_torchattacks_over_ours": t_theirs / t_ours,
                "ours_cpu_s": c_ours,
                "torchattacks_cpu_s": c_theirs,
                "cpu_ratio_torchattacks_over_ours": c_theirs / c_ours,
                "ours_all_s": times[layout],
                "torchattacks_all_s": times["torchattacks"],
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--images", type=int, default=0, help="0: 128 (Fashion), 12 (Lite0)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", default="fashion-cnn,efficientnet-lite0")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = torch.device(args.device)
    records = []
    for name in args.models.split(","):
        defaults = {"fashion-cnn": (128, 0.1), "efficientnet-lite0": (12, 4 / 255)}
        images, eps = defaults[name]
        run_args = argparse.Namespace(**{**vars(args), "images": args.images or images})
        records += _bench(name, eps, run_args, device)
    print(
        f"PGD L∞ {args.steps} steps, {device}, torch {torch.__version__}, threads "
        f"{torch.get_num_threads()}, median of {args.repeats}"
    )
    print(
        "| model | images | layout | ours s | torchattacks s | torchattacks/ours | CPU-time ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in records:
        print(
            f"| {r['model']} | {r['images']} | {r['layout']} | {r['ours_s']:.3f} | "
            f"{r['torchattacks_s']:.3f} | {r['ratio_torchattacks_over_ours']:.2f} | "
            f"{r['cpu_ratio_torchattacks_over_ours']:.2f} |"
        )
    if args.json is not None:
        settings = {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "torch": torch.__version__,
            "torchattacks": torchattacks.__version__,
            "seethrough": st.__version__,
            "processor": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "device": str(device),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        }
        args.json.write_text(json.dumps({"settings": settings, "rows": records}, indent=1))


if __name__ == "__main__":
    main()
