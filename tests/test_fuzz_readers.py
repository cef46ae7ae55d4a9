"""Fuzzed readers: random mutations of small valid label files give a valid dataset or the project's DataError
naming the file (and its line, for a bad row of a CSV); never another exception, and never a hang.

Two kinds of mutation per format: structural (a JSON value replaced by another of any type, a key dropped, an item
duplicated; a CSV cell rewritten, dropped or added, a row dropped or repeated) and raw bytes (flipped, cut, inserted,
truncated). Examples are derandomized, so CI sees the same ones every run; a wall-clock alarm turns a hang into a
failure.
"""
from __future__ import annotations

import copy
import csv
import io
import json
import shutil
import signal
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fashion2stage.errors import DataError
from fashion2stage.formats.coco import read_coco_detection, read_coco_keypoints
from fashion2stage.formats.deepfashion2 import read_deepfashion2
from fashion2stage.formats.fashionai import read_attribute_csv, read_keypoint_csv
from fashion2stage.records import Dataset

FUZZ = settings(max_examples=100, derandomize=True, database=None, deadline=timedelta(seconds=5),
                suppress_health_check=[HealthCheck.too_slow])
HANG_SECONDS = 20

# ---- small valid files ------------------------------------------------------------------------------------------

KP_NAMES = ["left", "right", "centre"]
COCO = {
    "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80},
               {"id": 2, "file_name": "sub/b.jpg", "width": 60, "height": 60}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 40], "area": 1200, "iscrowd": 0,
         "attribute_ids": [1], "keypoints": [12, 12, 2, 38, 12, 1, 25, 30, 2], "num_keypoints": 3},
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [50.5, 20, 20, 50], "area": 1000, "iscrowd": 0,
         "attribute_ids": [2], "keypoints": [0, 0, 0, 60, 60, 2, 55, 30, 2], "num_keypoints": 2},
        {"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, 60, 60], "area": 3600, "iscrowd": 1,
         "keypoints": [1, 1, 2, 2, 2, 2, 3, 3, 2], "num_keypoints": 3},
    ],
    "categories": [{"id": 1, "name": "blouse", "supercategory": "garment", "keypoints": KP_NAMES},
                   {"id": 2, "name": "skirt", "supercategory": "garment", "keypoints": KP_NAMES}],
    "attributes": [{"id": 1, "name": "plain", "supercategory": "pattern"},
                   {"id": 2, "name": "striped", "supercategory": "pattern"}],
}
SCHEMA = {"sleeve_length": ["short", "long"], "collar_design": ["none", "shirt", "rib"]}
ATTRIBUTE_ROWS = [["Images/a.jpg", "sleeve_length", "ny"], ["Images/a.jpg", "collar_design", "nmy"],
                  ["Images/b.jpg", "sleeve_length", "yn"], ["Images/c/d.jpg", "collar_design", "ynn"]]
KP_COLUMNS = ["neckline_left", "neckline_right", "waistband_left", "hemline_right"]
KEYPOINT_ROWS = [["image_id", "image_category", *KP_COLUMNS],
                 ["Images/blouse/1.jpg", "blouse", "10_20_1", "30_20_0", "-1_-1_-1", "-1_-1_-1"],
                 ["Images/skirt/2.jpg", "skirt", "-1_-1_-1", "-1_-1_-1", "5_6_1", "40_90_1"],
                 ["Images/dress/3.jpg", "dress", "7_8_1", "9_8_1", "-1_-1_-1", "50_60_0"],
                 ["Images/blouse/4.jpg", "blouse", "1_1_0", "-1_-1_-1", "-1_-1_-1", "-1_-1_-1"]]
DF2 = {"000001.json": {"source": "user", "pair_id": 1,
                       "item1": {"category_id": 9, "category_name": "skirt", "bounding_box": [10, 20, 110, 220],
                                 "landmarks": [v for i in range(8) for v in (20 + i, 30 + i, 2 if i % 3 else 1)],
                                 "style": 1, "occlusion": 1},
                       "item2": {"category_id": 7, "bounding_box": [5, 5, 50, 60],
                                 "landmarks": [v for i in range(10) for v in (6 + i, 7 + i, 0 if i == 4 else 2)]}},
       "000002.json": {"source": "shop", "pair_id": 1}}

