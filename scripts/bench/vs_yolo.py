"""``python scripts/benchmark.py --vs-yolo``: plain ultralytics yolo11n ``predict`` at 640 px against ``fashion2stage
predict`` with no flags, on the same street photos, in one run; the ratio per repeat and its median.

    python scripts/benchmark.py --vs-yolo [--data ../shared/data/fashion-bench] [--images 100] [--repeats 5]
        [--threads 0] [--variant NAME='PREDICT ARGS' ...] [--no-default] [--json FILE]

- Photos: the first ``--images`` ccp val photos by file name, linked into one folder that both tools read.
- yolo11n is built from ``yolo11n.yaml`` with random weights (no model hub can be reached here, and no
  ``yolo11n.pt`` ships offline), so its boxes are meaningless: only its speed is measured, and the speed of a
  network does not depend on its weights (with random weights it may keep more boxes before NMS; at conf 0.25
  almost none pass). It runs as ``YOLO("yolo11n.pt").predict(folder, imgsz=640, stream=True)`` would by default
  (batch 1, conf 0.25). **Both tools get the same number of threads** (all cores, or ``--threads N``): the ratio at
  equal threads is the headline one. ultralytics would set torch to cores - 1 threads by itself; a second yolo row
  with that choice is also reported (``--no-yolo-own-threads`` drops it), and every ratio is against the
  equal-thread row.
- ``fashion2stage predict`` runs as a user types it, ``python -m fashion2stage predict --images FOLDER --out OUT``,
  plus a variant's arguments (none for "ours, default"); its rate, CPU seconds per photo and per-stage shares are
  read from its summary line, with ``--threads`` set to the same count as yolo's.
- Every contender runs once per repeat, each in a fresh process, in an order rotated between repeats; each is timed
  by its own clock from its first photo to its last: model loading (and ONNX export, on a first run) excluded;
  decoding and the first call's set-up included (yolo's process first predicts one photo with a throwaway model,
  as predict imports everything when it loads its models). On a shared, noisy machine compare the ratios of the
  runs of one repeat, and CPU seconds per photo.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, SPLIT, SUMMARY

YOLO = "yolo11n 640"
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
WORKER = ("import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; from bench.vs_yolo import yolo_worker; "
          "yolo_worker(sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))")


def pick_photos(bench: Path, n: int, folder: Path) -> list[str]:
    """Link the first ``n`` ccp val photos (by file name) into ``folder``; their names."""
    coco = json.loads((bench / "ccp/annotations/instances_val.json").read_text())
    names = sorted(im["file_name"] for im in coco["images"])[:n]
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        link = folder / Path(name).name
        if not link.exists():
            link.symlink_to((bench / "ccp/images" / name).resolve())
    return names


def yolo_worker(folder: str, imgsz: int, threads: int) -> None:
    """In a fresh process: time ultralytics' predict over the folder; print one JSON line."""
    from detectors.offline import import_ultralytics  # noqa: PLC0415  (offline switches, as predict sets them)

    import_ultralytics()
    import torch  # noqa: PLC0415
    from ultralytics import YOLO as Model  # noqa: PLC0415
    from ultralytics.utils import torch_utils  # noqa: PLC0415

    if threads >= 0:  # ultralytics sets torch to NUM_THREADS (cores - 1) on import and when its predictor starts
        torch_utils.NUM_THREADS = threads or CORES  # 0: all cores, torch's own default (-1: ultralytics' choice)
    first = sorted(Path(folder).iterdir())[0]
    Model("yolo11n.yaml").predict(str(first), imgsz=imgsz, verbose=False)  # lazy imports, outside the clock
    model = Model("yolo11n.yaml")
    t0, c0, n = time.perf_counter(), time.process_time(), 0
    for _ in model.predict(str(folder), imgsz=imgsz, stream=True, verbose=False):
        n += 1
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"images": n, "seconds": seconds, "cpu_seconds": cpu, "threads": torch.get_num_threads()}))


def run_yolo(folder: Path, imgsz: int, threads: int) -> dict:
    cmd = [sys.executable, "-c", WORKER, str(ROOT), str(ROOT / "scripts"), str(folder), str(imgsz), str(threads)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"yolo worker failed: {done.stderr.strip().splitlines()[-1:]}")
    r = json.loads(done.stdout.strip().splitlines()[-1])
    return {"img_s": r["images"] / r["seconds"], "images": r["images"], "threads": r["threads"],
            "cpu_ms": 1000 * r["cpu_seconds"] / r["images"]}


