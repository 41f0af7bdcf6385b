"""A report as TensorBoard events: the same findings, for TensorBoard's dashboards.

:func:`write_events` writes what a :class:`~seethrough.reporting.content.ReportContent`
holds (``report.json`` and its figures, maps and embedding) into one TensorBoard log
folder, with these tags:

===================================  ==================================================
``summary``                          text: the summary findings
``provenance``, ``preprocessing``,   text: model, file hash, versions, seed, device,
``settings``                         command; the preprocessing; the job's settings
``images/<image id>``                text: file name, explained class, top predictions,
                                     the image's findings
``overlay/<image id>/<method>``      image: the report's panel of that image and method
``figures/<figure id>``              image: every other figure of the report
``attribution/<image id>/<method>``  histogram: the raw channel-summed attribution map
``sanity/<method>``                  scalar per randomization step (mean similarity to
                                     the trained model's maps; step k: k steps done);
                                     steps and verdicts as the text ``sanity/verdicts``
``faithfulness/<metric>/<method>``   scalar per point of the deletion (insertion) curve,
                                     ``.../random`` for the random baseline; the AUCs as
                                     the text ``faithfulness/<metric>/auc``
``agreement``, ``completeness``      text: method-agreement matrix, IG completeness
projector ``<layer>``                probe features with class labels and thumbnails
===================================  ==================================================

TensorBoard steps are integers, so a faithfulness curve's step is the percentage of
pixels removed (or inserted) when every fraction is a whole percentage, else the index
of the point; the text ``faithfulness/<metric>/auc`` says which. A value that was not
finite (``null`` in ``report.json``) is left out of its curve. Text is markdown: every
name and label from the report is escaped, so it shows literally (``<script>`` too).

The ``tensorboard`` package is an optional extra (``pip install "seethrough[tensorboard]"``);
:func:`summary_writer` says so when it is missing.
"""

from __future__ import annotations

import contextlib
import html
import io
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInputError, InvalidOptionError, SeethroughError
from .content import Embedding, ReportContent

__all__ = ["INSTALL", "SCHEMA", "check_logdir", "markdown", "summary_writer", "write_events"]

INSTALL = 'pip install "seethrough[tensorboard]"'
"""How to install the optional TensorBoard dependency."""

SCHEMA = "seethrough.report/1"
"""The ``report.json`` schema that :func:`write_events` reads."""

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]#|])")
# what starts a list when it starts the text (it follows "- " or a table bar)
_MARKDOWN_START = re.compile(r"^(\d+)([.)])|^([-+])")


def summary_writer(logdir: str | os.PathLike[str]) -> Any:
    """A ``torch.utils.tensorboard.SummaryWriter`` writing into ``logdir``.

    Raises
    ------
    SeethroughError
        When the ``tensorboard`` package is missing, saying how to install it.
    """
    return _writer_class()(log_dir=str(logdir))


def _writer_class() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise SeethroughError(
            f"TensorBoard output needs the tensorboard package, which is not installed "
            f"({err}); install it with: {INSTALL}"
        ) from err
    return SummaryWriter


def markdown(text: object) -> str:
    """``text`` escaped for TensorBoard's markdown text dashboard: shown literally.

    HTML is escaped (``<script>`` shows as text, never as an element) and markdown's
    special characters are backslash-escaped (``hot_dog`` is not half in italics, ``[a](b)``
    is no link, ``1. x`` no list). Line breaks become spaces, so a name cannot start a
    new markdown block.
    """
    flat = _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))
    flat = _MARKDOWN_START.sub(lambda m: f"{m[1]}\\{m[2]}" if m[1] else f"\\{m[3]}", flat)
    return html.escape(flat, quote=False)


