"""``classify-train``: train the attribute heads on padded garment crops and write a self-describing run folder.

Run folder: config.json (kind "attributes", backbone, keys, crop spec, jitter, the training settings),
labels.json, weights.safetensors (best epoch on validation), last.pt (resume), results.csv (one row per epoch),
train.log, metrics.json (the best epoch's full validation report), detections_*.json (the detector boxes
it used, a record: the cache of fashion2stage/cache.py is what a rerun reads),
box_errors.json (the detector error statistics used for jitter), results.png and confusion_<key>.png.

This module builds the model, its data and its loss; :func:`fashion2stage.engine.fit` runs the epochs; the
validation pass and its confusion plots are :mod:`classifiers.attribute_validation`'s. Several ``--data`` are drawn with equal shares (``SourceBalancedSampler``). Under
torchrun every rank trains on its share; rank 0 alone runs the detector for pseudo-boxes, validates and writes.
"""
from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import torch
from tqdm import tqdm

from classifiers.attribute_data import CROP_MODES, CropDataset, build_samples, needs_detections
from classifiers.attribute_validation import evaluate, marks_by_key, plot_confusions
from classifiers.attributes import (AttributeModel, inverse_frequency_weights,
                                    masked_soft_cross_entropy, to_input)
from fashion2stage import engine
from fashion2stage.detections import detect_cached
from fashion2stage.distributed import Dist
from fashion2stage.errors import DataError
from fashion2stage.geometry import CropSpec
from fashion2stage.io import write_json_atomic
from fashion2stage.jitter import BoxErrorStats, JitterSampler
from fashion2stage.labels import LabelSet
from fashion2stage.metrics.attributes import attribute_report
from fashion2stage.records import Dataset
from fashion2stage.runs import load_weights
from fashion2stage.sources import read_source
from fashion2stage.specs import WEIGHTS_FILE, AttributeSpec, Normalisation
from fashion2stage.train_specs import AttributeTrainConfig
from fashion2stage.weak_labels import pseudo_label

JITTER_CHOICES = ("detector", "default", "none")
SCHEDULES = ("cosine", "onecycle")
BALANCE = ("none", "weights")


# --- data ------------------------------------------------------------------------------------------------------

def read_dataset(path: str, cfg: AttributeTrainConfig, labels: LabelSet | None = None) -> Dataset:
    """A COCO detection JSON (garment boxes, Fashionpedia-style attributes), a FashionAI label CSV, a class folder
    (one item per photo: its attributes from the mapping file, named in ``labels``' values, on a class-agnostic
    foreground box, so it trains like a ground-truth garment) or a tag CSV (boxes from the ``--detector``
    teacher later, :func:`_samples`), read by :func:`fashion2stage.sources.read_source`."""
    ds = read_source(path, cfg.classes, kind="attributes", labels=labels, schema=cfg.schema,
                     key_types=cfg.key_types)
    if ds.classes:
        from fashion2stage.pseudo_boxes import add_pseudo_boxes  # noqa: PLC0415
        return add_pseudo_boxes(ds, "foreground", log=tqdm.write)  # boxes cached per photo
    return ds


def needs_label_set(path: str) -> bool:
    """Class folders and tag CSVs name attribute values of the label set the label files define."""
    from fashion2stage.formats.tags import is_tag_csv  # noqa: PLC0415
    return Path(path).is_dir() or is_tag_csv(path)


def merged_labels(datasets: list[Dataset], key_types: dict[str, list[str]]) -> LabelSet:
    labels = datasets[0].labels
    for d in datasets[1:]:
        labels = labels.merged(d.labels)
    for k, types in key_types.items():
        if k not in labels.attributes:
            raise ValueError(f"--key-types names {k!r}, which no dataset has (keys: {', '.join(labels.attributes)})")
        labels.attribute_types[k] = list(types)
        labels.garment_types += [t for t in types if t not in labels.garment_types]
    return labels


