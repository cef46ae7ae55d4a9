"""``detect-train`` and ``detect-val``: the steps both backends share.

Read and check the data -> open (or resume) the run folder -> the backend trains -> the SAME evaluator for both
backends (our predictions -> :func:`fashion2stage.metrics.coco_detection_eval`) -> box errors on the validation
split (:func:`fashion2stage.jitter.collect_box_errors`, what ``classify-train`` jitters its crops with) -> plots.
"""
from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path

from detectors.load import Detector, load_detector
from fashion2stage import engine
from fashion2stage.distributed import Dist, under_torchrun
from fashion2stage.errors import DataError
from fashion2stage.labels import LabelSet
from fashion2stage.metrics.domain import type_report
from fashion2stage.photo_loop import detect_photos
from fashion2stage.io import write_json_atomic
from fashion2stage.records import Dataset, ImageRecord
from fashion2stage.sampling import split_class_folder
from fashion2stage.runs import load_config, load_labels, save_config
from fashion2stage.sources import read_detection_data, read_source
from fashion2stage.specs import DETECTOR_BACKENDS
from fashion2stage.train_specs import DetectTrainConfig

BACKENDS = DETECTOR_BACKENDS  # a new backend is added there, where config.json is checked
EVAL_CONF = 0.001  # COCO mAP integrates over all scores: keep nearly every detection
BOX_ERROR_CONF = 0.25  # box errors are measured at the operating threshold `predict` uses by default
TYPE_EVAL_CONF = 0.25  # class-folder sets are scored at that threshold too: "a garment was found" means this
TEACHER_CACHE_CONF = 0.05  # a teacher's garments are cached from this score: --teacher-conf can change without a rerun


def predict_dataset(detector: Detector, dataset: Dataset, conf: float, batch_size: int = 8) -> list[ImageRecord]:
    """Run the detector on every image of ``dataset`` (:func:`fashion2stage.photo_loop.detect_photos`, uncached: the
    weights change while training); one prediction record per readable image, paired by ``file``."""
    found, _ = detect_photos([r.path for r in dataset.records], detector, conf, lambda i, image, gs: gs,
                             batch_size=batch_size)
    return [ImageRecord(file=r.file, root=r.root, width=r.width, height=r.height, garments=g, id=r.id)
            for r, g in zip(dataset.records, found) if g is not None]


def evaluate(detector: Detector, dataset: Dataset, batch_size: int = 8) -> tuple[dict, list[ImageRecord]]:
    """COCO mAP of ``detector`` on a labelled dataset, plus its predictions (all scores >= EVAL_CONF)."""
    from fashion2stage.metrics import coco_detection_eval  # noqa: PLC0415
    t0 = time.perf_counter()
    preds = predict_dataset(detector, dataset, EVAL_CONF, batch_size)
    seconds = time.perf_counter() - t0
    metrics = coco_detection_eval(dataset, preds)
    metrics.pop("log", None)
    metrics["predict_img_per_s"] = len(dataset.records) / seconds
    return metrics, preds


def validate_run(run: str | Path, data: str, images: str | None = None, out: str | Path | None = None,
                 batch_size: int = 8, device: str = "cpu") -> dict:
    """``detect-val``: evaluate a detector run on a labelled COCO set; writes ``metrics.json`` (and
    ``box_errors.json``, ``predictions_coco.json``, ``pr_curve.png``) into ``out`` (default: the run folder)."""
    run = Path(run)
    detector = load_detector(run, device=device)
    dataset = read_detection_data(data, images, labels=detector.labels, split="val")
    return _final_evaluation(detector, dataset, Path(out) if out else run, batch_size)


def _final_evaluation(detector: Detector, dataset: Dataset, out: Path, batch_size: int) -> dict:
    from fashion2stage.formats.coco import detections_to_coco_results, write_coco_results  # noqa: PLC0415
    from fashion2stage.jitter import collect_box_errors  # noqa: PLC0415
    from detectors.plots import plot_pr_curves  # noqa: PLC0415

    out.mkdir(parents=True, exist_ok=True)
    metrics, preds = evaluate(detector, dataset, batch_size)
    confident = [ImageRecord(file=r.file, root=r.root, width=r.width, height=r.height, id=r.id,
                             garments=[g for g in r.garments if g.score >= BOX_ERROR_CONF]) for r in preds]
    stats = collect_box_errors(dataset.records, confident, iou_threshold=0.5)
    stats.save(out / "box_errors.json")
    metrics["box_errors"] = {"conf": BOX_ERROR_CONF, **stats.summary()}
    metrics["data"] = dataset.source
    write_coco_results(out / "predictions_coco.json", detections_to_coco_results(preds, dataset))
    write_json_atomic(out / "metrics.json", metrics)
    plot_pr_curves(dataset, preds, out / "pr_curve.png")
    return metrics


