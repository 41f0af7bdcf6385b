"""Decompose a prediction and the network: which channels carry a decision's relevance
(concept relevance), and the smallest sub-network that keeps a class's decisions
(class circuits). LRP, DeepLIFT and DeepSHAP are attribution methods
(``st.explain(net, x, "lrp")``); their rule engines live in :mod:`seethrough.core`."""

from __future__ import annotations

from .circuit import ABLATIONS, Circuit, CircuitOverlap, CircuitScore, circuit, circuit_overlap
from .concepts import RANKS, ConceptRelevance, concepts

__all__: list[str] = [
    "ABLATIONS",
    "RANKS",
    "Circuit",
    "CircuitOverlap",
    "CircuitScore",
    "ConceptRelevance",
    "circuit",
    "circuit_overlap",
    "concepts",
]
