"""Scores for class-folder sets (one item per photo, no boxes): did the model find the right garment type, and
did it find nothing on photos of things that are not garments?

- **top-type accuracy**: over photos of a garment class, the share whose highest-scoring garment has the class's
  type. A photo where nothing was found counts as wrong.
- **no-garment rate**: over photos of a "no garment" class (hats, shoes), the share where nothing was found.
- **six-way accuracy**: over all photos, the answer "the top garment's type, or none" against the label
  (five types + none): the number a plain whole-photo classifier is compared on.
The confusion matrix is over ``types + ["none"]``, rows the label, columns the answer. Garments are filtered by
score before this (``predict``'s operating threshold), so "found" means what a user sees.

- **attribute accuracy** (:func:`attribute_accuracy`): where the mapping file ties a class to an attribute value
  (``t-shirt`` means short sleeves), the share of that class's photos whose top garment answers that value. A photo
  where nothing was found, or whose top garment's type does not carry the key, counts as wrong.
"""
from __future__ import annotations

import numpy as np

from fashion2stage.records import ImageRecord

NONE = "none"


def top_type(garments) -> str:
    """The type of the highest-scoring garment, or ``"none"``."""
    return max(garments, key=lambda g: g.score).type if garments else NONE


def type_report(truth: list[ImageRecord], predicted: list[ImageRecord], types: list[str]) -> dict:
    """Scores of ``predicted`` (garments per image, paired with ``truth`` by file) on a class-folder set."""
    by_file = {p.file: p for p in predicted}
    missing = [r.file for r in truth if r.file not in by_file]
    if missing:
        raise ValueError(f"{len(missing)} labelled photo(s) have no prediction, e.g. {missing[0]}")
    names = list(types) + [NONE]
    cm = np.zeros((len(names), len(names)), dtype=np.int64)
    per_class: dict[str, list[int]] = {}
    for r in truth:
        want = r.item_type or NONE
        got = top_type(by_file[r.file].garments)
        cm[names.index(want), names.index(got) if got in names else names.index(NONE)] += 1
        hit = per_class.setdefault(r.image_class or want, [0, 0])
        hit[0] += int(got == want)
        hit[1] += 1
    garment = cm[:-1].sum()
    negative = cm[-1].sum()
    return {
        "type_accuracy": float(np.trace(cm[:-1, :-1]) / garment) if garment else None,
        "no_garment_rate": float(cm[-1, -1] / negative) if negative else None,
        "six_way_accuracy": float(np.trace(cm) / cm.sum()) if cm.sum() else None,
        "n_garment_photos": int(garment), "n_negative_photos": int(negative),
        "per_class_accuracy": {c: h / n for c, (h, n) in sorted(per_class.items())},
        "labels": names, "confusion_matrix": cm.tolist(),
    }


def attribute_accuracy(wanted: list[dict[str, str]], answered: list[dict[str, str]]) -> dict:
    """Per attribute key: over the photos whose label names a value for it (``wanted[i]``: key -> value name), the
    share whose top garment answered that value (``answered[i]``: key -> value; missing: wrong). Keys in label
    order of first appearance; ``{key: {"accuracy", "n"}}``."""
    if len(wanted) != len(answered):
        raise ValueError(f"{len(wanted)} labels against {len(answered)} answers")
    hits: dict[str, list[int]] = {}
    for want, got in zip(wanted, answered):
        for k, v in want.items():
            h = hits.setdefault(k, [0, 0])
            h[0] += int(got.get(k) == v)
            h[1] += 1
    return {k: {"accuracy": h / n, "n": n} for k, (h, n) in hits.items()}
