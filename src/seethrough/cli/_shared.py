"""What the commands share: their options (each defined once), loading the model and the
images, and progress bars.

Nothing here imports torch at module level: ``seethrough --help`` must stay instant.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..errors import InvalidOptionError, WeightsOnlyError

if TYPE_CHECKING:
    from click.termui import ProgressBar

    from ..data import LoadedImage
    from ..models import LoadedModel

F = TypeVar("F", bound=Callable[..., Any])

JobProgress = Callable[[str, int, int], None]
"""``progress(step_name, done, planned)``, as the jobs call it."""

seed_option = click.option(
    "--seed",
    default=0,
    show_default=True,
    type=int,
    help="Seed of everything random (image i of a random method draws from seed + i).",
)
batch_option = click.option(
    "--batch-size",
    default=None,
    type=click.IntRange(min=1),
    help="Most rows per forward pass (default: adapt to memory).",
)
recursive_option = click.option(
    "--recursive", is_flag=True, help="Also load images in subfolders of folders."
)
layer_option = click.option(
    "--layer", required=True, help="Dotted layer name (see 'seethrough layers')."
)


def output_options(default: str) -> Callable[[F], F]:
    """``--out`` (default ``default``), ``--force`` and ``-q/--quiet``."""

    def decorate(func: F) -> F:
        func = click.option("-q", "--quiet", is_flag=True, help="No progress bars or notes.")(func)
        func = click.option(
            "--force",
            is_flag=True,
            help="Replace the results in an existing output folder (once the run succeeded).",
        )(func)
        return click.option(
            "--out", default=default, show_default=True, type=click.Path(), help="Output folder."
        )(func)

    return decorate


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


_MODEL_FIELDS = ("model_spec", "weights", "factory", "labels_file", "allow_pickle", "device")


def model_options(
    default: str = "efficientnet-lite0", model_help: str | None = None
) -> Callable[[F], F]:
    """``--model`` (default ``default``), ``--weights``, ``--factory``, ``--labels``,
    ``--allow-pickle`` and ``--device``, handed to the command as ``model: ModelChoice``."""
    options = [
        click.option(
            "--model",
            "model_spec",
            default=default,
            show_default=True,
            help=model_help
            or "Built-in name, TorchScript/state-dict/safetensors file, "
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
            help="'package.module:callable' that builds the model for --weights "
            "(modules in the current folder are found).",
        ),
        click.option(
            "--labels",
            "labels_file",
            type=click.Path(dir_okay=False),
            default=None,
            help="UTF-8 text file of class names, one per line.",
        ),
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
    ]

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def command(*args: Any, **kwargs: Any) -> Any:
            spec, weights, factory, labels, allow_pickle, device = (
                kwargs.pop(name) for name in _MODEL_FIELDS
            )
            model = ModelChoice(spec, weights, factory, labels, allow_pickle, device)
            return func(*args, model=model, **kwargs)

        for option in reversed(options):
            command = option(command)
        return command  # type: ignore[return-value]

    return decorate


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


def check_output(out: str, force: bool) -> None:
    """Refuse an unusable ``--out`` before any work (the jobs check it again)."""
    from ..report.output import OutputFolder

    OutputFolder(out, force)


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


def load_net(model: ModelChoice, layers: Sequence[str] = ()) -> LoadedModel:
    """Load the model ``model`` describes and check that it has ``layers``."""
    from ..core.layers import find_layer
    from ..models import load_model

    model.check()
    try:
        with _current_folder_importable():
            net = load_model(
                model.spec,
                weights=model.weights,
                factory=model.factory,
                labels=model.labels,
                device=resolve_device(model.device),
                allow_pickle=model.allow_pickle,
            )
    except WeightsOnlyError as error:
        raise InvalidOptionError(
            f"--model {model.spec!r} holds only weights (a state dict); pass --factory "
            "'package.module:callable' that builds the model"
        ) from error
    for name in layers:
        find_layer(net.module, name)
    return net


def load_inputs(
    images: Sequence[str],
    model: ModelChoice,
    *,
    recursive: bool = False,
    layers: Sequence[str] = (),
    target: Any = None,
) -> tuple[list[LoadedImage], LoadedModel]:
    """Load ``images`` (none given: the bundled photos) and the model, then check the layer
    names and the target against the model — before any real work."""
    from ..core.targets import parse_target
    from ..data import DEFAULT_SAMPLES, load_images

    loaded = load_images(
        list(images) or [f"sample:{s}" for s in DEFAULT_SAMPLES], recursive=recursive
    )
    net = load_net(model, layers)
    if target is not None:
        parse_target(target, len(loaded), net.labels)
    return loaded, net


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
