"""The photo-kind head: "does this photo show one item and no person?", one more linear head on the attribute
model's crop features.

Why: a product photo (catalogue, marketplace, a garment held flat) is read best with the pipeline's single-item
rule (one garment, typed by the detector and the item-type head), a street photo of people with the plain rule
(every garment). The user should not have to know which photos are which. The attribute model already looks at the
crop of every detected garment, so a head on its pooled features decides per photo from the crop of the detector's
top garment, at no extra backbone pass (fashion2stage/app/pipeline.py, ``judge``, applies it; docs/OUTPUT.md).

The head is a two-class logistic regression (scikit-learn, classifiers/type_head.py's ``fit``) on frozen features
of crops cut exactly as at inference: per training photo, the crop of the detector's best box at the pipeline's
threshold, labelled by the photo's source (single-item sources: class folders of products, held-flat garments;
multi-item sources: street photos). A photo where the detector finds nothing gives the crop of the whole photo
instead, as the pipeline reads such a photo (its image-level answers come from that crop). The probability
threshold is chosen on validation photos (:func:`choose_threshold`). Stored as one more head of the attribute run
(``config.json`` ``photo_kind_head``, weights in ``weights.safetensors``), so ONNX export and loading need nothing
new.
"""
from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from classifiers.type_head import crop_features
from fashion2stage.errors import DataError
from fashion2stage.formats.folders import IMAGE_SUFFIXES
from fashion2stage.geometry import crop
from fashion2stage.photo_loop import detect_photos, photo_keys
from fashion2stage.roles import MULTI_ITEM, PHOTO_KINDS, SINGLE_ITEM


@dataclass
class KindFeatures:
    """Per photo: the crop features the pipeline would judge it by (top garment, else whole photo)."""
    features: np.ndarray  # (N, C) float32
    files: list[str]
    has_garment: np.ndarray  # (N,) bool: the crop is the detector's top garment (False: the whole photo)


def photo_paths(source: str | Path) -> list[Path]:
    """The photos of a source: a folder (every image under it, e.g. class folders), a COCO json (its images, under
    ``images/`` beside ``annotations/`` or beside the json) or a CSV whose first column names photos relative to the
    CSV's folder (FashionAI label.csv, a tag list; a header row naming no file is skipped). Sorted, no repeats."""
    src = Path(source)
    if src.is_dir():
        return sorted(p for p in src.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not src.is_file():
        raise DataError(src, "no such folder or label file")
    if src.suffix.lower() == ".json":
        try:
            images = json.loads(src.read_text())["images"]
            names = [str(im["file_name"]) for im in images]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataError(src, f"not a COCO json with an images list: {e!r}") from None
        root = src.parent.parent / "images" if src.parent.name == "annotations" else src.parent
        paths = [root / n for n in names]
    elif src.suffix.lower() == ".csv":
        with open(src, newline="") as f:
            rows = [(n, row[0]) for n, row in enumerate(csv.reader(f), 1) if row]
        paths = [src.parent / name for _, name in rows]
        if rows and not paths[0].is_file():  # a header
            rows, paths = rows[1:], paths[1:]
        missing = [(n, name) for (n, name), p in zip(rows, paths) if not p.is_file()]
        if missing:
            raise DataError(src, f"line {missing[0][0]}: no photo {missing[0][1]!r} beside the file")
    else:
        raise DataError(src, "expected a folder of photos, a COCO json or a CSV naming photos")
    return sorted(set(paths))


def sample(paths: list[Path], n: int | None, seed: int = 0) -> list[Path]:
    """At most ``n`` of ``paths``, drawn without replacement (the same ones for the same seed), in order."""
    if n is None or len(paths) <= n:
        return paths
    keep = np.sort(np.random.default_rng(seed).choice(len(paths), n, replace=False))
    return [paths[i] for i in keep]


def collect(paths: list[Path], predictor, detector, conf: float = 0.25, log=print, shelf=None,
            scope=None) -> tuple[KindFeatures, int]:
    """The judged crop of every photo: the detector's best box at score >= ``conf`` (``predictor.crop_spec``), or
    the whole photo; and how many photos were read from ``shelf``. Photos go through
    :func:`fashion2stage.photo_loop.detect_photos`; with ``shelf`` each photo's features are cached under ``scope``
    (the models and ``conf``) and the photo. Unreadable photos are named in one warning line each and left out."""
    t0 = time.perf_counter()

    def finish(i: int, image: np.ndarray, found: list) -> dict:
        box = max(found, key=lambda g: g.score).box_xyxy if found else [0.0, 0.0, image.shape[1], image.shape[0]]
        if (i + 1) % 100 == 0:
            log(f"photo kind: {i + 1}/{len(paths)} photos, {time.perf_counter() - t0:.0f} s")
        return {"features": crop_features(predictor, crop(image, box, predictor.crop_spec)[0][None]).astype(np.float32),
                "has_garment": np.asarray(bool(found))}

    keys = photo_keys(paths, "photo_kind", scope) if shelf is not None else None
    parts, reused = detect_photos(paths, detector, conf, finish, shelf, keys, batch_size=8, log=log)
    kept = [(p, part) for p, part in zip(paths, parts) if part is not None]
    feats = [part["features"] for _, part in kept]
    dim = predictor.model.backbone.num_features
    has = np.asarray([bool(part["has_garment"]) for _, part in kept], dtype=bool)
    return KindFeatures(np.concatenate(feats) if feats else np.zeros((0, dim), np.float32), [str(p) for p, _ in kept],
                        has), reused


def p_single(features: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, C) features -> (N,) probability of SINGLE_ITEM under the head ``(w, b)`` (rows in PHOTO_KINDS order)."""
    z = features.astype(np.float64) @ w.T.astype(np.float64) + b
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return e[:, PHOTO_KINDS.index(SINGLE_ITEM)] / e.sum(1)


def choose_threshold(p_single_photos: np.ndarray, single: np.ndarray) -> tuple[float, dict]:
    """The probability threshold (judged single when p >= it) with the best balanced accuracy (mean of the recall
    of single- and multi-item photos) on validation photos; among equally good ones, the middle of the best run,
    so that it keeps the widest margin on both sides. Returns it and the validation numbers at it."""
    p = np.asarray(p_single_photos, np.float64)
    single = np.asarray(single, bool)
    if single.all() or not single.any():
        raise ValueError("choosing the threshold needs validation photos of both kinds")
    edges = np.unique(np.concatenate([[0.0, 1.0], p]))
    cands = (edges[:-1] + edges[1:]) / 2
    scores = np.array([(np.mean(p[single] >= t) + np.mean(p[~single] < t)) / 2 for t in cands])
    best = np.flatnonzero(scores >= scores.max() - 1e-12)
    t = float(cands[best[len(best) // 2]])
    stats = {"threshold": round(t, 4), "balanced_accuracy": round(float(scores.max()), 4),
             "single_recall": round(float(np.mean(p[single] >= t)), 4),
             "multi_recall": round(float(np.mean(p[~single] < t)), 4),
             "photos": {SINGLE_ITEM: int(single.sum()), MULTI_ITEM: int((~single).sum())}}
    return t, stats

