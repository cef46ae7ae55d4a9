"""Benchmark fashion2stage on fashion-bench and write the generated part of BENCHMARKS.md.

    python scripts/benchmark.py --profile {tiny,cpu,full} [--data ../shared/data/fashion-bench]
        [--work runs/benchmark] [--report BENCHMARKS.md] [--plots benchmarks] [--threads N] [--device cpu|cuda]

Every model is trained and every prediction made by the real CLI (``python -m fashion2stage``) in a child
process with ``OMP_NUM_THREADS=--threads``; numbers are read back from the run folders (metrics.json, config.json,
results.csv) and from predict's summary line. Each ablation changes one option at the profile's training budget.
Speed ratios compare numbers measured in this one invocation (same machine, same load), each a median of
``repeats`` child processes. A run folder that already has metrics.json is reused, so a rerun after an interruption
carries on; a failing stage is reported with its one-line error and the rest goes on.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from fashion2stage.io import write_json_atomic, write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
SEED = 0
BEGIN, END = "<!-- benchmark:begin -->", "<!-- benchmark:end -->"
BACKENDS = ("faster-rcnn", "yolo")
# ccp fine-category runs -> (--jitter, --padding); the last one is the padded vs tight crops ablation
CCP_RUNS = {"ccp-jitter-none": ("none", "1.25"), "ccp-jitter-detector": ("detector", "1.25"),
            "ccp-jitter-default": ("default", "1.25"), "ccp-tight-crops": ("default", "1.0")}
KP_JITTERS = ("default", "none")
DETECTOR, CLASSIFIER, KEYPOINTS = "det-faster-rcnn", "cad-two-stage", "kp-jitter-default"  # the timed pipeline
SUMMARY = re.compile(r"(\d+) images \(([\d.]+) img/s\), (\d+) garments")
SPLIT = re.compile(r"\| time: (.*?) ->")  # per-stage time shares, where this version of predict prints them


@dataclass(frozen=True)
class Profile:
    """Budgets of one benchmark size. Detectors always train on the CPU (detect-train has no --device)."""
    train_images: int | None  # a fixed-seed sample of each dataset's split (ccp, cad, landmarks); None: all
    val_images: int | None
    det: tuple[int, int, int]  # detect-train --epochs, --image-size (faster-rcnn shorter side, yolo imgsz), --batch
    attr: tuple[int, int, int]  # classify-train --epochs, --image-size, --batch-size
    kp: tuple[int, str, int]  # keypoints-train --epochs, --image-size WxH, --batch-size
    speed_images: int  # N of the speed tests; the memory test also runs 10N
    batch_sizes: tuple[int, ...]  # predict --batch-size values; the largest is "batched"
    repeats: int  # child processes (or in-process runs) per speed number; the median is reported
    onnx: bool = True  # export + ONNX Runtime rows (the dynamo export of a crop model takes ~10 s on a CPU)
    device: str = "cpu"


PROFILES = {
    "tiny": Profile(12, 8, det=(1, 128, 4), attr=(1, 64, 8), kp=(1, "64x64", 8), speed_images=4, batch_sizes=(1, 4),
                    repeats=1, onnx=False),
    "cpu": Profile(300, None, det=(3, 320, 4), attr=(2, 160, 32), kp=(8, "128x160", 16), speed_images=32,
                   batch_sizes=(1, 2, 4, 8), repeats=3),
    "full": Profile(None, None, det=(8, 416, 4), attr=(10, 224, 32), kp=(60, "192x256", 16), speed_images=150,
                    batch_sizes=(1, 2, 4, 8), repeats=5, device="cuda"),
}


@dataclass
class Bench:
    """Where a benchmark writes and how its children run; ``stages`` records every command (stages.json)."""
    profile: Profile
    work: Path
    threads: int
    device: str
    env: dict
    machine: str
    stages: dict = field(default_factory=dict)  # stage name -> {cmd, status, error | wall_s, rss_mib, ...}

    @property
    def runs(self) -> Path:
        return self.work / "runs"


class StageFailed(Exception):
    pass


# --- data: fixed-seed subsets beside links to the real images, never copies --------------------------------------

def _link(link: Path, target: Path) -> None:
    if not link.is_symlink():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target.resolve())


def coco_subset(src: Path, dst: Path, n: int | None) -> Path:
    """``n`` images of a COCO json (``dst`` in an ``annotations/`` folder beside an ``images`` link); ``src``
    itself when it has no more than ``n``."""
    data = json.loads(src.read_text())
    if n is None or n >= len(data["images"]):
        return src
    keep = {im["id"] for im in random.Random(SEED).sample(data["images"], n)}
    data["images"] = [im for im in data["images"] if im["id"] in keep]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    write_json_atomic(dst, data)
    _link(dst.parent.parent / "images", src.parent.parent / "images")
    return dst


def csv_subset(src: Path, dst: Path, n: int | None) -> Path:
    """All rows of ``n`` images of a FashionAI label CSV, beside links to its images and attributes.json."""
    rows = [r for r in csv.reader(src.open(newline="")) if r]
    images = sorted({r[0] for r in rows})
    if n is None or n >= len(images):
        return src
    keep = set(random.Random(SEED).sample(images, n))
    dst.parent.mkdir(parents=True, exist_ok=True)
    with dst.open("w", newline="") as f:
        csv.writer(f).writerows(r for r in rows if r[0] in keep)
    _link(dst.parent / "images", src.parent / "images")
    _link(dst.parent / "attributes.json", src.parent / "attributes.json")
    return dst


def prepare_data(bench: Path, work: Path, p: Profile) -> dict[str, Path]:
    d, out = {}, work / "data"
    for split, n in (("train", p.train_images), ("val", p.val_images)):
        d[f"ccp_{split}"] = coco_subset(bench / f"ccp/annotations/instances_{split}.json",
                                        out / f"ccp/annotations/instances_{split}.json", n)
        d[f"cad_{split}"] = csv_subset(bench / f"cad/labels_{split}.csv", out / f"cad/labels_{split}.csv", n)
        d[f"lm_{split}"] = coco_subset(bench / f"landmarks/annotations/keypoints_{split}.json",
                                       out / f"landmarks/annotations/keypoints_{split}.json", n)
    return d


def speed_folders(b: Bench, ccp_val: Path) -> tuple[Path, Path]:
    """Folders of N and 10N images: links to the first N ccp val photos (ten links each for 10N)."""
    names = sorted(im["file_name"] for im in json.loads(ccp_val.read_text())["images"])[: b.profile.speed_images]
    folders = []
    for copies in (1, 10):
        folder = b.work / "speed" / f"images-{copies * len(names)}"
        for k in range(copies):
            for name in names:
                _link(folder / f"{k}_{name.replace('/', '__')}", ccp_val.parent.parent / "images" / name)
        folders.append(folder)
    return folders[0], folders[1]


# --- stages: CLI commands in child processes ---------------------------------------------------------------------

def command(args: list) -> str:
    return "python -m fashion2stage " + shlex.join(str(a) for a in args)


def one_line_error(stderr: str, returncode: int) -> str:
    """The line that says what went wrong: the CLI's own message, else the exception line, else the last line."""
    lines = [s.strip() for s in re.split(r"[\r\n]+", stderr) if s.strip() and "%|" not in s and "it/s]" not in s]
    for pattern in (r"fashion2stage: ", r"[\w.]*(Error|Exception)\b"):
        hit = next((s for s in reversed(lines) if re.match(pattern, s)), None)
        if hit:
            return hit[:300]
    return (lines[-1] if lines else f"exit code {returncode}")[:300]


