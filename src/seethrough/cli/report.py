"""``seethrough report``: one self-contained HTML report in plain language, with its
evidence (wiring only; the work is in :mod:`seethrough.jobs.report`)."""

from __future__ import annotations

import shlex
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import InvalidOptionError
from ._methods import method_names
from ._shared import (
    ImageChoice,
    ModelChoice,
    OutputChoice,
    batch_option,
    choice_option,
    image_options,
    load_inputs,
    model_options,
    output_options,
    run_job,
    seed_option,
)

if TYPE_CHECKING:
    from ..jobs.report import ReportResult

__all__ = ["report_command"]

FASHION = "fashion-mnist"


@click.command("report")
@model_options()
@click.option(
    "--methods",
    default=None,
    help="Comma-separated method names (default: gradient, gradient_x_input, "
    "integrated_gradients, guided_backprop, grad_cam; with --quick: gradient, "
    "gradient_x_input, grad_cam).",
)
@click.option(
    "--data",
    default=None,
    help="Labelled images for the module analysis: 'fashion-mnist' (its test set) or a "
    "folder with one subfolder of images per class.",
)
@click.option(
    "--quick",
    is_flag=True,
    help="A quick report: the fast methods, fewer sanity-check images and curve points "
    "(about 15 s on 2 CPU cores for the built-in model, against about 2 minutes).",
)
@click.option(
    "--tensorboard",
    default=None,
    type=click.Path(file_okay=False),
    help="Also write the findings as TensorBoard events into this folder.",
)
@choice_option("--lang", ("en", "zh"), "Language of the sentences.")
@seed_option
@batch_option
@image_options
@output_options("seethrough-report")
def report_command(
    *,
    images: ImageChoice,
    model: ModelChoice,
    methods: str | None,
    data: str | None,
    quick: bool,
    tensorboard: str | None,
    lang: str,
    seed: int,
    batch_size: int | None,
    output: OutputChoice,
) -> None:
    """One report that answers what the model looked at, whether that can be trusted and
    (with --data) what the network relies on: report.html (self-contained, opens
    anywhere) and report.json (every number shown)."""
    from ..jobs.report import run_report

    names = method_names(methods) if methods is not None else None
    if data is not None and data != FASHION and (not data.strip() or not Path(data).is_dir()):
        raise InvalidOptionError(
            f"--data {data!r}: not '{FASHION}' and not a folder of class subfolders; "
            "give a folder with one subfolder of images per class"
        )
    loaded, net = load_inputs(images, model, output)
    run_job(
        output,
        run_report,
        net,
        loaded,
        data=data,
        quick=quick,
        methods=names,
        seed=seed,
        lang=lang,
        tensorboard=tensorboard,
        command=_command_line(),
        model_file=_model_file(model),
        batch_size=batch_size,
        notes=_notes,
        opens="report.html",
    )


def _command_line() -> str | None:
    """The command line, when this process is the ``seethrough`` command (not a test)."""
    if sys.argv and Path(sys.argv[0]).name in ("seethrough", "__main__.py"):
        return shlex.join(["seethrough", *sys.argv[1:]])
    return None


def _model_file(model: ModelChoice) -> str | None:
    if model.weights is not None:
        return model.weights
    return model.spec if Path(model.spec).is_file() else None


def _notes(done: ReportResult) -> Iterator[str]:
    """The summary's sentences, each after the name of the image or check it is about
    (one line each: control characters in names and labels are shown escaped)."""
    data = done.content.data
    names = {image["id"]: image["name"] for image in data.get("images", [])}
    for finding in data.get("summary", []):
        group = finding.get("group", "")
        yield _printable(f"{names.get(group, group)}: {finding['text']}")
    if done.tensorboard is not None:
        yield f"TensorBoard events in {done.tensorboard} (tensorboard --logdir {done.tensorboard})"
    yield f"report made in {done.seconds:.0f} s"


_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _printable(text: str) -> str:
    """``text`` with control characters (line breaks, terminal escape sequences) and
    bidirectional overrides escaped (``\\n``, ``\\x1b``): a file name or label cannot
    break a line or drive the terminal."""
    return "".join(
        c.encode("unicode_escape").decode("ascii")
        if unicodedata.category(c) == "Cc" or c in _BIDI
        else c
        for c in text
    )
