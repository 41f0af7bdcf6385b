"""External knowledge about ImageNet classes from WordNet: glosses and hypernyms.

Reads the noun database of Princeton WordNet 3.0 as Debian's ``wordnet-base`` installs it
(``/usr/share/wordnet/data.noun``); the folder can be given as an argument or by the
environment variable ``SEETHROUGH_WORDNET``. ImageNet's class ids are WordNet 3.0 noun
offsets (``n02123045`` is the synset at byte 2123045 of ``data.noun``), so a class is
read with one seek, without loading the database.

ImageNet class index → WordNet id comes from the shipped ``imagenet_wnids.txt``, a copy
of timm's ``timm/data/_info/imagenet_synsets.txt`` (timm 1.0.31, Apache-2.0): the 1000
ILSVRC-2012 synsets in the standard class order (sorted by id). Its order matches
``seethrough/models/imagenet_classes.txt``: 998 of the 1000 labels are a lemma of their
synset, the two others disambiguated names (134 "crane bird" → ``crane``, 639 "maillot
tank suit" → ``maillot, tank suit``); a test checks this on the real database.

References
----------
Miller, G. A. (1995). WordNet: a lexical database for English. Communications of the
ACM 38(11). Database format: ``wndb(5WN)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from ..errors import InvalidOptionError, SeethroughError

__all__ = [
    "DEFAULT_WORDNET",
    "WORDNET_ENV",
    "Synset",
    "WordNet",
    "WordNetNotFoundError",
    "find_wordnet",
    "imagenet_wnid",
    "imagenet_wnids",
]

DEFAULT_WORDNET = Path("/usr/share/wordnet")
"""Where Debian's ``wordnet-base`` installs the database."""

WORDNET_ENV = "SEETHROUGH_WORDNET"
"""The environment variable naming the folder that holds ``data.noun``."""


class WordNetNotFoundError(SeethroughError, FileNotFoundError):
    """The WordNet database is not where it was said to be."""


@dataclass(frozen=True)
class Synset:
    """One WordNet noun synset.

    Attributes
    ----------
    wnid : str
        ``"n"`` and the 8-digit offset (``"n02123045"``), ImageNet's class id.
    lemmas : tuple of str
        Its words, underscores shown as spaces (``("tabby", "tabby cat")``).
    gloss : str
        The definition, without the example sentences that follow it.
    hypernyms : tuple of str
        The wnids of its direct hypernyms (``@``) and instance hypernyms (``@i``).
    """

    wnid: str
    lemmas: tuple[str, ...]
    gloss: str
    hypernyms: tuple[str, ...]

    @property
    def name(self) -> str:
        """Its first lemma."""
        return self.lemmas[0]


