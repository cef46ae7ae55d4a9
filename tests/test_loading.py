"""The runtime is chosen when a model is loaded (fashion2stage/nets.py): each loader builds its predictor with a torch
network or an ONNX Runtime one, ``auto`` falls back to torch with one warning line when the export fails, ``onnx``
is one error line naming the run; what is loaded satisfies the role the pipeline calls it through."""
import importlib.util

import numpy as np
import pytest

from classifiers.attributes import load_attribute_model
from classifiers.crop_models import SharedCropModel, load_crop_models
from classifiers.keypoints import load_keypoint_model
from detectors.load import load_detector
from fashion2stage.app.pipeline import default_bundle
from fashion2stage.errors import DataError
from fashion2stage.nets import OnnxNet, TorchNet, normalised
from fashion2stage.cache import CACHE_ENV
from fashion2stage.roles import AttributeClassifier, Detector, KeypointEstimator

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None
LOADERS = {"detector": load_detector, "attributes": load_attribute_model, "keypoints": load_keypoint_model}
ROLES = {"detector": Detector, "attributes": AttributeClassifier, "keypoints": KeypointEstimator}


@pytest.fixture
def no_cache(tmp_path, monkeypatch):
    """A cache folder that cannot be made (a file stands in its place): every export fails."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv(CACHE_ENV, str(blocker))


@pytest.mark.slow
@pytest.mark.skipif(not HAS_ORT, reason="onnxruntime not installed")
def test_the_runtime_chosen_at_load_is_the_network_the_predictor_holds():
    run = default_bundle() / "keypoints"
    on_torch, on_onnx = load_keypoint_model(run, runtime="torch"), load_keypoint_model(run, runtime="onnx", threads=1)
    assert isinstance(on_torch.net, TorchNet) and isinstance(on_onnx.net, OnnxNet)
    assert isinstance(on_onnx, KeypointEstimator) and isinstance(on_torch, KeypointEstimator)
    crops = np.random.default_rng(0).integers(0, 255, (2, on_onnx.crop_spec.height, on_onnx.crop_spec.width, 3),
                                              dtype=np.uint8)
    # the same pre- and post-processing around either network: only their arithmetic differs
    np.testing.assert_allclose(on_onnx.heatmaps(crops), on_torch.heatmaps(crops), atol=1e-3)
    types = [t for t in on_torch.labels.garment_types if on_torch.labels.keypoint_indices(t)][:1] * 2
    k = len(on_torch.labels.keypoints)
    assert on_onnx.predict(crops, types).shape == on_torch.predict(crops, types).shape == (2, k, 3)


@pytest.mark.parametrize("stage", list(LOADERS))
def test_auto_stays_on_torch_with_one_warning_when_the_export_fails(stage, no_cache, caplog):
    model = LOADERS[stage](default_bundle() / stage, runtime="auto")
    assert isinstance(model.net, TorchNet) and isinstance(model, ROLES[stage])
    if HAS_ORT:  # auto tried ONNX Runtime, and said once why it did not use it
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert len(warnings) == 1 and f"the {stage} model stays on torch" in warnings[0], warnings
        assert "\n" not in warnings[0]
    assert isinstance(LOADERS[stage](default_bundle() / stage, runtime="torch").net, TorchNet)


@pytest.mark.parametrize("stage", list(LOADERS))
def test_onnx_is_one_error_line_naming_the_run_when_the_export_fails(stage, no_cache):
    run = default_bundle() / stage
    with pytest.raises(DataError) as e:
        LOADERS[stage](run, runtime="onnx")
    assert e.value.path == str(run) and f"cannot run the {stage} model on ONNX Runtime" in str(e.value)
    assert "\n" not in str(e.value)


def test_an_unknown_runtime_is_named_before_any_model_file_is_read(tmp_path):
    for load in LOADERS.values():
        with pytest.raises(ValueError, match="runtime 'tensorrt': expected one of auto, onnx, torch"):
            load(tmp_path / "no-such-run", runtime="tensorrt")


def test_the_mixed_precision_path_of_every_shipped_model_runs_on_the_cpu():
    """Each loader asks for autocast on CUDA (float16 there, and none on the CPU, where float32 is faster); the same
    path, run here with bfloat16 on the shipped networks, gives the float32 answers within bfloat16's precision."""
    import torch
    from PIL import Image

    from detectors.faster_rcnn import to_tensor
    from fashion2stage.geometry import box_iou

    photo = np.asarray(Image.open(default_bundle().parents[1] / "examples" / "images" / "ccp_0004.jpg").convert("RGB"))
    for stage, loader in LOADERS.items():
        model = loader(default_bundle() / stage, runtime="torch")
        assert model.net.amp is None  # "auto" on the CPU
        mixed = TorchNet(model.net.module, outputs=model.net.outputs, amp=torch.bfloat16)
        if stage == "detector":
            x = to_tensor(photo).numpy()
            a, b = model.net(x), mixed(x)
            assert np.isfinite(b["boxes"]).all() and len(b["scores"])
            best_a, best_b = int(np.argmax(a["scores"])), int(np.argmax(b["scores"]))
            assert a["labels"][best_a] == b["labels"][best_b]
            assert box_iou(a["boxes"][best_a][None].astype(float), b["boxes"][best_b][None].astype(float))[0, 0] > 0.9
            continue
        _same_within_bfloat16(model, mixed, model.normalisation if stage == "attributes" else model)
    # and the one network the shipped crop models make together (their shared backbone, classifiers/crop_models.py)
    attrs, _ = load_crop_models(default_bundle() / "attributes", default_bundle() / "keypoints", runtime="torch")
    assert isinstance(attrs.net.module, SharedCropModel)
    _same_within_bfloat16(attrs, TorchNet(attrs.net.module, outputs=attrs.net.outputs, amp=torch.bfloat16),
                          attrs.normalisation)


def _same_within_bfloat16(model, mixed, norm) -> None:
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, (2, model.crop_spec.height, model.crop_spec.width, 3), dtype=np.uint8)
    x = normalised(crops, norm.mean, norm.std)
    a, b = model.net(x), mixed(x)
    for k in a:
        assert b[k].dtype == np.float32 and np.isfinite(b[k]).all()
        scale = float(np.abs(a[k]).max()) + 1.0
        np.testing.assert_allclose(b[k], a[k], atol=0.1 * scale)
