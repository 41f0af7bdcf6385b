"""Score-CAM: seethrough against pytorch-grad-cam's ``ScoreCAM``, same run.

    PYTHONPATH=src python benchmarks/bench_score_cam.py --layer _act_head

EfficientNet-Lite0, chelsea at 224 px, target = predicted class; both evaluate the model once
per channel of the layer (1,280 at ``_act_head``) in chunks of ``--rows``. pytorch-grad-cam
runs on a deep copy (it sets ``model.eval()`` and fills ``.grad``).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from pytorch_grad_cam import ScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

import seethrough as st
from seethrough.core.layers import find_layer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="_act_head")
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    net = st.load_model("efficientnet-lite0")
    model = net.module.to(device)
    x = net.preprocess(st.load_images(["sample:chelsea"])).to(device)
    with torch.no_grad():
        target = int(model(x).argmax())
    theirs_model = copy.deepcopy(model)
    theirs = ScoreCAM(model=theirs_model, target_layers=[find_layer(theirs_model, args.layer)])
    theirs.batch_size = args.rows

    def clock(fn) -> float:  # type: ignore[no-untyped-def]
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    def ours() -> object:
        return st.explain(
            model, x, "score_cam", target=target, layer=args.layer, batch_size=args.rows
        )

    def grad_cam_lib() -> object:
        return theirs(input_tensor=x, targets=[ClassifierOutputTarget(target)])

    t_ours, t_theirs = [], []
    kept: list[object] = []
    for _ in range(args.repeats):
        t_ours.append(clock(lambda: kept.append(ours())))
        t_theirs.append(clock(grad_cam_lib))
    o, t = statistics.median(t_ours), statistics.median(t_theirs)
    channels = int(kept[0].channel_weights.shape[1])  # type: ignore[attr-defined]
    print(
        f"Score-CAM at {args.layer} ({channels} channels), {device}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, {args.rows} rows per pass, median of {args.repeats}"
    )
    print("| ours s | pytorch-grad-cam s | pytorch-grad-cam/ours |")
    print("|---|---|---|")
    print(f"| {o:.1f} | {t:.1f} | {t / o:.2f} |")


if __name__ == "__main__":
    main()
