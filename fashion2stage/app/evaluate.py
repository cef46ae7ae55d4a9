"""Score a ``predictions.jsonl`` against labelled data: the numbers users get are the numbers of their outputs.

- Boxes (COCO detection JSON): COCO mAP@[.5:.95] and mAP@.5 per class (pycocotools).
- Garment-level attributes (COCO ``attribute_ids``, e.g. ccp fine category): every ground-truth garment is matched to a
  predicted garment of the same type (IoU >= 0.5, greedy by score); its attribute probabilities are scored. A missed
  garment is scored as a wrong answer (uniform probabilities), so detection misses cost what they cost in use.
- Image-level attributes (FashionAI / cad ``label.csv``): the image-level ``attributes`` of each line.
- Keypoints (COCO keypoints JSON): matched as above; NE and PCK (METRICS.md); a missed garment's points are missing
  predictions (100% error each).
- Image tags (``image,tags`` CSV with its mapping): image-level tag precision, recall and F1 of the garment types
  shown with a score of at least ``tag_conf`` (:mod:`fashion2stage.metrics.tags`).
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from fashion2stage.errors import DataError
from fashion2stage.jitter import match_detections
from fashion2stage.records import Dataset, ImageRecord
from fashion2stage.results import GarmentPrediction, ImagePrediction


def read_predictions(jsonl: str | Path) -> dict[str, ImagePrediction]:
    """``predictions.jsonl`` -> {image relative path: prediction}; lines with ``error`` are kept (they score as
    misses: no garment, no answer)."""
    out = {}
    for n, line in enumerate(Path(jsonl).read_text().splitlines(), 1):
        try:
            pred = ImagePrediction.from_json(line)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, IndexError) as e:
            raise DataError(jsonl, f"not a predictions line: {e!r}", n) from e
        out[pred.image] = pred
    return out


def _pred_record(pred: ImagePrediction | None, file: str) -> ImageRecord:
    """The predicted garments of one image, as the COCO scorer takes them (each has ``type``, ``score``,
    ``box_xyxy``)."""
    return ImageRecord(file=file, root=Path("."), garments=[] if pred is None else list(pred.garments))


def _check_coverage(gt: Dataset, preds: dict[str, ImagePrediction]) -> int:
    missing = [r.file for r in gt.records if r.file not in preds]
    if len(missing) == len(gt.records):
        raise DataError(gt.source, "no image of this label file is in the predictions (wrong --images folder?)")
    return len(missing)


def _matches(gt_rec: ImageRecord, pred: ImagePrediction | None) -> dict[int, GarmentPrediction]:
    """gt garment index -> the predicted garment matched to it (same type, IoU >= 0.5, greedy by score)."""
    gs = [] if pred is None else pred.garments
    if not gs or not gt_rec.garments:
        return {}
    pairs = match_detections([g.box_xyxy for g in gs], [g.score for g in gs], [g.type for g in gs],
                             [g.box_xyxy for g in gt_rec.garments], [g.type for g in gt_rec.garments])
    return {gi: gs[pi] for pi, gi in pairs}


def evaluate_boxes(gt: Dataset, preds: dict[str, ImagePrediction]) -> dict:
    from fashion2stage.metrics import coco_detection_eval  # noqa: PLC0415

    missing = _check_coverage(gt, preds)
    report = coco_detection_eval(gt, [_pred_record(preds.get(r.file), r.file) for r in gt.records])
    report.pop("log", None)
    report["images_without_prediction"] = missing
    return report


def evaluate_garment_attributes(gt: Dataset, preds: dict[str, ImagePrediction]) -> dict:
    from fashion2stage.metrics import attribute_report  # noqa: PLC0415

    _check_coverage(gt, preds)
    probs: dict[str, list] = {k: [] for k in gt.labels.attributes}
    marks: dict[str, list] = {k: [] for k in gt.labels.attributes}
    missed = 0
    for rec in gt.records:
        matched = _matches(rec, preds.get(rec.file))
        for gi, g in enumerate(rec.garments):
            p = matched.get(gi)
            missed += p is None
            for k, m in g.attributes.items():
                n = len(gt.labels.attributes[k])
                a = None if p is None else p.attributes.get(k)
                probs[k].append(np.full(n, 1.0 / n) if a is None else np.asarray(a.probs, float))
                marks[k].append(m)
    keys = [k for k in probs if probs[k]]
    report = attribute_report({k: np.stack(probs[k]) for k in keys}, {k: marks[k] for k in keys},
                              {k: gt.labels.attributes[k] for k in keys})
    report["garments_missed"] = missed
    return report


def evaluate_image_attributes(gt: Dataset, preds: dict[str, ImagePrediction]) -> dict:
    from fashion2stage.metrics import attribute_report  # noqa: PLC0415

    missing = _check_coverage(gt, preds)
    probs: dict[str, list] = {}
    marks: dict[str, list] = {}
    for rec in gt.records:
        pred = preds.get(rec.file)
        answers = {} if pred is None else pred.attributes
        for k, m in rec.attributes.items():
            n = len(gt.labels.attributes[k])
            a = answers.get(k)
            if a is not None and len(a.probs) != n:
                raise DataError(gt.source, f"{k}: predictions have {len(a.probs)} values, labels {n} "
                                           "(model trained on another label set?)")
            probs.setdefault(k, []).append(np.full(n, 1.0 / n) if a is None else np.asarray(a.probs, float))
            marks.setdefault(k, []).append(m)
    report = attribute_report({k: np.stack(v) for k, v in probs.items()}, marks,
                              {k: gt.labels.attributes[k] for k in probs})
    report["images_without_prediction"] = missing
    return report


def evaluate_keypoints(gt: Dataset, preds: dict[str, ImagePrediction]) -> dict:
    from fashion2stage.metrics import keypoint_report  # noqa: PLC0415

    _check_coverage(gt, preds)
    names = gt.labels.keypoints
    pred_xy, gt_k, types, boxes = [], [], [], []
    missed = 0
    for rec in gt.records:
        matched = _matches(rec, preds.get(rec.file))
        for gi, g in enumerate(rec.garments):
            if g.keypoints is None:
                continue
            p = matched.get(gi)
            missed += p is None
            kp = {} if p is None else p.keypoints
            pred_xy.append([kp[n][:2] if n in kp else [np.nan, np.nan] for n in names])
            gt_k.append(g.keypoints)
            types.append(g.type)
            boxes.append(g.box_xyxy)
    if not gt_k:
        raise DataError(gt.source, "no garment with keypoints to evaluate")
    report = keypoint_report(np.asarray(pred_xy, float), np.stack(gt_k), types, np.stack(boxes), gt.labels)
    report["garments_missed"] = missed
    return report


def evaluate_types(gt: Dataset, preds: dict[str, ImagePrediction], conf: float) -> dict:
    """Class-folder set (one item per photo): top-type accuracy, no-garment rate, six-way accuracy and the
    confusion matrix (:mod:`fashion2stage.metrics.domain`), counting only garments scoring at least ``conf``
    (the threshold a user runs ``predict`` with). An unreadable or unpredicted photo counts as "none". Where the
    mapping ties classes to attribute values, ``attributes`` scores the top garment's answers against them."""
    from fashion2stage.metrics.domain import attribute_accuracy, type_report  # noqa: PLC0415

    _check_coverage(gt, preds)
    predicted, wanted, answered = [], [], []
    for rec in gt.records:
        pred = preds.get(rec.file)
        shown = [g for g in (pred.garments if pred else []) if g.score >= conf]
        predicted.append(_pred_record(replace(pred, garments=shown) if pred else None, rec.file))
        wanted.append(dict((gt.classes or {}).get(rec.image_class, {}).get("attributes", {})))
        top = max(shown, key=lambda g: g.score) if shown else None
        answered.append({k: a.value for k, a in top.attributes.items()} if top else {})
    report = {"conf": conf, **type_report(gt.records, predicted, gt.labels.garment_types)}
    if any(wanted):
        report["attributes"] = attribute_accuracy(wanted, answered)
    return report


