"""Dataset runs: images/s of ``explain_dataset`` against the model's own forward+backward
roofline with the same batch, and the scaling from 1 to 2 processes (torchrun), same run.

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/bench_dataset.py \
        --json benchmarks/results-dataset-2026-12-06.json
    PYTHONPATH=src python benchmarks/bench_dataset.py --threads 1 --workloads fashion \
        --no-scaling --json benchmarks/results-dataset-1thread-2026-12-06.json
    PYTHONPATH=src python benchmarks/bench_dataset.py --device cuda --json out.json

Three workloads, each a whole run into a fresh folder (decoding, explaining, statistics,
float16 maps and the Parquet index written, shards fsynced):

* ``fashion gradient+grad_cam``: the Fashion-MNIST CNN on the first ``--fashion`` test images.
  Both methods share one forward+backward pass per batch (seethrough's shared pass), so the
  roofline is one forward+backward of the model per batch of ``--batch`` images.
* ``fashion integrated_gradients``: IG with a fixed grid of ``--steps`` points
  (``rule="riemann_middle"``): ``steps`` forward+backward passes per image plus two forward
  passes (the completeness check at the input and the baseline).
* ``photos gradient+grad_cam``: EfficientNet-Lite0 on a folder of ``--photos`` JPEG files
  (the bundled sample photos, repeated) decoded and preprocessed by ``--workers`` DataLoader
  processes (default 0: in the main process — on the 2-core build machine one worker made the
  run 4.6 s slower per 96 photos, far more than its decoding takes: with torch's threads on
  every core, another busy process or thread stalls them (the same effect measured with a
  thread beside the model: 0.80 → 0.73 of the roofline); roofline: one forward+backward per
  batch of already preprocessed inputs.

``--threads`` sets torch's threads (default: torch's own, one per core). With fewer threads
than cores a run makes each batch's index columns and stored maps in a thread beside the
model; the roofline is measured at the same thread count. ``--workloads`` picks workloads.
Each row also lists every repeat's own ratio (``repeat_ratios``): this machine's timings
wander by ±10 % from one run to the next.

The roofline is timed on the same batches held in memory, as an attribution method needs the
model: gradients to the input only (parameters frozen), in the memory layout the run chose
(``roofline / ours`` is the share of the model's own speed the whole run keeps; goal ≥ 0.9).
Ours and the roofline alternate in each repeat. Scaling: the IG workload run by
``torchrun --nproc-per-node 1`` and ``2`` at one thread per process; efficiency =
``t1 / (2 · t2)`` of the run's own time (startup of the interpreters excluded: each rank
reports ``DatasetRun.seconds``, the time from the call to the end of the last shard).
Median of ``--repeats`` (after one warm-up round) for the in-process timings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import seethrough as st
from seethrough.data import SAMPLES, load_image
from seethrough.data.fashion_mnist import load_fashion_mnist
from seethrough.scale import explain_dataset

ROOT = Path(__file__).resolve().parents[1]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _passes(model: nn.Module, batches: list[Tensor], backward: bool, layout: str) -> float:
    """Seconds for one forward (+ backward of the top logits' sum to the input) over every
    batch: what an attribution method needs of the model, no more — parameters frozen (no
    weight gradients), in the memory layout the run chose."""
    device = batches[0].device
    frozen = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in frozen:
        p.requires_grad_(False)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    try:
        _sync(device)
        start = time.perf_counter()
        for batch in batches:
            x = batch.contiguous(memory_format=fmt).requires_grad_(backward)
            with torch.set_grad_enabled(backward):
                logits = model(x)
                if backward:
                    torch.autograd.grad(logits.max(dim=1).values.sum(), x)
        _sync(device)
        return time.perf_counter() - start
    finally:
        for p, flag in frozen:
            p.requires_grad_(flag)


def _run(
    net: Any, data: Any, methods: Any, batch: int, workers: int, **options: Any
) -> tuple[float, int, str]:
    """One whole run into a fresh folder: seconds, images, and the layout it chose."""
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        done = explain_dataset(
            net,
            data,
            methods,
            Path(folder) / "run",
            target="predicted",
            batch_size=batch,
            shard_size=4 * batch,
            num_workers=workers,
            **options,
        )
        seconds = time.perf_counter() - start
        return seconds, done.images, done.open().config["explain"]["layout"]


def _photo_folder(folder: Path, count: int) -> list[Path]:
    paths = []
    for i in range(count):
        name = SAMPLES[i % len(SAMPLES)]
        path = folder / f"{i:04d}-{name}.jpg"
        if not path.exists():
            from PIL import Image

            pixels = load_image(f"sample:{name}").pixels
            Image.fromarray((pixels * 255).round().astype("uint8")).save(path, quality=92)
        paths.append(path)
    return paths


def _workload(
    name: str,
    net: Any,
    data: Any,
    inputs: Tensor,
    methods: Any,
    passes: int,
    forwards: int,
    args: argparse.Namespace,
    **options: Any,
) -> dict[str, Any]:
    device = inputs.device
    batches = list(inputs.split(args.batch))
    times, fbs, fwds = [], [], []
    images, layout = 0, "contiguous"
    for i in range(args.repeats + 1):  # interleaved: ours, then the roofline, each repeat
        seconds, images, layout = _run(net, data, methods, args.batch, args.workers, **options)
        fb = _passes(net.module, batches, True, layout)
        fwd = _passes(net.module, batches, False, layout) if forwards else 0.0
        if i:  # the first round warms up
            times.append(seconds)
            fbs.append(fb)
            fwds.append(fwd)
    ours = statistics.median(times)
    roofline = passes * statistics.median(fbs) + forwards * statistics.median(fwds)
    pairs = [(passes * fb + forwards * fwd) / t for t, fb, fwd in zip(times, fbs, fwds)]
    row = {
        "workload": name,
        "device": str(device),
        "images": images,
        "batch": args.batch,
        "ours_s": ours,
        "images_per_s": images / ours,
        "roofline_s": roofline,
        "roofline_images_per_s": images / roofline,
        "ratio": roofline / ours,
        "repeat_ratios": pairs,  # each repeat's roofline / ours: the spread of the machine
        "threads": torch.get_num_threads(),
        "layout": layout,
    }
    print(
        f"{name:<34} {images:>6} images  ours {ours:7.2f} s ({images / ours:7.1f}/s)  "
        f"roofline {roofline:7.2f} s  ratio {roofline / ours:.2f} "
        f"(repeats {min(pairs):.2f}–{max(pairs):.2f})",
        flush=True,
    )
    return row


_RANK_SCRIPT = """
import json, sys, torch
import seethrough as st
from seethrough.scale import explain_dataset
torch.set_num_threads(1)
net = st.load_model("fashion-cnn", device="cpu")
done = explain_dataset(net, "fashion-mnist:test", ["integrated_gradients"], sys.argv[1],
    target="predicted", batch_size=int(sys.argv[2]), shard_size=4 * int(sys.argv[2]),
    limit=int(sys.argv[3]), rule="riemann_middle", steps=int(sys.argv[4]))
import os
if os.environ.get("RANK", "0") == "0":
    print("SECONDS", done.seconds, flush=True)
"""


def _scaling(args: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    seconds = {}
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "rank.py"
        script.write_text(_RANK_SCRIPT)
        for procs in (1, 2):
            runs = []
            for repeat in range(args.scaling_repeats):
                out = Path(folder) / f"run-{procs}-{repeat}"
                command = [
                    sys.executable,
                    "-m",
                    "torch.distributed.run",
                    "--standalone",
                    "--nproc-per-node",
                    str(procs),
                    str(script),
                    str(out),
                    str(args.batch),
                    str(args.scaling_images),
                    str(args.steps),
                ]
                done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
                runs.append(float(done.stdout.split("SECONDS")[-1]))
            seconds[procs] = statistics.median(runs)
    efficiency = seconds[1] / (2 * seconds[2])
    print(
        f"scaling 1 → 2 processes (1 thread each, IG, {args.scaling_images} images): "
        f"{seconds[1]:.2f} s → {seconds[2]:.2f} s, efficiency {efficiency:.2f}",
        flush=True,
    )
    return {
        "images": args.scaling_images,
        "seconds_1": seconds[1],
        "seconds_2": seconds[2],
        "efficiency": efficiency,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fashion", type=int, default=10_000, help="Fashion-MNIST test images")
    parser.add_argument("--ig-images", type=int, default=1_000, help="images for the IG run")
    parser.add_argument("--photos", type=int, default=96)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=32, help="IG grid points")
    parser.add_argument("--workers", type=int, default=0, help="decoding processes (photos)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scaling-images", type=int, default=1_000)
    parser.add_argument("--scaling-repeats", type=int, default=2)
    parser.add_argument("--no-scaling", action="store_true")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's own)"
    )
    parser.add_argument(
        "--workloads",
        default="fashion,ig,photos",
        help="comma-separated: fashion (gradient+grad_cam), ig, photos",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    wanted = set(args.workloads.split(","))
    rows = []

    fashion = st.load_model("fashion-cnn", device=device)
    test = load_fashion_mnist("test")
    if "fashion" in wanted:
        rows.append(
            _workload(
                "fashion gradient+grad_cam",
                fashion,
                "fashion-mnist:test",
                test.inputs(0, args.fashion).to(device),
                ["gradient", "grad_cam"],
                1,
                0,
                args,
                limit=args.fashion,
            )
        )
    if "ig" in wanted:
        rows.append(
            _workload(
                f"fashion integrated_gradients ({args.steps})",
                fashion,
                "fashion-mnist:test",
                test.inputs(0, args.ig_images).to(device),
                ["integrated_gradients"],
                args.steps,
                2,
                args,
                limit=args.ig_images,
                rule="riemann_middle",
                steps=args.steps,
            )
        )
    if "photos" in wanted:
        lite = st.load_model("efficientnet-lite0", device=device)
        with tempfile.TemporaryDirectory() as folder:
            paths = _photo_folder(Path(folder), args.photos)
            inputs = lite.preprocess([load_image(p) for p in paths]).to(device)
            rows.append(
                _workload(
                    "photos gradient+grad_cam (lite0)",
                    lite,
                    folder,
                    inputs,
                    ["gradient", "grad_cam"],
                    1,
                    0,
                    args,
                )
            )
    scaling = None if args.no_scaling or device.type != "cpu" else _scaling(args)
    if args.json is not None:
        settings = {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__,
            "seethrough": st.__version__,
            "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "device": str(device),
            **{k: v for k, v in vars(args).items() if k not in ("json", "threads")},
            "threads_option": args.threads,  # None: torch's default (the rows say how many)
        }
        args.json.write_text(
            json.dumps({"settings": settings, "rows": rows, "scaling": scaling}, indent=1)
        )


if __name__ == "__main__":
    main()
