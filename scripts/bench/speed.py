"""Inference speed: predict at every batch size and runtime, the 10N memory run, and in-process baselines."""
from __future__ import annotations

import statistics
import time
from pathlib import Path

from bench.common import (BACKENDS, CLASSIFIER, DETECTOR, KEYPOINTS, SPLIT, SUMMARY, Bench, StageFailed, cli, command,
                          missing, record, stage)

def predict(b: Bench, name: str, images: Path, models: list, needs: list[str], batch: int, label: str = "full",
            runtime: str = "torch", repeats: int | None = None) -> dict:
    """``predict`` ``repeats`` times. Returns the table row: label, runtime, batch and, unless it failed, the median
    images/s (predict's own clock: model loading excluded), garments per image and peak RSS."""
    device = "cpu" if runtime == "onnx" else b.device  # ONNX Runtime runs on the CPU whatever --device says
    args = ["predict", "--images", images, "--out", b.work / "predict" / name, "--no-default", "--device", device,
            *models, "--batch-size", batch, "--runtime", runtime, "--threads", b.threads]
    row = {"pipeline": label, "runtime": runtime, "batch": batch}
    if (why := missing(b, needs)):
        record(b, f"predict-{name}", command(args), "failed", error=why)
        return row
    runs = []
    try:
        for _ in range(repeats or b.profile.repeats):
            r = cli(b, f"predict-{name}", args)
            if not (m := SUMMARY.search(r["stdout"])):
                raise StageFailed(f"no summary line in predict's output: {r['stdout'][-200:]!r}")
            split = SPLIT.search(r["stdout"])
            runs.append({"images": int(m["images"]), "img_s": float(m["img_s"]),
                         "garments": int(m["garments"]) / max(int(m["images"]), 1),
                         "rss_mib": r["rss_mib"], "split": split[1] if split else "-"})
    except StageFailed as e:
        record(b, f"predict-{name}", command(args), "failed", error=str(e))
        return row
    result = {k: statistics.median(r[k] for r in runs) for k in ("images", "img_s", "garments", "rss_mib")}
    record(b, f"predict-{name}", command(args), "ok", **result)
    return {**row, **result, "split": runs[-1]["split"]}


def speed_all(b: Bench, n_dir: Path, ten_dir: Path) -> dict[str, dict]:
    """Every predict measurement (a table row), keyed by stage name."""
    big, full = max(b.profile.batch_sizes), [DETECTOR, CLASSIFIER, KEYPOINTS]
    models = ["--detector", b.runs / DETECTOR, "--classifier", b.runs / CLASSIFIER, "--keypoints", b.runs / KEYPOINTS]
    s = {f"torch-b{k}": predict(b, f"torch-b{k}", n_dir, models, full, k) for k in b.profile.batch_sizes}
    onnx = [b.runs / r for r in full]
    if b.profile.onnx and stage(b, "export", ["export", *onnx], all((r / "model.onnx").is_file() for r in onnx),
                                missing(b, full)):
        s.update({f"onnx-b{k}": predict(b, f"onnx-b{k}", n_dir, models, full, k, runtime="onnx")
                  for k in sorted({1, big})})
    for be in BACKENDS:
        s[f"detector-{be}"] = predict(b, f"detector-{be}", n_dir, ["--detector", b.runs / f"det-{be}"], [f"det-{be}"],
                                      big, label=f"detector only ({be})")
    s["torch-10N"] = predict(b, "torch-10N", ten_dir, models, full, big, repeats=1)
    return s


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def baseline_ultralytics(b: Bench, folder: Path) -> float:
    """Images/s of ultralytics' own ``YOLO.predict`` on the same images in this process: after one call that pays
    the process's lazy imports, a fresh (untrained, yolo11n.yaml) model per repeat with its first call timed, as
    predict's clock times the first batch of a freshly loaded model."""
    from detectors.offline import import_ultralytics  # noqa: PLC0415
    import_ultralytics()
    from ultralytics import YOLO  # noqa: PLC0415
    from ultralytics.utils import torch_utils  # noqa: PLC0415

    torch_utils.NUM_THREADS = b.threads  # ultralytics otherwise resets torch to cores - 1 threads
    paths, device = sorted(str(f) for f in folder.iterdir()), "cpu" if b.device == "cpu" else "0"
    YOLO("yolo11n.yaml").predict(paths[:1], imgsz=b.profile.det[1], device=device, verbose=False)  # imports
    times = []
    for _ in range(b.profile.repeats):
        model = YOLO("yolo11n.yaml")
        t0 = time.perf_counter()
        for _ in model.predict(paths, imgsz=b.profile.det[1], conf=0.25, batch=max(b.profile.batch_sizes),
                               device=device, stream=True, verbose=False):
            pass
        times.append(time.perf_counter() - t0)
    return len(paths) / statistics.median(times)


def baseline_naive_crops(b: Bench, ccp_val: Path) -> dict:
    """Garments/s of the attribute stage one garment at a time (crop, predict) vs all garments of a batch of images
    at once (as ``Pipeline``): same model, same boxes (ccp val ground truth of the speed images), images decoded
    beforehand, one warm-up call each."""
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from classifiers.attributes import load_attribute_model  # noqa: PLC0415
    from fashion2stage.formats.coco import read_coco_detection  # noqa: PLC0415
    from fashion2stage.geometry import crop  # noqa: PLC0415
    from fashion2stage.images import load_image  # noqa: PLC0415

    torch.set_num_threads(b.threads)
    model, big = load_attribute_model(b.runs / CLASSIFIER, b.device), max(b.profile.batch_sizes)
    recs = sorted(read_coco_detection(ccp_val).records, key=lambda r: r.file)[: b.profile.speed_images]
    images = [load_image(r.path) for r in recs]
    boxes = [(i, g.box_xyxy) for i, r in enumerate(recs) for g in r.garments]

    def naive():
        for i, box_xyxy in boxes:
            model.predict(crop(images[i], box_xyxy, model.crop_spec)[0][None])

    def batched():
        for start in range(0, len(images), big):
            crops = [crop(images[i], box, model.crop_spec)[0] for i, box in boxes if start <= i < start + big]
            if crops:
                model.predict(np.stack(crops))
    naive()  # warm-up
    batched()
    return {"garments": len(boxes), "naive": len(boxes) / _median_seconds(naive, b.profile.repeats),
            "batched": len(boxes) / _median_seconds(batched, b.profile.repeats)}


def baselines(b: Bench, n_dir: Path, ccp_val: Path) -> dict:
    p, out = b.profile, {}
    calls = {"ultralytics": (f"YOLO('yolo11n.yaml').predict(<the {p.speed_images} images>, imgsz={p.det[1]}, "
                             f"conf=0.25, batch={max(p.batch_sizes)}, stream=True)", baseline_ultralytics, n_dir),
             "naive": (f"load_attribute_model({CLASSIFIER}).predict(): one crop per call vs the crops of "
                       f"{max(p.batch_sizes)} images per call", baseline_naive_crops, ccp_val)}
    for name, (call, fn, arg) in calls.items():
        if name == "naive" and (why := missing(b, [CLASSIFIER])):
            record(b, f"baseline-{name}", f"# in process: {call}", "failed", error=why)
            continue
        try:
            out[name] = fn(b, arg)
            record(b, f"baseline-{name}", f"# in process: {call}", "ok")
        except Exception as e:  # noqa: BLE001  a failing baseline must not lose the report
            record(b, f"baseline-{name}", f"# in process: {call}", "failed", error=f"{type(e).__name__}: {e}"[:300])
    return out


