"""The ``seethrough`` command line. Wiring only: the work is in the library.

Bad input prints one line on stderr and exits with code 2, without a traceback and
without leaving a partial output folder.
"""

from __future__ import annotations

import ast
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from . import __version__
from .errors import InvalidOptionError, SeethroughError

__all__ = ["main"]

USAGE_ERROR = 2
INTERRUPTED = 130


def _fail(message: str) -> None:
    click.echo(f"seethrough: error: {message}", err=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (and exits with it when run as a script)."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="seethrough",
                 standalone_mode=False)
    except click.exceptions.Exit as done:
        code = int(done.exit_code)
    except click.exceptions.ClickException as error:  # usage errors, bad option values
        _fail(" ".join(error.format_message().split()))
        code = USAGE_ERROR
    except SeethroughError as error:
        _fail(" ".join(str(error).split()))
        code = USAGE_ERROR
    except (KeyboardInterrupt, click.exceptions.Abort):
        _fail("interrupted; nothing was written")
        code = INTERRUPTED
    else:
        code = 0
    if argv is None:
        sys.exit(code)
    return code


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="seethrough")
@click.option("-v", "--verbose", is_flag=True, help="Log what is being done.")
def cli(verbose: bool) -> None:
    """Explain PyTorch image classifiers: why they decide, and whether to believe it."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="seethrough: %(message)s")


_model_options = [
    click.option("--model", "model_spec", default="efficientnet-lite0", show_default=True,
                 help="Built-in name, TorchScript/state-dict/safetensors file, "
                      "'package.module:object', 'torchvision:NAME' or 'timm:NAME'."),
    click.option("--weights", type=click.Path(dir_okay=False), default=None,
                 help="State dict or safetensors file for the model."),
    click.option("--factory", default=None,
                 help="'package.module:callable' that builds the model for --weights."),
    click.option("--labels", "labels_file", type=click.Path(dir_okay=False), default=None,
                 help="Text file of class names, one per line."),
    click.option("--allow-pickle", is_flag=True,
                 help="Allow loading plain pickles (runs code from the file: trusted files only)."),
    click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
                 show_default=True),
]


def model_options(func: Any) -> Any:
    for option in reversed(_model_options):
        func = option(func)
    return func


def _device(choice: str) -> str:
    import torch

    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise InvalidOptionError("--device cuda: no CUDA device is available here; use --device cpu")
    return choice


def _load(model_spec: str, weights: str | None, factory: str | None, labels_file: str | None,
          allow_pickle: bool, device: str) -> Any:
    from .models import load_model

    return load_model(model_spec, weights=weights, factory=factory, labels=labels_file,
                      device=_device(device), allow_pickle=allow_pickle)


def _parse_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _method_options(settings: Sequence[str], names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``--set key=value`` or ``--set method.key=value`` → options per method."""
    from .attribution.base import METHODS

    per_method: dict[str, dict[str, Any]] = {name: {} for name in names}
    for item in settings:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise InvalidOptionError(f"--set {item!r}: expected KEY=VALUE or METHOD.KEY=VALUE")
        scope, dot, option = key.rpartition(".")
        targets = [scope] if dot else list(names)
        if dot and scope not in per_method:
            raise InvalidOptionError(f"--set {item!r}: method {scope!r} is not among --methods")
        accepted = [m for m in targets if option in METHODS[m].__dataclass_fields__]
        if not accepted:
            raise InvalidOptionError(f"--set {item!r}: no chosen method has an option {option!r}")
        for m in accepted:
            per_method[m][option] = _parse_value(text)
    return per_method


def _method_names(text: str) -> list[str]:
    from .attribution.base import method_names

    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return list(method_names())
    if not names:
        raise InvalidOptionError("--methods is empty; name at least one method or 'all'")
    return names


def _target(text: str | None, count: int) -> Any:
    if text is None or text == "predicted":
        return None
    parts = [p.strip() for p in text.split(",")]
    values: list[Any] = [int(p) if p.isdigit() else p for p in parts]
    if len(values) == 1:
        return values[0]
    if len(values) != count:
        raise InvalidOptionError(
            f"--target has {len(values)} comma-separated values for {count} images; "
            "give one target, or one per image"
        )
    return values


