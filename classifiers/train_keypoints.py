"""``keypoints-train``: the heatmap keypoint model, its evaluation and plots.

The run folder holds config.json (kind "keypoints"), labels.json, weights.safetensors (best epoch by val NE),
last.pt (resumable state), box_errors.json / the jitter used, results.csv, train.log, metrics.json, results.png and
val_crops.png (predicted points as crosses, ground truth as circles). This module builds the model, its data, its
loss and its validation; :func:`fashion2stage.engine.fit` runs the epochs. Under torchrun every rank trains on its
share; rank 0 alone validates and writes.
"""
from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from classifiers.attributes import read_attribute_run
from classifiers.crop_models import frozen_trunk, trunk_state
from classifiers.keypoint_data import (Augment, KeypointCrops, garment_crop, keypoint_samples, observed_subsets,
                                      read_keypoint_dataset)
from classifiers.keypoints import KeypointPredictor, build_model, heatmap_loss, heatmap_size, torch_predictor
from fashion2stage import engine
from fashion2stage.distributed import Dist
from fashion2stage.errors import DataError
from fashion2stage.images import load_image
from fashion2stage.io import write_bytes_atomic, write_json_atomic
from fashion2stage.jitter import JitterSampler
from fashion2stage.metrics import keypoint_report
from fashion2stage.records import Dataset
from fashion2stage.runs import load_spec, load_weights
from fashion2stage.specs import AttributeSpec, KeypointSpec, Normalisation
from fashion2stage.train_specs import KeypointTrainConfig


TRUNK_BLOCKS = 7  # an EfficientNet's blocks (timm's ``blocks``)


def run_config(cfg: KeypointTrainConfig, num_keypoints: int, jitter: JitterSampler,
               trunk: AttributeSpec | None = None) -> KeypointSpec:
    """What config.json records: everything ``load_keypoint_model`` needs, plus how the run was trained. With the
    ``trunk`` attribute run's spec, its crops, backbone and input normalisation."""
    spec = cfg.crop_spec() if trunk is None else trunk.crop
    return KeypointSpec(backbone=cfg.backbone if trunk is None else trunk.backbone, num_keypoints=num_keypoints,
                        deconv_channels=tuple(cfg.deconv_channels), lateral=cfg.lateral,
                        upsampling=cfg.upsampling, crop=spec, heatmap_size=heatmap_size(spec),
                        sigma=cfg.sigma,
                        normalisation=Normalisation.of_backbone(cfg.backbone) if trunk is None else trunk.norm,
                        train=asdict(cfg),
                        jitter=jitter.to_dict(), data={"train": cfg.data, "val": cfg.val, "box_errors": cfg.box_errors})


def _loss_fn(device):
    def loss_fn(model, batch) -> tuple[dict, int]:
        pred = model(batch["image"].to(device))
        return {"loss": heatmap_loss(pred, batch["heatmaps"].to(device), batch["weights"].to(device))}, len(pred)
    return loss_fn


def evaluate_keypoints(predictor: KeypointPredictor, dataset: Dataset, jitter: JitterSampler, seed: int = 0,
                       flip_test: bool = True, keep: int = 0) -> tuple[dict, list]:
    """Keypoint report (NE %, PCK@0.1, per type / point) on crops of the dataset's boxes jittered by ``jitter``.

    Crops are not grown to cover the points (a detector's box would not be). Predictions are mapped back to the
    image with each crop's transform and scored there. Returns the report and the first ``keep`` samples as
    (crop, predicted (K, 3) crop frame, ground truth (K, 3) crop frame) for drawing.
    """
    rng = np.random.default_rng(seed)
    spec = predictor.crop_spec
    preds, gts, types, boxes, kept = [], [], [], [], []
    samples = keypoint_samples(dataset)
    for start in range(0, len(samples), predictor.batch_size):
        chunk = samples[start:start + predictor.batch_size]
        cut = [garment_crop(load_image(r.path), g, spec, jitter, rng, cover=False) for r, g in chunk]
        out = predictor.predict(np.stack([c[0] for c in cut]), [g.type for _, g in chunk], flip_test)
        for (crop_img, t, kpts_crop), (_, g), p in zip(cut, chunk, out):
            preds.append(t.to_image(p)[:, :2])
            gts.append(g.keypoints)
            types.append(g.type)
            boxes.append(g.box_xyxy)
            if len(kept) < keep:
                kept.append((crop_img, p, kpts_crop))
    k = len(predictor.labels.keypoints)
    report = keypoint_report(np.array(preds).reshape(-1, k, 2), np.array(gts).reshape(-1, k, 3), types,
                             np.array(boxes).reshape(-1, 4), predictor.labels)
    return report, kept


