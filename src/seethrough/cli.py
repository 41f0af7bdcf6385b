"""The ``seethrough`` command line. Wiring only: the work is in the library.

Bad input prints one line on stderr (``seethrough: error: ...``) and exits with code 2,
without a traceback and without leaving a partial output folder. Ctrl-C exits with
130, also leaving nothing behind. Any other exception is a bug (in seethrough or in the
user's model) and keeps its traceback.
"""

from __future__ import annotations

import ast
import contextlib
import logging
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import click

from . import __version__
from .errors import InvalidOptionError, SeethroughError, suggest

__all__ = ["main"]

USAGE_ERROR = 2
INTERRUPTED = 130
# the gradient methods (a few minutes on a CPU); "all" adds the perturbation methods,
# which run the model hundreds to thousands of times per image
DEFAULT_METHODS = (
    "gradient,gradient_x_input,integrated_gradients,smoothgrad,guided_backprop,deconvnet,"
    "grad_cam,guided_grad_cam"
)

_INTEGER = re.compile(r"[+-]?\d+")
_log = logging.getLogger("seethrough")


def _fail(message: str) -> None:
    click.echo(f"seethrough: error: {' '.join(message.split())}", err=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (and exits with it when ``argv`` is None)."""
    with _log_to_stderr(), _warnings_to_stderr():
        code = _run(list(argv) if argv is not None else None)
    if argv is None:
        sys.exit(code)
    return code


def _run(args: list[str] | None) -> int:
    try:
        result = cli.main(args=args, prog_name="seethrough", standalone_mode=False)
    except click.exceptions.Exit as done:
        return int(done.exit_code)
    except click.exceptions.UsageError as error:
        if type(error).__name__ == "NoArgsIsHelpError" and error.ctx is not None:
            click.echo(error.ctx.get_help())  # click >= 8.2: `seethrough` alone shows help
            return 0
        where = f"; see '{error.ctx.command_path} --help'" if error.ctx is not None else ""
        _fail(error.format_message().rstrip(".") + where)
        return USAGE_ERROR
    except click.exceptions.ClickException as error:
        _fail(error.format_message())
        return USAGE_ERROR
    except SeethroughError as error:
        _fail(str(error))
        return USAGE_ERROR
    except (KeyboardInterrupt, click.exceptions.Abort):
        _fail("interrupted; nothing was written")
        return INTERRUPTED
    # standalone_mode=False returns the exit code of --help/--version, else the command's value.
    return result if isinstance(result, int) else 0


class _EchoHandler(logging.Handler):
    """Log records as ``seethrough: message`` lines on the current stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"seethrough: {record.getMessage()}", err=True)


@contextlib.contextmanager
def _log_to_stderr() -> Iterator[None]:
    """The library's log messages on stderr for one CLI call (``-v`` shows INFO too)."""
    handler, level = _EchoHandler(), _log.level
    _log.addHandler(handler)
    _log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        _log.removeHandler(handler)
        _log.setLevel(level)


@contextlib.contextmanager
def _warnings_to_stderr() -> Iterator[None]:
    """Warnings as one ``seethrough: warning:`` line each, not Python's two-line format."""

    def show(message: Warning | str, *_: Any, **__: Any) -> None:
        click.echo(f"seethrough: warning: {' '.join(str(message).split())}", err=True)

    with warnings.catch_warnings():  # restores showwarning afterwards
        warnings.showwarning = show
        yield


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="seethrough")
@click.option("-v", "--verbose", is_flag=True, help="Log what is being done.")
def cli(verbose: bool) -> None:
    """Explain PyTorch image classifiers: why they decide, and whether to believe it."""
    if verbose:
        _log.setLevel(logging.INFO)


