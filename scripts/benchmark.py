"""Benchmark fashion2stage on fashion-bench and write the generated part of BENCHMARKS.md.

    python scripts/benchmark.py --profile {tiny,cpu,full} [--data ../shared/data/fashion-bench]
        [--work runs/benchmark] [--report BENCHMARKS.md] [--plots benchmarks] [--threads N] [--device cpu|cuda]
    python scripts/benchmark.py --vs-yolo [--images 100] [--repeats 5] ...  (scripts/bench/vs_yolo.py: plain
        ultralytics yolo11n predict at 640 against fashion2stage predict with no flags, the same photos, one run)

Every model is trained and every prediction made by the real CLI (``python -m fashion2stage``) in a child
process with ``OMP_NUM_THREADS=--threads``; numbers are read back from the run folders (metrics.json, config.json,
results.csv) and from predict's summary line. Each ablation changes one option at the profile's training budget.
Speed ratios compare numbers measured in this one invocation (same machine, same load), each a median of
``repeats`` child processes. A run folder that already has metrics.json is reused, so a rerun after an interruption
carries on; a failing stage is reported with its one-line error and the rest goes on.

The parts live in scripts/bench/ (see its __init__.py); this file wires them together and writes the report.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from bench.common import BEGIN, END, PROFILES, ROOT, SEED, Bench, read_json
from bench.data import prepare_data, speed_folders
from bench.plots import plots
from bench.speed import baselines, speed_all
from bench.tables import (baseline_table, cad_table, ccp_table, detection_table, keypoint_table, memory_table,
                          throughput_table, training_table)
from bench.training import train_all
from fashion2stage.io import write_text_atomic


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
    write_text_atomic(path, new)


def machine(threads: int) -> str:
    import torch  # noqa: PLC0415
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    cpu = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "CPU")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{cpu}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}, {threads} threads, load average "
            f"{load} at start, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--vs-yolo" in argv:  # a separate measurement with its own options (scripts/bench/vs_yolo.py)
        from bench.vs_yolo import main as vs_yolo  # noqa: PLC0415

        return vs_yolo([x for x in argv if x != "--vs-yolo"])
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
    invocation = "python scripts/benchmark.py " + shlex.join(argv)
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