def draw_crops(path: Path, kept: list, columns: int = 4) -> None:
    """A grid of val crops: ground truth green circles, predictions red crosses joined to their truth."""
    if not kept:
        return
    tiles = []
    for crop_img, pred, gt in kept:
        img = cv2.cvtColor(crop_img, cv2.COLOR_RGB2BGR)
        for p, g in zip(pred, gt):
            if g[2] > 0:
                cv2.circle(img, (int(g[0]), int(g[1])), 4, (0, 200, 0), 1, cv2.LINE_AA)
            if np.all(np.isfinite(p[:2])):
                cv2.drawMarker(img, (int(p[0]), int(p[1])), (0, 0, 255), cv2.MARKER_CROSS, 7, 1, cv2.LINE_AA)
                if g[2] > 0:
                    cv2.line(img, (int(g[0]), int(g[1])), (int(p[0]), int(p[1])), (0, 200, 255), 1, cv2.LINE_AA)
        tiles.append(img)
    while len(tiles) % columns:
        tiles.append(np.full_like(tiles[0], 255))
    rows = [np.concatenate(tiles[i:i + columns], axis=1) for i in range(0, len(tiles), columns)]
    _, buf = cv2.imencode(".png", np.concatenate(rows, axis=0))
    write_bytes_atomic(path, buf.tobytes())


def _jitter(cfg: KeypointTrainConfig, run: Path | None) -> JitterSampler:
    """The run's saved jitter on resume; else the detector's (``box_errors``), or ``cfg.jitter``."""
    if run is not None:
        return JitterSampler.from_dict(load_spec(run, "keypoints").jitter)
    if cfg.box_errors is not None:
        return JitterSampler.from_file(cfg.box_errors)
    if cfg.jitter not in ("default", "none"):
        raise ValueError(f"--jitter must be default or none, got {cfg.jitter!r}")
    return JitterSampler.default() if cfg.jitter == "default" else JitterSampler.none()


def train(cfg: KeypointTrainConfig) -> Path:
    """Train (or, with ``cfg.resume``, continue) into ``project/name``; returns the run folder, whose metrics.json
    scores the best weights on val crops of ground-truth boxes and of boxes jittered like the training crops.
    Best checkpoint by val NE on ground-truth boxes (the last epoch without a val set). Under torchrun, on every rank.
    """
    with engine.start(cfg.device, cfg.threads, cfg.seed) as ctx:
        return _train(cfg, ctx)


def read_sources(data: str | list[str], images: str | list[str] | None) -> tuple[Dataset, list[int]]:
    """One keypoint dataset from one or several sources (formats may differ; keypoint names must not), and each
    source's number of labelled garments, in order: every source is then drawn with an equal share."""
    paths = [data] if isinstance(data, str) else list(data)
    roots = images if isinstance(images, list) else [images] * len(paths)
    if len(roots) != len(paths):
        raise ValueError(f"give one --images per --data or none ({len(paths)} --data, {len(roots)} --images)")
    sets = [read_keypoint_dataset(p, r) for p, r in zip(paths, roots)]
    for s in sets[1:]:
        if s.labels.keypoints != sets[0].labels.keypoints:
            raise DataError(s.source, f"keypoint names {s.labels.keypoints} differ from {sets[0].source}'s "
                                      f"{sets[0].labels.keypoints}: sources of one model share one layout")
    labels = sets[0].labels
    for s in sets[1:]:
        labels = labels.merged(s.labels)
    merged = Dataset(sets[0].root, [r for s in sets for r in s.records], labels, " + ".join(s.source for s in sets))
    return merged, [len(keypoint_samples(s)) for s in sets]


