"""The garment check: one more linear head on the attribute model's crop features, "which of the garment types is
this crop, or is it no garment at all?".

Why: the detector decides from the whole photo whether a box holds a garment; on single-item product photos it
fires on hats and shoes. The attribute model already looks at every garment crop, so a head on its pooled features
checks each box at no extra backbone pass: the pipeline drops a garment whose detector score times the head's
p(garment) = 1 - p(none) is under ``conf``, and leaves the others as the detector gave them
(fashion2stage/app/pipeline.py; docs/OUTPUT.md). The head's type probabilities re-type nothing, and its p(none)
re-ranks nothing: on street crops both are far less accurate than the detector (BENCHMARKS.md, "Per domain").

The head is a multinomial logistic regression (scikit-learn) on the frozen features of crops cut exactly as at
inference: ground-truth boxes, plus the detector's own boxes on the training photos, labelled by overlap with the
truth (IoU >= 0.5: that garment's type; < 0.3: "none"; between: left out; on a class folder's garment photo, whose
box is only a guess, nothing is called "none"), and every box on a photo of a no-garment class (hats, shoes)
labelled "none". It is stored as one more head of the attribute run (``config.json`` ``type_head``, weights in
``weights.safetensors``), so ONNX export and loading need nothing new.

The item-type head: a second linear head on the same features, "which garment type is the one item of this
product photo?", fitted on the class-folder garment photos alone (every photo of each folder, one crop per photo:
its foreground box). Why a second head: the check is fitted mostly on street crops and reads the type of a product
crop worse than the detector does (0.86 against 0.88 on fashion-bench products/val), while a head that sees only
product crops reads it better (0.91). It is used only by the pipeline's single-item mode (fashion2stage/app/
pipeline.py, ``single_item``: among the types the detector proposes for the item, the highest detector score x
this head's probability wins); it is stored like the check (``config.json`` ``item_type_head``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from fashion2stage.cache import key, photo_identity
from fashion2stage.foreground import foreground_box
from fashion2stage.geometry import box_iou, crop
from fashion2stage.photo_loop import detect_photos
from fashion2stage.records import Dataset, ImageRecord
from fashion2stage.roles import NO_GARMENT, TYPE_KEY

NONE = NO_GARMENT
POSITIVE_IOU = 0.5
NEGATIVE_IOU = 0.3


@dataclass
class TypeSamples:
    """Crop features and their labels; ``groups`` is the photo each crop came from (for grouped cross-validation)."""
    features: np.ndarray  # (N, C) float32
    labels: list[str]
    groups: list[str]
    counts: dict[str, int] = field(default_factory=dict)  # per source: crops kept


def labelled_boxes(record: ImageRecord, detections: list, image: np.ndarray | None = None) -> list[tuple[np.ndarray, str]]:
    """The boxes of one training photo with their labels: its true garments, then the detector's boxes labelled by
    overlap with them. A photo of a no-garment class gives its foreground box (from ``image``) and every detection
    as "none"."""
    if record.image_class is not None and record.item_type is None:
        out = [] if image is None else [(foreground_box(image)[0], NONE)]
        return out + [(np.asarray(d.box_xyxy, dtype=np.float64), NONE) for d in detections]
    out = [(np.asarray(g.box_xyxy, dtype=np.float64), g.type) for g in record.garments]
    if not detections:
        return out
    det = np.stack([np.asarray(d.box_xyxy, dtype=np.float64) for d in detections])
    if not record.garments:
        return out + [(b, NONE) for b in det]
    iou = box_iou(det, np.stack([g.box_xyxy for g in record.garments]))
    # a class folder's photo holds its one item, but its box is a guess (foreground, or the whole photo when that
    # failed): a detection away from the guess may still be the item, so it is left out rather than called "none"
    one_item = record.image_class is not None
    for box, row in zip(det, iou):
        best = int(row.argmax())
        if row[best] >= POSITIVE_IOU:
            out.append((box, record.garments[best].type))
        elif row[best] < NEGATIVE_IOU and not one_item:
            out.append((box, NONE))
    return out


@torch.no_grad()
def crop_features(predictor, crops: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """(N, H, W, 3) uint8 crops -> (N, C) pooled features of the attribute model (eval mode, no dropout)."""
    from classifiers.attributes import to_input  # noqa: PLC0415

    model = predictor.model.eval()
    out = [model.forward_features(to_input(crops[i:i + batch_size], predictor.normalisation).to(predictor.net.device))
           .float().cpu().numpy() for i in range(0, len(crops), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, model.backbone.num_features), np.float32)


def collect(dataset: Dataset, predictor, detector=None, conf: float = 0.1, max_boxes: int = 10, log=print,
            shelf=None, scope=None) -> tuple[TypeSamples, int]:
    """Features and labels of every labelled box of ``dataset`` (see :func:`labelled_boxes`), and how many photos
    were read from ``shelf``. ``detector`` (optional, anything with ``predict(images, conf, batch_size)``) adds its
    ``max_boxes`` best boxes at score >= ``conf``. Photos go through :func:`fashion2stage.photo_loop.detect_photos`;
    with ``shelf`` (a :class:`fashion2stage.cache.Shelf`) each photo's crops are cached under ``scope`` (what else
    they depend on: the models, ``conf``, ``max_boxes``), the photo and its labels. Unreadable photos are named in
    one warning line each and left out."""
    recs = dataset.records
    keys = [key("type_head", scope, _labels_of(r), photo_identity(r.path)) for r in recs] \
        if shelf is not None else None
    t0 = time.perf_counter()

    def finish(i: int, image: np.ndarray, found: list) -> dict:
        boxes = labelled_boxes(recs[i], sorted(found, key=lambda g: -g.score)[:max_boxes], image)
        dim = predictor.model.backbone.num_features
        feats = crop_features(predictor, np.stack([crop(image, b, predictor.crop_spec)[0] for b, _ in boxes])) \
            if boxes else np.zeros((0, dim), np.float32)
        if (i + 1) % 100 == 0:
            log(f"type head: {dataset.source}: {i + 1}/{len(recs)} photos, {time.perf_counter() - t0:.0f} s")
        return {"features": feats.astype(np.float32), "labels": np.array([lab for _, lab in boxes], dtype=str)}

    parts, reused = detect_photos([r.path for r in recs], detector, conf, finish, shelf, keys, batch_size=8, log=log)
    kept = [(r, p) for r, p in zip(recs, parts) if p is not None]
    dim = predictor.model.backbone.num_features
    feats = [p["features"] for _, p in kept]
    labels = [str(k) for _, p in kept for k in p["labels"]]
    groups = [f"{dataset.source}|{r.file}" for r, p in kept for _ in p["labels"]]
    return TypeSamples(np.concatenate(feats) if feats else np.zeros((0, dim), np.float32), labels, groups,
                       {dataset.source: len(labels)}), reused


def _labels_of(r: ImageRecord) -> list:
    """What of a record decides its boxes' labels, for the cache key."""
    return [r.image_class, r.item_type, [[g.type, [float(v) for v in g.box_xyxy]] for g in r.garments]]


