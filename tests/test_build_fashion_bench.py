"""scripts/build_fashion_bench.py on tiny sources the tests make in each source's own layout (docs/DATA.md): each
conversion checked against a hand-computed result, and what it writes read back with the project's readers."""
from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from fashion2stage.errors import DataError
from fashion2stage.formats.coco import read_coco_detection, read_coco_keypoints
from fashion2stage.formats.fashionai import read_attribute_csv
from fashion2stage.formats.folders import read_class_folders

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import build_fashion_bench  # noqa: E402
from fashion_bench import cad, ccp, landmarks, products, sources  # noqa: E402
from fashion_bench.common import Problems, split_ids  # noqa: E402

# CCP's label_list.mat: label number k is NAMES[k]
NAMES = ("null accessories bag belt blazer blouse bodysuit boots bra bracelet cape cardigan clogs coat dress earrings "
         "flats glasses gloves hair hat heels hoodie intimate jacket jeans jumper leggings loafers necklace panties "
         "pants pumps purse ring romper sandals scarf shirt shoes shorts skin skirt sneakers socks stockings suit "
         "sunglasses sweater sweatshirt swimwear t-shirt tie tights top vest wallet watch wedges").split()
ALL_TRAIN = (1.0, 0.0, 0.0)
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def photo(path: Path, w: int, h: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), (120, 80, 40)).save(path, "JPEG")
    return path


def make_ccp(root: Path) -> Path:
    """Two 20x16 masks and two tag files in CCP's layout (photos/, annotations/{pixel,image}-level/, label_list.mat)."""
    root.mkdir(parents=True, exist_ok=True)
    savemat(root / "label_list.mat", {"label_list": np.array(NAMES, dtype=object).reshape(1, -1)})  # 1 x 59 cell
    n = NAMES.index
    one = np.zeros((16, 20), np.uint8)
    one[0, 10:20] = n("skin")  # not a garment
    one[1:5, 2:6] = n("coat")  # coat, piece 1: 16 px
    one[9:12, 12:15] = n("coat")  # coat, piece 2 (an occluded garment): 9 px -> one box over both pieces
    one[5:8, 2:5] = n("shirt")  # 9 px
    one[14, 18:20] = n("shirt")  # a 2 px speck of shirt: under the minimum, dropped, does not stretch the box
    one[14, 0:3] = n("skirt")  # 3 px, the skirt's only piece: no box
    for r, c in [(12, 5), (12, 6), (13, 7), (13, 8), (14, 9), (14, 10)]:
        one[r, c] = n("pants")  # 6 px joined only diagonally: one 8-connected piece
    two = np.zeros((16, 20), np.uint8)
    two[2:14, 4:16] = n("dress")  # 144 px
    two[0:2, 0:6] = n("jumper")  # not one of the 21 fine categories
    for number, mask in (("0001", one), ("0002", two)):
        (root / "annotations/pixel-level").mkdir(parents=True, exist_ok=True)
        savemat(root / f"annotations/pixel-level/{number}.mat", {"groundtruth": mask})
        photo(root / f"photos/{number}.jpg", 20, 16)
    (root / "annotations/image-level").mkdir(parents=True, exist_ok=True)
    savemat(root / "annotations/image-level/1005.mat", {"tags": np.array([[n("bag")], [n("coat")], [n("skin")],
                                                                           [n("bag")]], np.uint8)})
    savemat(root / "annotations/image-level/1006.mat", {"tags": np.array([[0], [n("hair")]], np.uint8)})
    photo(root / "photos/1005.jpg", 20, 16)
    photo(root / "photos/1006.jpg", 20, 16)
    return root