def check_logdir(logdir: str | os.PathLike[str]) -> Path:
    """Check before any work that :func:`write_events` can write into ``logdir``.

    The ``tensorboard`` package must be installed, and the folder must not exist or be
    empty: a second set of events in one TensorBoard run folder would be shown mixed
    with the first. The folder must be creatable: a folder is created and removed in
    its nearest existing parent (nothing is left behind). Returns the folder as a path.

    Raises
    ------
    SeethroughError
        The ``tensorboard`` package is missing (with the install command).
    InvalidOptionError
        ``logdir`` is empty, a file, a folder that holds files, or cannot be created.
    """
    _writer_class()
    if not str(logdir).strip():
        raise InvalidOptionError(
            "the TensorBoard folder (--tensorboard) is empty; name a folder (e.g. runs/explain)"
        )
    folder = Path(logdir)
    if folder.is_file():
        raise InvalidOptionError(
            f"the TensorBoard folder {str(folder)!r} is a file; give a folder (e.g. runs/explain)"
        )
    if folder.is_dir() and any(folder.iterdir()):
        raise InvalidOptionError(
            f"the TensorBoard folder {str(folder)!r} is not empty; TensorBoard would mix "
            "these events with the ones there — give a new folder (one per run, e.g. "
            f"{str(folder)!r}-2) or remove it"
        )
    _check_creatable(folder)
    return folder


def _check_creatable(folder: Path) -> None:
    ancestor = folder.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    try:
        if not ancestor.is_dir():
            raise NotADirectoryError(0, f"{ancestor} is a file, not a folder")
        os.rmdir(tempfile.mkdtemp(prefix=".seethrough-check-", dir=ancestor))
    except OSError as err:
        raise InvalidOptionError(
            f"cannot create the TensorBoard folder {str(folder)!r}: "
            f"{(err.strerror or str(err)).rstrip('.')}; give another folder"
        ) from None


def write_events(content: ReportContent, logdir: str | os.PathLike[str]) -> Path:
    """Write a report as TensorBoard events into ``logdir`` (tags: module docstring).

    The events are written into a staging folder next to ``logdir`` and moved into place
    when complete, so an interrupted run leaves no half-written run folder.

    Parameters
    ----------
    content : ReportContent
        The report: ``content.data`` follows the ``report.json`` schema :data:`SCHEMA`.
    logdir : str or path
        The TensorBoard run folder: it must not exist, or be empty (:func:`check_logdir`).

    Returns
    -------
    Path
        ``logdir``, holding the event file (and the projector's files, with an embedding).

    Raises
    ------
    InvalidInputError
        ``content.data`` is not a ``seethrough.report/1`` report, or a panel names a
        figure that ``content.figures`` lacks.
    InvalidOptionError
        ``logdir`` cannot be used (:func:`check_logdir`).
    SeethroughError
        The ``tensorboard`` package is missing (with the install command).
    """
    data = content.data
    schema = data.get("schema") if isinstance(data, Mapping) else type(data).__name__
    if schema != SCHEMA:
        raise InvalidInputError(
            f"the report data has schema {schema!r}; TensorBoard events are "
            f"written from a {SCHEMA!r} report (ReportContent from seethrough's report job)"
        )
    folder = check_logdir(logdir)
    created = _missing_parents(folder)
    try:
        _write_staged(content, folder)
    except BaseException as err:
        for parent in created:  # innermost first; only the ones this call made
            with contextlib.suppress(OSError):
                parent.rmdir()
        if isinstance(err, OSError):
            raise InvalidOptionError(
                f"cannot write the TensorBoard folder {str(folder)!r}: "
                f"{(err.strerror or str(err)).rstrip('.')}; give another folder"
            ) from None
        if isinstance(err, (KeyError, TypeError, ValueError)):
            raise InvalidInputError(
                f"the report data is not a valid {SCHEMA!r} report ({type(err).__name__}: "
                f"{err}); write events from the ReportContent of seethrough's report job"
            ) from err
        raise
    return folder


def _missing_parents(folder: Path) -> list[Path]:
    """The parents of ``folder`` that do not exist yet, innermost first."""
    missing = []
    parent = folder.parent
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    return missing