def fit(samples: TypeSamples, classes: list[str], c: float = 1.0, seed: int = 0):
    """A multinomial logistic regression on standardised features, folded back into one ``(W, b)`` over the raw
    features: logits = features @ W.T + b, rows in ``classes`` order. Classes are weighted inversely to their
    counts, so the many "none" boxes do not decide the prior. Returns (W, b, the fitted scikit-learn model)."""
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415

    missing = [k for k in classes if k not in set(samples.labels)]
    if missing:
        raise ValueError(f"no training crop of class(es) {missing}: every type and 'none' needs examples")
    unknown = sorted(set(samples.labels) - set(classes))
    if unknown:
        raise ValueError(f"crops labelled {unknown}, not among the head's classes {classes}")
    x = samples.features.astype(np.float64)
    mean, std = x.mean(0), x.std(0) + 1e-6
    y = np.array([classes.index(k) for k in samples.labels])
    clf = LogisticRegression(C=c, max_iter=3000, class_weight="balanced", random_state=seed)
    clf.fit((x - mean) / std, y)
    coef, intercept = clf.coef_, clf.intercept_
    if len(clf.classes_) == 2:  # scikit-learn gives one row, the logit of classes_[1] against classes_[0]
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.array([0.0, intercept[0]])
    w = np.zeros((len(classes), x.shape[1]))
    b = np.zeros(len(classes))
    w[clf.classes_] = coef / std
    b[clf.classes_] = intercept - (coef * mean / std).sum(1)
    b[np.setdiff1d(np.arange(len(classes)), clf.classes_)] = -1e4
    return w.astype(np.float32), b.astype(np.float32), clf