def jitter_sampler(cfg: AttributeTrainConfig) -> tuple[JitterSampler, str | None]:
    """The jitter for ground-truth boxes and the box-error file it came from."""
    errors = cfg.box_errors
    if errors is None and cfg.detector is not None and (Path(cfg.detector) / "box_errors.json").is_file():
        errors = str(Path(cfg.detector) / "box_errors.json")
    kind = cfg.jitter or ("detector" if errors else "default")
    if kind not in JITTER_CHOICES:
        raise ValueError(f"--jitter must be one of {JITTER_CHOICES}, got {kind!r}")
    if kind == "none":
        return JitterSampler.none(), None
    if kind == "default":
        return JitterSampler.default(), None
    if errors is None:
        raise ValueError("--jitter detector needs --box-errors or a --detector run with box_errors.json")
    return JitterSampler.from_stats(BoxErrorStats.load(errors)), errors


def _detections(cfg, run: Path, datasets: list[Dataset], split: str, labels: LabelSet, force: bool):
    """Cached detector garments per dataset (None where not needed or no detector)."""
    need = [force or needs_detections(d, labels) or bool(d.tags) for d in datasets]
    if cfg.detector is None or not any(need):
        return [None] * len(datasets)
    from detectors.load import load_detector  # noqa: PLC0415  (the detector stack loads only when used)

    detector = load_detector(cfg.detector, cfg.device)
    out = []
    for i, (d, n) in enumerate(zip(datasets, need)):
        if not n:
            out.append(None)
            continue
        with tqdm(total=len(d.records), desc=f"detect {split}[{i}]", mininterval=10) as bar:
            conf = min(cfg.conf, cfg.teacher_conf) if d.tags else cfg.conf
            out.append(detect_cached(detector, d.records, run / f"detections_{split}_{i}.json", conf=conf,
                                     progress=bar.update, log=tqdm.write))
    return out


def _with_teacher_boxes(cfg: AttributeTrainConfig, datasets: list[Dataset], detections: list) -> list[Dataset]:
    """Tag sources get the teacher's garments the tags keep, with the fine category where the tags pin it
    (:func:`fashion2stage.weak_labels.pseudo_label`); the others are returned as they are."""
    if any(d.tags for d in datasets) and cfg.detector is None:
        raise ValueError("a tag CSV source needs --detector RUN: the teacher whose boxes the tags filter")
    return [pseudo_label(d, det, cfg.teacher_conf, d.labels, log=tqdm.write) if d.tags else d
            for d, det in zip(datasets, detections)]


def _samples(cfg: AttributeTrainConfig, run: Path, train_sets: list[Dataset], val_sets: list[Dataset],
             labels: LabelSet) -> tuple[list, list, int, list[int]]:
    """Train samples (jittered ground-truth boxes, detector boxes for boxless labels), validation samples (with a
    detector: garments cut from their matched detections, as at inference), the garments the detector missed and
    the number of train samples of each source."""
    det_train = _detections(cfg, run, train_sets, "train", labels, force=False)
    det_val = _detections(cfg, run, val_sets, "val", labels, force=True)
    train_sets, val_sets = _with_teacher_boxes(cfg, train_sets, det_train), _with_teacher_boxes(cfg, val_sets, det_val)
    train_samples, val_samples, missed, sizes = [], [], 0, []
    for d, det in zip(train_sets, det_train):
        train_samples += build_samples(d, labels, det, cfg.crop)[0]
        sizes.append(len(train_samples) - sum(sizes))
    for d, det in zip(val_sets, det_val):
        s, m = build_samples(d, labels, det, cfg.crop, match_gt_to_detections=True)
        val_samples += s
        missed += m
    if not train_samples or not val_samples:
        raise ValueError(f"no labelled samples: {len(train_samples)} train, {len(val_samples)} val "
                         f"(keys {', '.join(labels.attributes)})")
    return train_samples, val_samples, missed, sizes


