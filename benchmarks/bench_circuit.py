"""Class-circuit search: seethrough's batched ablation against a naive one-ablation-at-a-time
loop running the identical search, same run.

    PYTHONPATH=src python benchmarks/bench_circuit.py                       # CPU
    PYTHONPATH=src python benchmarks/bench_circuit.py --device cuda --images 4000 --repeats 3

Work: the whole search of :func:`seethrough.decompose.circuit` for one class of the
Fashion-MNIST CNN (``--cls``, default Coat) at its default layer ``pool2`` (64 channels),
on the first ``--images`` test images, the plain search (all images searched, every move
chosen and judged on them by the point estimate: ``held_out=0, validation=0,
confidence=0.5``), keep 0.95 —
every greedy step, drop and exchange round, each candidate circuit evaluated by ablation
over all the images:

- ``ours``: ``circuit(...)`` as shipped — each step's candidates in one sweep: per chunk of
  images the network runs up to ``pool2`` once, the output is repeated once per candidate
  inside the hook, and only the layers after it run on the repeated rows;
- ``loop``: the same search code with its evaluator replaced by what a user of plain
  PyTorch writes — per candidate, a full forward pass of the images (batches of 256) with
  a hook that mean-ablates the dropped channels. Same candidates, same choices: the
  script checks that both find the same circuit from the same number of evaluations.

Median of ``--repeats`` after one warm-up of each (a smaller search), interleaved. Writes
``benchmarks/results-circuit-<date>.json`` and prints ``loop / ours``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from torch import Tensor

import seethrough as st
from seethrough.data.fashion_mnist import load_fashion_mnist
from seethrough.decompose import circuit

# the module (the package's attribute of that name is the function)
circuit_module = importlib.import_module("seethrough.decompose.circuit")
Engine: Any = circuit_module._Engine  # the search's own evaluator, swapped below

ROOT = Path(__file__).resolve().parent
ROWS = 256


class LoopEngine(Engine):
    """The naive evaluator: one full forward pass of the images per candidate circuit."""

    def _group(self, x: Tensor, y: Tensor, reference: Tensor, keep: Tensor) -> list[Tensor]:
        ints = torch.zeros(len(keep), 6, dtype=torch.int64)
        floats = torch.zeros(len(keep), 2, dtype=torch.float64)
        member = y == self.cls
        for k, mask in enumerate(keep):
            handles = [
                spec.module.register_forward_hook(_masking(mask[spec.span], self.fills[spec.name]))
                for spec in self.specs
            ]
            try:
                with torch.inference_mode():
                    logits = torch.cat(
                        [self.module(x[a : a + ROWS]) for a in range(0, len(x), ROWS)]
                    )
            finally:
                for h in handles:
                    h.remove()
            said = logits.argmax(dim=1) == self.cls
            prob = torch.softmax(logits.float(), dim=1)[:, self.cls].double()
            for j, hits in enumerate(
                (
                    said & member,
                    said & ~member,
                    reference & ~said & member,
                    ~reference & said & member,
                    ~reference & said & ~member,
                    reference & ~said & ~member,
                )
            ):
                ints[k, j] = int(hits.sum())
            floats[k, 0] = float((prob * member).sum())
            floats[k, 1] = float(prob.sum())
        return [*ints.T, *floats.T]


def _masking(keep: Tensor, fill: Tensor) -> Any:
    mask = keep.reshape(1, -1, *([1] * (fill.dim() - 1)))
    return lambda module, inputs, output: torch.where(mask, output, fill)


def search(
    net: Any, x: Tensor, y: Tensor, cls: str, naive: bool, keep: float = 0.95
) -> tuple[float, Any]:
    started = time.perf_counter()
    options: dict[str, Any] = {"held_out": 0, "validation": 0, "confidence": 0.5, "keep": keep}
    if naive:
        with mock.patch.object(circuit_module, "_Engine", LoopEngine):
            found = circuit(net, (x, y), cls, **options)
    else:
        found = circuit(net, (x, y), cls, **options)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--cls", default="Coat")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    net = st.load_model("fashion-cnn")
    net.module.to(args.device)
    test = load_fashion_mnist("test")
    x, y = test.inputs(0, args.images).to(args.device), test.labels[: args.images]
    search(net, x[:100], y[:100], args.cls, False, keep=0.5)  # warm-up
    search(net, x[:100], y[:100], args.cls, True, keep=0.5)
    times: dict[str, list[float]] = {"ours": [], "loop": []}
    found: dict[str, Any] = {}
    for _ in range(args.repeats):
        for name in ("ours", "loop"):
            seconds, found[name] = search(net, x, y, args.cls, name == "loop")
            times[name].append(seconds)
            print(f"{name}: {seconds:.1f} s, {found[name].evaluations} evaluations")
    ours, loop = found["ours"], found["loop"]
    same = ours.channels == loop.channels and ours.evaluations == loop.evaluations
    median = {name: statistics.median(t) for name, t in times.items()}
    record = {
        "benchmark": "circuit",
        "model": "fashion-cnn",
        "layer": ours.layers[0],
        "class": args.cls,
        "images": args.images,
        "keep": ours.keep,
        "confidence": ours.confidence,
        "repeats": args.repeats,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": len(os.sched_getaffinity(0)),
        "evaluations": ours.evaluations,
        "circuit_size": ours.size,
        "same_circuit": same,
        "times": times,
        "median": median,
        "loop_over_ours": median["loop"] / median["ours"],
    }
    print(
        f"{args.cls} at {ours.layers[0]}: {ours.size} of {ours.total} channels, "
        f"{ours.evaluations} evaluations of {args.images} images; ours "
        f"{median['ours']:.1f} s, loop {median['loop']:.1f} s, loop/ours "
        f"{record['loop_over_ours']:.2f}, same circuit: {same}"
    )
    path = (
        Path(args.json) if args.json else ROOT / f"results-circuit-{time.strftime('%Y-%m-%d')}.json"
    )
    path.write_text(json.dumps(record, indent=1) + "\n")
    if not same:
        raise SystemExit("the two searches found different circuits")


if __name__ == "__main__":
    main()
