"""One backbone for both crop models: ``keypoints-train --trunk`` learns a heatmap head on an attribute run's frozen
backbone, and predict then runs the two as one network (classifiers/crop_models.py). Tiny real runs
(tests/tiny_models.py); the shared pass must give the landmarks the keypoint run gives alone, on both runtimes."""
import csv
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from classifiers.attributes import AttributeModel, load_attribute_model, read_attribute_run
from classifiers.crop_models import SharedCropModel, load_crop_models, trunk_state
from classifiers.keypoints import HeatmapModel, load_keypoint_model
from fashion2stage.app.pipeline import load_pipeline
from fashion2stage.images import load_image
from pipeline_compare import CONF, _assert_same_predictions
from tiny_models import _cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trunk_run(models):
    r = models["runs"]
    _cli("keypoints-train", "--data", models["root"] / "data/annotations/train.json", "--val", models["val"],
         "--trunk", r / "attr", "--batch-size", "3", "--epochs", "2", "--project", r, "--name", "kp-trunk")
    return r / "kp-trunk"


def test_the_trunk_run_keeps_the_attribute_backbone_and_its_crops(models, trunk_run):
    _, _, attr = read_attribute_run(models["runs"] / "attr")
    kp = load_keypoint_model(trunk_run, runtime="torch")  # a trunk run loads alone like any keypoint run
    mine, theirs = trunk_state(kp.net.module.backbone), trunk_state(attr.backbone)
    assert mine.keys() == theirs.keys() and len(mine) > 100
    assert all(torch.equal(v, theirs[k]) for k, v in mine.items())  # frozen: BatchNorm statistics included
    assert _equal_blocks(attr, kp.net.module) == [True] * 7
    config = json.loads((trunk_run / "config.json").read_text())
    assert config["crop"] == json.loads((models["runs"] / "attr/config.json").read_text())["crop"]
    assert config["train"]["trunk"] == str(models["runs"] / "attr")
    rows = list(csv.DictReader((trunk_run / "results.csv").open()))
    assert [row["frozen_backbone"] for row in rows] == ["1", "1"]  # every epoch


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_one_pass_for_both_gives_the_landmarks_of_the_keypoint_run_alone(models, trunk_run, runtime):
    r = models["runs"]
    shared = load_pipeline(r / "det", r / "attr", trunk_run, use_default=False, runtime=runtime, conf=CONF)
    assert shared.attributes.heatmaps and shared.keypoints.shared
    alone = load_pipeline(r / "det", r / "attr", trunk_run, use_default=False, runtime=runtime, conf=CONF)
    # the same two runs, each on its own network: the keypoint model cuts and reads its own crops
    alone.attributes = load_attribute_model(r / "attr", runtime=runtime)
    alone.keypoints = load_keypoint_model(trunk_run, runtime=runtime)
    assert not alone.attributes.heatmaps and not alone.keypoints.shared
    images = [load_image(p) for p in sorted(models["images"].rglob("*.png"))]
    for flip in (False, True):
        shared.keypoint_flip = alone.keypoint_flip = flip
        a, b = shared(images), alone(images)
        assert sum(len(g.keypoints) for p in a for g in p.garments) > 0
        _assert_same_predictions([p.to_dict() for p in a], [p.to_dict() for p in b], box_atol=1e-3, prob_atol=1e-4)
        assert all(g.heatmaps is None for p in a for g in p.garments)  # decoded, then let go


def test_a_keypoint_run_on_another_backbone_runs_on_its_own(models, trunk_run, tmp_path):
    """Pairing is by the weights themselves: the blocks before a changed one are shared, and a changed stem keeps the
    two separate networks."""
    other = tmp_path / "kp-other"
    shutil.copytree(trunk_run, other)
    state = load_file(str(other / "weights.safetensors"))
    key = next(k for k in state if k.startswith("backbone.blocks.3.") and k.endswith("weight"))
    state[key] = state[key] * 1.01
    save_file(state, str(other / "weights.safetensors"))
    attrs, kps = load_crop_models(models["runs"] / "attr", other, runtime="torch")
    assert attrs.net.module.split == int(key.split(".")[2]) and kps.shared  # the blocks before it are still shared
    state = {k: v * 1.01 if k.startswith("backbone.conv_stem.") else v for k, v in state.items()}
    save_file(state, str(other / "weights.safetensors"))
    attrs, kps = load_crop_models(models["runs"] / "attr", other, runtime="torch")
    assert not attrs.heatmaps and not kps.shared
    attrs, kps = load_crop_models(models["runs"] / "attr", models["runs"] / "kp", runtime="torch")  # 64x64, own net
    assert not attrs.heatmaps and not kps.shared


