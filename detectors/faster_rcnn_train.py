"""Training of the Faster R-CNN backend: SGD with warm-up and cosine decay to 1%
(:func:`fashion2stage.engine.schedule`), horizontal flip and multi-scale resizing (inside torchvision's transform),
one checkpoint per epoch for ``--resume``.

This module builds the model, its data and its loss; :func:`fashion2stage.engine.fit` runs the epochs; the run
folder, evaluation and box-error steps shared with YOLO are :mod:`detectors.train`'s. Under torchrun every rank
trains on its share and rank 0 alone validates and writes.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from detectors.faster_rcnn import FasterRCNNConfig, FasterRCNNDetector, build_faster_rcnn, to_tensor
from fashion2stage import engine
from fashion2stage.distributed import Dist
from fashion2stage.images import load_image
from fashion2stage.records import Dataset
from fashion2stage.errors import DataError
from fashion2stage.runs import load_spec, load_weights, save_config
from fashion2stage.specs import Normalisation


class BoxDataset(torch.utils.data.Dataset):
    """(3, H, W) float image in [0, 1] and ``{"boxes": (N, 4) xyxy image pixels, "labels": (N,) 1..C,
    "ignore": (C + 1,) 1.0 at the labels of the photo's ``ignore_types``}``; images without garments give empty
    targets (background-only training images). The flip of item ``i`` is drawn from (seed, epoch, i):
    reproducible, and the same after a resume."""

    def __init__(self, dataset: Dataset, flip: bool, seed: int = 0):
        self.records = dataset.records
        self.types = dataset.labels.garment_types
        self.flip, self.seed, self.epoch = flip, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int):
        rec = self.records[i]
        image = load_image(rec.path)
        boxes = np.array([g.box_xyxy for g in rec.garments], dtype=np.float32).reshape(-1, 4)
        labels = np.array([self.types.index(g.type) + 1 for g in rec.garments], dtype=np.int64)
        ignore = torch.zeros(len(self.types) + 1)
        ignore[[self.types.index(t) + 1 for t in rec.ignore_types]] = 1.0
        if self.flip and np.random.default_rng([self.seed, self.epoch, i]).random() < 0.5:
            w = image.shape[1]
            image = image[:, ::-1]
            boxes = np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], axis=1)
        return to_tensor(image), {"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels),
                                  "ignore": ignore}


IGNORED_LOGIT = -1e4  # a class logit this low has no share in the softmax, and no gradient


def honour_ignored_types(model) -> None:
    """Make a Faster R-CNN's box head respect each training photo's ``target["ignore"]`` (:class:`BoxDataset`): on a
    photo where type T is ignored (tagged, but no kept pseudo-box: :mod:`fashion2stage.weak_labels`), the
    proposals sampled as background are scored without T's logit, so the photo never teaches "this is not a T"
    (their loss is the cross-entropy over background and the other types). Proposals of kept garments, the box
    regression and the RPN are unchanged (the RPN is class-agnostic: an unboxed garment stays background to it).
    Hooks only: the weights, their names and inference are untouched."""
    heads = model.roi_heads
    select = heads.select_training_samples
    state: dict = {}

    def select_and_remember(proposals, targets):
        proposals, matched, labels, regression = select(proposals, targets)
        if all("ignore" in t for t in targets):
            state["mask"] = torch.cat([(lab == 0)[:, None] * t["ignore"].to(lab.device)[None, :]
                                       for lab, t in zip(labels, targets)])
        return proposals, matched, labels, regression

    def mask_logits(_module, _inputs, output):
        mask = state.pop("mask", None)
        if mask is None or not heads.training:
            return output
        class_logits, box_regression = output
        return class_logits.masked_fill(mask.bool(), IGNORED_LOGIT), box_regression

    heads.select_training_samples = select_and_remember
    heads.box_predictor.register_forward_hook(mask_logits)


def _collate(batch):
    return tuple(zip(*batch))


def _losses(model, batch) -> tuple[dict, int]:
    """torchvision's four losses (RPN objectness and box, head class and box) of a batch, and its image count."""
    images, targets = batch
    device = next(model.parameters()).device
    return model([im.to(device) for im in images],
                 [{k: v.to(device) for k, v in t.items()} for t in targets]), len(images)


def init_run(cfg) -> Path | None:
    """The run folder ``--weights`` names to fine-tune from (None: "coco", "none" or the default backbone)."""
    return Path(cfg.weights) if cfg.weights not in (None, "coco", "none") else None


def model_config(cfg, train: Dataset, run: Path) -> FasterRCNNConfig:
    """The architecture: read back on ``--resume``, that of the run it fine-tunes, else from ``--image-size``
    (multi-scale training sizes below it), ``--weights`` (COCO MobileNet or the offline EfficientNet-Lite0) and
    ``--trainable-stages``."""
    if cfg.resume or init_run(cfg) is not None:  # fine-tune: the architecture (and label set) of that run
        src = run if cfg.resume else init_run(cfg)
        model = load_spec(src, "detector").model
        if not isinstance(model, FasterRCNNConfig):
            raise DataError(src / "config.json", "is not a faster-rcnn run")
        return replace(model, normalisation=model.norm)  # stored from now on, also where an older file had none
    sizes = tuple(s for s in (cfg.image_size - 96, cfg.image_size - 64, cfg.image_size - 32) if s >= 64)
    backbone = "mobilenet_v3_large" if cfg.weights == "coco" else "efficientnet_lite0"
    return FasterRCNNConfig(num_classes=len(train.labels.garment_types) + 1, backbone=backbone,
                            min_size=sizes + (cfg.image_size,), max_size=int(cfg.image_size * 1.6),
                            trainable_stages=cfg.trainable_stages, normalisation=Normalisation.of_backbone(backbone))


def train_faster_rcnn(run: Path, cfg, train: Dataset, config: dict,
                      evaluate: Callable[[FasterRCNNDetector], dict] | None,
                      extra_eval: Callable[[FasterRCNNDetector], dict] | None, ctx: Dist,
                      log: Callable[[str], None]) -> dict:
    """Train in ``run`` (``cfg``: a :class:`detectors.train.DetectTrainConfig`); writes ``weights.safetensors``
    (best val mAP@[.5:.95] epoch, or the last without a validation set), ``last.pt`` after every epoch, one
    ``results.csv`` row per epoch (``extra_eval`` adds columns). Returns ``train_seconds`` and
    ``train_cpu_seconds`` (this process, all sessions).

    ``train.records`` may concatenate several sources of ``config["source_sizes"]`` images: each is then drawn with
    its ``config["source_shares"]`` (equal by default), ``cfg.epoch_size`` samples per epoch
    (:func:`fashion2stage.engine.make_loader`)."""
    model_cfg = model_config(cfg, train, run)
    config.update({"model": model_cfg.to_dict(), "weights": "weights.safetensors"})
    if ctx.is_main:  # written before training, so an interrupted run can be resumed and inspected
        save_config(run, config)
    model = build_faster_rcnn(model_cfg, pretrained_backbone=cfg.weights != "none" and init_run(cfg) is None)
    if init_run(cfg) is not None and not cfg.resume:
        load_weights(init_run(cfg) / "weights.safetensors", model)
    model.to(ctx.device)
    honour_ignored_types(model)
    lr = cfg.lr or 0.01
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=0.9,
                                weight_decay=1e-4)
    loader = engine.make_loader(BoxDataset(train, flip=True, seed=cfg.seed), cfg.batch, ctx, seed=cfg.seed,
                                sources=config["source_sizes"], shares=config.get("source_shares"),
                                num_samples=cfg.epoch_size, collate_fn=_collate)
    steps = len(loader)
    scheduler = engine.schedule(optimizer, steps * cfg.epochs, min(200, steps * cfg.epochs // 10), floor=0.01)

    def validate(net, epoch: int) -> dict:
        detector, row = FasterRCNNDetector.from_model(net, train.labels, str(ctx.device)), {}
        if evaluate is not None:
            metrics = evaluate(detector)
            row.update({"val_map": metrics["map"], "val_map50": metrics["map50"]})
        return {**row, **(extra_eval(detector) if extra_eval is not None else {})}
    result = engine.fit(run, model, loader, optimizer, scheduler, _losses, epochs=cfg.epochs, ctx=ctx, log=log,
                        settings=cfg, validate=validate, best=engine.Best("val_map") if evaluate is not None else None,
                        log_every=20)
    return {"train_seconds": result.train_seconds, "train_cpu_seconds": result.train_cpu_seconds}
