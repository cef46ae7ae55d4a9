"""Profiles, the Bench record, and one CLI stage in a child process: its command line, wall time, peak RSS and
one-line error, recorded in work/stages.json."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from fashion2stage.io import write_json_atomic

ROOT = Path(__file__).resolve().parents[2]
SEED = 0
BEGIN, END = "<!-- benchmark:begin -->", "<!-- benchmark:end -->"
BACKENDS = ("faster-rcnn", "yolo")
# ccp fine-category runs -> (--jitter, --padding); the last one is the padded vs tight crops ablation
CCP_RUNS = {"ccp-jitter-none": ("none", "1.25"), "ccp-jitter-detector": ("detector", "1.25"),
            "ccp-jitter-default": ("default", "1.25"), "ccp-tight-crops": ("default", "1.0")}
KP_JITTERS = ("default", "none")
DETECTOR, CLASSIFIER, KEYPOINTS = "det-faster-rcnn", "cad-two-stage", "kp-jitter-default"  # the timed pipeline
# predict's summary line: "N images (R img/s, C CPU-s/img), G garments ..." (older versions print no CPU part)
SUMMARY = re.compile(r"(?P<images>\d+) images \((?P<img_s>[\d.]+) img/s(?:, (?P<cpu_s>[\d.]+) CPU-s/img)?\), "
                     r"(?P<garments>\d+) garments")
SPLIT = re.compile(r"\| time: (.*?) ->")  # per-stage time shares, where this version of predict prints them


@dataclass(frozen=True)
class Profile:
    """Budgets of one benchmark size. Detectors always train on the CPU (detect-train gets no --device here)."""
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


# --- stages: CLI commands in child processes ---------------------------------------------------------------------

def command(args: list) -> str:
    """The command line as the report shows it: paths relative to the repository root, where children run (the
    report names no machine's folders)."""
    shown = [os.path.relpath(a, ROOT) if isinstance(a, Path) and a.is_absolute() else str(a) for a in args]
    return "python -m fashion2stage " + shlex.join(shown)


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


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def metrics(b: Bench, run: str) -> dict:
    return read_json(b.runs / run / "metrics.json")