def test_a_head_with_its_own_last_blocks_shares_the_blocks_before(models, tmp_path):
    """--trunk-blocks 5: blocks 0-4 stay the attribute model's and are run once; 5 and 6 learn, and run per model."""
    r = models["runs"]
    _cli("keypoints-train", "--data", models["root"] / "data/annotations/train.json", "--val", models["val"],
         "--trunk", r / "attr", "--trunk-blocks", "5", "--lateral", "--batch-size", "3", "--epochs", "1",
         "--project", tmp_path, "--name", "kp5")
    _, _, attr = read_attribute_run(r / "attr")
    kp = load_keypoint_model(tmp_path / "kp5", runtime="torch").net.module
    assert _equal_blocks(attr, kp) == [True] * 5 + [False] * 2
    attrs, kps = load_crop_models(r / "attr", tmp_path / "kp5", runtime="torch")
    assert attrs.net.module.split == 5 and kps.shared
    shared = load_pipeline(r / "det", r / "attr", tmp_path / "kp5", use_default=False, runtime="onnx", conf=CONF)
    alone = load_pipeline(r / "det", r / "attr", tmp_path / "kp5", use_default=False, runtime="onnx", conf=CONF)
    alone.attributes = load_attribute_model(r / "attr", runtime="onnx")
    alone.keypoints = load_keypoint_model(tmp_path / "kp5", runtime="onnx")
    images = [load_image(p) for p in sorted(models["images"].rglob("*.png"))]
    _assert_same_predictions([p.to_dict() for p in shared(images)], [p.to_dict() for p in alone(images)],
                             box_atol=1e-3, prob_atol=1e-4)


def _equal_blocks(a, b) -> list[bool]:
    return [all(torch.equal(v, y.state_dict()[k]) for k, v in x.state_dict().items())
            for x, y in zip(a.backbone.blocks, b.backbone.blocks)]


def test_the_shared_network_is_the_two_networks():
    attr = AttributeModel("efficientnet_lite0", {"a": 3, "b": 2}, pretrained=False).eval()
    kp = HeatmapModel(4, pretrained=False, deconv_channels=(16, 16, 16)).eval()
    kp.backbone.load_state_dict(trunk_state(attr.backbone))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out, a, h = SharedCropModel(attr, kp, 7)(x), attr(x), kp(x)
    assert set(out) == {"a", "b", "heatmaps"}
    for k in a:
        np.testing.assert_allclose(out[k].numpy(), a[k].numpy(), atol=1e-5)
    np.testing.assert_allclose(out["heatmaps"].numpy(), h.numpy(), atol=1e-5)


@pytest.mark.parametrize("upsampling", ["deconv", "separable"])
def test_the_shared_network_with_lateral_maps_is_the_two_networks(upsampling):
    """With ``--lateral`` the head also reads the stride-16 and stride-8 maps: the shared pass taps the same blocks."""
    attr = AttributeModel("efficientnet_lite0", {"a": 3}, pretrained=False).eval()
    kp = HeatmapModel(4, pretrained=False, deconv_channels=(16, 16, 16), lateral=True, upsampling=upsampling).eval()
    kp.backbone.load_state_dict(trunk_state(attr.backbone))
    for m in kp.lateral:  # not the zero-effect start: the lateral maps must reach the heatmaps
        torch.nn.init.normal_(m.weight, std=0.5)
    x = torch.randn(2, 3, 64, 96)
    shared = SharedCropModel(attr, kp, 7)
    assert shared.taps == (2, 4)
    with torch.no_grad():
        out, h = shared(x), kp(x)
        kp.lateral = None
        plain = kp(x)
    np.testing.assert_allclose(out["heatmaps"].numpy(), h.numpy(), atol=1e-5)
    assert out["heatmaps"].shape == (2, 4, 16, 24)  # 1/4 of the crop
    assert not np.allclose(h.numpy(), plain.numpy(), atol=1e-3)


def test_the_shared_keypoint_predictor_reads_crops_directly_on_the_shared_network(models, trunk_run):
    """Called on crops (not through the pipeline), the shared keypoint predictor runs the one network, on the runtime
    it was loaded with, and gives the keypoint run's own answer."""
    from fashion2stage.nets import OnnxNet

    attrs, kps = load_crop_models(models["runs"] / "attr", trunk_run, runtime="onnx")
    assert kps.net is attrs.net and isinstance(kps.net, OnnxNet)
    alone = load_keypoint_model(trunk_run, runtime="torch")
    crops = np.random.default_rng(0).integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    np.testing.assert_allclose(kps.heatmaps(crops), alone.heatmaps(crops), atol=1e-4)
