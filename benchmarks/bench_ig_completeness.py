"""Integrated gradients: time to reach a completeness error, seethrough's adaptive rule
against Captum's fixed Gauss-Legendre grids, on EfficientNet-Lite0 and the bundled photos.

For each image: our default (adaptive, tolerance 0.5%) — points used, completeness error,
seconds; Captum ``IntegratedGradients(method="gausslegendre")`` at each ``--captum-steps``,
with its convergence delta (the same completeness error) and seconds. Same model, input,
zero baseline, target (the predicted class) and rows per pass, in the same run.

    PYTHONPATH=src python benchmarks/bench_ig_completeness.py --images chelsea,rocket
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date

import torch
from captum.attr import IntegratedGradients

import seethrough as st


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="chelsea,coffee,rocket")
    parser.add_argument("--captum-steps", default="64,128,256,512")
    parser.add_argument("--rows", type=int, default=16, help="rows per forward/backward pass")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    net = st.load_model("efficientnet-lite0")
    model = net.module.to(device)
    names = args.images.split(",")
    x_all = net.preprocess(st.load_images([f"sample:{n}" for n in names])).to(device)
    captum_steps = [int(s) for s in args.captum_steps.split(",")]

    def timed(fn):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return out, time.perf_counter() - start

    rows = []
    print(
        f"# IG completeness vs time — {date.today()}, torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}, threads {torch.get_num_threads()}"
    )
    print("| image | tool | points | rel. completeness error | seconds |")
    print("|---|---|---|---|---|")
    for name, x in zip(names, x_all.split(1)):
        with torch.no_grad():
            target = int(model(x).argmax())
        ours, seconds = timed(
            lambda x=x, target=target: st.explain(
                model, x, "integrated_gradients", target=target, batch_size=args.rows
            )
        )
        gap = float(ours.scores[0] - ours.baseline_scores[0])
        row = {
            "image": name,
            "tool": "seethrough adaptive (default)",
            "points": int(ours.path_points[0]),
            "error": float(ours.relative_completeness_error[0]),
            "seconds": seconds,
        }
        rows.append(row)
        print(
            f"| {name} | {row['tool']} | {row['points']} | {row['error']:.4f} | {seconds:.1f} |",
            flush=True,
        )
        ig = IntegratedGradients(model)
        for steps in captum_steps:
            (_, delta), seconds = timed(
                lambda x=x, target=target, steps=steps, ig=ig: ig.attribute(
                    x,
                    target=target,
                    n_steps=steps,
                    method="gausslegendre",
                    internal_batch_size=args.rows,
                    return_convergence_delta=True,
                )
            )
            row = {
                "image": name,
                "tool": "Captum gausslegendre",
                "points": steps,
                "error": abs(float(delta[0])) / abs(gap),
                "seconds": seconds,
            }
            rows.append(row)
            print(
                f"| {name} | {row['tool']} | {steps} | {row['error']:.4f} | {seconds:.1f} |",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
