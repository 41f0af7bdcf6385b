"""A multi-method call against the sum of separate calls, same run.

    PYTHONPATH=src python benchmarks/bench_shared_pass.py \
        --methods gradient,gradient_x_input,grad_cam

EfficientNet-Lite0, the bundled photos, target = predicted class. Median of --repeats,
separate and shared calls interleaved.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import seethrough as st


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="gradient,gradient_x_input,grad_cam")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    net = st.load_model("efficientnet-lite0")
    model = net.module.to(device)
    names = ["chelsea", "coffee", "rocket", "motorcycle_left", "astronaut", "camera"]
    x = net.preprocess(st.load_images([f"sample:{n}" for n in names]))
    x = x.repeat((args.batch + len(x) - 1) // len(x), 1, 1, 1)[: args.batch].to(device)
    methods = args.methods.split(",")

    def clock(fn) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    def separate() -> None:
        for m in methods:
            st.explain(model, x, m, batch_size=args.batch)

    def shared() -> None:
        st.explain(model, x, methods, batch_size=args.batch)

    separate()
    shared()  # warm-up (and the default CAM layer's one-time trace)
    times: dict[str, list[float]] = {"separate": [], "shared": []}
    for _ in range(args.repeats):
        times["separate"].append(clock(separate))
        times["shared"].append(clock(shared))
    sep, sha = (statistics.median(times[k]) for k in ("separate", "shared"))
    print(
        f"methods {methods}, batch {args.batch}, {device}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, median of {args.repeats}"
    )
    print("| separate calls s | one shared call s | speed-up |")
    print("|---|---|---|")
    print(f"| {sep:.3f} | {sha:.3f} | {sep / sha:.2f}× |")


if __name__ == "__main__":
    main()
