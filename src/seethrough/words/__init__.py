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
from .names import method_term
from .predictions import CLOSE_RATIO, SIBLING_STEPS, describe_predictions
from .wordnet import (
    Synset,
    WordNet,
    WordNetNotFoundError,
    find_wordnet,
    imagenet_wnid,
    imagenet_wnids,
)

__all__ = [
    "CLAIMS",
    "CLOSE_RATIO",
    "LANGUAGES",
    "SIBLING_STEPS",
    "Claim",
    "Description",
    "Finding",
    "Synset",
    "Term",
    "Value",
    "WordNet",
    "WordNetNotFoundError",
    "catalogue",
    "describe_predictions",
    "find_wordnet",
    "imagenet_wnid",
    "imagenet_wnids",
    "method_term",
    "render",
]
