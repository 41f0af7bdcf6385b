"""Render EfficientNet-Lite0 channels from an early, a middle and a late layer for the docs.

    PYTHONPATH=src python scripts/inside_gallery.py      # writes docs/inside.md, docs/inside/*.png
    PYTHONPATH=src python scripts/inside_gallery.py --size 48 --steps 8 --out /tmp/gallery

One batched :func:`seethrough.inside.maximize` call optimises every image (all layers'
channels together: one forward pass per step, stopped after the deepest layer), Fourier
parametrization with decorrelated colour, Lucent's standard transforms, seed 0. Channels are
spread evenly over each layer's channels. The defaults run in a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

import seethrough as st
from seethrough.core import trace_layers
from seethrough.inside import Visualization, channels, maximize
from seethrough.viz.grid import save_figure

LAYERS = {"early": "_blocks.2", "middle": "_blocks.8", "late": "_blocks.14"}


def spread(count: int, wanted: int) -> list[int]:
    """``wanted`` channel indices spread evenly over ``range(count)``."""
    if wanted >= count:
        return list(range(count))
    return [round(i * (count - 1) / (wanted - 1)) for i in range(wanted)] if wanted > 1 else [0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--channels", type=int, default=6, help="channels per layer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="docs", help="folder for inside.md and inside/*.png")
    args = parser.parse_args()

    net = st.load_model("efficientnet-lite0")
    shapes = {i.name: i.shape for i in trace_layers(net.module, torch.zeros(1, 3, 64, 64))}
    picked = {key: spread(shapes[layer][1], args.channels) for key, layer in LAYERS.items()}
    objectives = [o for key, layer in LAYERS.items() for o in channels(layer, picked[key])]
    started = time.perf_counter()
    vis = maximize(
        net,
        objectives,
        size=args.size,
        steps=args.steps,
        lr=args.lr,
        seed=args.seed,
        batch_size=len(objectives),
    )
    seconds = time.perf_counter() - started

    out = Path(args.out)
    (out / "inside").mkdir(parents=True, exist_ok=True)
    sections = []
    row = 0
    for key, layer in LAYERS.items():
        count = len(picked[key])
        rows = slice(row, row + count)
        path = out / "inside" / f"channels-{key}.png"
        save_figure(tile(vis.images[rows], picked[key], vis.values[rows], layer), path)
        sections.append((key, layer, shapes[layer], picked[key], path.name))
        row += count
    (out / "inside.md").write_text(markdown(args, vis, sections, seconds), encoding="utf-8")
    print(f"wrote {out / 'inside.md'} and {len(sections)} images in {seconds:.0f} s")


def tile(images: torch.Tensor, indices: list[int], values: torch.Tensor, layer: str) -> plt.Figure:
    figure, axes = plt.subplots(1, len(indices), figsize=(2.0 * len(indices), 2.3), squeeze=False)
    for ax, image, index, value in zip(axes[0], images, indices, values):
        ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
        ax.set_title(f"{layer}:{index}\n{float(value):.2f}", fontsize=8)
        ax.axis("off")
    figure.tight_layout()
    return figure


def markdown(
    args: argparse.Namespace, vis: Visualization, sections: list[tuple], seconds: float
) -> str:
    settings = vis.settings
    device = f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    lines = [
        "# Inside EfficientNet-Lite0: what single channels respond to",
        "",
        "Activation maximization (Olah et al. 2017, *Feature Visualization*): each image is",
        "optimised to raise the mean activation of one channel. Made by one command:",
        "",
        "```",
        "PYTHONPATH=src python scripts/inside_gallery.py"
        + (f" --size {args.size}" if args.size != 128 else "")
        + (f" --steps {args.steps}" if args.steps != 128 else "")
        + (f" --channels {args.channels}" if args.channels != 6 else ""),
        "```",
        "",
        f"Settings: {settings['param']} parametrization with decorrelated colour, "
        f"{args.size}×{args.size} px (the model sees {args.size + 24} px after the 12-pixel "
        f"pad), {args.steps} Adam steps at lr {args.lr}, Lucent's standard transforms "
        f"(pad, jitter, scale, rotate), seed {args.seed}; all {len(vis.objectives)} images "
        f"in one batch, {seconds:.0f} s on {device}, torch {torch.__version__}.",
        "The number under each image is the channel's final mean activation.",
        "",
    ]
    for key, layer, shape, indices, name in sections:
        lines += [
            f"## {key.capitalize()}: `{layer}` ({shape[1]} channels)",
            "",
            f"Channels {', '.join(map(str, indices))}.",
            "",
            f"![{layer} channels](inside/{name})",
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