def test_masks_give_one_box_per_garment_label_from_the_pieces_above_the_minimum(tmp_path):
    src, out = make_ccp(tmp_path / "ccp-src"), tmp_path / "ccp"
    counts = ccp.build_ccp(src, out, ALL_TRAIN, 0, 5, Problems())
    assert counts["train"] == {"images": 2, "boxes": 4} and counts["val"]["images"] == counts["test"]["images"] == 0
    raw = json.loads((out / "annotations/instances_train.json").read_text())
    fine = {a["id"]: a["name"] for a in raw["attributes"]}
    got = {(im["file_name"], fine[a["attribute_ids"][0]], tuple(a["bbox"]), a["area"])
           for im in raw["images"] for a in raw["annotations"] if a["image_id"] == im["id"]}
    assert got == {("0001.jpg", "coat", (2, 1, 13, 11), 25),  # x 2..14, y 1..11 over both pieces: 16 + 9 px
                   ("0001.jpg", "shirt", (2, 5, 3, 3), 9),  # the speck at (18..19, 14) left out
                   ("0001.jpg", "pants", (5, 12, 6, 3), 6),
                   ("0002.jpg", "dress", (4, 2, 12, 12), 144)}  # no skirt (3 px), skin or jumper box
    ds = read_coco_detection(out / "annotations/instances_train.json")  # the project's reader: xyxy, types
    boxes = {(r.file, g.type, tuple(g.box_xyxy)) for r in ds.records for g in r.garments}
    assert boxes == {("0001.jpg", "outwear", (2, 1, 15, 12)), ("0001.jpg", "blouse", (2, 5, 5, 8)),
                     ("0001.jpg", "trousers", (5, 12, 11, 15)), ("0002.jpg", "dress", (4, 2, 16, 14))}
    assert len(ds.labels.attributes["fine_category"]) == 21 and (out / "images/0002.jpg").is_file()


def test_tags_csv(tmp_path):
    out = tmp_path / "ccp_tags"
    counts = ccp.build_ccp_tags(make_ccp(tmp_path / "src"), out, ALL_TRAIN, 0, Problems())
    assert (out / "tags_train.csv").read_bytes() == b"image,tags\r\nimages/1005.jpg,bag coat\r\nimages/1006.jpg,\r\n"
    assert counts["train"] == {"images": 2, "with_garment_tag": 1}
    assert ccp.read_tags(out / "tags_val.csv") == [] and (out / "images/1006.jpg").is_file()


def make_cad(root: Path) -> Path:
    """Three photos and the four label files the set uses, in CAD's layout (labels/<name>_GT.mat, images/)."""
    nan = np.nan
    gt = {"sleevelength": [3, nan, 1], "neckline": [nan, 2, 3], "collar": [1, 2, nan], "category": [4, nan, 9]}
    (root / "labels").mkdir(parents=True)
    for stem, values in gt.items():
        savemat(root / f"labels/{stem}_GT.mat", {"GT": np.array(values, dtype=np.float64).reshape(-1, 1)})
    photo(root / "images/000001.jpg", 800, 400)  # longer than 640: scaled down to 640x320
    photo(root / "images/000002.jpg", 266, 400)
    photo(root / "images/000003.jpg", 300, 450)
    return root


def test_cad_rows_skip_the_keys_annotators_disagreed_on(tmp_path):
    out, problems = tmp_path / "cad", Problems()
    counts = cad.build_cad(make_cad(tmp_path / "ClothingAttributeDataset"), out, ALL_TRAIN, 0, problems)
    assert (out / "labels_train.csv").read_text().splitlines() == [
        "images/000001.jpg,sleeve_length,nny", "images/000001.jpg,collar_design,yn",
        "images/000001.jpg,category,nnnynnn",  # neckline NaN: no row
        "images/000002.jpg,neckline_design,nyn", "images/000002.jpg,collar_design,ny",  # sleeve, category NaN
        "images/000003.jpg,sleeve_length,ynn", "images/000003.jpg,neckline_design,nny"]  # collar NaN; category 9
    assert counts["skipped_nan"] == {"sleeve_length": 1, "neckline_design": 1, "collar_design": 1, "category": 1}
    assert len(problems.lines) == 1 and "category_GT.mat:3: value 9" in problems.lines[0]
    ds = read_attribute_csv(out / "labels_train.csv")  # with the attributes.json written beside it
    assert ds.labels.attributes["category"][3] == "outwear"  # cad's "outerwear", read in the one spelling
    assert {r.file: sorted(r.attributes) for r in ds.records}["images/000002.jpg"] == ["collar_design",
                                                                                        "neckline_design"]
    assert Image.open(out / "images/000001.jpg").size == (640, 320)


