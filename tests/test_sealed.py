"""Every command with the network sealed: each runs as a user runs it, in its own process, with every attempt to
resolve a name or open a connection recorded and refused, and with none of the libraries' offline variables set
by the caller (the package must set them itself). The test asserts that the record is empty, not only that the
command finished. The predict run also records which modules were imported: inference must not import
albumentations or any training module.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from classifiers.onnx_cache import CACHE_ENV

from tiny_models import _write_set  # tiny COCO set with boxes, attributes and keypoints

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "images"

# Runs before the package or any library is imported. Refused calls append one JSON line each to the record file
# (written at once: a killed command still leaves its record); at exit the imported top-level packages and
# project modules go to <record>.modules.
BOOTSTRAP = r"""
import atexit, json, os, socket, sys, traceback
record = sys.argv.pop(1)
_stdlib = os.path.dirname(os.__file__)

def _refuse(name):
    def refuse(*args, **kwargs):
        if name == "connect" and getattr(args[0], "family", None) == socket.AF_UNIX:
            return _connect(*args, **kwargs)  # a local socket file, not the network
        # the callers that matter: the library or project code, not the stdlib's http and socket layers
        where = [f"{f.filename}:{f.lineno}" for f in traceback.extract_stack()[:-1]
                 if not f.filename.startswith(_stdlib) or "site-packages" in f.filename][-8:]
        with open(record, "a") as f:
            f.write(json.dumps({"call": name, "args": repr(args[1:] if name.startswith("connect") else args)[:200],
                                "stack": where}) + "\n")
        raise OSError(f"network sealed by the test ({name})")
    return refuse

_connect = socket.socket.connect
socket.socket.connect = _refuse("connect")
socket.socket.connect_ex = _refuse("connect_ex")
socket.socket.sendto = _refuse("sendto")
socket.create_connection = _refuse("create_connection")
socket.getaddrinfo = _refuse("getaddrinfo")
socket.gethostbyname = _refuse("gethostbyname")
socket.gethostbyname_ex = _refuse("gethostbyname_ex")

@atexit.register
def _modules():
    with open(record + ".modules", "w") as f:
        json.dump(sorted(sys.modules), f)

sys.argv[0] = "fashion2stage"
from fashion2stage.app.cli import app
app()
"""

# modules only training may import (albumentations: training-time augmentation, and it phoned PyPI on import)
TRAINING_ONLY = ("albumentations", "classifiers.keypoint_data", "classifiers.attribute_data",
                 "classifiers.train_attributes", "classifiers.train_keypoints", "detectors.train",
                 "detectors.faster_rcnn_train", "detectors.yolo_train")


def sealed(tmp: Path, name: str, *args) -> tuple[list[dict], list[str]]:
    """Run ``fashion2stage *args`` sealed; returns the refused calls and the modules it imported. The command must
    succeed."""
    record = tmp / f"{name}.record"
    env = {k: v for k, v in os.environ.items()
           if k not in ("NO_ALBUMENTATIONS_UPDATE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", CACHE_ENV)
           and not k.startswith("YOLO_")}  # no export cache either: the first predict exports, sealed
    env.update(XDG_CACHE_HOME=str(tmp / "cache"), OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", BOOTSTRAP, str(record), *map(str, args)], cwd=tmp, env=env,
                         capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, f"{name}: {out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    attempts = [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []
    return attempts, json.loads((tmp / f"{name}.record.modules").read_text())


def test_predict_with_the_shipped_model_is_sealed_and_imports_no_training_module(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    first = sorted(EXAMPLES.glob("*.jpg"))[0]
    (photos / first.name).write_bytes(first.read_bytes())
    attempts, modules = sealed(tmp_path, "predict", "predict", "--images", photos, "--out", tmp_path / "out")
    assert attempts == []
    assert [m for m in modules if m.startswith(TRAINING_ONLY)] == []
    line = json.loads((tmp_path / "out" / "predictions.jsonl").read_text())
    assert line["image"] == first.name and line["garments"]


def test_train_export_evaluate_predict_are_sealed(tmp_path):
    """Tiny runs of every train command, an ONNX export of both detector backends, evaluate (which predicts, on
    ONNX Runtime by default: exported into the cache first) and predict with ONNX Runtime."""
    data = tmp_path / "data"
    train, val = _write_set(data, "train", 6, 0), _write_set(data, "val", 4, 1)
    runs = tmp_path / "runs"
    steps = {
        "detect-train faster-rcnn": ["detect-train", "--data", train, "--val", val, "--detector", "faster-rcnn",
                                     "--epochs", 1, "--batch", 3, "--image-size", 96, "--threads", 1,
                                     "--project", runs, "--name", "det"],
        "detect-train yolo": ["detect-train", "--data", train, "--val", val, "--detector", "yolo", "--epochs", 1,
                              "--batch", 3, "--image-size", 64, "--threads", 1, "--project", runs, "--name", "yolo"],
        "classify-train": ["classify-train", "--data", train, "--val", val, "--epochs", 1, "--image-size", 64,
                           "--batch-size", 4, "--threads", 1, "--project", runs, "--name", "attr"],
        "keypoints-train": ["keypoints-train", "--data", train, "--val", val, "--image-size", "64x64",
                            "--batch-size", 3, "--epochs", 1, "--threads", 1, "--project", runs, "--name", "kp"],
        "export": ["export", runs / "det", runs / "yolo"],
        "evaluate": ["evaluate", "--images", data / "images", "--out", tmp_path / "ev", "--boxes", val,
                     "--keypoint-labels", val, "--detector", runs / "det", "--classifier", runs / "attr",
                     "--keypoints", runs / "kp"],
        "predict onnx": ["predict", "--images", data / "images", "--out", tmp_path / "po", "--detector",
                         runs / "yolo", "--no-default", "--runtime", "onnx", "--conf", "0.01"],
    }
    records = {}
    for i, (name, args) in enumerate(steps.items()):
        records[name], _ = sealed(tmp_path, f"step{i}", *args)
    assert {k: v for k, v in records.items() if v} == {}
    assert json.loads((tmp_path / "ev" / "evaluation.json").read_text())["keypoints"]["n_samples"] == 8
    assert len((tmp_path / "po" / "predictions.jsonl").read_text().splitlines()) == 10