def train_detector(cfg: DetectTrainConfig) -> Path:
    """Train one detector and write its self-describing run folder; returns the folder.

    Faster R-CNN runs under ``torchrun`` (rank 0 writes the folder and evaluates); YOLO hands ``--device`` to
    ultralytics, which starts its own DDP processes, so it refuses to be started by torchrun.
    """
    if cfg.detector not in BACKENDS:
        raise ValueError(f"--detector must be one of {BACKENDS}, got {cfg.detector!r}")
    if cfg.detector == "faster-rcnn" and cfg.weights not in (None, "coco", "none") and \
            not (Path(cfg.weights) / "config.json").is_file():
        raise ValueError(f"--weights for faster-rcnn is 'coco' (torchvision's COCO detector, needs the internet), "
                         f"'none' (random backbone) or a faster-rcnn run folder to fine-tune, got {cfg.weights!r}")
    if cfg.detector == "yolo" and under_torchrun():
        raise ValueError("--detector yolo: ultralytics runs its own DDP; start detect-train without torchrun and "
                         "give the GPUs with --device (e.g. --device 0,1)")
    with engine.start(cfg.device if cfg.detector == "faster-rcnn" else "cpu", cfg.threads, cfg.seed) as ctx:
        return _train(cfg, ctx)


def _train(cfg: DetectTrainConfig, ctx: Dist) -> Path:
    previous_wall = 0.0
    if cfg.resume:
        run = engine.open_run(cfg.project, cfg.name, "detector", True, ctx)
        cfg = engine.resumed_config(cfg, run, "detector")
        previous_wall = float(load_config(run).get("train_wall_seconds", 0.0))
    init_run = Path(cfg.weights) if cfg.detector == "faster-rcnn" and cfg.weights not in (None, "coco", "none") \
        else None
    sources = [read_source(d, cfg.classes, images=cfg.images, split="train") for d in cfg.data]
    # the run it fine-tunes, else the first source with boxes, else the teacher of tag sources
    labels = load_labels(init_run) if init_run else next(
        (s.labels for s in sources if not s.classes and not s.tags),
        load_labels(cfg.teacher) if cfg.teacher else sources[0].labels)
    sources = [relabelled(s, labels) for s in sources]
    val_specs = list(cfg.val) or ([cfg.data[0]] if str(cfg.data[0]).endswith((".yaml", ".yml")) else [])
    vals = [relabelled(read_source(v, cfg.classes, images=cfg.images, split="val"), labels) for v in val_specs]
    run, log = engine.start_run(cfg, "detector", ctx, labels)  # config.json: once the backend knows its model
    with ctx.main_first():  # rank 0 computes the pseudo-boxes and caches them in the run folder; the others read them
        parts = [p for i, s in enumerate(sources)
                 for p in split_class_folder(with_boxes(s, cfg, run, log, i), cfg.balance_types)]
        vals = [v if v.tags else with_boxes(v, cfg, run, log) for v in vals]  # a tag val set is scored by its tags
    sources, shares = [p for p, _ in parts], [share for _, share in parts]
    val = vals[0] if vals else None
    train = sources[0] if len(sources) == 1 else Dataset(
        root=sources[0].root, records=[r for s in sources for r in s.records], labels=labels,
        source=" + ".join(s.source for s in sources))
    log(f"train: {len(train)} images, {sum(len(r.garments) for r in train.records)} boxes from "
        f"{len(sources)} source(s), drawn with the shares below" + (
            "" if cfg.detector == "faster-rcnn" else " (yolo: each image listed a whole number of times per epoch)"))
    for s, share in zip(sources, shares):
        log(f"  source {s.source}: {len(s)} images, {sum(len(r.garments) for r in s.records)} boxes, "
            f"share {share / sum(shares):.3f}")
    log(f"val: {', '.join(f'{v.source} ({len(v)} images)' for v in vals) or 'none'}; {ctx.world_size} process(es)")
    config = {"kind": "detector", "backend": cfg.detector, "image_size": cfg.image_size, "train": asdict(cfg),
              "train_data": [s.source for s in sources], "val_data": [v.source for v in vals],
              "source_sizes": [len(s) for s in sources], "source_shares": shares}
    t0 = time.perf_counter()
    if cfg.detector == "faster-rcnn":
        config.update(_train_faster_rcnn(run, cfg, train, vals, config, ctx, log))
    else:
        config.update(_train_yolo(run, cfg, train, val, config, log, source_repeats(sources, shares, cfg.epoch_size)))
    if ctx.is_main:
        # wall time of the whole command (training + per-epoch validation), summed over resumed sessions
        config["train_wall_seconds"] = previous_wall + time.perf_counter() - t0
        save_config(run, config)
        engine.plot_results(run)
        _final_report(run, cfg, val, labels, str(ctx.device), log)
    ctx.barrier()
    return run


