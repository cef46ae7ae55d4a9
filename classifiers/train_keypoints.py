"""Training loop, evaluation and plots of the keypoint heatmap model (``fashion2stage keypoints-train``).

The run folder holds config.json (kind "keypoints"), labels.json, weights.safetensors (best epoch by val NE),
last.pt (resumable state), box_errors.json / the jitter used, results.csv, metrics.json, curves.png and
val_crops.png (predicted points as crosses, ground truth as circles).
"""
from __future__ import annotations

import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from classifiers.backbones import normalisation
from classifiers.keypoint_data import (Augment, KeypointCrops, garment_crop, keypoint_samples, observed_subsets,
                                      read_keypoint_dataset)
from classifiers.keypoints import KeypointPredictor, build_model, heatmap_loss, heatmap_size
from fashion2stage.geometry import CropSpec
from fashion2stage.images import load_image
from fashion2stage.io import write_bytes_atomic, write_json_atomic
from fashion2stage.jitter import JitterSampler
from fashion2stage.metrics import keypoint_report
from fashion2stage.records import Dataset
from fashion2stage.runs import (append_results, load_checkpoint, load_config, load_weights, new_run_dir,
                                save_checkpoint, save_config, save_labels, save_weights, truncate_results)


@dataclass
class KeypointTrainConfig:
    width: int = 192
    height: int = 256
    padding: float = 1.25
    epochs: int = 60
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 2.0
    sigma: float = 2.0  # heatmap pixels
    backbone: str = "efficientnet_lite0"
    pretrained: bool = True
    deconv_channels: list[int] = field(default_factory=lambda: [128, 128, 128])
    flip_test: bool = True
    seed: int = 0
    device: str = "cpu"

    def crop_spec(self) -> CropSpec:
        return CropSpec(self.width, self.height, self.padding)


def resume_config(run: Path, epochs: int | None = None, device: str | None = None) -> KeypointTrainConfig:
    """The training settings a run folder was started with (``epochs`` / ``device`` may change on resume)."""
    cfg = KeypointTrainConfig(**load_config(run, kind="keypoints")["train"])
    if epochs is not None:
        cfg.epochs = epochs
    if device is not None:
        cfg.device = device
    return cfg


def run_config(cfg: KeypointTrainConfig, num_keypoints: int, jitter: JitterSampler, sources: dict) -> dict:
    """What config.json records: everything ``load_keypoint_model`` needs, plus how the run was trained."""
    spec = cfg.crop_spec()
    return {"kind": "keypoints", "backbone": cfg.backbone, "num_keypoints": num_keypoints,
            "deconv_channels": list(cfg.deconv_channels), "crop": spec.to_dict(),
            "heatmap_size": list(heatmap_size(spec)), "sigma": cfg.sigma, "train": asdict(cfg),
            "jitter": jitter.to_dict(), "data": sources}


