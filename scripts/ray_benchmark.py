"""What the Ray engine costs: plain ``predict`` against ``predict --engine ray`` with 1 and 2 actors, on the same
photos, in one process, one after the other (issue 13). Prints a markdown table for BENCHMARKS.md.

    python scripts/ray_benchmark.py --images ../shared/data/fashion-bench/ccp/images --n 60 --out runs/raybench

Per run: wall seconds from the call to the last line written (the plain run's model loading and the Ray runs' actor
start and model loading included; the local Ray node is started once, before, and timed on its own), the steady
rate (images after the first written batch over the time since it), CPU seconds of the whole process tree (this
process, and Ray's processes and workers, which are its children; on a shared machine the CPU time says more
than the wall time), garments found, and the seconds per image of each stage (plain: the pipeline's own clocks;
Ray: summed over the decoding tasks and the actors). Every model runs ``--threads`` torch threads (plain: the
one process; Ray: each actor).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fashion2stage.app.pipeline import load_pipeline  # noqa: E402
from fashion2stage.app.predict import list_images, predict_folder  # noqa: E402


class Clock:
    """``on_batch`` hook: when each batch was written, to separate start-up from the steady rate."""

    def __init__(self):
        self.times: list[tuple[float, int]] = []

    def __call__(self, preds) -> None:
        self.times.append((time.perf_counter(), len(preds)))

    def steady(self) -> float:
        if len(self.times) < 2:
            return float("nan")
        (t0, _), (t1, _) = self.times[0], self.times[-1]
        return sum(n for _, n in self.times[1:]) / (t1 - t0)


class TreeCPU:
    """CPU seconds of this process and all its descendants (Ray's node processes and workers are its children),
    sampled every ``every`` seconds in a thread, so that actors which exit before the end still count (up to
    their last sample)."""

    def __init__(self, every: float = 0.5):
        import threading

        self.seen: dict[tuple[int, float], float] = {}  # (pid, create time) -> last user + system seconds
        self.every, self.stop = every, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.sample()
        self.start = dict(self.seen)
        self.thread.start()

    def sample(self) -> None:
        import psutil

        me = psutil.Process()
        for p in [me, *me.children(recursive=True)]:
            try:
                t = p.cpu_times()
                self.seen[(p.pid, p.create_time())] = t.user + t.system
            except psutil.Error:
                pass

    def _run(self) -> None:
        while not self.stop.wait(self.every):
            self.sample()

    def seconds(self) -> float:
        self.stop.set()
        self.thread.join()
        self.sample()
        return sum(v - self.start.get(k, 0.0) for k, v in self.seen.items())


def plain(images: Path, files: list[str], out: Path, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    start, cpu, clock = time.perf_counter(), TreeCPU(), Clock()
    s = predict_folder(load_pipeline(), images, out, batch_size=1, files=files, progress=False, on_batch=clock)
    wall, cpu = time.perf_counter() - start, cpu.seconds()
    per_image = {k: v / s.images for k, v in s.stage_seconds.items()}
    return dict(run=f"plain predict (1 process x {threads} thread)", wall=wall, cpu=cpu, steady=clock.steady(),
                garments=s.garments, per_image=per_image)


def ray_run(images: Path, files: list[str], out: Path, actors: int, threads: int) -> dict:
    from fashion2stage.app.ray_predict import predict_folder_ray

    start, cpu, clock = time.perf_counter(), TreeCPU(), Clock()
    s = predict_folder_ray({}, images, out, actors=actors, threads=threads, files=files, progress=False,
                           on_batch=clock)
    wall, cpu = time.perf_counter() - start, cpu.seconds()
    ok = s.images - len(s.errors)
    per_image = {k: v / (s.images if k == "decode" else ok) for k, v in s.stage_seconds.items()}
    return dict(run=f"Ray, {actors} actor{'s' if actors > 1 else ''} x {threads} thread", wall=wall, cpu=cpu,
                steady=clock.steady(), garments=s.garments, per_image=per_image)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--n", type=int, default=60, help="the first n photos of the folder (sorted)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of each model process")
    ap.add_argument("--rounds", type=int, default=1, help="repeat plain, Ray 1, Ray 2 this many times")
    ap.add_argument("--start-tries", type=int, default=1, help="calls of start_ray (each tries 3 times)")
    args = ap.parse_args()
    files = list_images(args.images)[: args.n]
    cores = os.cpu_count() or 1

    import ray

    from fashion2stage.app.ray_predict import start_ray

    t0 = time.perf_counter()
    for attempt in range(args.start_tries):  # on a machine loaded far past its cores Ray's node may not come up
        try:
            start_ray(None, num_cpus=cores)
            break
        except Exception as e:  # noqa: BLE001
            if attempt == args.start_tries - 1:
                raise
            print(f"{e}: trying again", file=sys.stderr)
    node_start = time.perf_counter() - t0
    rows = []
    try:
        for r in range(args.rounds):
            rows.append(plain(args.images, files, args.out / f"plain{r}", args.threads))
            for actors in (1, 2):
                rows.append(ray_run(args.images, files, args.out / f"ray{actors}-{r}", actors, args.threads))
            for row in rows[-3:]:
                print(row, file=sys.stderr, flush=True)
    finally:
        ray.shutdown()
    stages = list(rows[-1]["per_image"])
    print(f"{len(files)} photos of {args.images}, {cores} cores; local Ray node started in {node_start:.1f} s\n")
    print("| run | wall s | img/s (wall) | img/s (steady) | CPU s per image | garments | "
          + " | ".join(f"{k} ms/img" for k in stages) + " |")
    print("|---|---|---|---|---|---|" + "---|" * len(stages))
    for row in rows:
        cells = [f"{1000 * row['per_image'][k]:.0f}" if k in row["per_image"] else "-" for k in stages]
        print(f"| {row['run']} | {row['wall']:.1f} | {len(files) / row['wall']:.2f} | {row['steady']:.2f} | "
              f"{row['cpu'] / len(files):.2f} | {row['garments']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
