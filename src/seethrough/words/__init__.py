"""Words: findings in plain language, from templates, in English and Simplified Chinese.

Result types build their ``describe()`` from :class:`Finding` objects; this package holds
the sentence model (:mod:`~seethrough.words.findings`), the templates
(:mod:`~seethrough.words.catalogue`) and external knowledge (WordNet). It imports no torch.
"""

from .findings import (
    CLAIMS,
    LANGUAGES,
    Claim,
    Description,
    Finding,
    Term,
    Value,
    catalogue,
    render,
)

__all__ = [
    "CLAIMS",
    "LANGUAGES",
    "Claim",
    "Description",
    "Finding",
    "Term",
    "Value",
    "catalogue",
    "render",
]
