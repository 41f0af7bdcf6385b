"""Integrated gradients: time to an accurate *map*, seethrough's adaptive rule against
Captum's fixed Gauss-Legendre grids, on EfficientNet-Lite0 and the bundled photos.

For each image, first a dense reference map: the trapezoid rule on ``--reference-steps``
evenly spaced points (default 2,049), computed as the mean of two ``st.explain`` calls,
``rule="riemann_trapezoid", steps=1025`` (the even points) and ``rule="riemann_middle",
steps=1024`` (the odd points) — exactly the 2,049-point trapezoid rule, ``T₂ₙ = (Tₙ + Mₙ)/2``,
at the same cost — with ``layout="contiguous"`` (``--reference-layout``). The two halves
also give the reference's own error estimate: ``‖Tₙ − T₂ₙ‖₁ = ‖Mₙ − Tₙ‖₁/2``, relative
to ``‖T₂ₙ‖₁`` (an estimate of ``T₂ₙ``'s error where the error falls as 1/n, as it does
on a network with kinks).

Then, timed: our default (adaptive rule, ``tolerance`` 0.5 %, ``map_tolerance`` 2 %) and
Captum ``IntegratedGradients(method="gausslegendre")`` at each ``--captum-steps``. For
each: path points, relative completeness error ``|ΣA − (f(x) − f(0))| / |f(x) − f(0)|``
(Captum's convergence delta over the same gap), relative L1 map error against the
reference ``‖A − ref‖₁ / ‖ref‖₁``, seconds; for ours also its own ``map_error``
estimate. Same model, image, zero baseline, target (the predicted class) and rows per
pass, in the same run; ``--repeats`` rounds, each running every tool once, the table
giving each row's fastest round (load from other jobs only adds time; the JSON keeps
every round and the median). A summary gives, per tool, the time to reach a map within
``--map-goal`` (2 %) and a completeness error within ``--completeness-goal`` (0.5 %) on
every image.

    PYTHONPATH=src python benchmarks/bench_ig_completeness.py --images chelsea,coffee,rocket \\
        --captum-steps 64,128,256,512,1024 --repeats 2 --json results.json  # ~18 min
    PYTHONPATH=src python benchmarks/bench_ig_completeness.py --images chelsea \\
        --captum-steps 16 --reference-steps 129             # a smoke run (~1 min)
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import captum
import torch
from captum.attr import IntegratedGradients

import seethrough as st


def rel_l1(a: torch.Tensor, ref: torch.Tensor) -> float:
    """``‖a − ref‖₁ / ‖ref‖₁`` in float64."""
    a64, r64 = a.double(), ref.double()
    return float((a64 - r64).abs().sum() / r64.abs().sum())


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    """``fn()`` and its wall-clock seconds (synchronised on CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="chelsea,coffee,rocket")
    parser.add_argument("--captum-steps", default="64,128,256,512")
    parser.add_argument(
        "--reference-steps",
        type=int,
        default=2049,
        help="points of the dense trapezoid reference (odd, ≥ 5)",
    )
    parser.add_argument("--reference-layout", default="contiguous")
    parser.add_argument("--rows", type=int, default=16, help="rows per forward/backward pass")
    parser.add_argument("--map-goal", type=float, default=0.02)
    parser.add_argument("--completeness-goal", type=float, default=0.005)
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="timed rounds (every tool once per round); seconds = the fastest round",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.reference_steps < 5 or args.reference_steps % 2 == 0:
        parser.error(f"--reference-steps must be odd and ≥ 5, got {args.reference_steps}")
    return args


