"""The measured numbers of docs/robustness.md, "Attacks and robust evaluation".

    PYTHONPATH=src python scripts/robust_attack_numbers.py --json docs/robustness-attacks.json

1. The shipped Fashion-MNIST CNN on the first ``--images`` real test images: clean and robust
   accuracy under PGD-k L∞ at ε ∈ {0.05, 0.1, 0.2} in pixel units, bootstrap 95 % intervals,
   with the gradient-masking checks (:func:`seethrough.robust.evaluate`); FGSM at the same ε.
2. EfficientNet-Lite0 on the six default sample photos: PGD-k L∞ at ε = 1/255 and 4/255 in
   pixel units, untargeted (against the clean prediction) and targeted (to one class).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

import seethrough as st
from seethrough.data.fashion_mnist import load_fashion_mnist
from seethrough.data.images import DEFAULT_SAMPLES
from seethrough.reporting.serialize import to_jsonable
from seethrough.robust import evaluate, fgsm, pgd

TARGET = "goldfish"


def fashion(images: int, steps: int) -> dict[str, Any]:
    net = st.load_model("fashion-cnn")
    test = load_fashion_mnist("test")
    x, y = test.inputs(0, images), test.labels[:images]
    start = time.perf_counter()
    report = evaluate(net, (x, y), eps=[0.05, 0.1, 0.2], eps_space="pixels", steps=steps)
    seconds = time.perf_counter() - start
    print(f"Fashion CNN, {images} test images, PGD-{steps} L∞ (pixels), {seconds:.0f} s")
    print(f"clean accuracy {report.clean_accuracy.format(3)}")
    fast = {}
    for e, robust, worst in zip(report.eps, report.robust_accuracy, report.worst_case_accuracy):
        f = fgsm(net, x, eps=e, eps_space="pixels", labels=y)
        fast[e] = float(((f.predicted == y) & report.correct).double().mean())
        print(f"ε = {e}: PGD {robust.format(3)}, worst case {worst.format(3)}, FGSM {fast[e]:.3f}")
    for check in report.checks:
        print(check)
    print(report.describe().text())
    return {
        "report": to_jsonable(report),
        "fgsm_accuracy": fast,
        "seconds": seconds,
        "text": report.describe().text(),
    }


def lite0(steps: int) -> list[dict[str, Any]]:
    net = st.load_model("efficientnet-lite0")
    labels = net.labels or ()
    x = net.preprocess(st.load_images([f"sample:{n}" for n in DEFAULT_SAMPLES]))
    with torch.no_grad():
        probs = net.module(x).softmax(1)
    rows: list[dict[str, Any]] = []
    for eps in (1 / 255, 4 / 255):
        for target in ("predicted", TARGET):
            result = pgd(net, x, eps=eps, eps_space="pixels", steps=steps, target=target)
            with torch.no_grad():
                adv = net.module(result.adversarial).softmax(1)
            for i, name in enumerate(DEFAULT_SAMPLES):
                clean = int(probs[i].argmax())
                moved = int(result.predicted[i])
                rows.append(
                    {
                        "image": name,
                        "eps_pixels": eps,
                        "target": target,
                        "clean_class": labels[clean],
                        "clean_probability": float(probs[i, clean]),
                        "adversarial_class": labels[moved],
                        "adversarial_probability": float(adv[i, moved]),
                        "success": bool(result.success[i]),
                        "margin": float(result.margin[i]),
                        "linf_pixels": float(result.norms[i]),
                    }
                )
            print(result.describe().text())
    print("| image | ε (pixels) | attack | clean | adversarial | margin |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        attack = "untargeted" if r["target"] == "predicted" else f"→ {r['target']}"
        print(
            f"| {r['image']} | {round(r['eps_pixels'] * 255)}/255 | {attack} | "
            f"{r['clean_class']} ({r['clean_probability']:.2f}) | "
            f"{r['adversarial_class']} ({r['adversarial_probability']:.2f}) | "
            f"{r['margin']:.2f} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    out = {
        "settings": {"images": args.images, "steps": args.steps, "torch": torch.__version__},
        "fashion_cnn": fashion(args.images, args.steps),
        "efficientnet_lite0": lite0(args.steps),
    }
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
