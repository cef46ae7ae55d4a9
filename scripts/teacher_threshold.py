"""Choose the teacher's score threshold for weak labels (``detect-train --teacher-conf``) and whether flip TTA pays.

The teacher runs once per view on two validation sets (its garments cached at score >= 0.05 in ``--out``):

- ``ccp/val`` (true boxes): the photos' true garment types stand in for their tags, and the pseudo-boxes the rules
  of :mod:`fashion2stage.weak_labels` keep are matched to the true boxes (same type, IoU >= 0.5): box precision,
  recall and F1 per threshold. A teacher trained on ccp/val itself (the shipped one) reads optimistic here.
- ``ccp_tags/val`` (tags only, photos no shipped model saw): image-level tag precision / recall / F1 of the teacher
  alone (:mod:`fashion2stage.metrics.tags`); its recall is also the share of tagged (photo, type) pairs that get a
  kept box (the rest is ignored in training).

    python scripts/teacher_threshold.py --teacher fashion2stage/default_model/detector \\
        --data ../shared/data/fashion-bench --out runs/teacher-threshold
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detectors.load import load_detector  # noqa: E402
from fashion2stage.detections import FlipTTA, detect_cached  # noqa: E402
from fashion2stage.formats.coco import read_coco_detection  # noqa: E402
from fashion2stage.formats.tags import read_tags, tagged_types  # noqa: E402
from fashion2stage.jitter import match_detections  # noqa: E402
from fashion2stage.metrics.tags import tag_report  # noqa: E402

THRESHOLDS = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


def box_scores(gt, dets, t: float) -> dict:
    """Pseudo-boxes kept at ``t`` (type among the photo's true types) against the true boxes."""
    kept = matched = n_gt = 0
    for r in gt.records:
        types = {g.type for g in r.garments}
        ds = [d for d in dets.get(r.file, []) if d.type in types and d.score >= t]
        pairs = match_detections([d.box_xyxy for d in ds], [d.score for d in ds], [d.type for d in ds],
                                 [g.box_xyxy for g in r.garments], [g.type for g in r.garments])
        kept, matched, n_gt = kept + len(ds), matched + len(pairs), n_gt + len(r.garments)
    p, rec = matched / max(kept, 1), matched / max(n_gt, 1)
    return {"box_precision": p, "box_recall": rec, "box_f1": 2 * p * rec / max(p + rec, 1e-9)}


def tag_scores(tags, dets, t: float, types: list[str]) -> dict:
    tagged = [tagged_types(r, tags.tags) for r in tags.records]
    shown = [{d.type for d in dets.get(r.file, []) if d.score >= t} for r in tags.records]
    rep = tag_report(tagged, shown, types)
    return {"tag_precision": rep["precision"], "tag_recall": rep["recall"], "tag_f1": rep["f1"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default=str(ROOT / "fashion2stage/default_model/detector"))
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/fashion-bench"))
    ap.add_argument("--classes", default=str(ROOT / "configs/fashion-bench-tags.yaml"))
    ap.add_argument("--out", default="runs/teacher-threshold")
    ap.add_argument("--views", default="plain,flip")
    a = ap.parse_args()
    data, out = Path(a.data), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    teacher = load_detector(a.teacher)
    gt = read_coco_detection(data / "ccp/annotations/instances_val.json")
    tags = read_tags(data / "ccp_tags/tags_val.csv", a.classes)
    results = {}
    for view in a.views.split(","):
        det = FlipTTA(teacher) if view == "flip" else teacher
        t0 = time.perf_counter()
        on_gt = detect_cached(det, gt.records, out / f"ccp_val_{view}.json", conf=0.05)
        on_tags = detect_cached(det, tags.records, out / f"ccp_tags_val_{view}.json", conf=0.05)
        print(f"{view}: {time.perf_counter() - t0:.0f} s", flush=True)
        results[view] = {t: {**box_scores(gt, on_gt, t), **tag_scores(tags, on_tags, t, teacher.labels.garment_types)}
                         for t in THRESHOLDS}
    (out / "teacher_threshold.json").write_text(json.dumps(results, indent=2) + "\n")
    cols = ["box_precision", "box_recall", "box_f1", "tag_precision", "tag_recall", "tag_f1"]
    print("| view | threshold | " + " | ".join(cols) + " |\n|---|---|" + "---|" * len(cols))
    for view, rows in results.items():
        for t, row in rows.items():
            print(f"| {view} | {t} | " + " | ".join(f"{row[c]:.3f}" for c in cols) + " |")


if __name__ == "__main__":
    main()
