"""Training crops from each keypoint format: the reader is chosen by path, labelled points stay inside the crop
(padding guarantee), and the loss weights follow the garment type's subset of the union set."""
import json

import cv2
import numpy as np
import pytest

from classifiers.keypoint_data import Augment, KeypointCrops, can_flip, read_keypoint_dataset
from fashion2stage import taxonomy
from fashion2stage.geometry import CropSpec
from fashion2stage.jitter import JitterSampler

SPEC = CropSpec(64, 96)


def _image(path, w=120, h=160):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), 100, np.uint8))


def _fashionai(tmp_path):
    pts = {"waistband_left": "70_30_1", "waistband_right": "30_32_1", "hemline_left": "80_140_0",
           "hemline_right": "20_138_1"}
    cells = ",".join(pts.get(n, "-1_-1_-1") for n in taxonomy.FASHIONAI_KEYPOINTS)
    csv = tmp_path / "fa" / "train.csv"
    csv.parent.mkdir()
    csv.write_text("image_id,image_category," + ",".join(taxonomy.FASHIONAI_KEYPOINTS) + "\n"
                   f"Images/skirt/a.jpg,skirt,{cells}\n")
    _image(tmp_path / "fa" / "Images" / "skirt" / "a.jpg")
    return csv


def _deepfashion2(tmp_path):
    from fashion2stage.formats.deepfashion2 import DF2_CATEGORIES
    name, n = DF2_CATEGORIES[7]  # trousers
    landmarks = [0] * (3 * n)
    landmarks[0:3], landmarks[6:9] = [40, 20, 2], [100, 150, 1]
    item = {"category_name": name, "category_id": 8, "bounding_box": [30, 15, 105, 155], "landmarks": landmarks,
            "style": 1, "occlusion": 1}
    annos = tmp_path / "df2" / "annos"
    annos.mkdir(parents=True)
    (annos / "000001.json").write_text(json.dumps({"source": "user", "pair_id": 1, "item1": item}))
    _image(tmp_path / "df2" / "image" / "000001.jpg")
    return annos


@pytest.mark.parametrize("make, n_union, n_type, flips", [(_fashionai, 24, 4, True), (_deepfashion2, 294, 14, False)])
def test_crops_from_each_format(tmp_path, make, n_union, n_type, flips):
    ds = read_keypoint_dataset(make(tmp_path))
    assert len(ds.labels.keypoints) == n_union and can_flip(ds.labels) == flips
    data = KeypointCrops(ds, SPEC, (16, 24), 1.0, JitterSampler.default(), Augment(), (0.5,) * 3, (0.5,) * 3)
    g = ds.records[0].garments[0]
    subset = ds.labels.keypoint_indices(g.type)
    assert len(subset) == n_type
    labelled = np.flatnonzero(g.keypoints[:, 2] > 0)
    for _ in range(10):  # random jitter and augmentation: labelled points always keep a target in the crop
        item = data[0]
        assert item["image"].shape == (3, 96, 64) and item["heatmaps"].shape == (n_union, 24, 16)
        w = item["weights"].numpy()
        assert set(np.flatnonzero(w)) <= set(subset)
        assert np.flatnonzero(w).size >= len(labelled) - 1  # rotation may push one to the edge, rarely
    # without augmentation every labelled point is inside the crop and decodes where it was put
    data = KeypointCrops(ds, SPEC, (16, 24), 1.0, JitterSampler.default(), None, (0.5,) * 3, (0.5,) * 3)
    img, kpts_crop, _ = data.make_crop(0)
    assert ((kpts_crop[labelled, :2] >= 0) & (kpts_crop[labelled, :2] <= [64, 96])).all()
    heat = data[0]["heatmaps"].numpy()[None, labelled]
    assert heat.max(axis=(2, 3)).min() > 0.5


def test_observed_subsets_keep_only_points_labelled_in_training():
    from pathlib import Path

    from classifiers.keypoint_data import observed_subsets
    from fashion2stage.labels import LabelSet
    from fashion2stage.records import Dataset, Garment, ImageRecord

    names = ["collar", "sleeve", "hem"]
    labels = LabelSet(garment_types=["blouse", "trousers", "skirt"], keypoints=names,
                      keypoints_per_type={t: list(names) for t in ("blouse", "trousers", "skirt")})

    def garment(t, v):
        return Garment(type=t, box_xyxy=np.array([0.0, 0, 10, 10]),
                       keypoints=np.array([[1.0, 1, v[0]], [2, 2, v[1]], [3, 3, v[2]]]))
    records = [ImageRecord(file="a.jpg", root=Path("."), garments=[garment("blouse", (2, 0, 0)),
                                                                   garment("trousers", (0, 0, 2))]),
               ImageRecord(file="b.jpg", root=Path("."), garments=[garment("blouse", (0, 1, 0))])]
    out = observed_subsets(Dataset(Path("."), records, labels, "test"))
    assert out.keypoints_per_type == {"blouse": ["collar", "sleeve"], "trousers": ["hem"], "skirt": []}
    assert out.keypoint_indices("skirt") == [] and out.keypoint_indices("trousers") == [2]
    assert labels.keypoints_per_type["skirt"] == names  # the input label set is left as it was