_model_options = [
    click.option(
        "--model",
        "model_spec",
        default="efficientnet-lite0",
        show_default=True,
        help="Built-in name, TorchScript/state-dict/safetensors file, "
        "'package.module:object', 'torchvision:NAME' or 'timm:NAME'.",
    ),
    click.option(
        "--weights",
        type=click.Path(dir_okay=False),
        default=None,
        help="State dict or safetensors file for the model.",
    ),
    click.option(
        "--factory",
        default=None,
        help="'package.module:callable' that builds the model for --weights.",
    ),
    click.option(
        "--labels",
        "labels_file",
        type=click.Path(dir_okay=False),
        default=None,
        help="Text file of class names, one per line.",
    ),
    click.option(
        "--allow-pickle",
        is_flag=True,
        help="Allow loading plain pickles (runs code from the file: trusted files only).",
    ),
    click.option(
        "--device",
        type=click.Choice(["auto", "cpu", "cuda"]),
        default="auto",
        show_default=True,
        help="Where the model runs; auto picks CUDA when available.",
    ),
]


# Options shared by the analysis commands (features, anatomy).
def output_options(default: str) -> Callable[[Any], Any]:
    def decorate(func: Any) -> Any:
        func = click.option("-q", "--quiet", is_flag=True, help="No progress bars.")(func)
        func = click.option(
            "--force", is_flag=True, help="Replace the results in an existing output folder."
        )(func)
        return click.option(
            "--out", default=default, show_default=True, type=click.Path(), help="Output folder."
        )(func)

    return decorate


layer_option: Callable[[Any], Any] = click.option(
    "--layer", required=True, help="Dotted layer name (see 'seethrough layers')."
)
seed_option: Callable[[Any], Any] = click.option(
    "--seed", default=0, show_default=True, type=int, help="Seed of everything random."
)
batch_option: Callable[[Any], Any] = click.option(
    "--batch-size",
    default=None,
    type=click.IntRange(min=1),
    help="Most rows per forward pass (default: chosen per command).",
)
recursive_option: Callable[[Any], Any] = click.option(
    "--recursive", is_flag=True, help="Also load images in subfolders of folders."
)


def model_options(func: Any) -> Any:
    for option in reversed(_model_options):
        func = option(func)
    return func


def _device(choice: str) -> str:
    import torch

    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise InvalidOptionError(
            "--device cuda: no CUDA device is available here; use --device cpu (or auto)"
        )
    return choice


def _check_model_options(model_spec: str, weights: str | None, factory: str | None) -> None:
    """Refuse, in CLI terms, the option combinations the loader would refuse later."""
    from .models import MODELS
    from .models.loading import is_import_path

    if factory is None:
        return
    if not is_import_path(factory):
        raise InvalidOptionError(
            f"--factory {factory!r} is not an import path; expected 'package.module:callable'"
        )
    if weights is None and model_spec in MODELS:
        raise InvalidOptionError(
            "--factory builds an architecture and needs its weights: pass --weights FILE "
            "(a state dict or .safetensors file)"
        )


def _load(
    model_spec: str,
    *,
    weights: str | None,
    factory: str | None,
    labels_file: str | None,
    allow_pickle: bool,
    device: str,
) -> Any:
    from .models import load_model

    _check_model_options(model_spec, weights, factory)
    return load_model(
        model_spec,
        weights=weights,
        factory=factory,
        labels=labels_file,
        device=_device(device),
        allow_pickle=allow_pickle,
    )


