"""Image-level tag scores: does a photo show a garment of each type, as its tags say?

A photo *shows* a type when a garment of that type is predicted with a score of at least the threshold (0.5 by
default, :data:`TAG_CONF`). Over every (photo, type) pair of the label set's types, a pair is a true positive when
the type is both tagged and shown, a false positive when shown only, a false negative when tagged only. Precision,
recall and F1 are micro-averaged over all pairs, and given per type. Every photo of the tag file counts, those
without a garment tag too (a garment shown there is a false positive), and an unpredicted photo shows nothing.
On a partially tagged photo (a ``complete: false`` tag, :mod:`fashion2stage.formats.tags`) a type its tags do not
name is unknown: showing it is no false positive, so such a photo adds true positives and false negatives only.
"""
from __future__ import annotations

TAG_CONF = 0.5


def _prf(tp: int, fp: int, fn: int) -> dict:
    p = tp / (tp + fp) if tp + fp else None
    r = tp / (tp + fn) if tp + fn else None
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
    return {"precision": p, "recall": r, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


def tag_report(tagged: list[set[str]], shown: list[set[str]], types: list[str]) -> dict:
    """Micro-averaged and per-type precision / recall / F1 of ``shown`` (per photo, the types predicted) against
    ``tagged`` (per photo, the types its tags name), over ``types``."""
    if len(tagged) != len(shown):
        raise ValueError(f"{len(tagged)} tagged photos against {len(shown)} predicted ones")
    per = {t: [0, 0, 0] for t in types}
    for want, got in zip(tagged, shown):
        for t in types:
            c = per[t]
            c[0] += t in want and t in got
            c[1] += t in got and t not in want
            c[2] += t in want and t not in got
    total = [sum(c[i] for c in per.values()) for i in range(3)]
    return {**_prf(*total), "n_photos": len(tagged), "per_type": {t: _prf(*c) for t, c in per.items()}}


def score_tags(dataset, garments: dict[str, list], conf: float = TAG_CONF) -> dict:
    """:func:`tag_report` of a tag ``dataset`` (:func:`fashion2stage.formats.tags.read_tags`) against predicted
    ``garments`` per ``ImageRecord.file`` (anything with ``type`` and ``score``; a photo absent shows nothing),
    counting garments scoring at least ``conf``."""
    from fashion2stage.formats.tags import fully_tagged, tagged_types  # noqa: PLC0415

    tagged = [tagged_types(r, dataset.tags) for r in dataset.records]
    shown = [{g.type for g in garments.get(r.file, []) if g.score >= conf} for r in dataset.records]
    shown = [s if fully_tagged(r, dataset.tags) else s & t for r, s, t in zip(dataset.records, shown, tagged)]
    return {"conf": conf, **tag_report(tagged, shown, dataset.labels.garment_types),
            "photos_without_prediction": sum(1 for r in dataset.records if r.file not in garments)}
