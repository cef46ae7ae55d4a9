"""int8 static quantisation of the pipeline's ONNX models in ONNX Runtime, calibrated on a few training photos.

    python scripts/quantize_int8.py --out runs/int8 [--photos 16] [--detector-size 320 --proposals 100]

Writes ``{detector,attributes,keypoints}.onnx`` (float, as predict exports them) and ``*.int8.onnx`` (QDQ, weights
int8 per channel, activations uint8, MinMax calibration) into ``--out``, then times each float / int8 pair on the
same inputs. Calibration inputs are what each network sees in predict: the photos themselves for the detector, and
padded crops of the detector's garments (cut with each head's crop spec) for the heads. Calibration uses ccp
*train* photos, never the val photos the accuracy is measured on (scripts/accuracy_price.py, ``"int8": true``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STAGES = ("detector", "attributes", "keypoints")


def calibration_inputs(pipe, photos: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Per network, the float32 arrays predict feeds it for these photos (torch pipeline, same preprocessing)."""
    from detectors.faster_rcnn import to_tensor  # noqa: PLC0415
    from fashion2stage.geometry import crop  # noqa: PLC0415
    from fashion2stage.nets import normalised  # noqa: PLC0415

    out = {"detector": [to_tensor(im).numpy() for im in photos], "attributes": [], "keypoints": []}
    for im, garments in zip(photos, pipe.detect(photos)):
        if not garments:
            continue
        a = np.stack([crop(im, g.box_xyxy, pipe.attributes.crop_spec)[0] for g in garments])
        k = np.stack([crop(im, g.box_xyxy, pipe.keypoints.crop_spec)[0] for g in garments])
        norm = pipe.attributes.normalisation
        out["attributes"].append(normalised(a, norm.mean, norm.std))
        out["keypoints"].append(normalised(k, pipe.keypoints.mean, pipe.keypoints.std))
    return out


class Reader:
    """onnxruntime's CalibrationDataReader over a list of inputs."""

    def __init__(self, name: str, arrays: list[np.ndarray]):
        self.name, self.it = name, iter(arrays)

    def get_next(self):
        x = next(self.it, None)
        return None if x is None else {self.name: x}


def quantize(float_path: Path, int8_path: Path, input_name: str, arrays: list[np.ndarray], convs_only: bool) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static  # noqa: PLC0415
    from onnxruntime.quantization.shape_inference import quant_pre_process  # noqa: PLC0415

    pre = float_path.with_suffix(".pre.onnx")
    quant_pre_process(str(float_path), str(pre), skip_symbolic_shape=True)
    # the detector's graph also holds NMS, RoIAlign and box arithmetic: quantise only its convolutions and
    # matrix products, where the time goes
    ops = ["Conv", "Gemm", "MatMul"] if convs_only else None
    quantize_static(str(pre), str(int8_path), Reader(input_name, arrays), quant_format=QuantFormat.QDQ,
                    per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                    op_types_to_quantize=ops)
    pre.unlink(missing_ok=True)


def use_int8(pipe, folder: Path, threads: int = 0, detector: bool = True) -> None:
    """Give the pipeline predictors built on the int8 models in ``folder`` (the ones this script wrote), with the
    loaded ones' labels and settings; the detector stays as it is with ``detector=False``."""
    from dataclasses import replace  # noqa: PLC0415

    from classifiers.keypoints import OUTPUTS as KEYPOINT_OUTPUTS  # noqa: PLC0415
    from detectors.faster_rcnn import OUTPUTS, FasterRCNNDetector  # noqa: PLC0415
    from fashion2stage.nets import OnnxNet  # noqa: PLC0415

    folder = Path(folder)
    if detector:
        pipe.detector = FasterRCNNDetector(OnnxNet(folder / "detector.int8.onnx", threads, OUTPUTS),
                                           pipe.detector.labels, pipe.detector.settings)
    heads = tuple(pipe.attributes.heads)
    pipe.attributes = replace(pipe.attributes, net=OnnxNet(folder / "attributes.int8.onnx", threads, heads))
    pipe.keypoints = replace(pipe.keypoints, net=OnnxNet(folder / "keypoints.int8.onnx", threads, KEYPOINT_OUTPUTS))


def seconds_per_run(path: Path, name: str, arrays: list[np.ndarray], threads: int, rounds: int = 3) -> float:
    import onnxruntime as ort  # noqa: PLC0415

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    s.run(None, {name: arrays[0]})
    best = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for x in arrays:
            s.run(None, {name: x})
        best.append(time.perf_counter() - t0)
    return float(np.median(best))


def main(argv: list[str] | None = None) -> int:
    from classifiers.export import export_onnx  # noqa: PLC0415
    from classifiers.keypoints import OUTPUTS as KEYPOINT_OUTPUTS  # noqa: PLC0415
    from fashion2stage.formats.coco import read_coco_detection  # noqa: PLC0415
    from fashion2stage.images import load_image  # noqa: PLC0415
    from fashion2stage.app.pipeline import load_pipeline  # noqa: PLC0415

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path,
                    default=Path(os.environ.get("FASHION_BENCH", ROOT.parent / "shared/data/fashion-bench")))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--photos", type=int, default=16, help="ccp train photos to calibrate on")
    ap.add_argument("--detector-size", type=int, default=None)
    ap.add_argument("--proposals", type=int, default=None)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    pipe = load_pipeline(runtime="torch", detector_size=a.detector_size, proposals=a.proposals, conf=0.25)
    print("detector settings:", json.dumps(pipe.detector.settings), flush=True)
    train = read_coco_detection(a.data / "ccp/annotations/instances_train.json")
    step = max(1, len(train.records) // a.photos)
    photos = [load_image(r.root / r.file) for r in train.records[::step][:a.photos]]
    inputs = calibration_inputs(pipe, photos)
    pipe.detector.export_onnx(a.out / "detector.onnx")  # with the settings loaded above baked in
    for stage, outputs in (("attributes", list(pipe.attributes.heads)), ("keypoints", list(KEYPOINT_OUTPUTS))):
        head = getattr(pipe, stage)
        export_onnx(head.net.module, (head.crop_spec.height, head.crop_spec.width), a.out / f"{stage}.onnx", outputs)
    names = {"detector": "image", "attributes": "images", "keypoints": "images"}
    report = {}
    for stage in STAGES:
        f32, i8 = a.out / f"{stage}.onnx", a.out / f"{stage}.int8.onnx"
        quantize(f32, i8, names[stage], inputs[stage], convs_only=stage == "detector")
        t32 = seconds_per_run(f32, names[stage], inputs[stage], a.threads)
        t8 = seconds_per_run(i8, names[stage], inputs[stage], a.threads)
        report[stage] = {"float_s": t32, "int8_s": t8, "speed-up": t32 / t8, "calibration_inputs": len(inputs[stage])}
        print(stage, json.dumps(report[stage]), flush=True)
    (a.out / "timing.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
