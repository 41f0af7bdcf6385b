"""Perturbation methods at equal model evaluations: seethrough against the model's own
forward-only throughput (the roofline for these methods) and against Captum, same run.

    PYTHONPATH=src python benchmarks/bench_perturbation.py
    PYTHONPATH=src python benchmarks/bench_perturbation.py --device cuda --rows 256

EfficientNet-Lite0 at 224 px, the bundled chelsea photo, target = predicted class.
- occlusion: 32 px window, stride 16 (169 windows) — Captum ``Occlusion`` with
  ``perturbations_per_eval`` = rows per pass, the same windows and zero baseline.
- rise: ``--masks`` masks (7×7 cells, p = 0.5); no Captum equivalent, roofline only.
Roofline: ``model(x)`` under ``inference_mode`` on as many rows, in chunks of the same size.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from captum.attr import Occlusion

import seethrough as st


def clock(fn: Callable[[], object], device: torch.device) -> float:
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
    parser.add_argument("--rows", type=int, default=16, help="rows per forward pass")
    parser.add_argument("--masks", type=int, default=256, help="RISE masks")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    net = st.load_model("efficientnet-lite0")
    model = net.module.to(device)
    x = net.preprocess(st.load_images(["sample:chelsea"])).to(device)
    with torch.no_grad():
        target = int(model(x).argmax())

    def roofline(rows: int) -> Callable[[], None]:
        batch = x.expand(args.rows, -1, -1, -1).contiguous()

        def run() -> None:
            with torch.inference_mode():
                for start in range(0, rows, args.rows):
                    model(batch[: min(args.rows, rows - start)])

        return run

    cases: list[tuple[str, int, Callable[[], object], Callable[[], object] | None]] = []
    occ_rows = 169 + 1  # windows + the clean image
    cases.append(
        (
            "occlusion (32 px, stride 16)",
            occ_rows,
            lambda: st.explain(
                model, x, "occlusion", target=target, window=32, stride=16, batch_size=args.rows
            ),
            lambda: Occlusion(model).attribute(
                x,
                sliding_window_shapes=(3, 32, 32),
                strides=(3, 16, 16),
                baselines=0,
                target=target,
                perturbations_per_eval=args.rows,
            ),
        )
    )
    cases.append(
        (
            f"rise ({args.masks} masks)",
            args.masks + 1,
            lambda: st.explain(
                model, x, "rise", target=target, masks=args.masks, batch_size=args.rows
            ),
            None,
        )
    )
    print(
        f"EfficientNet-Lite0, 1 image at 224 px, {device}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, {args.rows} rows per pass, "
        f"median of {args.repeats}"
    )
    print(
        "| method | model evaluations | ours s | roofline s | roofline/ours | Captum s "
        "| Captum/ours |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, rows, ours, theirs in cases:
        floor = roofline(rows)
        ours()
        if theirs is not None:
            theirs()
        t_ours, t_floor, t_theirs = [], [], []
        for _ in range(args.repeats):
            t_ours.append(clock(ours, device))
            t_floor.append(clock(floor, device))
            if theirs is not None:
                t_theirs.append(clock(theirs, device))
        o, f = statistics.median(t_ours), statistics.median(t_floor)
        c = statistics.median(t_theirs) if t_theirs else None
        captum = f"{c:.2f} | {c / o:.2f}" if c is not None else "– | –"
        print(f"| {name} | {rows} | {o:.2f} | {f:.2f} | {f / o:.2f} | {captum} |", flush=True)


if __name__ == "__main__":
    main()
