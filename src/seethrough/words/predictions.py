"""Top-k predictions in words, with WordNet's knowledge of ImageNet classes.

The rule for a confusion: the top two classes are *close* when the runner-up's
probability is at least half the top one's (:data:`CLOSE_RATIO`). For ImageNet classes
with WordNet available, a close pair is explained as *siblings* when their lowest common
hypernym is at most :data:`SIBLING_STEPS` steps above each ("tabby" and "tiger cat" are
both a *domestic cat*); a pair that meets only higher up ("whole", "object") is reported
as close, without a parent, since a distant common ancestor explains nothing.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import InvalidInputError
from .findings import Claim, Description, Finding, catalogue
from .wordnet import WordNet, find_wordnet, imagenet_wnid

__all__ = ["CLOSE_RATIO", "SIBLING_STEPS", "describe_predictions"]

CLOSE_RATIO = 0.5
"""The top two are close when ``p2 >= CLOSE_RATIO * p1``."""

SIBLING_STEPS = 3
"""Two close classes are called siblings when their common hypernym is at most this many
steps above each of them."""

CHAIN_LENGTH = 3
"""How many hypernyms a gloss sentence names (nearest first)."""


def describe_predictions(
    predictions: Sequence[Mapping[str, Any]],
    lang: str = "en",
    *,
    imagenet: bool = False,
    wordnet: WordNet | str | os.PathLike[str] | None = None,
) -> Description:
    """The top-k predictions in words.

    Parameters
    ----------
    predictions : sequence of mapping
        The top classes, most likely first, each ``{"index": int, "label": str,
        "probability": float}`` (as in a report's JSON). Every number shown is one of these.
    lang : str
        Checked to be a language of the catalogue (the text is made in any language by
        :meth:`Description.text`).
    imagenet : bool
        Whether the indices are ImageNet (ILSVRC-2012) classes: then WordNet's gloss and
        hypernyms describe the top class (and the runner-up of a close pair), and a close
        pair may be explained as siblings (module docstring).
    wordnet : WordNet or path, optional
        The database (or its folder) to use; default :func:`find_wordnet`. When it is not
        installed, a note says so and the rest is described as usual.

    Returns
    -------
    Description
        Subject ``"predictions"``; evidence paths ``"predictions.<rank>"``.

    Raises
    ------
    InvalidInputError
        When ``predictions`` is empty, an entry lacks a field, a probability is not in
        [0, 1], or they are not sorted most likely first.
    """
    catalogue(lang)  # unknown language: InvalidOptionError
    rows = _checked(predictions)
    findings = [_ranked("predictions.top", rows[0], 0, "finding")]
    findings += [_ranked("predictions.next", row, i, "note") for i, row in enumerate(rows[1:], 1)]
    net = None
    if imagenet:
        net = wordnet if isinstance(wordnet, WordNet) else find_wordnet(wordnet)
        if net is None:
            findings.append(Finding("predictions.wordnet_missing", {}, "predictions", "note"))
    close = len(rows) > 1 and rows[1]["probability"] >= CLOSE_RATIO * rows[0]["probability"]
    if close:
        findings.append(_confusion(rows[0], rows[1], net))
    if net is not None:
        for rank in range(2 if close else 1):
            findings.append(_gloss(rows[rank], rank, net))
    return Description("predictions", tuple(findings))


def _checked(predictions: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    rows = list(predictions)
    if not rows:
        raise InvalidInputError("no predictions to describe: pass at least the top class")
    for i, row in enumerate(rows):
        missing = [k for k in ("index", "label", "probability") if k not in row]
        if missing:
            raise InvalidInputError(f"prediction {i} lacks {', '.join(missing)}")
        if isinstance(row["index"], bool) or not isinstance(row["index"], int):
            raise InvalidInputError(f"prediction {i}: an index is an int, got {row['index']!r}")
        p = row["probability"]
        if not (isinstance(p, (int, float)) and math.isfinite(p) and 0.0 <= p <= 1.0):
            raise InvalidInputError(f"prediction {i}: a probability is in [0, 1], got {p!r}")
    probabilities = [row["probability"] for row in rows]
    if any(b > a for a, b in itertools.pairwise(probabilities)):
        raise InvalidInputError("predictions must be sorted, most likely first")
    return rows


def _ranked(key: str, row: Mapping[str, Any], rank: int, claim: Claim) -> Finding:
    values = {"label": str(row["label"]), "index": row["index"], "probability": row["probability"]}
    return Finding(key, values, f"predictions.{rank}", claim)


def _confusion(first: Mapping[str, Any], second: Mapping[str, Any], net: WordNet | None) -> Finding:
    values: dict[str, Any] = {
        "first": str(first["label"]),
        "first_probability": first["probability"],
        "second": str(second["label"]),
        "second_probability": second["probability"],
    }
    if net is not None:
        common = net.common_hypernym(imagenet_wnid(first["index"]), imagenet_wnid(second["index"]))
        if common is not None and max(common[1], common[2]) <= SIBLING_STEPS:
            values["parent"] = common[0].name
            return Finding("predictions.siblings", values, "predictions", "note")
    return Finding("predictions.close", values, "predictions", "note")


def _gloss(row: Mapping[str, Any], rank: int, net: WordNet) -> Finding:
    wnid = imagenet_wnid(row["index"])
    synset = net.synset(wnid)
    chain = [s.name for s in net.chain(wnid)[:CHAIN_LENGTH]]
    values = {"label": str(row["label"]), "gloss": synset.gloss, "chain": " → ".join(chain)}
    key = "predictions.gloss" if chain else "predictions.gloss.root"
    return Finding(key, values, f"predictions.{rank}", "note")
