import json

import numpy as np
import pytest

from fashion2stage import taxonomy
from fashion2stage.errors import DataError
from fashion2stage.formats.fashionai import (read_attribute_csv, read_keypoint_csv, write_attribute_submission,
                                             write_keypoint_csv)

SCHEMA = {"sleeve_length": ["sleeveless", "short", "long"], "collar_design": ["collarless", "collar"]}


def write(tmp_path, text, name="labels.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_rows_of_one_image_merge_with_the_given_schema(tmp_path):
    p = write(tmp_path, "images/1.jpg,sleeve_length,nny\nimages/2.jpg,collar_design,yn\n\n"
                        "images/1.jpg,collar_design,ny\nimages/2.jpg,sleeve_length,myn\n")
    ds = read_attribute_csv(p, schema=SCHEMA)
    assert ds.root == tmp_path and ds.labels.attributes == SCHEMA
    assert [(r.file, r.attributes) for r in ds.records] == [
        ("images/1.jpg", {"sleeve_length": "nny", "collar_design": "ny"}),
        ("images/2.jpg", {"collar_design": "yn", "sleeve_length": "myn"})]
    assert all(r.garments == [] for r in ds.records)
    # keys FashionAI knows get its garment types; other keys would be carried by every type
    assert ds.labels.types_for_key("sleeve_length") == ["blouse", "outwear", "dress"]


def test_schema_file_beside_the_csv_wins_over_fashionai(tmp_path):
    (tmp_path / "attributes.json").write_text(json.dumps({**SCHEMA, "category": ["shirt", "dress"]}))
    ds = read_attribute_csv(write(tmp_path, "a.jpg,category,ny\n"), image_root="/imgs")
    assert list(ds.labels.attributes) == ["sleeve_length", "collar_design", "category"]
    assert ds.labels.types_for_key("category") == ds.labels.garment_types
    assert str(ds.records[0].path) == "/imgs/a.jpg"
    ds = read_attribute_csv(tmp_path / "labels.csv", schema=tmp_path / "attributes.json",
                            attribute_types={"category": ["top"]})
    assert ds.labels.types_for_key("category") == ["top"] and "top" in ds.labels.garment_types
    # naming one key's types keeps FashionAI's mapping for the others: no sleeve length for trousers
    assert ds.labels.types_for_key("sleeve_length") == ["blouse", "outwear", "dress"]
    assert ds.labels.keys_for_type("trousers") == []


def test_builtin_fashionai_schema(tmp_path):
    ds = read_attribute_csv(write(tmp_path, "Images/skirt_length_labels/x.jpg,skirt_length,nnynnn\n"))
    assert ds.labels.attributes["skirt_length"] == list(taxonomy.FASHIONAI_ATTRIBUTES["skirt_length"])
    assert ds.records[0].attributes == {"skirt_length": "nnynnn"}


@pytest.mark.parametrize("text, message", [
    ("a.jpg,sleeve_length\n", r"labels.csv:1: expected 3 columns"),
    ("a.jpg,sleeve_length,nny\nb.jpg,colour,yn\n", r"labels.csv:2: unknown attribute key 'colour'"),
    ("a.jpg,sleeve_length,ny\n", r"labels.csv:1: sleeve_length: 2 marks"),
    ("a.jpg,sleeve_length,nnx\n", r"labels.csv:1: .*only contain y, n, m"),
    ("a.jpg,sleeve_length,yny\n", r"labels.csv:1: .*exactly one 'y'"),
    ("a.jpg,sleeve_length,nnm\n", r"labels.csv:1: .*exactly one 'y'"),
    ("a.jpg,sleeve_length,nny\nx.jpg,collar_design,ny\na.jpg,sleeve_length,ynn\n",
     r"labels.csv:3: a.jpg: sleeve_length labelled twice \(first on line 1\)"),
    ("../a.jpg,sleeve_length,nny\n", r"labels.csv:1: .*escapes the dataset root"),
    ("/etc/a.jpg,sleeve_length,nny\n", r"labels.csv:1: .*escapes the dataset root"),
])
def test_attribute_csv_rejects_bad_rows(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        read_attribute_csv(write(tmp_path, text), schema=SCHEMA)


def test_bad_schema(tmp_path):
    with pytest.raises(DataError, match="non-empty list"):
        read_attribute_csv(write(tmp_path, "a.jpg,k,y\n"), schema={"k": []})
    with pytest.raises(DataError, match="nope.json: cannot read attribute schema"):
        read_attribute_csv(write(tmp_path, "a.jpg,k,y\n"), schema=tmp_path / "nope.json")


def test_submission_format(tmp_path):
    p = tmp_path / "sub.csv"
    write_attribute_submission(p, [("Images/a.jpg", "collar_design", [0.1, 0.25, 0.6, 0.05, 0.0]),
                                   ("Images/b.jpg", "sleeve_length", np.array([1.0, 0.0]))])
    assert p.read_text() == ("Images/a.jpg,collar_design,0.1000;0.2500;0.6000;0.0500;0.0000\n"
                             "Images/b.jpg,sleeve_length,1.0000;0.0000\n")
    with pytest.raises(ValueError, match="finite"):
        write_attribute_submission(p, [("a.jpg", "k", [float("nan")])])
    assert p.read_text().startswith("Images/a.jpg")  # a failed write leaves the old file whole


def keypoint_csv(rows):
    header = ",".join(["image_id", "image_category", *taxonomy.FASHIONAI_KEYPOINTS])
    return header + "\n" + "".join(r + "\n" for r in rows)


def cells(points):
    """24 cells, -1_-1_-1 except the given {name: 'x_y_v'}."""
    return ",".join(points.get(n, "-1_-1_-1") for n in taxonomy.FASHIONAI_KEYPOINTS)


def test_keypoint_csv_visibility_and_box_from_points(tmp_path):
    row = "Images/skirt/s.jpg,skirt," + cells({"waistband_left": "10_20_1", "waistband_right": "50_22_0",
                                                "hemline_left": "5_90_1"})
    ds = read_keypoint_csv(write(tmp_path, keypoint_csv([row])))
    g = ds.records[0].garments[0]
    assert g.type == "skirt" and g.keypoints.shape == (24, 3)
    k = {n: g.keypoints[i].tolist() for i, n in enumerate(taxonomy.FASHIONAI_KEYPOINTS)}
    assert k["waistband_left"] == [10, 20, 2] and k["waistband_right"] == [50, 22, 1]
    assert k["hemline_left"] == [5, 90, 2] and k["hemline_right"] == [0, 0, 0]
    np.testing.assert_array_equal(g.box_xyxy, [5, 20, 51, 91])  # extent of labelled points, one pixel past the max
    assert ds.labels.keypoints == list(taxonomy.FASHIONAI_KEYPOINTS)


def test_keypoint_csv_round_trip(tmp_path):
    rows = ["a.jpg,blouse," + cells({"neckline_left": "1_2_1", "armpit_right": "30_40_0"}),
            "b.jpg,trousers," + cells({"crotch": "7_8_1"}),
            "a.jpg,skirt," + cells({"hemline_right": "9_9_1"})]  # a second garment in the same image
    src = write(tmp_path, keypoint_csv(rows))
    ds = read_keypoint_csv(src)
    assert [len(r.garments) for r in ds.records] == [2, 1]
    out = tmp_path / "out.csv"
    write_keypoint_csv(out, ds.records, ds.labels)
    assert sorted(out.read_text().splitlines()) == sorted(src.read_text().splitlines())
    again = read_keypoint_csv(out)
    assert [len(r.garments) for r in again.records] == [2, 1]
    for r1, r2 in zip(ds.records, again.records):
        for g1, g2 in zip(r1.garments, r2.garments):
            np.testing.assert_array_equal(g1.keypoints, g2.keypoints)


@pytest.mark.parametrize("rows, message", [
    (["a.jpg,hat," + cells({"crotch": "1_1_1"})], r":2: unknown image_category 'hat'"),
    (["a.jpg,skirt," + cells({"crotch": "1_1_2"})], r":2: crotch: cell '1_1_2' is not x_y_v"),
    (["a.jpg,skirt," + cells({"crotch": "1_1"})], r":2: crotch: cell '1_1' is not x_y_v"),
    (["a.jpg,skirt," + cells({"crotch": "a_1_1"})], r":2: crotch: cell 'a_1_1' is not x_y_v"),
    (["a.jpg,skirt," + cells({})], r":2: no labelled keypoint"),
    (["a.jpg,skirt,1_1_1"], r":2: expected 26 columns, found 3"),
    (["../a.jpg,skirt," + cells({"crotch": "1_1_1"})], r":2: .*escapes"),
])
def test_keypoint_csv_rejects_bad_rows(tmp_path, rows, message):
    with pytest.raises(DataError, match=message):
        read_keypoint_csv(write(tmp_path, keypoint_csv(rows)))


def test_keypoint_csv_rejects_bad_header(tmp_path):
    with pytest.raises(DataError, match=r":1: header must begin image_id,image_category"):
        read_keypoint_csv(write(tmp_path, "image,category,crotch\n"))
    with pytest.raises(DataError, match=r":1: unknown or repeated keypoint columns: \['elbow'\]"):
        read_keypoint_csv(write(tmp_path, "image_id,image_category,crotch,elbow\n"))
    with pytest.raises(DataError, match="empty file"):
        read_keypoint_csv(write(tmp_path, ""))
