"""``fashion2stage type-head-train``: fit the garment-type check (classifiers/type_head.py) of an attribute run on
labelled boxes from several sources, and write a new attribute run folder that carries it.

Sources are the detector's kinds: COCO detection / keypoints json (typed boxes) and class folders (one item per
photo, ``--classes`` mapping; garment photos get a foreground box, no-garment photos are all "none"). With
``--detector`` (default: the one that will run before this model) the detector's own boxes on the training photos
are added, labelled by overlap, so the head learns the boxes it will really be shown. Cost: one detector pass and
one backbone pass per photo and box (~1 s per photo on 2 CPU cores), then a minute of scikit-learn; features are
cached in the output folder. ``--max-photos`` draws a sample of each source when that is too slow.

With class-folder sources it also fits the item-type head (classifiers/type_head.py) on every garment photo of
them (not sampled: one foreground crop and one backbone pass per photo, ~0.05 s each), unless ``--no-item-head``.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from classifiers.type_head import NONE, TypeSamples, attach, choose_c, collect, detach, fit, save_run
from fashion2stage.errors import DataError
from fashion2stage.records import Dataset
from fashion2stage.roles import ITEM_TYPE_KEY
from fashion2stage.train_specs import TypeHeadConfig

def read_sources(cfg: TypeHeadConfig, out: Path, log=print, sample: bool = True) -> list[Dataset]:
    """Every ``--data`` source with boxes: class folders get foreground pseudo-boxes (cached in ``out``); a class
    folder is two sources, its garment and its no-garment photos. ``sample``: at most ``cfg.max_photos`` of each."""
    from fashion2stage.pseudo_boxes import add_pseudo_boxes  # noqa: PLC0415
    from fashion2stage.sources import read_source  # noqa: PLC0415

    datasets = []
    for path in cfg.data:
        ds = read_source(path, cfg.classes, images=cfg.images, split="train")
        if ds.tags:
            raise DataError(path, "a tag CSV has no boxes to fit the garment check on: give COCO files or class "
                                  "folders")
        datasets.append(add_pseudo_boxes(ds, "foreground", cache=out / "pseudo_boxes.json", log=log)
                        if ds.classes else ds)
    from fashion2stage.sampling import split_class_folder  # noqa: PLC0415

    parts = [part for ds in datasets for part, _ in split_class_folder(ds)]
    return [_sample(part, cfg.max_photos, cfg.seed) for part in parts] if sample else parts


def is_item_source(ds: Dataset) -> bool:
    """A class folder's garment photos (the item-type head's training photos)."""
    return bool(ds.records) and all(r.image_class is not None and r.item_type is not None for r in ds.records)


def _sample(ds: Dataset, n: int | None, seed: int) -> Dataset:
    """At most ``n`` photos of ``ds``, drawn without replacement (the same ones for the same seed), in order."""
    if n is None or len(ds.records) <= n:
        return ds
    keep = np.sort(np.random.default_rng(seed).choice(len(ds.records), n, replace=False))
    return replace(ds, records=[ds.records[i] for i in keep])


def train_type_head(cfg: TypeHeadConfig, log=print) -> Path:
    """Fit the head and write ``cfg.out`` (an attribute run folder); returns it. Each source's features are cached
    (``cfg.cache``, default ``out/features``): a rerun, or a run that adds sources, computes only what is new."""
    from classifiers.attributes import load_attribute_model  # noqa: PLC0415
    from detectors.load import load_detector  # noqa: PLC0415

    out = Path(cfg.out)
    if out.resolve() == Path(cfg.classifier).resolve():
        raise ValueError(f"--out {out} is the --classifier run itself: write the new run to another folder")
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cfg.cache) if cfg.cache else out / "features"
    cache.mkdir(parents=True, exist_ok=True)
    predictor = load_attribute_model(cfg.classifier, cfg.device)
    types = list(predictor.labels.garment_types)
    classes = types + [NONE]
    full = read_sources(cfg, out, log, sample=False)
    datasets = [_sample(ds, cfg.max_photos, cfg.seed) for ds in full]
    for ds in datasets:
        unknown = sorted({g.type for r in ds.records for g in r.garments} - set(types))
        if unknown:
            raise DataError(ds.source, f"garment type(s) {unknown} are not in the model's types {types}")
    detector = load_detector(cfg.detector, cfg.device) if cfg.detector else None
    fingerprint = {"classifier": _digest(Path(cfg.classifier) / "weights.safetensors"), "conf": cfg.conf,
                   "detector": _digest(Path(cfg.detector) / "weights.safetensors") if cfg.detector else None,
                   "max_boxes": cfg.max_boxes, "version": 1}
    parts = [_cached(cache, fingerprint, ds, lambda d: collect([d], predictor, detector, cfg.conf, cfg.max_boxes, log),
                     log) for ds in datasets]
    samples = TypeSamples(np.concatenate([p.features for p in parts]), [k for p in parts for k in p.labels],
                          [g for p in parts for g in p.groups],
                          {ds.source: len(p.labels) for ds, p in zip(datasets, parts)})
    c = cfg.c if cfg.c is not None else choose_c(samples, classes, log=log)
    w, b, _ = fit(samples, classes, c, cfg.seed)
    attach(predictor.model, w, b)
    counts = {k: samples.labels.count(k) for k in classes}
    entry = {"classes": classes, "c": c, "crops": counts, "sources": samples.counts,
             "train": asdict(cfg)}
    item_entry = None
    detach(predictor.model, ITEM_TYPE_KEY)  # a head of the --classifier run is refitted or dropped, never kept
    items = [ds for ds in full if is_item_source(ds)] if cfg.item_head else []
    if items:
        item_entry = fit_item_head(predictor, items, cache, {**fingerprint, "detector": None, "item": True}, cfg, log)
    save_run(cfg.classifier, out, predictor, entry, item_entry)
    log(f"type head: C={c}, crops per class {counts} -> {out}")
    return out


def fit_item_head(predictor, items: list[Dataset], cache: Path, fingerprint: dict, cfg: TypeHeadConfig,
                  log=print) -> dict:
    """Fit the item-type head on one foreground crop of every photo of ``items`` (class folders' garment photos),
    attach it to ``predictor.model`` and return its config entry. Its classes are the types those photos hold."""
    parts = [_cached(cache, fingerprint, ds, lambda d: collect([d], predictor, None, log=log), log) for ds in items]
    samples = TypeSamples(np.concatenate([p.features for p in parts]), [k for p in parts for k in p.labels],
                          [g for p in parts for g in p.groups],
                          {ds.source: len(p.labels) for ds, p in zip(items, parts)})
    types = [k for k in predictor.labels.garment_types if k in set(samples.labels)]
    if len(types) < 2:
        raise DataError(items[0].source, f"the item-type head needs garment photos of two types or more, found "
                                         f"{types}; pass --no-item-head to fit the check alone")
    c = cfg.c if cfg.c is not None else choose_c(samples, types, log=lambda m: log(m.replace("type head", "item head")),
                                                 criterion="log_loss")
    w, b, _ = fit(samples, types, c, cfg.seed)
    attach(predictor.model, w, b, ITEM_TYPE_KEY)
    counts = {k: samples.labels.count(k) for k in types}
    log(f"item head: C={c}, photos per type {counts}")
    return {"classes": types, "c": c, "crops": counts, "sources": samples.counts}


def _cached(cache: Path, fingerprint: dict, ds: Dataset, compute, log=print) -> TypeSamples:
    """``compute(ds)``'s samples, read from / written to ``cache`` under a key of ``fingerprint`` and the photos."""
    key = {**fingerprint, "source": ds.source, "files": _digest_text("\n".join(r.file for r in ds.records))}
    path = cache / f"{_digest_text(json.dumps(key, sort_keys=True))[:16]}.npz"
    if path.is_file():
        part = _load(path)
        log(f"type head: {ds.source}: {len(part.labels)} crops from the cache {path}")
        return part
    t0 = time.perf_counter()
    part = compute(ds)
    log(f"type head: {ds.source}: {len(part.labels)} crops in {time.perf_counter() - t0:.0f} s")
    _save(path, part, key)
    return part


def _digest(path: Path) -> str:
    import hashlib  # noqa: PLC0415

    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _digest_text(text: str) -> str:
    import hashlib  # noqa: PLC0415

    return hashlib.sha1(text.encode()).hexdigest()


def _save(path: Path, samples: TypeSamples, key: dict) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez_compressed(tmp, features=samples.features, labels=np.array(samples.labels, dtype=str),
                        groups=np.array(samples.groups, dtype=str), key=json.dumps(key))
    tmp.replace(path)


def _load(path: Path) -> TypeSamples:
    with np.load(path, allow_pickle=False) as z:
        return TypeSamples(z["features"], [str(x) for x in z["labels"]], [str(x) for x in z["groups"]])