def run_ours(folder: Path, out: Path, args: list[str], threads: int) -> dict:
    cmd = [sys.executable, "-m", "fashion2stage", "predict", "--images", str(folder), "--out", str(out), *args]
    if "--threads" not in args:
        cmd += ["--threads", str(threads or CORES)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    text = done.stdout + done.stderr
    m = SUMMARY.search(text)
    if done.returncode or not m:
        raise RuntimeError(f"{shlex.join(cmd[2:])} failed: {text.strip().splitlines()[-1:]}")
    shares = {}
    if s := SPLIT.search(text):
        for part in s.group(1).split(", "):
            name, pct = part.rsplit(" ", 1)
            shares[name] = float(pct.rstrip("%"))
    notes = [ln for ln in done.stderr.splitlines() if ln.startswith("fashion2stage:")]
    return {"img_s": float(m["img_s"]), "images": int(m["images"]), "garments": int(m["garments"]), "shares": shares,
            "threads": int(args[args.index("--threads") + 1]) if "--threads" in args else threads or CORES,
            "cpu_ms": 1000 * float(m["cpu_s"] or "nan"), "notes": notes}


def measure(folder: Path, work: Path, variants: dict[str, list[str]], repeats: int, threads: int, imgsz: int,
            yolo_own_threads: bool = False, log=print) -> dict[str, list[dict]]:
    """Every contender once per repeat, in an order rotated by one each repeat. ``{name: [result per repeat]}``."""
    contenders = {YOLO: lambda: run_yolo(folder, imgsz, threads)}
    if yolo_own_threads:
        contenders[f"{YOLO}, ultralytics' threads"] = lambda: run_yolo(folder, imgsz, -1)
    for name, args in variants.items():
        contenders[name] = lambda args=args, name=name: run_ours(folder, work / re.sub(r"\W+", "_", name), args, threads)
    names = list(contenders)
    results: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            results[name].append(contenders[name]())
            log(f"repeat {r + 1}/{repeats} {name}: {results[name][-1]['img_s']:.2f} img/s, "
                f"{results[name][-1]['cpu_ms']:.0f} CPU ms/photo")
    return results


def summarise(results: dict[str, list[dict]]) -> list[dict]:
    """Per contender: median img/s and its range, the median over repeats of (its rate / yolo's rate in that
    repeat) and of (yolo's CPU time / its CPU time), and the median share of each predict stage."""
    rows = []
    for name, runs in results.items():
        rates = [r["img_s"] for r in runs]
        row = {"name": name, "img_s": statistics.median(rates), "min": min(rates), "max": max(rates),
               "repeats": len(rates), "cpu_ms": statistics.median(r["cpu_ms"] for r in runs),
               "ratio": statistics.median(a["img_s"] / b["img_s"] for a, b in zip(runs, results[YOLO])),
               "cpu_ratio": statistics.median(b["cpu_ms"] / a["cpu_ms"] for a, b in zip(runs, results[YOLO]))}
        stages = sorted({k for r in runs for k in r.get("shares", {})})
        if stages:
            row["shares"] = {k: statistics.median(r["shares"].get(k, 0.0) for r in runs) for k in stages}
            row["garments_per_image"] = runs[0]["garments"] / runs[0]["images"]
        if "threads" in runs[0]:
            row["threads"] = runs[0]["threads"]
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    head = ["what", "img/s (median)", "range", f"ratio to {YOLO} (wall)", f"ratio to {YOLO} (CPU)",
            "CPU ms / photo", "time shares"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        shares = ", ".join(f"{k} {v:.0f}%" for k, v in r.get("shares", {}).items())
        name = r["name"] + (f" ({r['threads']} thread{'s' * (r['threads'] > 1)})" if "threads" in r else "")
        cells = [name, f"{r['img_s']:.2f}", f"{r['min']:.2f}-{r['max']:.2f}", f"{r['ratio']:.2f}x",
                 f"{r['cpu_ratio']:.2f}x", f"{r['cpu_ms']:.0f}", shares]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="benchmark.py --vs-yolo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path,
                    default=Path(os.environ.get("FASHION_BENCH", ROOT.parent / "shared/data/fashion-bench")))
    ap.add_argument("--images", type=int, default=100, help="ccp val photos (150 at most)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="N threads for both tools (0: all cores for both)")
    ap.add_argument("--yolo-own-threads", action=argparse.BooleanOptionalAction, default=True,
                    help="also time yolo with ultralytics' own thread choice (cores - 1); ratios stay against the "
                         "equal-thread row")
    ap.add_argument("--yolo-size", type=int, default=640)
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=ARGS",
                    help="another predict to time, e.g. 'torch=--runtime torch' (repeatable)")
    ap.add_argument("--no-default", action="store_true", help="time only the --variant predicts")
    ap.add_argument("--work", type=Path, default=None, help="photo links and outputs (default: a temporary folder)")
    ap.add_argument("--json", type=Path, default=None, help="also write every repeat's numbers here")
    a = ap.parse_args(argv)
    if not (a.data / "ccp/annotations/instances_val.json").is_file():
        ap.error(f"--data {a.data}: no fashion-bench there (expected ccp/annotations/instances_val.json)")
    variants = {} if a.no_default else {"ours, default": []}
    for v in a.variant:
        name, sep, args = v.partition("=")
        if not sep:
            ap.error(f"--variant {v!r}: expected NAME=ARGS")
        variants[name] = shlex.split(args)
    with tempfile.TemporaryDirectory() as tmp:
        work = (a.work or Path(tmp)).resolve()
        names = pick_photos(a.data, a.images, work / "photos")
        load = "/".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"{len(names)} ccp val photos, {a.repeats} repeats, threads {a.threads or 'default'}, {CORES} cores, "
              f"load average {load} at start", flush=True)
        results = measure(work / "photos", work, variants, a.repeats, a.threads, a.yolo_size, a.yolo_own_threads,
                          log=lambda s: print(s, flush=True))
    rows = summarise(results)
    print(table(rows))
    for name, runs in results.items():
        for note in sorted({n for r in runs for n in r.get("notes", [])}):
            print(f"{name}: {note}")
    if a.json:
        a.json.write_text(json.dumps({"photos": len(names), "rows": rows, "runs": results}, indent=2) + "\n")
    return 0
