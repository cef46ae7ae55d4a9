"""Every training run of a benchmark: detectors, attribute ablations, keypoint jitter."""
from __future__ import annotations

import shutil
from pathlib import Path

from bench.common import BACKENDS, CCP_RUNS, DETECTOR, KP_JITTERS, SEED, Bench, metrics, missing, stage

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