def evaluate_tags(gt: Dataset, preds: dict[str, ImagePrediction], conf: float) -> dict:
    """Tag set: micro and per-type precision / recall / F1 over (photo, type) pairs; a photo shows a type when a
    garment of it scores at least ``conf``; an unpredicted or unreadable photo shows nothing."""
    from fashion2stage.metrics.tags import score_tags  # noqa: PLC0415

    _check_coverage(gt, preds)
    return score_tags(gt, {f: p.garments for f, p in preds.items()}, conf)


def plot_type_confusion(report: dict, path: str | Path, title: str = "") -> None:
    """The confusion matrix of :func:`evaluate_types` as a PNG (rows: label, columns: answer; row-normalised)."""
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    cm = np.asarray(report["confusion_matrix"], float)
    names = report["labels"]
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            if cm[i, j]:
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("answer (top garment, or none)")
    ax.set_ylabel("label")
    ax.set_title(title or f"top-type accuracy {report['type_accuracy'] or 0:.3f}, "
                          f"no garment {report['no_garment_rate'] or 0:.3f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def evaluate_predictions(predictions: dict[str, ImagePrediction], boxes: Dataset | None = None,
                         attributes: Dataset | None = None, keypoints: Dataset | None = None,
                         types: Dataset | None = None, type_conf: float = 0.25, tags: Dataset | None = None,
                         tag_conf: float = 0.5) -> dict:
    """Every score the labelled sets given allow: ``detection`` and ``garment_attributes`` (``boxes``, the latter when
    its garments carry attribute labels), ``image_attributes`` (``attributes``), ``keypoints`` (``keypoints``),
    ``types`` (a class-folder set, garments scoring at least ``type_conf``), ``tags`` (a tag set, garments scoring at
    least ``tag_conf``)."""
    report = {}
    if boxes:
        report["detection"] = evaluate_boxes(boxes, predictions)
        if boxes.labels.attributes:
            report["garment_attributes"] = evaluate_garment_attributes(boxes, predictions)
    if attributes:
        report["image_attributes"] = evaluate_image_attributes(attributes, predictions)
    if keypoints:
        report["keypoints"] = evaluate_keypoints(keypoints, predictions)
    if types:
        report["types"] = evaluate_types(types, predictions, type_conf)
    if tags:
        report["tags"] = evaluate_tags(tags, predictions, tag_conf)
    return report


