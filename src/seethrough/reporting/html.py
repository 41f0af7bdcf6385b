"""HTML pages through jinja2 templates: one base page, every text autoescaped.

:func:`render` fills a template of ``seethrough/reporting/templates/`` (all extend
``base.html.j2``); :func:`data_uri` inlines a PNG so a page is one self-contained file;
:data:`CSP` is the content-security policy of such a page (it may fetch nothing at all),
:data:`FOLDER_CSP` that of a page that shows the PNG files next to it (the job pages).
No page holds JavaScript.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import quote

import jinja2

from .._version import __version__

__all__ = [
    "CSP",
    "FOLDER_CSP",
    "PAGE",
    "RELOAD_SECONDS",
    "ImageSection",
    "PageFigure",
    "PageTable",
    "data_uri",
    "file_url",
    "number",
    "render",
    "render_index",
    "render_job_page",
    "words_table",
]

CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'"
)
"""Content-security policy of a self-contained page: no script, no fetch of any kind;
images only as ``data:`` URIs, styles only inline."""

FOLDER_CSP = (
    "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'"
)
"""Content-security policy of a page that shows image files of its own folder (``'self'``)."""

PAGE = "index.html"
"""The file name of a job's page."""

RELOAD_SECONDS = 15
"""How often a partial report's page reloads itself."""


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("seethrough.reporting", "templates"),
        autoescape=True,  # every template, whatever its extension
        undefined=jinja2.StrictUndefined,  # a misspelt name fails instead of printing nothing
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["file_url"] = file_url
    return env


def render(template: str, /, **context: Any) -> str:
    """Fill the template ``template`` (a file name in ``reporting/templates/``).

    Every value is HTML-escaped where it is shown (autoescaping); only ``jinja2``'s
    ``Markup`` passes unescaped. Defaults (override by passing them): ``lang="en"`` (the
    page's ``lang`` attribute), ``csp=CSP``, ``refresh=None`` (seconds after which the page
    reloads itself), ``status=None`` (a notice at the top), ``version`` (seethrough's).

    Raises
    ------
    jinja2.TemplateNotFound
        No such template.
    jinja2.UndefinedError
        The template uses a name that ``context`` does not give.
    """
    defaults: dict[str, Any] = {
        "lang": "en",
        "csp": CSP,
        "refresh": None,
        "status": None,
        "version": __version__,
    }
    return _environment().get_template(template).render({**defaults, **context})


def data_uri(png: bytes) -> str:
    """A PNG as a ``data:image/png;base64,...`` URI, to inline it in a page (or a CSP-safe
    ``<img src>``).

    Raises
    ------
    ValueError
        ``png`` is not PNG data (checked by its 8-byte signature).
    """
    if not bytes(png[:8]) == b"\x89PNG\r\n\x1a\n":
        raise ValueError(
            "data_uri: expected PNG bytes (they start with b'\\x89PNG'); "
            "encode the figure as PNG first (matplotlib: figure.savefig(buffer, format='png'))"
        )
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def file_url(name: str) -> str:
    """A relative file name as a URL path: percent-encoded (``#``, ``?``, ``%``, spaces)."""
    return quote(name)


@dataclass(frozen=True)
class ImageSection:
    """One explained image: its figure and what the model predicted."""

    name: str
    source: str
    figure: str  # file name of the PNG, relative to index.html
    predictions: Sequence[tuple[str, float]]  # (class, probability), best first
    targets: Sequence[str]
    notes: Sequence[str]


def render_index(
    title: str,
    sections: Sequence[ImageSection],
    run_info: Mapping[str, object],
    method_info: Sequence[tuple[str, str]],
    status: str | None = None,
    *,
    running: bool = True,
) -> str:
    """The explain job's page: run settings, then per image its predictions, targets and figure.

    ``status``, when given, says the report is partial (shown at the top); while the run
    is ``running`` the page then reloads itself every :data:`RELOAD_SECONDS` seconds, to
    show the next step's results.
    """
    return render(
        "explain.html.j2",
        title=title,
        sections=sections,
        run_info=run_info,
        method_info=method_info,
        status=status,
        refresh=RELOAD_SECONDS if status and running else None,
        csp=FOLDER_CSP,
    )


def number(value: object, digits: int = 3) -> str:
    """A JSON number for a table cell: ``digits`` decimals (integers as they are); ``None``
    (how the JSON writes a NaN or a missing value) as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text  # no "-0.000"


@dataclass(frozen=True)
class PageTable:
    """A table of a job page: ``rows`` of cells (already formatted: see :func:`number`);
    ``numeric`` the indices of number columns (right-aligned); ``id`` its anchor."""

    id: str
    title: str
    header: Sequence[str]
    rows: Sequence[Sequence[object]]
    note: str = ""
    numeric: Sequence[int] = ()


@dataclass(frozen=True)
class PageFigure:
    """A PNG file of a job's folder, with its text alternative (what it shows)."""

    file: str
    alt: str
    caption: str = ""


def words_table(findings: Iterable[Mapping[str, Any]]) -> PageTable:
    """The "In words" table of a job page: each ``describe()`` sentence, as the job's JSON
    holds it (``{"claim", "text", ...}``), with how strongly it may be said."""
    return PageTable(
        "words",
        "In words",
        ["claim", "sentence"],
        [[f["claim"], f["text"]] for f in findings],
        note='Each sentence is in the JSON summary\'s "description", with the numbers it '
        'states and the field they come from ("evidence").',
    )


def render_job_page(
    title: str,
    settings: Mapping[str, object],
    summary_file: str,
    *,
    tables: Sequence[PageTable] = (),
    figures: Sequence[PageFigure] = (),
    intro: str = "",
) -> str:
    """The ``index.html`` of a job that writes figures and a JSON summary (sanity, anatomy,
    features): its settings, tables of numbers from ``summary_file`` and its figures, which
    stay PNG files next to the page (policy :data:`FOLDER_CSP`)."""
    return render(
        "job.html.j2",
        title=title,
        settings=settings,
        summary_file=summary_file,
        tables=tables,
        figures=figures,
        intro=intro,
        csp=FOLDER_CSP,
    )