# ---- mutations --------------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=5)
cell_text = st.text(alphabet=st.sampled_from(list("ynm_-0123456789,\"\n ./\\xé\x00")), max_size=8) | st.text(max_size=6)


def _paths(node, path=()):
    """Every (container, key) pair of a JSON tree, depth first."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        yield path + (k,)
        yield from _paths(v, path + (k,))


def mutate_json(data, draw) -> object:
    doc = copy.deepcopy(data)
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(doc))
        if not paths:
            return draw(json_values)
        *parent_path, key = draw(st.sampled_from(paths))
        parent = doc
        for k in parent_path:
            parent = parent[k]
        op = draw(st.sampled_from(["replace", "delete", "duplicate", "new key"]))
        if op == "replace":
            parent[key] = draw(json_values)
        elif op == "delete":
            del parent[key]
        elif op == "duplicate" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
        else:
            target = parent if isinstance(parent, dict) else parent[key]
            if isinstance(target, dict):
                target[draw(st.sampled_from(["id", "image_id", "category_id", "bbox", "item3", "x"]))] = draw(json_values)
    return doc


def mutate_rows(rows: list[list[str]], draw) -> list[list[str]]:
    rows = copy.deepcopy(rows)
    for _ in range(draw(st.integers(1, 3))):
        if not rows:
            rows.append([draw(cell_text)])
            continue
        r = draw(st.integers(0, len(rows) - 1))
        op = draw(st.sampled_from(["cell", "cell", "drop cell", "add cell", "drop row", "repeat row"]))
        if op == "drop row":
            del rows[r]
        elif op == "repeat row":
            rows.insert(draw(st.integers(0, len(rows))), list(rows[r]))
        elif op == "add cell" or not rows[r]:
            rows[r].insert(draw(st.integers(0, len(rows[r]))), draw(cell_text))
        else:
            c = draw(st.integers(0, len(rows[r]) - 1))
            if op == "drop cell":
                del rows[r][c]
            else:
                rows[r][c] = draw(cell_text)
    return rows


def mutate_bytes(data: bytes, draw) -> bytes:
    b = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        if not b:
            break
        i = draw(st.integers(0, len(b) - 1))
        op = draw(st.sampled_from(["flip", "cut", "insert", "truncate"]))
        if op == "flip":
            b[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del b[i:i + draw(st.integers(1, 16))]
        elif op == "insert":
            b[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:
            del b[i:]
    return bytes(b)


def csv_text(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()

# ---- the property -----------------------------------------------------------------------------------------------


@contextmanager
def no_hang():
    def alarm(signum, frame):
        raise TimeoutError(f"reader still running after {HANG_SECONDS} s")
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(HANG_SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def check(read, files: set[Path], line_based: bool = False, file_level: tuple[str, ...] = ()) -> None:
    """``read()`` gives a consistent dataset or a DataError naming one of ``files``; for a line-based format a bad
    row's error also gives its line (only problems of the whole file, ``file_level``, may omit it)."""
    try:
        with no_hang():
            ds = read()
    except DataError as e:
        assert Path(e.path) in files, str(e)
        assert str(e).startswith(e.path) and "\n" not in str(e)
        if line_based and not e.problem.startswith(file_level):
            assert isinstance(e.line, int) and e.line >= 1, str(e)
        return
    assert isinstance(ds, Dataset)
    labels = ds.labels
    for r in ds.records:
        assert not Path(r.file).is_absolute() and ".." not in Path(r.file).parts
        for g in r.garments:
            assert g.type in labels.garment_types
            x1, y1, x2, y2 = g.box_xyxy
            assert np.all(np.isfinite(g.box_xyxy)) and x1 < x2 and y1 < y2
            if g.keypoints is not None:
                assert g.keypoints.shape == (len(labels.keypoints), 3) and np.all(np.isfinite(g.keypoints))
            for key, marks in g.attributes.items():
                assert len(marks) == len(labels.attributes[key]) and marks.count("y") == 1
        for key, marks in r.attributes.items():
            assert len(marks) == len(labels.attributes[key]) and marks.count("y") == 1