def cli(b: Bench, stage: str, args: list) -> dict:
    """Run one CLI command (output in work/logs/<stage>.out|.err): its wall seconds, peak RSS (MiB) and stdout;
    raises StageFailed with its one-line error."""
    logs = b.work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    out_path, err_path = logs / f"{stage}.out", logs / f"{stage}.err"
    t0 = time.perf_counter()
    with out_path.open("w") as out, err_path.open("w") as err:
        child = subprocess.Popen([sys.executable, "-m", "fashion2stage", *map(str, args)],
                                 stdout=out, stderr=err, env=b.env, cwd=ROOT)
        # wait4: this child's own peak RSS (getrusage(RUSAGE_CHILDREN) is the maximum over all children so far)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise StageFailed(one_line_error(err_path.read_text(), child.returncode))
    return {"wall_s": time.perf_counter() - t0, "rss_mib": usage.ru_maxrss / 1024, "stdout": out_path.read_text()}


def record(b: Bench, stage: str, cmd: str, status: str, **extra) -> None:
    previous = {k: v for k, v in b.stages.get(stage, {}).items() if k != "error"}
    b.stages[stage] = {**previous, "cmd": cmd, "status": status, **extra}
    write_json_atomic(b.work / "stages.json", b.stages)
    print(f"{time.strftime('%H:%M:%S')} {stage}: {status} {extra.get('error', '')}", flush=True)


