"""The accuracy price of predict's speed settings: the whole pipeline scored on fashion-bench val, per variant.

    python scripts/accuracy_price.py --variant NAME='{"runtime": "torch", "detector_size": 416}' ... [--json FILE]
        [--sets ccp,cad,landmarks,products] [--keypoints RUN] [--int8 FOLDER]

A variant is the keyword arguments of ``load_pipeline`` (runtime, detector_size, proposals, keypoint_flip, conf,
keypoints ...) as JSON, plus ``"int8": true`` for the statically quantised ONNX models of scripts/quantize_int8.py
(``"heads"``: the attribute and keypoint models only, the detector in float). Each variant predicts, through
``predict_folder`` as the CLI does, the labelled val photos of ccp (boxes, fine category), cad (image-level
attributes), landmarks (keypoints, end to end) and products (top type of a single item, at predict's conf 0.25;
the other sets at the evaluator's conf 0.05), scored by ``fashion2stage.app.evaluate``.

What is held out: the shipped detector trained on ccp train + val, landmarks train and products train, so its
landmarks and products val figures are held out and its ccp ones are not; the shipped attribute and keypoint models
trained on train + val. A train-only keypoint run (``"keypoints": "RUN"``) gives held-out keypoint figures. Compare
variants with each other: each row differs from the first by one setting.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fashion2stage.app import evaluate as ev  # noqa: E402
from fashion2stage.app.pipeline import load_pipeline  # noqa: E402
from fashion2stage.app.predict import predict_folder  # noqa: E402
from fashion2stage.formats.coco import read_coco_detection, read_coco_keypoints  # noqa: E402
from fashion2stage.formats.fashionai import read_attribute_csv  # noqa: E402
from fashion2stage.formats.folders import read_class_folders  # noqa: E402

PRODUCT_CONF = 0.25  # a single item's top type is read at the threshold users run predict with


def labelled_sets(bench: Path, names: list[str]) -> dict:
    readers = {"ccp": lambda: read_coco_detection(bench / "ccp/annotations/instances_val.json"),
               "cad": lambda: read_attribute_csv(bench / "cad/labels_val.csv"),
               "landmarks": lambda: read_coco_keypoints(bench / "landmarks/annotations/keypoints_val.json"),
               "products": lambda: read_class_folders(bench / "products/val",
                                                      ROOT / "configs/fashion-bench-products.yaml")}
    return {n: readers[n]() for n in names}


def score(pipe, sets: dict, work: Path) -> dict:
    """The variant's figures on each set, and its CPU milliseconds per photo over all of them."""
    out, cpu, photos = {}, 0.0, 0
    for name, gt in sets.items():
        root = gt.records[0].root
        files = sorted({r.file for r in gt.records})
        s = predict_folder(pipe, root, work / name, batch_size=8, files=files, progress=False)
        cpu, photos = cpu + s.cpu_seconds, photos + s.images
        preds = ev.read_predictions(work / name / "predictions.jsonl")
        if name == "ccp":
            d, a = ev.evaluate_boxes(gt, preds), ev.evaluate_garment_attributes(gt, preds)
            out.update({"ccp mAP@.5": d["map50"], "ccp mAP": d["map"],
                        "fine category top-1": a["keys"]["fine_category"]["accuracy"]})
        elif name == "cad":
            a = ev.evaluate_image_attributes(gt, preds)
            out.update({"cad mean accuracy": a["mean_accuracy"], "cad mAP": a["mAP"]})
        elif name == "landmarks":
            k = ev.evaluate_keypoints(gt, preds)
            out.update({"landmarks NE %": k["ne"], "landmarks PCK@0.1": k["pck@0.1"]})
        else:
            t = ev.evaluate_types(gt, preds, PRODUCT_CONF)
            out.update({"products six-way": t["six_way_accuracy"]})
    out["CPU ms / photo"] = 1000 * cpu / max(photos, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path,
                    default=Path(os.environ.get("FASHION_BENCH", ROOT.parent / "shared/data/fashion-bench")))
    ap.add_argument("--variant", action="append", required=True, metavar="NAME=JSON")
    ap.add_argument("--int8", type=Path, default=None, help="folder of scripts/quantize_int8.py's models")
    ap.add_argument("--sets", default="ccp,cad,landmarks,products", help="which val sets to score")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    sets = labelled_sets(a.data, a.sets.split(","))
    results = {}
    for v in a.variant:
        name, _, spec = v.partition("=")
        kwargs = json.loads(spec or "{}")
        int8 = kwargs.pop("int8", False)  # true: all three networks; "heads": attributes and keypoints only
        pipe = load_pipeline(conf=kwargs.pop("conf", 0.05), **kwargs)
        if int8:
            from quantize_int8 import use_int8  # noqa: PLC0415

            use_int8(pipe, a.int8, kwargs.get("threads", 0), detector=int8 is True)
        with tempfile.TemporaryDirectory() as tmp:
            results[name] = score(pipe, sets, Path(tmp))
        print(name, json.dumps({k: round(v, 4) for k, v in results[name].items()}), flush=True)
        if a.json:  # after every variant: a long run that dies keeps what it measured
            a.json.write_text(json.dumps(results, indent=2) + "\n")
    keys = list(next(iter(results.values())))
    print("| variant | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for name, r in results.items():
        print(f"| {name} | " + " | ".join(f"{r[k]:.0f}" if k.startswith("CPU") else f"{r[k]:.3f}" for k in keys)
              + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
