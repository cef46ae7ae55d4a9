"""The one decode -> batch -> detect loop over training and evaluation photos, with a cache entry per photo.

Every step that runs a detector over a set of photos goes through :func:`detect_photos`: the teacher's and the
attribute trainer's cached garments (:mod:`fashion2stage.detections`), pseudo-boxes (:mod:`fashion2stage.pseudo_boxes`),
the crop features of the type and photo-kind heads (``classifiers/type_head.py``, ``classifiers/photo_kind.py``) and
``detect-train``'s evaluation (``detectors/train.py``). ``predict`` has its own loop (``app/predict.py``: decoding in a
background thread, at most 1600 px a side), as its photos are read once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from fashion2stage.cache import Shelf, key, model_identity, photo_identity
from fashion2stage.errors import ImageReadError
from fashion2stage.images import load_image
from fashion2stage.results import GarmentPrediction


def detect_photos(paths: list[Path], detector, conf: float,
                  finish: Callable[[int, np.ndarray, list[GarmentPrediction]], object], shelf: Shelf | None = None,
                  keys: list[str] | None = None, batch_size: int = 8, log=print,
                  progress: Callable[[int], object] | None = None) -> tuple[list, int]:
    """``finish(i, image, garments)`` of every photo ``paths[i]``, and how many were read from ``shelf``.

    Photos not in ``shelf`` (under ``keys[i]``, e.g. from :func:`photo_keys`) are decoded full size and upright
    (:func:`fashion2stage.images.load_image`), ``batch_size`` at a time, and ``detector`` (anything with
    ``predict(images, conf, batch_size)``; None: every photo gets ``[]``) runs on each batch at once; each result is
    stored as soon as its batch is done, so an interrupted run keeps them. ``finish`` must return what the shelf's
    codec stores as it is (JSON values, or a dict of arrays). An unreadable photo is named in one warning line and
    gives None (nothing is stored: it is tried again next time). ``progress(n)`` after each batch.
    """
    if shelf is not None and (keys is None or len(keys) != len(paths)):
        raise ValueError("a shelf needs one key per photo")
    out: list = [None] * len(paths)
    todo = []
    for i in range(len(paths)):
        out[i] = shelf.get(keys[i]) if shelf is not None else None
        if out[i] is None:
            todo.append(i)
    for start in range(0, len(todo), batch_size):
        chunk, images = [], []
        for i in todo[start:start + batch_size]:
            try:
                images.append(load_image(paths[i]))
                chunk.append(i)
            except ImageReadError as e:
                log(f"warning: {e} (left out)")
        found = detector.predict(images, conf=conf, batch_size=len(images)) if detector is not None and images \
            else [[] for _ in images]
        for i, image, garments in zip(chunk, images, found):
            out[i] = finish(i, image, list(garments))
            if shelf is not None:
                shelf.put(keys[i], out[i])
        if progress is not None:
            progress(len(todo[start:start + batch_size]))
    return out, len(paths) - len(todo)


def photo_keys(paths: list[Path], *parts) -> list[str]:
    """One cache key per photo: ``parts`` (what else the entry depends on) and the photo's identity."""
    return [key(*parts, photo_identity(p)) for p in paths]


def detector_scope(detector, record: Path | None = None) -> object | None:
    """What a detector's cache entries are keyed by: its identity (:func:`fashion2stage.cache.model_identity`); for
    a detector that cannot name one, the ``record`` file of the run that uses it (entries then serve only that
    run's resume, never another detector); None (no caching) when there is neither."""
    if detector is None:
        return {"detector": None}
    identity = model_identity(detector)
    if identity is not None:
        return identity
    if record is None:
        return None
    return {"unidentified": f"{type(detector).__module__}.{type(detector).__qualname__}",
            "record": str(Path(record).resolve())}
