"""Class circuits of the Fashion-MNIST CNN, every class: the table in docs/circuits.md.

    PYTHONPATH=src python scripts/circuit_table.py                 # first 2000 test images
    PYTHONPATH=src python scripts/circuit_table.py --images 10000 --device cuda

For each of the 10 classes, :func:`seethrough.decompose.circuit` at the default layer
(``pool2``, 64 channels), keep 0.95, confidence 0.95, on the first ``--images`` images of
the real test set (Debian's dataset-fashion-mnist), half of them (per class, seed 0) held
out. Writes docs/circuits-results.json (every circuit: channels, search and held-out
counts; the Jaccard matrix), docs/circuits-results.md (the tables) and
docs/circuits/overlap.png, docs/circuits/coat.png.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import seethrough as st
from seethrough.data.fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist
from seethrough.decompose import Circuit, circuit, circuit_overlap
from seethrough.reporting.serialize import dumps, to_jsonable
from seethrough.viz import plot_circuit, plot_circuit_overlap, save_figure

ROOT = Path(__file__).resolve().parents[1]


def row(c: Circuit) -> str:
    s, h = c.search, c.held_out
    assert h is not None
    return (
        f"| {c.class_name} | {c.size} | {s.kept:.3f} ({s.kept_lower:.3f}) | "
        f"{h.correct_full}/{h.images} → {h.correct}/{h.images} | "
        f"{h.false_positives_full} → {h.false_positives} | "
        f"{h.correct / max(1, h.correct_full):.3f} | {h.kept:.3f} | "
        f"{c.evaluations} | {c.seconds:.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(ROOT / "docs"))
    args = parser.parse_args()
    out = Path(args.out)
    (out / "circuits").mkdir(parents=True, exist_ok=True)
    net = st.load_model("fashion-cnn")
    net.module.to(args.device)
    test = load_fashion_mnist("test")
    x, y = test.inputs(0, args.images).to(args.device), test.labels[: args.images]
    started = time.perf_counter()
    circuits = []
    for name in FASHION_MNIST_CLASSES:
        found = circuit(net, (x, y), name, keep=0.95)
        circuits.append(found)
        print(row(found), flush=True)
    overlap = circuit_overlap(circuits)
    seconds = time.perf_counter() - started
    record = {
        "images": args.images,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "seconds": seconds,
        "circuits": [
            {
                "class": c.class_name,
                "layers": c.layers,
                "channels": c.channels,
                "size": c.size,
                "total": c.total,
                "keep": c.keep,
                "confidence": c.confidence,
                "search": c.search,
                "held_out": c.held_out,
                "order": c.order,
                "dropped": c.dropped,
                "swapped_in": c.swapped_in,
                "evaluations": c.evaluations,
                "seconds": c.seconds,
                "describe": c.describe().text("en"),
            }
            for c in circuits
        ],
        "overlap": to_jsonable(overlap),
        "overlap_describe": overlap.describe().text("en"),
    }
    (out / "circuits-results.json").write_text(dumps(record))
    lines = [
        f"Fashion-MNIST CNN, layer pool2 (64 channels), keep 0.95, confidence 0.95; first "
        f"{args.images} test images, half of each class held out (seed 0); "
        f"{seconds / 60:.0f} min on {args.device} ({torch.get_num_threads()} threads).",
        "",
        "| class | channels | search kept (lower bound) | held-out correct, full → circuit "
        "| held-out false positives, full → circuit | held-out accuracy ratio "
        "| held-out kept | evaluations | s |",
        "|---|---|---|---|---|---|---|---|---|",
        *(row(c) for c in circuits),
        "",
        "Jaccard index of the circuits (rows and columns in class order):",
        "",
        "| | " + " | ".join(overlap.classes) + " |",
        "|---" * (len(overlap.classes) + 1) + "|",
    ]
    for name, values in zip(overlap.classes, overlap.jaccard.tolist()):
        lines.append(f"| {name} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
    (out / "circuits-results.md").write_text("\n".join(lines) + "\n")
    save_figure(plot_circuit_overlap(overlap), out / "circuits" / "overlap.png")
    coat = circuits[FASHION_MNIST_CLASSES.index("Coat")]
    save_figure(plot_circuit(coat), out / "circuits" / "coat.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
