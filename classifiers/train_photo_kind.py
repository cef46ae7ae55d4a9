"""``fashion2stage photo-kind-train``: fit the photo-kind head (classifiers/photo_kind.py) of an attribute run on
photos of known kind, choose its threshold on validation photos, and write a new attribute run folder that carries
it (every other head kept as it was).

Sources are lists of photos (classifiers/photo_kind.py ``photo_paths``): ``--single`` for photos of one item and
no person (class folders of products, held-flat garments), ``--multi`` for photos of people (street photos); the
``--val-single`` / ``--val-multi`` ones choose the threshold and measure it, and are never fitted on. Cost: one
detector pass and one backbone pass per photo (~0.5 s on 2 CPU cores), then seconds of scikit-learn; features are
cached per source in ``<out>/features`` (or ``--cache``), so a rerun computes only what is new.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from classifiers.photo_kind import KindFeatures, choose_threshold, collect, p_single, photo_paths, sample
from classifiers.train_type_head import _digest, _digest_text
from classifiers.type_head import TypeSamples, attach, choose_c, copy_run_files, fit
from fashion2stage.roles import MULTI_ITEM, PHOTO_KIND_KEY, PHOTO_KINDS, SINGLE_ITEM


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
    cache: str | None = None  # folder of per-source feature files (default: <out>/features)
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
    cache = Path(cfg.cache) if cfg.cache else out / "features"
    cache.mkdir(parents=True, exist_ok=True)
    predictor = load_attribute_model(cfg.classifier, cfg.device)
    if detector is None and cfg.detector:
        detector = load_detector(cfg.detector, cfg.device)
    fingerprint = {"classifier": _digest(Path(cfg.classifier) / "weights.safetensors"), "conf": cfg.conf,
                   "detector": _digest(Path(cfg.detector) / "weights.safetensors") if cfg.detector else None,
                   "version": 1}

    def features(sources: list[str], n: int | None) -> dict[str, KindFeatures]:
        return {s: _cached(cache, fingerprint, sample(photo_paths(s), n, cfg.seed),
                           lambda p: collect(p, predictor, detector, cfg.conf, log), log) for s in sources}

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
    from fashion2stage.specs import WEIGHTS_FILE  # noqa: PLC0415
    from fashion2stage.runs import load_config, save_config, save_weights  # noqa: PLC0415

    src, dst = Path(src_run), Path(dst_run)
    config = load_config(src, kind="attributes")
    dst.mkdir(parents=True, exist_ok=True)
    save_weights(dst / WEIGHTS_FILE, predictor.model)
    save_config(dst, {**config, "photo_kind_head": entry})
    copy_run_files(src, dst)


def _cached(cache: Path, fingerprint: dict, paths: list[Path], compute, log=print) -> KindFeatures:
    """``compute(paths)``, read from / written to ``cache`` under a key of ``fingerprint`` and the photos."""
    key = {**fingerprint, "files": _digest_text("\n".join(str(p) for p in paths))}
    path = cache / f"kind-{_digest_text(json.dumps(key, sort_keys=True))[:16]}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            part = KindFeatures(z["features"], [str(x) for x in z["files"]], z["has_garment"])
        log(f"photo kind: {len(part.files)} photos from the cache {path}")
        return part
    t0 = time.perf_counter()
    part = compute(paths)
    log(f"photo kind: {len(part.files)} photos in {time.perf_counter() - t0:.0f} s")
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez_compressed(tmp, features=part.features, files=np.array(part.files, dtype=str),
                        has_garment=part.has_garment, key=json.dumps(key))
    tmp.replace(path)
    return part
