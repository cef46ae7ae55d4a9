"""Which photos the pipeline reads with its single-item rule: the photo kind (docs/OUTPUT.md, "Photo kind").

By default each photo is judged from the crop of its top garment (the detector's best box at ``conf``, before the
garment check), or from the crop of the whole photo when the detector finds none: the attribute model's photo-kind
head (classifiers/photo_kind.py) gives p(single item) on the crops it reads anyway, and a photo whose p reaches the
head's threshold is read as one item. ``single_item=True`` / ``False`` (--single-item / --multi-item) decide for
every photo instead. Without a head and without a flag every photo is read as before the head existed: multi-item.
"""
from __future__ import annotations

import numpy as np

from fashion2stage.results import PhotoKind
from fashion2stage.roles import MULTI_ITEM, PHOTO_KIND_KEY, PHOTO_KINDS, SINGLE_ITEM


def judge(single_item: bool | None, p_single: float | None, threshold: float | None) -> PhotoKind:
    """The kind of one photo: the flag when given, else the head's ``p_single`` against ``threshold``, else
    multi-item."""
    if single_item is not None:
        return PhotoKind(SINGLE_ITEM if single_item else MULTI_ITEM, p_single, "flag")
    if p_single is None or threshold is None:
        return PhotoKind(MULTI_ITEM, p_single, "default")
    return PhotoKind(SINGLE_ITEM if p_single >= threshold else MULTI_ITEM, p_single, "model")


def p_single_by_image(probs: dict[str, np.ndarray], owners: list[tuple[int, int]]) -> dict[int, float]:
    """Image -> the head's p(single item) on the crop of its top garment: row r of ``probs`` belongs to garment
    ``owners[r]`` = (image, index), index 0 the detector's best. Empty without a photo-kind head."""
    if PHOTO_KIND_KEY not in probs:
        return {}
    col = PHOTO_KINDS.index(SINGLE_ITEM)
    return {i: round(float(probs[PHOTO_KIND_KEY][r, col]), 4) for r, (i, j) in enumerate(owners) if j == 0}
