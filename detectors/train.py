"""``detect-train`` and ``detect-val``: the steps both backends share.

Read and check the data -> open (or resume) the run folder -> the backend trains -> the SAME evaluator for both
backends (our predictions -> :func:`fashion2stage.metrics.coco_detection_eval`) -> box errors on the validation
split (:func:`fashion2stage.jitter.collect_box_errors`, what ``classify-train`` jitters its crops with) -> plots.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from detectors.data import read_detection_data
from detectors.load import Detector, load_detector
from fashion2stage.errors import DataError
from fashion2stage.images import load_image
from fashion2stage.labels import LabelSet
from fashion2stage.metrics.domain import type_report
from fashion2stage.io import write_json_atomic
from fashion2stage.records import Dataset, ImageRecord
from fashion2stage.runs import load_config, load_labels, new_run_dir, save_config, save_labels

BACKENDS = ("faster-rcnn", "yolo")
EVAL_CONF = 0.001  # COCO mAP integrates over all scores: keep nearly every detection
BOX_ERROR_CONF = 0.25  # box errors are measured at the operating threshold `predict` uses by default
TYPE_EVAL_CONF = 0.25  # class-folder sets are scored at that threshold too: "a garment was found" means this


@dataclass
class DetectTrainConfig:
    """``detect-train`` options after parsing; saved (resolved) in the run folder's ``config.json``."""
    data: list[str]  # one or several sources: COCO detection / keypoints json, dataset YAML, class folder
    val: list[str] = field(default_factory=list)  # the first one chooses the best epoch
    images: str | None = None  # image root for COCO json files not in the <x>/annotations + <x>/images layout
    classes: str | None = None  # mapping file for class-folder sources (fashion2stage.formats.folders)
    pseudo_boxes: str = "foreground"  # class-folder photos: "foreground" or "detector:RUN" (detectors.pseudo_boxes)
    epoch_size: int | None = None  # samples per epoch over all sources (default: their total)
    detector: str = "faster-rcnn"
    weights: str | None = None  # faster-rcnn: "coco" (torchvision, online) / "none" (random); yolo: a .pt file
    epochs: int = 12
    batch: int = 4
    image_size: int = 416  # faster-rcnn: shorter side at inference; yolo: imgsz
    lr: float | None = None
    project: str = "runs/detect"
    name: str | None = None
    resume: bool = False
    threads: int | None = None
    seed: int = 0
    extra: dict = field(default_factory=dict)  # backend options (e.g. trainable_stages) from the CLI

    def __post_init__(self):  # one source may be given as a plain path
        self.data = [str(self.data)] if isinstance(self.data, (str, Path)) else [str(d) for d in self.data]
        self.val = [] if self.val is None else [str(self.val)] if isinstance(self.val, (str, Path)) \
            else [str(v) for v in self.val]


