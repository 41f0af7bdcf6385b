"""Findings: sentences built from templates, every number taken from a result.

A :class:`Finding` is one sentence *as data*: a template key, the values it shows and
where its evidence lives. Its text is made by :func:`render` from the catalogue of a
language (:data:`LANGUAGES`), so English and Simplified Chinese say the same thing with
the same numbers. Every value a finding shows is a field of the result's JSON (or a
:class:`Term`, a word that is translated), so every number in the text can be traced back.

How strongly a finding may be said follows the evidence (``claim``):

* ``"finding"`` — the evidence supports it (e.g. a method that passed its sanity check);
* ``"hedged"`` — shown, but with the evidence that it is not confirmed (not checked, or
  inconclusive, or not significant);
* ``"unreliable"`` — the evidence says the method or measurement cannot be trusted here
  (a failed sanity check): the sentence says so and makes no claim about the image;
* ``"note"`` — context, not a claim (settings, external knowledge such as WordNet).
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import InvalidOptionError
from .catalogue import CATALOGUES

__all__ = [
    "CLAIMS",
    "LANGUAGES",
    "Claim",
    "Description",
    "Finding",
    "Term",
    "Value",
    "catalogue",
    "fill",
    "render",
]

Claim = Literal["finding", "hedged", "unreliable", "note"]
CLAIMS: tuple[Claim, ...] = ("finding", "hedged", "unreliable", "note")

LANGUAGES: tuple[str, ...] = ("en", "zh")
"""Languages with a full catalogue: English and Simplified Chinese."""


@dataclass(frozen=True)
class Term:
    """A word or phrase shown in the reader's language: a catalogue key (``"region.top-left"``)."""

    key: str


Value = str | int | float | Term


@dataclass(frozen=True)
class Finding:
    """One sentence as data.

    Parameters
    ----------
    key : str
        The template's key in every language's catalogue (``"explanation.focus"``).
    values : Mapping[str, Value]
        The fields the template shows. Numbers are the result's own values (a share as
        a fraction; the template formats it as a percentage); names (method, class, file)
        are plain strings, shown as given; a :class:`Term` is translated.
    evidence : str
        Where the evidence is: a dotted path into the result's JSON (``"verdicts.grad_cam"``)
        or, in a report, the id of the section that shows it.
    claim : Claim
        How strongly the sentence may be said (module docstring).
    """

    key: str
    values: Mapping[str, Value] = field(default_factory=dict)
    evidence: str = ""
    claim: Claim = "finding"

    def __post_init__(self) -> None:
        if self.claim not in CLAIMS:
            raise InvalidOptionError(f"unknown claim {self.claim!r} (valid: {', '.join(CLAIMS)})")

    def text(self, lang: str = "en") -> str:
        """The sentence in ``lang`` (:data:`LANGUAGES`)."""
        return render(self, lang)

    def to_dict(self, lang: str = "en") -> dict[str, Any]:
        """JSON form: key, claim, evidence, values (terms as their keys) and the text."""
        values = {k: (v.key if isinstance(v, Term) else v) for k, v in self.values.items()}
        return {
            "key": self.key,
            "claim": self.claim,
            "evidence": self.evidence,
            "values": values,
            "text": self.text(lang),
        }


@dataclass(frozen=True)
class Description:
    """What a result says in words: its findings, most important first.

    ``str(description)`` is the English text; :meth:`text` takes a language.
    """

    subject: str
    findings: tuple[Finding, ...]

    def sentences(self, lang: str = "en") -> list[str]:
        """One sentence per finding, in ``lang``."""
        return [f.text(lang) for f in self.findings]

    def text(self, lang: str = "en") -> str:
        """The findings as one paragraph."""
        return (" " if lang == "en" else "").join(self.sentences(lang))

    def to_dict(self, lang: str = "en") -> dict[str, Any]:
        """JSON form: the subject and each finding's :meth:`Finding.to_dict`."""
        return {"subject": self.subject, "findings": [f.to_dict(lang) for f in self.findings]}

    def __str__(self) -> str:
        return self.text("en")


