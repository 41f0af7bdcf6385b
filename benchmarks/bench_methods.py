"""Time seethrough's gradient methods against Captum and against the model's roofline.

For every method: the same model, inputs, targets and settings go to seethrough and to its
Captum equivalent, timed in the same run, alternating (ours, Captum, roofline, ours, ...) so
that drift hits all three alike; the median of ``--repeats`` rounds after ``--warmup`` rounds
is reported. The roofline is the model's own forward+backward pass with respect to the input
only (parameters frozen) at the chunk size the method runs at; for ``R`` rows it costs
``R / c`` times one pass of ``c`` rows. The largest absolute difference between the two
results checks that both did the same work.

Usage::

    PYTHONPATH=src python benchmarks/bench_methods.py --quick          # smoke run
    PYTHONPATH=src python benchmarks/bench_methods.py --json out.json  # CPU defaults
    PYTHONPATH=src python benchmarks/bench_methods.py --device cuda

See ``benchmarks/README.md`` for what is measured and how to read the table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import captum
import torch
import torchvision
from captum.attr import (
    Deconvolution,
    GuidedBackprop,
    GuidedGradCam,
    InputXGradient,
    IntegratedGradients,
    LayerGradCam,
    NoiseTunnel,
    Saliency,
)
from torch import Tensor, nn

import seethrough as st
from seethrough.core.budget import CPU_ROWS
from seethrough.core.layers import default_cam_layer
from seethrough.data.images import DEFAULT_SAMPLES

METHODS = (
    "gradient",
    "gradient_x_input",
    "integrated_gradients",
    "smoothgrad",
    "guided_backprop",
    "deconvnet",
    "grad_cam",
    "guided_grad_cam",
)
MODELS = ("efficientnet-lite0", "resnet18")
# Methods that rewrite the rectifiers' backward. Captum's rules skip nn.ReLU6, so on
# EfficientNet-Lite0 it computes the plain gradient; they are also timed on ResNet-18
# (nn.ReLU), where Captum applies the rule, and only they.
RULE_METHODS = ("guided_backprop", "deconvnet", "guided_grad_cam")
NOISE = 0.15  # SmoothGrad σ as a fraction of the batch's value range (the paper's 10-20 %)

# Defaults per device; --quick replaces them with tiny ones for a smoke run.
DEFAULTS = {
    "cpu": {"batch": 4, "rows": CPU_ROWS, "steps": 16, "samples": 8, "repeats": 5, "warmup": 1},
    "cuda": {"batch": 16, "rows": 256, "steps": 64, "samples": 32, "repeats": 10, "warmup": 2},
    "quick": {"batch": 2, "rows": 8, "steps": 8, "samples": 8, "repeats": 3, "warmup": 1},
}


@dataclass(frozen=True)
class Settings:
    """What every case shares."""

    device: torch.device
    batch: int
    rows: int
    steps: int
    samples: int
    repeats: int
    warmup: int
    inputs: str


@dataclass(frozen=True)
class Case:
    """One method on one model: two zero-argument calls that do the same work.

    ``rows`` rows go through the model ``chunk`` at a time; ``check`` (when set) returns
    a pair of results to compare instead of the timed calls' outputs.
    """

    model: str
    method: str
    ours: Callable[[], Tensor]
    captum: Callable[[], Tensor]
    roofline: Callable[[], object]
    rows: int
    chunk: int
    note: str = ""
    check: Callable[[], tuple[Tensor, Tensor]] | None = None


@dataclass
class Result:
    """The measured times (seconds) of one case and what they mean."""

    model: str
    method: str
    rows: int
    chunk: int
    ours: list[float] = field(default_factory=list)
    captum: list[float] = field(default_factory=list)
    roofline_pass: list[float] = field(default_factory=list)
    max_abs_diff: float = float("nan")
    max_abs_captum: float = float("nan")
    note: str = ""
    peak_mib: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, list[float]] = field(default_factory=dict)

    @property
    def ours_s(self) -> float:
        return statistics.median(self.ours)

    @property
    def captum_s(self) -> float:
        return statistics.median(self.captum)

    def cpu_ratio(self) -> float:
        """Captum/ours in process CPU time (steadier than wall time on a shared machine)."""
        cpu = self.cpu_seconds
        return statistics.median(cpu["captum"]) / statistics.median(cpu["ours"])

    @property
    def roofline_s(self) -> float:
        """The forward+backward floor for ``rows`` rows run ``chunk`` at a time."""
        return statistics.median(self.roofline_pass) * self.rows / self.chunk


# --- models and inputs -----------------------------------------------------------------------


def load_model(name: str, device: torch.device) -> nn.Module:
    """EfficientNet-Lite0 with its ImageNet weights, or ResNet-18 with a seeded random init."""
    if name == "efficientnet-lite0":
        return st.load_model(name, device=device).module
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return torchvision.models.resnet18(weights=None).eval().to(device)


def make_inputs(kind: str, n: int, device: torch.device) -> Tensor:
    """``n`` bundled photos (cycled) preprocessed for EfficientNet-Lite0, or N(0, 1) noise."""
    if kind == "random":
        generator = torch.Generator().manual_seed(0)
        return torch.randn(n, 3, 224, 224, generator=generator).to(device)
    net = st.load_model("efficientnet-lite0")
    names = [f"sample:{DEFAULT_SAMPLES[i % len(DEFAULT_SAMPLES)]}" for i in range(n)]
    return net.preprocess(st.load_images(names)).to(device)


def predicted(model: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad():
        return model(x).argmax(dim=1)


def repeat_rows(t: Tensor, count: int) -> Tensor:
    """``count`` rows cycled from ``t`` (the roofline's input at another batch size)."""
    index = torch.arange(count, device=t.device) % len(t)
    return t[index]


# --- the roofline ----------------------------------------------------------------------------


def roofline_pass(model: nn.Module, x: Tensor, target: Tensor) -> Callable[[], Tensor]:
    """One forward+backward pass, gradient with respect to the input only."""
    params = list(model.parameters())

    def run() -> Tensor:
        flags = [p.requires_grad for p in params]
        try:
            for p in params:
                p.requires_grad_(False)
            xs = x.detach().requires_grad_(True)
            score = model(xs).gather(1, target[:, None]).sum()
            return torch.autograd.grad(score, xs)[0]
        finally:
            for p, flag in zip(params, flags, strict=True):
                p.requires_grad_(flag)

    return run


# --- the cases -------------------------------------------------------------------------------


def build_cases(
    name: str, model: nn.Module, x: Tensor, methods: Sequence[str], s: Settings
) -> list[Case]:
    """The cases of ``methods`` on ``model``: our call, Captum's, and the roofline pass."""
    target = predicted(model, x)
    n = len(x)
    layer = default_cam_layer(model, x)
    cam_module = dict(model.named_modules())[layer]
    sigma = float(NOISE * (x.max() - x.min()))
    per_group = max(1, s.rows // n)  # Captum's samples / steps per chunk: rows // n images

    def ours(method: str, **options: Any) -> Callable[[], Tensor]:
        return lambda: (
            st.explain(model, x, method, target=target, batch_size=s.rows, **options).attributions
        )

    def roof(rows: int) -> tuple[Callable[[], object], int]:
        chunk = min(s.rows, rows)
        return roofline_pass(model, repeat_rows(x, chunk), repeat_rows(target, chunk)), chunk

    captum_calls: dict[str, Callable[[], Tensor]] = {
        "gradient": lambda: Saliency(model).attribute(x, target=target, abs=False),
        "gradient_x_input": lambda: InputXGradient(model).attribute(x, target=target),
        "integrated_gradients": lambda: IntegratedGradients(model).attribute(
            x,
            target=target,
            n_steps=s.steps,
            method="gausslegendre",
            internal_batch_size=per_group * n,
        ),
        "smoothgrad": lambda: NoiseTunnel(Saliency(model)).attribute(
            x,
            nt_type="smoothgrad",
            nt_samples=s.samples,
            nt_samples_batch_size=per_group,
            stdevs=sigma,
            target=target,
            abs=False,
        ),
        "guided_backprop": lambda: GuidedBackprop(model).attribute(x, target=target),
        "deconvnet": lambda: Deconvolution(model).attribute(x, target=target),
        "grad_cam": lambda: LayerGradCam(model, cam_module).attribute(x, target=target),
        "guided_grad_cam": lambda: GuidedGradCam(model, cam_module).attribute(
            x, target=target, interpolate_mode="bilinear"
        ),
    }
    our_calls: dict[str, Callable[[], Tensor]] = {
        "gradient": ours("gradient"),
        "gradient_x_input": ours("gradient_x_input"),
        "integrated_gradients": ours(
            "integrated_gradients", steps=s.steps, rule="gausslegendre", baseline="zeros"
        ),
        "smoothgrad": ours("smoothgrad", base="gradient", samples=s.samples, stdev=sigma),
        "guided_backprop": ours("guided_backprop"),
        "deconvnet": ours("deconvnet"),
        "grad_cam": ours("grad_cam", layer=layer),
        "guided_grad_cam": ours("guided_grad_cam", layer=layer, interpolation="bilinear"),
    }
    rows = {"integrated_gradients": n * s.steps, "smoothgrad": n * s.samples}
    cases = []
    for method in methods:
        pass_fn, chunk = roof(rows.get(method, n))
        cases.append(
            Case(
                model=name,
                method=method,
                ours=our_calls[method],
                captum=captum_calls[method],
                roofline=pass_fn,
                rows=rows.get(method, n),
                chunk=chunk,
                note=note_for(name, method, layer),
                check=smoothgrad_check(model, x, target, per_group, s)
                if method == "smoothgrad"
                else None,
            )
        )
    return cases


def smoothgrad_check(
    model: nn.Module, x: Tensor, target: Tensor, per_group: int, s: Settings
) -> Callable[[], tuple[Tensor, Tensor]]:
    """The noise draws differ (per-row generators vs Captum's global RNG), so equality is
    checked with σ = 0, which runs the same passes."""

    def check() -> tuple[Tensor, Tensor]:
        ours = st.explain(
            model,
            x,
            "smoothgrad",
            target=target,
            batch_size=s.rows,
            samples=s.samples,
            stdev=0.0,
        ).attributions
        theirs = NoiseTunnel(Saliency(model)).attribute(
            x,
            nt_type="smoothgrad",
            nt_samples=s.samples,
            nt_samples_batch_size=per_group,
            stdevs=0.0,
            target=target,
            abs=False,
        )
        return ours, theirs

    return check


def note_for(model: str, method: str, layer: str) -> str:
    notes = []
    if model == "efficientnet-lite0" and method in RULE_METHODS:
        notes.append("Captum: plain gradient (its rule skips nn.ReLU6), cheaper and not equal")
    if method in ("grad_cam", "guided_grad_cam"):
        notes.append(f"layer {layer}")
    if method == "grad_cam":
        notes.append("backward stops at the layer: can beat the full-pass roofline")
    if method == "guided_grad_cam":
        notes.append("2 passes (CAM + guided); roofline counts 1")
    if method == "integrated_gradients":
        notes.append("ours also runs 2 no-grad forwards (input, baseline) for completeness")
    if method == "smoothgrad":
        notes.append("Δ checked with σ=0")
    return "; ".join(notes)


# --- timing ----------------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class Timing:
    """One call: wall seconds, process CPU seconds (all threads), peak MiB (CUDA only)."""

    seconds: float
    cpu_seconds: float
    peak_mib: float
    out: Any


def timed(fn: Callable[[], object], device: torch.device) -> Timing:
    synchronize(device)
    base = 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    started, cpu_started = time.perf_counter(), time.process_time()
    out = fn()
    synchronize(device)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    peak = 0.0
    if device.type == "cuda":
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    return Timing(seconds, cpu_seconds, peak, out)


def measure(case: Case, s: Settings) -> Result:
    """Warm up, then alternate ours, Captum, roofline for ``repeats`` rounds."""
    result = Result(case.model, case.method, case.rows, case.chunk, note=case.note)
    first: dict[str, Any] = {}
    calls = (("ours", case.ours), ("captum", case.captum), ("roofline_pass", case.roofline))
    for round_ in range(s.warmup + s.repeats):
        for label, fn in calls:
            t = timed(fn, s.device)
            first.setdefault(label, t.out)
            result.peak_mib[label] = max(result.peak_mib.get(label, 0.0), t.peak_mib)
            if round_ >= s.warmup:
                getattr(result, label).append(t.seconds)
                result.cpu_seconds.setdefault(label, []).append(t.cpu_seconds)
    ours, theirs = case.check() if case.check is not None else (first["ours"], first["captum"])
    ours, theirs = ours.detach(), theirs.detach().to(ours.dtype)
    result.max_abs_diff = float((ours - theirs).abs().max())
    result.max_abs_captum = float(theirs.abs().max())
    return result


# --- report ----------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(s: Settings) -> dict[str, Any]:
    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "torch": torch.__version__,
        "captum": captum.__version__,
        "seethrough": st.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "device": str(s.device),
    }
    if s.device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(s.device)
    return env


def fmt(value: float, digits: int = 3) -> str:
    return "–" if math.isnan(value) else f"{value:.{digits}g}"


def table(results: list[Result], s: Settings) -> str:
    cuda = s.device.type == "cuda"
    head = [
        "model",
        "method",
        "rows @ chunk",
        "ours s",
        "Captum s",
        "Captum/ours",
        "roofline s",
        "ours/roofline",
        "Captum/roofline",
        "max |Δ| (rel)",
    ]
    head += ["peak MiB ours / Captum"] if cuda else ["Captum/ours CPU time"]
    head += ["note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        rel = r.max_abs_diff / r.max_abs_captum if r.max_abs_captum else float("nan")
        cells = [
            r.model,
            r.method,
            f"{r.rows} @ {r.chunk}",
            fmt(r.ours_s),
            fmt(r.captum_s),
            f"{r.captum_s / r.ours_s:.2f}",
            fmt(r.roofline_s),
            f"{r.roofline_s / r.ours_s:.2f}",
            f"{r.roofline_s / r.captum_s:.2f}",
            f"{r.max_abs_diff:.2g} ({rel:.1g})",
        ]
        if cuda:
            cells.append(f"{r.peak_mib.get('ours', 0):.0f} / {r.peak_mib.get('captum', 0):.0f}")
        else:
            cells.append(f"{r.cpu_ratio():.2f}")
        cells.append(r.note)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def header(env: dict[str, Any], s: Settings) -> str:
    where = env.get("gpu", env["cpu"])
    return (
        f"{env['date']} · {where} · torch {env['torch']} ({env['threads']} threads) · "
        f"captum {env['captum']} · seethrough {env['seethrough']}\n\n"
        f"batch {s.batch}, rows per pass {s.rows}, IG steps {s.steps} (gausslegendre), "
        f"SmoothGrad samples {s.samples} (σ = {NOISE} × value range), inputs {s.inputs}, "
        f"target = predicted class; median of {s.repeats} after {s.warmup} warm-up, "
        "ours/Captum/roofline interleaved."
    )


# --- command line ----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> tuple[Settings, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--batch", type=int, help="images per call (cpu 4, cuda 16)")
    parser.add_argument(
        "--rows",
        type=int,
        help="rows per forward/backward pass, ours and Captum alike; a multiple of --batch "
        f"(cpu {CPU_ROWS}, the library's CPU default; cuda 256)",
    )
    parser.add_argument("--steps", type=int, help="integrated-gradients steps (cpu 16, cuda 64)")
    parser.add_argument("--samples", type=int, help="SmoothGrad samples (cpu 8, cuda 32)")
    parser.add_argument("--repeats", type=int, help="timed rounds (cpu 5, cuda 10)")
    parser.add_argument("--warmup", type=int, help="untimed rounds first (cpu 1, cuda 2)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated")
    parser.add_argument("--inputs", choices=("photos", "random"), default="photos")
    parser.add_argument(
        "--threads",
        type=int,
        help="torch.set_num_threads (default: leave torch's default; 1 gives steadier "
        "comparisons on a shared machine, but is not the figure to report)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke run")
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    defaults = DEFAULTS["quick" if args.quick else device.type]
    values = {
        k: getattr(args, k) if getattr(args, k) is not None else v for k, v in defaults.items()
    }
    if args.rows is None and values["rows"] % values["batch"]:
        values["rows"] = max(1, values["rows"] // values["batch"]) * values["batch"]
    if values["rows"] % values["batch"]:
        parser.error(
            f"--rows {values['rows']} must be a multiple of --batch {values['batch']} "
            "(Captum chunks whole integration steps of the batch)"
        )
    for method in args.methods.split(","):
        if method not in METHODS:
            parser.error(f"unknown method {method!r} (valid: {', '.join(METHODS)})")
    for model in args.models.split(","):
        if model not in MODELS:
            parser.error(f"unknown model {model!r} (valid: {', '.join(MODELS)})")
    return Settings(device=device, inputs=args.inputs, **values), args


def main(argv: Sequence[str] | None = None) -> None:
    s, args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    # Captum warns on every call that it set requires_grad on the inputs; that is expected.
    warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")
    methods = args.methods.split(",")
    x = make_inputs(s.inputs, s.batch, s.device)
    results = []
    for name in args.models.split(","):
        chosen = [m for m in methods if name != "resnet18" or m in RULE_METHODS]
        if not chosen:
            continue
        model = load_model(name, s.device)
        for case in build_cases(name, model, x, chosen, s):
            print(f"timing {name} {case.method} ...", file=sys.stderr, flush=True)
            results.append(measure(case, s))
    env = environment(s)
    print(header(env, s) + "\n\n" + table(results, s))
    if args.json is not None:
        settings = {k: str(v) if isinstance(v, torch.device) else v for k, v in asdict(s).items()}
        records = [
            {**asdict(r), "ours_s": r.ours_s, "captum_s": r.captum_s, "roofline_s": r.roofline_s}
            for r in results
        ]
        args.json.write_text(
            json.dumps({"environment": env, "settings": settings, "results": records}, indent=2)
        )


if __name__ == "__main__":
    main()