def start_from(model: AttributeModel, labels: LabelSet, run_dir: str) -> str:
    """Fine-tune from an attribute run: copy its backbone, and the head of every key whose values it names in
    the same order; other keys keep fresh heads (a garment check, ``type_head``, is never carried: its features
    change with the backbone). Returns one line saying what was carried."""
    from classifiers.attributes import _module_name, load_attribute_model  # noqa: PLC0415

    src = load_attribute_model(run_dir)
    if src.model.backbone_name != model.backbone_name:
        raise DataError(Path(run_dir) / "config.json", f"backbone {src.model.backbone_name!r}; this run trains "
                                                        f"{model.backbone_name!r} (--backbone)")
    model.backbone.load_state_dict(src.model.backbone.state_dict())
    carried = [k for k in model.keys
               if k in src.model.keys and src.labels.attributes.get(k) == labels.attributes[k]]
    for k in carried:
        model.heads[_module_name(k)].load_state_dict(src.model.heads[_module_name(k)].state_dict())
    fresh = [k for k in model.keys if k not in carried]
    return (f"weights: backbone and {len(carried)} head(s) from {run_dir}" + (f" ({', '.join(carried)})" if carried else "")
            + (f"; new head(s): {', '.join(fresh)}" if fresh else ""))


# --- optimisation ----------------------------------------------------------------------------------------------

