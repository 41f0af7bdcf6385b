"""What the commands share: their options (one set per concept, each defined once),
loading the model and the images, and running a job with progress bars.

A command is wiring: its option sets arrive as one value each (``model: ModelChoice``,
``output: OutputChoice``, ``images: ImageChoice``); it loads with :func:`load_inputs` or
:func:`load_net` and hands the library's job to :func:`run_job`.

Nothing here imports torch at module level: ``seethrough --help`` must stay instant.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import click

from ..errors import InvalidOptionError, suggest

if TYPE_CHECKING:
    from click.termui import ProgressBar

    from ..data import LoadedImage
    from ..models import LoadedModel

Decorator = Callable[[Any], Any]

JobProgress = Callable[[str, int, int], None]
"""``progress(step_name, done, planned)``, as the jobs call it."""

seed_option = click.option(
    "--seed",
    default=0,
    show_default=True,
    type=int,
    help="Seed of everything random (image i of a random method draws from seed + i).",
)
layer_option = click.option(
    "--layer", required=True, help="Dotted layer name (see 'seethrough layers')."
)


def steps_option(text: str = "Optimizer steps.") -> Decorator:
    """``--steps`` of an optimisation (the library's default when not given)."""
    return count_option("--steps", text)


def lr_option(text: str = "Adam lr.") -> Decorator:
    """``--lr`` of an optimisation (the library's default when not given)."""
    return click.option(
        "--lr", default=None, type=click.FloatRange(min=0, min_open=True), help=text
    )


def count_option(name: str, text: str, default: int | None = None, least: int = 1) -> Decorator:
    """An integer option, at least ``least`` (not given: ``default``; ``None``, the
    library's default)."""
    return click.option(
        name,
        default=default,
        show_default=default is not None,
        type=click.IntRange(min=least),
        help=text,
    )


def choice_option(name: str, values: Sequence[str], text: str) -> Decorator:
    """An option that takes one of ``values``; the first is the default."""
    return click.option(
        name, type=click.Choice(values), default=values[0], show_default=True, help=text
    )


batch_option = count_option(
    "--batch-size", "Most rows per forward pass (default: adapt to memory)."
)
nonfinite_option = choice_option(
    "--nonfinite",
    ("raise", "warn"),
    "A NaN or infinite score, gradient or map: stop with an error naming the rows and the "
    "step, or warn, go on and mark those rows in the report (JSON: null plus a flag).",
)


def option_group(make: type[Any], name: str, *options: Decorator) -> Decorator:
    """Add ``options`` to a command and hand their values to it as one argument,
    ``name=make(**values)`` (each option's parameter name is a field of the dataclass
    ``make``)."""
    fields = [f.name for f in dataclasses.fields(make)]

    def decorate(func: Callable[..., Any]) -> Any:
        @functools.wraps(func)
        def command(*args: Any, **kwargs: Any) -> Any:
            values = {field: kwargs.pop(field) for field in fields}
            return func(*args, **kwargs, **{name: make(**values)})

        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def _file_option(name: str, text: str) -> Decorator:
    return click.option(name, type=click.Path(dir_okay=False), default=None, help=text)


@dataclass(frozen=True)
class ModelChoice:
    """The model options of one command: what :func:`load_net` loads."""

    spec: str
    weights: str | None
    factory: str | None
    labels: str | None
    allow_pickle: bool
    device: str

    def check(self) -> None:
        """Refuse, in CLI terms and before anything is loaded, the options that cannot work."""
        from ..models import MODELS
        from ..models.loading import is_import_path

        resolve_device(self.device)
        if self.factory is None:
            return
        if not is_import_path(self.factory):
            raise InvalidOptionError(
                f"--factory {self.factory!r} is not an import path; "
                "expected 'package.module:callable'"
            )
        if self.weights is None and self.spec in MODELS:
            raise InvalidOptionError(
                "--factory builds an architecture and needs its weights: pass --weights FILE "
                "(a state dict or .safetensors file)"
            )


_MODEL_HELP = (
    "Built-in name, TorchScript/state-dict/safetensors file, 'package.module:object', "
    "'torchvision:NAME' or 'timm:NAME'."
)
_MODEL_DETAILS = (
    _file_option("--weights", "State dict or safetensors file for the model."),
    click.option(
        "--factory",
        default=None,
        help="'package.module:callable' that builds the model for --weights "
        "(modules in the current folder are found).",
    ),
    _file_option("--labels", "UTF-8 text file of class names, one per line."),
    click.option(
        "--allow-pickle",
        is_flag=True,
        help="Allow loading plain pickles (runs code from the file: trusted files only).",
    ),
    click.option(
        "--device",
        default="auto",
        show_default=True,
        metavar="DEVICE",
        help="Where the model runs: auto (CUDA when available), cpu, cuda or cuda:N.",
    ),
)


def model_options(default: str = "efficientnet-lite0", model_help: str = _MODEL_HELP) -> Decorator:
    """``--model`` (default ``default``), ``--weights``, ``--factory``, ``--labels``,
    ``--allow-pickle`` and ``--device``, handed to the command as ``model: ModelChoice``."""
    spec = click.option("--model", "spec", default=default, show_default=True, help=model_help)
    return option_group(ModelChoice, "model", spec, *_MODEL_DETAILS)


@dataclass(frozen=True)
class OutputChoice:
    """``--out``, ``--force`` and ``--quiet`` of one command."""

    out: str
    force: bool
    quiet: bool

    def check(self) -> None:
        """Refuse an unusable ``--out`` before any work (the jobs check it again)."""
        from ..reporting.output import OutputFolder

        OutputFolder(self.out, self.force)


def output_options(default: str) -> Decorator:
    """``--out`` (default ``default``), ``--force`` and ``-q/--quiet``, handed to the
    command as ``output: OutputChoice``."""
    return option_group(
        OutputChoice,
        "output",
        click.option(
            "--out", default=default, show_default=True, type=click.Path(), help="Output folder."
        ),
        click.option(
            "--force",
            is_flag=True,
            help="Replace the results in an existing output folder (once the run succeeded).",
        ),
        click.option("-q", "--quiet", is_flag=True, help="No progress bars or notes."),
    )


@dataclass(frozen=True)
class ImageChoice:
    """The ``IMAGES`` argument and ``--recursive`` of one command."""

    images: tuple[str, ...]
    recursive: bool


image_options = option_group(
    ImageChoice,
    "images",
    click.argument("images", nargs=-1),
    click.option("--recursive", is_flag=True, help="Also load images in subfolders of folders."),
)
"""``IMAGES`` and ``--recursive``, handed to the command as ``images: ImageChoice``."""


def resolve_device(text: str) -> str:
    """``--device`` → a torch device string: ``auto`` picks CUDA when available; a device
    that does not exist here (``cuda`` without CUDA, ``cuda:3`` on a one-GPU machine) is
    refused with what exists."""
    import torch

    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(text)
    except (RuntimeError, TypeError) as error:
        raise InvalidOptionError(
            f"--device {text!r} is not a device; use auto, cpu, cuda or cuda:N"
        ) from error
    if device.type == "cpu":
        return str(device)
    if device.type != "cuda":
        raise InvalidOptionError(
            f"--device {text!r}: only auto, cpu, cuda and cuda:N are supported"
        )
    if not torch.cuda.is_available():
        raise InvalidOptionError(
            f"--device {text}: no CUDA device is available here; use --device cpu (or auto)"
        )
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        have = "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
        raise InvalidOptionError(
            f"--device {text}: no such CUDA device; this machine has {count} ({have})"
        )
    return str(device)


@contextlib.contextmanager
def _current_folder_importable() -> Iterator[None]:
    """Modules in the current folder are importable while the model loads, as with
    ``python -m``: a ``--factory`` module next to the user's files needs no PYTHONPATH."""
    folder = os.getcwd()
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        yield
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(folder)


def load_net(
    model: ModelChoice, layers: Sequence[str] = (), output: OutputChoice | None = None
) -> LoadedModel:
    """Check the model options and ``output`` before anything is loaded, then load the
    model ``model`` describes and check that it has ``layers``."""
    _check(model, output)
    return _load(model, layers)


def load_inputs(
    images: ImageChoice,
    model: ModelChoice,
    output: OutputChoice,
    *,
    layers: Sequence[str] = (),
    target: Any = None,
) -> tuple[list[LoadedImage], LoadedModel]:
    """Check the model options and ``--out``, load the images (none given: the bundled
    photos) and the model, then check the layer names and the target against the model
    — all before any real work."""
    from ..core.targets import parse_target
    from ..data import DEFAULT_SAMPLES, load_images

    _check(model, output)
    paths = list(images.images) or [f"sample:{s}" for s in DEFAULT_SAMPLES]
    loaded = load_images(paths, recursive=images.recursive)
    net = _load(model, layers)
    if target is not None:
        parse_target(target, len(loaded), net.labels)
    return loaded, net


def _check(model: ModelChoice, output: OutputChoice | None) -> None:
    model.check()
    if output is not None:
        output.check()


def _load(model: ModelChoice, layers: Sequence[str]) -> LoadedModel:
    """The model, loaded with errors that name the command's flags (``--model``,
    ``--weights``, ``--factory``), checked to have ``layers``."""
    from ..core.layers import find_layer
    from ..models import load_model
    from ..models.zoo import argument_names

    flags = argument_names(spec="--model {}", weights="--weights {}", factory="--factory {}")
    with _current_folder_importable(), flags:
        net = load_model(
            model.spec,
            weights=model.weights,
            factory=model.factory,
            labels=model.labels,
            device=resolve_device(model.device),
            allow_pickle=model.allow_pickle,
        )
    for name in layers:
        find_layer(net.module, name)
    return net


class _Written(Protocol):
    """What a job returns: the folder it wrote and the files in it."""

    @property
    def out(self) -> Path: ...

    @property
    def files(self) -> Sequence[str]: ...


J = TypeVar("J", bound=_Written)


def run_job(
    output: OutputChoice,
    job: Callable[..., J],
    *args: Any,
    bars: bool = True,
    notes: Callable[[J], Iterable[str]] | None = None,
    opens: str | None = None,
    **kwargs: Any,
) -> J:
    """``job(*args, out=..., force=..., progress=..., **kwargs)`` with a progress bar per
    step on stderr (``bars``: the job reports progress; none with ``--quiet``), then the
    job's ``notes`` on stderr (not with ``--quiet``) and ``wrote N files to OUT`` on stdout
    (with the file it ``opens``: its ``index.html`` unless told)."""
    with progress_bars(bars and not output.quiet) as progress:
        reporting = {"progress": progress} if bars else {}
        done = job(*args, out=Path(output.out), force=output.force, **reporting, **kwargs)
    for line in notes(done) if notes is not None and not output.quiet else ():
        click.echo(line, err=True)
    from ..reporting.html import PAGE  # here: `seethrough --help` imports no jinja2

    if opens is None and PAGE in done.files:
        opens = PAGE  # every job writes its page; say where it is
    shown = f" (open {done.out / opens})" if opens is not None else ""
    click.echo(f"wrote {len(done.files)} files to {done.out}{shown}")
    return done


class _Bars:
    """One progress bar per step (each method, then the figures), on stderr."""

    def __init__(self) -> None:
        self._open = contextlib.ExitStack()
        self._bar: ProgressBar[int] | None = None
        self._name = ""
        self._done = 0

    def __call__(self, name: str, done: int, total: int) -> None:
        if self._bar is None or name != self._name:
            self.finish()
            self._bar = self._open.enter_context(
                click.progressbar(length=total, label=f"{name:<22}", file=sys.stderr, show_eta=True)
            )
            self._name, self._done = name, 0
        self._bar.length = max(total, done)  # a method may plan more rows as it runs
        self._bar.update(done - self._done)
        self._done = done

    def finish(self) -> None:
        """The step ended: show its bar full even if it stopped early (adaptive IG)."""
        if self._bar is not None and self._bar.length is not None:
            self._bar.update(max(0, self._bar.length - self._bar.pos))
        self.close()

    def close(self) -> None:
        self._open.close()
        self._bar, self._name = None, ""


@contextlib.contextmanager
def progress_bars(enabled: bool) -> Iterator[JobProgress | None]:
    """``progress(step, done, planned)`` drawing a bar per step on stderr (``None`` when
    not ``enabled``); the last bar is finished on success and left as it was on error."""
    if not enabled:
        yield None
        return
    bars = _Bars()
    try:
        yield bars
    except BaseException:
        bars.close()
        raise
    bars.finish()


class NamedChoice(click.Choice):
    """A choice whose error names close matches (``--norm lnf``: did you mean 'linf'?)."""

    def __init__(self, what: str, choices: Sequence[str]) -> None:
        super().__init__(choices)
        self.what = what

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        valid = [str(c) for c in self.choices]
        if not (isinstance(value, str) and value.lower() in valid):
            hint = suggest(str(value), valid)
            self.fail(
                f"unknown {self.what} {value!r}{hint} (valid: {', '.join(valid)})", param, ctx
            )
        return value.lower()


def named_option(name: str, what: str, values: Sequence[str], text: str) -> Any:
    """``--name`` choosing among ``values`` (the first is the default), case-insensitive,
    with close matches named in the error."""
    return click.option(
        name, type=NamedChoice(what, values), default=values[0], show_default=True, help=text
    )


def labelled_data_options(limit: int) -> Decorator:
    """``--data`` (labelled images: Fashion-MNIST's test or training set, or a folder of
    class subfolders) and ``--limit`` (the first N of them, default ``limit``)."""
    data = click.option(
        "--data",
        default="fashion-mnist:test",
        show_default=True,
        help="'fashion-mnist:test' or ':train' (for the Fashion-MNIST CNN), or a folder with "
        "one subfolder of images per class.",
    )
    count = count_option("--limit", "Use the first N images of the data.", default=limit)
    return lambda command: data(count(command))