class WordNet:
    """The noun database of WordNet 3.0 in a folder (``data.noun``).

    Parameters
    ----------
    folder : path
        The folder holding ``data.noun``.

    Raises
    ------
    WordNetNotFoundError
        When ``folder/data.noun`` does not exist.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.path = self.folder / "data.noun"
        if not self.path.is_file():
            raise WordNetNotFoundError(
                f"no WordNet noun database at {self.path}: install Debian's wordnet-base "
                f"(apt install wordnet-base) or pass the folder that holds data.noun"
            )
        self._cache: dict[str, Synset] = {}

    def synset(self, wnid: str) -> Synset:
        """The noun synset ``wnid`` (``"n02123045"``).

        Raises
        ------
        InvalidOptionError
            When ``wnid`` is not ``"n"`` and 8 digits, or no synset starts at that offset.
        """
        if wnid not in self._cache:
            self._cache[wnid] = self._read(wnid)
        return self._cache[wnid]

    def _read(self, wnid: str) -> Synset:
        if len(wnid) != 9 or wnid[0] != "n" or not wnid[1:].isdigit():
            raise InvalidOptionError(f"a noun synset id is 'n' and 8 digits, got {wnid!r}")
        with self.path.open("rb") as f:
            f.seek(int(wnid[1:]))
            line = f.readline().decode("utf-8", errors="replace")
        if not line.startswith(wnid[1:] + " "):
            raise InvalidOptionError(f"no WordNet noun synset {wnid} in {self.path}")
        return _parse(line)

    def chain(self, wnid: str) -> tuple[Synset, ...]:
        """The hypernym chain above ``wnid``, nearest first, following the first hypernym
        at each step up to the root (``entity``); the synset itself is not included."""
        chain: list[Synset] = []
        current = self.synset(wnid)
        while current.hypernyms and len(chain) < 64:  # WordNet's depth is below 20
            current = self.synset(current.hypernyms[0])
            chain.append(current)
        return tuple(chain)

    def ancestors(self, wnid: str) -> dict[str, int]:
        """Every hypernym of ``wnid`` (all paths) with its distance in steps; the synset
        itself at distance 0."""
        distance = {wnid: 0}
        frontier = [wnid]
        while frontier:
            following = []
            for node in frontier:
                for parent in self.synset(node).hypernyms:
                    if parent not in distance:
                        distance[parent] = distance[node] + 1
                        following.append(parent)
            frontier = following
        return distance

    def common_hypernym(self, a: str, b: str) -> tuple[Synset, int, int] | None:
        """The lowest common hypernym of ``a`` and ``b`` and its distance from each.

        "Lowest" is the common ancestor with the smallest larger distance of the two (then
        the smallest sum; then the smallest id), so ``tabby`` and ``Egyptian cat`` (both
        directly under ``domestic cat``) give ``(domestic cat, 1, 1)``. A synset is its own
        ancestor at distance 0. None when the two share no ancestor.
        """
        up_a, up_b = self.ancestors(a), self.ancestors(b)
        shared = set(up_a) & set(up_b)
        if not shared:
            return None
        best = min(shared, key=lambda s: (max(up_a[s], up_b[s]), up_a[s] + up_b[s], s))
        return self.synset(best), up_a[best], up_b[best]


def _parse(line: str) -> Synset:
    """One line of ``data.noun`` (``wndb(5WN)``): offset, lex file, type, words, pointers."""
    data, _, gloss = line.partition(" | ")
    fields = data.split()
    offset, count = fields[0], int(fields[3], 16)
    lemmas = tuple(fields[4 + 2 * i].replace("_", " ") for i in range(count))
    at = 4 + 2 * count
    pointers = int(fields[at])
    hypernyms = []
    for i in range(pointers):
        symbol, target, pos = fields[at + 1 + 4 * i : at + 4 + 4 * i]
        if symbol in ("@", "@i") and pos == "n":
            hypernyms.append("n" + target)
    definition = gloss.strip().split('; "')[0].strip()
    return Synset("n" + offset, lemmas, definition, tuple(hypernyms))


def find_wordnet(folder: str | os.PathLike[str] | None = None) -> WordNet | None:
    """The WordNet database, or None when it is not installed.

    Parameters
    ----------
    folder : path, optional
        The folder holding ``data.noun``. When given, it must hold it. When not given,
        ``$SEETHROUGH_WORDNET`` is used when set, else :data:`DEFAULT_WORDNET` if it holds
        the database, else None (callers then say WordNet is missing, and go on).

    Raises
    ------
    WordNetNotFoundError
        When ``folder`` or ``$SEETHROUGH_WORDNET`` is given and does not hold
        ``data.noun`` (a setting that is wrong is reported, not ignored).
    """
    if folder is not None:
        return WordNet(folder)
    configured = os.environ.get(WORDNET_ENV)
    if configured:
        try:
            return WordNet(configured)
        except WordNetNotFoundError as error:
            raise WordNetNotFoundError(f"${WORDNET_ENV}: {error}") from None
    if (DEFAULT_WORDNET / "data.noun").is_file():
        return WordNet(DEFAULT_WORDNET)
    return None


@cache
def imagenet_wnids() -> tuple[str, ...]:
    """The WordNet ids of the 1000 ImageNet (ILSVRC-2012) classes, in class-index order."""
    text = resources.files("seethrough.words").joinpath("imagenet_wnids.txt").read_text()
    return tuple(text.split())


def imagenet_wnid(index: int) -> str:
    """The WordNet id of ImageNet class ``index`` (0–999).

    Raises
    ------
    InvalidOptionError
        When ``index`` is not a class index.
    """
    wnids = imagenet_wnids()
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(wnids):
        raise InvalidOptionError(
            f"an ImageNet class index is an int in [0, {len(wnids) - 1}], got {index!r}"
        )
    return wnids[index]