def stage(b: Bench, name: str, args: list, done: bool, blocked: str | None = None) -> bool:
    """One command, unless its outputs exist (``done``: reused) or it cannot run (``blocked``: the reason).
    Returns whether its outputs exist now."""
    if done:
        record(b, name, command(args), "reused")
        return True
    if blocked:
        record(b, name, command(args), "failed", error=blocked)
        return False
    try:
        r = cli(b, name, args)
    except StageFailed as e:
        record(b, name, command(args), "failed", error=str(e))
        return False
    record(b, name, command(args), "ok", wall_s=r["wall_s"], rss_mib=r["rss_mib"])
    return True


def missing(b: Bench, runs: list[str]) -> str | None:
    gone = [r for r in runs if not (b.runs / r / "metrics.json").is_file()]
    return f"not run: needs {', '.join(gone)}, which did not finish" if gone else None


def train(b: Bench, name: str, args: list, blocked: str | None = None) -> None:
    """A training stage into work/runs/<name>; a folder without metrics.json (interrupted) is trained again."""
    run = b.runs / name
    done = (run / "metrics.json").is_file()
    if not done:
        shutil.rmtree(run, ignore_errors=True)  # new_run_dir refuses a non-empty folder
    stage(b, name, [*args, "--project", b.runs, "--name", name], done, blocked)


def train_all(b: Bench, d: dict[str, Path]) -> None:
    p = b.profile
    for backend in BACKENDS:
        train(b, f"det-{backend}", ["detect-train", "--data", d["ccp_train"], "--val", d["ccp_val"], "--detector",
                                    backend, "--epochs", p.det[0], "--image-size", p.det[1], "--batch", p.det[2],
                                    "--threads", b.threads])
    det = b.runs / DETECTOR
    budget = ["--epochs", p.attr[0], "--image-size", p.attr[1], "--batch-size", p.attr[2], "--seed", SEED,
              "--threads", b.threads, "--device", b.device]
    cad = ["classify-train", "--data", d["cad_train"], "--val", d["cad_val"],
           "--key-types", "category=blouse,outwear,dress"]
    no_crops = missing(b, [DETECTOR])
    train(b, "cad-whole", [*cad, "--crop", "whole", *budget])
    train(b, "cad-two-stage", [*cad, "--crop", "two-stage", "--detector", det, *budget], no_crops)
    # ccp validates on the detector's crops of the val garments; when detect-train's box_errors (conf 0.25, IoU 0.5,
    # as classify-train matches) found none, classify-train can only fail: say why instead of running it
    if metrics(b, DETECTOR).get("box_errors", {}).get("n_matched") == 0:
        no_crops = (f"not run: {DETECTOR} matched none of the val garments at conf 0.25 (metrics.json box_errors), "
                    "so there is no detector crop to validate on")
    for run, (jitter, padding) in CCP_RUNS.items():
        train(b, run, ["classify-train", "--data", d["ccp_train"], "--val", d["ccp_val"], "--detector", det,
                       "--jitter", jitter, "--padding", padding, *budget], no_crops)
    for j in KP_JITTERS:
        train(b, f"kp-jitter-{j}", ["keypoints-train", "--data", d["lm_train"], "--val", d["lm_val"], "--jitter", j,
                                    "--epochs", p.kp[0], "--image-size", p.kp[1], "--batch-size", p.kp[2],
                                    "--seed", SEED, "--threads", b.threads, "--device", b.device])


# --- speed -------------------------------------------------------------------------------------------------------

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
            runs.append({"images": int(m[1]), "img_s": float(m[2]), "garments": int(m[3]) / max(int(m[1]), 1),
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


# --- report ------------------------------------------------------------------------------------------------------

def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def metrics(b: Bench, run: str) -> dict:
    return read_json(b.runs / run / "metrics.json")


def fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):  # 3 decimals for scores in [0, 1], 3 significant digits above
        return f"{v:.3f}" if abs(v) <= 1 else f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}" if abs(v) < 100 else f"{v:.0f}"
    return str(v).replace("|", "\\|")


def table(header: list[str], rows: list[list]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                     + ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows])


