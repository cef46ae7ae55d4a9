"""``fashion2stage type-head-train``: fit the garment-type check (classifiers/type_head.py) of an attribute run on
labelled boxes from several sources, and write a new attribute run folder that carries it.

Sources are the detector's kinds: COCO detection / keypoints json (typed boxes) and class folders (one item per
photo, ``--classes`` mapping; garment photos get a foreground box, no-garment photos are all "none"). With
``--detector`` (default: the one that will run before this model) the detector's own boxes on the training photos
are added, labelled by overlap, so the head learns the boxes it will really be shown. Cost: one detector pass and
one backbone pass per photo and box (~1 s per photo on 2 CPU cores), then a minute of scikit-learn; each photo's
crop features are an entry of the one cache (fashion2stage/cache.py: the per-user folder, or ``--cache DIR``), so a
rerun, or a run that adds sources, computes only what is new. ``--max-photos`` draws a sample of each source when
that is too slow.

With class-folder sources it also fits the item-type head (classifiers/type_head.py) on every garment photo of
them (not sampled: one foreground crop and one backbone pass per photo, ~0.05 s each), unless ``--no-item-head``.
"""
from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from classifiers.type_head import NONE, TypeSamples, attach, choose_c, collect, detach, fit, save_run
from fashion2stage.cache import Shelf, file_digest, model_identity
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
        datasets.append(add_pseudo_boxes(ds, "foreground", record=out / "pseudo_boxes.json", log=log)
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
    """Fit the head and write ``cfg.out`` (an attribute run folder); returns it. Each photo's crop features are
    cached (``cfg.cache``, default the per-user cache folder): a rerun, or a run that adds sources, computes only
    what is new."""
    from classifiers.attributes import load_attribute_model  # noqa: PLC0415
    from detectors.load import load_detector  # noqa: PLC0415
    from fashion2stage.specs import WEIGHTS_FILE  # noqa: PLC0415

    out = Path(cfg.out)
    if out.resolve() == Path(cfg.classifier).resolve():
        raise ValueError(f"--out {out} is the --classifier run itself: write the new run to another folder")
    out.mkdir(parents=True, exist_ok=True)
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
    shelf = Shelf("type_head", codec="npz", root=cfg.cache, log=log)
    scope = {"classifier": [file_digest(Path(cfg.classifier) / f) for f in (WEIGHTS_FILE, "config.json")],
             "conf": cfg.conf,
             "detector": model_identity(detector) if detector is not None else None, "max_boxes": cfg.max_boxes,
             "version": 1}
    parts = [_collect(ds, predictor, detector, cfg.conf, cfg.max_boxes, shelf, scope, log) for ds in datasets]
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
        item_entry = fit_item_head(predictor, items, shelf, {**scope, "detector": None, "item": True}, cfg, log)
    save_run(cfg.classifier, out, predictor, entry, item_entry)
    log(f"type head: C={c}, crops per class {counts} -> {out}")
    return out


def fit_item_head(predictor, items: list[Dataset], shelf: Shelf, scope: dict, cfg: TypeHeadConfig,
                  log=print) -> dict:
    """Fit the item-type head on one foreground crop of every photo of ``items`` (class folders' garment photos),
    attach it to ``predictor.model`` and return its config entry. Its classes are the types those photos hold."""
    parts = [_collect(ds, predictor, None, cfg.conf, cfg.max_boxes, shelf, scope, log) for ds in items]
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


def _collect(ds: Dataset, predictor, detector, conf: float, max_boxes: int, shelf: Shelf, scope: dict,
             log=print) -> TypeSamples:
    """:func:`classifiers.type_head.collect` of one source, with one line saying how much came from the cache."""
    t0 = time.perf_counter()
    part, reused = collect(ds, predictor, detector, conf, max_boxes, log, shelf, scope)
    if reused == len(ds.records):
        log(f"type head: {ds.source}: {len(part.labels)} crops from the cache {shelf.folder}")
    else:
        log(f"type head: {ds.source}: {len(part.labels)} crops in {time.perf_counter() - t0:.0f} s"
            + (f" ({reused} of {len(ds.records)} photos were cached)" if reused else ""))
    return part