def cosine_with_warmup(optimizer, total_steps: int, warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the base lr, then cosine decay to zero, stepped once per batch."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_one_epoch(model, loader, optimizer, scheduler, device: str) -> float:
    """One pass over the loader; returns the mean masked heatmap loss."""
    model.train()
    total, n = 0.0, 0
    for batch in loader:
        pred = model(batch["image"].to(device))
        loss = heatmap_loss(pred, batch["heatmaps"].to(device), batch["weights"].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += loss.item() * len(pred)
        n += len(pred)
    return total / max(n, 1)


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


def plot_curves(run: Path) -> None:
    """curves.png: train loss and val NE / PCK per epoch, from results.csv."""
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415

    df = pd.read_csv(run / "results.csv")
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    axes[0].plot(df["epoch"], df["train_loss"])
    axes[0].set(title="train heatmap loss", xlabel="epoch", yscale="log")
    for ax, col, title in ((axes[1], "val_ne", "val NE % (GT boxes)"), (axes[2], "val_pck", "val PCK@0.1")):
        if col in df and df[col].notna().any():
            ax.plot(df["epoch"], df[col])
        ax.set(title=title, xlabel="epoch")
    fig.tight_layout()
    tmp = run / ".curves.tmp.png"
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(run / "curves.png")


def _predictor(model, labels, cfg: KeypointTrainConfig) -> KeypointPredictor:
    mean, std = normalisation(cfg.backbone)
    return KeypointPredictor(model, labels, cfg.crop_spec(), cfg.sigma, mean, std, cfg.device, cfg.batch_size)


def train_keypoints(train: Dataset, val: Dataset | None, run: Path, cfg: KeypointTrainConfig, jitter: JitterSampler,
                    box_errors: Path | None = None, resume: bool = False, sources: dict | None = None) -> dict:
    """Train into ``run`` (an empty folder, or one to resume); returns metrics.json's content.

    Best checkpoint by val NE on ground-truth boxes (the last epoch when there is no val set); at the end the best
    weights are scored on val crops of ground-truth boxes and of boxes jittered by ``jitter``.
    """
    torch.manual_seed(cfg.seed)
    if val is not None and val.labels.keypoints != train.labels.keypoints:
        raise ValueError(f"{val.source}: keypoint names {val.labels.keypoints} differ from the training set's "
                         f"{train.labels.keypoints}")
    labels = train.labels if val is None else train.labels.merged(val.labels)
    labels = observed_subsets(Dataset(train.root, train.records, labels, train.source))
    train = Dataset(train.root, train.records, labels, train.source)
    spec = cfg.crop_spec()
    mean, std = normalisation(cfg.backbone)
    data = KeypointCrops(train, spec, heatmap_size(spec), cfg.sigma, jitter, Augment(), mean, std, cfg.seed)
    if len(data) == 0:
        raise ValueError(f"{train.source}: no garment with labelled keypoints to train on")
    loader = torch.utils.data.DataLoader(data, batch_size=cfg.batch_size, shuffle=True, drop_last=len(data) > cfg.batch_size,
                                         generator=torch.Generator().manual_seed(cfg.seed))
    model = build_model(run_config(cfg, len(labels.keypoints), jitter, {}), cfg.pretrained).to(cfg.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = len(loader)
    total = cfg.epochs * steps
    scheduler = cosine_with_warmup(optimizer, total, max(1, min(round(cfg.warmup_epochs * steps), total // 5)))
    start, best = 0, {"epoch": 0, "val_ne": float("inf")}
    if resume and (run / "last.pt").exists():
        state = load_checkpoint(run / "last.pt")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start, best = int(state["epoch"]), {"epoch": int(state["best_epoch"]), "val_ne": float(state["best_ne"])}
        truncate_results(run, start)
        config = load_config(run, kind="keypoints")
        save_config(run, {**config, "train": asdict(cfg)})  # a longer --epochs on resume is recorded
    else:
        save_config(run, run_config(cfg, len(labels.keypoints), jitter, sources or {}))
        save_labels(run, labels)
        if box_errors is not None:
            shutil.copyfile(box_errors, run / "box_errors.json")
    predictor = _predictor(model, labels, cfg)
    for epoch in range(start + 1, cfg.epochs + 1):
        t0 = time.perf_counter()
        loss = train_one_epoch(model, loader, optimizer, scheduler, cfg.device)
        seconds = time.perf_counter() - t0
        row = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"], "train_loss": loss, "train_seconds": seconds,
               "train_images_per_s": (len(loader) * cfg.batch_size if loader.drop_last else len(loader.dataset))
               / max(seconds, 1e-9)}
        if val is not None:
            report, _ = evaluate_keypoints(predictor, val, JitterSampler.none(), flip_test=cfg.flip_test)
            row.update(val_ne=report["ne"], val_pck=report["pck@0.1"])
            if report["ne"] < best["val_ne"]:
                best = {"epoch": epoch, "val_ne": report["ne"]}
                save_weights(run / "weights.safetensors", model)
        else:
            best = {"epoch": epoch, "val_ne": float("nan")}
            save_weights(run / "weights.safetensors", model)
        append_results(run, row)
        save_checkpoint(run / "last.pt", {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                          "scheduler": scheduler.state_dict(), "epoch": epoch,
                                          "best_epoch": best["epoch"], "best_ne": best["val_ne"]})
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    plot_curves(run)
    # a model trained on exact boxes is still scored on detector-like boxes: that is the point of the comparison
    eval_jitter = jitter if jitter.kind != "none" else JitterSampler.default()
    metrics = {"best_epoch": best["epoch"], "train_jitter": jitter.kind, "eval_jitter": eval_jitter.kind,
               "note": "NE in percent: FashionAI normaliser where the label set has one, else the GT box diagonal"}
    if val is not None:
        load_weights(run / "weights.safetensors", model, cfg.device)
        metrics["val_gt_boxes"], kept = evaluate_keypoints(predictor, val, JitterSampler.none(),
                                                           flip_test=cfg.flip_test, keep=8)
        metrics["val_jittered_boxes"], _ = evaluate_keypoints(predictor, val, eval_jitter, seed=1,
                                                              flip_test=cfg.flip_test)
        draw_crops(run / "val_crops.png", kept)
    write_json_atomic(run / "metrics.json", metrics)
    return metrics


def keypoints_train_run(data: Path, val: Path | None, project: Path, name: str | None, cfg: KeypointTrainConfig,
                        box_errors: Path | None = None, jitter_kind: str = "default", resume: bool = False,
                        image_root: Path | None = None, val_image_root: Path | None = None) -> tuple[Path, dict]:
    """What ``keypoints-train`` does: read the data, choose the jitter, make (or reopen) the run folder, train.

    The jitter is the detector's (``box_errors``, a saved BoxErrorStats) when given, else ``jitter_kind``
    ("default" or "none"). On ``resume`` the run's saved settings win, except ``cfg.epochs`` and ``cfg.device``.
    """
    if resume:
        run = Path(project) / (name or "")
        if not name or not (run / "last.pt").exists():
            raise FileNotFoundError(f"{run}: nothing to resume (needs --name of a run folder with last.pt)")
        cfg = resume_config(run, cfg.epochs, cfg.device)
        jitter = JitterSampler.from_dict(load_config(run)["jitter"])
    else:
        if box_errors is not None:
            jitter = JitterSampler.from_file(box_errors)
        elif jitter_kind in ("default", "none"):
            jitter = JitterSampler.default() if jitter_kind == "default" else JitterSampler.none()
        else:
            raise ValueError(f"--jitter must be default or none, got {jitter_kind!r}")
        heatmap_size(cfg.crop_spec())  # refuse a bad --image-size before reading any data
    train = read_keypoint_dataset(data, image_root)
    val_set = read_keypoint_dataset(val, val_image_root) if val is not None else None
    if not resume:
        run = new_run_dir(project, name, "keypoints")
    sources = {"train": str(data), "val": str(val) if val else None,
               "box_errors": str(box_errors) if box_errors else None}
    return run, train_keypoints(train, val_set, run, cfg, jitter, box_errors, resume, sources)