def _write_staged(content: ReportContent, folder: Path) -> None:
    """Write the events into a staging folder next to ``folder``, then rename it."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".partial-{folder.name}-", dir=folder.parent))
    try:
        writer = summary_writer(staging)
        try:
            _write(writer, content)
        finally:
            writer.close()
        if folder.is_dir():
            folder.rmdir()  # empty: checked above
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _write(writer: Any, content: ReportContent) -> None:
    data = content.data
    _write_text(writer, data)
    panels = _write_overlays(writer, data.get("images") or [], content.figures)
    for figure_id, png in content.figures.items():
        if figure_id not in panels:
            writer.add_image(f"figures/{figure_id}", _decode_png(png), 0, dataformats="HWC")
    for (image_id, method), values in content.maps.items():
        writer.add_histogram(f"attribution/{image_id}/{method}", np.asarray(values), 0)
    if data.get("sanity"):
        _write_sanity(writer, data["sanity"])
    for section in ("faithfulness", "insertion"):  # deletion, then insertion
        if data.get(section):
            _write_faithfulness(writer, data[section])
    if content.embedding is not None:
        _write_embedding(writer, content.embedding)


# --- text ------------------------------------------------------------------------------


def _write_text(writer: Any, data: Mapping[str, Any]) -> None:
    summary = data.get("summary") or []
    if summary:
        writer.add_text("summary", _bullets(f["text"] for f in summary), 0)
    for section in ("provenance", "preprocessing", "settings"):
        if data.get(section):
            writer.add_text(section, _table(("", ""), _flat_items(data[section])), 0)
    for image in data.get("images") or []:
        writer.add_text(f"images/{image['id']}", _image_text(image), 0)
    if data.get("agreement"):
        writer.add_text("agreement", _agreement_text(data["agreement"]), 0)
    completeness = data.get("completeness") or []
    if completeness:
        keys = list(dict.fromkeys(k for row in completeness for k in row))
        rows = [[row.get(k) for k in keys] for row in completeness]
        writer.add_text("completeness", _table(keys, rows), 0)


def _image_text(image: Mapping[str, Any]) -> str:
    parts = [f"**{markdown(image.get('name', image['id']))}**"]
    target = image.get("target") or {}
    if target:
        parts.append(
            _table(
                ("explained class", "index", "score"),
                [[target.get("label"), target.get("index"), target.get("score")]],
            )
        )
    predictions = image.get("predictions") or []
    if predictions:
        rows = [[p["label"], p["index"], p["probability"]] for p in predictions]
        parts.append(_table(("class", "index", "probability"), rows))
    findings = image.get("findings") or []
    if findings:
        parts.append(_bullets(f["text"] for f in findings))
    return "\n\n".join(parts)


def _agreement_text(agreement: Mapping[str, Any]) -> str:
    methods = list(agreement["methods"])
    rows = [[m, *row] for m, row in zip(methods, agreement["matrix"])]
    head = f"{markdown(agreement.get('metric', ''))} over n = {agreement.get('n')} images"
    return head + "\n\n" + _table(("", *methods), rows)


def _bullets(lines: Any) -> str:
    return "\n".join(f"- {markdown(line)}" for line in lines)


def _table(header: Sequence[Any], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table; every cell escaped, numbers shown to 6 significant digits."""
    lines = [_row(header), "|" + "---|" * len(header)]
    lines += [_row(row) for row in rows]
    return "\n".join(lines)


def _row(cells: Sequence[Any]) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value)
    return markdown("" if value is None else value)


def _flat_items(mapping: Mapping[str, Any], prefix: str = "") -> list[list[Any]]:
    """``[key, value]`` rows; nested mappings (versions) as ``outer.inner`` keys."""
    rows: list[list[Any]] = []
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            rows += _flat_items(value, f"{prefix}{key}.")
        else:
            rows.append([f"{prefix}{key}", value])
    return rows


# --- images and histograms -----------------------------------------------------------


def _write_overlays(
    writer: Any, images: Sequence[Mapping[str, Any]], figures: Mapping[str, bytes]
) -> set[str]:
    """Each image's panels as ``overlay/<image id>/<method>``; the figure ids written."""
    written: set[str] = set()
    for image in images:
        for panel in image.get("panels") or []:
            figure = panel["figure"]
            if figure not in figures:
                raise InvalidInputError(
                    f"the report's panel of image {image['id']!r} and method "
                    f"{panel['method']!r} names figure {figure!r}, which the content lacks"
                )
            tag = f"overlay/{image['id']}/{panel['method']}"
            writer.add_image(tag, _decode_png(figures[figure]), 0, dataformats="HWC")
            written.add(figure)
    return written