def choose_c(samples: TypeSamples, classes: list[str], grid=(0.003, 0.01, 0.03, 0.1, 0.3), folds: int = 3, log=print,
             criterion: str = "accuracy") -> float:
    """The regularisation strength with the best photo-grouped cross-validated ``criterion`` on the training crops:
    ``"accuracy"`` (the check, whose answer is thresholded), or ``"log_loss"`` (the item-type head, whose
    probabilities are multiplied with the detector's scores, so how well they are calibrated matters)."""
    from sklearn.model_selection import GroupKFold  # noqa: PLC0415

    if criterion not in ("accuracy", "log_loss"):
        raise ValueError(f"criterion {criterion!r}: expected accuracy or log_loss")
    y = np.array(samples.labels)
    scores = {}
    for c in grid:
        folds_scores = []
        for tr, te in GroupKFold(n_splits=folds).split(samples.features, y, samples.groups):
            sub = TypeSamples(samples.features[tr], [samples.labels[i] for i in tr], [samples.groups[i] for i in tr])
            w, b, _ = fit(sub, classes, c)
            logits = samples.features[te] @ w.T + b
            truth = np.array([classes.index(k) for k in y[te]])
            if criterion == "accuracy":
                folds_scores.append(float(np.mean(logits.argmax(1) == truth)))
            else:  # minus the mean negative log-likelihood, so that higher is better for both
                z = logits - logits.max(1, keepdims=True)
                logp = z - np.log(np.exp(z).sum(1, keepdims=True))
                folds_scores.append(float(np.mean(logp[np.arange(len(truth)), truth])))
        scores[c] = float(np.mean(folds_scores))
        name = "crop accuracy" if criterion == "accuracy" else "log-loss"
        log(f"type head: C={c}: cross-validated {name} {abs(scores[c]):.3f}")
    return max(scores, key=lambda k: (scores[k], -k))  # ties: the stronger regularisation


def attach(model, w: np.ndarray, b: np.ndarray, key: str = TYPE_KEY) -> None:
    """Add (or replace) the type head (or, with ``key=ITEM_TYPE_KEY``, the item-type head) of an AttributeModel
    with the given weights."""
    from classifiers.attributes import _module_name  # noqa: PLC0415

    head = torch.nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(w))
        head.bias.copy_(torch.from_numpy(b))
    model.keys[key] = w.shape[0]
    model.heads[_module_name(key)] = head.to(next(model.parameters()).device)


def detach(model, key: str) -> None:
    """Remove the head ``key`` (the type or item-type head) of an AttributeModel, if it has one."""
    from classifiers.attributes import _module_name  # noqa: PLC0415

    if model.keys.pop(key, None) is not None:
        del model.heads[_module_name(key)]


def save_run(src_run, dst_run, predictor, entry: dict, item_entry: dict | None = None) -> None:
    """Write ``dst_run``: the attribute run ``src_run`` with the type head now in ``predictor.model`` (weights and
    the config ``type_head`` entry, and ``item_type_head`` when ``item_entry`` is given); labels, box errors and
    metrics are copied. Files are written atomically."""
    from pathlib import Path  # noqa: PLC0415

    from fashion2stage.jsonspec import to_json  # noqa: PLC0415
    from fashion2stage.runs import load_spec, save_config, save_weights  # noqa: PLC0415
    from fashion2stage.specs import WEIGHTS_FILE  # noqa: PLC0415

    src, dst = Path(src_run), Path(dst_run)
    spec = load_spec(src, "attributes")
    dst.mkdir(parents=True, exist_ok=True)
    save_weights(dst / WEIGHTS_FILE, predictor.model)
    # through the spec (AttributeSpec.type_head, .item_type_head): the entries are checked as a load checks them
    save_config(dst, {**to_json(spec), "weights": WEIGHTS_FILE, "type_head": entry, "item_type_head": item_entry})
    copy_run_files(src, dst)


def copy_run_files(src, dst) -> None:
    """Copy every file of the attribute run ``src`` into ``dst`` but its config, weights and checkpoint (labels,
    box errors, metrics ...), each atomically; metrics.json last, as scripts take a run folder holding it for a
    finished one."""
    import shutil  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    from fashion2stage.specs import WEIGHTS_FILE  # noqa: PLC0415

    src, dst = Path(src), Path(dst)
    for f in sorted((f for f in src.iterdir() if f.is_file() and f.name not in ("config.json", WEIGHTS_FILE, "last.pt")),
                    key=lambda f: f.name == "metrics.json"):
        tmp = dst / f".{f.name}.tmp"
        shutil.copy2(f, tmp)
        tmp.replace(dst / f.name)
