"""The runtime every way in gets by default (``auto``: ONNX Runtime on the CPU where onnxruntime is installed), chosen
when each model is loaded, and a Faster R-CNN's inference-only speed settings. predict, evaluate, the Python API,
serve and ``predict --engine ray`` all load through ``load_pipeline``: each is checked to reach it with the same
default."""
import importlib.util
import inspect

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from detectors.faster_rcnn import FasterRCNNConfig, FasterRCNNDetector, build_faster_rcnn, set_inference
from fashion2stage.app.cli import app
from fashion2stage.app.pipeline import default_batch_size, load_pipeline
from fashion2stage.labels import LabelSet
from fashion2stage.nets import OnnxNet, resolve_runtime

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None


def _on_onnx(pipe) -> list[str]:
    """The stages of a loaded pipeline whose network runs on ONNX Runtime."""
    return [s for s in ("detector", "attributes", "keypoints") if isinstance(getattr(pipe, s).net, OnnxNet)]


def test_auto_means_onnx_runtime_on_the_cpu_where_installed():
    assert resolve_runtime("auto", "cpu") == ("onnx" if HAS_ORT else "torch")
    assert resolve_runtime("auto", "cuda:0") == "torch"  # ONNX Runtime runs here on the CPU only
    assert (resolve_runtime("torch", "cpu"), resolve_runtime("onnx", "cpu")) == ("torch", "onnx")
    with pytest.raises(ValueError, match="expected one of auto, onnx, torch"):
        resolve_runtime("tensorrt", "cpu")
    # the batch default follows what actually runs: torch on the CPU measured fastest one image at a time
    assert default_batch_size("auto", "cpu") == (8 if HAS_ORT else 1)
    assert default_batch_size("torch", "cpu") == 1 and default_batch_size("auto", "cuda") == 8


def test_every_entry_point_defaults_to_auto():
    from fashion2stage import Reader
    from fashion2stage.app.cli import _load_pipeline

    assert inspect.signature(load_pipeline).parameters["runtime"].default == "auto"
    assert inspect.signature(Reader).parameters["runtime"].default == "auto"
    assert inspect.signature(_load_pipeline).parameters["runtime"].default == "auto"  # evaluate's
    params = {p.name: p for p in typer.main.get_command(app).commands["predict"].params}
    assert params["runtime"].default == "auto"  # also what --engine ray hands its actors
    serve = {p.name: p for p in typer.main.get_command(app).commands["serve"].params}
    assert serve["runtime"].default is None  # None: the Python API's default


@pytest.mark.slow
@pytest.mark.skipif(not HAS_ORT, reason="onnxruntime not installed: auto means torch")
def test_reader_serve_and_ray_actors_run_the_shipped_models_on_onnx_runtime(monkeypatch, tmp_path):
    from fashion2stage import Reader
    from fashion2stage.app import ray_predict
    from fashion2stage.app.serve import server as serve_app

    assert _on_onnx(Reader(conf=0.5).pipeline) == ["detector", "attributes", "keypoints"]

    loaded = {}
    monkeypatch.setattr(serve_app, "serve", lambda load_reader, **kw: loaded.update(serve=load_reader()))

    def capture(models, images, out, writers, **kw):  # what the CLI hands the Ray actors, without starting Ray
        loaded["ray"] = ray_predict.PipelineActor(models, threads=1)
        raise ValueError("captured")

    monkeypatch.setattr(ray_predict, "predict_with_writers", capture)
    assert CliRunner().invoke(app, ["serve", "--conf", "0.5"]).exit_code == 0
    (tmp_path / "photos").mkdir()
    result = CliRunner().invoke(app, ["predict", "--images", str(tmp_path / "photos"), "--out", str(tmp_path / "o"),
                                      "--engine", "ray"])
    assert "captured" in result.output, result.output
    assert _on_onnx(loaded["serve"].pipeline) == ["detector", "attributes", "keypoints"]
    assert _on_onnx(loaded["ray"].pipeline) == ["detector", "attributes", "keypoints"]


def _tiny_model():
    torch.manual_seed(0)
    cfg = FasterRCNNConfig(num_classes=3, min_size=(96, 128), max_size=200, fpn_channels=16,
                           rpn_pre_nms_top_n_test=60, rpn_post_nms_top_n_test=40)
    return build_faster_rcnn(cfg, pretrained_backbone=False)


def test_faster_rcnn_inference_settings_change_inference_only():
    model = _tiny_model()
    assert set_inference(model) == {"image_size": 128, "max_size": 200, "proposals": 40, "pre_nms": 60}
    train_before = dict(model.rpn._post_nms_top_n), dict(model.rpn._pre_nms_top_n)
    assert set_inference(model, image_size=64, proposals=80) == {"image_size": 64, "max_size": 100, "proposals": 80,
                                                                 "pre_nms": 80}  # pre-NMS never below what is kept
    assert model.rpn._post_nms_top_n["training"] == train_before[0]["training"]
    assert model.rpn._pre_nms_top_n["training"] == train_before[1]["training"]
    det = FasterRCNNDetector.from_model(model, LabelSet(garment_types=["blouse", "skirt"]))
    resized, _ = model.transform([torch.rand(3, 150, 200)])
    assert resized.image_sizes == [(64, 85)]  # shorter side 64, aspect kept
    assert model.rpn.post_nms_top_n() == 80 and det.settings["proposals"] == 80
    found = det.predict([np.zeros((150, 200, 3), np.uint8)], conf=0.0)[0]
    assert found  # an untrained detector at conf 0 still returns its boxes
    for g in found:  # in the photo's pixels (clipped to it), not the resized input's
        x1, y1, x2, y2 = g.box_xyxy
        assert -1e-3 <= x1 < x2 <= 200 + 1e-3 and -1e-3 <= y1 < y2 <= 150 + 1e-3
    assert max(g.box_xyxy[2] for g in found) > 85 + 1  # some box reaches past the resized input's width
    assert set_inference(model) == det.settings  # None keeps what is set


def test_the_shipped_detector_runs_at_its_validation_size_with_fewer_proposals_by_default():
    """No flags: the size detect-train validated at (the accuracy BENCHMARKS.md reports), 100 proposals instead of
    the 300 it trained with (free, measured); --detector-size and --proposals override both."""
    from fashion2stage.app.pipeline import PROPOSALS, default_bundle
    from fashion2stage.runs import load_config

    validated = load_config(default_bundle() / "detector")["image_size"]
    settings = load_pipeline(runtime="torch").detector.settings
    assert settings["image_size"] == validated == 416 and settings["proposals"] == PROPOSALS == 100
    fast = load_pipeline(runtime="torch", detector_size=320, proposals=50).detector.settings
    assert fast["image_size"] == 320 and fast["proposals"] == 50