def section(b: Bench, title: str, stages: list[str], body: str, notes: list[str] = ()) -> str:
    """Title, machine and date, the exact commands of ``stages``, the table, the failures, notes."""
    cmds = [b.stages[s]["cmd"] for s in stages if s in b.stages]
    fails = [f"- **{s} failed**: {b.stages[s]['error']}" for s in stages
             if b.stages.get(s, {}).get("status") == "failed"]
    return "\n".join([f"### {title}", "", f"_{b.machine}_", "", "```bash", *cmds, "```", "", body, "", *fails,
                      *[f"- {n}" for n in notes if n], ""])


def detection_table(b: Bench, made: dict) -> str:
    p, det = b.profile, {be: metrics(b, f"det-{be}") for be in BACKENDS}
    classes = next((list(m["per_class"]) for m in det.values() if m), [])
    rows = [[c, next(m["per_class"][c]["n_gt"] for m in det.values() if m)]
            + [det[be].get("per_class", {}).get(c, {}).get(k) for be in BACKENDS for k in ("map50", "map")]
            for c in classes]
    rows.append(["**all**", next((m["n_gt"] for m in det.values() if m), None)]
                + [det[be].get(k) for be in BACKENDS for k in ("map50", "map")])
    header = ["class", "val boxes"] + [f"{be} {k}" for be in BACKENDS for k in ("mAP@.5", "mAP@[.5:.95]")]
    return section(b, "Detection (ccp val)", [f"det-{be}" for be in BACKENDS], table(header, rows), [
        f"Same images, {p.det[0]} epochs, `--image-size {p.det[1]}`, batch {p.det[2]} for both (faster-rcnn: shorter "
        "side; yolo: letterbox side), on the CPU (detect-train has no --device). faster-rcnn starts from ImageNet "
        "EfficientNet-Lite0, yolo from scratch (yolo11n.yaml: no pretrained weights offline).",
        *[f"PR curves {be}: ![PR {be}]({made[f'pr_{be}']})" for be in BACKENDS if f"pr_{be}" in made]])


def cad_table(b: Bench, made: dict) -> str:
    cad = {r: metrics(b, f"cad-{r}").get("val", {}) for r in ("whole", "two-stage")}
    keys = next((list(v["keys"]) for v in cad.values() if v), [])
    rows = [[k, next(v["keys"][k]["n"] for v in cad.values() if v)]
            + [cad[r].get("keys", {}).get(k, {}).get(x) for r in cad for x in ("accuracy", "ap")] for k in keys]
    rows.append(["**mean / mAP**", ""] + [cad[r].get(x) for r in cad for x in ("mean_accuracy", "mAP")])
    sources = metrics(b, "cad-two-stage").get("train_crop_sources")
    header = ["key", "val n"] + [f"{r} {x}" for r in cad for x in ("accuracy", "FashionAI AP")]
    return section(b, "cad attributes: detector crop vs whole image", ["cad-whole", "cad-two-stage"],
                   table(header, rows), [
        f"The one change: `--crop whole` vs `--crop two-stage --detector {DETECTOR}`.",
        f"Two-stage training crops by source: {sources} (whole = the detector found no garment)." if sources else "",
        *[f"Confusion matrix: [{n}]({made[n]})" for n in made if n.startswith("confusion_cad")]])


def ccp_table(b: Bench, made: dict) -> str:
    rows, top1 = [], {}
    for run, (jitter, padding) in CCP_RUNS.items():
        m, cfg = metrics(b, run), read_json(b.runs / run / "config.json")
        k = m.get("val", {}).get("keys", {}).get("fine_category", {})
        top1[run] = k.get("accuracy")
        rows.append([run, jitter, padding, cfg.get("jitter", {}).get("kind") if m else None, k.get("n"),
                     m.get("val_garments_missed_by_detector"), k.get("accuracy"), k.get("top3"), k.get("top5"),
                     k.get("ap")])
    header = ["run", "--jitter", "--padding", "jitter used", "val crops", "val garments missed", "top-1", "top-3",
              "top-5", "FashionAI AP"]
    padded, tight = top1["ccp-jitter-default"], top1["ccp-tight-crops"]
    return section(b, "ccp fine category: box jitter and crop padding", list(CCP_RUNS), table(header, rows), [
        f"Validated on detector crops (`--detector {DETECTOR}`): each val garment cut from its matched detection, "
        "missed ones left out and counted. 'jitter used' is from config.json (`detector` becomes `default` when the "
        "detector matched too few boxes).",
        "Padded vs tight crops: ccp-tight-crops is ccp-jitter-default with `--padding 1.0` (crop side = box side, no "
        "context around the garment) instead of 1.25, same budget"
        + (f"; top-1 padded - tight: **{padded - tight:+.3f}**." if padded is not None and tight is not None else "."),
        *[f"![ccp accuracy]({made[n]})" for n in made if n == "ccp_accuracy"],
        *[f"Confusion matrix: [{n}]({made[n]})" for n in made if n.startswith("confusion_ccp")]])


