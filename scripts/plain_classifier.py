"""The plain whole-photo classifier a user would build instead of fashion2stage, on a class-folder set.

A linear probe (scikit-learn logistic regression) on frozen ImageNet EfficientNet-Lite0 features (the same
offline weights our models start from) of the whole photo, resized to 224x224. It answers one of the mapping's
garment types or "none" (its classes collapsed through the mapping file), so it is scored exactly like our
``evaluate --class-folders`` (six-way accuracy, top-type accuracy on garment photos, no-garment rate on the rest).

    python scripts/plain_classifier.py --train ../shared/data/fashion-bench/products/train \\
        --val ../shared/data/fashion-bench/products/val --classes configs/fashion-bench-products.yaml --out runs/plain
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from fashion2stage.backbones import create_backbone, normalisation
from fashion2stage.errors import ImageReadError
from fashion2stage.formats.folders import read_class_folders
from fashion2stage.images import load_image
from fashion2stage.io import write_json_atomic
from fashion2stage.metrics.domain import NONE, type_report
from fashion2stage.records import Dataset, Garment

SIDE = 224


@torch.no_grad()
def features(ds: Dataset, batch: int = 32) -> tuple[np.ndarray, list[int]]:
    """(N, 1280) pooled features of the readable photos, and their indices in ``ds.records``."""
    model = create_backbone("efficientnet_lite0", pretrained=True).eval()
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in normalisation("efficientnet_lite0"))
    out, kept, pending = [], [], []

    def flush():
        x = torch.from_numpy(np.stack([p for _, p in pending])).permute(0, 3, 1, 2).float() / 255.0
        out.append(model.forward_features((x - mean) / std).mean(dim=(2, 3)).numpy())
        kept.extend(i for i, _ in pending)
        pending.clear()

    for i, r in enumerate(ds.records):
        try:
            pending.append((i, cv2.resize(load_image(r.path), (SIDE, SIDE), interpolation=cv2.INTER_AREA)))
        except ImageReadError as e:
            print(f"warning: {e} (skipped)")
        if len(pending) == batch:
            flush()
    if pending:
        flush()
    return np.concatenate(out), kept


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", required=True)
    ap.add_argument("--val", required=True)
    ap.add_argument("--classes", required=True)
    ap.add_argument("--out", default="runs/plain")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415

    t0 = time.perf_counter()
    train, val = (read_class_folders(p, args.classes) for p in (args.train, args.val))
    answer = lambda r: r.item_type or NONE  # noqa: E731  (classes collapsed to types: what is scored)
    xt, kt = features(train)
    xv, kv = features(val)
    y = [answer(train.records[i]) for i in kt]
    clf = LogisticRegression(max_iter=3000, C=1.0).fit(xt, y)
    said = dict(zip(kv, clf.predict(xv)))
    predicted = []
    for i, r in enumerate(val.records):
        t = said.get(i, NONE)
        garments = [] if t == NONE else [Garment(type=t, box_xyxy=np.array([0.0, 0, 1, 1]))]
        predicted.append(type(r)(file=r.file, root=r.root, garments=garments))
    report = type_report(val.records, predicted, val.labels.garment_types)
    report["seconds"] = time.perf_counter() - t0
    Path(args.out).mkdir(parents=True, exist_ok=True)
    write_json_atomic(Path(args.out) / "plain_classifier.json", report)
    print(json.dumps({k: report[k] for k in ("six_way_accuracy", "type_accuracy", "no_garment_rate", "seconds")}))


if __name__ == "__main__":
    main()
