"""scripts/merge_splits.py: train + val label files into one, as the shipped model's training used them."""
import importlib.util
import json
from pathlib import Path

import pytest

from fashion2stage.formats.coco import read_coco_detection, read_coco_keypoints
from fashion2stage.formats.fashionai import read_attribute_csv

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("merge_splits", ROOT / "scripts/merge_splits.py")
merge_splits = importlib.util.module_from_spec(spec)
spec.loader.exec_module(merge_splits)

CATEGORIES = [{"id": 1, "name": "dress"}, {"id": 2, "name": "skirt"}]


def coco(path: Path, images: list[tuple[int, str]], boxes: list[tuple[int, int, int]], categories=CATEGORIES) -> Path:
    """images: (id, file); boxes: (annotation id, image id, category id) — ids restart at 1 in every file."""
    path.write_text(json.dumps({
        "images": [{"id": i, "file_name": f, "width": 100, "height": 100} for i, f in images],
        "annotations": [{"id": a, "image_id": i, "category_id": c, "bbox": [10, 10, 50, 50], "area": 2500,
                         "iscrowd": 0} for a, i, c in boxes],
        "categories": categories}))
    return path


def test_coco_merge_keeps_image_ids_and_renumbers_annotations(tmp_path):
    a = coco(tmp_path / "a.json", [(1, "1.jpg"), (2, "2.jpg")], [(1, 1, 1), (2, 2, 2)])
    b = coco(tmp_path / "b.json", [(7, "7.jpg")], [(1, 7, 2), (2, 7, 1)])
    out = tmp_path / "merged/ab.json"
    merge_splits.main([str(out), str(a), str(b)])
    merged = json.loads(out.read_text())
    assert [im["id"] for im in merged["images"]] == [1, 2, 7]
    assert [a["id"] for a in merged["annotations"]] == [1, 2, 3, 4]
    assert [(a["image_id"], a["category_id"]) for a in merged["annotations"]] == [(1, 1), (2, 2), (7, 2), (7, 1)]
    ds = read_coco_detection(out, image_root=tmp_path)
    assert {r.file: [g.type for g in r.garments] for r in ds.records} == {
        "1.jpg": ["dress"], "2.jpg": ["skirt"], "7.jpg": ["skirt", "dress"]}


def test_coco_merge_refuses_disagreeing_files(tmp_path):
    a = coco(tmp_path / "a.json", [(1, "1.jpg")], [(1, 1, 1)])
    other = coco(tmp_path / "c.json", [(2, "2.jpg")], [(1, 2, 1)], categories=[{"id": 1, "name": "skirt"}])
    clash = coco(tmp_path / "d.json", [(1, "other.jpg")], [(1, 1, 1)])
    with pytest.raises(SystemExit, match="'categories' differ"):
        merge_splits.main([str(tmp_path / "o.json"), str(a), str(other)])
    with pytest.raises(SystemExit, match="image id 1 is 'other.jpg' here"):
        merge_splits.main([str(tmp_path / "o.json"), str(a), str(clash)])
    (tmp_path / "broken.json").write_text('{"images": [')
    with pytest.raises(SystemExit, match=r"broken\.json:1: invalid JSON"):
        merge_splits.main([str(tmp_path / "o.json"), str(a), str(tmp_path / "broken.json")])
    (tmp_path / "list.json").write_text('{"images": []}')
    with pytest.raises(SystemExit, match=r"list\.json: no 'annotations' list"):
        merge_splits.main([str(tmp_path / "o.json"), str(a), str(tmp_path / "list.json")])
    with pytest.raises(SystemExit, match="all be .json"):
        merge_splits.main([str(tmp_path / "o.csv"), str(a)])
    assert not (tmp_path / "o.json").exists()


def test_csv_merge_concatenates_and_drops_exact_duplicates(tmp_path):
    (tmp_path / "a.csv").write_text("images/1.jpg,sleeve_length,ny\nimages/2.jpg,sleeve_length,yn\n")
    (tmp_path / "b.csv").write_text("images/2.jpg,sleeve_length,yn\nimages/3.jpg,collar_design,ny\n")
    out = tmp_path / "ab.csv"
    merge_splits.main([str(out), str(tmp_path / "a.csv"), str(tmp_path / "b.csv")])
    assert out.read_text().splitlines() == [
        "images/1.jpg,sleeve_length,ny", "images/2.jpg,sleeve_length,yn", "images/3.jpg,collar_design,ny"]


@pytest.mark.data
def test_merging_fashion_bench_train_and_val_gives_both_splits(bench, tmp_path):
    ccp, cad, lm = bench / "ccp/annotations", bench / "cad", bench / "landmarks/annotations"
    merge_splits.main([str(tmp_path / "ccp.json"), str(ccp / "instances_train.json"), str(ccp / "instances_val.json")])
    boxes = read_coco_detection(tmp_path / "ccp.json", image_root=bench / "ccp/images")
    assert (len(boxes.records), sum(len(r.garments) for r in boxes.records)) == (600 + 150, 1340 + 344)
    merge_splits.main([str(tmp_path / "lm.json"), str(lm / "keypoints_train.json"), str(lm / "keypoints_val.json")])
    points = read_coco_keypoints(tmp_path / "lm.json", image_root=bench / "landmarks/images")
    assert len(points.records) == 67 + 20
    merge_splits.main([str(tmp_path / "cad.csv"), str(cad / "labels_train.csv"), str(cad / "labels_val.csv")])
    attrs = read_attribute_csv(tmp_path / "cad.csv", image_root=cad, schema=cad / "attributes.json")
    assert len(attrs.records) == 1046 + 250
