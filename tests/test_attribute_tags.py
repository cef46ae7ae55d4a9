"""scripts/attribute_tags.py: one attribute key of a FashionAI CSV as partial tags, read back by the tag reader."""
import importlib.util
import json
from pathlib import Path

import pytest
from PIL import Image

from fashion2stage.errors import DataError
from fashion2stage.formats.tags import fully_tagged, tagged_types
from fashion2stage.sources import read_source

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("attribute_tags", ROOT / "scripts/attribute_tags.py")
attribute_tags = importlib.util.module_from_spec(spec)
spec.loader.exec_module(attribute_tags)


def test_the_category_becomes_a_partial_tag_of_each_photo(tmp_path):
    data = tmp_path / "data" / "cadlike"
    (data / "images").mkdir(parents=True)
    for name in ("1", "2", "3"):
        Image.new("RGB", (40, 60)).save(data / "images" / f"{name}.jpg")
    (data / "attributes.json").write_text(json.dumps({"sleeve_length": ["short", "long"],
                                                      "category": ["shirt", "outerwear", "dress"]}))
    (data / "labels.csv").write_text("images/1.jpg,category,nyn\nimages/1.jpg,sleeve_length,ny\n"
                                     "images/2.jpg,sleeve_length,yn\nimages/3.jpg,category,nny\n")
    out = tmp_path / "runs" / "tags"
    csv = attribute_tags.attribute_tags(data / "labels.csv", "category", "c_", out)
    assert csv.read_text().splitlines() == ["image,tags", "cadlike/images/1.jpg,c_outwear", "cadlike/images/2.jpg,",
                                            "cadlike/images/3.jpg,c_dress"]
    assert (out / "cadlike").is_symlink() and not (out / "cadlike").resolve().is_relative_to(out.resolve())
    assert attribute_tags.attribute_tags(data / "labels.csv", "category", "c_", out) == csv  # a rerun is fine
    (tmp_path / "m.yaml").write_text("unmapped: error\nclasses:\n  c_outwear: {type: outwear, complete: false}\n"
                                     "  c_dress: {type: dress, complete: false}\n  c_shirt: {type: blouse}\n")
    ds = read_source(csv, tmp_path / "m.yaml")  # the image files are found through the link
    assert [tagged_types(r, ds.tags) for r in ds.records] == [{"outwear"}, set(), {"dress"}]
    assert not fully_tagged(ds.records[0], ds.tags)
    with pytest.raises(DataError, match="no attribute key 'collar'"):
        attribute_tags.attribute_tags(data / "labels.csv", "collar", "c_", out)
    with pytest.raises(DataError, match="value 'shirt' with prefix 'c ' is not one word"):
        attribute_tags.attribute_tags(data / "labels.csv", "category", "c ", out)
