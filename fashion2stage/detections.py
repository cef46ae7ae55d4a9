"""A detector's garments on a set of photos, computed once: the entries of the one cache (:mod:`fashion2stage.cache`,
``detections/``) shared by every step that runs a detector over training photos (the attribute model's crops of
boxless labels, the teacher of weak labels), and the horizontal-flip test-time augmentation a teacher may use.

Each photo's garments are one entry, keyed by the detector's identity (its files and inference settings), the score
threshold and the photo, written as soon as its batch is done: an interrupted run goes on where it stopped, and
another run of the same detector on the same photos reads them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fashion2stage.cache import Shelf, model_identity
from fashion2stage.geometry import box_iou
from fashion2stage.io import write_json_atomic
from fashion2stage.labels import LabelSet
from fashion2stage.photo_loop import detect_photos, detector_scope, photo_keys
from fashion2stage.records import ImageRecord
from fashion2stage.results import GarmentPrediction
from fashion2stage.roles import Detector

FORMAT = 1  # bump when what an entry holds changes


def _garment_to_json(g: GarmentPrediction) -> dict:
    return {"type": g.type, "score": float(g.score), "box": [float(v) for v in g.box_xyxy]}


def _garment_from_json(d: dict) -> GarmentPrediction:
    return GarmentPrediction(type=d["type"], box=[float(v) for v in d["box"]], score=float(d["score"]))


def detect_cached(detector: Detector, records: list[ImageRecord], record: Path | None = None, conf: float = 0.25,
                  batch_size: int = 8, progress=None, log=print, cache: str | Path | None = None
                  ) -> dict[str, list[GarmentPrediction]]:
    """The detector's garments (type, score, box) on every readable image, keyed by ``ImageRecord.file``.

    Through :func:`fashion2stage.photo_loop.detect_photos` and the cache (``cache``: its folder, default the
    per-user one): photos already there are not run again. ``record``: also write the garments there as one JSON
    file ``{"images": {file: [{"type", "score", "box"}]}}`` (the run folder's record of what it used; a detector
    that cannot name its identity, e.g. a test double, is cached for this record's run only). Unreadable photos
    are named in one warning line each and left out.
    """
    scope = detector_scope(detector, record)
    paths = [r.path for r in records]
    shelf = Shelf("detections", root=cache, log=log) if scope is not None else None
    keys = photo_keys(paths, "detections", FORMAT, scope, conf) if shelf is not None else None
    found, _ = detect_photos(paths, detector, conf, lambda i, image, gs: [_garment_to_json(g) for g in gs], shelf, keys,
                             batch_size, log, progress)
    as_json = {r.file: gs for r, gs in zip(records, found) if gs is not None}
    if record is not None:  # the entries as they are: no round trip through the records
        write_json_atomic(record, {"images": as_json})
    return {f: [_garment_from_json(g) for g in gs] for f, gs in as_json.items()}


def fuse_flipped(plain: list[GarmentPrediction], flipped: list[GarmentPrediction],
                 iou: float = 0.55) -> list[GarmentPrediction]:
    """Garments of a photo seen twice (``flipped``: found on the mirror image, boxes already mapped back): each
    garment is paired with the best-overlapping unpaired one of the same type (IoU >= ``iou``, best scores first);
    a pair becomes one garment, its box the score-weighted mean and its score the mean of the two; a garment seen
    once keeps its box at half its score (the other view scored it 0). Best first."""
    out, used = [], set()
    for g in sorted(plain, key=lambda g: -g.score):
        cands = [j for j, f in enumerate(flipped) if j not in used and f.type == g.type]
        overlaps = box_iou([g.box_xyxy], [flipped[j].box_xyxy for j in cands])[0] if cands else np.zeros(0)
        if len(cands) and overlaps.max() >= iou:
            j = cands[int(np.argmax(overlaps))]
            used.add(j)
            f = flipped[j]
            box = (g.score * g.box_xyxy + f.score * f.box_xyxy) / (g.score + f.score)
            out.append(GarmentPrediction(type=g.type, box=box.tolist(), score=(g.score + f.score) / 2))
        else:
            out.append(GarmentPrediction(type=g.type, box=g.box_xyxy.tolist(), score=g.score / 2))
    out += [GarmentPrediction(type=f.type, box=f.box_xyxy.tolist(), score=f.score / 2)
            for j, f in enumerate(flipped) if j not in used]
    return sorted(out, key=lambda g: -g.score)


class FlipTTA:
    """A :class:`~fashion2stage.roles.Detector` that runs ``detector`` on each photo and on its mirror image and
    fuses the two answers (:func:`fuse_flipped`): twice the work; a garment both views agree on keeps its score, one
    seen once loses half. Each view is run at ``conf / 2`` so that a garment found at ``conf`` in one view and just
    under it in the other still fuses."""

    def __init__(self, detector: Detector):
        self.detector = detector
        self.labels: LabelSet = detector.labels

    @property
    def cache_identity(self) -> object | None:
        """The wrapped detector's identity, marked as seen twice (:func:`fashion2stage.cache.model_identity`)."""
        inner = model_identity(self.detector)
        return None if inner is None else {"flip_tta": inner}

    def predict(self, images: list[np.ndarray], conf: float = 0.25,
                batch_size: int = 8) -> list[list[GarmentPrediction]]:
        plain = self.detector.predict(images, conf=conf / 2, batch_size=batch_size)
        mirrored = self.detector.predict([np.ascontiguousarray(im[:, ::-1]) for im in images], conf=conf / 2,
                                         batch_size=batch_size)
        out = []
        for im, a, b in zip(images, plain, mirrored):
            w = im.shape[1]
            back = [GarmentPrediction(type=g.type, score=g.score, box=[w - x2, y1, w - x1, y2])
                    for g in b for x1, y1, x2, y2 in [g.box_xyxy]]
            out.append([g for g in fuse_flipped(a, back) if g.score >= conf])
        return out
