import copy
import json
import warnings

import numpy as np
import pytest

from fashion2stage.errors import DataError
from fashion2stage.formats.coco import (dataset_to_coco, detections_to_coco_results, read_coco_detection,
                                        read_coco_keypoints, write_coco_results)
from fashion2stage.records import Garment, ImageRecord

DET = {
    "images": [{"id": 10, "file_name": "a.jpg", "width": 100, "height": 80},
               {"id": 11, "file_name": "sub/b.jpg", "width": 50, "height": 60},
               {"id": 12, "file_name": "empty.jpg", "width": 30, "height": 30}],
    "categories": [{"id": 2, "name": "skirt"}, {"id": 1, "name": "blouse"}],
    "attributes": [{"id": 7, "name": "long", "supercategory": "length"},
                   {"id": 3, "name": "short", "supercategory": "length"},
                   {"id": 5, "name": "red", "supercategory": "colour"}],
    "annotations": [
        {"id": 1, "image_id": 10, "category_id": 1, "bbox": [10, 20, 30, 40], "iscrowd": 0, "attribute_ids": [7, 5]},
        {"id": 2, "image_id": 11, "category_id": 2, "bbox": [0, 0, 50, 60], "attribute_ids": [3]},
        {"id": 3, "image_id": 11, "category_id": 2, "bbox": [1, 1, 5, 5], "iscrowd": 1},
    ],
}


def write(tmp_path, data, name="ann.json"):
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return p


def test_detection_reader_converts_boxes_and_attributes_once(tmp_path):
    with pytest.warns(UserWarning, match="skipped 1 iscrowd"):
        ds = read_coco_detection(write(tmp_path, DET))
    assert ds.root == tmp_path
    assert ds.labels.garment_types == ["blouse", "skirt"]  # category id order, not file order
    assert ds.labels.attributes == {"length": ["short", "long"], "colour": ["red"]}
    assert [r.file for r in ds.records] == ["a.jpg", "sub/b.jpg", "empty.jpg"]
    a, b, empty = ds.records
    assert a.garments[0].type == "blouse"
    np.testing.assert_allclose(a.garments[0].box_xyxy, [10, 20, 40, 60])
    assert a.garments[0].attributes == {"length": "ny", "colour": "y"}
    assert b.garments[0].attributes == {"length": "yn"} and len(b.garments) == 1
    assert empty.garments == [] and (empty.width, empty.height) == (30, 30)


def test_default_root_is_sibling_images_of_annotations(tmp_path):
    ds = read_coco_detection(write(tmp_path, {**DET, "annotations": []}, "annotations/x.json"))
    assert ds.root == tmp_path / "images"
    assert read_coco_detection(tmp_path / "annotations/x.json", image_root="/elsewhere").root.as_posix() == "/elsewhere"


def bad(**changes):
    d = copy.deepcopy(DET)
    d["annotations"] = d["annotations"][:2]
    for path, value in changes.items():
        if path == "ann":
            d["annotations"][1].update(value)
        elif path == "drop_ann_key":
            del d["annotations"][1][value]
        elif path == "image":
            d["images"][1].update(value)
        else:
            d[path] = value
    return d


@pytest.mark.parametrize("data, message", [
    (bad(ann={"category_id": 9}), r"ann.json:2: unknown category_id 9"),
    (bad(ann={"attribute_ids": [99]}), r"ann.json:2: unknown attribute id 99"),
    (bad(ann={"attribute_ids": [3, 7]}), r"ann.json:2: several attribute ids for key 'length'"),
    (bad(ann={"image_id": 99}), r"ann.json:2: unknown image_id 99"),
    (bad(ann={"bbox": [5, 5, 0, 10]}), r"ann.json:2: box .* zero or negative size"),
    (bad(ann={"bbox": [40, 0, 20, 10]}), r"ann.json:2: box .* outside the 50x60 image"),
    (bad(ann={"bbox": [1, 2, "w", 3]}), r"ann.json:2: bbox .* is not \[x, y, w, h\]"),
    (bad(drop_ann_key="bbox"), r"ann.json:2: annotation 2 lacks 'bbox'"),
    (bad(image={"file_name": "../../etc/passwd"}), r"escapes the dataset root"),
    (bad(image={"width": 0}), r"width/height 0/60 are not positive integers"),
    (bad(image={"file_name": "a.jpg"}), r"images\[1\]: a.jpg is listed twice \(ids 10 and 11\)"),
    (bad(categories=[{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]), r"duplicate ids"),
    ({"images": [], "categories": []}, r"ann.json: the file lacks 'annotations'"),
    ("", r"ann.json: empty file"),
    ("{\n\"images\": [", r"ann.json:2: invalid JSON"),
    ("[1, 2]", r"top level"),
])
def test_detection_reader_rejects_bad_files(tmp_path, data, message):
    with pytest.raises(DataError, match=message):
        read_coco_detection(write(tmp_path, data))


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="nope.json: cannot read"):
        read_coco_detection(tmp_path / "nope.json")


