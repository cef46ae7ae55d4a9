"""Load test of ``fashion2stage serve`` on loopback, against ``fashion2stage predict`` on the same photos.

Starts the server in a subprocess on a free 127.0.0.1 port, then for each client count sends a bounded number of
one-photo requests from that many concurrent clients (each waits for its answer before sending the next), and
reports throughput, p50/p95 latency, errors and the server's peak resident memory. Before that it times
``predict`` over a folder holding the same photos. Everything is bounded: requests per client, seconds per level, startup time.

    python scripts/loadtest_serve.py --images examples/images --clients 1 4 16 --requests 12

Extra arguments after ``--`` go to ``fashion2stage serve`` (e.g. ``-- --runtime onnx``).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

from bench.common import SUMMARY  # predict's summary line (scripts/ is this script's first import path)

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "fashion2stage"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PeakRss:
    """Polls a process's resident memory (and its children's) every 50 ms; ``peak`` in bytes. Linux's VmHWM is
    the exact peak of the server process itself, read at the end where available."""

    def __init__(self, pid: int):
        self.proc, self.peak, self._stop = psutil.Process(pid), 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                rss = self.proc.memory_info().rss + sum(c.memory_info().rss for c in self.proc.children(recursive=True))
                self.peak = max(self.peak, rss)
            except psutil.Error:
                return
            time.sleep(0.05)

    def stop(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status")
        if status.is_file():
            m = re.search(r"VmHWM:\s+(\d+) kB", status.read_text())
            if m:
                self.peak = max(self.peak, int(m.group(1)) * 1024)
        self._stop.set()
        self.thread.join()
        return self.peak


def served(url: str) -> dict:
    return httpx.get(f"{url}/healthz", timeout=30).json()["served"]


def run_level(url: str, photos: list[Path], clients: int, per_client: int, max_seconds: float, timeout: float,
              server: psutil.Process) -> dict:
    """``clients`` threads, each sending up to ``per_client`` requests of one photo, back to back."""
    latencies, outcomes, lock = [], [], threading.Lock()
    deadline = time.monotonic() + max_seconds
    payloads = [(p.name, p.read_bytes()) for p in photos]

    def client(k: int):
        with httpx.Client(timeout=timeout) as http:
            for i in range(per_client):
                if time.monotonic() > deadline:
                    return
                name, data = payloads[(k * per_client + i) % len(payloads)]
                t0 = time.perf_counter()
                try:
                    outcome = http.post(f"{url}/v1/predict", files={"files": (name, data, "image/jpeg")}).status_code
                except httpx.HTTPError as e:
                    outcome = type(e).__name__
                with lock:
                    outcomes.append(outcome)
                    if outcome == 200:
                        latencies.append(time.perf_counter() - t0)

    before, cpu0, t0 = served(url), sum(server.cpu_times()[:2]), time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, cpu, after = time.perf_counter() - t0, sum(server.cpu_times()[:2]) - cpu0, served(url)
    images = after["images"] - before["images"]
    lat = np.array(latencies) if latencies else np.array([np.nan])
    return {"clients": clients, "requests": len(outcomes), "ok": len(latencies), "wall_s": round(wall, 2),
            "img_per_s": round(len(latencies) / wall, 3), "p50_s": round(float(np.percentile(lat, 50)), 2),
            "p95_s": round(float(np.percentile(lat, 95)), 2),
            "mean_batch": round(images / max(after["batches"] - before["batches"], 1), 2),
            "model_s_per_img": round((after["model_seconds"] - before["model_seconds"]) / max(images, 1), 2),
            "server_cpu_s_per_img": round(cpu / max(images, 1), 2),
            "errors": {str(o): outcomes.count(o) for o in sorted(set(map(str, outcomes))) if o != "200"}}


def time_predict(photos: list[Path], n: int, work: Path) -> dict:
    """``fashion2stage predict`` over folders of ``n`` and of 1 photo (the same photos, repeated): the img/s it reports
    itself (model loading excluded), and its CPU seconds per image, (CPU(n) - CPU(1)) / (n - 1), which leaves out
    loading and first-call costs and is less disturbed than wall time by other work on a shared machine."""
    runs = {}
    for count in (n, 1):
        folder = work / f"predict_{count}"
        folder.mkdir()
        for i in range(count):
            shutil.copy(photos[i % len(photos)], folder / f"{i:03d}_{photos[i % len(photos)].name}")
        cpu0, t0 = _children_cpu(), time.perf_counter()
        done = subprocess.run(CLI + ["predict", "--images", str(folder), "--out", str(work / f"out_{count}")],
                              capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            raise SystemExit(f"predict failed: {done.stderr.strip()[-500:]}")
        m = SUMMARY.search(done.stdout + done.stderr)
        runs[count] = (time.perf_counter() - t0, _children_cpu() - cpu0, float(m["img_s"]) if m else None)
    return {"images": n, "wall_s_with_loading": round(runs[n][0], 1), "img_per_s": runs[n][2],
            "cpu_s_per_img": round((runs[n][1] - runs[1][1]) / (n - 1), 2)}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    serve_args = argv[argv.index("--") + 1:] if "--" in argv else []
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=Path, default=ROOT / "examples" / "images")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--requests", type=int, default=12, help="Per level, split over its clients (at least 2 each).")
    ap.add_argument("--max-seconds", type=float, default=300.0, help="Per level: no new request after this.")
    ap.add_argument("--timeout", type=float, default=300.0, help="Seconds a client waits for one answer.")
    ap.add_argument("--predict-images", type=int, default=12, help="Photos for the predict comparison (0: skip; "
                    "else at least 2).")
    ap.add_argument("--json", type=Path, help="Also write the results here.")
    args = ap.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    photos = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not photos:
        raise SystemExit(f"{args.images}: no photos")

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    results = {"machine": f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start",
               "photos": [p.name for p in photos], "serve_args": serve_args, "levels": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.predict_images:  # first, right before the server: on a shared machine the load drifts
            results["predict"] = time_predict(photos, args.predict_images, work)
        log = open(work / "serve.log", "w")
        server = subprocess.Popen(CLI + ["serve", "--host", "127.0.0.1", "--port", str(port),
                                         "--queue-size", str(max(32, max(args.clients)))] + serve_args,
                                  stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        rss = PeakRss(server.pid)
        try:
            t0 = time.perf_counter()
            while True:
                if server.poll() is not None or time.perf_counter() - t0 > 600:
                    raise SystemExit(f"the server did not start:\n{(work / 'serve.log').read_text()[-2000:]}")
                try:
                    if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
            results["startup_s"] = round(time.perf_counter() - t0, 1)
            proc = psutil.Process(server.pid)
            run_level(url, photos[:1], 1, 1, args.max_seconds, args.timeout, proc)  # warm-up: first calls are slow
            for c in args.clients:
                level = run_level(url, photos, c, max(2, -(-args.requests // c)), args.max_seconds, args.timeout, proc)
                print(json.dumps(level), flush=True)
                results["levels"].append(level)
        finally:
            results["server_peak_rss_mb"] = round(rss.stop() / 2**20)
            server.terminate()
            server.wait(30)
            log.close()
    print(json.dumps(results, indent=1))
    print("\n| clients | requests (ok) | img/s | p50 s | p95 s | mean batch | model s/img | server CPU s/img "
          "| errors |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for lv in results["levels"]:
        print(f"| {lv['clients']} | {lv['requests']} ({lv['ok']}) | {lv['img_per_s']:.2f} | {lv['p50_s']:.2f} | "
              f"{lv['p95_s']:.2f} | {lv['mean_batch']} | {lv['model_s_per_img']} | {lv['server_cpu_s_per_img']} | "
              f"{lv['errors'] or '-'} |")
    if "predict" in results:
        p = results["predict"]
        print(f"| predict, {p['images']} photos | | {p['img_per_s']} | | | | | {p['cpu_s_per_img']} | wall "
              f"{p['wall_s_with_loading']} s with loading |")
    print(f"server peak RSS {results['server_peak_rss_mb']} MB; startup {results.get('startup_s')} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
