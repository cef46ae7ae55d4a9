import os

import numpy as np
import pytest
import yaml
from PIL import Image

from fashion2stage.formats.yolo import export_yolo
from fashion2stage.labels import LabelSet
from fashion2stage.records import Dataset, Garment, ImageRecord


def make_data(tmp_path):
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    Image.new("RGB", (100, 50)).save(root / "sub" / "a.jpg")
    Image.new("RGB", (40, 80)).save(root / "b.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 80x40, upright 40x80: the label must use the upright size
    Image.new("RGB", (80, 40)).save(root / "c.jpg", exif=exif)
    labels = LabelSet(garment_types=["blouse", "skirt"])
    train = Dataset(root=root, labels=labels, records=[
        ImageRecord("sub/a.jpg", root, 100, 50, [Garment("skirt", np.array([10.0, 5, 30, 45])),
                                                 Garment("blouse", np.array([0.0, 0, 100, 50]))]),
        ImageRecord("b.jpg", root, 40, 80),
    ])
    val = Dataset(root=root, labels=labels, records=[
        ImageRecord("c.jpg", root, None, None, [Garment("blouse", np.array([4.0, 8, 36, 72]))])])
    return root, train, val


def test_export_layout_and_labels(tmp_path):
    root, train, val = make_data(tmp_path)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    data_yaml = export_yolo(train, val, tmp_path / "yolo")
    out = tmp_path / "yolo"
    assert data_yaml == out / "data.yaml"
    data = yaml.safe_load(data_yaml.read_text())
    assert data == {"path": str(out), "train": "images/train", "val": "images/val", "names": {0: "blouse", 1: "skirt"}}
    assert (out / "labels/train/sub__a.txt").read_text() == \
        "1 0.200000 0.500000 0.200000 0.800000\n0 0.500000 0.500000 1.000000 1.000000\n"
    assert (out / "labels/train/b.txt").read_text() == ""
    assert (out / "labels/val/c.txt").read_text() == "0 0.500000 0.500000 0.800000 0.800000\n"
    link = out / "images/train/sub__a.jpg"
    assert link.is_symlink() and os.path.samefile(link, root / "sub/a.jpg")
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before  # nothing written beside the data
    # a re-export replaces the previous one (no stale files)
    train.records = train.records[:1]
    export_yolo(train, val, out)
    assert not (out / "labels/train/b.txt").exists()


def test_ultralytics_reads_the_export(tmp_path):
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    _, train, val = make_data(tmp_path)
    data = check_det_dataset(str(export_yolo(train, val, tmp_path / "yolo")), autodownload=False)
    assert data["nc"] == 2
    ds = YOLODataset(img_path=data["train"], data=data, task="detect", augment=False, imgsz=64)
    by_file = {os.path.basename(lb["im_file"]): lb for lb in ds.labels}
    assert by_file["sub__a.jpg"]["cls"].ravel().tolist() == [1, 0]
    np.testing.assert_allclose(by_file["sub__a.jpg"]["bboxes"][0], [0.2, 0.5, 0.2, 0.8], atol=1e-6)
    assert len(by_file["b.jpg"]["cls"]) == 0


def test_refuses_to_write_near_the_data_or_over_other_folders(tmp_path):
    root, train, val = make_data(tmp_path)
    with pytest.raises(ValueError, match="inside or around the dataset root"):
        export_yolo(train, val, root / "yolo")
    with pytest.raises(ValueError, match="inside or around the dataset root"):
        export_yolo(train, val, tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a previous YOLO export"):
        export_yolo(train, val, other)


def test_unknown_type_and_colliding_names(tmp_path):
    root, train, val = make_data(tmp_path)
    val.records[0].garments[0].type = "hat"
    with pytest.raises(ValueError, match="'hat' is not one of the training types"):
        export_yolo(train, val, tmp_path / "y1")
    Image.new("RGB", (4, 4)).save(root / "b.png")
    train.records.append(ImageRecord("b.png", root, 4, 4))
    with pytest.raises(ValueError, match="same YOLO label file b.txt"):
        export_yolo(train, val, tmp_path / "y2")


def test_copies_where_symlinks_fail(tmp_path, monkeypatch):
    root, train, val = make_data(tmp_path)

    def no_symlinks(src, dst):
        raise OSError("symlinks not supported here")
    monkeypatch.setattr(os, "symlink", no_symlinks)
    out = export_yolo(train, val, tmp_path / "yolo").parent
    copy = out / "images/train/sub__a.jpg"
    assert not copy.is_symlink() and copy.read_bytes() == (root / "sub/a.jpg").read_bytes()


def test_repeats_list_each_training_image_that_many_times(tmp_path):
    """Source shares for YOLO: train.txt lists an image as often as asked, and ultralytics reads every line."""
    from detectors.offline import import_ultralytics
    import_ultralytics()
    from ultralytics.data.utils import check_det_dataset
    from ultralytics.data.dataset import YOLODataset

    root, train, val = make_data(tmp_path)
    data_yaml = export_yolo(train, val, tmp_path / "yolo", repeats=[1, 3])
    out = tmp_path / "yolo"
    assert yaml.safe_load(data_yaml.read_text())["train"] == "train.txt"
    assert (out / "train.txt").read_text().splitlines() == ["./images/train/sub__a.jpg"] + ["./images/train/b.jpg"] * 3
    data = check_det_dataset(str(data_yaml))
    ds = YOLODataset(img_path=data["train"], data=data, imgsz=64, augment=False)
    assert sorted(os.path.basename(f) for f in ds.im_files) == ["b.jpg"] * 3 + ["sub__a.jpg"]
    with pytest.raises(ValueError, match="repeats"):
        export_yolo(train, val, tmp_path / "yolo", repeats=[1])
    export_yolo(train, val, tmp_path / "yolo")  # a re-export without repeats drops the old list
    assert not (out / "train.txt").exists()


def test_two_sources_with_the_same_file_names_stay_two_images(tmp_path):
    root, train, val = make_data(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    Image.new("RGB", (40, 80)).save(other / "b.jpg")
    train.records.append(ImageRecord("b.jpg", other, 40, 80, [Garment("skirt", np.array([0.0, 40, 40, 80]))]))
    export_yolo(train, val, tmp_path / "yolo", repeats=[1, 1, 2])
    out = tmp_path / "yolo"
    assert os.path.samefile(out / "images/train/s1__b.jpg", other / "b.jpg")
    assert os.path.samefile(out / "images/train/b.jpg", root / "b.jpg")
    assert (out / "labels/train/s1__b.txt").read_text() == "1 0.500000 0.750000 1.000000 0.500000\n"
    assert (out / "train.txt").read_text().splitlines()[-2:] == ["./images/train/s1__b.jpg"] * 2