def _decode_png(png: bytes) -> np.ndarray:
    """PNG bytes as ``(H, W, 3)`` uint8 RGB, transparency composited over white."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(png)) as image:
            rgba = image.convert("RGBA")
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"a figure is not a readable PNG ({err})") from err
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))


# --- curves ----------------------------------------------------------------------------


def _write_sanity(writer: Any, sanity: Mapping[str, Any]) -> None:
    methods = sanity.get("methods") or []
    for entry in methods:
        steps = range(1, len(entry["curve"]) + 1)  # step k: k randomization steps done
        _scalars(writer, f"sanity/{entry['method']}", steps, entry["curve"])
    names = list(enumerate(sanity.get("steps") or [], start=1))
    steps_table = _table(("step", "randomized"), names)
    keys = ("method", "verdict", "mean", "ci", "reason")
    rows = [[m.get(k) for k in keys] for m in methods]
    head = (
        f"{markdown(sanity.get('mode', ''))} randomization, {markdown(sanity.get('metric', ''))}, "
        f"threshold {_cell(sanity.get('threshold'))}, n = {sanity.get('n')} images"
    )
    verdicts = _table(("method", "verdict", "mean", "95% CI", "reason"), rows)
    writer.add_text("sanity/verdicts", f"{head}\n\n{verdicts}\n\n{steps_table}", 0)


def _write_faithfulness(writer: Any, faithfulness: Mapping[str, Any]) -> None:
    fractions = [float(f) for f in faithfulness["fractions"]]
    steps, unit = _curve_steps(fractions)
    curves = [(m["method"], m["curve"], m.get("auc")) for m in faithfulness.get("methods") or []]
    if faithfulness.get("random"):
        random = faithfulness["random"]
        curves.append(("random", random["curve"], random.get("auc")))
    metric = faithfulness["metric"]
    for name, curve, _ in curves:
        if len(curve) != len(steps):
            raise InvalidInputError(
                f"the {metric} curve of {name!r} has {len(curve)} points for {len(steps)} fractions"
            )
        _scalars(writer, f"faithfulness/{metric}/{name}", steps, curve)
    head = f"{markdown(metric)}; the scalars' step is {unit}"
    rows = [[name, auc] for name, _, auc in curves]
    table = _table(("method", "AUC"), rows)
    writer.add_text(f"faithfulness/{metric}/auc", f"{head}\n\n{table}", 0)


def _scalars(writer: Any, tag: str, steps: Sequence[int], values: Sequence[Any]) -> None:
    """One scalar per step; ``None`` (a non-finite value in the JSON) is left out."""
    for step, value in zip(steps, values):
        if value is not None:
            writer.add_scalar(tag, float(value), step)


def _curve_steps(fractions: Sequence[float]) -> tuple[list[int], str]:
    """Integer steps for a curve over ``fractions``: whole percentages when every
    fraction is one (and they differ), else the point's index."""
    percent = [round(f * 100) for f in fractions]
    whole = all(abs(f * 100 - p) < 1e-6 for f, p in zip(fractions, percent))
    if whole and len(set(percent)) == len(percent):
        return percent, "the percentage of pixels changed"
    return list(range(len(fractions))), "the index of the point (fractions: " + ", ".join(
        f"{f:.6g}" for f in fractions
    ) + ")"


# --- projector -------------------------------------------------------------------------


def _write_embedding(writer: Any, embedding: Embedding) -> None:
    """Probe features to the projector, one label per point (tabs and line breaks in
    a label become spaces, an empty label ``?``: the projector reads TSV lines)."""
    import torch

    features = np.asarray(embedding.features)
    n = features.shape[0]
    if features.ndim != 2 or len(embedding.labels) != n or len(embedding.thumbnails) != n:
        raise InvalidInputError(
            f"the embedding of layer {embedding.layer!r} has features {features.shape}, "
            f"{len(embedding.labels)} labels and {len(embedding.thumbnails)} thumbnails; "
            "give (N, D) features and one label and thumbnail per row"
        )
    labels = [" ".join(label.split()) or "?" for label in embedding.labels]
    thumbnails = torch.from_numpy(np.asarray(embedding.thumbnails, dtype=np.float32))
    writer.add_embedding(
        features, metadata=labels, label_img=thumbnails, global_step=0, tag=embedding.layer
    )