def reference_map(
    model: torch.nn.Module, x: torch.Tensor, name: str, target: int, args: argparse.Namespace
) -> tuple[torch.Tensor, dict]:
    """The dense trapezoid map (float64) as the mean of its two halves, and its row."""
    half = (args.reference_steps - 1) // 2

    def call(rule: str, steps: int) -> Any:
        return st.explain(
            model,
            x,
            "integrated_gradients",
            target=target,
            batch_size=args.rows,
            layout=args.reference_layout,
            rule=rule,
            steps=steps,
        )

    (trap, mid), seconds = timed(
        lambda: (call("riemann_trapezoid", half + 1), call("riemann_middle", half)),
        x.device,
    )
    ref = (trap.attributions[0].double() + mid.attributions[0].double()) / 2
    gap = float(trap.scores[0].double() - trap.baseline_scores[0].double())
    row = {
        "image": name,
        "target": target,
        "gap": gap,
        "points": args.reference_steps,
        "error": abs(float(ref.sum()) - gap) / abs(gap),
        "self_error_estimate": rel_l1(trap.attributions[0], ref),
        "l1_over_gap": float(ref.abs().sum()) / abs(gap),
        "seconds": seconds,
    }
    print(
        f"| {name} | reference (trapezoid, untimed comparison) | {args.reference_steps} | "
        f"{row['error']:.4f} | ≈ {row['self_error_estimate']:.4f} (own, est.) | – | "
        f"{seconds:.1f} |",
        flush=True,
    )
    return ref, row


def measure(
    model: torch.nn.Module,
    x: torch.Tensor,
    name: str,
    target: int,
    ref: torch.Tensor,
    gap: float,
    args: argparse.Namespace,
) -> list[dict]:
    """Ours (default settings), then Captum at each step count, on one image; ``--repeats``
    rounds, each running every tool once (so load on the machine hits all alike)."""
    ig = IntegratedGradients(model)
    captum_steps = [int(s) for s in args.captum_steps.split(",")]
    rows: list[dict] = []
    for round_ in range(args.repeats):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ours, seconds = timed(
                lambda: st.explain(
                    model, x, "integrated_gradients", target=target, batch_size=args.rows
                ),
                x.device,
            )
        found = [
            {
                "image": name,
                "tool": "seethrough adaptive (default)",
                "points": int(ours.path_points[0]),
                "error": float(ours.relative_completeness_error[0]),
                "map_error": rel_l1(ours.attributions[0], ref),
                "map_error_estimate": float(ours.map_error[0]),
                "warnings": [str(w.message) for w in caught],
                "seconds": seconds,
            }
        ]
        for steps in captum_steps:
            (attr, delta), seconds = timed(
                functools.partial(
                    ig.attribute,
                    x,
                    target=target,
                    n_steps=steps,
                    method="gausslegendre",
                    internal_batch_size=args.rows,
                    return_convergence_delta=True,
                ),
                x.device,
            )
            found.append(
                {
                    "image": name,
                    "tool": "Captum gausslegendre",
                    "points": steps,
                    "error": abs(float(delta[0])) / abs(gap),
                    "map_error": rel_l1(attr[0].detach(), ref),
                    "map_error_estimate": None,
                    "seconds": seconds,
                }
            )
        print(
            f"  {name} round {round_ + 1}/{args.repeats}: "
            + ", ".join(f"{r['points']} pts {r['seconds']:.1f} s" for r in found),
            file=sys.stderr,
            flush=True,
        )
        if not rows:
            rows = [{**r, "seconds_all": [r["seconds"]]} for r in found]
            continue
        for r, new in zip(rows, found):
            r["seconds_all"].append(new["seconds"])
            r["seconds"] = min(r["seconds_all"])
            for key in ("points", "error", "map_error"):
                if new[key] != r[key]:  # deterministic on CPU; say so if not
                    r.setdefault(f"{key}_other_rounds", []).append(new[key])
    for r in rows:
        r["seconds_median"] = statistics.median(r["seconds_all"])
        estimate = r["map_error_estimate"]
        print(
            f"| {name} | {r['tool']} | {r['points']} | {r['error']:.4f} | "
            f"{r['map_error']:.4f} | {'–' if estimate is None else f'{estimate:.4f}'} | "
            f"{r['seconds']:.1f} |",
            flush=True,
        )
    return rows


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    net = st.load_model("efficientnet-lite0")
    model = net.module.to(device)
    names = args.images.split(",")
    x_all = net.preprocess(st.load_images([f"sample:{n}" for n in names])).to(device)
    half = (args.reference_steps - 1) // 2
    settings = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "torch": torch.__version__,
        "captum": captum.__version__,
        "seethrough": st.__version__,
        "processor": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "device": str(device),
        "rows_per_pass": args.rows,
        "reference": f"trapezoid, {args.reference_steps} evenly spaced points "
        f"(mean of trapezoid {half + 1} and midpoint {half}), layout {args.reference_layout}",
        "args": vars(args),
    }
    print(
        f"# IG map error vs time — {settings['date']}, torch {torch.__version__}, "
        f"captum {captum.__version__}, {settings['processor']}, threads {settings['threads']}, "
        f"{args.rows} rows per pass; reference: {settings['reference']}"
    )
    print(
        "| image | tool | points | rel. completeness error | rel. L1 map error vs reference "
        "| our map_error estimate | seconds |"
    )
    print("|---|---|---|---|---|---|---|")
    rows: list[dict] = []
    references: list[dict] = []
    for name, x in zip(names, x_all.split(1)):
        with torch.no_grad():
            target = int(model(x).argmax())
        ref, ref_row = reference_map(model, x, name, target, args)
        references.append(ref_row)
        rows += measure(model, x, name, target, ref, ref_row["gap"], args)
    captum_steps = [int(s) for s in args.captum_steps.split(",")]
    summary = summarize(rows, names, captum_steps, args.map_goal, args.completeness_goal)
    print()
    for line in summary["lines"]:
        print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"settings": settings, "references": references, "rows": rows, "summary": summary},
                f,
                indent=1,
            )