def keypoint_table(b: Bench) -> str:
    rows = []
    for j in KP_JITTERS:
        m = metrics(b, f"kp-jitter-{j}")
        gt, jit = m.get("val_gt_boxes", {}), m.get("val_jittered_boxes", {})
        rows.append([j, m.get("best_epoch"), gt.get("n_points"), gt.get("ne"), gt.get("pck@0.1"), jit.get("ne"),
                     jit.get("pck@0.1"), m.get("eval_jitter")])
    header = ["train --jitter", "best epoch", "val points", "NE % GT boxes", "PCK@0.1 GT", "NE % jittered boxes",
              "PCK@0.1 jittered", "eval jitter"]
    return section(b, "Keypoints (landmarks val)", [f"kp-jitter-{j}" for j in KP_JITTERS], table(header, rows),
                   ["NE in percent of the GT box diagonal (no FashionAI normaliser here); jittered = val GT boxes "
                    "moved by the eval jitter, one seed."])


def train_rate(b: Bench, run: str) -> tuple[float | None, str]:
    """Training images (crops) per second of a run, and how it was obtained."""
    folder, cfg = b.runs / run, read_json(b.runs / run / "config.json")
    rows = list(csv.DictReader((folder / "results.csv").open())) if (folder / "results.csv").is_file() else []
    for col in ("train_img_per_s", "train_images_per_s"):
        if rows and col in rows[0]:
            return statistics.mean(float(r[col]) for r in rows), f"results.csv {col}, mean of {len(rows)} epochs"
    if cfg.get("kind") == "detector" and cfg.get("train_seconds"):
        n = len(read_json(Path(cfg["train_data"])).get("images", []))
        return n * cfg["train"]["epochs"] / cfg["train_seconds"], "images x epochs / train_seconds (incl. val)"
    if cfg.get("kind") == "keypoints" and b.stages.get(run, {}).get("wall_s"):
        n = len(read_json(Path(cfg["data"]["train"])).get("annotations", []))
        return n * cfg["train"]["epochs"] / b.stages[run]["wall_s"], "garments x epochs / command wall (incl. val)"
    return None, "-"


def training_table(b: Bench) -> str:
    runs = [n for n in b.stages if (b.runs / n / "metrics.json").is_file()]
    rows = [[n, *train_rate(b, n), b.stages[n].get("wall_s"), b.stages[n].get("rss_mib")] for n in runs]
    return section(b, "Training speed per stage", runs, table(
        ["run", "train img/s", "measured as", "command wall s", "peak RSS MiB"], rows),
        ["Wall time and RSS of a reused run are those of the invocation that trained it."])


def throughput_table(b: Bench, s: dict, made: dict) -> str:
    big, rate = max(b.profile.batch_sizes), {n: v["img_s"] for n, v in s.items() if v.get("img_s")}
    rows = [[v["pipeline"], v["runtime"], v["batch"], v.get("img_s"), v.get("garments"), v.get("rss_mib"),
             v.get("split")] for n, v in s.items() if n != "torch-10N"]
    ratios = [(f"batch {big} / batch 1, torch", f"torch-b{big}", "torch-b1"),
              (f"batch {big} / batch 1, onnx", f"onnx-b{big}", "onnx-b1"),
              ("onnx / torch, batch 1", "onnx-b1", "torch-b1"),
              (f"onnx / torch, batch {big}", f"onnx-b{big}", f"torch-b{big}"),
              (f"full pipeline / faster-rcnn alone, batch {big} (the second stage's cost)", f"torch-b{big}",
               "detector-faster-rcnn")]
    notes = [f"{label}: **{rate[x] / rate[y]:.2f}x** throughput" for label, x, y in ratios if x in rate and y in rate]
    notes += [f"img/s: predict's own clock (decode, models, writing; model loading excluded), median of "
              f"{b.profile.repeats} processes. Full = {DETECTOR} + {CLASSIFIER} + {KEYPOINTS}.",
              f"Every predict runs with `--threads {b.threads}`: torch and ONNX Runtime (on the CPU) at the same "
              "intra-op thread count, so onnx / torch ratios compare runtimes, not thread counts.",
              "" if b.profile.onnx else "ONNX Runtime: not measured in this profile (`onnx` false: the export alone "
              "takes longer than the rest).",
              *[f"![throughput vs batch]({made[n]})" for n in made if n == "throughput_vs_batch"]]
    names = [f"predict-{n}" for n in s if n != "torch-10N"] + (["export"] if b.profile.onnx else [])
    return section(b, f"Inference throughput ({b.profile.speed_images} ccp val images)", names, table(
        ["pipeline", "runtime", "batch", "img/s", "garments / img", "peak RSS MiB", "time split"], rows), notes)