INFO_HEADER = ("image_name,x_1,y_1,x_2,y_2,evaluation_status,category_label,category_name,category_type,"
               + ",".join(f"lm_{p}_{c}" for c in ("x", "y") for p in "lc rc ls rs lw rw lh rh".split()) + ","
               + ",".join(f"lm_{p}_{c}" for c in ("vis", "in_pic") for p in "lc rc ls rs lw rw lh rh".split())
               + ",attr_0")


def _info_row(name, box, category, points, vis, in_pic) -> str:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return ",".join(str(v) for v in [name, *box, "val", 25, category, 2, *xs, *ys, *vis, *in_pic, 0])


def make_landmarks(root: Path) -> Path:
    """The robot set's layout: datasets/robot/info.csv (columns in pairs x then y, as shown) and its photos."""
    robot = root / "datasets/robot"
    corner = (388, 97)  # the source writes absent points at the box corner
    rows = [  # the source's first row (the team's landmarks/ holds it as bbox [258.7, 64.7, 186.7, 398.7])
        _info_row("a.jpg", (388, 97, 668, 695), "Jeans", [corner] * 4 + [(609, 112), (421, 117), (606, 674),
                                                                          (426, 665)],
                  [0] * 4 + [1] * 4, [0] * 4 + [1] * 4),
        _info_row("b.jpg", (100, 50, 300, 400), "Tee", [(150, 60), (250, 60), (110, 120), (290, 120)] + [(0, 0)] * 2
                  + [(120, 390), (280, 390)], [1, 0, 1, 1, 0, 0, 1, 1], [1, 1, 1, 1, 0, 0, 1, 1]),
        _info_row("c.jpg", (10, 10, 50, 50), "Spacesuit", [(0, 0)] * 8, [0] * 8, [0] * 8)]
    robot.mkdir(parents=True)
    (robot / "info.csv").write_text(INFO_HEADER + "\n" + "\n".join(rows) + "\n")
    photo(robot / "a.jpg", 960, 720)
    photo(robot / "b.jpg", 640, 480)
    photo(robot / "c.jpg", 640, 480)
    return root


def test_landmarks_become_coco_keypoints_scaled_with_their_photo(tmp_path):
    out, problems = tmp_path / "landmarks", Problems()
    landmarks.build_landmarks(make_landmarks(tmp_path / "repo"), out, ALL_TRAIN, 0, problems)
    assert len(problems.lines) == 1 and "info.csv:4: category_name 'Spacesuit'" in problems.lines[0]
    raw = json.loads((out / "annotations/keypoints_train.json").read_text())
    jeans = next(a for a in raw["annotations"] if a["fine_category"] == "Jeans")
    assert jeans["bbox"] == [258.667, 64.667, 186.667, 398.667]  # 960x720 -> 640x480: every coordinate x 2/3
    assert jeans["keypoints"][12:] == [406.0, 74.667, 2, 280.667, 78.0, 2, 404.0, 449.333, 2, 284.0, 443.333, 2]
    assert jeans["keypoints"][:12] == [0] * 12 and raw["categories"][0]["skeleton"][0] == [1, 2]
    ds = read_coco_keypoints(out / "annotations/keypoints_train.json")
    tee = next(g for r in ds.records for g in r.garments if g.type == "blouse")
    assert tee.keypoints[:, 2].tolist() == [2, 1, 2, 2, 0, 0, 2, 2]  # right collar: in the picture, not visible
    assert tee.keypoints[1, :2].tolist() == [250, 60] and tuple(tee.box_xyxy) == (100, 50, 300, 400)
    assert {r.file for r in ds.records} == {"a.jpg", "b.jpg"} and not (out / "images/c.jpg").exists()


