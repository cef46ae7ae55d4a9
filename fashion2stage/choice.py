"""Which garment answers an image-level question: the one rule shared by ``predict`` and training on boxless labels.

For an attribute key, the image-level answer comes from the highest-scoring detected garment whose type carries
that key (LabelSet.attribute_types); when no such garment was found, from the whole image.
"""
from __future__ import annotations

from fashion2stage.labels import LabelSet
from fashion2stage.records import Garment


def choose_garment(garments: list[Garment], key: str, labels: LabelSet) -> int | None:
    """Index into ``garments`` of the garment that answers ``key`` for the image; None means "use the whole image"."""
    types = set(labels.types_for_key(key))
    best, best_score = None, float("-inf")
    for i, g in enumerate(garments):
        if g.type in types and g.score > best_score:
            best, best_score = i, g.score
    return best
