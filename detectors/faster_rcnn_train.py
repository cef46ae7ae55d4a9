"""Training loop of the Faster R-CNN backend: SGD with warm-up and cosine decay, horizontal flip and multi-scale
resizing (inside torchvision's transform), one checkpoint per epoch for ``--resume``.

Like torchvision's ``references/detection``: ``train_one_epoch`` and a ``fit`` that calls it; the run folder,
evaluation and box-error steps shared with YOLO live in :mod:`detectors.train`.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from detectors.faster_rcnn import FasterRCNNConfig, FasterRCNNDetector, build_faster_rcnn, to_tensor
from fashion2stage.images import load_image
from fashion2stage.records import Dataset
from fashion2stage.runs import (append_results, load_checkpoint, load_weights, save_checkpoint, save_weights,
                                truncate_results)
from fashion2stage.sampling import SourceBalancedSampler


class BoxDataset(torch.utils.data.Dataset):
    """(3, H, W) float image in [0, 1] and ``{"boxes": (N, 4) xyxy image pixels, "labels": (N,) 1..C}``;
    images without garments give empty targets (background-only training images)."""

    def __init__(self, dataset: Dataset, flip: bool, seed: int = 0):
        self.records = dataset.records
        self.types = dataset.labels.garment_types
        self.flip = flip
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int):
        rec = self.records[i]
        image = load_image(rec.path)
        boxes = np.array([g.box_xyxy for g in rec.garments], dtype=np.float32).reshape(-1, 4)
        labels = np.array([self.types.index(g.type) + 1 for g in rec.garments], dtype=np.int64)
        if self.flip and self.rng.random() < 0.5:
            w = image.shape[1]
            image = image[:, ::-1]
            boxes = np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], axis=1)
        return to_tensor(image), {"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels)}


def _collate(batch):
    return tuple(zip(*batch))


def lr_at(step: int, total: int, base_lr: float, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 1% of ``base_lr`` at ``total``."""
    if step < warmup:
        return base_lr * (0.001 + 0.999 * step / warmup)
    t = (step - warmup) / max(1, total - warmup)
    return base_lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def train_one_epoch(model, loader, optimizer, epoch: int, steps_per_epoch: int, total_steps: int, base_lr: float,
                    warmup: int, log: Callable[[str], None] = print) -> dict:
    """One pass over ``loader``; returns mean losses, images/s and the last learning rate."""
    model.train()
    sums: dict[str, float] = {}
    n_images, t0, cpu0 = 0, time.perf_counter(), time.process_time()
    lr = base_lr
    for i, (images, targets) in enumerate(loader):
        step = epoch * steps_per_epoch + i
        lr = lr_at(step, total_steps, base_lr, warmup)
        for g in optimizer.param_groups:
            g["lr"] = lr
        losses = model(list(images), list(targets))
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            parts = {k: round(v.item(), 4) for k, v in losses.items()}
            raise FloatingPointError(f"epoch {epoch + 1} step {i}: loss is {loss.item()} ({parts}); try a lower --lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + v.item()
        sums["loss"] = sums.get("loss", 0.0) + loss.item()
        n_images += len(images)
        if i % 20 == 0:
            log(f"epoch {epoch + 1} step {i}/{steps_per_epoch} loss {loss.item():.3f} lr {lr:.4g} "
                f"{n_images / (time.perf_counter() - t0):.2f} img/s")
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - cpu0
    n = max(1, i + 1)
    # CPU seconds (all threads) tell the cost when other jobs share the machine and wall time does not
    return {**{k: v / n for k, v in sums.items()}, "lr": lr, "train_seconds": seconds,
            "train_cpu_seconds": cpu_seconds, "train_img_per_s": n_images / seconds}


def fit(run: Path, train: Dataset, model_cfg: FasterRCNNConfig, epochs: int, batch: int, lr: float,
        evaluate: Callable[[FasterRCNNDetector], dict] | None, resume: bool, init_weights: str | None = None,
        seed: int = 0, log: Callable[[str], None] = print, source_sizes: list[int] | None = None,
        epoch_size: int | None = None, extra_eval: Callable[[FasterRCNNDetector], dict] | None = None) -> dict:
    """Train in ``run``; writes ``weights.safetensors`` (best val mAP@[.5:.95] epoch, or the last without a
    validation set), ``last.pt`` after every epoch, one ``results.csv`` row per epoch. Returns a summary.

    ``train.records`` may concatenate several sources of ``source_sizes`` images: each is then drawn with an
    equal share (:class:`fashion2stage.sampling.SourceBalancedSampler`), ``epoch_size`` samples per epoch.
    ``init_weights``: "none" (random backbone), None/"coco" (pretrained backbone), or a run folder whose weights
    the model starts from (fine-tuning). ``extra_eval`` adds columns to each epoch's results row."""
    torch.manual_seed(seed)
    init_run = Path(init_weights) if init_weights not in (None, "coco", "none") else None
    model = build_faster_rcnn(model_cfg, pretrained_backbone=(init_weights != "none" and init_run is None))
    if init_run is not None and not resume:
        load_weights(init_run / "weights.safetensors", model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    start_epoch, best, train_seconds, cpu_seconds = 0, -1.0, 0.0, 0.0
    if resume and (run / "last.pt").exists():
        state = load_checkpoint(run / "last.pt")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, best = int(state["epoch"]), float(state["best"])
        train_seconds, cpu_seconds = float(state["train_seconds"]), float(state["train_cpu_seconds"])
        truncate_results(run, start_epoch)
        log(f"resuming after epoch {start_epoch} (best val mAP {best:.4f})")
    sizes = source_sizes or [len(train.records)]
    sampler = SourceBalancedSampler(sizes, num_samples=epoch_size, seed=seed)
    loader = DataLoader(BoxDataset(train, flip=True, seed=seed + start_epoch), batch_size=batch, sampler=sampler,
                        collate_fn=_collate, num_workers=0)
    steps = len(loader)
    warmup = min(200, steps * epochs // 10)
    for epoch in range(start_epoch, epochs):
        sampler.set_epoch(epoch)
        row = {"epoch": epoch + 1,
               **train_one_epoch(model, loader, optimizer, epoch, steps, steps * epochs, lr, warmup, log)}
        train_seconds += row["train_seconds"]
        cpu_seconds += row["train_cpu_seconds"]
        score = row["loss"] * -1.0
        if evaluate is not None:
            metrics = evaluate(FasterRCNNDetector(model, train.labels))
            row.update({"val_map": metrics["map"], "val_map50": metrics["map50"]})
            score = metrics["map"]
        if extra_eval is not None:
            row.update(extra_eval(FasterRCNNDetector(model, train.labels)))
        if evaluate is None or score > best:
            best = score
            save_weights(run / "weights.safetensors", model)
        append_results(run, row)
        save_checkpoint(run / "last.pt", {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                          "epoch": epoch + 1, "best": best, "train_seconds": train_seconds,
                                          "train_cpu_seconds": cpu_seconds})
        log(f"epoch {epoch + 1}/{epochs} " + " ".join(f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, float)))
    return {"epochs": epochs, "train_seconds": train_seconds, "train_cpu_seconds": cpu_seconds,
            "best_val_map": best if evaluate is not None else None}