def _final_report(run: Path, cfg: DetectTrainConfig, val: Dataset | None, labels: LabelSet, device: str, log) -> None:
    """metrics.json of the saved weights on the first val set: top-type accuracy on a class folder, else COCO mAP."""
    if val is not None and val.tags:
        report = tag_scores(load_detector(run, device), val, cfg.batch)
        write_json_atomic(run / "metrics.json", {"data": val.source, **report})
        log("val tag " + " ".join(f"{k} {'-' if report[k] is None else f'{report[k]:.4f}'}"
                                  for k in ("precision", "recall", "f1")) + f" (garments scoring >= {report['conf']})")
    elif val is not None and val.classes:
        report = type_report(val.records, predict_dataset(load_detector(run, device), val, TYPE_EVAL_CONF, cfg.batch),
                             labels.garment_types)
        write_json_atomic(run / "metrics.json", {"data": val.source, "conf": TYPE_EVAL_CONF, **report})
        log(f"val top-type accuracy {report['type_accuracy']:.4f} no-garment rate {report['no_garment_rate']:.4f}")
    elif val is not None:
        metrics = _final_evaluation(load_detector(run, device), val, run, cfg.batch)
        log(f"val mAP@[.5:.95] {metrics['map']:.4f} mAP@.5 {metrics['map50']:.4f} "
            + " ".join(f"{k} {v['map50']:.3f}" for k, v in metrics["per_class"].items()))


def _train_faster_rcnn(run: Path, cfg: DetectTrainConfig, train: Dataset, vals: list[Dataset], config: dict,
                       ctx: Dist, log) -> dict:
    from detectors.faster_rcnn_train import train_faster_rcnn  # noqa: PLC0415

    val = vals[0] if vals else None
    val_eval = (lambda det: evaluate(det, val, cfg.batch)[0]) \
        if val is not None and not val.classes and not val.tags else None
    folder_vals = [v for v in vals if v.classes]
    tag_vals = [v for v in vals if v.tags]

    def extra_eval(det) -> dict:  # class-folder val sets: top-type accuracy and no-garment rate, logged per epoch
        out = {}
        for v in folder_vals:
            report = type_report(v.records, predict_dataset(det, v, TYPE_EVAL_CONF, cfg.batch), v.labels.garment_types)
            out.update({f"val_{k}": report[k] for k in ("type_accuracy", "no_garment_rate", "six_way_accuracy")})
        for v in tag_vals:
            report = tag_scores(det, v, cfg.batch)
            out.update({f"val_tag_{k}": report[k] for k in ("precision", "recall", "f1")})
        return out
    return train_faster_rcnn(run, cfg, train, config, val_eval, extra_eval if folder_vals or tag_vals else None, ctx,
                             log)


def tag_scores(detector: Detector, ds: Dataset, batch_size: int) -> dict:
    """Image-level tag precision / recall / F1 of the detector on a tag set (:mod:`fashion2stage.metrics.tags`)."""
    from fashion2stage.metrics.tags import TAG_CONF, score_tags  # noqa: PLC0415
    preds = predict_dataset(detector, ds, TAG_CONF, batch_size)
    return score_tags(ds, {p.file: p.garments for p in preds})


