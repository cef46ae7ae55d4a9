"""Training of the YOLO backend through ultralytics, offline, writing inside the run folder.

From ``yolo11n.yaml`` (random init, no download) by default, or from any ultralytics checkpoint the user has
(``--weights path/to/yolo11n.pt``). The COCO data is exported to YOLO layout in ``<run>/yolo_data``; ultralytics'
own outputs (weights, its results.csv and plots) go to ``<run>/ultralytics``. ``--resume`` uses ultralytics'
``resume=True`` on ``<run>/ultralytics/weights/last.pt``.

Devices go to ultralytics as given (``--device 0,1`` trains on two GPUs): it starts its own DDP processes, so this
wrapper is never started by ``torchrun`` (:func:`detectors.train.train_detector` refuses it with one line).
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from fashion2stage.formats.yolo import export_yolo
from fashion2stage.records import Dataset

DEFAULT_MODEL = "yolo11n.yaml"


def fit_yolo(run: Path, train: Dataset, val: Dataset | None, cfg, log=print) -> dict:
    """Train; returns ``{"weights": path relative to run, "train_seconds", "train_cpu_seconds"}``."""
    import torch  # noqa: PLC0415

    from detectors.offline import import_ultralytics  # noqa: PLC0415
    import_ultralytics()
    from ultralytics import YOLO  # noqa: PLC0415
    from ultralytics.utils import torch_utils  # noqa: PLC0415

    # ultralytics resets torch to its own thread count (cores - 1) when it picks the CPU; make it ours
    torch_utils.NUM_THREADS = cfg.threads or torch.get_num_threads()
    last = run / "ultralytics" / "weights" / "last.pt"
    t0, cpu0 = time.perf_counter(), time.process_time()
    if cfg.resume:
        if not last.is_file():
            raise FileNotFoundError(f"{run}: no ultralytics checkpoint {last} to resume from")
        log(f"resuming ultralytics training from {last}")
        YOLO(str(last)).train(resume=True)
    else:
        if cfg.weights and not Path(cfg.weights).is_file():
            # a bare name like "yolo11n.pt" would make ultralytics try a download: refuse it offline
            raise FileNotFoundError(f"--weights {cfg.weights}: file not found (give the path of a checkpoint you have)")
        data_yaml = export_yolo(train, val if val is not None else train, run / "yolo_data")
        model = YOLO(cfg.weights or DEFAULT_MODEL)
        extra = {"lr0": cfg.lr} if cfg.lr else {}
        model.train(data=str(data_yaml), epochs=cfg.epochs, imgsz=cfg.image_size, batch=cfg.batch, device=cfg.device,
                    workers=0, project=str(run), name="ultralytics", exist_ok=True, seed=cfg.seed, amp=False,
                    plots=True, val=val is not None, verbose=False, **extra)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - cpu0
    src = run / "ultralytics"
    if (src / "results.csv").exists():
        shutil.copyfile(src / "results.csv", run / "results.csv")
    best = src / "weights" / "best.pt"
    weights = best if best.is_file() else last
    log(f"ultralytics training done in {seconds:.0f} s; weights {weights}")
    return {"weights": str(weights.relative_to(run)), "train_seconds": seconds, "train_cpu_seconds": cpu_seconds}
