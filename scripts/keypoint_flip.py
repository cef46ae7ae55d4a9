"""What the keypoint flip test buys: NE and PCK@0.1 with and without it, on ground-truth and jittered val boxes.

    python scripts/keypoint_flip.py [--keypoints RUN ...] [--seeds 5]

The keypoint model alone (no detector: its misses would hide the difference), scored as keypoints-train scores it
(``evaluate_keypoints``), on landmarks val: exact boxes, and boxes jittered by the default sampler with ``--seeds``
seeds (the spread between seeds says what is noise).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from classifiers.keypoint_data import read_keypoint_dataset  # noqa: E402
from classifiers.keypoints import load_keypoint_model  # noqa: E402
from classifiers.train_keypoints import evaluate_keypoints  # noqa: E402
from fashion2stage.jitter import JitterSampler  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path,
                    default=Path(os.environ.get("FASHION_BENCH", ROOT.parent / "shared/data/fashion-bench")))
    ap.add_argument("--keypoints", type=Path, action="append", default=None,
                    help="keypoints run folders (default: the shipped one)")
    ap.add_argument("--seeds", type=int, default=5)
    a = ap.parse_args(argv)
    val = read_keypoint_dataset(a.data / "landmarks/annotations/keypoints_val.json")
    print("| keypoint run | flip test | NE % GT boxes | PCK@0.1 GT | NE % jittered (median of seeds, range) | "
          "PCK@0.1 jittered |")
    print("|---|---|---|---|---|---|")
    for run in a.keypoints or [ROOT / "fashion2stage/default_model/keypoints"]:
        predictor = load_keypoint_model(run)
        for flip in (True, False):
            gt, _ = evaluate_keypoints(predictor, val, JitterSampler.none(), flip_test=flip)
            jit = [evaluate_keypoints(predictor, val, JitterSampler.default(), seed=s, flip_test=flip)[0]
                   for s in range(a.seeds)]
            ne = [r["ne"] for r in jit]
            pck = statistics.median(r["pck@0.1"] for r in jit)
            print(f"| {run.name} | {'on' if flip else 'off'} | {gt['ne']:.2f} | {gt['pck@0.1']:.3f} | "
                  f"{statistics.median(ne):.2f} ({min(ne):.2f}-{max(ne):.2f}) | {pck:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
