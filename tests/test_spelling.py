"""One spelling of outerwear: the garment type is FashionAI's "outwear", and a label set, a class mapping or the
shipped model that says "outerwear" reads as "outwear" (docs/OUTPUT.md, "Names")."""
import json

from fashion2stage.app.pipeline import default_bundle
from fashion2stage.formats.folders import read_class_mapping
from fashion2stage.labels import LabelSet


def test_label_sets_and_mappings_read_outerwear_as_outwear(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({"garment_types": ["blouse", "outerwear"],
                                "attributes": {"category": ["shirt", "outerwear"]},
                                "attribute_types": {"category": ["blouse", "outerwear"]}}))
    labels = LabelSet.load(path)
    assert labels.garment_types == ["blouse", "outwear"] and labels.attributes["category"] == ["shirt", "outwear"]
    assert labels.keys_for_type("outwear") == ["category"]
    mapping = tmp_path / "classes.yaml"
    mapping.write_text("classes:\n  coats: {type: outerwear, attributes: {category: outerwear}}\n")
    assert read_class_mapping(mapping, labels)["coats"] == {"type": "outwear", "attributes": {"category": "outwear"}}


def test_the_shipped_model_names_no_value_outerwear():
    for stage in ("detector", "attributes", "keypoints"):
        labels = LabelSet.load(default_bundle() / stage / "labels.json")
        names = labels.garment_types + [v for vs in labels.attributes.values() for v in vs]
        assert "outerwear" not in names
    assert "outwear" in LabelSet.load(default_bundle() / "attributes" / "labels.json").attributes["category"]
