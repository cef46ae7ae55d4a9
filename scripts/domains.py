"""Per-domain scores of model bundles side by side, and the plain whole-photo classifier, in one run.

For each bundle (a folder holding detector/, attributes/, keypoints/ run folders) this runs the user's own
``fashion2stage evaluate`` on the fashion-bench validation splits, end to end (the detector's boxes, never ground
truth):

- products/val (class folders): top-type accuracy, no-garment rate on hat/shoe photos, six-way accuracy;
- landmarks/val: keypoint PCK@0.1 and NE of the detected garments;
- ccp/val: box mAP@.5 (and fine-category accuracy of the matched garments);
- cad/val: attribute mean accuracy (image-level answers);
- ccp_tags/val (street photos with image tags): tag precision, recall and F1 of the garment types shown with a
  score >= 0.5 (``evaluate --tags``).

    python scripts/domains.py --bundle old=runs/bundle-old --bundle new=fashion2stage/default_model \\
        --data ../shared/data/fashion-bench --out runs/domains [--plain] [--bundle-args 'gpu=--device cuda']

Prints a markdown table (one column per bundle) and writes ``domains.json`` into ``--out``.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ROOT / "configs" / "fashion-bench-products.yaml"
TAGS = ROOT / "configs" / "fashion-bench-tags.yaml"


def domain_args(data: Path) -> dict[str, list[str]]:
    return {
        # predicted at the threshold the score counts garments from: the same report, without scoring the
        # attributes and landmarks of garments that cannot count
        "products": ["--class-folders", str(data / "products/val"), "--classes", str(CLASSES), "--conf", "0.25"],
        "landmarks": ["--keypoint-labels", str(data / "landmarks/annotations/keypoints_val.json"),
                      "--images", str(data / "landmarks/images")],
        "ccp": ["--boxes", str(data / "ccp/annotations/instances_val.json"), "--images", str(data / "ccp/images")],
        "cad": ["--attribute-labels", str(data / "cad/labels_val.csv"), "--images", str(data / "cad")],
        # predicted at the tag threshold: what the score counts is what predict --conf 0.5 shows
        "ccp_tags": ["--tags", str(data / "ccp_tags/tags_val.csv"), "--classes", str(TAGS), "--conf", "0.5"],
    }


def evaluate(bundle: Path, args: list[str], out: Path, threads: int, extra: list[str] = ()) -> tuple[dict, float]:
    cmd = [str(Path(sys.executable).parent / "fashion2stage"), "evaluate", *args, "--out", str(out),
           "--detector", str(bundle / "detector"), "--classifier", str(bundle / "attributes"),
           "--keypoints", str(bundle / "keypoints"), *extra]
    t0 = time.perf_counter()
    env_threads = {"OMP_NUM_THREADS": str(threads)} if threads else {}
    result = subprocess.run(cmd, capture_output=True, text=True, env={**__import__("os").environ, **env_threads})
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}\n{result.stderr.strip().splitlines()[-1] if result.stderr else ''}")
    return json.loads((out / "evaluation.json").read_text()), time.perf_counter() - t0


def summary(report: dict) -> dict:
    """The headline number of each domain from an evaluation.json."""
    out = {}
    if "types" in report:
        t = report["types"]
        out.update({"product top-type accuracy": t["type_accuracy"], "product no-garment rate": t["no_garment_rate"],
                    "product six-way accuracy": t["six_way_accuracy"]})
        for k, v in t.get("attributes", {}).items():
            out[f"product {k} accuracy (top garment)"] = v["accuracy"]
    if "keypoints" in report:
        k = report["keypoints"]
        out.update({"landmarks PCK@0.1 (end to end)": k["pck@0.1"], "landmarks NE % (end to end)": k["ne"],
                    "landmark garments missed": k.get("garments_missed")})
    if "detection" in report:
        out["ccp mAP@.5"] = report["detection"]["map50"]
        if "garment_attributes" in report:
            out["ccp fine-category accuracy"] = report["garment_attributes"]["mean_accuracy"]
    if "image_attributes" in report:
        out["cad mean accuracy"] = report["image_attributes"]["mean_accuracy"]
    if "tags" in report:
        t = report["tags"]
        out.update({"street tag precision": t["precision"], "street tag recall": t["recall"],
                    "street tag F1": t["f1"]})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", action="append", required=True, help="name=folder (detector/, attributes/, keypoints/)")
    ap.add_argument("--data", default="../shared/data/fashion-bench")
    ap.add_argument("--out", default="runs/domains")
    ap.add_argument("--domains", default="products,landmarks,ccp,cad,ccp_tags")
    ap.add_argument("--plain", action="store_true", help="also train and score the plain whole-photo classifier")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--bundle-args", action="append", default=[],
                    help="name=ARGS: more evaluate options for that bundle (e.g. 'gpu=--device cuda')")
    args = ap.parse_args()
    extra = {n: shlex.split(a) for n, a in (spec.split("=", 1) for spec in args.bundle_args)}
    data, out = Path(args.data), Path(args.out)
    wanted = args.domains.split(",")
    table: dict[str, dict] = {}
    for spec in args.bundle:
        name, folder = spec.split("=", 1)
        table[name] = {}
        for domain, dargs in domain_args(data).items():
            if domain not in wanted:
                continue
            report, seconds = evaluate(Path(folder), dargs, out / name / domain, args.threads, extra.get(name, []))
            table[name].update(summary(report))
            print(f"{name} {domain}: {summary(report)} ({seconds:.0f} s)", flush=True)
    if args.plain:
        plain_out = out / "plain"
        subprocess.run([sys.executable, str(ROOT / "scripts/plain_classifier.py"), "--train", str(data / "products/train"),
                        "--val", str(data / "products/val"), "--classes", str(CLASSES), "--out", str(plain_out)],
                       check=True)
        p = json.loads((plain_out / "plain_classifier.json").read_text())
        table["plain classifier"] = {"product top-type accuracy": p["type_accuracy"],
                                     "product no-garment rate": p["no_garment_rate"],
                                     "product six-way accuracy": p["six_way_accuracy"]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "domains.json").write_text(json.dumps(table, indent=2) + "\n")
    rows = sorted({k for v in table.values() for k in v}, key=lambda k: [r for v in table.values() for r in v].index(k))
    print("\n| metric (val) | " + " | ".join(table) + " |\n|---|" + "---|" * len(table))
    for r in rows:
        cells = [table[b].get(r) for b in table]
        print(f"| {r} | " + " | ".join("" if c is None else f"{c:.3f}" if isinstance(c, float) else str(c)
                                       for c in cells) + " |")


if __name__ == "__main__":
    main()