def test_product_folders_keep_the_source_splits(tmp_path):
    src = tmp_path / "clothing-dataset-small"
    layout = {"train/dress": 3, "train/hat": 2, "validation/dress": 1, "test/hat": 1}
    for folder, n in layout.items():
        for i in range(n):
            photo(src / folder / f"{i}.jpg", 40, 53)
    counts = products.build_products(src, tmp_path / "products", ALL_TRAIN, 0, Problems())
    assert {s: counts[s]["classes"] for s in ("train", "val", "test")} == {
        "train": {"dress": 3, "hat": 2}, "val": {"dress": 1}, "test": {"hat": 1}}
    ds = read_class_folders(tmp_path / "products/val", products.MAPPING)
    assert [(r.file, r.item_type) for r in ds.records] == [("dress/0.jpg", "dress")]


def test_an_unsplit_class_folder_tree_is_split_per_class_by_the_seed(tmp_path):
    src = tmp_path / "flat"
    for cls, n in (("dress", 10), ("hat", 4)):
        for i in range(n):
            photo(src / cls / f"{cls}{i}.jpg", 8, 8)
    out = tmp_path / "products"
    counts = products.build_products(src, out, (0.6, 0.2, 0.2), 7, Problems())
    # dress: 6 / 2 / 2 of 10; hat: round(2.4) = 2, round(0.8) = 1, the rest 1
    assert {s: counts[s]["classes"] for s in ("train", "val", "test")} == {
        "train": {"dress": 6, "hat": 2}, "val": {"dress": 2, "hat": 1}, "test": {"dress": 2, "hat": 1}}
    placed = {p.relative_to(out).parts[1:]: p.relative_to(out).parts[0] for p in out.rglob("*.jpg")}
    assert len(placed) == 14  # every photo in exactly one split
    again = split_ids([f"dress{i}.jpg" for i in range(10)], (0.6, 0.2, 0.2), 7, "products/dress")
    assert sorted(again["val"]) == sorted(f for (c, f), s in placed.items() if c == "dress" and s == "val")
    assert split_ids(range(10), (0.6, 0.2, 0.2), 8, "x") != split_ids(range(10), (0.6, 0.2, 0.2), 7, "x")


def _zip_folder(folder: Path, archive: Path, top: str) -> Path:
    """A GitHub-style archive: everything under one top folder ``<repo>-<commit>/``."""
    with zipfile.ZipFile(archive, "w") as z:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                z.write(p, f"{top}/{p.relative_to(folder).as_posix()}")
    return archive