def memory_table(b: Bench, s: dict) -> str:
    n1, n10 = s[f"torch-b{max(b.profile.batch_sizes)}"], s["torch-10N"]
    rows = [[r["images"], r["img_s"], r["rss_mib"]] for r in (n1, n10) if r.get("img_s")]
    notes = [f"10N / N peak RSS: **{n10['rss_mib'] / n1['rss_mib']:.2f}x**"] if len(rows) == 2 else []
    return section(b, "Peak memory vs number of images (full pipeline, torch)",
                   [f"predict-torch-b{max(b.profile.batch_sizes)}", "predict-torch-10N"],
                   table(["images", "img/s", "peak RSS MiB"], rows),
                   notes + ["Peak RSS of the predict child (os.wait4 rusage ru_maxrss); 10N links each image ten "
                            "times."])


def baseline_table(b: Bench, s: dict, base: dict) -> str:
    big, naive = max(b.profile.batch_sizes), base.get("naive", {})
    rows = [[f"ultralytics YOLO.predict alone (untrained yolo11n.yaml), batch {big}", base.get("ultralytics"), "img/s"],
            [f"fashion2stage predict, detector only (det-yolo), batch {big}", s["detector-yolo"].get("img_s"), "img/s"],
            [f"fashion2stage predict, full pipeline, batch {big}", s[f"torch-b{big}"].get("img_s"), "img/s"],
            [f"attribute model, one garment per call ({naive.get('garments', '-')} garments)", naive.get("naive"),
             "garments/s"],
            [f"attribute model, all garments of {big} images per call", naive.get("batched"), "garments/s"]]
    notes = ["The untrained YOLO is for speed only; the YOLO rows include decoding and their first call's set-up.",
             f"batched / one at a time: **{naive['batched'] / naive['naive']:.2f}x**" if naive else ""]
    return section(b, "Against what a user would otherwise run", ["baseline-ultralytics", "baseline-naive"],
                   table(["what", "rate", "unit"], rows), notes)


def plots(b: Bench, folder: Path, speed: dict, report: Path) -> dict[str, str]:
    """PNG plots in ``folder`` (copies of the runs' own plots, and new ones); name -> path relative to the report."""
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    def save(fig, name: str) -> None:
        fig.tight_layout()
        fig.savefig(folder / f"{name}.png", dpi=80)
        made[name] = folder / f"{name}.png"

    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    copies = [(f"pr_{be}", b.runs / f"det-{be}" / "pr_curve.png") for be in BACKENDS]
    for run, tag in ((CLASSIFIER, "cad"), ("ccp-jitter-default", "ccp")):
        copies += [(f"confusion_{tag}_{p.stem[10:]}", p) for p in sorted((b.runs / run).glob("confusion_*.png"))]
    for name, src in copies:
        if src.is_file():
            made[name] = folder / f"{name}.png"
            shutil.copyfile(src, made[name])
    ccp = [(r, metrics(b, r).get("val", {}).get("keys", {}).get("fine_category")) for r in CCP_RUNS]
    if (ccp := [(r, k) for r, k in ccp if k]):
        fig, ax = plt.subplots(figsize=(4, 3))
        for i, (metric, label) in enumerate((("accuracy", "top-1"), ("ap", "FashionAI AP"))):
            ax.bar([x + 0.4 * i for x in range(len(ccp))], [k[metric] for _, k in ccp], width=0.4, label=label)
        ax.set_xticks([x + 0.2 for x in range(len(ccp))], [r.removeprefix("ccp-") for r, _ in ccp], fontsize=6)
        ax.set_ylabel("ccp fine category, val")
        ax.legend(fontsize=7)
        save(fig, "ccp_accuracy")
    curves = {rt: sorted((v["batch"], v["img_s"]) for n, v in speed.items()
                         if v["runtime"] == rt and v["pipeline"] == "full" and n != "torch-10N" and v.get("img_s"))
              for rt in ("torch", "onnx")}
    if any(curves.values()):
        fig, ax = plt.subplots(figsize=(4, 3))
        for rt, points in curves.items():
            if points:
                ax.plot(*zip(*points), marker="o", label=rt)
        ax.set_xticks(b.profile.batch_sizes)
        ax.set_ylim(0, 1.2 * max(r for pts in curves.values() for _, r in pts))  # room for the legend
        ax.set_xlabel("predict --batch-size")
        ax.set_ylabel("images / s, full pipeline")
        ax.legend(fontsize=7)
        save(fig, "throughput_vs_batch")
    plt.close("all")
    return {k: Path(os.path.relpath(v.resolve(), report.resolve().parent)).as_posix() for k, v in made.items()}


