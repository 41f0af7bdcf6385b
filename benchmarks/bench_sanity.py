"""A full cascading model-randomization check: seethrough against its pass-count roofline
and against Quantus's ``MPRT`` on the same work, same run.

    PYTHONPATH=src python benchmarks/bench_sanity.py
    PYTHONPATH=src python benchmarks/bench_sanity.py --model fashion --images 64

Same work: every module with parameters is one step (Quantus's layers: modules with
``reset_parameters``; ours: ``granularity="module"``, the same modules in execution
order), logits first, cumulative; the gradient explained for the same classes at each
step; one similarity per image and step (Spearman of absolute maps). Quantus gets its own
explainer (``quantus.explain``, Captum ``Saliency``) on a deep copy.

Roofline: the model's own passes for the same work, timed directly: (steps + 2)
forward+backward passes of the batch (trained map, self-check, one per step). Each
randomized model's top class is read off its gradient pass (``Explanation.predicted``),
so no forward pass is added for it.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import warnings

import numpy as np
import torch

import seethrough as st
from seethrough.trust import model_randomization, randomization_steps


def load(name: str, images: int) -> tuple[torch.nn.Module, torch.Tensor]:
    if name == "fashion":
        from seethrough.data.fashion_mnist import load_fashion_mnist
        from seethrough.models.fashion_cnn import fashion_cnn

        return fashion_cnn(), load_fashion_mnist("test").inputs(0, images)
    net = st.load_model("efficientnet-lite0")
    names = ["sample:chelsea", "sample:coffee", "sample:rocket", "sample:astronaut"]
    x = net.preprocess(st.load_images((names * images)[:images]))
    return net.module, x


def main() -> None:
    import quantus

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", choices=["efficientnet-lite0", "fashion"], default="efficientnet-lite0"
    )
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model, x = load(args.model, args.images)
    with torch.no_grad():
        y = model(x).argmax(dim=1)
    steps = len(randomization_steps(model, x[:1], "module"))

    def ours() -> None:
        model_randomization(
            model,
            x,
            ["gradient"],
            y,
            granularity="module",
            metrics=("spearman_abs",),
            batch_size=len(x),
        )

    def theirs() -> None:
        metric = quantus.MPRT(disable_warnings=True, display_progressbar=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            metric(
                model=copy.deepcopy(model),
                x_batch=x.numpy(),
                y_batch=y.numpy(),
                a_batch=None,
                explain_func=quantus.explain,
                explain_func_kwargs={"method": "Saliency"},
                device="cpu",
                batch_size=len(x),
            )

    def roofline() -> None:
        frozen = copy.deepcopy(model)
        for p in frozen.parameters():
            p.requires_grad_(False)
        for _ in range(steps + 2):
            z = x.clone().requires_grad_(True)
            frozen(z).gather(1, y[:, None]).sum().backward()

    def clock(fn) -> float:  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    times: dict[str, list[float]] = {"ours": [], "quantus": [], "roofline": []}
    for _ in range(args.repeats):
        times["ours"].append(clock(ours))
        times["quantus"].append(clock(theirs))
        times["roofline"].append(clock(roofline))
    o, q, r = (statistics.median(times[k]) for k in ("ours", "quantus", "roofline"))
    print(
        f"{args.model}, {len(x)} images, {steps} steps (one per parametrised module), "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, median of {args.repeats}"
    )
    print("| ours s | Quantus MPRT s | roofline s | Quantus/ours | roofline/ours |")
    print("|---|---|---|---|---|")
    print(f"| {o:.2f} | {q:.2f} | {r:.2f} | {q / o:.2f} | {r / o:.2f} |")
    print("raw:", {k: [round(v, 3) for v in vs] for k, vs in times.items()}, np.__version__)


if __name__ == "__main__":
    main()
