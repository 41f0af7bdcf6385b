"""The ``seethrough`` command line. Wiring only: the work is in the library.

Bad input prints one line on stderr (``seethrough: error: ...``) and exits with code 2,
without a traceback and without leaving a partial output folder. Ctrl-C exits with
130, also leaving nothing behind. Any other exception is a bug (in seethrough or in the
user's model) and keeps its traceback.

The commands live one family per module (``explain``, ``sanity``, ``listing``,
``features``, ``anatomy``, ``report``, ``robust``, ``decompose``, ``dataset``) and share
their options through ``_shared``; this module holds the group and registers them. No
module here imports torch at import time, so ``seethrough --help`` is instant.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import click

from .._version import __version__
from ..errors import SeethroughError
from .anatomy import anatomy_command
from .dataset import explain_dataset_command, strategies_command
from .decompose import decompose_group
from .explain import explain_command
from .features import features
from .listing import layers_command, methods_command
from .report import report_command
from .robust import robust_group
from .sanity import sanity_command

__all__ = ["cli", "main"]

USAGE_ERROR = 2
INTERRUPTED = 130
TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process killed by it
_log = logging.getLogger("seethrough")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="seethrough")
@click.option("-v", "--verbose", is_flag=True, help="Log what is being done.")
def cli(verbose: bool) -> None:
    """Explain PyTorch image classifiers: why they decide, and whether to believe it."""
    if verbose:
        _log.setLevel(logging.INFO)


for _command in (
    explain_command,
    explain_dataset_command,
    strategies_command,
    sanity_command,
    layers_command,
    methods_command,
    features,
    anatomy_command,
    report_command,
    robust_group,
    decompose_group,
):
    cli.add_command(_command)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (and exits with it when ``argv`` is None)."""
    with _log_to_stderr(), _warnings_to_stderr(), _terminate_as_interrupt():
        code = _run(list(argv) if argv is not None else None)
    if argv is None:
        sys.exit(code)
    return code


def _fail(message: str) -> None:
    click.echo(f"seethrough: error: {' '.join(message.split())}", err=True)


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
    except (KeyboardInterrupt, click.exceptions.Abort) as error:
        # click turns a KeyboardInterrupt into Abort, raised from it
        terminated = isinstance(error, Terminated) or isinstance(error.__context__, Terminated)
        what = "terminated" if terminated else "interrupted"
        _fail(f"{what}; the output folder keeps the report of the steps finished so far, if any")
        return TERMINATED if terminated else INTERRUPTED
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


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an interrupt so that a job cleans up as after Ctrl-C (its
    staging folder and lock removed, its published report marked as stopped)."""


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def terminate(signum: int, frame: Any) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _warnings_to_stderr() -> Iterator[None]:
    """Warnings as one ``seethrough: warning:`` line each, not Python's two-line format."""

    def show(message: Warning | str, *_: Any, **__: Any) -> None:
        click.echo(f"seethrough: warning: {' '.join(str(message).split())}", err=True)

    with warnings.catch_warnings():  # restores showwarning afterwards
        warnings.showwarning = show
        yield
