"""Boxes for photos that have none: class-folder product photos show ONE item of a known type at an unknown place.

Two ways to place the box (``detect-train --pseudo-boxes``, ``classify-train`` for its crops; BENCHMARKS.md
measures which trains the better detector):

- ``foreground``: a class-agnostic box around the largest blob that differs from the border's colours
  (:func:`fashion2stage.foreground.foreground_box`); no model needed.
- ``detector:RUN``: the detector run's top-scoring detection of ANY type, with the type forced to the photo's
  label (the detector often finds the item but calls it by the wrong type: that is what training fixes). Where it
  finds nothing scoring at least ``min_score``, the foreground box is used.

Photos of a "no garment" class (hats, shoes) get no box: they train as background images. Each photo's box is an
entry of the one cache (:mod:`fashion2stage.cache`, ``pseudo_boxes/``), keyed by the method, the detector's identity
and the photo, so a resumed or repeated run does not recompute it; a run may also keep a record of the boxes it used.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from fashion2stage.cache import Shelf
from fashion2stage.errors import DataError, ImageReadError
from fashion2stage.foreground import foreground_box
from fashion2stage.images import image_size
from fashion2stage.io import write_json_atomic
from fashion2stage.photo_loop import detect_photos, detector_scope, photo_keys
from fashion2stage.records import Dataset, Garment

MIN_SCORE = 0.05
FORMAT = 1  # bump when what an entry holds changes


def _place(i: int, image: np.ndarray, garments: list) -> dict:
    """The entry of one garment photo: the top detection's box, else the foreground box (or the fallback)."""
    h, w = image.shape[:2]
    if garments:
        best = max(garments, key=lambda g: g.score)
        return {"box": [round(float(v), 2) for v in best.box_xyxy], "source": "detector",
                "score": round(float(best.score), 4), "detected_type": best.type, "width": w, "height": h}
    box, ok = foreground_box(image)
    return {"box": [round(float(v), 2) for v in box], "source": "foreground" if ok else "fallback", "width": w,
            "height": h}


def add_pseudo_boxes(dataset: Dataset, method: str, detector=None, record: str | Path | None = None,
                     batch_size: int = 8, log=print, cache: str | Path | None = None) -> Dataset:
    """A copy of a class-folder ``dataset`` whose garment photos carry one garment (type = the photo's class
    type, box from ``method``) and whose no-garment photos carry none. ``detector`` (anything with
    ``predict(images, conf, batch_size)``, e.g. ``detectors.load.load_detector(RUN)``) is needed for "detector:RUN".
    Boxes come from the cache (``cache``: its folder, default the per-user one) or are computed and stored there;
    ``record``: also write them as one JSON file ``{"<method>|<photo path>": entry}``. Unreadable photos are left
    out, named in one warning line each."""
    if method != "foreground" and not method.startswith("detector:"):
        raise ValueError(f"--pseudo-boxes must be 'foreground' or 'detector:RUN', got {method!r}")
    if method.startswith("detector:") and detector is None:
        raise ValueError(f"pseudo-boxes {method!r}: no detector given")
    if method == "foreground":
        detector = None
    garment_photos = [r for r in dataset.records if r.item_type is not None]
    paths = [r.path for r in garment_photos]
    scope = detector_scope(detector, Path(record) if record else None)
    shelf = Shelf("pseudo_boxes", root=cache, log=log) if scope is not None else None
    keys = photo_keys(paths, "pseudo_boxes", FORMAT, method, scope, MIN_SCORE) if shelf is not None else None
    every = max(50 * batch_size, 1)
    found, reused = detect_photos(paths, detector, MIN_SCORE, _place, shelf, keys, batch_size, log,
                                  progress=_progress(len(paths), every, f"pseudo-boxes ({method})", log))
    key = lambda r: f"{method}|{r.path}"  # noqa: E731
    known = {key(r): entry for r, entry in zip(garment_photos, found) if entry is not None}
    if record is not None:
        write_json_atomic(record, known)
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
    for entry in known.values():
        used[entry["source"]] = used.get(entry["source"], 0) + 1
    log(f"pseudo-boxes ({method}) for {dataset.source}: " + ", ".join(f"{n} from {k}" for k, n in used.items())
        + (f" ({reused} were cached)" if reused else ""))
    if any(r.item_type is not None for r in dataset.records) and not any(r.garments for r in records):
        raise DataError(dataset.source, "no garment photo could be read: nothing to place boxes on")
    return replace(dataset, records=records)


def _progress(total: int, every: int, what: str, log):
    """``progress(n)`` for :func:`detect_photos`: one line each time another ``every`` photos are done."""
    done = [0]

    def progress(n: int) -> None:
        before, done[0] = done[0], done[0] + n
        if done[0] // every > before // every:
            log(f"{what}: {done[0]}/{total}")
    return progress
