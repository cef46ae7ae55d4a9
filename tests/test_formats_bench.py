"""Every reader on the real fashion-bench files: exact counts, boxes inside images, images that decode."""
from collections import Counter

import numpy as np
import pytest

from fashion2stage.formats.coco import dataset_to_coco, read_coco_detection, read_coco_keypoints
from fashion2stage.formats.fashionai import read_attribute_csv
from fashion2stage.formats.yolo import export_yolo
from fashion2stage.images import image_size, load_image

pytestmark = pytest.mark.data


def sample(records, n=6):
    return [records[i] for i in np.linspace(0, len(records) - 1, n).astype(int)]


def check_images(records):
    for rec in sample(records):
        a = load_image(rec.path)
        assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3
        if rec.width is not None:
            assert a.shape[:2] == (rec.height, rec.width) and image_size(rec.path) == (rec.width, rec.height)
    assert all(r.path.is_file() for r in records)


@pytest.mark.parametrize("split, n_images, n_boxes, n_empty, per_type", [
    ("train", 600, 1340, 1, {"blouse": 425, "trousers": 336, "outwear": 298, "dress": 178, "skirt": 103}),
    ("val", 150, 344, 0, {"blouse": 116, "trousers": 87, "outwear": 76, "dress": 39, "skirt": 26}),
])
def test_ccp(bench, split, n_images, n_boxes, n_empty, per_type):
    ds = read_coco_detection(bench / f"ccp/annotations/instances_{split}.json")
    assert ds.root == bench / "ccp/images"
    assert len(ds) == n_images
    garments = [g for r in ds.records for g in r.garments]
    assert len(garments) == n_boxes and sum(not r.garments for r in ds.records) == n_empty
    assert dict(Counter(g.type for g in garments)) == per_type
    assert ds.labels.garment_types == ["blouse", "outwear", "dress", "skirt", "trousers"]
    assert list(ds.labels.attributes) == ["fine_category"] and len(ds.labels.attributes["fine_category"]) == 21
    assert all(set(g.attributes) == {"fine_category"} for g in garments)
    for r in ds.records:
        for g in r.garments:
            x1, y1, x2, y2 = g.box_xyxy
            assert 0 <= x1 < x2 <= r.width and 0 <= y1 < y2 <= r.height
    assert len(dataset_to_coco(ds)["annotations"]) == n_boxes
    check_images(ds.records)


@pytest.mark.parametrize("split, n_images, n_rows, per_key", [
    ("train", 1046, 3172, {"sleeve_length": 1003, "collar_design": 819, "neckline_design": 729, "category": 621}),
    ("val", 250, 767, {"sleeve_length": 242, "collar_design": 198, "neckline_design": 185, "category": 142}),
])
def test_cad(bench, split, n_images, n_rows, per_key):
    ds = read_attribute_csv(bench / f"cad/labels_{split}.csv")  # attributes.json beside it is the schema
    assert list(ds.labels.attributes) == ["sleeve_length", "neckline_design", "collar_design", "category"]
    assert len(ds) == n_images and sum(len(r.attributes) for r in ds.records) == n_rows
    assert dict(Counter(k for r in ds.records for k in r.attributes)) == per_key
    assert all(not r.garments for r in ds.records)
    check_images(ds.records)


@pytest.mark.parametrize("split, n_images, per_type, n_labelled", [
    ("train", 67, {"blouse": 52, "trousers": 11, "outwear": 4}, 380),
    ("val", 20, {"blouse": 11, "trousers": 7, "outwear": 2}, 106),
])
def test_landmarks(bench, split, n_images, per_type, n_labelled):
    ds = read_coco_keypoints(bench / f"landmarks/annotations/keypoints_{split}.json")
    assert ds.labels.keypoints == ["left_collar", "right_collar", "left_sleeve", "right_sleeve",
                                   "left_waistline", "right_waistline", "left_hem", "right_hem"]
    garments = [g for r in ds.records for g in r.garments]
    assert len(ds) == n_images and len(garments) == n_images  # one garment per photo
    assert dict(Counter(g.type for g in garments)) == per_type
    assert sum(int((g.keypoints[:, 2] > 0).sum()) for g in garments) == n_labelled
    for r in ds.records:
        for g in r.garments:
            pts = g.keypoints[g.keypoints[:, 2] > 0, :2]
            assert np.all(pts >= 0) and np.all(pts <= [r.width, r.height])
    check_images(ds.records)


def test_ccp_exports_to_yolo(bench, tmp_path):
    train = read_coco_detection(bench / "ccp/annotations/instances_train.json")
    val = read_coco_detection(bench / "ccp/annotations/instances_val.json")
    out = export_yolo(train, val, tmp_path / "yolo").parent
    for split, n_images, n_boxes in (("train", 600, 1340), ("val", 150, 344)):
        labels = sorted((out / "labels" / split).glob("*.txt"))
        assert len(labels) == n_images and len(list((out / "images" / split).iterdir())) == n_images
        rows = np.array([line.split() for p in labels for line in p.read_text().splitlines()], dtype=float)
        assert len(rows) == n_boxes
        assert set(rows[:, 0]) == {0, 1, 2, 3, 4} and np.all((rows[:, 1:] > 0) & (rows[:, 1:] <= 1))
