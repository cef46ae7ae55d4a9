"""COCO box mAP, overall and per garment type, computed by pycocotools' COCOeval (METRICS.md: not by hand)."""
from __future__ import annotations

import contextlib
import io

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from fashion2stage.formats.coco import dataset_to_coco, detections_to_coco_results
from fashion2stage.records import Dataset, ImageRecord


def _coco(dataset: dict) -> COCO:
    c = COCO()
    c.dataset = dataset
    c.createIndex()
    return c


def _ap(precision: np.ndarray) -> float:
    """Mean of a COCOeval precision slice over its defined entries (-1 marks "no ground truth"); NaN if none."""
    valid = precision[precision > -1]
    return float(valid.mean()) if valid.size else float("nan")


def coco_detection_eval(gt: Dataset, pred: list[ImageRecord]) -> dict:
    """Box mAP@[.5:.95] and mAP@.5 over all garment types (``"map"``, ``"map50"``) and per type (``"per_class"``).

    ``pred`` garments carry the detector's ``score``; images are paired with ``gt`` by ``ImageRecord.file``
    (an image absent from ``pred`` had no detections). A type with no ground-truth box has NaN APs and is left out
    of the overall mean (COCO's rule). No predictions at all gives 0, not an error. pycocotools' printout is
    returned under ``"log"`` instead of going to stdout; ``"stats"`` is COCOeval's 12-number summary.
    """
    gt_dict = dataset_to_coco(gt)
    results = detections_to_coco_results(pred, gt)
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        coco_gt = _coco(gt_dict)
        if results:
            coco_dt = coco_gt.loadRes(results)
        else:  # loadRes cannot take an empty list; an empty result set evaluates to zero precision
            coco_dt = _coco({"images": list(gt_dict["images"]), "categories": list(gt_dict["categories"]),
                             "annotations": []})
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    # precision: [iou thresholds (.5:.95), recall points, categories, area ranges (all first), maxDets (100 last)]
    precision = ev.eval["precision"][:, :, :, 0, -1]
    per_class = {}
    for k, cat_id in enumerate(ev.params.catIds):
        name = coco_gt.cats[cat_id]["name"]
        per_class[name] = {"map": _ap(precision[:, :, k]), "map50": _ap(precision[0, :, k]),
                           "n_gt": len(coco_gt.getAnnIds(catIds=[cat_id]))}
    return {"map": _ap(precision), "map50": _ap(precision[0]), "per_class": per_class,
            "n_images": len(gt_dict["images"]), "n_gt": len(gt_dict["annotations"]), "n_pred": len(results),
            "stats": [float(s) for s in ev.stats], "log": log.getvalue()}