def _write(path: Path, content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    return path


# the valid COCO file has an iscrowd annotation, which readers skip with a warning
pytestmark = pytest.mark.filterwarnings("ignore:.*iscrowd")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def test_the_valid_files_are_valid(workdir):
    """The seeds of the fuzzing read cleanly (else every mutation would only test one error)."""
    coco = _write(workdir / "valid" / "coco.json", json.dumps(COCO))
    assert len(read_coco_detection(coco).records[0].garments) == 2
    assert read_coco_keypoints(coco).records[0].garments[1].keypoints[0, 2] == 0
    attrs = _write(workdir / "valid" / "labels.csv", csv_text(ATTRIBUTE_ROWS))
    assert len(read_attribute_csv(attrs, schema=SCHEMA).records) == 3
    assert len(read_keypoint_csv(_write(workdir / "valid" / "kp.csv", csv_text(KEYPOINT_ROWS))).records) == 4
    for name, doc in DF2.items():
        _write(workdir / "valid" / "annos" / name, json.dumps(doc))
    assert [len(r.garments) for r in read_deepfashion2(workdir / "valid" / "annos").records] == [2, 0]


@pytest.mark.parametrize("reader", [read_coco_detection, read_coco_keypoints])
@FUZZ
@given(data=st.data(), raw=st.booleans())
def test_coco_readers(workdir, reader, data, raw):
    text = json.dumps(COCO)
    content = mutate_bytes(text.encode(), data.draw) if raw else json.dumps(mutate_json(COCO, data.draw))
    path = _write(workdir / "coco" / "annotations.json", content)
    check(lambda: reader(path), {path})


@FUZZ
@given(data=st.data(), raw=st.booleans(), schema_file=st.sampled_from([False, False, False, True]))
def test_fashionai_attribute_csv(workdir, data, raw, schema_file):
    folder = workdir / "attributes"
    path, schema_path = folder / "labels.csv", folder / "attributes.json"
    content = csv_text(ATTRIBUTE_ROWS)
    _write(schema_path, json.dumps(SCHEMA))
    if schema_file:  # the schema beside the CSV is read too: mutate it instead
        _write(path, content)
        _write(schema_path, mutate_bytes(json.dumps(SCHEMA).encode(), data.draw) if raw
               else json.dumps(mutate_json(SCHEMA, data.draw)))
    else:
        _write(path, mutate_bytes(content.encode(), data.draw) if raw
               else csv_text(mutate_rows(ATTRIBUTE_ROWS, data.draw)))
    check(lambda: read_attribute_csv(path), {path, schema_path}, line_based=not schema_file,
          file_level=("cannot read", "not a UTF-8"))


@FUZZ
@given(data=st.data(), raw=st.booleans())
def test_fashionai_keypoint_csv(workdir, data, raw):
    content = csv_text(KEYPOINT_ROWS)
    path = _write(workdir / "kp" / "keypoints.csv", mutate_bytes(content.encode(), data.draw) if raw
                  else csv_text(mutate_rows(KEYPOINT_ROWS, data.draw)))
    check(lambda: read_keypoint_csv(path), {path}, line_based=True, file_level=("cannot read", "not a UTF-8", "empty"))


@FUZZ
@given(data=st.data(), raw=st.booleans(), which=st.sampled_from(sorted(DF2)))
def test_deepfashion2(workdir, data, raw, which):
    annos = workdir / "df2" / "annos"
    for name, doc in DF2.items():
        _write(annos / name, json.dumps(doc))
    text = json.dumps(DF2[which])
    _write(annos / which, mutate_bytes(text.encode(), data.draw) if raw else json.dumps(mutate_json(DF2[which], data.draw)))
    check(lambda: read_deepfashion2(annos), {annos, *(annos / n for n in DF2)})


CLASS_MAPPING = {"classes": {"t-shirt": {"type": "blouse", "attributes": {"sleeve_length": "Short Sleeves"}},
                             "pants": {"type": "trousers", "attributes": {"pant_length": "Full Length"}},
                             "hat": {"type": "none"}}}


def _class_tree(root: Path, draw) -> None:
    """Class folders of CLASS_MAPPING with two (empty: the reader opens no image) photos each, then 0-2 changes."""
    for c in CLASS_MAPPING["classes"]:
        for name in ("1.jpg", "sub/2.png"):
            _write(root / c / name, b"")
    for _ in range(draw(st.integers(0, 2))):
        c = draw(st.sampled_from(sorted(p.name for p in root.iterdir()) or ["t-shirt"]))
        op = draw(st.sampled_from(["drop class", "new class", "empty class", "odd file", "link loop", "file as class"]))
        if op == "drop class" and (root / c).is_dir():
            shutil.rmtree(root / c)
        elif op == "new class":
            (root / draw(st.sampled_from(["shoes", "T-Shirt", ".hidden", "pants "]))).mkdir(exist_ok=True)
        elif op == "empty class" and (root / c).is_dir():
            shutil.rmtree(root / c)
            (root / c).mkdir()
        elif op == "odd file" and (root / c).is_dir():
            _write(root / c / draw(st.sampled_from(["x.JPG", ".y.jpg", "z.txt", "a b.png", "é.webp"])), b"\0")
        elif op == "link loop" and (root / c).is_dir() and not (root / c / "loop").exists():
            (root / c / "loop").symlink_to("..")
        elif op == "file as class":
            _write(root / "file_class", b"x")


def test_class_folders(workdir):
    """Class folders and their mapping file (fashion2stage/formats/folders.py): a mutated mapping (JSON or YAML)
    or folder tree gives a dataset or a DataError naming the folder or the mapping; never another exception."""
    folders = pytest.importorskip("fashion2stage.formats.folders",
                                  reason="the class-folder reader is not in this checkout yet")
    from fashion2stage.labels import LabelSet

    @settings(FUZZ, max_examples=50)  # each example builds a folder tree
    @given(data=st.data(), raw=st.booleans(), suffix=st.sampled_from([".json", ".yaml"]))
    def fuzz(data, raw, suffix):
        base = workdir / "folders"
        shutil.rmtree(base, ignore_errors=True)
        root, mapping = base / "photos", base / f"classes{suffix}"
        _class_tree(root, data.draw)
        text = json.dumps(mutate_json(CLASS_MAPPING, data.draw) if not raw else CLASS_MAPPING)
        _write(mapping, mutate_bytes(text.encode(), data.draw) if raw else text)  # JSON is valid YAML too
        check(lambda: folders.read_class_folders(root, mapping, LabelSet.fashionai()), {root, mapping})

    fuzz()


TAG_ROWS = [["image", "tags"], ["images/1.jpg", "coat jeans bag"], ["images/2.jpg", ""], ["images/3.jpg", "skirt"]]
TAG_MAPPING = "unmapped: error\nclasses:\n  coat: {type: outwear, attributes: {fine_category: coat}}\n" \
              "  jeans: trousers\n  skirt: skirt\n  bag: none\n"


@FUZZ
@given(data=st.data(), raw=st.booleans())
def test_tag_csv(workdir, data, raw):
    from fashion2stage.formats.tags import read_tags

    mapping = _write(workdir / "tags" / "m.yaml", TAG_MAPPING)
    content = csv_text(TAG_ROWS)
    path = _write(workdir / "tags" / "tags.csv", mutate_bytes(content.encode(), data.draw) if raw
                  else csv_text(mutate_rows(TAG_ROWS, data.draw)))
    check(lambda: read_tags(path, mapping), {path}, line_based=True,
          file_level=("cannot read", "not a UTF-8", "no photos", "expected the header line"))
