"""A tiny real keypoints-train run through the CLI: synthetic photos with drawn dots, 1 epoch, a loadable run folder,
NE / PCK recomputed from the loaded predictor and its crop -> image mapping, then a resume to epoch 2."""
import csv
import json

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from classifiers.keypoint_data import garment_crop, keypoint_samples, read_keypoint_dataset
from classifiers.keypoints import load_keypoint_model
from fashion2stage.app.cli import app
from fashion2stage.jitter import JitterSampler
from fashion2stage.metrics import keypoint_report

CATEGORIES = [
    {"id": 1, "name": "blouse", "keypoints": ["left_cuff", "right_cuff", "centre"], "skeleton": []},
    {"id": 2, "name": "skirt", "keypoints": ["left_hem", "right_hem"], "skeleton": []},
]


def _write_split(root, split: str, n: int, seed: int):
    """n 80x96 photos, one garment each (alternating types), a dot drawn at each keypoint; COCO keypoints JSON."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(exist_ok=True)
    (root / "annotations").mkdir(exist_ok=True)
    images, anns = [], []
    for i in range(n):
        img = np.full((96, 80, 3), 90, np.uint8)
        x1, y1 = rng.uniform(5, 20, 2)
        x2, y2 = x1 + rng.uniform(40, 55), y1 + rng.uniform(50, 70)
        cat = 1 + i % 2
        if cat == 1:
            pts = [(x2 - 4, y1 + 10, 2), (x1 + 4, y1 + 10, 2), ((x1 + x2) / 2, y2 - 6, 2)]
        else:
            pts = [(x2 - 5, y2 - 5, 2), (x1 + 5, y2 - 5, 0 if i == 3 else 2)]
        for x, y, v in pts:
            if v:
                cv2.circle(img, (int(x), int(y)), 3, (255, 40, 40), -1)
        name = f"{split}_{i}.png"
        cv2.imwrite(str(root / "images" / name), img[:, :, ::-1])
        images.append({"id": i + 1, "file_name": name, "width": 80, "height": 96})
        flat = [c for x, y, v in pts for c in ((x, y, v) if v else (0, 0, 0))]
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": cat, "bbox": [x1, y1, x2 - x1, y2 - y1],
                     "area": (x2 - x1) * (y2 - y1), "iscrowd": 0, "keypoints": flat,
                     "num_keypoints": sum(v > 0 for *_, v in pts)})
    path = root / "annotations" / f"kpts_{split}.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": CATEGORIES}))
    return path


@pytest.mark.slow
def test_tiny_keypoints_train_run_is_loadable_and_scored(tmp_path):
    train = _write_split(tmp_path, "train", 6, 0)
    val = _write_split(tmp_path, "val", 4, 1)
    args = ["keypoints-train", "--data", str(train), "--val", str(val), "--image-size", "64x64",
            "--batch-size", "3", "--no-pretrained", "--head-channels", "32,16,8", "--project", str(tmp_path / "runs"),
            "--name", "kp"]
    result = CliRunner().invoke(app, args + ["--epochs", "1"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "kp"
    for f in ("config.json", "labels.json", "weights.safetensors", "last.pt", "results.csv", "metrics.json",
              "results.png", "train.log", "val_crops.png"):
        assert (run / f).is_file(), f
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["val_gt_boxes"]["n_samples"] == 4 and metrics["val_gt_boxes"]["n_points"] == 9
    assert metrics["val_gt_boxes"]["normaliser"] == {"box_diagonal": 4}

    config = json.loads((run / "config.json").read_text())
    assert config["deconv_channels"] == [32, 16, 8]
    # engine.fit's step settings are recorded with the others, and the clipping in each epoch's row
    assert {k: config["train"][k] for k in ("amp", "clip_grad", "ema")} == {"amp": "auto", "clip_grad": None, "ema": None}
    assert float(next(csv.DictReader((run / "results.csv").open()))["train_grad_norm"]) > 0
    predictor = load_keypoint_model(run)
    assert [m.out_channels for m in predictor.net.module.deconv if isinstance(m, torch.nn.ConvTranspose2d)] == [32, 16, 8]
    assert predictor.labels.keypoints == ["left_cuff", "right_cuff", "centre", "left_hem", "right_hem"]
    assert (predictor.crop_spec.width, predictor.crop_spec.height) == (64, 64)
    dataset = read_keypoint_dataset(val)
    samples = keypoint_samples(dataset)
    cut = [garment_crop(cv2.imread(str(r.path))[:, :, ::-1], g, predictor.crop_spec, JitterSampler.none(),
                        np.random.default_rng(0), cover=False) for r, g in samples]
    out = predictor.predict(np.stack([c[0] for c in cut]), [g.type for _, g in samples])
    assert out.shape == (4, 5, 3)
    assert np.isnan(out[0, 3:]).all() and np.isnan(out[1, :3]).all()  # blouse / skirt subsets
    pred_image = np.stack([t.to_image(p)[:, :2] for (_, t, _), p in zip(cut, out)])
    report = keypoint_report(pred_image, np.stack([g.keypoints for _, g in samples]), [g.type for _, g in samples],
                             np.stack([g.box_xyxy for _, g in samples]), predictor.labels)
    assert report["ne"] == pytest.approx(metrics["val_gt_boxes"]["ne"], rel=1e-4)
    assert report["pck@0.1"] == pytest.approx(metrics["val_gt_boxes"]["pck@0.1"])
    assert np.isfinite(metrics["val_jittered_boxes"]["ne"])

    result = CliRunner().invoke(app, args + ["--epochs", "2", "--resume"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((run / "results.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert json.loads((run / "config.json").read_text())["train"]["epochs"] == 2


def test_bad_image_size_is_one_clear_line(tmp_path):
    train = _write_split(tmp_path, "train", 2, 0)
    result = CliRunner().invoke(app, ["keypoints-train", "--data", str(train), "--image-size", "60x64",
                                      "--project", str(tmp_path / "runs")])
    assert result.exit_code != 0
    assert "multiple of 32" in result.output


@pytest.mark.parametrize("channels", ["128,64", "128,0,32", "wide"])
def test_bad_head_channels_is_one_clear_line(tmp_path, channels):
    train = _write_split(tmp_path, "train", 2, 0)
    result = CliRunner().invoke(app, ["keypoints-train", "--data", str(train), "--head-channels", channels,
                                      "--project", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert "--head-channels must be three positive integers" in result.output and channels in result.output


def test_several_sources_are_one_dataset_with_their_sizes(tmp_path):
    from classifiers.train_keypoints import read_sources
    from fashion2stage.errors import DataError

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = _write_split(tmp_path / "a", "train", 6, 0), _write_split(tmp_path / "b", "train", 3, 2)
    merged, sizes = read_sources([str(a), str(b)], None)
    assert len(merged.records) == 9 and sizes == [6, 3]
    assert {r.path.parent.parent.name for r in merged.records} == {"a", "b"}  # each keeps its image root
    other = json.loads(b.read_text())
    other["categories"][0]["keypoints"] = ["left_cuff", "right_cuff", "collar"]
    b.write_text(json.dumps(other))
    with pytest.raises(DataError, match="keypoint names"):
        read_sources([str(a), str(b)], None)
    with pytest.raises(ValueError, match="one --images per --data"):
        read_sources([str(a), str(b)], [str(tmp_path)])


def test_a_bad_trunk_is_one_clear_line_before_any_run_folder(tmp_path):
    train = _write_split(tmp_path, "train", 2, 0)
    args = ["keypoints-train", "--data", str(train), "--project", str(tmp_path / "runs"), "--name", "kp",
            "--trunk", str(tmp_path / "nowhere")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "nowhere" in result.output and len(result.output.strip().splitlines()) == 1
    result = CliRunner().invoke(app, args + ["--trunk-blocks", "9"])
    assert result.exit_code == 1 and "--trunk-blocks must be 0 to 7, got 9" in result.output
    assert not (tmp_path / "runs" / "kp").exists()


def test_an_unknown_upsampling_is_one_clear_line(tmp_path):
    train = _write_split(tmp_path, "train", 2, 0)
    result = CliRunner().invoke(app, ["keypoints-train", "--data", str(train), "--upsampling", "bilinear",
                                      "--project", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert "--upsampling must be deconv or separable, got 'bilinear'" in result.output