def relabelled(ds: Dataset, labels: LabelSet) -> Dataset:
    """``ds`` under the model's label set; a garment type the model does not know is an error."""
    types = {g.type for r in ds.records for g in r.garments} | {r.item_type for r in ds.records if r.item_type} \
        | {spec["type"] for spec in ds.tags.values() if spec["type"]}
    unknown = sorted(types - set(labels.garment_types))
    if unknown:
        raise DataError(ds.source, f"garment type(s) {unknown} are not in the model's label set {labels.garment_types}")
    return replace(ds, labels=labels)


def with_boxes(ds: Dataset, cfg: DetectTrainConfig, run: Path, log, index: int = 0) -> Dataset:
    """Class-folder sources get their pseudo-boxes, tag sources the teacher's garments the tags keep (both cached
    in the run folder); others are returned as they are."""
    if ds.tags:
        return teacher_boxes(ds, cfg, run, log, index)
    if not ds.classes:
        return ds
    from fashion2stage.pseudo_boxes import add_pseudo_boxes  # noqa: PLC0415
    detector = load_detector(cfg.pseudo_boxes.split(":", 1)[1]) if cfg.pseudo_boxes.startswith("detector:") else None
    return add_pseudo_boxes(ds, cfg.pseudo_boxes, detector=detector, record=run / "pseudo_boxes.json", log=log)


def teacher_boxes(ds: Dataset, cfg: DetectTrainConfig, run: Path, log, index: int) -> Dataset:
    """The ``--teacher`` detector's garments on a tag source (score >= 0.05, cached in
    ``run/teacher_<index>[_flip].json``), kept, dropped and ignored by the photo's tags
    (:func:`fashion2stage.weak_labels.pseudo_label`)."""
    from fashion2stage.detections import FlipTTA, detect_cached  # noqa: PLC0415
    from fashion2stage.formats.tags import tagged_types  # noqa: PLC0415
    from fashion2stage.weak_labels import pseudo_label  # noqa: PLC0415
    if not cfg.teacher:
        raise DataError(ds.source, "a tag CSV source needs --teacher RUN (the detector whose garments the tags "
                                   "filter into pseudo-boxes)")
    teacher = load_detector(cfg.teacher, cfg.device if cfg.detector == "faster-rcnn" else "cpu")
    if cfg.teacher_tta:
        teacher = FlipTTA(teacher)
    cache = run / f"teacher_{index}{'_flip' if cfg.teacher_tta else ''}.json"
    tagged = [r for r in ds.records if tagged_types(r, ds.tags)]  # the rest teach nothing (weak_labels)
    log(f"teacher {cfg.teacher}{' with flip TTA' if cfg.teacher_tta else ''} on the {len(tagged)} photos with a "
        f"garment tag of {len(ds)} in {ds.source} -> {cache.name}")
    detections = detect_cached(teacher, tagged, cache, conf=min(TEACHER_CACHE_CONF, cfg.teacher_conf),
                               batch_size=cfg.batch)
    out = pseudo_label(ds, detections, cfg.teacher_conf, log=log)
    if not out.records:
        raise DataError(ds.source, f"no photo kept a teacher box at --teacher-conf {cfg.teacher_conf}")
    return out


def source_repeats(sources: list[Dataset], shares: list[float], epoch_size: int | None) -> list[int] | None:
    """How many times each record (sources concatenated) is listed in a YOLO epoch so that each source gets about
    its share of ``epoch_size`` draws (default: all records); at least once each, so no photo is dropped. None for
    one source drawn as it is."""
    if len(sources) == 1 and not epoch_size:
        return None
    total = epoch_size or sum(len(s) for s in sources)
    weights = [w / sum(shares) for w in shares]
    return [max(1, round(total * w / len(s))) for s, w in zip(sources, weights) for _ in s.records]


def _train_yolo(run: Path, cfg: DetectTrainConfig, train: Dataset, val: Dataset | None, config: dict, log,
                repeats: list[int] | None = None) -> dict:
    from detectors.yolo_train import fit_yolo  # noqa: PLC0415
    save_config(run, {**config, "weights": "ultralytics/weights/best.pt"})
    summary = fit_yolo(run, train, val, cfg, log, repeats=repeats)
    return {k: summary[k] for k in ("weights", "model", "train_seconds", "train_cpu_seconds") if k in summary}