def summarize(
    rows: list[dict], names: list[str], captum_steps: list[int], map_goal: float, goal: float
) -> dict:
    """Time for each tool to reach both goals on every image, and the ratios: with each
    row's fastest round (``seconds``) and its median round (``seconds_median``)."""

    def meets(r: dict) -> bool:
        return r["map_error"] <= map_goal and r["error"] <= goal

    ours = [r for r in rows if r["tool"].startswith("seethrough")]
    captum = [r for r in rows if r["tool"].startswith("Captum")]
    ours_ok = all(meets(r) for r in ours)
    fixed = [s for s in captum_steps if all(meets(r) for r in captum if r["points"] == s)]
    fixed_step = min(fixed) if fixed else None
    hindsight: dict[str, int | None] = {}
    for name in names:
        ok = [r for r in captum if r["image"] == name and meets(r)]
        hindsight[name] = min(r["points"] for r in ok) if ok else None
    out: dict[str, Any] = {
        "ours_meets_goal": ours_ok,
        "captum_fixed_steps": fixed_step,
        "captum_hindsight_steps": hindsight,
    }
    lines = [
        f"goal: map within {map_goal:.1%} of the reference (L1) and completeness error "
        f"≤ {goal:.1%}, on every image",
        f"ours (default): {'meets it' if ours_ok else 'does NOT meet it'}",
        f"Captum: smallest step count meeting it on every image: {fixed_step}",
        f"Captum: fewest steps meeting it per image, in hindsight: {hindsight}",
    ]
    for key in ("seconds", "seconds_median"):
        ours_s = sum(r[key] for r in ours)
        fixed_s = sum(r[key] for r in captum if r["points"] == fixed_step) if fixed_step else None
        hind_s = (
            None
            if None in hindsight.values()
            else sum(r[key] for r in captum if hindsight[r["image"]] == r["points"])
        )
        out[key] = {"ours": ours_s, "captum_fixed": fixed_s, "captum_hindsight": hind_s}
        label = "fastest round" if key == "seconds" else "median round"
        line = f"{label}: ours {ours_s:.1f} s"
        if fixed_s is not None:
            line += (
                f"; Captum {fixed_step} steps {fixed_s:.1f} s (Captum/ours {fixed_s / ours_s:.2f})"
            )
        if hind_s is not None:
            line += f"; Captum in hindsight {hind_s:.1f} s (Captum/ours {hind_s / ours_s:.2f})"
        lines.append(line)
    out["lines"] = lines
    return out


if __name__ == "__main__":
    main()