def write_report(path: Path, body: str) -> None:
    """Replace the text between the markers (append the block when absent); the rest of the file is untouched."""
    old = path.read_text() if path.is_file() else ""
    block = f"{BEGIN}\n{body.rstrip()}\n{END}"
    i = old.find(BEGIN)
    j = old.find(END, i)
    if i >= 0 and j >= 0:
        new = old[:i] + block + old[j + len(END):]
    else:
        new = old + ("\n" if old and not old.endswith("\n") else "") + ("\n" if old else "") + block + "\n"
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    write_text_atomic(path, new)
    os.chmod(path, mode)  # mkstemp creates 0600


def machine(threads: int) -> str:
    import torch  # noqa: PLC0415
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    cpu = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "CPU")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{cpu}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}, {threads} threads, load average "
            f"{load} at start, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", choices=PROFILES, required=True)
    ap.add_argument("--data", type=Path,
                    default=Path(os.environ.get("FASHION_BENCH", ROOT.parent / "shared/data/fashion-bench")))
    ap.add_argument("--work", type=Path, default=ROOT / "runs/benchmark", help="run folders go to WORK/<profile>")
    ap.add_argument("--report", type=Path, default=ROOT / "BENCHMARKS.md")
    ap.add_argument("--plots", type=Path, default=ROOT / "benchmarks")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="OMP_NUM_THREADS and --threads")
    ap.add_argument("--device", default=None, help="default: the profile's (cuda for full)")
    a = ap.parse_args(argv)
    if not (a.data / "ccp").is_dir():
        ap.error(f"--data {a.data}: no fashion-bench there (expected ccp/, cad/, landmarks/)")
    p = PROFILES[a.profile]
    os.environ.update({"OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads)})  # before torch loads
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": str(SEED)}
    work = (a.work / a.profile).resolve()
    trained = {k: v for k, v in read_json(work / "stages.json").items() if (work / "runs" / k).is_dir()}
    b = Bench(p, work, a.threads, a.device or p.device, env, machine(a.threads), trained)  # keeps their wall / RSS
    t0 = time.perf_counter()
    d = prepare_data(a.data.resolve(), work, p)
    train_all(b, d)
    n_dir, ten_dir = speed_folders(b, d["ccp_val"])
    speed = speed_all(b, n_dir, ten_dir)
    base = baselines(b, n_dir, d["ccp_val"])
    made = plots(b, a.plots, speed, a.report)
    invocation = "python scripts/benchmark.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    head = [f"## Generated benchmark: profile `{a.profile}`", "",
            f"`{invocation}`, {(time.perf_counter() - t0) / 60:.1f} min; {b.machine}. Written by scripts/benchmark.py "
            "between the benchmark markers: edits there are lost on the next run.", "",
            f"Profile: `{json.dumps(asdict(p))}` (images: a fixed-seed sample per split, null = all); device "
            f"`{b.device}`; seeds 0.", ""]
    tables = [detection_table(b, made), cad_table(b, made), ccp_table(b, made), keypoint_table(b), training_table(b),
              throughput_table(b, speed, made), memory_table(b, speed), baseline_table(b, speed, base)]
    write_report(a.report, "\n".join(head + tables))
    failed = [n for n, r in b.stages.items() if r["status"] == "failed"]
    print(f"report: {a.report}; {len(failed)} failed stage(s){': ' + ', '.join(failed) if failed else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
