"""Activation maximization: seethrough against Lucent on the same model and objective.

    PYTHONPATH=src python benchmarks/bench_maximize.py                       # full settings
    PYTHONPATH=src python benchmarks/bench_maximize.py --size 64 --steps 16 --channels 4

Same work on both sides: EfficientNet-Lite0 (seethrough's weights; Lucent gets a deep copy,
so the hooks Lucent leaves behind cannot touch ours), channel objectives of one layer
(``_blocks.10``; Lucent names it ``_blocks_10``), Fourier parametrization with decorrelated
colour (Lucent's ``param.image(size, fft=True, decorrelate=True)``), Adam with the same
learning rate and step count, Lucent's standard transforms on both sides (ours: the same
pad/jitter/scale/rotate choices, fused into one warp on a fixed canvas), and the model's own
normalisation ``(x − 127/255) / (128/255)`` (given to Lucent as a transform, with
``preprocess=False``). Lucent upsamples images smaller than 224 px to 224 unless told
otherwise; ``--lucent-input fixed`` (default) makes it resize to ``size + 24`` — what our
model sees after the 12-pixel pad — and ``--lucent-input default`` keeps its behaviour.

Measured:

* objective value: both sides' final images scored by one evaluator
  (:func:`seethrough.inside.evaluate`: the channel's mean activation on the final image
  with the standard transforms' 12-pixel grey pad and no random moves — the framing both
  sides optimised under), per channel; mean over the channels, and how many channels each
  wins;
* time of one channel (one image), and of a channel atlas of ``--channels`` channels — ours
  one batched call, Lucent a loop of ``render_vis`` calls (as its users write it) — and the
  ratio. Lucent leaves its forward hooks on every module after each call (``--lucent-hooks
  leave``, default, as users get it); ``clear`` removes them between calls.

Randomness: ours is seeded per row; Lucent draws from the global torch and numpy RNGs, which
this script seeds once.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import seethrough as st
from seethrough.inside import channels, evaluate, maximize


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, run: Callable[[], Any]) -> tuple[Any, float]:
    sync(device)
    started = time.perf_counter()
    result = run()
    sync(device)
    return result, time.perf_counter() - started


def lucent_renderer(
    model: torch.nn.Module, args: argparse.Namespace, mean: float, std: float
) -> Callable[[int], torch.Tensor]:
    """``render(channel) -> (1, 3, size, size)`` with Lucent, as close to ours as it allows."""
    from lucent.optvis import objectives, param, render, transform

    layer = args.layer.replace(".", "_")
    transforms = [*transform.standard_transforms, lambda x: (x - mean) / std]
    fixed = args.size + 24 if args.lucent_input == "fixed" else None

    def render_one(index: int) -> torch.Tensor:
        images = render.render_vis(
            model,
            objectives.channel(layer, index),
            param_f=lambda: param.image(args.size, fft=True, decorrelate=True),
            optimizer=lambda params: torch.optim.Adam(params, lr=args.lr),
            transforms=transforms,
            thresholds=(args.steps,),
            preprocess=False,
            progress=False,
            show_image=False,
            fixed_image_size=fixed,
        )
        if args.lucent_hooks == "clear":
            for module in model.modules():
                module._forward_hooks.clear()
        return torch.from_numpy(np.ascontiguousarray(images[-1])).permute(0, 3, 1, 2)

    return render_one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="_blocks.10")
    parser.add_argument("--channel", type=int, default=3, help="the single-channel run")
    parser.add_argument("--channels", type=int, default=16, help="atlas: channels 0..N-1")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--lucent-input", choices=["fixed", "default"], default="fixed")
    parser.add_argument("--lucent-hooks", choices=["leave", "clear"], default="leave")
    parser.add_argument("--skip-lucent-atlas", action="store_true")
    parser.add_argument("--json", default=None, help="write the results to this file")
    args = parser.parse_args()

    device = torch.device(args.device)
    net = st.load_model("efficientnet-lite0", device=device)
    mean, std = net.preprocess.mean[0], net.preprocess.std[0]
    lucent_model = copy.deepcopy(net.module)
    torch.manual_seed(0)
    np.random.seed(0)
    render = lucent_renderer(lucent_model, args, mean, std)
    atlas = channels(args.layer, range(args.channels))
    options = {"size": args.size, "steps": args.steps, "lr": args.lr, "seed": 0}

    # warm-up (kernels, allocator) for both, tiny
    maximize(net, atlas[:1], size=args.size, steps=2)
    warm = argparse.Namespace(**{**vars(args), "steps": 2})
    lucent_renderer(copy.deepcopy(net.module), warm, mean, std)(0)

    target = channels(args.layer, [args.channel])
    one, ours_one_s = timed(device, lambda: maximize(net, target, **options))
    lucent_one, lucent_one_s = timed(device, lambda: render(args.channel))
    single = {
        "ours_value": float(one.values[0]),
        "lucent_value": float(evaluate(net, target, lucent_one)[0]),
        "ours_seconds": ours_one_s,
        "lucent_seconds": lucent_one_s,
    }

    ours, ours_atlas_s = timed(
        device, lambda: maximize(net, atlas, batch_size=args.batch_size, **options)
    )
    report: dict[str, Any] = {
        "settings": {**vars(args), "device_name": _device_name(device)},
        "single_channel": single,
        "ours_atlas_seconds": ours_atlas_s,
        "ours_atlas_values": [float(v) for v in ours.values],
    }
    if not args.skip_lucent_atlas:
        lucent_images, lucent_atlas_s = timed(
            device, lambda: torch.cat([render(c) for c in range(args.channels)])
        )
        lucent_values = evaluate(net, atlas, lucent_images)
        wins = int((ours.values >= lucent_values).sum())
        report.update(
            lucent_atlas_seconds=lucent_atlas_s,
            lucent_atlas_values=[float(v) for v in lucent_values],
            atlas_speedup=lucent_atlas_s / ours_atlas_s,
            mean_value_ours=float(ours.values.mean()),
            mean_value_lucent=float(lucent_values.mean()),
            channels_ours_at_least_as_high=wins,
        )
    _print(report)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def _print(report: dict[str, Any]) -> None:
    s = report["settings"]
    one = report["single_channel"]
    print(
        f"{s['layer']} at {s['size']} px, {s['steps']} steps, lr {s['lr']}, on {s['device_name']}"
    )
    print(
        f"one channel ({s['channel']}): ours {one['ours_value']:.4f} in "
        f"{one['ours_seconds']:.2f} s; Lucent {one['lucent_value']:.4f} in "
        f"{one['lucent_seconds']:.2f} s"
    )
    print(f"atlas of {s['channels']} channels: ours {report['ours_atlas_seconds']:.2f} s", end="")
    if "lucent_atlas_seconds" in report:
        print(
            f"; Lucent {report['lucent_atlas_seconds']:.2f} s; ratio "
            f"{report['atlas_speedup']:.1f}×; mean objective ours "
            f"{report['mean_value_ours']:.4f}, Lucent {report['mean_value_lucent']:.4f}; ours ≥ "
            f"Lucent on {report['channels_ours_at_least_as_high']}/{s['channels']} channels"
        )
    else:
        print()


if __name__ == "__main__":
    main()
