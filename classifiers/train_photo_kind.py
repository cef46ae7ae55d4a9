"""``fashion2stage photo-kind-train``: fit the photo-kind head (classifiers/photo_kind.py) of an attribute run on
photos of known kind, choose its threshold on validation photos, and write a new attribute run folder that carries
it (every other head kept as it was).

Sources are lists of photos (classifiers/photo_kind.py ``photo_paths``): ``--single`` for photos of one item and
no person (class folders of products, held-flat garments), ``--multi`` for photos of people (street photos); the
``--val-single`` / ``--val-multi`` ones choose the threshold and measure it, and are never fitted on. Cost: one
detector pass and one backbone pass per photo (~0.5 s on 2 CPU cores), then seconds of scikit-learn; each photo's
crop features are an entry of the one cache (fashion2stage/cache.py: the per-user folder, or ``--cache DIR``), so a
rerun computes only what is new.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from classifiers.photo_kind import KindFeatures, choose_threshold, collect, p_single, photo_paths, sample
from classifiers.type_head import TypeSamples, attach, choose_c, copy_run_files, fit
from fashion2stage.cache import Shelf, file_digest, model_identity
from fashion2stage.roles import MULTI_ITEM, PHOTO_KIND_KEY, PHOTO_KINDS, SINGLE_ITEM
from fashion2stage.specs import WEIGHTS_FILE


@dataclass
class PhotoKindConfig:
    classifier: str  # the attribute run folder the head is added to
    out: str  # the new attribute run folder
    single: list[str] = field(default_factory=list)  # training photos of one item and no person
    multi: list[str] = field(default_factory=list)  # training photos of people
    val_single: list[str] = field(default_factory=list)  # validation photos: the threshold and the measurement
    val_multi: list[str] = field(default_factory=list)
    detector: str | None = None  # the detector that runs before this model (its top box is the judged crop)
    conf: float = 0.25  # the pipeline's operating point: the top box from this score, else the whole photo
    max_photos: int | None = None  # per training source: a sample
    max_val_photos: int | None = None  # per validation source: a sample
    cache: str | None = None  # cache folder of the per-photo crop features (default: the per-user cache)
    c: float | None = None  # regularisation; None: chosen by photo-grouped cross-validation
    device: str = "cpu"
    seed: int = 0


def train_photo_kind(cfg: PhotoKindConfig, log=print, detector=None) -> Path:
    """Fit the head, choose its threshold and write ``cfg.out``; returns it. ``detector``: ``cfg.detector`` already
    loaded as the pipeline runs it (its inference settings and runtime; default: loaded here, on torch)."""
    from classifiers.attributes import load_attribute_model  # noqa: PLC0415
    from detectors.load import load_detector  # noqa: PLC0415

    out = Path(cfg.out)
    if out.resolve() == Path(cfg.classifier).resolve():
        raise ValueError(f"--out {out} is the --classifier run itself: write the new run to another folder")
    for name in ("single", "multi", "val_single", "val_multi"):
        if not getattr(cfg, name):
            raise ValueError(f"no --{name.replace('_', '-')} source: the head needs photos of both kinds to fit "
                             f"and to choose its threshold")
    predictor = load_attribute_model(cfg.classifier, cfg.device)
    if detector is None and cfg.detector:
        detector = load_detector(cfg.detector, cfg.device)
    shelf = Shelf("photo_kind", codec="npz", root=cfg.cache, log=log)
    scope = {"classifier": [file_digest(Path(cfg.classifier) / f) for f in (WEIGHTS_FILE, "config.json")],
             "conf": cfg.conf, "detector": model_identity(detector) if detector is not None else None, "version": 1}

    def features(sources: list[str], n: int | None) -> dict[str, KindFeatures]:
        return {s: _collect(sample(photo_paths(s), n, cfg.seed), predictor, detector, cfg.conf, shelf, scope, log)
                for s in sources}

    train = {SINGLE_ITEM: features(cfg.single, cfg.max_photos), MULTI_ITEM: features(cfg.multi, cfg.max_photos)}
    samples = TypeSamples(np.concatenate([f.features for part in train.values() for f in part.values()]),
                          [k for k, part in train.items() for f in part.values() for _ in f.files],
                          [p for part in train.values() for f in part.values() for p in f.files])
    classes = list(PHOTO_KINDS)
    c = cfg.c if cfg.c is not None else choose_c(samples, classes, log=lambda m: log(m.replace("type", "photo-kind")),
                                                 criterion="log_loss")
    w, b, _ = fit(samples, classes, c, cfg.seed)
    val = {SINGLE_ITEM: features(cfg.val_single, cfg.max_val_photos),
           MULTI_ITEM: features(cfg.val_multi, cfg.max_val_photos)}
    p = {k: {s: p_single(f.features, w, b) for s, f in part.items()} for k, part in val.items()}
    threshold, stats = choose_threshold(np.concatenate([v for part in p.values() for v in part.values()]),
                                        np.concatenate([np.full(len(v), k == SINGLE_ITEM)
                                                        for k, part in p.items() for v in part.values()]))
    stats["judged_single"] = {s: round(float(np.mean(v >= threshold)), 4) for part in p.values() for s, v in part.items()}
    attach(predictor.model, w, b, PHOTO_KIND_KEY)
    entry = {"classes": classes, "threshold": round(threshold, 4), "c": c, "conf": cfg.conf,
             "photos": {s: len(f.files) for part in train.values() for s, f in part.items()},
             "val": stats, "train": asdict(cfg)}
    save_run(cfg.classifier, out, predictor, entry)
    log(f"photo kind: C={c}, threshold {threshold:.3f}; validation: {json.dumps(stats)} -> {out}")
    return out


def save_run(src_run, dst_run, predictor, entry: dict) -> None:
    """Write ``dst_run``: the attribute run ``src_run`` with the photo-kind head now in ``predictor.model`` (weights
    and the config ``photo_kind_head`` entry; every other entry and file as it was). Files are written atomically."""
    from fashion2stage.runs import load_config, save_config, save_weights  # noqa: PLC0415

    src, dst = Path(src_run), Path(dst_run)
    config = load_config(src, kind="attributes")
    dst.mkdir(parents=True, exist_ok=True)
    save_weights(dst / WEIGHTS_FILE, predictor.model)
    save_config(dst, {**config, "photo_kind_head": entry})
    copy_run_files(src, dst)


def _collect(paths: list[Path], predictor, detector, conf: float, shelf: Shelf, scope: dict,
             log=print) -> KindFeatures:
    """:func:`classifiers.photo_kind.collect` of one source, with one line saying how much came from the cache."""
    t0 = time.perf_counter()
    part, reused = collect(paths, predictor, detector, conf, log, shelf, scope)
    if paths and reused == len(paths):
        log(f"photo kind: {len(part.files)} photos from the cache {shelf.folder}")
    else:
        log(f"photo kind: {len(part.files)} photos in {time.perf_counter() - t0:.0f} s"
            + (f" ({reused} were cached)" if reused else ""))
    return part