def _train(cfg: KeypointTrainConfig, ctx: Dist) -> Path:
    resumed = engine.open_run(cfg.project, cfg.name, "keypoints", True, ctx) if cfg.resume else None
    if resumed is not None:
        cfg = engine.resumed_config(cfg, resumed, "keypoints")
    jitter = _jitter(cfg, resumed)
    if cfg.trunk_blocks is not None and not 0 <= cfg.trunk_blocks <= TRUNK_BLOCKS:
        raise ValueError(f"--trunk-blocks must be 0 to {TRUNK_BLOCKS}, got {cfg.trunk_blocks}")
    trunk = read_attribute_run(Path(cfg.trunk), "cpu") if cfg.trunk else None  # its spec, labels and network
    if trunk is not None:  # the settings config.json records say what the run used
        c = trunk[0].crop
        cfg = replace(cfg, width=c.width, height=c.height, padding=c.padding, backbone=trunk[0].backbone)
    spec = cfg.crop_spec() if trunk is None else trunk[0].crop
    heatmap_size(spec)  # refuse a bad --image-size (or the trunk run's crop) before reading any data
    train_set, sizes = read_sources(cfg.data, cfg.images)
    val = read_keypoint_dataset(cfg.val, cfg.val_images) if cfg.val else None
    if val is not None and val.labels.keypoints != train_set.labels.keypoints:
        raise ValueError(f"{val.source}: keypoint names {val.labels.keypoints} differ from the training set's "
                         f"{train_set.labels.keypoints}")
    labels = train_set.labels if val is None else train_set.labels.merged(val.labels)
    labels = observed_subsets(Dataset(train_set.root, train_set.records, labels, train_set.source))
    train_set = Dataset(train_set.root, train_set.records, labels, train_set.source)
    run_spec = run_config(cfg, len(labels.keypoints), jitter, trunk[0] if trunk else None)
    norm = run_spec.norm
    data = KeypointCrops(train_set, spec, heatmap_size(spec), cfg.sigma, jitter, Augment(), norm.mean, norm.std,
                         cfg.seed)
    if len(data) == 0:
        raise ValueError(f"{train_set.source}: no garment with labelled keypoints to train on")
    run, log = engine.start_run(cfg, "keypoints", ctx, labels, run_spec, cfg.box_errors)
    loader = engine.make_loader(data, cfg.batch_size, ctx, seed=cfg.seed, sources=sizes, min_last_batch=2)
    log(f"train: {len(data)} garments from {train_set.source}; val: {len(val) if val else 0} images; "
        f"{ctx.world_size} process(es)")
    model = build_model(run_spec, cfg.pretrained and trunk is None)
    frozen = None
    if trunk is not None:  # the attribute run's backbone; its stem and first trunk_blocks blocks stay as they are
        blocks = len(model.backbone.blocks) if cfg.trunk_blocks is None else cfg.trunk_blocks
        model.backbone.load_state_dict(trunk_state(trunk[2].backbone))
        frozen = frozen_trunk(model.backbone, blocks)
        log(f"trunk: the backbone of {cfg.trunk}, its stem and first {blocks} blocks frozen; "
            f"crops {spec.width}x{spec.height}")
    model = model.to(ctx.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = len(loader)
    total = cfg.epochs * steps
    scheduler = engine.schedule(optimizer, total, min(round(cfg.warmup_epochs * steps), total // 5))

    def validate(net, epoch: int) -> dict:
        report, _ = evaluate_keypoints(torch_predictor(net, labels, run_spec, ctx.device, cfg.batch_size), val,
                                       JitterSampler.none(), flip_test=cfg.flip_test)
        return {"val_ne": report["ne"], "val_pck": report["pck@0.1"]}
    result = engine.fit(run, model, loader, optimizer, scheduler, _loss_fn(ctx.device), epochs=cfg.epochs, ctx=ctx,
                        log=log, settings=cfg, validate=validate if val is not None else None,
                        best=engine.Best("val_ne", "min") if val is not None else None,
                        backbone=frozen, freeze_epochs=cfg.epochs if frozen is not None else 0)
    if ctx.is_main:
        engine.plot_results(run)
        predictor = torch_predictor(model, labels, run_spec, ctx.device, cfg.batch_size)
        write_json_atomic(run / "metrics.json", _final_metrics(run, model, predictor, val, jitter, result.best_epoch,
                                                               cfg))
    ctx.barrier()
    return run


def _final_metrics(run: Path, model, predictor, val: Dataset | None, jitter: JitterSampler, best_epoch: int,
                   cfg: KeypointTrainConfig) -> dict:
    # a model trained on exact boxes is still scored on detector-like boxes: that is the point of the comparison
    eval_jitter = jitter if jitter.kind != "none" else JitterSampler.default()
    metrics = {"best_epoch": best_epoch, "train_jitter": jitter.kind, "eval_jitter": eval_jitter.kind,
               "note": "NE in percent: FashionAI normaliser where the label set has one, else the GT box diagonal"}
    if val is not None:
        load_weights(run / "weights.safetensors", model, predictor.net.device)
        metrics["val_gt_boxes"], kept = evaluate_keypoints(predictor, val, JitterSampler.none(),
                                                           flip_test=cfg.flip_test, keep=8)
        metrics["val_jittered_boxes"], _ = evaluate_keypoints(predictor, val, eval_jitter, seed=1,
                                                              flip_test=cfg.flip_test)
        draw_crops(run / "val_crops.png", kept)
    return metrics
