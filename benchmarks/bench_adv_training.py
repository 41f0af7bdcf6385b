"""Adversarial training: an epoch of PGD-k training against the pass-count roofline
(a plain epoch × (k + 1)) and against the same loop with ``torchattacks.PGD``, same run.

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/bench_adv_training.py \
        --json benchmarks/results-adv-training-2026-12-06.json
    PYTHONPATH=src python benchmarks/bench_adv_training.py --device cuda --json out.json

PGD-k training costs k forward+backward passes for the attack plus one for the step, so its
floor is ``(k + 1)`` plain training steps; the ratio ``pgd_k / (plain × (k + 1))`` says how
close our loop (:func:`seethrough.models.training.train_classifier` with
:class:`~seethrough.models.training.AdversarialTraining`) comes (≤ 1: at or under the
roofline — under, because an attack's backward needs no parameter gradients). The anchor
is the same Adam loop with the examples made by ``torchattacks.PGD`` on a model taking
pixels (its convention), same ε, step, steps and random start. Each timing trains a fresh
copy of the shipped Fashion CNN on ``--batches`` batches of 128 real training images
(epoch time = that × 469 / batches); the median of ``--repeats``, interleaved, after one
warm-up of each.
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
import torch.nn.functional as F
import torchattacks
from torch import Tensor, nn

import seethrough as st
from seethrough.data.fashion_mnist import FASHION_MEAN, FASHION_STD, load_fashion_mnist
from seethrough.models.fashion_cnn import fashion_cnn
from seethrough.models.training import AdversarialTraining, train_classifier

BATCH = 128
EPOCH_BATCHES = 469  # 60,000 / 128, rounded up
VALID = ((0 - FASHION_MEAN) / FASHION_STD, (1 - FASHION_MEAN) / FASHION_STD)


class Pixels(nn.Module):
    """``model ∘ normalise``: takes pixels in [0, 1], as torchattacks expects."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model((x - FASHION_MEAN) / FASHION_STD)


def _torchattacks_loop(model: nn.Module, x: Tensor, y: Tensor, eps: float, k: int) -> None:
    """The anchor: Adam on cross-entropy of torchattacks.PGD examples, batch by batch."""
    pixels = Pixels(model)
    attack = torchattacks.PGD(pixels, eps=eps, alpha=2.5 * eps / k, steps=k, random_start=True)
    attack.set_model_training_mode(model_training=False, batchnorm_training=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = x * FASHION_STD + FASHION_MEAN
    for start in range(0, len(x), BATCH):
        adv = attack(images[start : start + BATCH], y[start : start + BATCH])
        pixels.train()
        loss = F.cross_entropy(pixels(adv), y[start : start + BATCH])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def _clock(fn: Callable[[], Any], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", default="3,7", help="the k of PGD-k, comma-separated")
    parser.add_argument("--eps", type=float, default=0.1, help="L∞, pixels")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = torch.device(args.device)
    train = load_fashion_mnist("train")
    n = args.batches * BATCH
    x, y = train.inputs()[:n].to(device), train.labels[:n].to(device)
    base = fashion_cnn().to(device)

    def ours(k: int | None) -> Callable[[], Any]:
        robustness = (
            None
            if k is None
            else AdversarialTraining(args.eps, steps=k, pixel_std=FASHION_STD, valid_range=VALID)
        )
        return lambda: train_classifier(
            copy.deepcopy(base), x, y, epochs=1, batch_size=BATCH, robustness=robustness
        )

    ks = [int(k) for k in args.steps.split(",")]
    runs: dict[str, Callable[[], Any]] = {"plain": ours(None)}
    for k in ks:
        runs[f"ours_pgd{k}"] = ours(k)
        runs[f"torchattacks_pgd{k}"] = lambda k=k: _torchattacks_loop(
            copy.deepcopy(base), x, y, args.eps, k
        )
    times: dict[str, list[float]] = {key: [] for key in runs}
    for fn in runs.values():
        fn()  # warm-up
    for _ in range(args.repeats):
        for key, fn in runs.items():  # interleaved: a busy machine slows all alike
            times[key].append(_clock(fn, device))
    per_epoch = {
        key: statistics.median(t) * EPOCH_BATCHES / args.batches for key, t in times.items()
    }
    rows = []
    for k in ks:
        rows.append(
            {
                "k": k,
                "plain_epoch_s": per_epoch["plain"],
                "ours_epoch_s": per_epoch[f"ours_pgd{k}"],
                "torchattacks_epoch_s": per_epoch[f"torchattacks_pgd{k}"],
                "ours_over_roofline": per_epoch[f"ours_pgd{k}"] / (per_epoch["plain"] * (k + 1)),
                "ratio_torchattacks_over_ours": per_epoch[f"torchattacks_pgd{k}"]
                / per_epoch[f"ours_pgd{k}"],
                "all_s": {
                    key: times[key] for key in ("plain", f"ours_pgd{k}", f"torchattacks_pgd{k}")
                },
            }
        )
    print(
        f"PGD-k adversarial training, L∞ ε = {args.eps} px, {device}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, {args.batches} batches of {BATCH}, median of "
        f"{args.repeats}, per epoch of {EPOCH_BATCHES} batches"
    )
    print(
        "| k | plain epoch s | ours epoch s | ours / (plain × (k+1)) | torchattacks epoch s "
        "| torchattacks/ours |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['k']} | {r['plain_epoch_s']:.1f} | {r['ours_epoch_s']:.1f} | "
            f"{r['ours_over_roofline']:.2f} | {r['torchattacks_epoch_s']:.1f} | "
            f"{r['ratio_torchattacks_over_ours']:.2f} |"
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
        args.json.write_text(json.dumps({"settings": settings, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