def _log(run: Path):
    def log(msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        with (run / "train.log").open("a") as f:
            f.write(line + "\n")
    return log


def predict_dataset(detector: Detector, dataset: Dataset, conf: float, batch_size: int = 8) -> list[ImageRecord]:
    """Run the detector on every image of ``dataset``; one prediction record per image, paired by ``file``."""
    out = []
    for i in range(0, len(dataset.records), batch_size):
        recs = dataset.records[i:i + batch_size]
        garments = detector.predict([load_image(r.path) for r in recs], conf=conf, batch_size=batch_size)
        out += [ImageRecord(file=r.file, root=r.root, width=r.width, height=r.height, garments=g, id=r.id)
                for r, g in zip(recs, garments)]
    return out


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
    """Train one detector and write its self-describing run folder; returns the folder."""
    import torch  # noqa: PLC0415
    if cfg.detector not in BACKENDS:
        raise ValueError(f"--detector must be one of {BACKENDS}, got {cfg.detector!r}")
    if cfg.detector == "faster-rcnn" and cfg.weights not in (None, "coco", "none") and \
            not (Path(cfg.weights) / "config.json").is_file():
        raise ValueError(f"--weights for faster-rcnn is 'coco' (torchvision's COCO detector, needs the internet), "
                         f"'none' (random backbone) or a faster-rcnn run folder to fine-tune, got {cfg.weights!r}")
    init_run = Path(cfg.weights) if cfg.detector == "faster-rcnn" and cfg.weights not in (None, "coco", "none") \
        else None
    if cfg.detector == "yolo" and len(cfg.data) > 1:
        raise ValueError("the yolo backend trains on one source (ultralytics samples its own data): merge the COCO "
                         "files, or use --detector faster-rcnn for balanced multi-source training")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    sources = [read_source(d, cfg, split="train") for d in cfg.data]
    labels = load_labels(init_run) if init_run else next(
        (s.labels for s in sources if not s.classes), sources[0].labels)
    sources = [relabelled(s, labels) for s in sources]
    val_specs = list(cfg.val) or ([cfg.data[0]] if str(cfg.data[0]).endswith((".yaml", ".yml")) else [])
    vals = [relabelled(read_source(v, cfg, split="val"), labels) for v in val_specs]
    val = vals[0] if vals else None
    if cfg.resume:
        run = Path(cfg.project) / cfg.name if cfg.name else None
        if run is None or not (run / "config.json").exists():
            raise FileNotFoundError(f"--resume needs --project/--name of an existing run folder (got {run})")
        saved = load_config(run, kind="detector")
        if saved["backend"] != cfg.detector:
            raise ValueError(f"{run}: was trained with {saved['backend']}, not {cfg.detector}")
        previous_wall = float(saved.get("train_wall_seconds", 0.0))
    else:
        run = new_run_dir(cfg.project, cfg.name, "detector")
        previous_wall = 0.0
    log = _log(run)
    sources = [with_boxes(s, cfg, run, log) for s in sources]
    vals = [with_boxes(v, cfg, run, log) for v in vals]
    val = vals[0] if vals else None
    train = sources[0] if len(sources) == 1 else Dataset(
        root=sources[0].root, records=[r for s in sources for r in s.records], labels=labels,
        source=" + ".join(s.source for s in sources))
    for s in sources:
        log(f"train source {s.source}: {len(s)} images, {sum(len(r.garments) for r in s.records)} boxes")
    log(f"val: {', '.join(f'{v.source} ({len(v)} images)' for v in vals) or 'none'}")
    save_labels(run, labels)
    config = {"kind": "detector", "backend": cfg.detector, "image_size": cfg.image_size, "train": asdict(cfg),
              "train_data": [s.source for s in sources], "val_data": [v.source for v in vals],
              "source_sizes": [len(s) for s in sources]}
    t0 = time.perf_counter()
    if cfg.detector == "faster-rcnn":
        config.update(_train_faster_rcnn(run, cfg, train, vals, config, log))
    else:
        config.update(_train_yolo(run, cfg, train, val, config, log))
    # wall time of the whole command (training + per-epoch validation), summed over resumed sessions
    config["train_wall_seconds"] = previous_wall + time.perf_counter() - t0
    save_config(run, config)
    from detectors.plots import plot_results  # noqa: PLC0415
    plot_results(run / "results.csv", run / "results.png")
    if val is not None and val.classes:
        report = type_report(val.records, predict_dataset(load_detector(run), val, TYPE_EVAL_CONF, cfg.batch),
                             labels.garment_types)
        write_json_atomic(run / "metrics.json", {"data": val.source, "conf": TYPE_EVAL_CONF, **report})
        log(f"val top-type accuracy {report['type_accuracy']:.4f} no-garment rate {report['no_garment_rate']:.4f}")
    elif val is not None:
        metrics = _final_evaluation(load_detector(run), val, run, cfg.batch)
        log(f"val mAP@[.5:.95] {metrics['map']:.4f} mAP@.5 {metrics['map50']:.4f} "
            + " ".join(f"{k} {v['map50']:.3f}" for k, v in metrics["per_class"].items()))
    return run


def _train_faster_rcnn(run: Path, cfg: DetectTrainConfig, train: Dataset, vals: list[Dataset], config: dict,
                       log) -> dict:
    from detectors.faster_rcnn import FasterRCNNConfig  # noqa: PLC0415
    from detectors.faster_rcnn_train import fit  # noqa: PLC0415

    init_run = Path(cfg.weights) if cfg.weights not in (None, "coco", "none") else None
    if cfg.resume:
        model_cfg = FasterRCNNConfig.from_dict(load_config(run)["model"])
    elif init_run is not None:  # fine-tune: the architecture (and label set) of the run it starts from
        model_cfg = FasterRCNNConfig.from_dict(load_config(init_run, kind="detector")["model"])
    else:
        sizes = tuple(s for s in (cfg.image_size - 96, cfg.image_size - 64, cfg.image_size - 32) if s >= 64)
        model_cfg = FasterRCNNConfig(
            num_classes=len(train.labels.garment_types) + 1,
            backbone="mobilenet_v3_large" if cfg.weights == "coco" else "efficientnet_lite0",
            min_size=sizes + (cfg.image_size,), max_size=int(cfg.image_size * 1.6),
            **{k: v for k, v in cfg.extra.items() if k in FasterRCNNConfig.__dataclass_fields__})
    # the config is written before training so an interrupted run can be resumed and inspected
    config.update({"model": model_cfg.to_dict(), "weights": "weights.safetensors"})
    save_config(run, config)
    val = vals[0] if vals else None
    val_eval = (lambda det: evaluate(det, val, cfg.batch)[0]) if val is not None and not val.classes else None
    folder_vals = [v for v in vals if v.classes]

    def extra_eval(det) -> dict:  # class-folder val sets: top-type accuracy and no-garment rate, logged per epoch
        out = {}
        for v in folder_vals:
            report = type_report(v.records, predict_dataset(det, v, TYPE_EVAL_CONF, cfg.batch), v.labels.garment_types)
            out.update({f"val_{k}": report[k] for k in ("type_accuracy", "no_garment_rate", "six_way_accuracy")})
        return out
    summary = fit(run, train, model_cfg, cfg.epochs, cfg.batch, cfg.lr or 0.01, val_eval, cfg.resume,
                  init_weights=cfg.weights, seed=cfg.seed, log=log, source_sizes=config["source_sizes"],
                  epoch_size=cfg.epoch_size, extra_eval=extra_eval)
    return {"train_seconds": summary["train_seconds"], "train_cpu_seconds": summary["train_cpu_seconds"]}


def read_source(path: str, cfg: DetectTrainConfig, split: str) -> Dataset:
    """One training or validation source: a class folder (needs ``cfg.classes``) or a COCO json / dataset YAML."""
    if Path(path).is_dir():
        from fashion2stage.formats.folders import read_class_folders  # noqa: PLC0415
        if not cfg.classes:
            raise DataError(path, "a class-folder source needs --classes MAPPING (what each class folder means)")
        return read_class_folders(path, cfg.classes)
    return read_detection_data(path, cfg.images, split=split)


def relabelled(ds: Dataset, labels: LabelSet) -> Dataset:
    """``ds`` under the model's label set; a garment type the model does not know is an error."""
    types = {g.type for r in ds.records for g in r.garments} | {r.item_type for r in ds.records if r.item_type}
    unknown = sorted(types - set(labels.garment_types))
    if unknown:
        raise DataError(ds.source, f"garment type(s) {unknown} are not in the model's label set {labels.garment_types}")
    return replace(ds, labels=labels)


def with_boxes(ds: Dataset, cfg: DetectTrainConfig, run: Path, log) -> Dataset:
    """Class-folder sources get their pseudo-boxes (cached in the run folder); others are returned as they are."""
    if not ds.classes:
        return ds
    from fashion2stage.pseudo_boxes import add_pseudo_boxes  # noqa: PLC0415
    detector = load_detector(cfg.pseudo_boxes.split(":", 1)[1]) if cfg.pseudo_boxes.startswith("detector:") else None
    return add_pseudo_boxes(ds, cfg.pseudo_boxes, detector=detector, cache=run / "pseudo_boxes.json", log=log)


def _train_yolo(run: Path, cfg: DetectTrainConfig, train: Dataset, val: Dataset | None, config: dict, log) -> dict:
    from detectors.yolo_train import fit_yolo  # noqa: PLC0415
    save_config(run, {**config, "weights": "ultralytics/weights/best.pt"})
    summary = fit_yolo(run, train, val, cfg, log)
    return {k: summary[k] for k in ("weights", "train_seconds", "train_cpu_seconds")}