KP = {
    "images": [{"id": 1, "file_name": "k.jpg", "width": 200, "height": 100}],
    "categories": [{"id": 1, "name": "top", "keypoints": ["a", "b"]},
                   {"id": 2, "name": "pants", "keypoints": ["b", "c", "d"]}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 50], "keypoints": [1, 2, 2, 5, 6, 1]},
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [0, 50, 100, 50],
         "keypoints": [7, 8, 2, 9, 9, 0, 11, 12, 2]},
    ],
}


def test_keypoint_reader_maps_each_category_into_the_union(tmp_path):
    ds = read_coco_keypoints(write(tmp_path, KP))
    assert ds.labels.keypoints == ["a", "b", "c", "d"]
    assert ds.labels.keypoints_per_type == {"top": ["a", "b"], "pants": ["b", "c", "d"]}
    top, pants = ds.records[0].garments
    np.testing.assert_array_equal(top.keypoints, [[1, 2, 2], [5, 6, 1], [0, 0, 0], [0, 0, 0]])
    # v = 0 points lose their coordinates (COCO writes junk there sometimes)
    np.testing.assert_array_equal(pants.keypoints, [[0, 0, 0], [7, 8, 2], [0, 0, 0], [11, 12, 2]])
    assert ds.labels.keypoint_indices("pants") == [1, 2, 3]


@pytest.mark.parametrize("change, message", [
    ({"keypoints": [1, 2, 2]}, r":1: keypoints has 3 numbers; 'top' needs 6"),
    ({"keypoints": [1, 2, 3, 4, 5, 2]}, r":1: keypoints must be finite with visibility 0, 1 or 2"),
])
def test_keypoint_reader_rejects_bad_keypoints(tmp_path, change, message):
    d = copy.deepcopy(KP)
    d["annotations"][0].update(change)
    with pytest.raises(DataError, match=message):
        read_coco_keypoints(write(tmp_path, d))


def test_ground_truth_round_trip_and_perfect_detections_score_map_1(tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = read_coco_detection(write(tmp_path, DET))
    gt = dataset_to_coco(ds)
    assert [c["name"] for c in gt["categories"]] == ["blouse", "skirt"]
    assert [c["id"] for c in gt["categories"]] == [1, 2]
    assert [i["id"] for i in gt["images"]] == [10, 11, 12]
    assert gt["annotations"][0]["bbox"] == [10, 20, 30, 40] and gt["annotations"][0]["area"] == 1200
    by_id = {a["id"]: (a["supercategory"], a["name"]) for a in gt["attributes"]}
    assert sorted(by_id[i] for i in gt["annotations"][0]["attribute_ids"]) == [("colour", "red"), ("length", "long")]
    # written and read back: the same records
    again = read_coco_detection(write(tmp_path, gt, "gt.json"))
    assert [(g.type, g.box_xyxy.tolist(), g.attributes) for r in again.records for g in r.garments] == \
           [(g.type, g.box_xyxy.tolist(), g.attributes) for r in ds.records for g in r.garments]

    preds = [ImageRecord(file=r.file, root=r.root, garments=[Garment(g.type, g.box_xyxy, score=0.9)
                                                             for g in r.garments]) for r in ds.records]
    preds[0].garments.append(Garment("skirt", np.array([60.0, 10, 90, 70]), score=0.1))  # a low false positive
    results = detections_to_coco_results(preds, ds)
    assert results[0] == {"image_id": 10, "category_id": 1, "bbox": [10, 20, 30, 40], "score": 0.9}
    write_coco_results(tmp_path / "res.json", results)
    coco_gt = COCO(str(tmp_path / "gt.json"))
    ev = COCOeval(coco_gt, coco_gt.loadRes(str(tmp_path / "res.json")), "bbox")
    ev.evaluate(), ev.accumulate()
    with warnings.catch_warnings():
        ev.summarize()
    assert ev.stats[1] == pytest.approx(1.0)  # AP@0.5: every ground truth found above the false positive


def test_results_refuse_unknown_images_and_types(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = read_coco_detection(write(tmp_path, DET))
    with pytest.raises(ValueError, match="other.jpg: image is not in the ground-truth"):
        detections_to_coco_results([ImageRecord(file="other.jpg", root=ds.root)], ds)
    rec = ImageRecord(file="a.jpg", root=ds.root, garments=[Garment("hat", np.array([0.0, 0, 1, 1]))])
    with pytest.raises(ValueError, match="'hat' is not in the label set"):
        detections_to_coco_results([rec], ds)


def test_string_ids_become_1_to_n(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = read_coco_detection(write(tmp_path, DET))
    ds.records[1].id = "b"
    assert [i["id"] for i in dataset_to_coco(ds)["images"]] == [1, 2, 3]
    assert detections_to_coco_results([ds.records[1]], ds)[0]["image_id"] == 2


def test_keypoints_go_into_ground_truth(tmp_path):
    gt = dataset_to_coco(read_coco_keypoints(write(tmp_path, KP)))
    assert gt["categories"][0]["keypoints"] == ["a", "b", "c", "d"]
    assert gt["annotations"][1]["keypoints"] == [0, 0, 0, 7, 8, 2, 0, 0, 0, 11, 12, 2]
    assert gt["annotations"][1]["num_keypoints"] == 2
