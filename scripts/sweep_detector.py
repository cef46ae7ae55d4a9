"""Speed / accuracy of the Faster R-CNN detector over its inference settings: input size x RPN proposals kept.

    python scripts/sweep_detector.py [--detector fashion2stage/default_model/detector] [--sizes 256,320,384,416]
        [--proposals 300,150,100,50] [--runtime onnx] [--rounds 2] [--plot benchmarks/detector_sweep.png]

For every setting the detector runs (through ONNX Runtime by default, exported once per setting into the export
cache, as ``predict`` runs it) over every ccp val photo, decoded beforehand: mAP@.5 and mAP@[.5:.95] by the
project's evaluator (conf 0.05, as ``evaluate``), and detector-only speed: wall img/s and CPU milliseconds per
photo. Timing rounds visit the settings in an order rotated between rounds; both are medians over rounds. On a
shared machine the CPU time is the steadier measure of cost. With ``--products N`` it also reads N products val
photos once per setting: the six-way accuracy (top garment type, or none for hats and shoes, at conf 0.25), which
the shipped detector did not train on, unlike ccp val. Retraining is not involved: the settings change inference
only (detectors.faster_rcnn.set_inference, applied when the detector is loaded).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fashion2stage.app.evaluate import evaluate_boxes, evaluate_types  # noqa: E402
from fashion2stage.formats.coco import read_coco_detection  # noqa: E402
from fashion2stage.formats.folders import read_class_folders  # noqa: E402
from fashion2stage.images import load_image  # noqa: E402
from fashion2stage.photo_loop import detect_photos  # noqa: E402
from fashion2stage.results import ImagePrediction  # noqa: E402


def load(run: Path, size: int, proposals: int, runtime: str, threads: int):
    """The detector of ``run`` with these inference settings, on ``runtime`` (the same path as predict's)."""
    from fashion2stage.app.pipeline import load_pipeline  # noqa: PLC0415

    pipe = load_pipeline(detector=run, use_default=False, runtime=runtime, threads=threads,
                         detector_size=size, proposals=proposals)
    return pipe.detector


def run_once(detector, images: list, conf: float) -> tuple[list, float, float]:
    """Detections, wall seconds and CPU seconds of this process (all its threads) over the photos."""
    t0, c0 = time.perf_counter(), time.process_time()
    found = [detector.predict([im], conf=conf)[0] for im in images]
    return found, time.perf_counter() - t0, time.process_time() - c0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path,
                    default=Path(os.environ.get("FASHION_BENCH", ROOT.parent / "shared/data/fashion-bench")))
    ap.add_argument("--detector", type=Path, default=ROOT / "fashion2stage/default_model/detector")
    ap.add_argument("--sizes", default="256,320,384,416")
    ap.add_argument("--proposals", default="300,150,100,50")
    ap.add_argument("--runtime", default="onnx", choices=["onnx", "torch"])
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=2, help="timing passes over the photos per setting")
    ap.add_argument("--images", type=int, default=0, help="use only the first N val photos (0: all)")
    ap.add_argument("--products", type=int, default=0, help="also the six-way accuracy on this many products val "
                    "photos, evenly spaced over the classes (held out for the shipped detector; 0: none)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--plot", type=Path, default=None)
    a = ap.parse_args(argv)
    gt = read_coco_detection(a.data / "ccp/annotations/instances_val.json")
    if a.images:
        gt.records = gt.records[:a.images]
    images = [load_image(r.root / r.file) for r in gt.records]
    products = read_class_folders(a.data / "products/val", ROOT / "configs/fashion-bench-products.yaml") \
        if a.products else None
    if products is not None:  # records are sorted by class folder: an even stride keeps every class
        products.records = products.records[::max(1, len(products.records) // a.products)][:a.products]
    settings = [(int(s), int(p)) for s in a.sizes.split(",") for p in a.proposals.split(",")]
    detectors = {st: load(a.detector, *st, a.runtime, a.threads) for st in settings}  # exports first, untimed
    for d in detectors.values():  # a session's first run allocates its buffers: not part of the cost per photo
        d.predict(images[:1])
    rows = {st: {"image_size": st[0], "proposals": st[1], "seconds": [], "cpu_seconds": []} for st in settings}
    for r in range(a.rounds):
        order = settings[r % len(settings):] + settings[:r % len(settings)]
        for st in order:
            found, seconds, cpu = run_once(detectors[st], images, conf=0.05)
            rows[st]["seconds"].append(seconds)
            rows[st]["cpu_seconds"].append(cpu)
            if r == 0:
                m = evaluate_boxes(gt, as_predictions(gt.records, found))
                rows[st].update(map50=m["map50"], map=m["map"],
                                per_image=sum(g.score >= 0.25 for gs in found for g in gs) / len(images))
                if products is not None:
                    rows[st]["products_six_way"] = six_way(detectors[st], products)
            print(f"round {r + 1} size {st[0]} proposals {st[1]}: {len(images) / seconds:.2f} img/s, "
                  f"{1000 * cpu / len(images):.0f} CPU ms/photo"
                  + (f", mAP@.5 {rows[st]['map50']:.3f}" if r == 0 else ""), flush=True)
    out = []
    for st in settings:
        row = rows[st]
        row["img_s"] = len(images) / statistics.median(row["seconds"])
        row["cpu_ms"] = 1000 * statistics.median(row["cpu_seconds"]) / len(images)
        out.append(row)
    print("| input size | proposals | ccp mAP@.5 | ccp mAP@[.5:.95] | products six-way | garments / photo (conf "
          "0.25) | detector img/s | CPU ms / photo |")
    print("|---|---|---|---|---|---|---|---|")
    for row in out:
        six = f"{row['products_six_way']:.3f}" if "products_six_way" in row else "-"
        print(f"| {row['image_size']} | {row['proposals']} | {row['map50']:.3f} | {row['map']:.3f} | {six} | "
              f"{row['per_image']:.2f} | {row['img_s']:.2f} | {row['cpu_ms']:.0f} |")
    if a.json:
        a.json.write_text(json.dumps({"photos": len(images), "runtime": a.runtime, "rows": out}, indent=2) + "\n")
    if a.plot:
        plot(out, a.plot, len(images), a.runtime)
    return 0


def as_predictions(records, found) -> dict[str, ImagePrediction]:
    """The evaluator's input: detections only, one ImagePrediction per photo."""
    return {rec.file: ImagePrediction(image=rec.file, garments=gs) for rec, gs in zip(records, found)}


def six_way(detector, products) -> float:
    """Products val: the top garment's type (or none) against the photo's class, at predict's conf 0.25."""
    found, _ = detect_photos([r.root / r.file for r in products.records], detector, 0.25, lambda i, im, gs: gs,
                             batch_size=1)
    found = [gs or [] for gs in found]  # an unreadable photo (named on stdout) scores as "nothing found"
    return evaluate_types(products, as_predictions(products.records, found), 0.25)["six_way_accuracy"]


def plot(rows: list[dict], path: Path, n: int, runtime: str) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for size in sorted({r["image_size"] for r in rows}):
        pts = sorted((r for r in rows if r["image_size"] == size), key=lambda r: r["cpu_ms"])
        ax.plot([1000 / r["cpu_ms"] for r in pts], [r["map50"] for r in pts], "o-", label=f"input {size} px")
        for r in pts:
            ax.annotate(str(r["proposals"]), (1000 / r["cpu_ms"], r["map50"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    ax.set_xlabel(f"detector photos per CPU-second ({runtime}, median of rounds)")
    ax.set_ylabel(f"ccp val mAP@.5 ({n} photos; not held-out)")
    ax.set_title("Faster R-CNN inference settings (labels: proposals kept)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
