"""The report's sections: one markdown table per measurement, with its machine, exact commands and failures."""
from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path

from bench.common import (BACKENDS, CCP_RUNS, CLASSIFIER, DETECTOR, KEYPOINTS, KP_JITTERS, Bench, metrics,
                          read_json)

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
        "side; yolo: letterbox side), on the CPU (detect-train gets no --device). faster-rcnn starts from ImageNet "
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
        # images per epoch: the sampler's epoch size, else every source once (detect-train takes several)
        n = cfg["train"].get("epoch_size") or sum(cfg.get("source_sizes") or [
            len(read_json(Path(d)).get("images", [])) for d in (cfg["train_data"] if isinstance(cfg["train_data"], list)
                                                                 else [cfg["train_data"]])])
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


