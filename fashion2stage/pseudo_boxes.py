"""Boxes for photos that have none: class-folder product photos show ONE item of a known type at an unknown place.

Two ways to place the box (``detect-train --pseudo-boxes``, ``classify-train`` for its crops; BENCHMARKS.md
measures which trains the better detector):

- ``foreground``: a class-agnostic box around the largest blob that differs from the border's colours
  (:func:`fashion2stage.foreground.foreground_box`); no model needed.
- ``detector:RUN``: the detector run's top-scoring detection of ANY type, with the type forced to the photo's
  label (the detector often finds the item but calls it by the wrong type: that is what training fixes). Where it
  finds nothing scoring at least ``min_score``, the foreground box is used.

Photos of a "no garment" class (hats, shoes) get no box: they train as background images. The boxes are cached in
a JSON file keyed by image path, so a resumed or repeated run does not recompute them.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from fashion2stage.errors import DataError, ImageReadError
from fashion2stage.foreground import foreground_box
from fashion2stage.images import image_size, load_image
from fashion2stage.io import write_json_atomic
from fashion2stage.records import Dataset, Garment

MIN_SCORE = 0.05


def _cache(path: Path | None) -> dict:
    if path is None or not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}  # a torn cache is recomputed, never trusted


def add_pseudo_boxes(dataset: Dataset, method: str, detector=None, cache: str | Path | None = None,
                     batch_size: int = 8, log=print) -> Dataset:
    """A copy of a class-folder ``dataset`` whose garment photos carry one garment (type = the photo's class
    type, box from ``method``) and whose no-garment photos carry none. ``detector`` (anything with
    ``predict(images, conf, batch_size)``, e.g. ``detectors.load.load_detector(RUN)``) is needed for "detector:RUN";
    the method string names it in the cache. Unreadable photos are left out, named in one warning line each."""
    if method != "foreground" and not method.startswith("detector:"):
        raise ValueError(f"--pseudo-boxes must be 'foreground' or 'detector:RUN', got {method!r}")
    if method.startswith("detector:") and detector is None:
        raise ValueError(f"pseudo-boxes {method!r}: no detector given")
    cache = Path(cache) if cache else None
    key = lambda r: f"{method}|{r.path}"  # noqa: E731
    known = _cache(cache)
    todo = [r for r in dataset.records if r.item_type is not None and key(r) not in known]
    if method == "foreground":
        detector = None
    for i in range(0, len(todo), batch_size):
        chunk, images = [], []
        for r in todo[i:i + batch_size]:
            try:
                images.append(load_image(r.path))
                chunk.append(r)
            except ImageReadError as e:
                log(f"warning: {e} (left out of training)")
                known[key(r)] = None
        found = detector.predict(images, conf=MIN_SCORE, batch_size=len(images)) if detector and images else \
            [[] for _ in images]
        for r, image, garments in zip(chunk, images, found):
            h, w = image.shape[:2]
            if garments:
                best = max(garments, key=lambda g: g.score)
                known[key(r)] = {"box": [round(float(v), 2) for v in best.box_xyxy], "source": "detector",
                                 "score": round(float(best.score), 4), "detected_type": best.type,
                                 "width": w, "height": h}
            else:
                box, ok = foreground_box(image)
                known[key(r)] = {"box": [round(float(v), 2) for v in box],
                                 "source": "foreground" if ok else "fallback", "width": w, "height": h}
        if cache is not None and (i // batch_size) % 50 == 49:
            write_json_atomic(cache, known)  # progress survives an interrupted run
        if (i // batch_size) % 50 == 49:
            log(f"pseudo-boxes ({method}): {min(i + batch_size, len(todo))}/{len(todo)}")
    if cache is not None and todo:
        write_json_atomic(cache, known)
    records = []
    for r in dataset.records:
        if r.item_type is None:  # a background photo: it must open, or training would stop on it later
            try:
                w, h = image_size(r.path)
            except ImageReadError as e:
                log(f"warning: {e} (left out of training)")
                continue
            records.append(replace(r, width=w, height=h, garments=[]))
            continue
        entry = known.get(key(r))
        if entry is None:
            continue
        g = Garment(type=r.item_type, box_xyxy=np.asarray(entry["box"], dtype=np.float64),
                    attributes=dict(r.attributes))
        # the photo's attribute labels move onto its one garment (they describe that item, not the photo)
        records.append(replace(r, width=entry["width"], height=entry["height"], garments=[g], attributes={}))
    used = {}
    for r in dataset.records:
        entry = known.get(key(r)) if r.item_type is not None else None
        if entry is not None:
            used[entry["source"]] = used.get(entry["source"], 0) + 1
    log(f"pseudo-boxes ({method}) for {dataset.source}: " + ", ".join(f"{n} from {k}" for k, n in used.items()))
    if any(r.item_type is not None for r in dataset.records) and not any(r.garments for r in records):
        raise DataError(dataset.source, "no garment photo could be read: nothing to place boxes on")
    return replace(dataset, records=records)