def report_lines(report: dict) -> list[str]:
    """The headline numbers of an evaluation report, one line per part."""
    lines = []
    if "detection" in report:
        d = report["detection"]
        lines.append(f"detection: mAP@[.5:.95] {d['map']:.3f}  mAP@.5 {d['map50']:.3f}")
    for part in ("garment_attributes", "image_attributes"):
        if part in report:
            a = report[part]
            lines.append(f"{part}: mAP {a['mAP']:.3f}  mean accuracy {a['mean_accuracy']:.3f}  ("
                         + ", ".join(f"{k} {v['accuracy']:.3f}" for k, v in a["keys"].items()) + ")")
    if "types" in report:
        t = report["types"]
        lines.append(f"types (garments scoring >= {t['conf']}): top-type accuracy {t['type_accuracy'] or 0:.3f}  "
                     f"no-garment rate {t['no_garment_rate'] or 0:.3f}  six-way accuracy {t['six_way_accuracy']:.3f}")
        if t.get("attributes"):
            lines.append("top garment's attributes against the mapping: " + ", ".join(
                f"{k} {v['accuracy']:.3f} ({v['n']} photos)" for k, v in t["attributes"].items()))
    if "tags" in report:
        t = report["tags"]
        lines.append(f"tags (garments scoring >= {t['conf']}): precision {t['precision'] or 0:.3f}  recall "
                     f"{t['recall'] or 0:.3f}  F1 {t['f1'] or 0:.3f}  (" + ", ".join(
                         f"{k} {v['f1'] or 0:.3f}" for k, v in t["per_type"].items()) + ")")
    if "keypoints" in report:
        k = report["keypoints"]
        lines.append(f"keypoints: NE {k['ne']:.2f}%  PCK@0.1 {k['pck@0.1']:.3f}")
    return lines