def _optimizer(model: AttributeModel, cfg: AttributeTrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW([
        {"params": list(model.heads.parameters()), "lr": cfg.lr},
        {"params": list(model.backbone.parameters()), "lr": cfg.lr * cfg.backbone_lr_mult},
    ], weight_decay=cfg.weight_decay)


def _loss_fn(device, class_weights):
    def loss_fn(model, batch) -> tuple[dict, int]:
        x, targets, mask = batch
        targets = {k: v.to(device) for k, v in targets.items()}
        mask = {k: v.to(device) for k, v in mask.items()}
        return {"loss": masked_soft_cross_entropy(model(x.to(device)), targets, mask, class_weights)}, len(x)
    return loss_fn


# --- the command -----------------------------------------------------------------------------------------------

def _run_config(cfg: AttributeTrainConfig, keys: list[str], spec: CropSpec, sampler: JitterSampler,
                errors_file: str | None) -> AttributeSpec:
    return AttributeSpec(backbone=cfg.backbone, keys=tuple(keys), crop=spec,
                         normalisation=Normalisation.of_backbone(cfg.backbone), dropout=cfg.dropout,
                         jitter={k: v for k, v in sampler.to_dict().items() if k != "errors"},
                         box_errors="box_errors.json" if errors_file else None, train=asdict(cfg))


def train(cfg: AttributeTrainConfig) -> Path:
    """Train (or, with ``cfg.resume``, continue) and return the run folder; under torchrun, on every rank."""
    with engine.start(cfg.device, cfg.threads, cfg.seed) as ctx:
        return _train(cfg, ctx)


def _train(cfg: AttributeTrainConfig, ctx: Dist) -> Path:
    if cfg.resume:
        cfg = engine.resumed_config(cfg, engine.open_run(cfg.project, cfg.name, "attributes", True, ctx), "attributes")
    if cfg.crop not in CROP_MODES or cfg.schedule not in SCHEDULES or cfg.balance not in BALANCE:
        raise ValueError(f"crop {cfg.crop!r} / schedule {cfg.schedule!r} / balance {cfg.balance!r} not one of "
                         f"{CROP_MODES} / {SCHEDULES} / {BALANCE}")
    if len(cfg.val) != len(cfg.data):
        raise ValueError(f"give one --val per --data ({len(cfg.data)} --data, {len(cfg.val)} --val)")
    device = ctx.device
    # label files first: class folders name their attribute values in the label set those files define
    files = {p: read_dataset(p, cfg) for p in cfg.data + cfg.val if not needs_label_set(p)}
    if not files:
        raise ValueError("classify-train needs at least one labelled file (COCO json or label CSV) beside class "
                         "folders and tag CSVs")
    labels = merged_labels([files[p] for p in cfg.data if p in files], cfg.key_types)

    def read(p: str) -> Dataset:
        return files.get(p) or replace(read_dataset(p, cfg, labels), labels=labels)
    with ctx.main_first():  # rank 0 fills the pseudo-box cache, the others read it
        train_sets, val_sets = [read(p) for p in cfg.data], [read(p) for p in cfg.val]
    keys = list(labels.attributes)
    spec = CropSpec(width=cfg.image_size, height=cfg.image_size, padding=cfg.padding)
    sampler, errors_file = jitter_sampler(cfg)
    run_spec = _run_config(cfg, keys, spec, sampler, errors_file)
    # built before the run folder and the detector passes: a --weights run that cannot be loaded fails at once
    model = AttributeModel(cfg.backbone, {k: len(labels.attributes[k]) for k in keys},
                           pretrained=cfg.pretrained and not cfg.resume and not cfg.weights, dropout=cfg.dropout)
    started = start_from(model, labels, cfg.weights) if cfg.weights and not cfg.resume else None
    run, log = engine.start_run(cfg, "attributes", ctx, labels, run_spec, errors_file)
    if started:
        log(started)

    with ctx.main_first():  # rank 0 runs the detector and caches its boxes in the run folder; the others read them
        train_samples, val_samples, missed, sizes = _samples(cfg, run, train_sets, val_sets, labels)

    def normalise(crops):
        return to_input(crops, run_spec.norm)
    train_ds = CropDataset(train_samples, labels, keys, spec, normalise, sampler, train=True, seed=cfg.seed)
    val_ds = CropDataset(val_samples, labels, keys, spec, normalise, train=False)
    train_loader = engine.make_loader(train_ds, cfg.batch_size, ctx, seed=cfg.seed, sources=sizes, min_last_batch=2,
                                      workers=cfg.workers)
    val_loader = torch.utils.data.DataLoader(val_ds, batch_size=cfg.batch_size, num_workers=cfg.workers)
    class_weights = None
    if cfg.balance == "weights":
        class_weights = {k: torch.tensor(inverse_frequency_weights(train_ds.label_counts(k)), dtype=torch.float32,
                                         device=device) for k in keys}
    log(f"train: {len(train_ds)} crops from {len(sizes)} source(s) {sizes}; val: {len(val_ds)} crops; "
        f"{ctx.world_size} process(es)")

    model = model.to(device)
    opt = _optimizer(model, cfg)
    steps = len(train_loader)
    sched = engine.schedule(opt, cfg.epochs * steps, int(cfg.warmup_epochs * steps), kind=cfg.schedule)
    val_marks = marks_by_key(val_ds, keys)
    eval_keys = [k for k in keys if val_marks[k]]
    reports: dict[int, dict] = {}  # epoch -> its full report, for metrics.json and the confusion plots

    def report_of(net) -> tuple[dict, float]:
        probs, loss = evaluate(net, val_loader, device, keys, cfg.flip_tta)
        return attribute_report({k: probs[k] for k in eval_keys}, {k: val_marks[k] for k in eval_keys},
                                {k: labels.attributes[k] for k in eval_keys}), loss

    def validate(net, epoch: int) -> dict:
        report, val_loss = report_of(net)
        reports[epoch] = report
        row = {"val_loss": val_loss, "val_mAP": report["mAP"], "val_mean_accuracy": report["mean_accuracy"]}
        for k in eval_keys:
            row[f"val_acc/{k}"] = report["keys"][k]["accuracy"]
            if "top3" in report["keys"][k]:
                row[f"val_top3/{k}"] = report["keys"][k]["top3"]
        return row
    result = engine.fit(run, model, train_loader, opt, sched, _loss_fn(device, class_weights), epochs=cfg.epochs,
                        ctx=ctx, log=log, settings=cfg, validate=validate, best=engine.Best(f"val_{cfg.select}"),
                        weights=WEIGHTS_FILE, backbone=model.backbone, freeze_epochs=cfg.freeze_epochs)
    if ctx.is_main:
        best_report = reports.get(result.best_epoch)
        if best_report is None:  # resumed after the best epoch, or no defined score: report the saved weights
            load_weights(run / WEIGHTS_FILE, model, device)
            best_report = report_of(model)[0]
        sources = {}
        for s in train_samples:
            sources[s.source] = sources.get(s.source, 0) + 1
        write_json_atomic(run / "metrics.json", {
            "best_epoch": result.best_epoch, "select": cfg.select, "flip_tta": cfg.flip_tta, "val": best_report,
            "n_train_samples": len(train_samples), "n_val_samples": len(val_samples),
            "train_crop_sources": sources, "train_samples_per_source": sizes,
            "val_garments_missed_by_detector": missed})
        engine.plot_results(run)
        plot_confusions(run, best_report)
    ctx.barrier()
    return run
