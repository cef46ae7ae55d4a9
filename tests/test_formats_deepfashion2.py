import json

import numpy as np
import pytest

from fashion2stage.errors import DataError
from fashion2stage.formats.deepfashion2 import DF2_CATEGORIES, read_deepfashion2


def item(cid, box, n=None, points=None):
    n = n if n is not None else DF2_CATEGORIES[cid - 1][1]
    landmarks = [0] * (3 * n)
    for i, (x, y, v) in (points or {}).items():
        landmarks[3 * i: 3 * i + 3] = [x, y, v]
    return {"category_name": DF2_CATEGORIES[cid - 1][0], "category_id": cid, "bounding_box": box,
            "landmarks": landmarks, "style": 1, "occlusion": 1}


def write_annos(tmp_path, files):
    annos = tmp_path / "train" / "annos"
    annos.mkdir(parents=True)
    for stem, data in files.items():
        (annos / f"{stem}.json").write_text(json.dumps(data) if not isinstance(data, str) else data)
    return annos


def test_reads_items_into_the_294_point_union(tmp_path):
    annos = write_annos(tmp_path, {
        "000002": {"source": "user", "pair_id": 1, "item1": item(9, [1, 2, 30, 40], points={0: (5, 6, 2)})},
        "000001": {"source": "shop", "pair_id": 1,
                   "item2": item(1, [10, 10, 50, 60], points={24: (11, 12, 1), 3: (7, 7, 0)}),
                   "item1": item(8, [0, 0, 20, 20])},
    })
    ds = read_deepfashion2(annos)
    assert ds.root == tmp_path / "train" / "image"
    assert len(ds.labels.garment_types) == 13 and len(ds.labels.keypoints) == 294
    assert ds.labels.keypoints_per_type["skirt"] == [f"skirt_{i}" for i in range(1, 9)]
    assert [r.file for r in ds.records] == ["000001.jpg", "000002.jpg"]
    first = ds.records[0].garments
    assert [g.type for g in first] == ["trousers", "short_sleeve_top"]  # item1 before item2
    top = first[1]
    np.testing.assert_array_equal(top.box_xyxy, [10, 10, 50, 60])
    assert top.keypoints.shape == (294, 3)
    assert top.keypoints[24].tolist() == [11, 12, 1]  # short_sleeve_top_25 is union row 24
    assert top.keypoints[3].tolist() == [0, 0, 0]
    skirt = ds.records[1].garments[0]
    row = ds.labels.keypoints.index("skirt_1")
    assert row == 25 + 33 + 31 + 39 + 15 + 15 + 10 + 14
    assert skirt.keypoints[row].tolist() == [5, 6, 2]
    assert skirt.keypoints[ds.labels.keypoint_indices("skirt")][:, 2].sum() == 2
    assert ds.records[1].path == tmp_path / "train" / "image" / "000002.jpg"


@pytest.mark.parametrize("data, message", [
    ({"item1": item(3, [1, 1, 5, 5], n=4)}, r"x.json: item1: 12 landmark numbers; short_sleeve_outwear has 31"),
    ({"item1": {**item(2, [1, 1, 5, 5]), "category_name": "skirt"}}, r"category_name 'skirt' but category_id 2"),
    ({"item1": item(2, [5, 1, 5, 5])}, r"x.json: item1: box .* zero or negative size"),
    ({"item1": {**item(2, [1, 1, 5, 5]), "category_id": 14}}, r"category_id 14 is not 1..13"),
    ({"item1": item(9, [1, 1, 5, 5], points={0: (1, 1, 3)})}, r"visibility 0, 1 or 2"),
    ({"item1": {"category_id": 1}}, r"item1 lacks 'bounding_box'"),
    ("{", r"x.json:1: invalid JSON"),
])
def test_rejects_bad_annotations(tmp_path, data, message):
    with pytest.raises(DataError, match=message):
        read_deepfashion2(write_annos(tmp_path, {"x": data}))


def test_missing_or_empty_folder(tmp_path):
    with pytest.raises(DataError, match="annotation folder not found"):
        read_deepfashion2(tmp_path / "nope")
    with pytest.raises(DataError, match="no .json annotation files"):
        read_deepfashion2(tmp_path)


def test_image_without_items_is_kept(tmp_path):
    ds = read_deepfashion2(write_annos(tmp_path, {"7": {"source": "user", "pair_id": 3}}), image_dir=tmp_path)
    assert ds.records[0].garments == [] and ds.root == tmp_path