class _Bars:
    """One progress bar per method, on stderr."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None
        self.name = ""
        self.done = 0

    def __call__(self, name: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if name != self.name:
            self.close()
            self.bar = click.progressbar(length=total, label=f"{name:<22}", file=sys.stderr,
                                         show_eta=True)
            self.bar.__enter__()
            self.name, self.done = name, 0
        self.bar.update(done - self.done)
        self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


@cli.command()
@click.argument("images", nargs=-1)
@model_options
@click.option("--methods", default="all", show_default=True,
              help="Comma-separated method names, or 'all'.")
@click.option("--target", default=None,
              help="'predicted' (default), a class index or name, 'top3', or one per image "
                   "separated by commas.")
@click.option("--layer", default=None, help="Layer for CAM methods (dotted name).")
@click.option("--set", "settings", multiple=True, metavar="[METHOD.]KEY=VALUE",
              help="A method option, e.g. --set steps=32 or --set smoothgrad.samples=20.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--batch-size", default=None, type=click.IntRange(min=1),
              help="Most rows per pass (default: adapt to memory).")
@click.option("--out", default="seethrough-out", show_default=True, type=click.Path(),
              help="Output folder.")
@click.option("--force", is_flag=True, help="Write into a non-empty output folder.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def explain(images: tuple[str, ...], model_spec: str, weights: str | None, factory: str | None,
            labels_file: str | None, allow_pickle: bool, device: str, methods: str,
            target: str | None, layer: str | None, settings: tuple[str, ...], seed: int,
            batch_size: int | None, out: str, force: bool, quiet: bool) -> None:
    """Explain IMAGES (files, folders, or sample:NAME; default: bundled photos)."""
    from .attribution.base import make_method
    from .data import DEFAULT_SAMPLES, load_images
    from .jobs.explain import run_explain
    from .jobs.output import OutputFolder

    names = _method_names(methods)
    options = _method_options(settings, names)
    if layer is not None:
        cams = [n for n in names if n in _layer_methods()]
        if not cams:
            raise InvalidOptionError("--layer is only used by CAM methods, and none is chosen")
        for n in cams:
            options[n]["layer"] = layer
    chosen = [make_method(n, **options[n]) for n in names]
    OutputFolder(out, force)  # refuse a bad --out before loading anything
    loaded = load_images(list(images) or [f"sample:{s}" for s in DEFAULT_SAMPLES])
    net = _load(model_spec, weights, factory, labels_file, allow_pickle, device)
    bars = _Bars(enabled=not quiet)
    try:
        result = run_explain(net, loaded, chosen, Path(out), target=_target(target, len(loaded)),
                             seed=seed, batch_size=batch_size, force=force, progress=bars)
    finally:
        bars.close()
    for ex in result.explanations:
        if getattr(ex, "layer", None):
            click.echo(f"{ex.method}: layer {ex.layer}", err=True)
    click.echo(f"wrote {len(result.files)} files to {result.out} (open {result.out / 'index.html'})")


def _layer_methods() -> list[str]:
    from .attribution.base import METHODS

    return [name for name, cls in METHODS.items() if "layer" in cls.__dataclass_fields__]


@cli.command()
@model_options
def layers(model_spec: str, weights: str | None, factory: str | None, labels_file: str | None,
           allow_pickle: bool, device: str) -> None:
    """List the model's layers in execution order, with output shapes."""
    import torch

    from .core.guard import guarded
    from .core.layers import trace_layers

    net = _load(model_spec, weights, factory, labels_file, allow_pickle, device)
    size, channels = net.preprocess.size, net.preprocess.channels
    param = next(net.module.parameters(), None)
    example = torch.zeros(1, channels, size, size,
                          device=param.device if param is not None else "cpu",
                          dtype=param.dtype if param is not None else torch.float32)
    with guarded(net.module):
        infos = trace_layers(net.module, example)
    kinds = dict(net.module.named_modules())
    for info in infos:
        calls = f"  (runs {info.calls}×)" if info.calls > 1 else ""
        click.echo(f"{info.name:<40} {type(kinds[info.name]).__name__:<20} {info.shape}{calls}")


@cli.command("methods")
def list_methods() -> None:
    """List the attribution methods and their options."""
    import dataclasses

    from .attribution.base import METHODS

    for name, cls in METHODS.items():
        summary = (cls.__doc__ or "").strip().splitlines()[0]
        fields = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cls)
                           if f.default is not dataclasses.MISSING)
        click.echo(f"{name:<22} {summary}")
        if fields:
            click.echo(f"{'':<22} options: {fields}")


if __name__ == "__main__":  # pragma: no cover
    main()