def catalogue(lang: str) -> Mapping[str, str]:
    """Every template of ``lang``: key → template (``str.format`` syntax with ``{name:spec}``).

    Besides Python's format specs, ``{share:%}`` shows a fraction as a whole percentage
    (``0.623`` → ``62%``) and ``{share:.1%}`` with one decimal.
    """
    if lang not in CATALOGUES:
        raise InvalidOptionError(f"unknown language {lang!r} (valid: {', '.join(LANGUAGES)})")
    return CATALOGUES[lang]


class _Formatter(string.Formatter):
    def __init__(self, lang: str) -> None:
        self.lang = lang
        self.words = catalogue(lang)

    def format_field(self, value: Any, format_spec: str) -> str:
        if isinstance(value, Term):
            return self.words[value.key]
        if format_spec == "%":
            format_spec = ".0%"
        return super().format_field(value, format_spec)


def render(finding: Finding, lang: str = "en") -> str:
    """The sentence of ``finding`` in ``lang``.

    Raises
    ------
    InvalidOptionError
        For an unknown language.
    KeyError
        When the catalogue lacks the finding's key or the template names a value the
        finding does not have (a bug: a test checks every key in every language).
    """
    return fill(catalogue(lang)[finding.key], finding.values, lang)


def fill(template: str, values: Mapping[str, Value], lang: str = "en") -> str:
    """``template`` (``str.format`` syntax, the ``{x:%}`` spec, :class:`Term` values)
    filled with ``values`` in ``lang``: what :func:`render` does with a catalogue's
    template, for texts that are not findings (a page's headings and notes).

    In Chinese, the template's space next to a value is dropped when the value and the
    text beside it are both Chinese characters (:func:`_close_gaps`).
    """
    formatter = _Formatter(lang)
    values = dict(values)
    pieces: list[tuple[str, bool]] = []  # (text, whether it is a value)
    for literal, name, spec, conversion in formatter.parse(template):
        if literal:
            pieces.append((literal, False))
        if name is not None:
            value, _ = formatter.get_field(name, (), values)
            value = formatter.convert_field(value, conversion)
            pieces.append((formatter.format_field(value, spec or ""), True))
    if lang in _UNSPACED:
        pieces = _close_gaps(pieces)
    return "".join(text for text, _ in pieces)


_UNSPACED = ("zh",)
"""Languages written without spaces between words (see :func:`_close_gaps`)."""

_WIDE = re.compile(
    "[\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef]"
)
"""CJK characters and CJK (full-width) punctuation."""


def _wide(char: str) -> bool:
    return _WIDE.fullmatch(char) is not None


def _close_gaps(pieces: list[tuple[str, bool]]) -> list[tuple[str, bool]]:
    """Drop the template's space between a value and the text next to it when both sides
    are Chinese characters (``梯度 解释`` → ``梯度解释``).

    A Chinese template puts a space on each side of a value, since the value may be a
    Latin name or a number (``Grad-CAM 解释``, ``前 10% 的像素``: Chinese technical text
    keeps a space between Chinese and Latin or digits); when the value turns out to be
    Chinese (a translated method name, 积分梯度), that space is wrong. Only the template's
    own spaces are dropped, never a space inside a value (a user's label stays as given).
    """
    texts = [text for text, _ in pieces]
    for i, (_, is_value) in enumerate(pieces):
        value = texts[i]
        if not is_value or not value:
            continue
        if i > 0 and not pieces[i - 1][1] and texts[i - 1].endswith(" "):
            before = "".join(texts[:i])
            if len(before) >= 2 and _wide(before[-2]) and _wide(value[0]):
                texts[i - 1] = texts[i - 1][:-1]
        if i + 1 < len(pieces) and not pieces[i + 1][1]:
            after = texts[i + 1]
            if after.startswith(" ") and len(after) >= 2 and _wide(value[-1]) and _wide(after[1]):
                texts[i + 1] = after[1:]
    return [(text, is_value) for text, (_, is_value) in zip(texts, pieces, strict=True)]
