"""A full channel-ablation sweep of one layer: seethrough against its pass-count roofline
and against the loop a user would write, same run.

    PYTHONPATH=src python benchmarks/bench_ablation.py
    PYTHONPATH=src python benchmarks/bench_ablation.py --images 500 --repeats 1

Work: every channel of the layer zero-ablated on its own, accuracy and loss per class
over N labelled images (Fashion-MNIST test images for the Fashion CNN; for
EfficientNet-Lite0, bundled photos labelled with the model's own predictions).

* ours: :func:`seethrough.anatomy.ablate` — the layer's output is computed once per chunk
  of images and repeated inside the hook, one row block per ablation;
* loop: one forward pass of the N images per channel with a zeroing hook, batches of 256
  (what a user of plain PyTorch writes);
* roofline: the pass count of the naive sweep, K × N rows of plain forward passes in
  batches of 256 under ``inference_mode``, no hooks — the floor for any method that runs
  the whole network once per ablation and image.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import Tensor, nn

from seethrough.anatomy import Ablation, ablate

ROWS = 256


def load(name: str, images: int) -> tuple[nn.Module, Tensor, Tensor, list[str]]:
    if name == "fashion":
        from seethrough.data.fashion_mnist import load_fashion_mnist
        from seethrough.models.fashion_cnn import fashion_cnn

        test = load_fashion_mnist("test")
        return (
            fashion_cnn(),
            test.inputs(0, images),
            test.labels[:images],
            ["conv1", "conv2", "fc1"],
        )
    import seethrough as st

    net = st.load_model("efficientnet-lite0")
    photos = ["chelsea", "coffee", "rocket", "astronaut", "motorcycle_left", "camera"]
    x = net.preprocess(st.load_images([f"sample:{p}" for p in photos]))
    x = x.repeat((images + len(x) - 1) // len(x), 1, 1, 1)[:images]
    with torch.inference_mode():
        y = net.module(x).argmax(dim=1)
    return net.module, x.clone(), y.clone(), ["_blocks.15", "_conv_head"]


def channels_of(model: nn.Module, layer: str, x: Tensor) -> int:
    found = dict(model.named_modules())[layer]
    shape: list[int] = []
    handle = found.register_forward_hook(lambda m, i, o: shape.extend(o.shape))
    with torch.inference_mode():
        model(x[:1])
    handle.remove()
    return shape[1]


def loop(model: nn.Module, layer: str, x: Tensor, y: Tensor, k: int) -> None:
    found = dict(model.named_modules())[layer]
    for c in range(k):

        def hook(m: nn.Module, i: object, o: Tensor, c: int = c) -> Tensor:
            o = o.clone()
            o[:, c] = 0
            return o

        handle = found.register_forward_hook(hook)
        try:
            with torch.inference_mode():
                for a in range(0, len(x), ROWS):
                    logits = model(x[a : a + ROWS])
                    torch.nn.functional.cross_entropy(logits, y[a : a + ROWS], reduction="none")
        finally:
            handle.remove()


def roofline(model: nn.Module, x: Tensor, k: int) -> None:
    with torch.inference_mode():
        for _ in range(k):
            for a in range(0, len(x), ROWS):
                model(x[a : a + ROWS])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["fashion", "efficientnet-lite0"], default="fashion")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--layers", default=None, help="Comma-separated (default: all).")
    args = parser.parse_args()
    model, x, y, layers = load(args.model, args.images)
    layers = args.layers.split(",") if args.layers else layers
    print(
        f"{args.model}, {len(x)} images, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, median of {args.repeats}"
    )
    print("| layer | channels | ours s | loop s | roofline s | loop/ours | roofline/ours |")
    print("|---|---|---|---|---|---|---|")
    for layer in layers:
        k = channels_of(model, layer, x)
        sweep = [Ablation(layer, (c,)) for c in range(k)]
        times: dict[str, list[float]] = {"ours": [], "loop": [], "roofline": []}
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = ablate(model, x, y, sweep, batch_size=ROWS)
            times["ours"].append(time.perf_counter() - start)
            start = time.perf_counter()
            loop(model, layer, x, y, k)
            times["loop"].append(time.perf_counter() - start)
            start = time.perf_counter()
            roofline(model, x, k)
            times["roofline"].append(time.perf_counter() - start)
        assert result.batched
        o, lo, r = (statistics.median(times[n]) for n in ("ours", "loop", "roofline"))
        print(f"| {layer} | {k} | {o:.2f} | {lo:.2f} | {r:.2f} | {lo / o:.1f} | {r / o:.1f} |")


if __name__ == "__main__":
    main()
