"""Round-trip checks for findings in words: every number a sentence shows is in the result's JSON.

Use :func:`assert_round_trip` on a result's ``describe()`` and its
``to_jsonable(result)``: it parses every number out of the text (English AND Chinese by
default) and checks that each one equals, to the precision it is shown with, a number in
the JSON (a percentage ``62%`` matches a JSON value ``v`` with ``|100 v - 62| <= 0.5``).
It also checks that every numeric value a finding carries is itself a JSON number (to
float32 precision), so a derived number cannot hide behind rounding.

Names the result holds (file names, class labels, layer names such as ``blocks.5``) may
contain digits: string values of the findings that are also strings in the JSON are
removed from the text before parsing; pass anything else to ``ignore``.

Example
-------
>>> from words_helpers import assert_round_trip
>>> assert_round_trip(result.describe(), to_jsonable(result))
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Shown",
    "assert_numbers_in",
    "assert_round_trip",
    "assert_values_in",
    "json_numbers",
    "json_strings",
    "shown_numbers",
    "unmatched",
]

# an optional sign, digits (optionally grouped by commas), decimals, exponent, percent sign
_NUMBER = re.compile(
    r"(?P<sign>[-−])?"
    r"(?P<int>\d{1,3}(?:,\d{3})+(?!\d)|\d+)"
    r"(?:\.(?P<frac>\d+))?"
    r"(?:[eE](?P<exp>[-+]?\d+))?"
    r"(?P<pct>%)?"
)


@dataclass(frozen=True)
class Shown:
    """A number as the text shows it.

    ``value`` is what is shown (a percentage as shown: ``62%`` → 62.0), ``tolerance`` half
    a unit of the last digit shown (scaled by the exponent), ``percent`` whether it carried
    a ``%`` sign.
    """

    text: str
    value: float
    tolerance: float
    percent: bool

    def matches(self, number: float) -> bool:
        """Whether ``number`` (a JSON value; a fraction when the text shows a percent)
        displays as this number."""
        target = 100.0 * number if self.percent else number
        slack = 1e-9 * max(1.0, abs(target))  # binary rounding of the JSON value itself
        return abs(target - self.value) <= self.tolerance + slack


def shown_numbers(text: str) -> list[Shown]:
    """Every number in ``text`` (ints, decimals, ``1,234``, ``1.2e-05``, ``62%``, a minus sign).

    A ``-`` is a minus sign only when it does not follow a letter or digit (``top-left``,
    ``3-5`` are not negative numbers).
    """
    shown = []
    for m in _NUMBER.finditer(text):
        sign = m.group("sign")
        start = m.start()
        if sign and start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_"):
            sign = None  # a hyphen, not a minus sign
        digits = m.group("int").replace(",", "")
        frac = m.group("frac") or ""
        exp = int(m.group("exp") or 0)
        value = float(f"{digits}.{frac or '0'}") * 10.0**exp
        if sign:
            value = -value
        tolerance = 0.5 * 10.0 ** (exp - len(frac))
        text_shown = m.group(0) if sign or not m.group("sign") else m.group(0)[1:]
        shown.append(Shown(text_shown, value, tolerance, m.group("pct") is not None))
    return shown


def _leaves(data: Any) -> Iterator[Any]:
    if isinstance(data, dict):
        for v in data.values():
            yield from _leaves(v)
    elif isinstance(data, (list, tuple)):
        for v in data:
            yield from _leaves(v)
    else:
        yield data


def json_numbers(data: Any) -> list[float]:
    """Every number (not bool) in a JSON value, flattened."""
    return [
        float(v) for v in _leaves(data) if isinstance(v, (int, float)) and not isinstance(v, bool)
    ]


def json_strings(data: Any) -> set[str]:
    """Every string leaf in a JSON value (and every key)."""
    out = {v for v in _leaves(data) if isinstance(v, str)}

    def keys(d: Any) -> None:
        if isinstance(d, dict):
            out.update(str(k) for k in d)
            for v in d.values():
                keys(v)
        elif isinstance(d, (list, tuple)):
            for v in d:
                keys(v)

    keys(data)
    return out


def _strip(text: str, ignore: Iterable[str]) -> str:
    for name in sorted({s for s in ignore if s}, key=len, reverse=True):  # longest first
        text = text.replace(name, " ")
    return text


def unmatched(text: str, data: Any, ignore: Iterable[str] = ()) -> list[Shown]:
    """The numbers of ``text`` (after removing ``ignore`` strings) that no JSON number shows."""
    numbers = json_numbers(data)
    return [s for s in shown_numbers(_strip(text, ignore)) if not any(map(s.matches, numbers))]


def assert_numbers_in(text: str, data: Any, ignore: Iterable[str] = ()) -> None:
    """Fail, naming them, when some number of ``text`` is not a number of ``data``."""
    missing = unmatched(text, data, ignore)
    assert not missing, (
        f"numbers shown but not in the JSON: {[s.text for s in missing]}\ntext: {text}"
    )


def _findings(description: Any) -> Sequence[Any]:
    return tuple(getattr(description, "findings", ()))


def assert_values_in(description: Any, data: Any) -> None:
    """Every int/float value of every finding equals a JSON number (float32 precision)."""
    numbers = json_numbers(data)
    for finding in _findings(description):
        for name, value in finding.values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            ok = any(math.isclose(value, n, rel_tol=1e-6, abs_tol=1e-12) for n in numbers)
            assert ok, f"{finding.key}: value {name}={value!r} is not a number of the JSON"


def assert_round_trip(
    description: Any,
    data: Any,
    *,
    langs: Sequence[str] = ("en", "zh"),
    ignore: Iterable[str] = (),
    require_numbers: bool = True,
) -> None:
    """Every number of ``description``'s text, in each of ``langs``, is a number of ``data``.

    Parameters
    ----------
    description
        A :class:`seethrough.words.Description` (anything with ``.text(lang)``; its
        ``findings`` are used when present).
    data
        The result's JSON (``to_jsonable(result)``) or any JSON value holding its numbers.
    langs
        Languages to check.
    ignore
        Extra strings to remove before parsing (names with digits that the JSON lacks).
    require_numbers
        Also fail when the text shows no number at all (a check that checked nothing).
    """
    names = set(ignore)
    strings = json_strings(data)
    for finding in _findings(description):
        names.update(v for v in finding.values.values() if isinstance(v, str) and v in strings)
    assert_values_in(description, data)
    for lang in langs:
        text = description.text(lang)
        assert_numbers_in(text, data, names)
        if require_numbers:
            assert shown_numbers(_strip(text, names)), f"no number in the {lang} text: {text}"
