"""Model bundles side by side in one process, photo by photo: where predict's time goes for each, on the same photos.

    python scripts/bench/crop_stage.py --bundle default=fashion2stage/default_model --bundle shared=runs/kp/bundle \\
        [--data ../shared/data/fashion-bench] [--images 40] [--rounds 5] [--threads 2] [--runtime auto]

A bundle is a folder with detector/, attributes/ and keypoints/ run folders, loaded with ``load_pipeline`` as
``predict`` loads them. The first ``--images`` ccp val photos are decoded once; then each round calls every bundle's
pipeline on each photo in turn, the order of the bundles rotated photo by photo, so that a machine whose speed
drifts (a shared VM) slows all of them alike. Per bundle and round: wall milliseconds per photo, of each stage
(``Pipeline.seconds``) and in all, and process CPU milliseconds per photo. Printed: the medians over rounds, and the
median over rounds of each bundle's ratio to the first. Models are loaded and each pipeline warmed up (its first
call, ONNX export included) before any clock starts.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

STAGES = ("detector", "attributes", "keypoints")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", action="append", required=True, metavar="NAME=FOLDER")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "fashion-bench")
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runtime", default="auto")
    ap.add_argument("--json", type=Path, help="write the per-round numbers here")
    a = ap.parse_args(argv)
    import torch  # noqa: PLC0415

    from fashion2stage.app.pipeline import load_pipeline  # noqa: PLC0415
    from fashion2stage.images import load_photo  # noqa: PLC0415

    torch.set_num_threads(a.threads)
    bundles = dict(b.split("=", 1) for b in a.bundle)
    coco = json.loads((a.data / "ccp/annotations/instances_val.json").read_text())
    names = sorted(im["file_name"] for im in coco["images"])[: a.images]
    photos = [load_photo(a.data / "ccp/images" / n).pixels for n in names]
    pipes = {name: load_pipeline(Path(f) / "detector", Path(f) / "attributes", Path(f) / "keypoints",
                                 use_default=False, runtime=a.runtime, threads=a.threads)
             for name, f in bundles.items()}
    for p in pipes.values():
        p([photos[0]])
    order = list(pipes)
    rounds = []
    for r in range(a.rounds):
        totals = {n: {"wall": 0.0, "cpu": 0.0, **{s: 0.0 for s in STAGES}} for n in pipes}
        for i, photo in enumerate(photos):
            k = (i + r) % len(order)
            for name in order[k:] + order[:k]:
                pipe, t = pipes[name], totals[name]
                before = dict(pipe.seconds)
                w0, c0 = time.perf_counter(), time.process_time()
                pipe([photo])
                t["wall"] += time.perf_counter() - w0
                t["cpu"] += time.process_time() - c0
                for s in STAGES:
                    t[s] += pipe.seconds[s] - before[s]
        rounds.append({n: {k: 1000 * v / len(photos) for k, v in t.items()} for n, t in totals.items()})
        print(f"round {r + 1}/{a.rounds}: " + ", ".join(f"{n} {rounds[-1][n]['wall']:.0f} ms/photo" for n in order),
              flush=True)
    first = order[0]
    print(f"\n{len(photos)} ccp val photos, {a.rounds} rounds, {a.threads} threads, runtime {a.runtime}; "
          "medians over rounds, ms per photo\n")
    print("| bundle | wall | detector | attributes | keypoints | CPU | wall ratio to " + first + " |")
    print("|---|---|---|---|---|---|---|")
    for n in order:
        med = {k: statistics.median(r[n][k] for r in rounds) for k in ("wall", "cpu", *STAGES)}
        ratio = statistics.median(r[n]["wall"] / r[first]["wall"] for r in rounds)
        print(f"| {n} | {med['wall']:.0f} | {med['detector']:.0f} | {med['attributes']:.0f} | {med['keypoints']:.0f} "
              f"| {med['cpu']:.0f} | {ratio:.3f} |")
    if a.json:
        a.json.write_text(json.dumps({"bundles": bundles, "photos": names, "rounds": rounds}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
