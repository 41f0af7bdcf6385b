"""A simple, self-contained ``index.html`` for an explain run. Every text is escaped."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

__all__ = ["RELOAD_SECONDS", "ImageSection", "render_index"]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}
h1{font-size:1.5em} h2{font-size:1.15em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:left;font-size:.9em} th{background:#f3f3f3}
img{max-width:100%;border:1px solid #ddd} .note{color:#555;font-size:.9em}
code{background:#f3f3f3;padding:0 .2em}
.status{background:#fff4d6;border:1px solid #e0c060;padding:.5em .8em}
"""

RELOAD_SECONDS = 15
"""How often a partial report's page reloads itself."""


@dataclass(frozen=True)
class ImageSection:
    """One explained image: its figure and what the model predicted."""

    name: str
    source: str
    figure: str  # file name of the PNG, relative to index.html
    predictions: Sequence[tuple[str, float]]  # (class, probability), best first
    targets: Sequence[str]
    notes: Sequence[str]


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _url(path: str) -> str:
    """A relative file name as an attribute value: percent-encoded, then escaped."""
    return _e(quote(path))


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_index(
    title: str,
    sections: Sequence[ImageSection],
    run_info: Mapping[str, object],
    method_info: Sequence[tuple[str, str]],
    status: str | None = None,
    *,
    running: bool = True,
) -> str:
    """The page: run settings, then per image its predictions, targets and figure.

    ``status``, when given, says the report is partial (shown at the top); while the run
    is ``running`` the page then reloads itself every :data:`RELOAD_SECONDS` seconds, to
    show the next step's results.
    """
    refresh = f'<meta http-equiv="refresh" content="{RELOAD_SECONDS}">'
    reload = refresh if status and running else ""
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8">{reload}',
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        *([f"<p class='status'>{_e(status)}</p>"] if status else []),
        _table(["setting", "value"], list(run_info.items())),
        "<p class='note'>Each heatmap has its own colour bar, in the method's raw units; "
        "its range is a high percentile of the map's absolute values, and larger values are "
        "clipped. Signed methods: red is evidence for the target, blue against. Magnitude "
        "methods: brighter is larger. Raw numbers are in "
        "<code>attributions.safetensors</code>, the run in <code>summary.json</code>.</p>",
        _table(["method", "what it shows"], method_info),
    ]
    for section in sections:
        source = f"<span class='note'>({_e(section.source)})</span>"
        parts.append(f"<h2>{_e(section.name)} {source}</h2>")
        parts.append(
            _table(
                ["top predictions", "probability"],
                [(name, f"{p:.3f}") for name, p in section.predictions],
            )
        )
        parts.append(f"<p>Explained: {_e(', '.join(section.targets))}</p>")
        parts.extend(f"<p class='note'>{_e(note)}</p>" for note in section.notes)
        parts.append(f'<img src="{_url(section.figure)}" alt="{_e(section.name)} explanations">')
    parts.append("</body></html>")
    return "\n".join(parts)