def _parse_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def _method_options(settings: Sequence[str], names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``--set key=value`` or ``--set method.key=value`` → options per method."""
    per_method: dict[str, dict[str, Any]] = {name: {} for name in names}
    for item in settings:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidOptionError(
                f"--set {item!r}: expected KEY=VALUE or METHOD.KEY=VALUE, e.g. --set steps=64"
            )
        scope, dot, option = key.rpartition(".")
        if dot and scope not in per_method:
            raise InvalidOptionError(
                f"--set {item!r}: method {scope!r} is not among --methods"
                f"{suggest(scope, names)} (chosen: {', '.join(names)})"
            )
        targets = [scope] if dot else list(names)
        accepted = [m for m in targets if option in _options_of(m)]
        if not accepted:
            valid = sorted({f for m in targets for f in _options_of(m)})
            who = f"method {scope}" if dot else "no chosen method"
            has = "has no" if dot else "has an"
            raise InvalidOptionError(
                f"--set {item!r}: {who} {has} option {option!r}{suggest(option, valid)} "
                f"(options: {', '.join(valid) or 'none'})"
            )
        for m in accepted:
            per_method[m][option] = _parse_value(text.strip())
    return per_method


def _options_of(method: str) -> list[str]:
    import dataclasses

    from .attribution.base import METHODS

    return [f.name for f in dataclasses.fields(METHODS[method])]


def _method_names(text: str) -> list[str]:
    from .attribution.base import method_names

    valid = method_names()
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return list(valid)
    if not names:
        raise InvalidOptionError("--methods is empty; name at least one method, or 'all'")
    for name in names:
        if name not in valid:
            raise InvalidOptionError(
                f"unknown method {name!r}{suggest(name, valid)} "
                f"(valid: {', '.join(valid)}, or 'all'; see 'seethrough methods')"
            )
        if names.count(name) > 1:
            raise InvalidOptionError(f"--methods names {name!r} twice; give each method once")
    return names


def _layer_methods() -> list[str]:
    from .attribution.base import method_names

    return [name for name in method_names() if "layer" in _options_of(name)]


def _apply_layer(options: dict[str, dict[str, Any]], layer: str | None) -> None:
    if layer is None:
        return
    cams = [n for n in options if n in _layer_methods()]
    if not cams:
        raise InvalidOptionError(
            f"--layer is only used by CAM methods ({', '.join(_layer_methods())}), "
            "and none is among --methods"
        )
    layers = [part.strip() for part in layer.split(",")]
    for name in cams:
        options[name]["layer"] = layers if len(layers) > 1 else layers[0]


def _target(text: str | None) -> Any:
    """``--target`` text → what ``parse_target`` takes (validated once the model is loaded)."""
    if text is None or text.strip() == "predicted":
        return None
    values: list[Any] = [
        int(p) if _INTEGER.fullmatch(p) else p for p in (part.strip() for part in text.split(","))
    ]
    if any(v == "" for v in values):
        raise InvalidOptionError(f"--target {text!r} has an empty item; separate classes by commas")
    return values[0] if len(values) == 1 else values


def _images_and_model(
    images: Sequence[str], recursive: bool, layer: str | None, wanted: Any, **model: Any
) -> tuple[Any, Any]:
    """Load the images (default: the bundled photos) and the model, then check the layer
    names and the target against the model — before any real work."""
    from .core.layers import find_layer
    from .core.targets import parse_target
    from .data import DEFAULT_SAMPLES, load_images

    loaded = load_images(
        list(images) or [f"sample:{s}" for s in DEFAULT_SAMPLES], recursive=recursive
    )
    net = _load(model.pop("model_spec"), **model)
    if layer is not None:
        for name in layer.split(","):
            find_layer(net.module, name.strip())
    parse_target(wanted, len(loaded), net.labels)
    return loaded, net


class _Bars:
    """One progress bar per step (each method, then the figures), on stderr."""

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
            self.bar = click.progressbar(
                length=total, label=f"{name:<22}", file=sys.stderr, show_eta=True
            )
            self.bar.__enter__()
            self.name, self.done = name, 0
        self.bar.update(done - self.done)
        self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None
        self.name = ""


@cli.command()
@click.argument("images", nargs=-1)
@model_options
@click.option(
    "--methods",
    default=DEFAULT_METHODS,
    show_default=True,
    help="Comma-separated method names, or 'all' (see 'seethrough methods'). The default "
    "is every gradient method; perturbation methods (occlusion, rise, ...) run the model "
    "hundreds of times per image.",
)
@click.option(
    "--target",
    default=None,
    help="'predicted' (default), a class index or name, 'top3', or one per image "
    "separated by commas.",
)
@click.option(
    "--layer",
    default=None,
    help="Layer for CAM methods (dotted name, see 'seethrough layers'); several, "
    "separated by commas, are fused into one map (each scaled to max |value| 1, then averaged).",
)
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="[METHOD.]KEY=VALUE",
    help="A method option, e.g. --set steps=32 or --set smoothgrad.samples=20.",
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=int,
    help="Seed of the random methods: image i draws from seed + i.",
)
@click.option(
    "--batch-size",
    default=None,
    type=click.IntRange(min=1),
    help="Most rows per pass (default: adapt to memory).",
)
@click.option("--recursive", is_flag=True, help="Also load images in subfolders of folders.")
@click.option(
    "--out", default="seethrough-out", show_default=True, type=click.Path(), help="Output folder."
)
@click.option(
    "--force",
    is_flag=True,
    help="Replace the results in an existing output folder (after the run succeeded).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or notes on stderr.")
def explain(
    *,
    images: tuple[str, ...],
    model_spec: str,
    weights: str | None,
    factory: str | None,
    labels_file: str | None,
    allow_pickle: bool,
    device: str,
    methods: str,
    target: str | None,
    layer: str | None,
    settings: tuple[str, ...],
    seed: int,
    batch_size: int | None,
    recursive: bool,
    out: str,
    force: bool,
    quiet: bool,
) -> None:
    """Explain IMAGES (files, folders, or sample:NAME; default: bundled photos).

    Writes a figure per image, index.html, summary.json and attributions.safetensors
    into --out; nothing is written unless the whole run succeeds.
    """
    from .attribution.base import make_method
    from .jobs.explain import run_explain
    from .jobs.output import OutputFolder

    # Everything that can be checked cheaply is checked before any image or model is loaded.
    names = _method_names(methods)
    options = _method_options(settings, names)
    _apply_layer(options, layer)
    chosen = [make_method(n, **options[n]) for n in names]
    wanted = _target(target)
    _device(device)
    _check_model_options(model_spec, weights, factory)
    OutputFolder(out, force)

    loaded, net = _images_and_model(
        images,
        recursive,
        layer,
        wanted,
        model_spec=model_spec,
        weights=weights,
        factory=factory,
        labels_file=labels_file,
        allow_pickle=allow_pickle,
        device=device,
    )
    bars = _Bars(enabled=not quiet)
    try:
        result = run_explain(
            net,
            loaded,
            chosen,
            Path(out),
            target=wanted,
            seed=seed,
            batch_size=batch_size,
            force=force,
            progress=bars,
        )
    finally:
        bars.close()
    if not quiet:
        for ex in result.explanations:
            if getattr(ex, "layer", None):
                click.echo(f"{ex.method}: layer {ex.layer}", err=True)  # type: ignore[attr-defined]
    click.echo(
        f"wrote {len(result.files)} files to {result.out} (open {result.out / 'index.html'})"
    )


@cli.command()
@click.argument("images", nargs=-1)
@model_options
@click.option(
    "--methods",
    default="gradient,gradient_x_input,integrated_gradients,smoothgrad,guided_backprop,"
    "grad_cam,edge_detector",
    show_default=True,
    help="Comma-separated method names (controls: edge_detector, random_noise).",
)
@click.option(
    "--mode",
    type=click.Choice(["cascading", "independent"]),
    default="cascading",
    show_default=True,
    help="Randomize from the logits down, accumulating, or one step at a time.",
)
@click.option(
    "--granularity",
    type=click.Choice(["block", "module"]),
    default="block",
    show_default=True,
    help="Steps of blocks/stages, or of single parametrised modules.",
)
@click.option(
    "--follow-prediction",
    is_flag=True,
    help="Each randomized model explains its own top class (as the paper's code did); "
    "default: the class the trained model explained.",
)
@click.option("--target", default=None, help="As for 'explain'.")
@click.option("--layer", default=None, help="Layer for CAM methods.")
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="[METHOD.]KEY=VALUE",
    help="A method option, as for 'explain'.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of everything random.")
@click.option(
    "--batch-size",
    default=None,
    type=click.IntRange(min=1),
    help="Most rows per pass (default: adapt to memory).",
)
@click.option(
    "--figures",
    default=4,
    show_default=True,
    type=click.IntRange(min=0),
    help="Randomization grids for the first N images.",
)
@click.option("--recursive", is_flag=True, help="Also load images in subfolders of folders.")
@click.option(
    "--out",
    default="seethrough-sanity",
    show_default=True,
    type=click.Path(),
    help="Output folder.",
)
@click.option("--force", is_flag=True, help="Replace the results in an existing output folder.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or notes on stderr.")
def sanity(
    *,
    images: tuple[str, ...],
    model_spec: str,
    weights: str | None,
    factory: str | None,
    labels_file: str | None,
    allow_pickle: bool,
    device: str,
    methods: str,
    mode: str,
    granularity: str,
    follow_prediction: bool,
    target: str | None,
    layer: str | None,
    settings: tuple[str, ...],
    seed: int,
    batch_size: int | None,
    figures: int,
    recursive: bool,
    out: str,
    force: bool,
    quiet: bool,
) -> None:
    """Model-parameter randomization (Adebayo et al., 2018) on IMAGES: does each map
    depend on the model? Writes similarity curves, randomization grids and sanity.json."""
    from .attribution.base import make_method
    from .jobs.output import OutputFolder
    from .jobs.sanity import run_sanity

    names = _method_names(methods)
    options = _method_options(settings, names)
    _apply_layer(options, layer)
    for n in names:
        make_method(n, **options[n])
    flat = {k: v for per in options.values() for k, v in per.items()}
    wanted = _target(target)
    _device(device)
    _check_model_options(model_spec, weights, factory)
    OutputFolder(out, force)
    loaded, net = _images_and_model(
        images,
        recursive,
        layer,
        wanted,
        model_spec=model_spec,
        weights=weights,
        factory=factory,
        labels_file=labels_file,
        allow_pickle=allow_pickle,
        device=device,
    )
    bars = _Bars(enabled=not quiet)
    try:
        done = run_sanity(
            net,
            loaded,
            names,
            Path(out),
            mode=mode,
            granularity=granularity,
            follow_prediction=follow_prediction,
            target=wanted,
            seed=seed,
            batch_size=batch_size,
            figures=figures,
            force=force,
            progress=bars,
            options=flat,
        )
    finally:
        bars.close()
    if not quiet:
        last = done.result.steps[-1].name
        for s in done.result.similarities:
            value = float(s.mean("spearman_abs")[-1])
            click.echo(
                f"{s.method}: rank correlation with the trained map after {last}: {value:.2f}",
                err=True,
            )
    click.echo(f"wrote {len(done.files)} files to {done.out}")


@cli.command()
@model_options
def layers(
    *,
    model_spec: str,
    weights: str | None,
    factory: str | None,
    labels_file: str | None,
    allow_pickle: bool,
    device: str,
) -> None:
    """List the model's layers in execution order, with output shapes."""
    import torch

    from .core.guard import guarded
    from .core.layers import trace_layers

    net = _load(
        model_spec,
        weights=weights,
        factory=factory,
        labels_file=labels_file,
        allow_pickle=allow_pickle,
        device=device,
    )
    size, channels = net.preprocess.size, net.preprocess.channels
    param = next(net.module.parameters(), None)
    example = torch.zeros(
        1,
        channels,
        size,
        size,
        device=param.device if param is not None else "cpu",
        dtype=param.dtype if param is not None else torch.float32,
    )
    with guarded(net.module):
        infos = trace_layers(net.module, example)
    kinds = dict(net.module.named_modules())
    click.echo(f"{'layer':<40} {'type':<20} output shape")
    for info in infos:
        calls = f"  (runs {info.calls}×)" if info.calls > 1 else ""
        shape = "×".join(str(s) for s in info.shape)
        click.echo(f"{info.name:<40} {type(kinds[info.name]).__name__:<20} {shape}{calls}")


@cli.command("methods")
def list_methods() -> None:
    """List the attribution methods and their options."""
    import dataclasses

    from .attribution.base import METHODS
    from .jobs.explain import method_summary

    for name, cls in METHODS.items():
        summary = method_summary(cls)
        fields = ", ".join(f"{f.name}={_default(f)!r}" for f in dataclasses.fields(cls))
        click.echo(f"{name:<22} {summary}")
        if fields:
            click.echo(f"{'':<22} options: {fields}")


def _default(field: Any) -> Any:
    import dataclasses

    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory() if field.default_factory is not dataclasses.MISSING else "?"


from .cli_features import features as _features  # noqa: E402

cli.add_command(_features)

from . import cli_anatomy  # noqa: E402, F401  (registers 'anatomy')

if __name__ == "__main__":  # pragma: no cover
    main()