def test_build_reads_archives_and_folders_and_writes_licences_and_manifest(tmp_path, monkeypatch, capsys):
    def no_network(*args, **kwargs):
        raise AssertionError("the read way must not touch the network")
    monkeypatch.setattr(sources.urllib.request, "urlopen", no_network)
    ccp_zip = _zip_folder(make_ccp(tmp_path / "c"), tmp_path / "ccp.zip", f"clothing-co-parsing-{COMMIT}")
    out = tmp_path / "bench"
    args = ["--out", str(out), "--ccp", str(ccp_zip), "--cad", str(make_cad(tmp_path / "cad-src")),
            "--landmarks", str(make_landmarks(tmp_path / "lm")), "--seed", "3", "--min-piece", "5"]
    assert build_fashion_bench.main(args) == 1  # cad's research-use terms not accepted (stdin is no terminal)
    printed = capsys.readouterr()
    assert "cad: skipped: its licence allows research use only" in printed.err
    assert "Licence: Apache-2.0" in printed.out and "Licence: GPL-3.0" in printed.out
    assert sorted(p.name for p in out.iterdir()) == ["ccp", "ccp_tags", "landmarks", "manifest.json"]
    assert build_fashion_bench.main(args + ["--sets", "cad", "--accept-research-licence"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["sets"]) == ["cad", "ccp", "ccp_tags", "landmarks"]  # the second run merged cad in
    entry = manifest["sets"]["ccp"]
    assert entry["seed"] == 3 and entry["split_fractions"] == {"train": 0.6, "val": 0.15, "test": 0.25}
    assert entry["rules"]["min_piece_px"] == 5 and entry["source"]["commit"] == COMMIT
    assert entry["source"]["sha256"] == sources.sha256(ccp_zip) and entry["source"]["licence"] == "Apache-2.0"
    assert entry["counts"]["train"]["images"] + entry["counts"]["test"]["images"] == 2
    assert manifest["sets"]["cad"]["counts"]["skipped_nan"]["category"] == 1
    assert len(manifest["sets"]["cad"]["left_out"]) == 1  # the out-of-range category value
    for name in ("ccp", "ccp_tags", "cad", "landmarks"):
        assert manifest["sets"][name]["source"]["licence"] in (out / name / "LICENSE.txt").read_text()
    written = sum(len(read_coco_detection(out / f"ccp/annotations/instances_{s}.json").records)
                  for s in ("train", "val", "test"))
    assert written == 2 and not list(out.glob(".*.building"))
    assert build_fashion_bench.main(args + ["--sets", "ccp"]) == 1  # an existing set is not overwritten silently
    assert "already there; pass --overwrite" in capsys.readouterr().err


def test_a_github_tarball_is_found_by_its_layout_and_names_its_commit(tmp_path):
    repo = make_landmarks(tmp_path / "repo")
    tgz = tmp_path / "landmarks.tar.gz"
    with tarfile.open(tgz, "w:gz", format=tarfile.PAX_FORMAT, pax_headers={"comment": COMMIT}) as t:
        t.add(repo, arcname="Fashion_Landmark_Detection_and_Category_Classification-main")
    root, origin = sources.open_source("landmarks", tgz, tmp_path / "scratch")
    assert root.name == "Fashion_Landmark_Detection_and_Category_Classification-main"
    assert landmarks.info_csv(root) == root / "datasets/robot/info.csv" and origin["commit"] == COMMIT
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("../escape.txt", "x")
    with pytest.raises(DataError, match="would land outside"):
        sources.open_source("products", bad, tmp_path / "scratch2")


def test_download_fetches_the_pinned_archive_once_then_converts_it(tmp_path, monkeypatch):
    """The download way end to end, served from a file:// URL (these machines have no internet)."""
    src = tmp_path / "small"
    for i in range(2):
        photo(src / "train/t-shirt" / f"{i}.jpg", 40, 53)
    photo(src / "validation/shoes/s.jpg", 40, 53)
    archive = _zip_folder(src, tmp_path / "served.zip", f"clothing-dataset-small-{COMMIT}")
    pinned = replace(sources.SOURCES["products"], url=archive.as_uri(), commit=COMMIT)
    monkeypatch.setitem(sources.SOURCES, "products", pinned)
    downloads, out = tmp_path / "downloads", tmp_path / "bench"
    assert build_fashion_bench.main(["--download", "--downloads", str(downloads), "--out", str(out),
                                     "--sets", "products"]) == 0
    assert (downloads / f"products-{COMMIT}.zip").read_bytes() == archive.read_bytes()
    entry = json.loads((out / "manifest.json").read_text())["sets"]["products"]
    assert entry["source"]["downloaded_from"] == archive.as_uri() and entry["source"]["commit"] == COMMIT
    assert entry["counts"]["val"]["classes"] == {"shoes": 1} and (out / "products/train/t-shirt/1.jpg").is_file()
    archive.unlink()  # a second run finds the archive it kept
    assert build_fashion_bench.main(["--download", "--downloads", str(downloads), "--out", str(out),
                                     "--sets", "products", "--overwrite"]) == 0


def test_help_documents_both_ways_in():
    text = subprocess.run([sys.executable, str(ROOT / "scripts/build_fashion_bench.py"), "--help"],
                          capture_output=True, text=True, check=True, cwd=ROOT).stdout
    for needle in ("Two ways in", "download", "--download", "read", "--ccp PATH", "--cad PATH", "--landmarks PATH",
                   "--products PATH", "--accept-research-licence", "manifest.json", "docs/DATA.md"):
        assert needle in text
