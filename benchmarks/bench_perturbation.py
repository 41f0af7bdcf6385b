"""Perturbation methods at equal model evaluations: seethrough against the model's own
forward-only throughput (the roofline for these methods) and against Captum, same run.

    PYTHONPATH=src python benchmarks/bench_perturbation.py
    PYTHONPATH=src python benchmarks/bench_perturbation.py --device cuda --rows 256

EfficientNet-Lite0 at 224 px, the bundled chelsea photo, target = predicted class.
- occlusion: 32 px window, stride 16 (169 windows) — Captum ``Occlusion`` with
  ``perturbations_per_eval`` = rows per pass, the same windows and zero baseline.
- rise: ``--masks`` masks (7×7 cells, p = 0.5); no Captum equivalent, roofline only.
- lime, kernel_shap: ``--samples`` model evaluations on the same SLIC superpixels (50
  segments), against Captum ``Lime`` / ``KernelShap`` (same feature mask and sample count,
  ``perturbations_per_eval`` = rows per pass), the ``lime`` package (``LimeImageExplainer``,
  same segmentation, ``batch_size`` = rows per pass) and ``shap`` (``KernelExplainer`` over
  the same superpixels, ``nsamples`` = samples, model called in chunks of rows per pass).
Roofline: ``model(x)`` under ``inference_mode`` on as many rows, in chunks of the same size.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from captum.attr import KernelShap, Lime, Occlusion

import seethrough as st
from seethrough.attribution.surrogate import segment_images

Case = tuple[str, int, Callable[[], object], list[tuple[str, Callable[[], object]]]]


def clock(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:  # noqa: PLR0915 (one linear script)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rows", type=int, default=16, help="rows per forward pass")
    parser.add_argument("--masks", type=int, default=256, help="RISE masks")
    parser.add_argument("--samples", type=int, default=256, help="LIME/KernelSHAP evaluations")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    net = st.load_model("efficientnet-lite0")
    model = net.module.to(device)
    x = net.preprocess(st.load_images(["sample:chelsea"])).to(device)
    with torch.no_grad():
        target = int(model(x).argmax())
    rows_per_pass = args.rows

    def roofline(rows: int) -> Callable[[], None]:
        batch = x.expand(rows_per_pass, -1, -1, -1).contiguous()

        def run() -> None:
            with torch.inference_mode():
                for start in range(0, rows, rows_per_pass):
                    model(batch[: min(rows_per_pass, rows - start)])

        return run

    segments = segment_images(x, "slic")  # (1, H, W): the features of every tool
    mask = segments[:, None].expand_as(x)
    seg_np = segments[0].cpu().numpy()
    features = int(seg_np.max()) + 1
    n = args.samples
    image_hwc = x[0].permute(1, 2, 0).cpu().numpy().astype(np.float64)

    def predict_hwc(images: np.ndarray) -> np.ndarray:  # lime: HWC images in, scores out
        batch = torch.as_tensor(images, dtype=x.dtype, device=device).permute(0, 3, 1, 2)
        with torch.inference_mode():
            return model(batch).cpu().numpy()

    def lime_package() -> object:
        from lime import lime_image

        explainer = lime_image.LimeImageExplainer(random_state=0)
        return explainer.explain_instance(
            image_hwc,
            predict_hwc,
            labels=(target,),
            top_labels=None,
            hide_color=0,
            num_samples=n,
            batch_size=rows_per_pass,
            segmentation_fn=lambda _: seg_np,
        )

    def coalition_scores(z: np.ndarray) -> np.ndarray:  # shap: coalitions in, scores out
        out = np.empty(len(z))
        for start in range(0, len(z), rows_per_pass):
            keep = torch.as_tensor(z[start : start + rows_per_pass], dtype=x.dtype, device=device)
            pixel_keep = keep[:, segments[0]]  # (b, H, W)
            with torch.inference_mode():
                scores = model(x * pixel_keep[:, None])[:, target]
            out[start : start + len(keep)] = scores.cpu().numpy()
        return out

    def shap_package() -> object:
        import shap

        explainer = shap.KernelExplainer(coalition_scores, np.zeros((1, features)))
        return explainer.shap_values(np.ones((1, features)), nsamples=n, silent=True)

    def ours(method: str, **options: object) -> Callable[[], object]:
        return lambda: st.explain(
            model, x, method, target=target, batch_size=rows_per_pass, **options
        )

    cases: list[Case] = [
        (
            "occlusion (32 px, stride 16)",
            169 + 1,  # windows + the clean image
            ours("occlusion", window=32, stride=16),
            [
                (
                    "Captum",
                    lambda: Occlusion(model).attribute(
                        x,
                        sliding_window_shapes=(3, 32, 32),
                        strides=(3, 16, 16),
                        baselines=0,
                        target=target,
                        perturbations_per_eval=rows_per_pass,
                    ),
                )
            ],
        ),
        (f"rise ({args.masks} masks)", args.masks + 1, ours("rise", masks=args.masks), []),
        (
            f"lime ({n} samples, {features} superpixels)",
            n,
            ours("lime", samples=n, segments=segments),
            [
                (
                    "Captum",
                    lambda: Lime(model).attribute(
                        x,
                        target=target,
                        feature_mask=mask,
                        n_samples=n,
                        perturbations_per_eval=rows_per_pass,
                    ),
                ),
                ("lime", lime_package),
            ],
        ),
        (
            f"kernel_shap ({n} samples, {features} superpixels)",
            n,
            ours("kernel_shap", samples=n, segments=segments),
            [
                (
                    "Captum",
                    lambda: KernelShap(model).attribute(
                        x,
                        target=target,
                        feature_mask=mask,
                        n_samples=n,
                        perturbations_per_eval=rows_per_pass,
                    ),
                ),
                ("shap", shap_package),
            ],
        ),
    ]
    print(
        f"EfficientNet-Lite0, 1 image at 224 px, {device}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, {rows_per_pass} rows per pass, "
        f"median of {args.repeats}"
    )
    print(
        "| method | model evaluations | ours s | roofline s | roofline/ours | others s (× ours) |"
    )
    print("|---|---|---|---|---|---|")
    for name, rows, mine, others in cases:
        floor = roofline(rows)
        mine()
        for _, fn in others:
            fn()
        t_ours: list[float] = []
        t_floor: list[float] = []
        t_other: dict[str, list[float]] = {tool: [] for tool, _ in others}
        for _ in range(args.repeats):
            t_ours.append(clock(mine, device))
            t_floor.append(clock(floor, device))
            for tool, fn in others:
                t_other[tool].append(clock(fn, device))
        o, f = statistics.median(t_ours), statistics.median(t_floor)
        theirs = ", ".join(
            f"{tool} {statistics.median(t):.2f} ({statistics.median(t) / o:.1f}×)"
            for tool, t in t_other.items()
        )
        print(
            f"| {name} | {rows} | {o:.2f} | {f:.2f} | {f / o:.2f} | {theirs or '–'} |", flush=True
        )


if __name__ == "__main__":
    main()
